#!/usr/bin/env bash
# Install everything the workspace needs and start the local services.
#
#   scripts/setup.sh            install + start the local cloud and RabbitMQ
#   scripts/setup.sh --no-start install only
#
# Idempotent: a second run installs nothing that is already there and reuses
# running services. Stop the services with scripts/stop.sh.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

start=1
for a in "$@"; do
  case $a in
    --no-start) start=0 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) die "unknown option: $a (see --help)" ;;
  esac
done

NEXTEST_VERSION=0.9.143

# cargo-deny and cargo-nextest, pinned, built from crates.io with their own
# lock files (no prebuilt download: only package registries are reachable).
# A version already installed is kept; compiling both takes several minutes
# on a fresh machine, so it runs in the background while the services start.
# On CI (CI=true) they are built without optimisation (--debug): cargo-deny's
# release profile is a fat-LTO, one-codegen-unit build, and setup waits for
# both before clippy; a debug cargo-deny took 202 s to build at load 7 (84 s
# of CPU) and checks this workspace in 8 s instead of 3.
install_rust_tools() {
  ensure_cargo_path
  local profile=()
  [ "${CI:-}" != true ] || profile=(--debug)
  if ! cargo deny --version >/dev/null 2>&1; then
    log "installing cargo-deny 0.20.2 ${profile[*]} (minutes, once per machine)"
    cargo install --locked "${profile[@]}" cargo-deny --version 0.20.2
  fi
  if [ "$(cargo nextest --version 2>/dev/null | head -n1 | awk '{ print $2 }')" != "$NEXTEST_VERSION" ]; then
    log "installing cargo-nextest $NEXTEST_VERSION ${profile[*]} (minutes, once per machine)"
    cargo install --locked "${profile[@]}" cargo-nextest --version "$NEXTEST_VERSION"
  fi
  cargo nextest --version >/dev/null || die "cargo-nextest $NEXTEST_VERSION did not install"
}

rust_tools_pid=
rust_tools_log=$TOOLS_CACHE_DIR/rust-tools-install.log
wait_rust_tools() {
  if ! wait "$rust_tools_pid"; then
    tail -n 30 "$rust_tools_log" >&2 || true
    die "installing the Rust tools failed; full log in $rust_tools_log"
  fi
  cat "$rust_tools_log" >&2
}

step "Debian packages" "$PROJECT_ROOT/scripts/install-debian.sh"
mkdir -p "$TOOLS_CACHE_DIR"
install_rust_tools >"$rust_tools_log" 2>&1 &
rust_tools_pid=$!
step "diskimage-builder reference venv" "$PROJECT_ROOT/scripts/dib-venv.sh"
if [ "$start" -eq 1 ]; then
  step "local cloud (Keystone + Glance RegionOne/RegionTwo)" "$PROJECT_ROOT/scripts/cloud/up.sh"
  step "RabbitMQ" "$PROJECT_ROOT/scripts/rabbitmq/up.sh"
  log "clouds.yaml: $LOCAL_CLOUD_DIR/clouds.yaml (export OS_CLIENT_CONFIG_FILE=$LOCAL_CLOUD_DIR/clouds.yaml)"
fi
step "Rust tools (cargo-deny, cargo-nextest $NEXTEST_VERSION)" wait_rust_tools
