#!/usr/bin/env bash
# Install the Debian packages this workspace needs, once.
#
# Idempotent: when every package is already installed it does nothing but the
# dpkg query. Mirrors come from the machine's own apt sources (never hard-coded).
# qemu-system-x86 comes from bookworm-backports so that it matches the
# preinstalled qemu-utils (see docs/ARCHITECTURE.md, "Environment").
set -euo pipefail

PACKAGES=(
  build-essential pkg-config libssl-dev ca-certificates curl
  libguestfs-dev libguestfs-tools linux-image-amd64
  debootstrap openssh-server rabbitmq-server packer
  xorriso genisoimage dosfstools e2fsprogs fdisk parted
  hyperfine time
)
BACKPORTS_PACKAGES=(qemu-system-x86 qemu-utils)

log() { printf 'install-debian: %s\n' "$*" >&2; }

missing=()
for p in "${PACKAGES[@]}" "${BACKPORTS_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  log "all Debian packages present"
  exit 0
fi
log "missing: ${missing[*]}"

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root to install packages (or install them yourself): ${missing[*]}"
  exit 1
fi

# Add bookworm-backports from the same mirror as the main Debian source.
backports_file=/etc/apt/sources.list.d/bookworm-backports.sources
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  mirror=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '/^deb / && $0 !~ /security/ && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list)
  fi
  if [ -z "$mirror" ]; then
    log "cannot find the Debian mirror in the apt sources; add bookworm-backports yourself"
    exit 1
  fi
  log "adding bookworm-backports from $mirror"
  cat > "$backports_file" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# rabbitmq-server and openssh-server must not be started by the package
# scripts; the project starts what it needs itself.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod +x "$policy"
  created_policy=1
fi
cleanup() { if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

# On CI (CI=true, a throw-away machine) dpkg skips its per-file fsync: the
# install is bound by those syncs (a fresh minbase bookworm took 290 s here,
# 86 s of it CPU). Elsewhere dpkg keeps its safe default.
dpkg_io=()
[ "${CI:-}" != true ] || dpkg_io=(-o Dpkg::Options::=--force-unsafe-io)
apt-get install -y -q --no-install-recommends "${dpkg_io[@]}" -t bookworm-backports "${BACKPORTS_PACKAGES[@]}"
apt-get install -y -q --no-install-recommends "${dpkg_io[@]}" "${PACKAGES[@]}"
log "done"
