# Helpers shared by the benchmark scripts (sourced, not run).
# shellcheck shell=bash

# The original create_ge_images' shrink step (its shrink.py) on the image IMG,
# in place, logs in the directory WORK:
#   guestfish e2fsck-f + resize2fs-M + tune2fs-l /dev/sda1,
#   the disk size picked from the shrunk filesystem (1 GiB, 5 GiB, 10 GiB, or
#   left alone above that), qemu-img create -o preallocation=metadata NEW SIZE,
#   virt-resize --shrink /dev/sda1 IMG NEW, NEW moved over IMG.
# Sets PEER_FS_MIB to the shrunk filesystem's size in MiB. Calls the caller's
# die on a failure.
#   peer_shrink IMG WORK
peer_shrink() {
    local img=$1 work=$2 fs_bytes target
    fs_bytes=$(guestfish -a "$img" 2>"$work/shrink.log" <<'GF' | awk -F': ' '/^Block count/ {c=$2} /^Block size/ {s=$2} END {print c*s}'
run
e2fsck-f /dev/sda1
resize2fs-M /dev/sda1
tune2fs-l /dev/sda1
GF
)
    PEER_FS_MIB=$((fs_bytes / 1048576))
    if   [ "$PEER_FS_MIB" -lt 1000 ];  then target=1024M
    elif [ "$PEER_FS_MIB" -lt 5000 ];  then target=5G
    elif [ "$PEER_FS_MIB" -lt 10000 ]; then target=10G
    else target=""; fi
    if [ -n "$target" ]; then
        qemu-img create -q -f qcow2 -o preallocation=metadata "$work/newdisk.qcow2" "$target"
        virt-resize -q --shrink /dev/sda1 "$img" "$work/newdisk.qcow2" >"$work/resize.log" 2>&1 \
            || { cat "$work/resize.log"; die "virt-resize failed"; }
        mv "$work/newdisk.qcow2" "$img"
    fi
}
