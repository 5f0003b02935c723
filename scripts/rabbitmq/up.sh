#!/usr/bin/env bash
# Start a project-owned RabbitMQ node on 127.0.0.1:5672 (user guest/guest).
#
# Uses Debian's rabbitmq-server package (3.10) but none of its system state:
# node name, Erlang cookie (HOME), config, enabled-plugins file, mnesia
# directory, logs and pid file all live under
# $RABBITMQ_DIR (default ~/.cache/openstack-image-tools/rabbitmq).
# The unwrapped scripts in /usr/lib/rabbitmq/bin are called directly (the
# /usr/sbin wrappers switch to the rabbitmq system user). No systemd needed.
#
# Idempotent: when this node is already running it only checks it is up.
# A port busy with anything else is refused. Readiness wait is bounded.
#
# Environment overrides (defaults in brackets):
#   RABBITMQ_DIR        state directory [~/.cache/openstack-image-tools/rabbitmq]
#   RABBITMQ_PORT       AMQP port [5672]; the distribution port is PORT+20000
#   RABBITMQ_NODENAME   Erlang node name [oit-rabbit@localhost]
#   RABBITMQ_BIN        directory of the unwrapped scripts [/usr/lib/rabbitmq/bin]
#   READY_TIMEOUT       seconds to wait for the broker [60]
set -euo pipefail

RABBITMQ_DIR=${RABBITMQ_DIR:-$HOME/.cache/openstack-image-tools/rabbitmq}
RABBITMQ_PORT=${RABBITMQ_PORT:-5672}
RABBITMQ_NODENAME=${RABBITMQ_NODENAME:-oit-rabbit@localhost}
RABBITMQ_BIN=${RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}
READY_TIMEOUT=${READY_TIMEOUT:-60}
HOST=127.0.0.1

log() { printf 'rabbitmq-up: %s\n' "$*" >&2; }
die() { printf 'rabbitmq-up: error: %s\n' "$*" >&2; exit 1; }

case "$READY_TIMEOUT" in '' | *[!0-9]*) die "READY_TIMEOUT must be a whole number of seconds, got '$READY_TIMEOUT'" ;; esac
case "$RABBITMQ_PORT" in '' | *[!0-9]*) die "RABBITMQ_PORT must be a port number, got '$RABBITMQ_PORT'" ;; esac
[ -x "$RABBITMQ_BIN/rabbitmq-server" ] ||
  die "$RABBITMQ_BIN/rabbitmq-server not found; install the Debian package rabbitmq-server (scripts/install-debian.sh)"

START_TIME=$(date +%s.%N)
elapsed() { awk -v s="$START_TIME" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

umask 077
mkdir -p "$RABBITMQ_DIR"/{home,etc,mnesia,log,run}
exec 9>>"$RABBITMQ_DIR/.up.lock"
flock -w 300 9 || die "another rabbitmq up.sh holds $RABBITMQ_DIR/.up.lock"

# shellcheck source=scripts/rabbitmq/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

write_if_changed() {
  local dest=$1 tmp
  tmp=$(mktemp "$RABBITMQ_DIR/run/.new.XXXXXX")
  cat >"$tmp"
  if [ -f "$dest" ] && cmp -s "$tmp" "$dest"; then rm -f "$tmp"; else mv -f "$tmp" "$dest"; fi
}

write_if_changed "$RABBITMQ_CONF_ENV_FILE" <<'EOF'
# Intentionally empty: scripts/rabbitmq/up.sh sets everything through the
# environment and must not pick up /etc/rabbitmq/rabbitmq-env.conf.
EOF
write_if_changed "$RABBITMQ_ENABLED_PLUGINS_FILE" <<'EOF'
[].
EOF
write_if_changed "$RABBITMQ_CONFIG_FILE" <<EOF
# Written by scripts/rabbitmq/up.sh; regenerated on every run.
listeners.tcp.default = $HOST:$RABBITMQ_PORT
# guest/guest, usable from loopback only (RabbitMQ's default restriction).
default_user = guest
default_pass = guest
loopback_users.guest = true
log.file.level = info
log.console = false
EOF

port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

alive() {
  local st
  st=$(sed -e 's/.*) //' -e 's/ .*//' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

ctl() { "$RABBITMQ_BIN/rabbitmqctl" -n "$RABBITMQ_NODENAME" "$@"; }

if pid=$(rabbit_running_pid); then
  log "node $RABBITMQ_NODENAME already running (pid $pid); checking it"
  ctl await_startup --timeout "$READY_TIMEOUT" >/dev/null 2>&1 ||
    die "node $RABBITMQ_NODENAME (pid $pid) does not finish booting within ${READY_TIMEOUT}s; see $RABBITMQ_LOG_BASE"
else
  if port_busy "$RABBITMQ_PORT"; then
    die "port $HOST:$RABBITMQ_PORT is busy with something that is not this project's RabbitMQ node; free it (ss -ltnp 'sport = :$RABBITMQ_PORT') and rerun"
  fi
  if port_busy "$RABBITMQ_DIST_PORT"; then
    die "Erlang distribution port $HOST:$RABBITMQ_DIST_PORT is busy; free it or set RABBITMQ_PORT"
  fi
  logfile=$RABBITMQ_LOG_BASE/startup.log
  printf '\n==== %s starting %s on %s:%s\n' "$(date -u +%FT%TZ)" "$RABBITMQ_NODENAME" "$HOST" "$RABBITMQ_PORT" >>"$logfile"
  log "starting node $RABBITMQ_NODENAME on $HOST:$RABBITMQ_PORT (about 15 s)"
  # Foreground mode under setsid: the launcher shell turns SIGTERM into a
  # clean shutdown and we can see at once if the VM dies while booting.
  setsid "$RABBITMQ_BIN/rabbitmq-server" </dev/null >>"$logfile" 2>&1 9>&- &
  launcher=$!
  echo "$launcher" >"$RABBITMQ_LAUNCHER_PID_FILE"
  deadline=$(($(date +%s) + READY_TIMEOUT))
  until port_busy "$RABBITMQ_PORT"; do
    if ! alive "$launcher"; then
      log "rabbitmq-server exited while starting; last lines of $logfile:"
      tail -n 40 "$logfile" >&2 || true
      rm -f "$RABBITMQ_LAUNCHER_PID_FILE"
      exit 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "not listening on $HOST:$RABBITMQ_PORT after ${READY_TIMEOUT}s; last lines of $logfile:"
      tail -n 40 "$logfile" >&2 || true
      die "left running (launcher pid $launcher); stop it with scripts/rabbitmq/down.sh"
    fi
    sleep 0.25
  done
  remaining=$((deadline - $(date +%s)))
  [ "$remaining" -ge 5 ] || remaining=5
  ctl await_startup --timeout "$remaining" >/dev/null 2>&1 ||
    die "node $RABBITMQ_NODENAME did not finish booting; see $logfile and $RABBITMQ_LOG_BASE"
  pid=$(rabbit_running_pid) || die "node is up but its pid file $RABBITMQ_PID_FILE is missing"
  log "node $RABBITMQ_NODENAME started (pid $pid)"
fi

# guest must be able to log in over AMQP from loopback.
# The password goes through stdin, not the command line.
printf 'guest\n' | ctl authenticate_user guest >/dev/null 2>&1 ||
  die "guest/guest cannot authenticate on $RABBITMQ_NODENAME"

log "ready in $(elapsed)s"
cat <<EOF

RabbitMQ is up: amqp://guest:guest@$HOST:$RABBITMQ_PORT/  (node $RABBITMQ_NODENAME, state in $RABBITMQ_DIR)
Logs: $RABBITMQ_LOG_BASE
Stop it: $(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/down.sh
EOF
