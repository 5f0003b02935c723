#!/usr/bin/env bash
# Benchmark: a `debian-minimal` image (bookworm, a bare-filesystem qcow2, as
# diskimage-builder builds it without `vm`) built by our builder
# (`diskimage`'s disk-image-create example) vs diskimage-builder's own
# `disk-image-create debian-minimal` from the venv in
# ~/.cache/openstack-image-tools/dib-venv, one run each, same machine:
#   cold  : empty cache directory (packages downloaded, debootstrap runs);
#   warm  : the same command again on that cache;
#   change: one changed input (`-p less`, an extra package), warm cache.
# DIB runs with DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE=1 (its own warm cache) and
# a `sudo` shim (we are root; DIB calls sudo for mounts and chroots).
# Targets: cold <= 0.75x DIB, warm <= 0.25x, change <= 0.5x.
#
#   scripts/bench/diskimage.sh            # both tools
#   ONLY=ours scripts/bench/diskimage.sh  # ours only
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${DIB_VENV:-$HOME/.cache/openstack-image-tools/dib-venv}
ONLY=${ONLY:-both}
export PATH=$HOME/.cargo/bin:$PATH LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export DIB_RELEASE=bookworm

die() { echo "diskimage bench: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"

# Mirror: DIB_DISTRIBUTION_MIRROR, else the first bookworm URI of the apt sources.
if [ -z "${DIB_DISTRIBUTION_MIRROR:-}" ]; then
    DIB_DISTRIBUTION_MIRROR=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm( |\n|$)/ {
        for (i=1;i<=NF;i++) if ($i=="URIs:") { print $(i+1); exit } }' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
fi
[ -n "${DIB_DISTRIBUTION_MIRROR:-}" ] || die "set DIB_DISTRIBUTION_MIRROR"
export DIB_DISTRIBUTION_MIRROR

WORK=$(mktemp -d /var/tmp/diskimage-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

echo "building the disk-image-create example (debug; the work is in child processes)..." >&2
(cd "$ROOT" && cargo build -q -p diskimage --example disk-image-create)
OURS=$CARGO_TARGET_DIR/debug/examples/disk-image-create

now() { date +%s.%N; }
declare -A T
timeit() { # name command...
    local name=$1; shift
    local t0; t0=$(now)
    "$@" >"$WORK/$name.log" 2>&1 || { tail -n 30 "$WORK/$name.log" >&2; die "$name failed"; }
    T[$name]=$(echo "$(now) - $t0" | bc)
    printf '%-12s %8.1f s\n' "$name" "${T[$name]}" >&2
}

if [ "$ONLY" != dib ]; then
    C=$WORK/ours-cache
    timeit ours-cold   "$OURS" --image-cache "$C" -o "$WORK/ours-cold" debian-minimal
    timeit ours-warm   "$OURS" --image-cache "$C" -o "$WORK/ours-warm" debian-minimal
    timeit ours-change "$OURS" --image-cache "$C" -o "$WORK/ours-change" -p less debian-minimal
    rm -rf "$C"
fi

if [ "$ONLY" != ours ]; then
    [ -x "$VENV/bin/disk-image-create" ] || die "no diskimage-builder venv at $VENV"
    mkdir -p "$WORK/shim"
    cat >"$WORK/shim/sudo" <<'SHIM'
#!/bin/bash
# sudo for root: drop sudo's own options, run the command.
while [ $# -gt 0 ]; do
    case "$1" in
        -u|-g|-C|-D|-h|-p|-r|-t|-U) shift 2 ;;
        --) shift; break ;;
        -*) shift ;;
        *) break ;;
    esac
done
exec "$@"
SHIM
    chmod +x "$WORK/shim/sudo"
    export PATH=$WORK/shim:$VENV/bin:$PATH DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE=1
    export DIB_IMAGE_CACHE=$WORK/dib-cache
    # DIB's default sources add a security.debian.org URL that answers 400 here.
    export DIB_APT_SOURCES_CONF="default:deb $DIB_DISTRIBUTION_MIRROR bookworm main
updates:deb $DIB_DISTRIBUTION_MIRROR bookworm-updates main"
    timeit dib-cold   disk-image-create -o "$WORK/dib-cold" debian-minimal
    timeit dib-warm   disk-image-create -o "$WORK/dib-warm" debian-minimal
    timeit dib-change disk-image-create -o "$WORK/dib-change" -p less debian-minimal
fi

if [ "$ONLY" = both ]; then
    echo
    printf '| case | ours (s) | diskimage-builder (s) | ratio | target |\n|---|---|---|---|---|\n'
    for c in cold:0.75 warm:0.25 change:0.5; do
        n=${c%%:*}; tgt=${c#*:}
        r=$(echo "scale=2; ${T[ours-$n]} / ${T[dib-$n]}" | bc)
        printf '| %s | %.1f | %.1f | %s | <= %s |\n' "$n" "${T[ours-$n]}" "${T[dib-$n]}" "$r" "$tgt"
    done
fi
