#!/usr/bin/env bash
# Benchmark: packuilon against the real RabbitMQ on 127.0.0.1:5672
# (scripts/rabbitmq/up.sh) and the real packer.
#   latency   : a profile change served by a local HTTP server (python3
#               http.server) → packer starting, with `cdb2rabbit --interval 1`
#               and `rabbit2packer` running (target: under 1 s). Packer is a
#               stand-in here that only records when it was started. RUNS
#               changes, one at a time.
#   throughput: N (200) distinct profiles queued, then `rabbit2packer` with
#               THREAD_COUNT=4 and the real packer on a trivial null-builder
#               template; checks no message lost (N builds, queue empty,
#               nothing on <QUEUE>.failed) and no duplicate build (one log
#               per build name); reports builds/s next to packer's own start
#               time (one `packer build` of the same template, sequential).
#
#   scripts/bench/packuilon.sh
#   N=200 RUNS=5 scripts/bench/packuilon.sh
#   BENCH_PROFILE=debug N=20 scripts/bench/packuilon.sh   # quick check
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
N=${N:-200}
RUNS=${RUNS:-5}
export PATH=$HOME/.cargo/bin:$PATH CHECKPOINT_DISABLE=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

die() { echo "packuilon bench: $*" >&2; exit 1; }
command -v packer >/dev/null || die "packer is not on PATH"
command -v python3 >/dev/null || die "python3 is needed for the profile server"
(exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null || die "RabbitMQ is not up on 127.0.0.1:5672 (scripts/rabbitmq/up.sh)"

# BENCH_PROFILE=debug reuses a debug build (the numbers then include debug
# overhead; report release numbers).
BENCH_PROFILE=${BENCH_PROFILE:-release}
if [ "$BENCH_PROFILE" = release ]; then
  cargo build --release -q -p packuilon
else
  cargo build -q -p packuilon
fi
BIN=$CARGO_TARGET_DIR/$BENCH_PROFILE/packuilon
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
now() { date +%s.%N; }
lines() { if [ -e "$1" ]; then wc -l <"$1"; else echo 0; fi; }

QUEUE=packuilon-bench-$$-$(date +%s)
mkdir -p "$WORK"/{www/profiles,logs,build,state}
printf 'export OS_PROJECT_ID=bench\n' >"$WORK/openrc"
echo '{"sl7x-x86_64": "00000000-0000-4000-8000-000000000001"}' >"$WORK/source-images.json"
cat >"$WORK/t.json" <<'T'
{"builders": [{"type": "null", "communicator": "none"}],
 "provisioners": [{"type": "shell-local", "inline": ["echo '--> openstack: An image was created: '$IMAGE"]}]}
T
echo '{"DEFAULT": ["t.json"]}' >"$WORK/template-map.json"
config() { # $1 = packer path, $2 = thread count
  cat >"$WORK/config.ini" <<C
[global]
QUEUE = $QUEUE
RABBIT_HOST = 127.0.0.1
[cdb2rabbit]
PROFILE_INFO_URL = http://127.0.0.1:$PORT/profiles-info.xml
PROFILE_DIR_URL = http://127.0.0.1:$PORT/profiles/
PROFILE_MATCH = .cloud.template.json
CACHE_DIR = $WORK/cache
[rabbit2packer]
THREAD_COUNT = $2
LOG_DIR = $WORK/logs
BUILD_FILE_DIR = $WORK/build
STATE_DIR = $WORK/state
PACKER_AUTH_FILE = $WORK/openrc
PACKER_TEMPLATE_MAP = $WORK/template-map.json
IMAGES_CONFIG = $WORK/source-images.json
PACKER_PATH = $1
RETRY_DELAY = 0
C
}
profile() { # $1 personality, $2 a revision marker
  printf '{"metadata":{"template":{"branch":{"name":"prod","type":"domain"}}},"system":{"personality":{"name":"%s"},"archetype":{"name":"ral-tier1"},"os":{"architecture":"x86_64","distribution":{"name":"sl"},"version":{"name":"7x"}}},"revision":"%s"}\n' "$1" "$2"
}

# ---- latency ------------------------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$WORK/www" >/dev/null 2>&1 &
PIDS+=($!)
cat >"$WORK/stamp-packer" <<S
#!/bin/sh
date +%s.%N >> $WORK/started
echo '--> openstack: An image was created: 00000000-0000-4000-8000-000000000002'
S
chmod +x "$WORK/stamp-packer"
config "$WORK/stamp-packer" 4
info() { # $1 = revision
  printf '<?xml version="1.0" encoding="utf-8"?>\n<profiles>\n<profile mtime="%s">web.cloud.template.json</profile>\n</profiles>\n' "$1" >"$WORK/www/profiles-info.xml.new"
  mv "$WORK/www/profiles-info.xml.new" "$WORK/www/profiles-info.xml"
}
profile web 0 >"$WORK/www/profiles/web.cloud.template.json"
info 0
until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do sleep 0.1; done
"$BIN" --config "$WORK/config.ini" -q rabbit2packer &
PIDS+=($!)
"$BIN" --config "$WORK/config.ini" -q cdb2rabbit --interval 1 &
PIDS+=($!)
until [ -e "$WORK/cache/cached_info.xml" ]; do sleep 0.1; done
lat=()
for r in $(seq 1 "$RUNS"); do
  # A random phase against the 1 s tick, so the wait for the next pass is
  # sampled rather than locked to the loop.
  sleep "0.$((RANDOM % 10))"
  before=$(lines "$WORK/started")
  profile web "$r" >"$WORK/www/profiles/web.cloud.template.json.new"
  mv "$WORK/www/profiles/web.cloud.template.json.new" "$WORK/www/profiles/web.cloud.template.json"
  t0=$(now)
  info "$r"
  deadline=$(( $(date +%s) + 60 ))
  until [ "$(lines "$WORK/started")" -gt "$before" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || die "change $r never reached packer"
    sleep 0.02
  done
  t1=$(tail -n 1 "$WORK/started")
  lat+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')")
done
for p in "${PIDS[@]:1}"; do kill "$p" 2>/dev/null || true; done
wait "${PIDS[@]:1}" 2>/dev/null || true
PIDS=("${PIDS[0]}")
echo "latency (profile change served -> packer started, cdb2rabbit --interval 1), $RUNS changes: ${lat[*]} s"
printf '%s\n' "${lat[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "  median %.3f s, max %.3f s\n", a[int((NR + 1) / 2)], a[NR] }'

# ---- throughput ---------------------------------------------------------
rm -rf "$WORK/logs" "$WORK/build" "$WORK/state"; mkdir -p "$WORK/logs" "$WORK/build" "$WORK/state"
QUEUE=$QUEUE-tp
config packer 4
for i in $(seq 1 "$N"); do "$BIN" --config "$WORK/config.ini" -q trigger --personality "p$i"; done
t0=$(now)
"$BIN" --config "$WORK/config.ini" -q rabbit2packer &
R=$!
PIDS+=("$R")
deadline=$(( $(date +%s) + 3600 ))
until [ "$(grep -l 'Build finished' "$WORK"/logs/*.log 2>/dev/null | wc -l)" -ge "$N" ]; do
  [ "$(date +%s)" -lt "$deadline" ] || die "not all builds finished"
  sleep 0.2
done
t1=$(now)
kill -TERM "$R"; wait "$R" || true
logs=$(ls "$WORK/logs" | wc -l)
names=$(ls "$WORK/logs" | sed 's/\.t\..*//' | sort -u | wc -l)
ok=$(grep -l 'exit code 0' "$WORK"/logs/*.log | wc -l)
python3 - "$WORK/state/builds.json" "$N" <<'P'
import json, sys
r = json.load(open(sys.argv[1]))
ok = sum(1 for e in r.values() if e["state"] == "succeeded")
print(f"  record: {len(r)} build names, {ok} succeeded")
P
elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
one0=$(now); packer build -color=false "$WORK/build/p1-sl7x-x86_64.t.json" >/dev/null; one1=$(now)
one=$(awk -v a="$one0" -v b="$one1" 'BEGIN { printf "%.2f", b - a }')
# Packer alone, 4 at a time, on the same build files: the ceiling.
P=$(( N < 40 ? N : 40 ))
par0=$(now)
files=("$WORK"/build/*.json)
printf '%s\n' "${files[@]:0:$P}" | xargs -P 4 -I{} packer build -color=false {} >/dev/null
par1=$(now)
par=$(awk -v n="$P" -v a="$par0" -v b="$par1" 'BEGIN { printf "%.2f", n / (b - a) }')
echo "throughput: $N queued profiles, THREAD_COUNT=4, real packer (null builder): $elapsed s, $(awk -v n="$N" -v e="$elapsed" 'BEGIN { printf "%.2f", n / e }') builds/s"
echo "  logs $logs, distinct build names $names, exit code 0 in $ok (expect $N each: nothing lost, no duplicate)"
echo "  packer alone: one build $one s start to exit; $P builds 4 at a time: $par builds/s (the ceiling on this machine)"
[ "$logs" -eq "$N" ] && [ "$names" -eq "$N" ] && [ "$ok" -eq "$N" ] || die "lost or duplicated builds"
