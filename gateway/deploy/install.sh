#!/usr/bin/env bash
# PilePass gateway installer for Raspberry Pi OS (bookworm, 64-bit). See docs/raspberry-pi.md.
#
#   sudo gateway/deploy/install.sh             install or update, from this checkout
#   gateway/deploy/install.sh --dry-run        print every action, change nothing (no root needed)
#
# What it does (each step only when needed, so a re-run changes nothing that is already right):
#   1. checks the OS and Node (>= 22.18: runs the TypeScript sources with type stripping)
#   2. installs system packages (bluez tools, libgpiod 1.x, build tools for native modules)
#   3. creates the system user `pilepass` (groups gpio, dialout; no login, no home)
#   4. creates /opt/pilepass (app, root-owned), /var/lib/pilepass (state, 0700),
#      /etc/pilepass (config, root:pilepass 0750)
#   5. copies the app to /opt/pilepass and installs its npm dependencies (npm ci --omit=dev)
#   6. installs /usr/local/bin/pilepass-gateway, a config template (never overwrites a config),
#      the systemd unit and the hardware-watchdog drop-in
#   7. stops and masks bluetoothd (it cannot share the adapter with the gateway), unblocks rfkill
#   8. enables the unit, and (re)starts it when the config is complete
set -euo pipefail

readonly APP_DIR=/opt/pilepass
readonly STATE_DIR=/var/lib/pilepass
readonly CONFIG_DIR=/etc/pilepass
readonly CONFIG_FILE=$CONFIG_DIR/gateway.json
readonly SERVICE_USER=pilepass
readonly SERVICE_GROUPS=(gpio dialout)
readonly UNIT=pilepass-gateway.service
readonly UNIT_FILE=/etc/systemd/system/$UNIT
readonly WATCHDOG_DIR=/etc/systemd/system.conf.d
readonly WATCHDOG_FILE=$WATCHDOG_DIR/pilepass-watchdog.conf
readonly CLI_WRAPPER=/usr/local/bin/pilepass-gateway
readonly DEFAULT_NODE=/usr/bin/node
readonly NODE_MIN=22.18.0
readonly DEPS_STAMP=$APP_DIR/.pilepass-deps
# bluez: btmgmt/bluetoothctl for diagnosis (bluetoothd itself is masked); rfkill; libgpiod 1.6
# (bookworm) runtime, tools and headers for node-libgpiod; compilers and python3 for node-gyp
# (node-libgpiod, socketcan); can-utils and iproute2 for the CAN bus.
readonly PACKAGES=(bluez rfkill libgpiod2 gpiod libgpiod-dev build-essential python3 can-utils iproute2)
# What of the checkout goes to /opt/pilepass.
readonly APP_PARTS=(gateway/src gateway/deploy shared/src docs package.json package-lock.json)

DRY_RUN=0
SOURCE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NODE_BIN=""
ACTIONS=0
PROBLEMS=()
TMP_DIR=""
# Directories that exist or that this run creates (a dry run creates none, yet plans them).
declare -A DIRS_DONE=()

usage() {
  cat <<EOF
Usage: install.sh [--dry-run] [--source DIR] [--node PATH] [--help]

Installs or updates the PilePass gateway on Raspberry Pi OS (bookworm, 64-bit).

  --dry-run      print every action without doing any (root not needed)
  --source DIR   the PilePass checkout to install from (default: $SOURCE_DIR)
  --node PATH    the Node binary the service runs (default: $DEFAULT_NODE, else node on PATH)
  -h, --help     this help

Needs root (sudo) unless --dry-run. Safe to run again: only what differs is changed.
Docs: docs/raspberry-pi.md
EOF
}

say() { printf 'pilepass-install: %s\n' "$*"; }
keep() { printf '= %s\n' "$*"; }
warn() { printf 'pilepass-install: warning: %s\n' "$*" >&2; }

# Runs (or, with --dry-run, prints) one action.
act() {
  ACTIONS=$((ACTIONS + 1))
  if [ "$DRY_RUN" -eq 1 ]; then
    printf '[dry-run] %s\n' "$(quote "$@")"
  else
    printf '+ %s\n' "$(quote "$@")"
    "$@"
  fi
}

quote() {
  local out="" arg
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=,@+%-]+$ ]]; then out+="$arg "; else out+="$(printf '%q' "$arg") "; fi
  done
  printf '%s' "${out% }"
}

# A precondition that fails: fatal in a real run; a dry run goes on and exits 1 at the end.
problem() {
  if [ "$DRY_RUN" -eq 1 ]; then
    warn "$* (a real run stops here)"
    PROBLEMS+=("$*")
  else
    printf 'pilepass-install: error: %s\n' "$*" >&2
    exit 1
  fi
}

# mode owner group of a path, e.g. "700 pilepass pilepass".
stat_of() { stat -c '%a %U %G' "$1" 2>/dev/null || true; }

# ensure_dir PATH MODE OWNER GROUP
ensure_dir() {
  local path=$1 mode=$2 owner=$3 group=$4
  if [ -d "$path" ] && [ "$(stat_of "$path")" = "${mode#0} $owner $group" ]; then
    keep "directory $path ($mode $owner:$group)"
  else
    act install -d -m "$mode" -o "$owner" -g "$group" "$path"
  fi
  DIRS_DONE[$path]=1
}

# Writes TEXT (one line) to DEST, or prints that it would.
write_line() {
  local dest=$1 text=$2
  ACTIONS=$((ACTIONS + 1))
  if [ "$DRY_RUN" -eq 1 ]; then
    printf '[dry-run] write %s: %s\n' "$dest" "$text"
  else
    printf '+ write %s: %s\n' "$dest" "$text"
    printf '%s\n' "$text" >"$dest"
  fi
}

# ensure_file SRC DEST MODE OWNER GROUP — installs SRC as DEST when content, mode or owner differ.
# Prints "changed" on stdout's last line when it acted (callers use it to reload).
ensure_file() {
  local src=$1 dest=$2 mode=$3 owner=$4 group=$5
  if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(stat_of "$dest")" = "${mode#0} $owner $group" ]; then
    keep "file $dest ($mode $owner:$group)"
    return 1
  fi
  act install -m "$mode" -o "$owner" -g "$group" "$src" "$dest"
  return 0
}

# A copy of a deploy file with the Node path the service runs (when it is not /usr/bin/node).
with_node_path() {
  local src=$1
  if [ "$NODE_BIN" = "$DEFAULT_NODE" ]; then
    printf '%s' "$src"
    return
  fi
  local out
  out="$TMP_DIR/$(basename "$src")"
  sed "s#$DEFAULT_NODE#$NODE_BIN#g" "$src" >"$out"
  printf '%s' "$out"
}

check_os() {
  local codename="" arch model=""
  if [ -r /etc/os-release ]; then
    # shellcheck source=/dev/null
    codename="$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")"
  fi
  arch="$(dpkg --print-architecture 2>/dev/null || uname -m)"
  if [ -r /proc/device-tree/model ]; then model="$(tr -d '\0' </proc/device-tree/model)"; fi
  say "system: ${model:-not a Raspberry Pi}, ${codename:-unknown release}, $arch"
  [ "$codename" = bookworm ] || warn "made for Raspberry Pi OS bookworm (found ${codename:-unknown}); continuing"
  [ "$arch" = arm64 ] || warn "made for 64-bit Raspberry Pi OS (arm64; found $arch); continuing"
  [ -e /dev/rtc0 ] || warn "no RTC (/dev/rtc0): after a power cut without network the clock restarts from the last saved time — fit a battery-backed RTC (docs/raspberry-pi.md)"
  local boot_config=/boot/firmware/config.txt
  if [ -r "$boot_config" ] && ! grep -Eq '^[[:space:]]*dtparam=strict_gpiod' "$boot_config"; then
    warn "relay-enabled EVSEs need dtparam=strict_gpiod in $boot_config (outputs released when the gateway dies); the relay driver refuses to start without it"
  fi
}

check_node() {
  if [ -z "$NODE_BIN" ]; then
    if [ -x "$DEFAULT_NODE" ]; then NODE_BIN=$DEFAULT_NODE; else NODE_BIN="$(command -v node || true)"; fi
  fi
  if [ -z "$NODE_BIN" ] || [ ! -x "$NODE_BIN" ]; then
    problem "Node not found${NODE_BIN:+ at $NODE_BIN}: install Node 24 LTS (docs/raspberry-pi.md: NodeSource deb)"
    NODE_BIN=$DEFAULT_NODE
    return
  fi
  local version
  version="$("$NODE_BIN" --version 2>/dev/null || true)"
  version=${version#v}
  if ! [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
    problem "cannot read the version of $NODE_BIN"
    return
  fi
  if [ "$(printf '%s\n%s\n' "$NODE_MIN" "$version" | sort -V | head -n1)" != "$NODE_MIN" ]; then
    problem "Node $version at $NODE_BIN is too old: the service needs >= $NODE_MIN (Node 24 LTS recommended; docs/raspberry-pi.md)"
    return
  fi
  if [ $((${version%%.*} % 2)) -eq 1 ]; then
    warn "Node $version is not an LTS line: prefer Node 24 LTS on a station"
  fi
  say "node: $version at $NODE_BIN"
  NPM_BIN="$(dirname "$NODE_BIN")/npm"
  [ -x "$NPM_BIN" ] || NPM_BIN="$(command -v npm || true)"
  [ -n "$NPM_BIN" ] || problem "npm not found next to $NODE_BIN or on PATH"
}

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then missing+=("$p"); fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    keep "packages ${PACKAGES[*]}"
    return
  fi
  act apt-get update
  act env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

ensure_user() {
  local g
  for g in "${SERVICE_GROUPS[@]}"; do
    if getent group "$g" >/dev/null; then keep "group $g"; else act groupadd --system "$g"; fi
  done
  local wanted
  wanted="$(IFS=,; printf '%s' "${SERVICE_GROUPS[*]}")"
  if id -u "$SERVICE_USER" >/dev/null 2>&1; then
    local have missing=()
    have=" $(id -nG "$SERVICE_USER") "
    for g in "${SERVICE_GROUPS[@]}"; do [[ "$have" == *" $g "* ]] || missing+=("$g"); done
    if [ ${#missing[@]} -eq 0 ]; then
      keep "user $SERVICE_USER (groups $wanted)"
    else
      act usermod --append --groups "$(IFS=,; printf '%s' "${missing[*]}")" "$SERVICE_USER"
    fi
  else
    act useradd --system --user-group --groups "$wanted" --home-dir "$STATE_DIR" --no-create-home \
      --shell /usr/sbin/nologin --comment "PilePass gateway" "$SERVICE_USER"
  fi
}

# install_app SOURCE APP — copies the app parts of checkout SOURCE into APP (only what differs).
install_app() {
  local source=$1 app=$2 part
  if [ "$(cd "$source" && pwd -P)" = "$(cd "$app" 2>/dev/null && pwd -P || true)" ]; then
    keep "app: running from the installed copy $app (to update, run install.sh from a newer checkout)"
    return
  fi
  for part in "${APP_PARTS[@]}"; do
    [ -e "$source/$part" ] || problem "$source/$part is missing: --source must be a PilePass checkout"
  done
  for part in "${APP_PARTS[@]}"; do
    local src="$source/$part" dest="$app/$part" parent
    if [ -e "$dest" ] && diff -rq "$src" "$dest" >/dev/null 2>&1; then
      keep "app $dest"
      continue
    fi
    parent="$(dirname "$dest")"
    if [ ! -d "$parent" ] && [ -z "${DIRS_DONE[$parent]:-}" ]; then
      act install -d -m 0755 -o root -g root "$parent"
      DIRS_DONE[$parent]=1
    fi
    if [ -d "$src" ]; then
      # Replaced as a whole, so files deleted upstream go too; root-owned, read-only to others.
      if [ -e "$dest" ]; then act rm -rf "$dest"; fi
      act cp -r "$src" "$dest"
      act chown -R root:root "$dest"
      act chmod -R u=rwX,go=rX "$dest"
    else
      act install -m 0644 -o root -g root "$src" "$dest"
    fi
  done
}

install_dependencies() {
  local want=""
  if [ -f "$SOURCE_DIR/package-lock.json" ] && [ -x "$NODE_BIN" ]; then
    want="$(sha256sum "$SOURCE_DIR/package-lock.json" | cut -d' ' -f1) node $("$NODE_BIN" --version 2>/dev/null || true)"
  fi
  if [ -n "$want" ] && [ -d "$APP_DIR/node_modules" ] && [ "$(cat "$DEPS_STAMP" 2>/dev/null || true)" = "$want" ]; then
    keep "npm dependencies ($want)"
    return
  fi
  # Native modules (better-sqlite3, the HCI socket, node-libgpiod, socketcan) build for this Node.
  act env -C "$APP_DIR" PATH="$(dirname "$NODE_BIN"):/usr/local/bin:/usr/bin:/bin" \
    "${NPM_BIN:-npm}" ci --omit=dev --no-audit --no-fund
  write_line "$DEPS_STAMP" "$want"
  if [ "$DRY_RUN" -eq 0 ]; then
    local module
    for module in node-libgpiod socketcan; do
      if ! (cd "$APP_DIR" && "$NODE_BIN" -e "require('$module')" >/dev/null 2>&1); then
        warn "optional module $module did not build or load: the $([ "$module" = socketcan ] && echo CAN || echo relay) pile driver is unavailable"
      fi
    done
  fi
}

install_files() {
  ensure_file "$(with_node_path "$SOURCE_DIR/gateway/deploy/pilepass-gateway.sh")" "$CLI_WRAPPER" 0755 root root || true
  if [ -e "$CONFIG_FILE" ]; then
    keep "config $CONFIG_FILE (kept as it is)"
    if [ "$(stat_of "$CONFIG_FILE")" != "640 root $SERVICE_USER" ]; then
      act chown "root:$SERVICE_USER" "$CONFIG_FILE"
      act chmod 0640 "$CONFIG_FILE"
    fi
  else
    ensure_file "$SOURCE_DIR/gateway/deploy/gateway.example.json" "$CONFIG_FILE" 0640 root "$SERVICE_USER" || true
    CONFIG_TEMPLATE_NEW=1
  fi
  if ensure_file "$(with_node_path "$SOURCE_DIR/gateway/deploy/$UNIT")" "$UNIT_FILE" 0644 root root; then
    UNIT_CHANGED=1
  fi
  ensure_dir "$WATCHDOG_DIR" 0755 root root
  if ensure_file "$SOURCE_DIR/gateway/deploy/pilepass-watchdog.conf" "$WATCHDOG_FILE" 0644 root root; then
    WATCHDOG_CHANGED=1
  fi
}

take_bluetooth() {
  if ! command -v systemctl >/dev/null; then
    problem "systemctl not found: the gateway runs as a systemd service"
    return
  fi
  local state
  state="$(systemctl is-enabled bluetooth.service 2>/dev/null || true)"
  case "$state" in
    masked) keep "bluetooth.service masked (bluetoothd stays off)" ;;
    "" | not-found) keep "bluetooth.service not installed" ;;
    *)
      act systemctl disable --now bluetooth.service
      act systemctl mask bluetooth.service
      ;;
  esac
  if command -v rfkill >/dev/null && rfkill list bluetooth 2>/dev/null | grep -q 'Soft blocked: yes'; then
    act rfkill unblock bluetooth
  else
    keep "bluetooth not blocked by rfkill"
  fi
}

enable_service() {
  if [ "${WATCHDOG_CHANGED:-0}" -eq 1 ]; then
    # Re-executing PID 1 applies RuntimeWatchdogSec now; running services are not touched.
    act systemctl daemon-reexec
  fi
  if [ "${UNIT_CHANGED:-0}" -eq 1 ]; then act systemctl daemon-reload; fi
  if [ "$(systemctl is-enabled "$UNIT" 2>/dev/null || true)" = enabled ]; then
    keep "$UNIT enabled"
  else
    act systemctl enable "$UNIT"
  fi
  # The config check also creates the gateway key on first run (keys show).
  local check=(runuser -u "$SERVICE_USER" -- "$NODE_BIN" --disable-warning=ExperimentalWarning
    "$APP_DIR/gateway/src/cli.ts" keys show --config "$CONFIG_FILE")
  if [ "$DRY_RUN" -eq 1 ]; then
    act "${check[@]}"
    say "a real run then restarts $UNIT if that config check passes"
    return
  fi
  local output
  if output="$("${check[@]}" 2>&1)"; then
    printf '+ %s\n' "$(quote "${check[@]}")"
    act systemctl restart "$UNIT"
    say "gateway key: $(printf '%s' "$output" | tr -d ' \n')"
  else
    say "not started: $CONFIG_FILE is not complete yet:"
    printf '%s\n' "$output" | sed 's/^/    /'
    say "next: sudo pilepass-gateway provision --cloud URL --code CODE; put the gateway id it prints"
    say "      into $CONFIG_FILE (and the pile settings); then: sudo systemctl start $UNIT"
  fi
}

main() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --dry-run) DRY_RUN=1 ;;
      --source)
        [ $# -ge 2 ] || { usage >&2; exit 2; }
        SOURCE_DIR="$(cd "$2" && pwd)"
        shift
        ;;
      --node)
        [ $# -ge 2 ] || { usage >&2; exit 2; }
        NODE_BIN=$2
        shift
        ;;
      -h | --help) usage; exit 0 ;;
      *)
        printf 'install.sh: unknown option: %s\n\n' "$1" >&2
        usage >&2
        exit 2
        ;;
    esac
    shift
  done
  if [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    printf 'pilepass-install: error: must run as root (sudo %s), or with --dry-run\n' "$0" >&2
    exit 1
  fi
  TMP_DIR="$(mktemp -d)"
  trap 'rm -rf "$TMP_DIR"' EXIT
  [ "$DRY_RUN" -eq 1 ] && say "dry run: printing the actions, changing nothing"
  say "installing from $SOURCE_DIR"

  check_os
  check_node
  install_packages
  ensure_user
  ensure_dir "$APP_DIR" 0755 root root
  ensure_dir "$STATE_DIR" 0700 "$SERVICE_USER" "$SERVICE_USER"
  ensure_dir "$CONFIG_DIR" 0750 root "$SERVICE_USER"
  install_app "$SOURCE_DIR" "$APP_DIR"
  install_dependencies
  install_files
  take_bluetooth
  enable_service

  if [ ${#PROBLEMS[@]} -gt 0 ]; then
    say "dry run: $ACTIONS action(s); a real run would stop at: ${PROBLEMS[*]}"
    exit 1
  fi
  if [ "$DRY_RUN" -eq 1 ]; then
    say "dry run: $ACTIONS action(s) would run; nothing was changed"
  elif [ "$ACTIONS" -eq 0 ]; then
    say "done: everything was already in place, nothing changed"
  else
    say "done: $ACTIONS action(s). Status: systemctl status $UNIT; logs: journalctl -u $UNIT -f"
  fi
  if [ "${CONFIG_TEMPLATE_NEW:-0}" -eq 1 ]; then
    say "config template installed at $CONFIG_FILE: set gatewayId and the pile (docs/raspberry-pi.md)"
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
