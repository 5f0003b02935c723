#!/usr/bin/env bash
# Benchmark: a `debian-minimal` image (bookworm, a bare-filesystem qcow2, as
# diskimage-builder builds it without `vm`) built by our builder
# (`diskimage`'s disk-image-create example) vs diskimage-builder's own
# `disk-image-create debian-minimal` from the venv in
# ~/.cache/openstack-image-tools/dib-venv, one run each, same machine:
#   cold  : empty cache directory (packages downloaded, debootstrap runs);
#   warm  : the same command again on that cache;
#   change: one changed input (`-p less`, an extra package), warm cache.
# ROUNDS=N (default 1) repeats the series as interleaved pairs (ours then
# diskimage-builder for each case, both caches emptied at the start of each
# round) and prints the median of each case.
# DIB runs with DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE=1 (its own warm cache) and
# a `sudo` shim (we are root; DIB calls sudo for mounts and chroots).
# Targets: cold <= 0.75x DIB, warm <= 0.25x, change <= 0.5x.
#
#   scripts/bench/diskimage.sh            # both tools
#   ONLY=ours scripts/bench/diskimage.sh  # ours only
#   ROUNDS=3 scripts/bench/diskimage.sh   # three interleaved rounds, medians
#   CASES=cold scripts/bench/diskimage.sh # only some cases (warm/change need
#                                         # the cases before them in the list)
#   DISKIMAGE_BACKGROUND_SNAPSHOTS=0 ONLY=ours scripts/bench/diskimage.sh
#                                         # ours with the tree snapshots packed
#                                         # in the foreground (for comparison)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${DIB_VENV:-$HOME/.cache/openstack-image-tools/dib-venv}
ONLY=${ONLY:-both}
ROUNDS=${ROUNDS:-1}
CASES=${CASES:-cold warm change}
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

echo "load at start: $(uptime)" >&2
echo "building the disk-image-create example (debug; the work is in child processes)..." >&2
(cd "$ROOT" && cargo build -q -p diskimage --example disk-image-create)
OURS=$CARGO_TARGET_DIR/debug/examples/disk-image-create

now() { date +%s.%N; }
declare -A T
timeit() { # name command...
    local name=$1; shift
    local t0; t0=$(now)
    "$@" >"$WORK/$name.log" 2>&1 || { tail -n 30 "$WORK/$name.log" >&2; die "$name failed"; }
    local t; t=$(echo "$(now) - $t0" | bc)
    T[$name]="${T[$name]:-} $t"
    printf '%s %-12s %8.1f s  (load %s)\n' "$(date -u +%H:%M:%S)" "$name" "$t" \
        "$(cut -d' ' -f1 /proc/loadavg)" >&2
    # our stage breakdown; the images themselves are not kept
    grep -E '^(stage|disk) ' "$WORK/$name.log" | sed 's/^/    /' >&2 || true
    rm -rf "$WORK/$name".qcow2 "$WORK/$name".d 2>/dev/null || true
}
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {
    if (NR % 2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2 }'; }


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
fi
# diskimage-builder runs in a subshell with its own PATH and variables.
dib() {
    (
        export PATH=$WORK/shim:$VENV/bin:$PATH DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE=1
        export DIB_IMAGE_CACHE=$WORK/dib-cache
        # DIB's default sources add a security.debian.org URL that answers 400 here.
        export DIB_APT_SOURCES_CONF="default:deb $DIB_DISTRIBUTION_MIRROR bookworm main
updates:deb $DIB_DISTRIBUTION_MIRROR bookworm-updates main"
        exec disk-image-create "$@"
    )
}
C=$WORK/ours-cache
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    rm -rf "$C" "$WORK/dib-cache"
    for case in $CASES; do
        extra=()
        [ "$case" = change ] && extra=(-p less)
        if [ "$ONLY" != dib ]; then
            timeit "ours-$case" "$OURS" --image-cache "$C" -o "$WORK/ours-$case" "${extra[@]}" debian-minimal
        fi
        if [ "$ONLY" != ours ]; then
            timeit "dib-$case" dib -o "$WORK/dib-$case" "${extra[@]}" debian-minimal
        fi
    done
done
rm -rf "$C" "$WORK/dib-cache"

echo
echo "runs (s):" >&2
for k in "${!T[@]}"; do echo "  $k:${T[$k]}" >&2; done
if [ "$ONLY" = both ]; then
    printf '| case | ours (s, median of %s) | diskimage-builder (s, median of %s) | ratio | target |\n|---|---|---|---|---|\n' "$ROUNDS" "$ROUNDS"
    for c in cold:0.75 warm:0.25 change:0.5; do
        n=${c%%:*}; tgt=${c#*:}
        [ -n "${T[ours-$n]:-}" ] || continue
        o=$(echo "${T[ours-$n]}" | median); d=$(echo "${T[dib-$n]}" | median)
        r=$(echo "scale=2; $o / $d" | bc)
        printf '| %s | %.1f | %.1f | %s | <= %s |\n' "$n" "$o" "$d" "$r" "$tgt"
    done
fi
