#!/usr/bin/env bash
# The main job on the embedded default: install everything, start the local
# cloud, load a few sample images into RegionOne, then run glancesync to show
# the status, sync RegionOne -> RegionTwo, and show the status again.
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

step "build glancesync" cargo build --locked --release -p glancesync
GLANCESYNC="${CARGO_TARGET_DIR:-$PROJECT_ROOT/target}/release/glancesync"

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
cat > "$CONFIG" <<CONF
[main]
master_region = RegionOne
preferable_order = RegionTwo
max_children = 2

[DEFAULT]
use_keystone_v3 = True
# Sync public images carrying any of these properties (and copy only these).
metadata_set = nid, type

[master]
credential = admin,$password_b64,http://127.0.0.1:5000/v3,admin
CONF
chmod 600 "$CONFIG"

echo
echo "### glancesync --show-status (before)"
"$GLANCESYNC" --config-file "$CONFIG" --show-status
echo "### glancesync (sync RegionOne -> RegionTwo)"
"$GLANCESYNC" --config-file "$CONFIG"
echo
echo "### glancesync --show-status (after)"
"$GLANCESYNC" --config-file "$CONFIG" --show-status
