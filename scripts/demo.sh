#!/usr/bin/env bash
# The main job on the embedded default: install everything, start the local
# cloud, load a few sample images into RegionOne, publish a new version of
# one of them with `ge-image publish` (once) and list the published images with
# `ge-image locate`, then run glancesync to show the status, sync
# RegionOne -> RegionTwo and RegionThree (each image read from RegionOne once
# and streamed to both), and show the status again.
# Before the sync, the whole life of a new image on the local backend:
# `ge-image create demo-web --backend local` builds it from the Debian test
# image (scripts/test-image/build.sh, uploaded to RegionOne as the base
# `ge-test-debian12`) with the webdemo create.sh (QEMU, then sysprep, shrink,
# sparsify), tests it with its test.sh, publishes it, and glancesync copies it
# to RegionTwo and RegionThree. A rerun reuses the published image.
#
# Idempotent: sample images that exist already are reused, and a second run
# shows everything in sync. The local cloud is left running (scripts/stop.sh).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
cd "$PROJECT_ROOT"

"$PROJECT_ROOT/scripts/setup.sh"
ensure_cargo_path
export OS_CLIENT_CONFIG_FILE="$LOCAL_CLOUD_DIR/clouds.yaml"

step "build glancesync and ge-image" cargo build --locked --release -p glancesync -p ge-image
GLANCESYNC="${CARGO_TARGET_DIR:-$PROJECT_ROOT/target}/release/glancesync"
GE_IMAGE="${CARGO_TARGET_DIR:-$PROJECT_ROOT/target}/release/ge-image"

DEMO_DIR="$LOCAL_CLOUD_DIR/demo"
mkdir -p "$DEMO_DIR"
OSC="$LOCAL_CLOUD_DIR/venv/bin/openstack"
osc() { "$OSC" --os-cloud local --os-region-name RegionOne "$@"; }

# name, size in MiB, visibility, properties
SAMPLES=(
  "demo-base-debian|24|public|type=baseimage nid=101"
  "demo-webserver|12|public|type=ngimages nid=102"
  "demo-database|6|public|type=ngimages nid=103"
  "demo-scratch|2|private|"
)

load_samples() {
  local existing; existing=$(osc image list -f value -c Name)
  local entry name size vis props args
  for entry in "${SAMPLES[@]}"; do
    IFS='|' read -r name size vis props <<<"$entry"
    if grep -qx "$name" <<<"$existing"; then
      log "sample image $name already in RegionOne"
      continue
    fi
    local file="$DEMO_DIR/$name.raw"
    # Deterministic content so reruns and other machines agree on checksums.
    head -c "$((size * 1024 * 1024))" < <(yes "$name") > "$file"
    args=(--disk-format raw --container-format bare "--$vis" --file "$file")
    for p in $props; do args+=(--property "$p"); done
    osc image create "${args[@]}" "$name" -f value -c id >/dev/null
    rm -f "$file"
    log "loaded sample image $name ($size MiB, $vis${props:+, $props})"
  done
}
step "load sample images into RegionOne" load_samples

# A new version of demo-webserver, published with ge-image the way the
# create_ge_images tools do it: the candidate `demo-webserver_rc` takes the
# name, nid and type; the old image becomes private `demo-webserver_obsolete`.
# Once done (the _obsolete image exists), reruns leave it as it is.
publish_candidate() {
  if osc image list -f value -c Name | grep -qx "demo-webserver_obsolete"; then
    log "demo-webserver was already published from a candidate"
    return
  fi
  local file="$DEMO_DIR/demo-webserver_rc.raw" id
  head -c "$((14 * 1024 * 1024))" < <(yes "demo-webserver v2") > "$file"
  id=$(osc image create --disk-format raw --container-format bare --private \
        --file "$file" demo-webserver_rc -f value -c id)
  rm -f "$file"
  echo "### ge-image publish $id"
  "$GE_IMAGE" publish --os-cloud local --os-region-name RegionOne "$id"
}
step "publish a new demo-webserver with ge-image" publish_candidate

# The whole life of an image on the local backend (once; reruns reuse it).
create_demo_web() {
  if osc image list --public -f value -c Name | grep -qx "demo-web"; then
    log "demo-web was already created, tested and published"
    return
  fi
  local base
  base="$("$PROJECT_ROOT/scripts/test-image/build.sh")"
  if ! osc image list -f value -c Name | grep -qx "ge-test-debian12"; then
    log "uploading the test image as the base ge-test-debian12"
    osc image create --disk-format qcow2 --container-format bare --private \
      --file "$base" ge-test-debian12 -f value -c id >/dev/null
  fi
  local root="$DEMO_DIR/images" build="$DEMO_DIR/images/.build"
  rm -rf "$root/demo-web" "$build"
  mkdir -p "$root/demo-web" "$build"
  cp fixtures/ge-image/webdemo/create.sh fixtures/ge-image/webdemo/test.sh "$root/demo-web/"
  dpkg-deb --root-owner-group --build fixtures/ge-image/webdemo/pkg "$build/webdemo_1.0_all.deb" >/dev/null
  tar -czf "$root/demo-web/data.tgz" -C "$build" webdemo_1.0_all.deb
  # Leftovers of an interrupted earlier demo run.
  osc image list --private -f value -c ID -c Name | awk '$2=="demo-web_rc"{print $1}' \
    | while read -r old; do osc image delete "$old"; done
  echo "### ge-image create demo-web --backend local --base debian12"
  "$GE_IMAGE" create demo-web --backend local --base debian12 --folder-root "$root" \
    --os-cloud local --os-region-name RegionOne | tee "$DEMO_DIR/create.out"
  local id
  id=$(sed -n 's/^Success. UUID: //p' "$DEMO_DIR/create.out")
  echo "### ge-image publish $id 104 ngimages"
  "$GE_IMAGE" publish --os-cloud local --os-region-name RegionOne "$id" 104 ngimages
}
step "create, test and publish demo-web with ge-image (local QEMU)" create_demo_web

echo "### ge-image locate"
"$GE_IMAGE" locate --os-cloud local --os-region-name RegionOne

# A glancesync config for the local cloud, in the original's format.
CONFIG="$DEMO_DIR/glancesync.conf"
password_b64=$(python3 - "$OS_CLIENT_CONFIG_FILE" <<'PY'
import base64, re, sys
text = open(sys.argv[1]).read()
block = text.split("local:", 1)[1]
pw = re.search(r"password:\s*['\"]?([^'\"\n]+)", block).group(1)
print(base64.b64encode(pw.encode()).decode())
PY
)
# What `ge-image publish` advised: the checksum of the retired image goes to
# `replace`, so glancesync replaces the old copies in RegionTwo and RegionThree
# with the new one.
replace=$(osc image list --name demo-webserver_obsolete -f value -c ID | head -1)
[ -z "$replace" ] || replace=$(osc image show "$replace" -f value -c checksum)
# The file holds a password: it is created private (umask 077 in a
# subshell), never written first and restricted after. A file left by an
# earlier run is removed so that its old mode cannot carry over.
rm -f "$CONFIG"
(
umask 077
cat > "$CONFIG" <<CONF
[main]
master_region = RegionOne
preferable_order = RegionTwo
max_children = 2

[DEFAULT]
use_keystone_v3 = True
# Sync public images carrying any of these properties (and copy only these).
metadata_set = nid, type
replace = ${replace}

[master]
credential = admin,$password_b64,http://127.0.0.1:5000/v3,admin
CONF
)

echo
echo "### glancesync --show-status (before)"
"$GLANCESYNC" --config-file "$CONFIG" --show-status
echo "### glancesync (sync RegionOne -> RegionTwo, RegionThree)"
"$GLANCESYNC" --config-file "$CONFIG"
echo
echo "### glancesync --show-status (after)"
"$GLANCESYNC" --config-file "$CONFIG" --show-status
