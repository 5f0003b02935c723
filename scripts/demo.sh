#!/usr/bin/env bash
# The main job on the embedded default: install everything, start the local
# cloud, load a few sample images into RegionOne, publish a new version of
# one of them with `ge-image publish` (once) and list the published images with
# `ge-image locate`, then run glancesync to show the status, sync
# RegionOne -> RegionTwo and RegionThree (each image read from RegionOne once
# and streamed to both), and show the status again.
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
chmod 600 "$CONFIG"

echo
echo "### glancesync --show-status (before)"
"$GLANCESYNC" --config-file "$CONFIG" --show-status
echo "### glancesync (sync RegionOne -> RegionTwo, RegionThree)"
"$GLANCESYNC" --config-file "$CONFIG"
echo
echo "### glancesync --show-status (after)"
"$GLANCESYNC" --config-file "$CONFIG" --show-status
