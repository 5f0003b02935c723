#!/usr/bin/env bash
# Benchmark: sync five images totalling 1 GiB from RegionOne to RegionTwo
# (and RegionThree).
#
#   peer:       for each image, `openstack image save` (RegionOne) then
#               `openstack image create --file` (RegionTwo), the procedure the
#               original's README documents; then the same into RegionThree;
#   pipe:       for each image, `curl` GET of the master's data piped into a
#               `curl` PUT into RegionTwo, with a ready token (the physical limit);
#   glancesync: `glancesync RegionTwo` (release build, transfer = stream), then
#               `glancesync RegionTwo RegionThree` (one read of the master for
#               both), then the same with transfer = glance-download (the
#               target Glance pulls the data itself).
#
# Reports wall time, both ratios and peak RSS (/usr/bin/time), and per
# glancesync run the CPU time of each region's Glance workers (from the
# cloud's pid files) and of glancesync itself. Needs the local
# cloud (scripts/cloud/up.sh). Passwords never appear on a command line: OSC
# reads clouds.yaml, glancesync reads a mode-600 config in a private temp dir.
#
#   scripts/bench/glancesync-transfer.sh
#   SIZES_MIB="128 160 192 224 320" scripts/bench/glancesync-transfer.sh
#   ROUNDS=5 PEER=0 scripts/bench/glancesync-transfer.sh
#
# ROUNDS (default 1) repeats the pipe and the three glancesync runs as
# interleaved rounds (pipe, stream to one, stream to two, server-side) and
# reports each round's ratios and their medians: on a loaded machine, the
# pairs measured side by side are what can be compared. PEER=0 skips the
# (slow, about 40 s per region) OpenStack CLI peer.
#
# MAX_CONCURRENT_IMPORTS (default: glancesync's default) sets the
# glance-download runs' `max_concurrent_imports` (imports at once per region).
#
# On the shared local cloud, the benchmark holds the cloud-test lock
# (cloud-test-support's LOCK_FILE_NAME in the temporary directory) while it
# writes, one round at a time, so it is not measured against a test's writes.
# A private cloud (scripts/cloud/up.sh with LOCAL_CLOUD_DIR, CLOUD_HOST and
# CLOUD_VENV; then the same LOCAL_CLOUD_DIR here) needs no lock:
#
#   LOCAL_CLOUD_DIR=/tmp/bench-cloud CLOUD_HOST=127.0.95.1 \
#     CLOUD_VENV=~/.cache/openstack-image-tools/local-cloud/venv scripts/cloud/up.sh
#   LOCAL_CLOUD_DIR=/tmp/bench-cloud scripts/bench/glancesync-transfer.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED_CLOUD_DIR=$HOME/.cache/openstack-image-tools/local-cloud
LOCAL_CLOUD_DIR=${LOCAL_CLOUD_DIR:-$SHARED_CLOUD_DIR}
if [[ $LOCAL_CLOUD_DIR != "$SHARED_CLOUD_DIR" ]]; then
    # A private cloud: its own clouds.yaml, whatever the caller's shell says.
    export OS_CLIENT_CONFIG_FILE=$LOCAL_CLOUD_DIR/clouds.yaml
fi
export OS_CLIENT_CONFIG_FILE=${OS_CLIENT_CONFIG_FILE:-$LOCAL_CLOUD_DIR/clouds.yaml}
MAX_CONCURRENT_IMPORTS=${MAX_CONCURRENT_IMPORTS:-}
CLOUD=${OS_TEST_CLOUD:-local}
SIZES_MIB=${SIZES_MIB:-"128 160 192 224 320"}
ROUNDS=${ROUNDS:-1}
PEER=${PEER:-1}
OSC=${OSC:-$SHARED_CLOUD_DIR/venv/bin/openstack}
PY=${PY:-$SHARED_CLOUD_DIR/venv/bin/python}

die() { echo "glancesync-transfer bench: $*" >&2; exit 1; }
[[ -f $OS_CLIENT_CONFIG_FILE ]] || die "$OS_CLIENT_CONFIG_FILE missing: run scripts/cloud/up.sh"
[[ -x $OSC ]] || die "$OSC missing: run scripts/cloud/up.sh"
[[ -x /usr/bin/time ]] || die "/usr/bin/time missing (apt-get install time)"

if [[ $LOCAL_CLOUD_DIR == "$SHARED_CLOUD_DIR" ]]; then
    LOCK=${TMPDIR:-/tmp}/openstack-client-cloud-tests.lock
    exec 8>>"$LOCK"
    lock() { flock 8; }
    unlock() { flock -u 8; }
else
    lock() { :; }
    unlock() { :; }
fi

RUN=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
PREFIX="gs-bench-$RUN-"
WORK=$(mktemp -d)
chmod 700 "$WORK"
osc() { "$OSC" --os-cloud "$CLOUD" "$@"; }
cleanup() {
    for region in RegionOne RegionTwo RegionThree; do
        osc --os-region-name "$region" image list -f value -c ID -c Name 2>/dev/null |
            awk -v p="$PREFIX" 'index($2, p) == 1 {print $1}' |
            while read -r id; do osc --os-region-name "$region" image delete "$id" >/dev/null 2>&1 || true; done
    done
    rm -rf "$WORK"
}
trap 'lock; cleanup' EXIT

echo "start: $(date -u '+%F %T UTC'), uptime: $(uptime)"
echo "building glancesync (release)..." >&2
(cd "$ROOT" && cargo build --release -q -p glancesync)
GS=${CARGO_TARGET_DIR:-$ROOT/target}/release/glancesync

# Master images.
lock
total=0
i=0
for mib in $SIZES_MIB; do
    i=$((i + 1))
    head -c "$((mib * 1024 * 1024))" /dev/urandom >"$WORK/src.raw"
    osc --os-region-name RegionOne image create --public --disk-format raw --container-format bare \
        --file "$WORK/src.raw" "${PREFIX}img$i" -f value -c id >>"$WORK/ids"
    total=$((total + mib))
done
rm -f "$WORK/src.raw"
echo "created $i master images, $total MiB in total" >&2
unlock

# Peer procedure: save to a local file, create from it (one image at a time).
peer_rss=0
peer_s=0
peer3_s=0
if [[ $PEER == 1 ]]; then
lock
start=$(date +%s.%N)
n=0
while read -r id; do
    n=$((n + 1))
    /usr/bin/time -f "%M" -o "$WORK/rss" "$OSC" --os-cloud "$CLOUD" --os-region-name RegionOne \
        image save --file "$WORK/img.raw" "$id"
    r=$(tail -1 "$WORK/rss"); ((r > peer_rss)) && peer_rss=$r
    /usr/bin/time -f "%M" -o "$WORK/rss" "$OSC" --os-cloud "$CLOUD" --os-region-name RegionTwo \
        image create --public --disk-format raw --container-format bare --file "$WORK/img.raw" \
        "${PREFIX}peer$n" -f value -c id >/dev/null
    r=$(tail -1 "$WORK/rss"); ((r > peer_rss)) && peer_rss=$r
    rm -f "$WORK/img.raw"
done <"$WORK/ids"
end=$(date +%s.%N)
peer_s=$(echo "$end - $start" | bc -l)

# The peer again, into RegionThree (what it takes to serve both regions).
start=$(date +%s.%N)
n=0
while read -r id; do
    n=$((n + 1))
    "$OSC" --os-cloud "$CLOUD" --os-region-name RegionOne image save --file "$WORK/img.raw" "$id"
    "$OSC" --os-cloud "$CLOUD" --os-region-name RegionThree \
        image create --public --disk-format raw --container-format bare --file "$WORK/img.raw" \
        "${PREFIX}peer$n" -f value -c id >/dev/null
    rm -f "$WORK/img.raw"
done <"$WORK/ids"
end=$(date +%s.%N)
peer3_s=$(echo "$end - $start" | bc -l)
unlock
fi

# The pipe: a ready token (in a mode-600 header file), curl GET | curl PUT.
"$PY" - "$OS_CLIENT_CONFIG_FILE" "$CLOUD" "$WORK/token.hdr" "$WORK/endpoints" <<'PYEOF'
import json, os, sys, urllib.request, yaml
path, cloud, hdr, eps = sys.argv[1:]
a = yaml.safe_load(open(path))["clouds"][cloud]["auth"]
body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
    "name": a["username"], "password": a["password"],
    "domain": {"name": a.get("user_domain_name", "Default")}}}},
    "scope": {"project": {"name": a["project_name"],
              "domain": {"name": a.get("project_domain_name", "Default")}}}}}
req = urllib.request.Request(a["auth_url"].rstrip("/") + "/auth/tokens",
                             data=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req) as r:
    token = r.headers["X-Subject-Token"]
    cat = json.load(r)["token"]["catalog"]
fd = os.open(hdr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, f"X-Auth-Token: {token}\n".encode())
os.close(fd)
with open(eps, "w") as f:
    for s in cat:
        if s["type"] == "image":
            for e in s["endpoints"]:
                if e["interface"] == "public":
                    f.write(f"{e['region_id']} {e['url'].rstrip('/')}\n")
PYEOF
R1=$(awk '$1 == "RegionOne" {print $2}' "$WORK/endpoints")
R2=$(awk '$1 == "RegionTwo" {print $2}' "$WORK/endpoints")
pipe_run() {
start=$(date +%s.%N)
n=0
while read -r id; do
    n=$((n + 1))
    new=$(curl -sf -H "@$WORK/token.hdr" -H 'Content-Type: application/json' \
        -d "{\"name\": \"${PREFIX}pipe$n\", \"disk_format\": \"raw\", \"container_format\": \"bare\"}" \
        "$R2/v2/images" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    curl -sf -H "@$WORK/token.hdr" "$R1/v2/images/$id/file" |
        curl -sf -H "@$WORK/token.hdr" -H 'Content-Type: application/octet-stream' -T - \
            "$R2/v2/images/$new/file"
done <"$WORK/ids"
end=$(date +%s.%N)
pipe_s=$(echo "$end - $start" | bc -l)
# Delete the pipe's copies (they would count as glancesync's otherwise).
osc --os-region-name RegionTwo image list -f value -c ID -c Name |
    awk -v p="${PREFIX}pipe" 'index($2, p) == 1 {print $1}' |
    while read -r id; do osc --os-region-name RegionTwo image delete "$id" >/dev/null; done
}

# glancesync: config with the admin credentials (mode 600, never on a command line).
"$PY" - "$OS_CLIENT_CONFIG_FILE" "$CLOUD" "$PREFIX" >"$WORK/glancesync.conf" <<'PYEOF'
import sys, yaml
path, cloud, prefix = sys.argv[1:]
a = yaml.safe_load(open(path))["clouds"][cloud]["auth"]
print(f"""[main]
master_region = RegionOne
[master]
user = {a['username']}
password = {a['password'].replace('%', '%%')}
keystone_url = {a['auth_url']}
tenant = {a['project_name']}
use_keystone_v3 = True
metadata_condition = image.name.startswith('{prefix}img')
""")
PYEOF
chmod 600 "$WORK/glancesync.conf"
extra=""
[[ -n $MAX_CONCURRENT_IMPORTS ]] && extra="\\nmax_concurrent_imports = $MAX_CONCURRENT_IMPORTS"
sed "s/^use_keystone_v3 = True\$/use_keystone_v3 = True\\ntransfer = glance-download$extra/" "$WORK/glancesync.conf" >"$WORK/server.conf"
sed -i 's/^use_keystone_v3 = True$/use_keystone_v3 = True\ntransfer = stream/' "$WORK/glancesync.conf"
chmod 600 "$WORK/server.conf"

# Delete glancesync's copies in the target regions (between the runs).
drop_copies() {
    for region in RegionTwo RegionThree; do
        osc --os-region-name "$region" image list -f value -c ID -c Name |
            awk -v p="${PREFIX}img" 'index($2, p) == 1 {print $1}' |
            while read -r id; do osc --os-region-name "$region" image delete "$id" >/dev/null; done
    done
}

# glance_cpu: CPU seconds (user + system, in clock ticks) used so far by the
# gunicorn workers of RegionOne's, RegionTwo's and RegionThree's Glance, from
# the cloud's pid files (0 when a region is not running).
glance_cpu() {
    local f m t c
    for f in glance-r1 glance-r2 glance-r3; do
        t=0
        if m=$(cat "$LOCAL_CLOUD_DIR/run/$f.pid" 2>/dev/null); then
            for c in $(pgrep -P "$m" || true); do
                t=$((t + $(awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || echo 0)))
            done
        fi
        printf '%s ' "$t"
    done
}
TICKS=$(getconf CLK_TCK)

# gs_run NAME CONFIG REGIONS...: time a glancesync run; sets NAME_s, NAME_rss,
# NAME_cpu (the Glance workers' CPU seconds during the run: RegionOne/RegionTwo/RegionThree,
# and glancesync's own user + system); stderr in $WORK/NAME.err.
gs_run() {
    local name=$1 conf=$2
    shift 2
    local t0 t1 c0 c1
    c0=$(glance_cpu)
    t0=$(date +%s.%N)
    (cd "$WORK" && /usr/bin/time -f "%U %S %M" -o "$WORK/$name.rss" "$GS" --config-file "$conf" "$@" \
        >/dev/null 2>"$WORK/$name.err") || { cat "$WORK/$name.err" >&2; die "glancesync $name failed"; }
    t1=$(date +%s.%N)
    c1=$(glance_cpu)
    printf -v "${name}_s" '%s' "$(echo "$t1 - $t0" | bc -l)"
    printf -v "${name}_rss" '%s' "$(tail -1 "$WORK/$name.rss" | awk '{print $3}')"
    printf -v "${name}_cpu" '%s' "$(paste <(tr ' ' '\n' <<<"$c0" | grep .) <(tr ' ' '\n' <<<"$c1" | grep .) |
        awk -v hz="$TICKS" '{ printf "%.1f/", ($2 - $1) / hz }')$(tail -1 "$WORK/$name.rss" | awk '{printf "%.1f", $1 + $2}')"
    for region in "$@"; do
        st=$(cd "$WORK" && "$GS" -q --config-file "$conf" --show-status "$region")
        [[ $(grep -c '^ok,' <<<"$st" || true) -eq $i ]] || die "$name left images unsynchronised in $region: $st"
    done
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
r_pipe="" r_two="" r_server=""
for round in $(seq 1 "$ROUNDS"); do
    lock
    pipe_run
    [[ $round == 1 ]] && first_pipe_s=$pipe_s
    gs_run one "$WORK/glancesync.conf" RegionTwo
    drop_copies
    gs_run two "$WORK/glancesync.conf" RegionTwo RegionThree
    drop_copies
    gs_run server "$WORK/server.conf" RegionTwo RegionThree
    counters=$(grep -o 'transfers: .*' "$WORK/server.err" | head -1)
    glance_times=$(grep -o 'copied server-side (glance-download) by Glance in [0-9.]* s' "$WORK/server.err" |
        awk '{print $(NF-1)}' | tr '\n' ' ')
    drop_copies
    a=$(echo "$one_s / $pipe_s" | bc -l); b=$(echo "$two_s / $one_s" | bc -l); c=$(echo "$server_s / $two_s" | bc -l)
    r_pipe="$r_pipe $a" r_two="$r_two $b" r_server="$r_server $c"
    unlock
    printf 'round %d/%d: pipe %.1f s, stream one %.1f s (%.2fx the pipe), stream two %.1f s (%.2fx one), glance-download two %.1f s (%.2fx streaming); load %s\n' \
        "$round" "$ROUNDS" "$pipe_s" "$one_s" "$a" "$two_s" "$b" "$server_s" "$c" "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf '  CPU s (Glance RegionOne/RegionTwo/RegionThree workers/glancesync): stream one %s, stream two %s, glance-download two %s\n' \
        "$one_cpu" "$two_cpu" "$server_cpu"
done

printf 'images: %d, %d MiB\n' "$i" "$total"
if [[ $PEER == 1 ]]; then
printf 'peer RegionTwo (openstack image save + image create --file): %.1f s, peak RSS %d MiB\n' "$peer_s" "$((peer_rss / 1024))"
printf 'peer RegionThree: %.1f s (both regions %.1f s)\n' "$peer3_s" "$(echo "$peer_s + $peer3_s" | bc -l)"
printf 'peer RegionTwo against the pipe of the round measured right after it: %.2fx the pipe time\n' \
    "$(echo "$peer_s / $first_pipe_s" | bc -l)"
fi
printf 'pipe (curl GET | curl PUT, ready token) RegionTwo: %.1f s\n' "$pipe_s"
printf 'last round:\n'
if [[ $PEER == 1 ]]; then
  vs_peer=$(printf '%.2fx faster than the peer, ' "$(echo "$peer_s / $one_s" | bc -l)")
  vs_peer_both=$(printf ', %.2fx faster than the peer doing both' "$(echo "($peer_s + $peer3_s) / $two_s" | bc -l)")
else
  vs_peer='' vs_peer_both=''  # PEER=0: the peer did not run
fi
printf 'glancesync stream, RegionTwo: %.1f s, peak RSS %d MiB: %s%.2fx the pipe time\n' \
    "$one_s" "$((one_rss / 1024))" "$vs_peer" "$(echo "$one_s / $pipe_s" | bc -l)"
printf 'glancesync stream, RegionTwo + RegionThree: %.1f s, peak RSS %d MiB: %.2fx the one-target time%s\n' \
    "$two_s" "$((two_rss / 1024))" "$(echo "$two_s / $one_s" | bc -l)" "$vs_peer_both"
printf 'glancesync glance-download, RegionTwo + RegionThree: %.1f s, peak RSS %d MiB (%.2fx the streaming time)\n' \
    "$server_s" "$((server_rss / 1024))" "$(echo "$server_s / $two_s" | bc -l)"
printf '  %s\n  Glance time per image (s): %s\n' "$counters" "$glance_times"
printf 'medians over %d interleaved rounds: stream one / pipe %.2fx, stream two / stream one %.2fx, glance-download / stream (two targets) %.2fx\n' \
    "$ROUNDS" "$(median <<<"$r_pipe")" "$(median <<<"$r_two")" "$(median <<<"$r_server")"
