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

install_rust_tools() {
  ensure_cargo_path
  if ! cargo deny --version >/dev/null 2>&1; then
    log "installing cargo-deny 0.20.2 (about 6 minutes, once per machine)"
    cargo install --locked cargo-deny --version 0.20.2
  fi
  if ! cargo nextest --version >/dev/null 2>&1; then
    log "cargo-nextest not found: tests will run with cargo test"
  fi
}

step "Debian packages" "$PROJECT_ROOT/scripts/install-debian.sh"
step "Rust tools" install_rust_tools
step "diskimage-builder reference venv" "$PROJECT_ROOT/scripts/dib-venv.sh"
if [ "$start" -eq 1 ]; then
  step "local cloud (Keystone + Glance RegionOne/RegionTwo)" "$PROJECT_ROOT/scripts/cloud/up.sh"
  step "RabbitMQ" "$PROJECT_ROOT/scripts/rabbitmq/up.sh"
  log "clouds.yaml: $LOCAL_CLOUD_DIR/clouds.yaml (export OS_CLIENT_CONFIG_FILE=$LOCAL_CLOUD_DIR/clouds.yaml)"
fi
