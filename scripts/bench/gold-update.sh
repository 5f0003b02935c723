#!/usr/bin/env bash
# Benchmark `imagebuilder update` (himlarcli image.py's monthly update) on the
# local cloud, with the builder played by Python's http.server on 127.0.0.1:
#
#  1. unchanged: a set of 3 images whose builder md5 equals the GOLD image's
#     checksum; ROUNDS runs, wall time each, and the builder's log must show
#     no image download at all (only the three -latest.md5 files);
#  2. changed: one image rebuilt (SIZE_MIB of random data): `update -n`
#     streams it from the builder into Glance while hashing; its transfer
#     rate is compared with openstack-client's raw upload of the same file
#     from disk (the glance_transfer example, `upload_file`).
#
#   scripts/bench/gold-update.sh                 # 512 MiB, 5 rounds
#   SIZE_MIB=1024 ROUNDS=3 scripts/bench/gold-update.sh
#
# Needs the local cloud (scripts/cloud/up.sh). Every image it creates carries
# a tag unique to the run and is deleted at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL_CLOUD_DIR=${LOCAL_CLOUD_DIR:-$HOME/.cache/openstack-image-tools/local-cloud}
export OS_CLIENT_CONFIG_FILE=${OS_CLIENT_CONFIG_FILE:-$LOCAL_CLOUD_DIR/clouds.yaml}
export OS_CLOUD=${OS_TEST_CLOUD:-local}
SIZE_MIB=${SIZE_MIB:-512}
ROUNDS=${ROUNDS:-5}
OSC=${OSC:-$LOCAL_CLOUD_DIR/venv/bin/openstack}
PY=${PY:-$LOCAL_CLOUD_DIR/venv/bin/python}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

die() { echo "gold-update bench: $*" >&2; exit 1; }
[[ -f $OS_CLIENT_CONFIG_FILE ]] || die "$OS_CLIENT_CONFIG_FILE missing: run scripts/cloud/up.sh"
[[ -x $OSC ]] || die "$OSC missing: run scripts/cloud/up.sh"

WORK=$(mktemp -d)
chmod 700 "$WORK"
TYPE=gb$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
HTTP_PID=""
cleanup() {
    [[ -n $HTTP_PID ]] && kill "$HTTP_PID" 2>/dev/null || true
    for id in $("$OSC" image list --tag "$TYPE" -f value -c ID 2>/dev/null); do
        "$OSC" image delete "$id" >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "building release binaries..." >&2
(cd "$ROOT" && cargo build --release -q -p imagebuilder && cargo build --release -q -p openstack-client --example glance_transfer)
IB=$TARGET/release/imagebuilder
XFER=$TARGET/release/examples/glance_transfer

mkdir -p "$WORK/builder" "$WORK/config/images"
publish() { # publish SHORT FILE: the builder's -latest.raw and -latest.md5
    mv "$2" "$WORK/builder/$1-latest.raw"
    (cd "$WORK/builder" && md5sum "$1-latest.raw" > "$1-latest.md5")
}
for s in alpha beta gamma; do
    head -c $((1024 * 1024)) /dev/urandom > "$WORK/$s.tmp"
    publish "$s" "$WORK/$s.tmp"
done

PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$WORK/builder" && exec "$PY" -m http.server --bind 127.0.0.1 "$PORT" 2> "$WORK/http.log" >/dev/null) &
HTTP_PID=$!
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/alpha-latest.md5" && break; sleep 0.1; done

{
    echo "type: '$TYPE'"
    echo "images:"
    for s in alpha beta gamma; do
        cat <<EOF
  '$s':
    'name':             'GOLD $s $TYPE'
    'depricated':       'Outdated ($s $TYPE)'
    'url':              'http://127.0.0.1:$PORT/'
    'latest':           '$s-latest.raw'
    'builder_checksum': '$s-latest.md5'
    'min_ram':          256
    'min_disk':         1
    'disk_format':      'raw'
    'visibility':       'private'
EOF
    done
} > "$WORK/config/images/bench.yaml"

cd "$WORK"
echo "creating the 3 GOLD images..." >&2
"$IB" update -i bench.yaml >/dev/null

now() { date +%s.%N; }
echo "unchanged: $ROUNDS rounds of update over 3 images" >&2
: > "$WORK/http.log"
TIMES=()
for r in $(seq 1 "$ROUNDS"); do
    t0=$(now)
    "$IB" update -i bench.yaml > "$WORK/out.unchanged"
    t1=$(now)
    TIMES+=("$(echo "$t1 - $t0" | bc)")
    [[ $(grep -c 'no new image needed' "$WORK/out.unchanged") == 3 ]] || die "round $r: not all unchanged: $(cat "$WORK/out.unchanged")"
done
DOWNLOADS=$(grep -c 'GET /[a-z]*-latest.raw' "$WORK/http.log" || true)
MD5S=$(grep -c 'GET /[a-z]*-latest.md5' "$WORK/http.log" || true)
SORTED=$(printf '%s\n' "${TIMES[@]}" | sort -n)
MEDIAN=$(echo "$SORTED" | awk -v m=$(( (ROUNDS + 1) / 2 )) 'NR == m')
MAX=$(echo "$SORTED" | tail -1)

echo "changed: alpha rebuilt, $SIZE_MIB MiB" >&2
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$WORK/big.raw"
cp "$WORK/big.raw" "$WORK/alpha.tmp"
publish alpha "$WORK/alpha.tmp"
sync
t0=$(now)
"$IB" update -i bench.yaml -n alpha > "$WORK/out.changed"
t1=$(now)
UPD=$(echo "$t1 - $t0" | bc)
grep -q 'alpha: created image .* renamed and deactivated' "$WORK/out.changed" || die "alpha was not rotated: $(cat "$WORK/out.changed")"
t0=$(now)
"$XFER" upload "$OS_CLOUD" RegionOne "$WORK/big.raw" "bench-raw-$TYPE" > "$WORK/id.raw" 2> "$WORK/err.raw"
t1=$(now)
RAW=$(echo "$t1 - $t0" | bc)
"$OSC" image set --tag "$TYPE" "$(cat "$WORK/id.raw")" >/dev/null
RATE_UPD=$(echo "scale=1; $SIZE_MIB / $UPD" | bc)
RATE_RAW=$(echo "scale=1; $SIZE_MIB / $RAW" | bc)
RATIO=$(echo "scale=3; $RAW / $UPD" | bc)

cat <<EOF
| measure | value |
|---|---|
| load average at start | $(cut -d' ' -f1-3 /proc/loadavg) |
| unchanged, 3 images: median / max of $ROUNDS runs (s) | $MEDIAN / $MAX |
| unchanged: image downloads / md5 fetches | $DOWNLOADS / $MD5S |
| changed ($SIZE_MIB MiB): update -n alpha, whole command (s) | $UPD ($RATE_UPD MiB/s) |
| same file: openstack-client upload_file from disk (s) | $RAW ($RATE_RAW MiB/s) |
| update rate / raw upload rate | $RATIO |
EOF
