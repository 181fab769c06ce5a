#!/usr/bin/env bash
# Throwaway or local PostgreSQL clusters for PilePass tests and benchmarks, built with
# Debian's PostgreSQL packages (installed through scripts/system-deps.sh when missing).
#
#   scripts/postgres-cluster.sh start DIR PORT [--fast] [--db NAME]
#       initdb a new cluster in DIR/data (DIR must be empty or absent), start it listening on
#       127.0.0.1:PORT with its unix socket in DIR, trust authentication for the local user
#       `postgres`, create database NAME (default: pilepass) and print its URL on stdout.
#       --fast turns durability off (fsync, synchronous_commit, full_page_writes) for
#       throwaway test clusters; without it the cluster keeps PostgreSQL's production
#       durability defaults, which is what a benchmark must measure.
#   scripts/postgres-cluster.sh init DIR PORT [--fast]
#       only the initdb + configuration part of `start`; the caller runs the server itself
#       (test/support/postgres.ts runs `postgres -D DIR/data` as its own child so that it
#       reaps the postmaster) and creates databases.
#   scripts/postgres-cluster.sh stop DIR
#       stop the cluster in DIR (immediate shutdown) and remove DIR.
#   scripts/postgres-cluster.sh watch PID DIR
#       wait until process PID exits (or DIR disappears), then `stop DIR`; run it detached so
#       a killed test process never leaves a postmaster behind.
#   scripts/postgres-cluster.sh bindir
#       print the directory holding initdb/pg_ctl.
#
# PostgreSQL refuses to run as root: as root every server command runs as the `postgres`
# user Debian's package creates (runuser), and DIR is chowned to it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() {
  echo "postgres-cluster: $*" >&2
  exit 1
}

bindir() {
  local d
  # Highest installed major version first.
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

ensure_installed() {
  if ! bindir >/dev/null; then
    bash "$here/system-deps.sh" postgres ||
      die "PostgreSQL is not installed; run as root: bash scripts/system-deps.sh postgres"
  fi
  bindir >/dev/null || die "no initdb/pg_ctl under /usr/lib/postgresql/*/bin after installing"
}

# Runs a PostgreSQL program as the cluster owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# initdb + configuration; sets globals used by cmd_start.
cmd_init() {
  local dir="${1:-}" port="${2:-}" fast=0
  [ -n "$dir" ] && [ -n "$port" ] || die "usage: init DIR PORT [--fast]"
  shift 2
  while [ $# -gt 0 ]; do
    case "$1" in
      --fast) fast=1 ;;
      *) die "unknown option $1" ;;
    esac
    shift
  done
  [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number"
  ensure_installed
  local bin
  bin="$(bindir)"
  mkdir -p "$dir"
  [ -z "$(ls -A "$dir")" ] || die "$dir is not empty"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "user 'postgres' missing (Debian's postgresql package creates it)"
    chown postgres: "$dir"
    chmod 700 "$dir"
  fi
  local sync_flag=()
  [ "$fast" -eq 1 ] && sync_flag=(--no-sync)
  as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C \
    --no-instructions "${sync_flag[@]}" >"$dir/initdb.log" 2>&1 ||
    die "initdb failed: $(tail -n 20 "$dir/initdb.log")"
  {
    echo "# postgres-cluster.sh"
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $port"
    echo "unix_socket_directories = '$dir'"
    echo "max_connections = 200"
    if [ "$fast" -eq 1 ]; then
      echo "fsync = off"
      echo "synchronous_commit = off"
      echo "full_page_writes = off"
      echo "shared_buffers = 32MB"
    fi
  } >>"$dir/data/postgresql.conf"
}

cmd_start() {
  local dir="${1:-}" port="${2:-}" db=pilepass init_args=()
  [ -n "$dir" ] && [ -n "$port" ] || die "usage: start DIR PORT [--fast] [--db NAME]"
  shift 2
  while [ $# -gt 0 ]; do
    case "$1" in
      --fast) init_args+=(--fast) ;;
      --db)
        db="${2:?--db needs a name}"
        shift
        ;;
      *) die "unknown option $1" ;;
    esac
    shift
  done
  [[ "$db" =~ ^[a-z_][a-z0-9_]*$ ]] || die "database name must match [a-z_][a-z0-9_]*"
  cmd_init "$dir" "$port" "${init_args[@]}"
  local bin
  bin="$(bindir)"
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null 2>&1 ||
    die "pg_ctl start failed: $(tail -n 20 "$dir/server.log" 2>/dev/null)"
  if [ "$db" != postgres ]; then
    as_owner "$bin/createdb" -h "$dir" -p "$port" -U postgres "$db" ||
      die "createdb $db failed"
  fi
  echo "postgresql://postgres@127.0.0.1:$port/$db"
}

# True while PID exists and is not a zombie.
running() {
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
  [ -n "$state" ] && [ "$state" != Z ]
}

cmd_stop() {
  local dir="${1:?usage: stop DIR}"
  [ -d "$dir" ] || return 0
  if [ -f "$dir/data/postmaster.pid" ]; then
    local bin pid
    bin="$(bindir)" || die "no pg_ctl found"
    pid="$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)"
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    # pg_ctl returns once postmaster.pid is gone; the postmaster exits a moment later.
    if [[ "$pid" =~ ^[0-9]+$ ]]; then
      for _ in $(seq 1 100); do
        running "$pid" || break
        sleep 0.05
      done
      if running "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
      # Started by pg_ctl it was re-parented to PID 1, which may take a second to reap it:
      # wait (at most 5 s) so that no postgres process outlives `stop`. (A zombie whose
      # parent is alive, e.g. the test process calling us, is reaped when that parent runs.)
      if [ "$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null)" = 1 ]; then
        for _ in $(seq 1 100); do
          kill -0 "$pid" 2>/dev/null || break
          sleep 0.05
        done
      fi
    fi
  fi
  rm -rf "$dir"
}

cmd_watch() {
  local pid="${1:?usage: watch PID DIR}" dir="${2:?usage: watch PID DIR}"
  while kill -0 "$pid" 2>/dev/null && [ -d "$dir" ]; do
    sleep 0.5
  done
  cmd_stop "$dir"
}

case "${1:-}" in
  init)
    shift
    cmd_init "$@"
    ;;
  start)
    shift
    cmd_start "$@"
    ;;
  stop)
    shift
    cmd_stop "$@"
    ;;
  watch)
    shift
    cmd_watch "$@"
    ;;
  bindir) bindir || die "PostgreSQL not installed; run as root: bash scripts/system-deps.sh postgres" ;;
  *)
    echo "usage: $0 start DIR PORT [--fast] [--db NAME] | init DIR PORT [--fast] | stop DIR | watch PID DIR | bindir" >&2
    exit 2
    ;;
esac
