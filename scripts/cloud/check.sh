#!/usr/bin/env bash
# Quick end-to-end check of the local cloud with curl only (python3 parses the
# JSON): admin token, catalog (identity in both regions, image at the expected
# URLs), then in each region create a raw image, upload 1 MiB of random data,
# verify status/checksum/os_hash_value, download and compare, delete and check
# that a GET then returns 404. A token for user demo is checked too.
#
# Every request has a --max-time. Tokens and passwords never appear on a
# command line: request bodies go through stdin and headers through files in a
# private temporary directory.
#
# Environment: LOCAL_CLOUD_DIR (unused except for messages), ADMIN_PASSWORD
# [secret], DEMO_PASSWORD [demosecret], KS_PORT [5000], GLANCE_R1_PORT [9292],
# GLANCE_R2_PORT [9293], GLANCE_R3_PORT [9294], MAX_TIME per request in seconds [60].
set -euo pipefail

ADMIN_PASSWORD=${ADMIN_PASSWORD:-secret}
DEMO_PASSWORD=${DEMO_PASSWORD:-demosecret}
HOST=127.0.0.1
KS_PORT=${KS_PORT:-5000}
GLANCE_R1_PORT=${GLANCE_R1_PORT:-9292}
GLANCE_R2_PORT=${GLANCE_R2_PORT:-9293}
GLANCE_R3_PORT=${GLANCE_R3_PORT:-9294}
MAX_TIME=${MAX_TIME:-60}
KS_URL=http://$HOST:$KS_PORT/v3
PY=${PYTHON:-python3}

log() { printf 'cloud-check: %s\n' "$*" >&2; }
fail() { printf 'cloud-check: FAIL: %s\n' "$*" >&2; exit 1; }

umask 077
TMP=$(mktemp -d)
created=()
cleanup() {
  local entry url id
  for entry in "${created[@]}"; do
    url=${entry% *}
    id=${entry#* }
    curl -s -o /dev/null --max-time 30 -X DELETE -H "@$TMP/auth.hdr" "$url/v2/images/$id" || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT

# json EXPR < file: evaluate a Python expression on the parsed document `d`.
json() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# token USER PASSWORD PROJECT OUT_PREFIX: writes OUT.hdr (X-Auth-Token header
# line for curl -H @file) and OUT.json (token body).
token() {
  local user=$1 password=$2 project=$3 out=$TMP/$4 code
  USER_NAME=$user USER_PASSWORD=$password PROJECT_NAME=$project "$PY" -c '
import json, os
print(json.dumps({"auth": {
  "identity": {"methods": ["password"], "password": {"user": {
    "name": os.environ["USER_NAME"], "domain": {"id": "default"},
    "password": os.environ["USER_PASSWORD"]}}},
  "scope": {"project": {"name": os.environ["PROJECT_NAME"], "domain": {"id": "default"}}}}}))
' >"$out.req"
  code=$(curl -s --max-time "$MAX_TIME" -o "$out.json" -D "$out.resp-headers" -w '%{http_code}' \
    -H 'Content-Type: application/json' --data-binary "@$out.req" "$KS_URL/auth/tokens") || true
  rm -f "$out.req"
  [ "$code" = 201 ] || fail "POST $KS_URL/auth/tokens as $user: HTTP ${code:-no answer} (is the cloud up? scripts/cloud/up.sh)"
  tr -d '\r' <"$out.resp-headers" | awk 'tolower($1) == "x-subject-token:" { print "X-Auth-Token: " $2 }' >"$out.hdr"
  [ -s "$out.hdr" ] || fail "no X-Subject-Token in the token response for $user"
}

start=$(date +%s.%N)
token admin "$ADMIN_PASSWORD" admin auth
len=$(($(wc -c <"$TMP/auth.hdr") - 15))
log "admin token issued (fernet, $len characters)"
token demo "$DEMO_PASSWORD" demo demo
roles=$(json '",".join(sorted(r["name"] for r in d["token"]["roles"]))' <"$TMP/demo.json")
case ",$roles," in *,admin,*member,* | *,member,*admin,*) ;; *) fail "demo token roles are '$roles', expected admin and member" ;; esac
log "demo token issued (project demo, roles $roles)"

endpoint() {
  json "[e['url'].rstrip('/') for s in d['token']['catalog'] if s['type']=='$1' for e in s['endpoints'] if e['region_id']=='$2' and e['interface']=='$3'][0]" <"$TMP/auth.json" 2>/dev/null ||
    fail "catalog has no $3 $1 endpoint in $2"
}
for region in RegionOne RegionTwo RegionThree; do
  for iface in public internal admin; do
    endpoint identity "$region" "$iface" >/dev/null
  done
done
[ "$(endpoint image RegionOne public)" = "http://$HOST:$GLANCE_R1_PORT" ] || fail "RegionOne image endpoint is $(endpoint image RegionOne public)"
[ "$(endpoint image RegionTwo public)" = "http://$HOST:$GLANCE_R2_PORT" ] || fail "RegionTwo image endpoint is $(endpoint image RegionTwo public)"
[ "$(endpoint image RegionThree public)" = "http://$HOST:$GLANCE_R3_PORT" ] || fail "RegionThree image endpoint is $(endpoint image RegionThree public)"
log "catalog: identity in RegionOne, RegionTwo and RegionThree; image RegionOne -> :$GLANCE_R1_PORT, RegionTwo -> :$GLANCE_R2_PORT, RegionThree -> :$GLANCE_R3_PORT"

head -c 1048576 /dev/urandom >"$TMP/data"
md5=$(md5sum <"$TMP/data" | cut -d' ' -f1)
sha512=$(sha512sum <"$TMP/data" | cut -d' ' -f1)

# req METHOD URL [curl args...]: prints the HTTP status; body in $TMP/body.
req() {
  local method=$1 url=$2
  shift 2
  curl -s --max-time "$MAX_TIME" -o "$TMP/body" -w '%{http_code}' -X "$method" -H "@$TMP/auth.hdr" "$@" "$url" || echo 000
}

for region in RegionOne RegionTwo RegionThree; do
  url=$(endpoint image "$region" public)
  t0=$(date +%s.%N)
  name="oit-check-$$-$region"
  code=$(req POST "$url/v2/images" -H 'Content-Type: application/json' \
    --data-binary "{\"name\": \"$name\", \"disk_format\": \"raw\", \"container_format\": \"bare\"}")
  [ "$code" = 201 ] || fail "$region: POST $url/v2/images: HTTP $code: $(head -c 300 "$TMP/body")"
  id=$(json 'd["id"]' <"$TMP/body")
  created+=("$url $id")

  code=$(req PUT "$url/v2/images/$id/file" -H 'Content-Type: application/octet-stream' --data-binary "@$TMP/data")
  [ "$code" = 204 ] || fail "$region: PUT $url/v2/images/$id/file: HTTP $code: $(head -c 300 "$TMP/body")"

  code=$(req GET "$url/v2/images/$id")
  [ "$code" = 200 ] || fail "$region: GET $url/v2/images/$id: HTTP $code"
  got=$(json '" ".join(str(d.get(k)) for k in ("status", "checksum", "os_hash_algo", "os_hash_value", "size", "stores"))' <"$TMP/body")
  [ "$got" = "active $md5 sha512 $sha512 1048576 file1" ] ||
    fail "$region: image $id after upload: got '$got', expected 'active $md5 sha512 <sha512> 1048576 file1'"

  code=$(req GET "$url/v2/images/$id/file")
  [ "$code" = 200 ] || fail "$region: GET $url/v2/images/$id/file: HTTP $code"
  cmp -s "$TMP/body" "$TMP/data" || fail "$region: downloaded data differs from the upload"

  code=$(req DELETE "$url/v2/images/$id")
  [ "$code" = 204 ] || fail "$region: DELETE $url/v2/images/$id: HTTP $code"
  created=("${created[@]:0:${#created[@]}-1}")
  code=$(req GET "$url/v2/images/$id")
  [ "$code" = 404 ] || fail "$region: GET of deleted image $id: HTTP $code, expected 404"

  log "$region: create/upload/verify/download/delete of 1 MiB raw image OK ($(awk -v s="$t0" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')s)"
done

code=$(curl -s --max-time "$MAX_TIME" -o /dev/null -w '%{http_code}' "http://$HOST:$GLANCE_R1_PORT/v2/images") || true
[ "$code" = 401 ] || fail "unauthenticated GET /v2/images: HTTP $code, expected 401"
log "unauthenticated request rejected with 401"
log "all checks passed in $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')s"
