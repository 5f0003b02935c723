#!/usr/bin/env bash
# Benchmark: `ge-image prepare` (sysprep + shrink + sparsify in ONE libguestfs
# appliance) against the original create_ge_images sequence on the same test
# image, in one run on this machine:
#   virt-sysprep -a IMG
#   shrink.py: guestfish e2fsck-f + resize2fs-M + tune2fs-l, pick the size,
#              qemu-img create -o preallocation=metadata NEW SIZE,
#              virt-resize --shrink /dev/sda1 IMG NEW
#   virt-sparsify NEW OUT            (copy mode, as the original)
# Targets: wall time ratio <= 0.4, output no larger.
#
#   scripts/bench/guest-tools.sh            # image from scripts/test-image/build.sh
#   IMAGE=/path/disk.qcow2 scripts/bench/guest-tools.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/bench/lib.sh
. "$ROOT/scripts/bench/lib.sh"
die() { echo "guest-tools bench: $*" >&2; exit 1; }
for t in virt-sysprep virt-resize virt-sparsify guestfish qemu-img; do
    command -v "$t" >/dev/null || die "$t missing (apt-get install libguestfs-tools qemu-utils)"
done
IMAGE=${IMAGE:-$("$ROOT/scripts/test-image/build.sh")}
export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg
cargo build -q --release -p ge-image --manifest-path "$ROOT/Cargo.toml"
GE="$ROOT/target/release/ge-image"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ge-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
now() { date +%s.%N; }
size_of() { qemu-img info -U --output=json "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["actual-size"], d["virtual-size"])'; }

# --- peer: the original sequence (works on a copy, as the original works on its download) ---
cp --sparse=always "$IMAGE" "$WORK/tmp_image"
t0=$(now)
virt-sysprep -q -a "$WORK/tmp_image" >"$WORK/sysprep.log" 2>&1 || { cat "$WORK/sysprep.log"; die "virt-sysprep failed"; }
t1=$(now)
peer_shrink "$WORK/tmp_image" "$WORK"
t2=$(now)
virt-sparsify -q --check-tmpdir=continue "$WORK/tmp_image" "$WORK/peer.qcow2" >"$WORK/sparsify.log" 2>&1 \
    || { cat "$WORK/sparsify.log"; die "virt-sparsify failed"; }
t3=$(now)
read -r peer_alloc peer_virt < <(size_of "$WORK/peer.qcow2")

# --- ge-image prepare (input untouched, TCG forced like the peer) ---
t4=$(now)
"$GE" -q prepare "$IMAGE" -o "$WORK/ge.qcow2" --accel tcg >"$WORK/ge.log"
t5=$(now)
read -r ge_alloc ge_virt < <(size_of "$WORK/ge.qcow2")

python3 - "$t0" "$t1" "$t2" "$t3" "$t4" "$t5" "$peer_alloc" "$peer_virt" "$ge_alloc" "$ge_virt" "$PEER_FS_MIB" <<'PY'
import sys
t0, t1, t2, t3, t4, t5 = map(float, sys.argv[1:7])
pa, pv, ga, gv, mib = map(int, sys.argv[7:12])
peer, ge = t3 - t0, t5 - t4
M = 1024 * 1024
print(f"root filesystem at its minimum: {mib} MiB")
print(f"peer: virt-sysprep {t1-t0:.1f} s + shrink (guestfish + virt-resize) {t2-t1:.1f} s + virt-sparsify {t3-t2:.1f} s = {peer:.1f} s; output {pa/M:.1f} MiB allocated, {pv/M:.0f} MiB virtual")
print(f"ge-image prepare: {ge:.1f} s; output {ga/M:.1f} MiB allocated, {gv/M:.0f} MiB virtual")
print(f"time ratio {ge/peer:.2f} (target <= 0.40); size ratio {ga/pa:.3f} (target <= 1.0)")
PY
