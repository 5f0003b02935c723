#!/usr/bin/env bash
# Install diskimage-builder 3.43.0 from PyPI into a venv: the reference for the
# diskimage crate's tests (element-info, package-installs-squash, its elements).
#
#   scripts/dib-venv.sh    creates $TOOLS_CACHE_DIR/dib-venv (skips when present)
#
# Idempotent: does nothing when the venv already has this version.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

DIB_VERSION=3.43.0
venv=${DIB_VENV:-$TOOLS_CACHE_DIR/dib-venv}

if [ -x "$venv/bin/disk-image-create" ] \
  && "$venv/bin/python3" -c "import importlib.metadata as m, sys; sys.exit(m.version('diskimage-builder') != '$DIB_VERSION')" 2>/dev/null; then
  log "diskimage-builder $DIB_VERSION already in $venv"
  exit 0
fi
mkdir -p "$(dirname "$venv")"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "diskimage-builder==$DIB_VERSION"
log "diskimage-builder $DIB_VERSION installed in $venv"
