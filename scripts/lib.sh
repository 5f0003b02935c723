# Shared helpers for the project's shell scripts (sourced, not run).
# shellcheck shell=bash

PROJECT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PROJECT_ROOT
export TOOLS_CACHE_DIR=${TOOLS_CACHE_DIR:-$HOME/.cache/openstack-image-tools}
export LOCAL_CLOUD_DIR=${LOCAL_CLOUD_DIR:-$TOOLS_CACHE_DIR/local-cloud}

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Seconds since the epoch, for step timings.
now() { date +%s; }

# Run a named step and print how long it took.
step() {
  local name=$1; shift
  local t0; t0=$(now)
  log "== $name"
  "$@"
  log "== $name: done in $(( $(now) - t0 )) s"
}

# Make sure cargo is on PATH (rustup installs into ~/.cargo/bin).
ensure_cargo_path() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install the Rust toolchain (rustup) first"
}
