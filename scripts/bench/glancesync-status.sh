#!/usr/bin/env bash
# Benchmark: `glancesync --show-status` over 20 regions x 5,000 images with
# the offline CSV backend (target: under 1 s). The data is generated here:
# a master region with 5,000 images (public/private, properties, a few AMI
# kernels) and 20 target regions of 5,000 images each, mixing in-sync images,
# missing ones, different checksums and different metadata.
#
#   scripts/bench/glancesync-status.sh
#   REGIONS=20 IMAGES=5000 RUNS=5 scripts/bench/glancesync-status.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
REGIONS=${REGIONS:-20}
IMAGES=${IMAGES:-5000}
RUNS=${RUNS:-5}

die() { echo "glancesync-status bench: $*" >&2; exit 1; }
[[ -x /usr/bin/time ]] || die "/usr/bin/time missing (apt-get install time)"
command -v python3 >/dev/null || die "python3 missing"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "building glancesync (release)..." >&2
(cd "$ROOT" && cargo build --release -q -p glancesync)
GS=$ROOT/target/release/glancesync

python3 - "$WORK" "$REGIONS" "$IMAGES" <<'PYEOF'
import csv, hashlib, os, random, sys
work, regions, images = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(42)
state = os.path.join(work, "state")
os.makedirs(state)
def md5(s):
    return hashlib.md5(s.encode()).hexdigest()
master = []
for i in range(images):
    props = {"type": random.choice(["baseimage", "ngimages", "other"]), "nid": i}
    if i % 50 == 1:
        props["kernel_id"] = "m%05d" % (i - 1)
    master.append(["Master", "image%05d" % i, "m%05d" % i, "active", 1000000 + i * 37,
                   md5("c%d" % i), "tenant1id", random.random() < 0.8, repr(props)])
def write(name, rows):
    with open(os.path.join(state, "backup_%s.csv" % name), "w", newline="") as f:
        w = csv.writer(f)
        for r in rows:
            w.writerow(r)
write("Master", master)
for r in range(1, regions + 1):
    name = "R%02d" % r
    rows = []
    for i, m in enumerate(master):
        x = random.random()
        if x < 0.1:
            continue  # missing -> pending_upload
        row = [name, m[1], "%s-%05d" % (name, i), "active", m[4], m[5], "tenant1id", m[7], m[8]]
        if x < 0.15:
            row[5] = md5("other%d" % i)  # different checksum
        elif x < 0.2:
            row[8] = repr({"type": "changed", "nid": i})  # different metadata
        rows.append(row)
    write(name, rows)
with open(os.path.join(work, "glancesync.conf"), "w") as f:
    f.write("""[main]
master_region = Master
[master]
credential = user,cGFzcw==,http://127.0.0.1:5000/v3,tenant1
metadata_set = type, nid
metadata_condition = image.is_public and \\
    image.user_properties.get('type') in ('baseimage', 'ngimages')
replace = %s
""" % md5("other7"))
PYEOF

rows=$(cat "$WORK"/state/*.csv | wc -l)
echo "generated $REGIONS regions + master, $rows image rows" >&2
# Warm-up (page cache), then timed runs.
"$GS" -q --config-file "$WORK/glancesync.conf" --backend "csv:$WORK/state" --show-status >"$WORK/out.csv"
lines=$(grep -c , "$WORK/out.csv")
best=""
for _ in $(seq "$RUNS"); do
    /usr/bin/time -f "%e %M" -o "$WORK/t" "$GS" -q --config-file "$WORK/glancesync.conf" \
        --backend "csv:$WORK/state" --show-status >/dev/null
    read -r secs rss <"$WORK/t"
    if [[ -z $best ]] || (($(echo "$secs < $best" | bc -l))); then best=$secs; best_rss=$rss; fi
    echo "run: ${secs} s, peak RSS $((rss / 1024)) MiB" >&2
done
printf 'regions: %d x %d images (%d rows), %d status lines\n' "$REGIONS" "$IMAGES" "$rows" "$lines"
printf 'glancesync --show-status (CSV backend): best of %d: %s s, peak RSS %d MiB\n' "$RUNS" "$best" "$((best_rss / 1024))"
