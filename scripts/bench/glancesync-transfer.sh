#!/usr/bin/env bash
# Benchmark: sync five images totalling 1 GiB from RegionOne to RegionTwo.
#
#   peer:       for each image, `openstack image save` (RegionOne) then
#               `openstack image create --file` (RegionTwo), the procedure the
#               original's README documents;
#   glancesync: `glancesync RegionTwo` (release build), streaming master ->
#               target with on-the-fly hash verification, no local copy.
#
# Reports wall time, the ratio and peak RSS (/usr/bin/time). Needs the local
# cloud (scripts/cloud/up.sh). Passwords never appear on a command line: OSC
# reads clouds.yaml, glancesync reads a mode-600 config in a private temp dir.
#
#   scripts/bench/glancesync-transfer.sh
#   SIZES_MIB="128 160 192 224 320" scripts/bench/glancesync-transfer.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL_CLOUD_DIR=${LOCAL_CLOUD_DIR:-$HOME/.cache/openstack-image-tools/local-cloud}
export OS_CLIENT_CONFIG_FILE=${OS_CLIENT_CONFIG_FILE:-$LOCAL_CLOUD_DIR/clouds.yaml}
CLOUD=${OS_TEST_CLOUD:-local}
SIZES_MIB=${SIZES_MIB:-"128 160 192 224 320"}
OSC=${OSC:-$LOCAL_CLOUD_DIR/venv/bin/openstack}
PY=${PY:-$LOCAL_CLOUD_DIR/venv/bin/python}

die() { echo "glancesync-transfer bench: $*" >&2; exit 1; }
[[ -f $OS_CLIENT_CONFIG_FILE ]] || die "$OS_CLIENT_CONFIG_FILE missing: run scripts/cloud/up.sh"
[[ -x $OSC ]] || die "$OSC missing: run scripts/cloud/up.sh"
[[ -x /usr/bin/time ]] || die "/usr/bin/time missing (apt-get install time)"

RUN=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
PREFIX="gs-bench-$RUN-"
WORK=$(mktemp -d)
chmod 700 "$WORK"
osc() { "$OSC" --os-cloud "$CLOUD" "$@"; }
cleanup() {
    for region in RegionOne RegionTwo; do
        osc --os-region-name "$region" image list -f value -c ID -c Name 2>/dev/null |
            awk -v p="$PREFIX" 'index($2, p) == 1 {print $1}' |
            while read -r id; do osc --os-region-name "$region" image delete "$id" >/dev/null 2>&1 || true; done
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "building glancesync (release)..." >&2
(cd "$ROOT" && cargo build --release -q -p glancesync)
GS=$ROOT/target/release/glancesync

# Master images.
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

# Peer procedure: save to a local file, create from it (one image at a time).
peer_rss=0
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
start=$(date +%s.%N)
(cd "$WORK" && /usr/bin/time -f "%M" -o "$WORK/gs.rss" "$GS" -q --config-file "$WORK/glancesync.conf" RegionTwo >/dev/null)
end=$(date +%s.%N)
gs_s=$(echo "$end - $start" | bc -l)
gs_rss=$(tail -1 "$WORK/gs.rss")

# Check the result: every image ok in RegionTwo.
status=$(cd "$WORK" && "$GS" -q --config-file "$WORK/glancesync.conf" --show-status RegionTwo)
ok=$(grep -c '^ok,' <<<"$status" || true)
[[ $ok -eq $i ]] || die "glancesync left images unsynchronised: $status"

printf 'images: %d, %d MiB\n' "$i" "$total"
printf 'peer (openstack image save + image create --file): %.1f s, peak RSS %d MiB\n' "$peer_s" "$((peer_rss / 1024))"
printf 'glancesync (streamed): %.1f s, peak RSS %d MiB\n' "$gs_s" "$((gs_rss / 1024))"
printf 'speed-up: %.2fx\n' "$(echo "$peer_s / $gs_s" | bc -l)"
