#!/usr/bin/env bash
# Benchmark the openstack-client crate against curl (the limit) and
# python-openstackclient (the peer) on the local cloud: one upload and one
# download of the same file with each tool, wall time and peak RSS from
# /usr/bin/time -v. The crate verifies os_hash_value (sha512) while it
# downloads; curl does not verify anything.
#
#   scripts/bench/openstack-client.sh            # 512 MiB, RegionOne
#   SIZE_MIB=1024 REGION=RegionTwo ROUNDS=5 scripts/bench/openstack-client.sh
#
# Uploads run once per tool; downloads ROUNDS times (default 3), interleaved,
# and the table shows the median round (all rounds listed below it).
#
# Needs the local cloud (scripts/cloud/up.sh). Secrets never appear on a
# command line: the Keystone request body and the token header are files
# (mode 600) in a private temporary directory.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL_CLOUD_DIR=${LOCAL_CLOUD_DIR:-$HOME/.cache/openstack-image-tools/local-cloud}
export OS_CLIENT_CONFIG_FILE=${OS_CLIENT_CONFIG_FILE:-$LOCAL_CLOUD_DIR/clouds.yaml}
CLOUD=${OS_TEST_CLOUD:-local}
REGION=${REGION:-RegionOne}
SIZE_MIB=${SIZE_MIB:-512}
ROUNDS=${ROUNDS:-3}
OSC=${OSC:-$LOCAL_CLOUD_DIR/venv/bin/openstack}
PY=${PY:-$LOCAL_CLOUD_DIR/venv/bin/python}

die() { echo "openstack-client bench: $*" >&2; exit 1; }
[[ -f $OS_CLIENT_CONFIG_FILE ]] || die "$OS_CLIENT_CONFIG_FILE missing: run scripts/cloud/up.sh"
[[ -x $OSC ]] || die "$OSC missing: run scripts/cloud/up.sh"
[[ -x /usr/bin/time ]] || die "/usr/bin/time missing (apt-get install time)"

WORK=$(mktemp -d)
chmod 700 "$WORK"
IDS=()
GLANCE=""
cleanup() {
    for id in "${IDS[@]}"; do
        curl -sS -o /dev/null -X DELETE -H @"$WORK/hdr" "$GLANCE/v2/images/$id" || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "building the release example..." >&2
(cd "$ROOT" && cargo build --release -q -p openstack-client --example glance_transfer)
BIN=$ROOT/target/release/examples/glance_transfer

# Token + Glance endpoint for curl, read from clouds.yaml by the venv's Python.
"$PY" - "$OS_CLIENT_CONFIG_FILE" "$CLOUD" "$REGION" "$WORK" <<'PYEOF'
import json, os, sys, urllib.request, yaml
path, cloud, region, work = sys.argv[1:]
c = yaml.safe_load(open(path))["clouds"][cloud]["auth"]
body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
    "name": c["username"], "password": c["password"],
    "domain": {"name": c.get("user_domain_name", "Default")}}}},
    "scope": {"project": {"name": c["project_name"],
                          "domain": {"name": c.get("project_domain_name", "Default")}}}}}
url = c["auth_url"].rstrip("/") + "/auth/tokens"
req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=30) as r:
    token = r.headers["X-Subject-Token"]
    catalog = json.load(r)["token"]["catalog"]
glance = [e["url"] for s in catalog if s["type"] == "image" for e in s["endpoints"]
          if e["interface"] == "public" and e["region_id"] == region][0]
fd = os.open(os.path.join(work, "hdr"), os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, f"X-Auth-Token: {token}\n".encode())
os.close(fd)
open(os.path.join(work, "glance"), "w").write(glance.rstrip("/"))
PYEOF
GLANCE=$(cat "$WORK/glance")

echo "writing $SIZE_MIB MiB of random data..." >&2
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$WORK/src.raw"

# measure NAME CMD... : runs CMD under /usr/bin/time -v, records wall seconds,
# peak RSS (KiB) and the transfer-only seconds the tool reports on stderr
# (`transfer_seconds=`; the crate's example and curl's -w print it).
declare -A SECS RSS XFER
measure() {
    local name=$1; shift
    sync
    /usr/bin/time -v -o "$WORK/time.$name" "$@" 2> "$WORK/err.$name" || { cat "$WORK/err.$name" >&2; die "$name failed"; }
    XFER[$name]=$(sed -n 's/^transfer_seconds=//p' "$WORK/err.$name" | tail -1)
    XFER[$name]=${XFER[$name]:--}
    SECS[$name]=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$WORK/time.$name")
    RSS[$name]=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.$name")
}

create_for_curl() {
    curl -sS -f -X POST -H @"$WORK/hdr" -H 'Content-Type: application/json' \
        -d "{\"name\": \"bench-curl-$$\", \"disk_format\": \"raw\", \"container_format\": \"bare\"}" \
        "$GLANCE/v2/images" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
echo "upload: crate" >&2
measure crate_up "$BIN" upload "$CLOUD" "$REGION" "$WORK/src.raw" "bench-crate-$$" > "$WORK/id.crate"
ID_CRATE=$(cat "$WORK/id.crate"); IDS+=("$ID_CRATE")

echo "upload: curl -T" >&2
ID_CURL=$(create_for_curl); IDS+=("$ID_CURL")
measure curl_up curl -sS -f -w '%{stderr}transfer_seconds=%{time_total}\n' -T "$WORK/src.raw" -H @"$WORK/hdr" -H 'Content-Type: application/octet-stream' \
    "$GLANCE/v2/images/$ID_CURL/file"

echo "upload: openstack image create --file" >&2
measure osc_up "$OSC" --os-cloud "$CLOUD" --os-region-name "$REGION" image create --file "$WORK/src.raw" \
    --disk-format raw --container-format bare -f value -c id "bench-osc-$$" > "$WORK/id.osc"
IDS+=("$(cat "$WORK/id.osc")")

# Downloads are short and noisy on 2 shared cores: ROUNDS rounds, the tools
# interleaved in each, every output file removed first; the median counts.
for r in $(seq 1 "$ROUNDS"); do
    echo "download round $r/$ROUNDS: crate (sha512 verified while streaming)" >&2
    measure "crate_down_$r" "$BIN" download "$CLOUD" "$REGION" "$ID_CRATE" "$WORK/out.crate"
    cmp -s "$WORK/src.raw" "$WORK/out.crate" || die "crate download differs from the source"
    rm -f "$WORK/out.crate"
    echo "download round $r/$ROUNDS: crate without verification (transport only)" >&2
    measure "crate_nv_down_$r" "$BIN" download-unverified "$CLOUD" "$REGION" "$ID_CRATE" "$WORK/out.crate"
    rm -f "$WORK/out.crate"
    echo "download round $r/$ROUNDS: curl -o" >&2
    measure "curl_down_$r" curl -sS -f -w '%{stderr}transfer_seconds=%{time_total}\n' -H @"$WORK/hdr" -o "$WORK/out.curl" "$GLANCE/v2/images/$ID_CRATE/file"
    cmp -s "$WORK/src.raw" "$WORK/out.curl" || die "curl download differs from the source"
    rm -f "$WORK/out.curl"
    echo "download round $r/$ROUNDS: openstack image save" >&2
    measure "osc_down_$r" "$OSC" --os-cloud "$CLOUD" --os-region-name "$REGION" image save --file "$WORK/out.osc" "$ID_CRATE"
    rm -f "$WORK/out.osc"
done
# median NAME: the median round of NAME_1..NAME_ROUNDS (by wall time) becomes NAME.
median() {
    local name=$1 r best
    best=$(for r in $(seq 1 "$ROUNDS"); do echo "${SECS[${name}_$r]} $r"; done | sort -n | awk -v m=$(( (ROUNDS + 1) / 2 )) 'NR == m {print $2}')
    SECS[$name]=${SECS[${name}_$best]}; XFER[$name]=${XFER[${name}_$best]}; RSS[$name]=${RSS[${name}_$best]}
    ALL[$name]=$(for r in $(seq 1 "$ROUNDS"); do printf '%s ' "${SECS[${name}_$r]}"; done)
    # Peak RSS: the largest of all rounds, not the median's.
    RSS[$name]=$(for r in $(seq 1 "$ROUNDS"); do echo "${RSS[${name}_$r]}"; done | sort -n | tail -1)
}
declare -A ALL
for t in crate_down crate_nv_down curl_down osc_down; do median "$t"; done

echo "sha512 of the file alone (openssl, page cache): the floor for a verified download" >&2
SHA_FLOOR=$( { /usr/bin/time -f '%e' openssl dgst -sha512 "$WORK/src.raw" > /dev/null; } 2>&1 )

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
echo
echo "| tool | upload wall s | upload transfer s | upload peak RSS MiB | download wall s | download transfer s | download peak RSS MiB |"
echo "|---|---|---|---|---|---|---|"
for t in crate curl osc; do
    echo "| $t | ${SECS[${t}_up]} | ${XFER[${t}_up]} | $(mib "${RSS[${t}_up]}") | ${SECS[${t}_down]} | ${XFER[${t}_down]} | $(mib "${RSS[${t}_down]}") |"
done
echo "| crate, download not verified | - | - | - | ${SECS[crate_nv_down]} | ${XFER[crate_nv_down]} | $(mib "${RSS[crate_nv_down]}") |"
echo
echo "wall time crate/curl: upload $(ratio "${SECS[crate_up]}" "${SECS[curl_up]}"), download $(ratio "${SECS[crate_down]}" "${SECS[curl_down]}") (not verified: $(ratio "${SECS[crate_nv_down]}" "${SECS[curl_down]}"))"
echo "transfer crate/curl:  upload $(ratio "${XFER[crate_up]}" "${XFER[curl_up]}"), download $(ratio "${XFER[crate_down]}" "${XFER[curl_down]}") (not verified: $(ratio "${XFER[crate_nv_down]}" "${XFER[curl_down]}"))"
echo "wall time osc/crate:  upload $(ratio "${SECS[osc_up]}" "${SECS[crate_up]}"), download $(ratio "${SECS[osc_down]}" "${SECS[crate_down]}")"
echo "download wall s of each round: crate ${ALL[crate_down]}; not verified ${ALL[crate_nv_down]}; curl ${ALL[curl_down]}; osc ${ALL[osc_down]}"
echo "sha512 of the file alone (openssl): ${SHA_FLOOR} s"
echo "load average before the run: $LOAD"
echo "($SIZE_MIB MiB, $REGION, $(date -u +%Y-%m-%dT%H:%MZ))"
