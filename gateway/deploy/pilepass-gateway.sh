#!/bin/sh
# pilepass-gateway on an installed station (installed as /usr/local/bin/pilepass-gateway by
# gateway/deploy/install.sh): runs the gateway CLI as the pilepass user, with the installed
# config, on the same Node as the service.
#
#   sudo pilepass-gateway status
#   sudo pilepass-gateway provision --cloud https://cloud.example --code ABCD-1234
#
# `provision` runs before the config names a gateway id (the cloud assigns it), so it gets only
# the state directory; every other command gets --config (a later --config on the command
# line wins).
set -eu

NODE=/usr/bin/node
CLI=/opt/pilepass/gateway/src/cli.ts
CONFIG=/etc/pilepass/gateway.json
STATE=/var/lib/pilepass
SERVICE_USER=pilepass

case "${1:-}" in
  provision) set -- "$@" --data-dir "$STATE" ;;
  "" | -h | --help) ;;
  *) set -- --config "$CONFIG" "$@" ;;
esac

if [ "$(id -u)" -eq 0 ]; then
  exec runuser -u "$SERVICE_USER" -- "$NODE" --disable-warning=ExperimentalWarning "$CLI" "$@"
elif [ "$(id -un)" = "$SERVICE_USER" ]; then
  exec "$NODE" --disable-warning=ExperimentalWarning "$CLI" "$@"
else
  echo "pilepass-gateway: run it with sudo (the gateway's keys and ledger belong to the $SERVICE_USER user)" >&2
  exit 1
fi
