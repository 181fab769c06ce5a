#!/usr/bin/env bash
# Installs the Debian / Raspberry Pi OS packages a PilePass task needs.
#
#   scripts/system-deps.sh <group>...     groups: browser, ble, postgres, deploy
#
# browser: Chromium, a CJK font so the zh-CN screens render (screenshots) instead of boxes, and
# qrencode for the camera-scan test's QR code.
# deploy: systemd-analyze and systemd-notify (unit verification, the watchdog tests), shellcheck
# (gateway/deploy/install.sh), python3 (the tests' stand-in for the notify socket);
# the systemd package only installs files here, no init is started in a container.
#
# Idempotent: packages already present are skipped. As root it runs apt-get;
# otherwise it prints the exact command to run and exits non-zero, so a test
# that needs the package fails with that command in its output.
set -euo pipefail

declare -A GROUP_PACKAGES=(
  [browser]="chromium fonts-wqy-microhei qrencode"
  [ble]="bluez bluez-test-tools socat gcc libc6-dev"
  [postgres]="postgresql"
  [deploy]="systemd shellcheck python3"
)

want=()
for group in "$@"; do
  pkgs="${GROUP_PACKAGES[$group]:-}"
  if [ -z "$pkgs" ]; then
    echo "system-deps: unknown group '$group' (known: ${!GROUP_PACKAGES[*]})" >&2
    exit 2
  fi
  for p in $pkgs; do want+=("$p"); done
done
[ ${#want[@]} -gt 0 ] || { echo "usage: $0 <group>... (groups: ${!GROUP_PACKAGES[*]})" >&2; exit 2; }

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing packages: ${missing[*]}" >&2
  echo "system-deps: run as root:  sudo apt-get update && sudo $cmd" >&2
  exit 1
fi
echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists once per hour at most; a stale list cannot find new packages.
stamp=/var/lib/apt/periodic/update-success-stamp
if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +60 2>/dev/null)" ] || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ]; then
  apt-get update -qq >&2
  mkdir -p "$(dirname "$stamp")" && touch "$stamp"
fi
$cmd >&2
