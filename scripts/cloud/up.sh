#!/usr/bin/env bash
# Start a real, local, three-region OpenStack image cloud on 127.0.0.1:
#   Keystone           http://127.0.0.1:5000/v3   (fernet tokens, sqlite)
#   Glance RegionOne   http://127.0.0.1:9292      (file store, keystonemiddleware auth)
#   Glance RegionTwo   http://127.0.0.1:9293
#   Glance RegionThree http://127.0.0.1:9294
# Every Glance offers the glance-download import (a region pulls an image
# from another region's Glance with the caller's token; same Keystone) and has
# two file stores, file1 (the default) and file2, so that copy-image runs.
# Everything (venv, configs, databases, images, logs, pid files) lives under
# $LOCAL_CLOUD_DIR (default ~/.cache/openstack-image-tools/local-cloud).
#
# Idempotent: rerunning while the servers are up takes a few seconds and
# changes nothing. The venv is rebuilt only when the package spec, the
# constraints file or the Python version change; databases are initialised
# once; configs are regenerated every run but only written when they differ.
# A running server is reused (it is NOT restarted when its config changed;
# run scripts/cloud/down.sh first, or set RESTART_CHANGED=1). A port busy with
# anything else is refused.
#
# Tests that stop or restart services start a private cloud of their own with
# LOCAL_CLOUD_DIR, CLOUD_HOST (another loopback address) and CLOUD_VENV (the
# shared venv, used read-only), so that the shared servers are never touched.
#
# Environment overrides (defaults in brackets):
#   LOCAL_CLOUD_DIR   state directory [~/.cache/openstack-image-tools/local-cloud]
#   PYTHON            interpreter for the venv, >= 3.11 [python3]
#   ADMIN_PASSWORD    Keystone admin password [secret]
#   DEMO_PASSWORD     password of user demo in project demo [demosecret]
#   GLANCE_PASSWORD   Glance service user password [glance-service-secret]
#   CLOUD_HOST        loopback address the servers listen on [127.0.0.1]
#   CLOUD_VENV        the venv [$LOCAL_CLOUD_DIR/venv]; another cloud's venv is
#                     reused as is (never rebuilt from here when its stamp differs)
#   KS_PORT GLANCE_R1_PORT GLANCE_R2_PORT GLANCE_R3_PORT   [5000 9292 9293 9294]
#   REGION_COUNT      Glance regions to run, 2 (RegionOne, RegionTwo) or 3 [3]
#   GLANCE_R1_ENDPOINT GLANCE_R2_ENDPOINT GLANCE_R3_ENDPOINT
#                     image endpoint URL put in the catalog for that region
#                     [http://CLOUD_HOST:port]; a test may put a proxy there
#   GLANCE_STAGING    where the Glance regions stage imported data (a
#                     directory per region under it) [a directory in /dev/shm
#                     when it is a writable tmpfs, else each region's data/]
#   KS_TOKEN_EXPIRATION  token lifetime in seconds [3600]
#   RESTART_CHANGED   1: restart a running server whose config changed [0]
#   READY_TIMEOUT     seconds to wait for each service [60]
#   KS_CACHE          Keystone dogpile memory cache, true|false [true]
#   KS_HASH_ROUNDS    bcrypt rounds for Keystone passwords [4]
#   PKGS              pip requirement specs
#   CONSTRAINTS       pip constraints file [scripts/cloud/constraints.txt]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOCAL_CLOUD_DIR=${LOCAL_CLOUD_DIR:-$HOME/.cache/openstack-image-tools/local-cloud}
PYTHON=${PYTHON:-python3}
ADMIN_PASSWORD=${ADMIN_PASSWORD:-secret}
DEMO_PASSWORD=${DEMO_PASSWORD:-demosecret}
GLANCE_PASSWORD=${GLANCE_PASSWORD:-glance-service-secret}
HOST=${CLOUD_HOST:-127.0.0.1}
KS_PORT=${KS_PORT:-5000}
GLANCE_R1_PORT=${GLANCE_R1_PORT:-9292}
GLANCE_R2_PORT=${GLANCE_R2_PORT:-9293}
GLANCE_R3_PORT=${GLANCE_R3_PORT:-9294}
REGION_COUNT=${REGION_COUNT:-3}
GLANCE_R1_ENDPOINT=${GLANCE_R1_ENDPOINT:-http://$HOST:$GLANCE_R1_PORT}
GLANCE_R2_ENDPOINT=${GLANCE_R2_ENDPOINT:-http://$HOST:$GLANCE_R2_PORT}
GLANCE_R3_ENDPOINT=${GLANCE_R3_ENDPOINT:-http://$HOST:$GLANCE_R3_PORT}
KS_TOKEN_EXPIRATION=${KS_TOKEN_EXPIRATION:-3600}
RESTART_CHANGED=${RESTART_CHANGED:-0}
READY_TIMEOUT=${READY_TIMEOUT:-60}
KS_CACHE=${KS_CACHE:-true}
KS_HASH_ROUNDS=${KS_HASH_ROUNDS:-4}
PKGS=${PKGS:-keystone==30.0.0 glance==33.0.0 python-openstackclient==10.5.0 gunicorn==27.0.1}
CONSTRAINTS=${CONSTRAINTS:-$SCRIPT_DIR/constraints.txt}

VENV=${CLOUD_VENV:-$LOCAL_CLOUD_DIR/venv}
ETC=$LOCAL_CLOUD_DIR/etc
DATA=$LOCAL_CLOUD_DIR/data
RUN=$LOCAL_CLOUD_DIR/run
LOGS=$LOCAL_CLOUD_DIR/logs
WSGI=$LOCAL_CLOUD_DIR/wsgi
KS_URL=http://$HOST:$KS_PORT/v3

START_TIME=$(date +%s.%N)
log() { printf 'cloud-up: %s\n' "$*" >&2; }
die() { printf 'cloud-up: error: %s\n' "$*" >&2; exit 1; }
elapsed() { awk -v s="$START_TIME" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

for tool in curl setsid flock awk sha256sum cmp; do
  command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found in PATH"
done
[ -f "$CONSTRAINTS" ] || die "constraints file not found: $CONSTRAINTS"
case "$READY_TIMEOUT" in '' | *[!0-9]*) die "READY_TIMEOUT must be a whole number of seconds, got '$READY_TIMEOUT'" ;; esac
case "$KS_CACHE" in true | false) ;; *) die "KS_CACHE must be true or false, got '$KS_CACHE'" ;; esac
case "$REGION_COUNT" in 2 | 3) ;; *) die "REGION_COUNT must be 2 or 3, got '$REGION_COUNT'" ;; esac
case "$KS_TOKEN_EXPIRATION" in '' | *[!0-9]*) die "KS_TOKEN_EXPIRATION must be a whole number of seconds, got '$KS_TOKEN_EXPIRATION'" ;; esac
case "$RESTART_CHANGED" in 0 | 1) ;; *) die "RESTART_CHANGED must be 0 or 1, got '$RESTART_CHANGED'" ;; esac
case "$HOST" in 127.*) ;; *) die "CLOUD_HOST must be a loopback address (127.0.0.0/8), got '$HOST'" ;; esac
GLANCE_NAMES=(glance-r1 glance-r2)
REGIONS=RegionOne,RegionTwo
if [ "$REGION_COUNT" = 3 ]; then GLANCE_NAMES+=(glance-r3); REGIONS=$REGIONS,RegionThree; fi

umask 077
mkdir -p "$LOCAL_CLOUD_DIR" "$ETC" "$DATA" "$RUN" "$LOGS" "$WSGI"

# One up.sh at a time per state directory (servers are started with fd 9
# closed so that they do not hold this lock).
exec 9>>"$LOCAL_CLOUD_DIR/.up.lock"
flock -w 900 9 || die "another up.sh holds $LOCAL_CLOUD_DIR/.up.lock"

# ---------------------------------------------------------------- helpers

# write_if_changed DEST: read new content on stdin; replace DEST only when it
# differs. Prints "changed" when it wrote.
write_if_changed() {
  local dest=$1 tmp
  # The temporary file lives in run/ so that a rerun leaves etc/ untouched.
  tmp=$(mktemp "$RUN/.new.XXXXXX")
  cat >"$tmp"
  if [ -f "$dest" ] && cmp -s "$tmp" "$dest"; then
    rm -f "$tmp"
  else
    mv -f "$tmp" "$dest"
    echo changed
  fi
}

# Title gunicorn gives its master process (via setproctitle).
title_of() { echo "gunicorn: master [os-real-$1]"; }

# pid_is_ours NAME PID: the process exists and carries our gunicorn title.
pid_is_ours() {
  local name=$1 pid=$2 cmd
  [ -r "/proc/$pid/cmdline" ] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  case "$cmd" in "$(title_of "$name")"*) return 0 ;; *) return 1 ;; esac
}

# running_pid NAME: print the pid from run/NAME.pid when it is alive and ours;
# a stale pid file is removed.
running_pid() {
  local name=$1 f=$RUN/$1.pid pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f" 2>/dev/null || true)
  case "$pid" in '' | *[!0-9]*) rm -f "$f"; return 1 ;; esac
  if pid_is_ours "$name" "$pid"; then
    echo "$pid"
    return 0
  fi
  # The process may still be starting (title not yet set): accept a live
  # gunicorn whose argv carries our --name.
  if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--name os-real-$name "; then
    echo "$pid"
    return 0
  fi
  log "removing stale pid file $f (pid $pid is not os-real-$name)"
  rm -f "$f"
  return 1
}

# alive PID: the process exists and is not a zombie (a server started from a
# subshell stays a zombie child until that subshell exits).
alive() {
  local st
  # The state follows the ")" closing the command name, which may hold spaces.
  st=$(sed -e 's/.*) //' -e 's/ .*//' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true; }

# wait_ready NAME PID URL LOGFILE
wait_ready() {
  local name=$1 pid=$2 url=$3 logfile=$4 deadline code
  deadline=$(($(date +%s) + READY_TIMEOUT))
  while :; do
    code=$(http_code "$url")
    if [ "$code" = 200 ]; then
      return 0
    fi
    if ! alive "$pid"; then
      log "$name (pid $pid) died while starting; last lines of $logfile:"
      tail -n 40 "$logfile" >&2 || true
      rm -f "$RUN/$name.pid"
      exit 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "$name not ready at $url after ${READY_TIMEOUT}s (last HTTP code '${code:-none}'); last lines of $logfile:"
      tail -n 40 "$logfile" >&2 || true
      log "the process (pid $pid) is left running; stop it with scripts/cloud/down.sh"
      exit 1
    fi
    sleep 0.25
  done
}

# start_server NAME PORT APP CONFIG_ENV_NAME CONFIG_DIR READY_URL TIMEOUT
# Prints "reused" or "started" on stdout.
start_server() {
  local name=$1 port=$2 app=$3 envname=$4 confdir=$5 url=$6 timeout=$7 pid logfile
  logfile=$LOGS/$name.log
  if pid=$(running_pid "$name"); then
    wait_ready "$name" "$pid" "$url" "$logfile"
    echo reused
    return 0
  fi
  if port_busy "$port"; then
    die "port $HOST:$port is busy with a process that is not this local cloud's $name (no live pid in $RUN/$name.pid); free it (ss -ltnp 'sport = :$port') and rerun"
  fi
  printf '\n==== %s starting %s on %s:%s\n' "$(date -u +%FT%TZ)" "$name" "$HOST" "$port" >>"$logfile"
  env "$envname=$confdir" PATH="$VENV/bin:$PATH" \
    setsid "$VENV/bin/gunicorn" \
    --pythonpath "$WSGI" \
    --bind "$HOST:$port" \
    --workers 1 --threads 4 --worker-class gthread \
    --timeout "$timeout" --graceful-timeout 5 \
    --no-control-socket \
    --name "os-real-$name" \
    --access-logfile "$LOGS/$name-access.log" \
    "$app" </dev/null >>"$logfile" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$RUN/$name.pid"
  wait_ready "$name" "$pid" "$url" "$logfile"
  echo started
}

# -------------------------------------------------------------------- venv

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null ||
  die "PYTHON=$PYTHON must be Python >= 3.11 (keystone 30 / glance 33 require it)"
py_version=$("$PYTHON" -c 'import sys; print(sys.version)')
stamp_want=$( { echo "pkgs: $PKGS"; echo "python: $py_version"; cat "$CONSTRAINTS"; } | sha256sum | cut -d' ' -f1)
stamp_file=$VENV/.openstack-image-tools-stamp
if [ -x "$VENV/bin/gunicorn" ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp_want" ]; then
  log "venv up to date ($VENV)"
elif [ -n "${CLOUD_VENV:-}" ] && [ -x "$VENV/bin/gunicorn" ]; then
  log "reusing the venv $VENV as is (CLOUD_VENV; its stamp differs from this spec)"
else
  for name in keystone glance-r1 glance-r2 glance-r3; do
    if running_pid "$name" >/dev/null; then
      die "the venv must be rebuilt but $name is running from it; run scripts/cloud/down.sh first"
    fi
  done
  log "building venv $VENV (about a minute with a cold pip cache)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  # shellcheck disable=SC2086  # PKGS is a list of requirement specs
  "$VENV/bin/pip" install --quiet -c "$CONSTRAINTS" $PKGS >"$LOGS/pip-install.log" 2>&1 || {
    tail -n 30 "$LOGS/pip-install.log" >&2
    die "pip install failed; full log in $LOGS/pip-install.log"
  }
  echo "$stamp_want" >"$stamp_file"
  log "venv built in $(elapsed)s"
fi

# ------------------------------------------------------------ WSGI shims
# Neither project ships a standalone server any more; gunicorn serves the WSGI
# apps. Keystone's config parser reads sys.argv, which under gunicorn is
# gunicorn's own argv: strip it before the app is imported.
write_if_changed "$WSGI/keystone_wsgi.py" >/dev/null <<'EOF'
"""Keystone WSGI entry point for gunicorn (written by scripts/cloud/up.sh)."""
import sys

sys.argv = sys.argv[:1]

from keystone.wsgi.api import application  # noqa: E402,F401
EOF
glance_shim_changed=$(write_if_changed "$WSGI/glance_wsgi.py" <<'EOF'
"""Glance API WSGI entry point for gunicorn (written by scripts/cloud/up.sh)."""
import faulthandler
import signal
import sys

import sqlalchemy.event
from sqlalchemy.engine import Engine

sys.argv = sys.argv[:1]
# `kill -USR2 <worker pid>` writes every thread's stack to the log (to see
# where a stuck import task waits).
faulthandler.register(signal.SIGUSR2, all_threads=True)


# Concurrent writers on SQLite: oslo.db opens every transaction with a plain
# (deferred) BEGIN, so a transaction that reads and then writes fails at once
# with "database is locked" (SQLITE_BUSY_SNAPSHOT in WAL mode, whatever the
# busy timeout) when another writer committed in between. Glance's import
# tasks do exactly that, and a failure in the thread that starts a task
# leaves it "processing" forever. BEGIN IMMEDIATE takes the write lock up
# front, so transactions queue on the busy timeout (?timeout= in
# [database] connection) instead of failing.
@sqlalchemy.event.listens_for(Engine, "before_cursor_execute", retval=True)
def _sqlite_begin_immediate(conn, cursor, statement, parameters, context, executemany):
    if statement == "BEGIN" and conn.dialect.name == "sqlite":
        statement = "BEGIN IMMEDIATE"
    return statement, parameters


from glance.wsgi.api import application  # noqa: E402,F401
EOF
)

# ---------------------------------------------------------------- configs
config_changed=()

K=$ETC/keystone
mkdir -p "$K" "$DATA/keystone" "$DATA/keystone/fernet-keys" "$DATA/keystone/credential-keys"
if [ -n "$(write_if_changed "$K/keystone.conf" <<EOF
# Written by scripts/cloud/up.sh; regenerated on every run.
[DEFAULT]
use_stderr = true

[database]
connection = sqlite:///$DATA/keystone/keystone.db

[token]
provider = fernet
expiration = $KS_TOKEN_EXPIRATION

[fernet_tokens]
key_repository = $DATA/keystone/fernet-keys

[credential]
key_repository = $DATA/keystone/credential-keys

[cache]
enabled = $KS_CACHE
backend = dogpile.cache.memory

[identity]
password_hash_rounds = $KS_HASH_ROUNDS
EOF
)" ]; then config_changed+=(keystone); fi

paste_src=$VENV/etc/glance/glance-api-paste.ini
if [ ! -f "$paste_src" ]; then
  paste_src=$(find "$VENV" -name glance-api-paste.ini -print -quit)
fi
if [ -z "$paste_src" ] || [ ! -f "$paste_src" ]; then die "glance-api-paste.ini not found in $VENV"; fi

# Staging: glance-download and web-download write the whole image there,
# then read it back into the store. On tmpfs that round trip costs no disk
# I/O (measured: two regions importing five images, 1 GiB, side by side went
# from 1.33x to 0.72x the streaming time); it holds only the images being
# imported at the time. One directory per state directory, so private clouds
# never share it.
if [ -z "${GLANCE_STAGING:-}" ]; then
  if [ -d /dev/shm ] && [ -w /dev/shm ] && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
    GLANCE_STAGING=/dev/shm/openstack-image-tools-staging-$(printf '%s' "$LOCAL_CLOUD_DIR" | sha256sum | cut -c1-12)
  else
    GLANCE_STAGING=
  fi
fi

# The hosts Glance's import filter lets web-download and glance-download
# reach: the loopback names, and a private cloud's own address.
ALLOWED_HOSTS=127.0.0.1,localhost
if [ "$HOST" != 127.0.0.1 ]; then ALLOWED_HOSTS=$ALLOWED_HOSTS,$HOST; fi

glance_conf() {
  local name=$1 region=$2 port=$3 G=$ETC/$1 D=$DATA/$1 staging
  staging=${GLANCE_STAGING:+$GLANCE_STAGING/$1}
  staging=${staging:-$D/staging}
  mkdir -p "$G" "$D/images" "$D/images2" "$staging" "$D/tasks" "$D/locks"
  write_if_changed "$G/glance-api-paste.ini" <"$paste_src"
  write_if_changed "$G/glance-api.conf" <<EOF
# Written by scripts/cloud/up.sh; regenerated on every run.
[DEFAULT]
use_stderr = true
public_endpoint = http://$HOST:$port
enabled_backends = file1:file, file2:file
enabled_import_methods = [glance-direct,web-download,copy-image,glance-download]

# A busy timeout of 60 s (pysqlite's timeout=; its default is 5 s) and no
# fsync per commit: concurrent imports queue on the write lock (see the
# BEGIN IMMEDIATE note in glance_wsgi.py) instead of failing, and hold it
# briefly. The database is in WAL mode (set below, stored in the file).
[database]
connection = sqlite:///$D/glance.db?timeout=60
sqlite_synchronous = false

[glance_store]
default_backend = file1

[file1]
filesystem_store_datadir = $D/images

# A second store, so that copy-image has somewhere to copy to.
[file2]
filesystem_store_datadir = $D/images2

[os_glance_staging_store]
filesystem_store_datadir = $staging

[os_glance_tasks_store]
filesystem_store_datadir = $D/tasks

[oslo_concurrency]
lock_path = $D/locks

# web-download: tests serve images from a local HTTP server on an ephemeral
# port. Glance refuses loopback addresses unless the host is whitelisted, so
# allow exactly the loopback names (and CLOUD_HOST, which glance-download
# pulls from) and any port (nothing else is reachable).
[import_filtering_opts]
allowed_hosts = [$ALLOWED_HOSTS]
allowed_ports = []

[paste_deploy]
flavor = keystone
config_file = $G/glance-api-paste.ini

[keystone_authtoken]
www_authenticate_uri = $KS_URL
auth_url = $KS_URL
auth_type = password
username = glance
password = $GLANCE_PASSWORD
project_name = service
user_domain_name = Default
project_domain_name = Default
region_name = $region
EOF
}
if [ -n "$(glance_conf glance-r1 RegionOne "$GLANCE_R1_PORT")" ] || [ -n "$glance_shim_changed" ]; then config_changed+=(glance-r1); fi
if [ -n "$(glance_conf glance-r2 RegionTwo "$GLANCE_R2_PORT")" ] || [ -n "$glance_shim_changed" ]; then config_changed+=(glance-r2); fi
if [ "$REGION_COUNT" = 3 ] && { [ -n "$(glance_conf glance-r3 RegionThree "$GLANCE_R3_PORT")" ] || [ -n "$glance_shim_changed" ]; }; then config_changed+=(glance-r3); fi

# ------------------------------------------------------- one-time setup
ks_manage() { "$VENV/bin/keystone-manage" --config-file "$K/keystone.conf" "$@"; }

if [ ! -f "$DATA/keystone/.initialised" ]; then
  if running_pid keystone >/dev/null; then
    die "keystone is running but its database is not marked initialised; run scripts/cloud/down.sh first"
  fi
  log "initialising keystone (db_sync, fernet/credential keys, bootstrap)"
  {
    ks_manage db_sync
    ks_manage fernet_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)"
    ks_manage credential_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)"
    # The password travels in the environment, never on a command line.
    OS_BOOTSTRAP_PASSWORD=$ADMIN_PASSWORD ks_manage bootstrap \
      --bootstrap-username admin \
      --bootstrap-project-name admin \
      --bootstrap-role-name admin \
      --bootstrap-service-name keystone \
      --bootstrap-region-id RegionOne \
      --bootstrap-admin-url "$KS_URL" \
      --bootstrap-public-url "$KS_URL" \
      --bootstrap-internal-url "$KS_URL"
  } >>"$LOGS/keystone-manage.log" 2>&1 || {
    tail -n 30 "$LOGS/keystone-manage.log" >&2
    die "keystone initialisation failed; full log in $LOGS/keystone-manage.log"
  }
  touch "$DATA/keystone/.initialised"
fi

for name in "${GLANCE_NAMES[@]}"; do
  if [ ! -f "$DATA/$name/.initialised" ]; then
    if running_pid "$name" >/dev/null; then
      die "$name is running but its database is not marked initialised; run scripts/cloud/down.sh first"
    fi
    log "initialising $name database"
    "$VENV/bin/glance-manage" --config-file "$ETC/$name/glance-api.conf" db_sync >>"$LOGS/glance-manage.log" 2>&1 || {
      tail -n 30 "$LOGS/glance-manage.log" >&2
      die "glance-manage db_sync failed for $name; full log in $LOGS/glance-manage.log"
    }
    touch "$DATA/$name/.initialised"
  fi
done

# SQLite in WAL mode: readers no longer block the writer, so concurrent
# requests to one Glance do not fail with "database is locked" as often.
# The mode is stored in the database file; this is a no-op once set.
for db in "$DATA/keystone/keystone.db" "$DATA/glance-r1/glance.db" "$DATA/glance-r2/glance.db" "$DATA/glance-r3/glance.db"; do
  [ -f "$db" ] || continue
  "$VENV/bin/python" - "$db" <<'PY' || log "could not switch $db to WAL (in use?); continuing"
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=10)
mode = con.execute("PRAGMA journal_mode").fetchone()[0]
if mode.lower() != "wal":
    con.execute("PRAGMA journal_mode=WAL")
con.close()
PY
done

# ----------------------------------------------------------- servers
# RESTART_CHANGED=1: a running server whose config changed is stopped here
# (down.sh, this state directory's pid files only) and started again below.
if [ "$RESTART_CHANGED" = 1 ]; then
  for name in "${config_changed[@]}"; do
    if running_pid "$name" >/dev/null; then
      log "config of $name changed: restarting it"
      LOCAL_CLOUD_DIR=$LOCAL_CLOUD_DIR "$SCRIPT_DIR/down.sh" "$name" 9>&-
    fi
  done
fi
declare -A server_state=()
state=$(start_server keystone "$KS_PORT" keystone_wsgi:application \
  OS_KEYSTONE_CONFIG_DIR "$K" "$KS_URL" 120)
server_state[keystone]=$state
log "keystone $state: $KS_URL ($(elapsed)s)"

# The catalog (service user, regions, endpoints, demo project) must exist
# before Glance's auth middleware can validate anything; it does not need
# Glance to be up.
OIT_ADMIN_PASSWORD=$ADMIN_PASSWORD OIT_GLANCE_PASSWORD=$GLANCE_PASSWORD OIT_DEMO_PASSWORD=$DEMO_PASSWORD \
  "$VENV/bin/python" "$SCRIPT_DIR/catalog.py" ensure \
  --auth-url "$KS_URL" \
  --region-one-image "$GLANCE_R1_ENDPOINT" \
  --region-two-image "$GLANCE_R2_ENDPOINT" \
  --region-three-image "$GLANCE_R3_ENDPOINT"

state=$(start_server glance-r1 "$GLANCE_R1_PORT" glance_wsgi:application \
  OS_GLANCE_CONFIG_DIR "$ETC/glance-r1" "http://$HOST:$GLANCE_R1_PORT/healthcheck" 600)
server_state[glance-r1]=$state
log "glance RegionOne $state: http://$HOST:$GLANCE_R1_PORT ($(elapsed)s)"
state=$(start_server glance-r2 "$GLANCE_R2_PORT" glance_wsgi:application \
  OS_GLANCE_CONFIG_DIR "$ETC/glance-r2" "http://$HOST:$GLANCE_R2_PORT/healthcheck" 600)
server_state[glance-r2]=$state
log "glance RegionTwo $state: http://$HOST:$GLANCE_R2_PORT ($(elapsed)s)"
if [ "$REGION_COUNT" = 3 ]; then
  state=$(start_server glance-r3 "$GLANCE_R3_PORT" glance_wsgi:application \
    OS_GLANCE_CONFIG_DIR "$ETC/glance-r3" "http://$HOST:$GLANCE_R3_PORT/healthcheck" 600)
  server_state[glance-r3]=$state
  log "glance RegionThree $state: http://$HOST:$GLANCE_R3_PORT ($(elapsed)s)"
fi

for name in "${config_changed[@]}"; do
  [ "${server_state[$name]}" = reused ] || continue
  log "warning: the config of $name changed; a server that was already running still uses the old one (run scripts/cloud/down.sh && scripts/cloud/up.sh)"
done

# ----------------------------------------------------------- clouds.yaml
write_if_changed "$LOCAL_CLOUD_DIR/clouds.yaml" >/dev/null <<EOF
# Written by scripts/cloud/up.sh; regenerated on every run.
clouds:
  local:
    auth:
      auth_url: $KS_URL
      username: admin
      password: $ADMIN_PASSWORD
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    regions: [${REGIONS//,/, }]
    identity_api_version: 3
    interface: public
  local-demo:
    auth:
      auth_url: $KS_URL
      username: demo
      password: $DEMO_PASSWORD
      project_name: demo
      user_domain_name: Default
      project_domain_name: Default
    regions: [${REGIONS//,/, }]
    identity_api_version: 3
    interface: public
EOF

# ----------------------------------------------------------- final check
OIT_ADMIN_PASSWORD=$ADMIN_PASSWORD "$VENV/bin/python" "$SCRIPT_DIR/catalog.py" check \
  --auth-url "$KS_URL" --regions "$REGIONS"

log "ready in $(elapsed)s"
cat <<EOF

Local cloud is up (state in $LOCAL_CLOUD_DIR):
  Keystone          $KS_URL        (admin / \$ADMIN_PASSWORD, project admin; demo / \$DEMO_PASSWORD, project demo)
  Glance RegionOne  http://$HOST:$GLANCE_R1_PORT
  Glance RegionTwo  http://$HOST:$GLANCE_R2_PORT
  Glance RegionThree http://$HOST:$GLANCE_R3_PORT (when REGION_COUNT=3)
Use it:
  export OS_CLIENT_CONFIG_FILE=$LOCAL_CLOUD_DIR/clouds.yaml
  $VENV/bin/openstack --os-cloud local --os-region-name RegionTwo image list
Stop it:  $SCRIPT_DIR/down.sh
EOF
