#!/usr/bin/env bash
# Stop the project-owned RabbitMQ node started by scripts/rabbitmq/up.sh.
#
# Only that node is touched: the Erlang VM in its pid file and the launcher
# shell up.sh recorded, each checked to carry this state directory in its
# environment. First `rabbitmqctl stop` (graceful), then SIGTERM to the
# launcher, then after STOP_TIMEOUT seconds (default 10) SIGKILL to the
# launcher's own process group (up.sh started it with setsid). The shared
# epmd daemon is left alone. Data is kept. Safe to run twice.
set -euo pipefail

RABBITMQ_DIR=${RABBITMQ_DIR:-$HOME/.cache/openstack-image-tools/rabbitmq}
RABBITMQ_PORT=${RABBITMQ_PORT:-5672}
RABBITMQ_NODENAME=${RABBITMQ_NODENAME:-oit-rabbit@localhost}
RABBITMQ_BIN=${RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}
STOP_TIMEOUT=${STOP_TIMEOUT:-10}

log() { printf 'rabbitmq-down: %s\n' "$*" >&2; }

case "$STOP_TIMEOUT" in '' | *[!0-9]*)
  log "error: STOP_TIMEOUT must be a whole number of seconds, got '$STOP_TIMEOUT'"
  exit 1
  ;;
esac
if [ ! -d "$RABBITMQ_DIR" ]; then
  log "nothing to stop ($RABBITMQ_DIR does not exist)"
  exit 0
fi

# shellcheck source=scripts/rabbitmq/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

alive() {
  local st
  st=$(sed -e 's/.*) //' -e 's/ .*//' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

launcher_is_ours() {
  local pid=$1
  [ -r "/proc/$pid/environ" ] || return 1
  tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "RABBITMQ_MNESIA_BASE=$RABBITMQ_MNESIA_BASE" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'rabbitmq-server'
}

beam=$(rabbit_running_pid || true)
launcher=
if [ -f "$RABBITMQ_LAUNCHER_PID_FILE" ]; then
  launcher=$(tr -dc '0-9' <"$RABBITMQ_LAUNCHER_PID_FILE" 2>/dev/null || true)
  if [ -z "$launcher" ] || ! alive "$launcher" || ! launcher_is_ours "$launcher"; then
    launcher=
  fi
fi

if [ -z "$beam" ] && [ -z "$launcher" ]; then
  log "nothing to stop"
  rm -f "$RABBITMQ_LAUNCHER_PID_FILE" "$RABBITMQ_PID_FILE"
  exit 0
fi

if [ -n "$beam" ]; then
  log "stopping node $RABBITMQ_NODENAME (pid $beam) with rabbitmqctl stop"
  timeout 60 "$RABBITMQ_BIN/rabbitmqctl" -n "$RABBITMQ_NODENAME" stop "$RABBITMQ_PID_FILE" >/dev/null 2>&1 ||
    log "rabbitmqctl stop failed; falling back to signals"
fi

still_running() { { [ -n "$beam" ] && alive "$beam"; } || { [ -n "$launcher" ] && alive "$launcher"; }; }

if still_running; then
  target=${launcher:-$beam}
  log "sending SIGTERM to pid $target"
  kill -TERM "$target" 2>/dev/null || true
  deadline=$(($(date +%s) + STOP_TIMEOUT))
  while still_running && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
fi

if still_running; then
  log "still running after ${STOP_TIMEOUT}s; sending SIGKILL"
  if [ -n "$launcher" ] && alive "$launcher" && [ "$(sed -e 's/.*) //' "/proc/$launcher/stat" | awk '{ print $3 }')" = "$launcher" ]; then
    kill -KILL -- "-$launcher" 2>/dev/null || true
  fi
  if [ -n "$beam" ] && alive "$beam" && rabbit_is_ours "$beam"; then
    kill -KILL "$beam" 2>/dev/null || true
  fi
  for _ in $(seq 1 25); do still_running || break; sleep 0.2; done
fi

if still_running; then
  log "error: node $RABBITMQ_NODENAME survived SIGKILL"
  exit 1
fi
rm -f "$RABBITMQ_LAUNCHER_PID_FILE" "$RABBITMQ_PID_FILE"
log "stopped"
