#!/bin/bash
# Build (or reuse) a small, real, bootable Debian 12 disk image for the
# guest-tools tests and benchmarks, and print its path on standard output.
#
#   scripts/test-image/build.sh            # build if missing or stale, print path
#   scripts/test-image/build.sh --force    # rebuild
#
# Result: $TEST_IMAGE_DIR/debian12.qcow2 (default dir:
# ~/.cache/openstack-image-tools/test-image), 3 GiB virtual, msdos label,
# /dev/sda1 ext4 root mounted by UUID, GRUB (i386-pc) in the MBR gap, systemd, dbus,
# openssh-server, a getty on ttyS0, users `debian` and `support`, and the files
# of fixtures/guest-tools/sysprep-fodder.txt planted so sysprep has work.
# The image is rebuilt when this script or the fodder list changes (stamp =
# sha256 of both). Debian mirror: $DIB_DISTRIBUTION_MIRROR, else the first
# bookworm URI of the machine's apt sources. Needs root, debootstrap and
# libguestfs (guestfish); the partitioned disk is written by libguestfs, so no
# loop partitions or device-mapper are needed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
fodder="$repo/fixtures/guest-tools/sysprep-fodder.txt"
out_dir="${TEST_IMAGE_DIR:-$HOME/.cache/openstack-image-tools/test-image}"
image="$out_dir/debian12.qcow2"
stamp="$out_dir/debian12.stamp"
force=0
[ "${1:-}" = "--force" ] && force=1

log() { echo "build.sh: $*" >&2; }

mkdir -p "$out_dir"
want="$(cat "${BASH_SOURCE[0]}" "$fodder" | sha256sum | cut -d' ' -f1)"

# Tests run in parallel: serialise builders and readers of the stamp.
exec 9>"$out_dir/.lock"
flock 9

if [ "$force" = 0 ] && [ -f "$image" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "$image"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    log "must run as root (debootstrap, chroot)"; exit 1
fi

find_mirror() {
    if [ -n "${DIB_DISTRIBUTION_MIRROR:-}" ]; then
        echo "$DIB_DISTRIBUTION_MIRROR"; return
    fi
    local f
    # deb822 sources: the URIs of a stanza whose Suites has plain "bookworm".
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'BEGIN{RS=""; FS="\n"}
             { uri=""; ok=0
               for (i=1;i<=NF;i++) {
                 if ($i ~ /^URIs:/) { split($i,a," "); uri=a[2] }
                 if ($i ~ /^Suites:/) { n=split($i,s," "); for (j=2;j<=n;j++) if (s[j]=="bookworm") ok=1 }
               }
               if (ok && uri!="") { print uri; exit } }' "$f"
    done | head -n1 | grep . && return
    # one-line sources.list format
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '$1=="deb" { u=$2; if (u ~ /^\[/) u=$3; for (i=2;i<=NF;i++) if ($i=="bookworm") { print u; exit } }' \
        | grep -v '^\[' | head -n1
}
mirror="$(find_mirror || true)"
if [ -z "$mirror" ]; then
    log "no Debian mirror: set DIB_DISTRIBUTION_MIRROR or add a bookworm entry to the apt sources"; exit 1
fi
log "mirror $mirror"

work="$(mktemp -d "$out_dir/build.XXXXXX")"
root="$work/root"
cleanup() {
    umount -l "$root/proc" 2>/dev/null || true
    umount -l "$root/sys" 2>/dev/null || true
    umount -l "$root/dev/pts" 2>/dev/null || true
    umount -l "$root/dev" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

t0=$SECONDS
log "debootstrap (minbase)"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

# Keep the image small: no docs, man pages or translations.
cat >"$root/etc/dpkg/dpkg.cfg.d/01-small" <<'DPKG'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
DPKG
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"
mount --bind /sys "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"

# dbus: without it systemd-logind does not run, and nothing powers the VM off
# on the ACPI power button (as logind does on a cloud image).
log "installing kernel, systemd, dbus, openssh-server, grub"
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    linux-image-amd64 systemd-sysv udev dbus openssh-server grub-pc-bin grub2-common \
    ifupdown isc-dhcp-client cron procps kmod >"$work/apt.log" 2>&1 \
    || { tail -n 30 "$work/apt.log" >&2; exit 1; }

# Drop driver trees a QEMU guest never loads so the shrunk root stays under
# 1000 MiB (the package stays installed as far as dpkg and inspection go).
for kdir in "$root"/lib/modules/*; do
    kver="$(basename "$kdir")"
    rm -rf "$kdir"/kernel/drivers/{gpu,media,infiniband,iio,staging,isdn,bluetooth} \
           "$kdir"/kernel/drivers/net/{wireless,ethernet/mellanox,ethernet/intel/ice} "$kdir"/kernel/sound
    chroot "$root" depmod -a "$kver"
done

rootuuid="$(cat /proc/sys/kernel/random/uuid)"
cat >"$root/etc/fstab" <<FSTAB
UUID=$rootuuid / ext4 errors=remount-ro 0 1
FSTAB
echo ge-test >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 ge-test\n' >"$root/etc/hosts"
cat >"$root/etc/network/interfaces" <<'NET'
auto lo
iface lo inet loopback
allow-hotplug ens3
iface ens3 inet dhcp
NET
cat >"$root/etc/default/grub" <<'GRUB'
GRUB_DEFAULT=0
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8"
GRUB_TERMINAL="serial console"
GRUB_SERIAL_COMMAND="serial --speed=115200"
GRUB_DISABLE_OS_PROBER=true
GRUB
chroot "$root" useradd -m -s /bin/bash debian
chroot "$root" useradd -m -s /bin/bash support
chroot "$root" systemctl enable serial-getty@ttyS0.service >/dev/null 2>&1 || true
chroot "$root" apt-get clean
rm -rf "$root/var/lib/apt/lists/"* "$root/usr/sbin/policy-rc.d"

# Plant every file of the fodder list (see fixtures/guest-tools/sysprep-fodder.txt).
grep -v '^#' "$fodder" | while read -r op path check; do
    [ -n "$op" ] || continue
    # /var/run is an absolute symlink to /run: never follow it out of the chroot.
    case "$path" in /var/run/*) path="/run/${path#/var/run/}" ;; esac
    f="$root$path"
    mkdir -p "$(dirname "$f")"
    case "${check:-gone}" in
        noline=*) key="${check#noline=}"
                  grep -q "^$key" "$f" 2>/dev/null || echo "${key}fodder-$op" >>"$f" ;;
        *) [ -s "$f" ] || echo "fodder for $op" >"$f" ;;
    esac
done
echo "root-history-line" >>"$root/root/.bash_history"
echo 0123456789abcdef0123456789abcdef >"$root/etc/machine-id"
cp "$root/etc/machine-id" "$root/var/lib/dbus/machine-id"

umount -l "$root/proc" "$root/sys" "$root/dev/pts" "$root/dev"
log "rootfs ready after $((SECONDS - t0)) s: $(du -sm "$root" | cut -f1) MiB"

tar --numeric-owner --xattrs -C "$root" -cf "$work/root.tar" .
rm -rf "$root"

# grub-install runs inside the appliance, where a raw device name passed to
# `command` is not translated by libguestfs: the kernel may name our disk
# /dev/sdb and the appliance's own (a whole-disk ext2, no partition table)
# /dev/sda, and `grub-install /dev/sda` then fails with "embedding is not
# possible, but this is required for cross-disk install" (seen in cold CI
# runs under load). So the script below installs GRUB on the disk that holds
# the mounted root, found from /proc/self/mountinfo and /sys. Any other
# failure still gets the disk written again, up to three times.
cat >"$work/install-grub.sh" <<'SH'
set -eu
dev=$(awk '$5 == "/" { print $3 }' /proc/self/mountinfo | tail -n 1)
disk=$(basename "$(readlink -f "/sys/dev/block/$dev/..")")
[ -b "/dev/$disk" ] || { echo "install-grub: no disk found for the root (device $dev)" >&2; exit 1; }
echo "install-grub: root $dev on /dev/$disk"
grub-install --target=i386-pc "/dev/$disk"
SH
write_disk() {
    rm -f "$work/disk.qcow2"
    qemu-img create -q -f qcow2 "$work/disk.qcow2" 3G
    LIBGUESTFS_BACKEND="${LIBGUESTFS_BACKEND:-direct}" \
    LIBGUESTFS_BACKEND_SETTINGS="${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}" \
    guestfish --rw -a "$work/disk.qcow2" >"$work/guestfish.log" 2>&1 <<GF
run
part-init /dev/sda mbr
part-add /dev/sda p 2048 -1
part-set-bootable /dev/sda 1 true
mke2fs /dev/sda1 fstype:ext4 uuid:$rootuuid label:root journalsize:16 bytesperinode:65536
mount /dev/sda1 /
tar-in $work/root.tar / xattrs:true
upload $work/install-grub.sh /install-grub.sh
command "sh /install-grub.sh"
rm /install-grub.sh
command "update-grub"
fstrim /
umount-all
GF
}
attempt=1
while log "writing the disk with libguestfs (attempt $attempt of 3)"; ! write_disk; do
    cat "$work/guestfish.log" >&2
    [ "$attempt" -lt 3 ] || exit 1
    attempt=$((attempt + 1))
done
mv "$work/disk.qcow2" "$image"
echo "$want" >"$stamp"
log "built $image in $((SECONDS - t0)) s"
echo "$image"
