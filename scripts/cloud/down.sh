#!/usr/bin/env bash
# Stop the local cloud started by scripts/cloud/up.sh.
#
# Only the processes recorded in $LOCAL_CLOUD_DIR/run/*.pid are touched, and
# only after checking that each one carries the gunicorn title up.sh gave it
# ("gunicorn: master [os-real-NAME]"). They get SIGTERM; a master still alive
# after STOP_TIMEOUT seconds (default 10) is killed together with its own
# process group (up.sh starts each server with setsid, so the group holds
# exactly that master and its workers). Data is kept; stopping the whole
# cloud removes its tmpfs staging directory (up.sh's default GLANCE_STAGING,
# only images being imported). Safe to run twice.
#
#   down.sh                 stop every server of the cloud
#   down.sh glance-r2 ...   stop only these (keystone, glance-r1, glance-r2, glance-r3)
set -euo pipefail

LOCAL_CLOUD_DIR=${LOCAL_CLOUD_DIR:-$HOME/.cache/openstack-image-tools/local-cloud}
STOP_TIMEOUT=${STOP_TIMEOUT:-10}
RUN=$LOCAL_CLOUD_DIR/run
NAMES=(glance-r3 glance-r2 glance-r1 keystone)
ALL=1
if [ "$#" -gt 0 ]; then
  ALL=0
  for name in "$@"; do
    case " ${NAMES[*]} " in *" $name "*) ;; *)
      printf 'cloud-down: error: unknown server %s (one of: %s)\n' "$name" "${NAMES[*]}" >&2
      exit 1
      ;;
    esac
  done
  NAMES=("$@")
fi

log() { printf 'cloud-down: %s\n' "$*" >&2; }

# The staging directory up.sh puts on /dev/shm for this state directory.
STAGING=/dev/shm/openstack-image-tools-staging-$(printf '%s' "$LOCAL_CLOUD_DIR" | sha256sum | cut -c1-12)
drop_staging() {
  if [ "$ALL" = 1 ] && [ -d "$STAGING" ]; then rm -rf "$STAGING"; fi
}

case "$STOP_TIMEOUT" in '' | *[!0-9]*)
  log "error: STOP_TIMEOUT must be a whole number of seconds, got '$STOP_TIMEOUT'"
  exit 1
  ;;
esac

is_ours() {
  local name=$1 pid=$2 cmd
  [ -r "/proc/$pid/cmdline" ] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  case "$cmd" in
    "gunicorn: master [os-real-$name]"*) return 0 ;;
    # Still starting up: the title is not set yet, but the argv is ours.
    *gunicorn*"--name os-real-$name "*) return 0 ;;
  esac
  return 1
}

alive() {
  local st
  st=$(sed -e 's/.*) //' -e 's/ .*//' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

pgid_of() { sed -e 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $3 }'; }

declare -A stopping=()
for name in "${NAMES[@]}"; do
  f=$RUN/$name.pid
  [ -f "$f" ] || continue
  pid=$(cat "$f" 2>/dev/null || true)
  case "$pid" in '' | *[!0-9]*)
    log "$name: ignoring malformed pid file $f"
    rm -f "$f"
    continue
    ;;
  esac
  if is_ours "$name" "$pid"; then
    log "$name: stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    stopping[$name]=$pid
  else
    log "$name: pid $pid is not running (or is not os-real-$name); removing stale pid file"
    rm -f "$f"
  fi
done

if [ "${#stopping[@]}" -eq 0 ]; then
  log "nothing to stop"
  drop_staging
  exit 0
fi

deadline=$(($(date +%s) + STOP_TIMEOUT))
for name in "${!stopping[@]}"; do
  pid=${stopping[$name]}
  while alive "$pid" && [ "$(date +%s)" -lt "$deadline" ]; do
    sleep 0.2
  done
  if alive "$pid" && is_ours "$name" "$pid"; then
    pgid=$(pgid_of "$pid")
    if [ "$pgid" = "$pid" ]; then
      log "$name: still running after ${STOP_TIMEOUT}s; killing process group $pid"
      kill -KILL -- "-$pid" 2>/dev/null || true
    else
      log "$name: still running after ${STOP_TIMEOUT}s; killing pid $pid"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    for _ in $(seq 1 25); do alive "$pid" || break; sleep 0.2; done
  fi
  if alive "$pid"; then
    log "$name: error: pid $pid survived SIGKILL"
  else
    log "$name: stopped"
    rm -f "$RUN/$name.pid"
  fi
done
drop_staging
