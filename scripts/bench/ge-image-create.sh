#!/usr/bin/env bash
# Benchmark: `ge-image create --backend local` against Packer 1.6.6's qemu
# builder followed by the original create_ge_images post-processing, same
# base image (scripts/test-image/build.sh), same create.sh and data.tgz
# (fixtures/ge-image/webdemo), one run each, TCG:
#   peer: packer build (qemu builder: copy of the base, boot, SSH, upload
#         data.tgz + create.sh, run it, poweroff), then virt-sysprep,
#         shrink.py (guestfish e2fsck/resize2fs -M/tune2fs, qemu-img create,
#         virt-resize --shrink), virt-sparsify, upload as <name>_rc.
#   ours: ge-image create NAME --backend local (boot on an overlay, create.sh,
#         poweroff, prepare in one appliance booted beside the build VM and
#         reading its disk over NBD once the guest stopped,
#         upload + verify, and the test step: a second boot from the prepared
#         file while the upload runs, then test.sh), which the peer does not do.
#   ours --no-test: the same without the test step (what the peer does).
#   ours without prepare: --no-prepare --no-test (snapshot + upload).
# Targets: ours <= 0.4x the peer; --no-prepare no slower than Packer alone.
# Then, once, the physical limits on this machine: one TCG boot of the base
# to an SSH banner (QEMU as ge-image starts it) and one libguestfs appliance
# launch (`guestfish run`); LIMITS=0 skips them.
# The two --no-test runs use -v; their stderr is time-stamped (seconds since
# start) and the last round's progress lines and INFO records are printed
# at the end: the stage profile of the same runs as the totals.
# ROUNDS=N (default 1) runs N interleaved rounds (peer, ours, ours without
# prepare) and prints each round and the medians: the machine may be shared.
# The bench base is declared `systemd_credentials = true` (the test image is
# Debian 12): ge-image hands the SSH key over as a systemd credential, no
# libguestfs launch per boot.
# Both build VMs get the same vCPUs: ge-image's default (the host's CPUs, at
# most 4: image_pipeline::compute::local::default_cpus), written into
# Packer's template as "cpus" (Packer's own default is 1: with it Packer took
# ~1 s longer here, run 8 in docs/benchmarks.md).
# Needs: packer, libguestfs-tools, qemu, the local cloud (scripts/setup.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/bench/lib.sh
. "$ROOT/scripts/bench/lib.sh"
die() { echo "ge-image-create bench: $*" >&2; exit 1; }
for t in packer virt-sysprep virt-resize virt-sparsify virt-customize guestfish qemu-img dpkg-deb; do
    command -v "$t" >/dev/null || die "$t missing"
done
export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg
export OS_CLIENT_CONFIG_FILE=${OS_CLIENT_CONFIG_FILE:-$HOME/.cache/openstack-image-tools/local-cloud/clouds.yaml}
OSC=${OSC:-$HOME/.cache/openstack-image-tools/local-cloud/venv/bin/openstack}
osc() { "$OSC" --os-cloud local --os-region-name RegionOne "$@"; }
IMAGE=${IMAGE:-$("$ROOT/scripts/test-image/build.sh")}
# GE=/path/to/ge-image uses that binary (e.g. a debug build) instead.
if [ -z "${GE:-}" ]; then
    cargo build -q --release -p ge-image --manifest-path "$ROOT/Cargo.toml"
    GE="${CARGO_TARGET_DIR:-$ROOT/target}/release/ge-image"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ge-create-bench.XXXXXX")
cleanup() {
    for id in $(osc image list --private -f value -c ID -c Name | awk '$2 ~ /^gebench-/ {print $1}'); do
        osc image delete "$id" || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
now() { date +%s.%N; }
# Each line of standard input prefixed with the seconds since stamp
# started (with the command it reads from): the stage profile of a `-v` run.
stamp() { perl -MTime::HiRes=time -pe 'BEGIN { $| = 1; $s = time } $_ = sprintf("%7.1f %s", time - $s, $_)'; }

# The base in Glance (ours downloads it once into its cache: warm it first,
# as Packer gets a local file).
BASE=gebench-base
osc image create --disk-format qcow2 --container-format bare --private --file "$IMAGE" "$BASE" >/dev/null
# The image folder.
F="$WORK/images"; mkdir -p "$F" "$WORK/deb"
dpkg-deb --root-owner-group --build "$ROOT/fixtures/ge-image/webdemo/pkg" "$WORK/deb/webdemo_1.0_all.deb" >/dev/null
ROUNDS=${ROUNDS:-1}
CPUS=$(nproc); [ "$CPUS" -le 4 ] || CPUS=4
for r in $(seq 1 "$ROUNDS"); do
    for d in "gebench-web$r" "gebench-nt$r" "gebench-raw$r"; do
        mkdir -p "$F/$d"
        cp "$ROOT/fixtures/ge-image/webdemo/create.sh" "$ROOT/fixtures/ge-image/webdemo/test.sh" "$F/$d/"
        tar -czf "$F/$d/data.tgz" -C "$WORK/deb" webdemo_1.0_all.deb
    done
done
cat >"$WORK/settings.toml" <<TOML
backend = "local"
base = "bench"
[bases.bench]
image = "$BASE"
user = "root"
systemd_credentials = true
TOML

# --- peer: Packer's qemu builder (root's key put into a copy of the base first, untimed) ---
ssh-keygen -q -t ed25519 -N '' -f "$WORK/key"
cp --sparse=always "$IMAGE" "$WORK/base.qcow2"
virt-customize -q -a "$WORK/base.qcow2" --ssh-inject "root:file:$WORK/key.pub" >/dev/null
cat >"$WORK/packer.json" <<JSON
{
  "builders": [{
    "type": "qemu", "accelerator": "tcg", "headless": true,
    "iso_url": "$WORK/base.qcow2", "iso_checksum": "none", "disk_image": true,
    "format": "qcow2", "disk_interface": "virtio", "net_device": "virtio-net",
    "memory": 1024, "cpus": $CPUS,
    "ssh_username": "root", "ssh_private_key_file": "$WORK/key", "ssh_timeout": "20m",
    "shutdown_command": "poweroff",
    "output_directory": "$WORK/packer-out", "vm_name": "tmp_image"
  }],
  "provisioners": [
    {"type": "file", "source": "$F/gebench-web1/data.tgz", "destination": "/root/data.tgz"},
    {"type": "file", "source": "$F/gebench-web1/create.sh", "destination": "/root/create.sh"},
    {"type": "shell", "inline": ["cd /root && chmod 700 create.sh && ./create.sh", "userdel -r support || true", "rm -f /root/create.sh /root/data.tgz"]}
  ]
}
JSON
times=()
for r in $(seq 1 "$ROUNDS"); do
rm -rf "$WORK/packer-out" "$WORK/peer.qcow2"
t0=$(now)
PACKER_LOG=0 packer build -color=false "$WORK/packer.json" >"$WORK/packer.log" 2>&1 \
    || { tail -n 40 "$WORK/packer.log"; die "packer failed"; }
t1=$(now)
img="$WORK/packer-out/tmp_image"
virt-sysprep -q -a "$img" >"$WORK/sysprep.log" 2>&1 || { cat "$WORK/sysprep.log"; die "virt-sysprep failed"; }
peer_shrink "$img" "$WORK"
virt-sparsify -q --check-tmpdir=continue "$img" "$WORK/peer.qcow2" >"$WORK/sparsify.log" 2>&1 \
    || { cat "$WORK/sparsify.log"; die "virt-sparsify failed"; }
osc image create --disk-format qcow2 --container-format bare --private \
    --file "$WORK/peer.qcow2" "gebench-peer$r"_rc >/dev/null
t2=$(now)

# --- ours (the first run downloads the base from Glance into its cache, ~5 s) ---
t3=$(now)
"$GE" create "gebench-web$r" --settings "$WORK/settings.toml" --folder-root "$F" \
    --os-cloud local --os-region-name RegionOne >"$WORK/ours.out" 2>"$WORK/ours.err" \
    || { tail -n 30 "$WORK/ours.err"; die "ge-image create failed"; }
t4=$(now)
{ "$GE" -v create "gebench-nt$r" --no-test --settings "$WORK/settings.toml" --folder-root "$F" \
    --os-cloud local --os-region-name RegionOne 2>&1 >"$WORK/nt.out" | stamp >"$WORK/nt.err"; } \
    || { tail -n 30 "$WORK/nt.err"; die "ge-image create --no-test failed"; }
t5=$(now)
{ "$GE" -v create "gebench-raw$r" --no-prepare --no-test --settings "$WORK/settings.toml" --folder-root "$F" \
    --os-cloud local --os-region-name RegionOne 2>&1 >"$WORK/raw.out" | stamp >"$WORK/raw.err"; } \
    || { tail -n 30 "$WORK/raw.err"; die "ge-image create --no-prepare failed"; }
t6=$(now)
times+=("$t0 $t1 $t2 $t3 $t4 $t5 $t6")
echo "round $r: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
python3 - "${times[@]}" <<'PY'
import statistics, sys
rows = [list(map(float, a.split())) for a in sys.argv[1:]]
res = []
for i, (t0, t1, t2, t3, t4, t5, t6) in enumerate(rows, 1):
    packer, peer, ours, nt, raw = t1 - t0, t2 - t0, t4 - t3, t5 - t4, t6 - t5
    res.append((packer, peer, ours, nt, raw))
    print(f"round {i}: packer {packer:.1f} s, peer total {peer:.1f} s, ours {ours:.1f} s (ratio {ours/peer:.2f}), "
          f"ours --no-test {nt:.1f} s (ratio {nt/peer:.2f}), "
          f"ours --no-prepare --no-test {raw:.1f} s (vs packer {raw/packer:.2f})")
m = [statistics.median(c) for c in zip(*res)]
packer, peer, ours, nt, raw = m
print(f"median over {len(res)}: peer: packer build {packer:.1f} s, total {peer:.1f} s")
print(f"median ge-image create (with prepare and its test step: a second boot): {ours:.1f} s; ratio {ours/peer:.2f} (target <= 0.40)")
print(f"median ge-image create --no-test (what the peer does): {nt:.1f} s; ratio {nt/peer:.2f} (target <= 0.40)")
print(f"median ge-image create --no-prepare --no-test: {raw:.1f} s; vs packer alone {raw/packer:.2f} (target <= 1.0)")
PY

# --- the physical limits of this machine (TCG): one boot to SSH, one appliance launch ---
if [ "${LIMITS:-1}" != 0 ]; then
    qemu-img create -q -f qcow2 -F qcow2 -b "$IMAGE" "$WORK/limit.qcow2"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    t0=$(now)
    qemu-system-x86_64 -accel tcg -machine pc -nodefaults -display none -no-reboot -m 1024 -smp "$CPUS" \
        -drive "file=$WORK/limit.qcow2,format=qcow2,if=virtio,discard=unmap" \
        -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=net0,addr=0x3 \
        -serial "file:$WORK/limit-serial.log" </dev/null >/dev/null 2>&1 &
    qpid=$!
    # A new probe every 0.3 s, each waiting up to 5 s for the banner: QEMU's
    # user network accepts before the guest listens, so one probe at a time
    # would see the banner seconds late.
    python3 - "$port" "$qpid" <<'PY' || die "limit boot: qemu exited before its SSH banner"
import os, socket, sys, threading
port, pid = int(sys.argv[1]), int(sys.argv[2])
seen = threading.Event()
def probe():
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.settimeout(5)
            if c.recv(8).startswith(b"SSH-2.0"):
                seen.set()
    except OSError:
        pass
while not seen.is_set():
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)
    threading.Thread(target=probe, daemon=True).start()
    seen.wait(0.3)
PY
    t1=$(now)
    kill "$qpid"; wait "$qpid" 2>/dev/null || true
    t2=$(now)
    guestfish --ro -a "$IMAGE" run
    t3=$(now)
    python3 -c "import sys; b, a = float(sys.argv[2]) - float(sys.argv[1]), float(sys.argv[4]) - float(sys.argv[3]); \
print(f'limits: one TCG boot of the base to an SSH banner {b:.1f} s; one appliance launch {a:.1f} s (load {sys.argv[5]})')" \
        "$t0" "$t1" "$t2" "$t3" "$(cut -d' ' -f1-3 /proc/loadavg)"
fi
# Where the time of the last round's --no-test and --no-prepare runs went
# (seconds since start; the ge-image progress lines and INFO records).
for run in "nt:--no-test" "raw:--no-prepare --no-test"; do
    echo "stages of the last round's ge-image create ${run#*:}:"
    { grep -E 'ge-image: | INFO ' "$WORK/${run%%:*}.err" || true; } \
        | sed -E 's/ [0-9T:.-]+Z +INFO / /' | cut -c1-150
done
