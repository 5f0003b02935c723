#!/usr/bin/env bash
# Install everything, start the local services and run every check and test.
#
#   scripts/test.sh            format, clippy, cargo-deny, then the whole test suite
#
# This is the README's test command and what CI (.ci/run) calls. The services
# this script starts (local cloud, RabbitMQ) are stopped at the end, even on
# failure; services that were already running are left running.
# Environment: KEEP_SERVICES=1 leaves started services running;
# TEST_FILTER passes a filter expression to the test runner.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
cd "$PROJECT_ROOT"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cloud_was_up=0; rabbit_was_up=0
port_open 5000 && port_open 9292 && port_open 9293 && port_open 9294 && cloud_was_up=1
port_open 5672 && rabbit_was_up=1

stop_started_services() {
  local rc=$?
  if [ "${KEEP_SERVICES:-0}" != 1 ]; then
    [ "$rabbit_was_up" -eq 1 ] || "$PROJECT_ROOT/scripts/rabbitmq/down.sh" || true
    [ "$cloud_was_up" -eq 1 ] || "$PROJECT_ROOT/scripts/cloud/down.sh" || true
  fi
  exit $rc
}
trap stop_started_services EXIT

"$PROJECT_ROOT/scripts/setup.sh"
ensure_cargo_path
export OS_CLIENT_CONFIG_FILE="$LOCAL_CLOUD_DIR/clouds.yaml"
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# CI runs in a fresh clone each time: keep build artefacts in the cache so a
# rerun only compiles what changed (a cold run still works, just slower).
if [ "${CI:-}" = true ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="$TOOLS_CACHE_DIR/ci-target"
fi

step "format check" cargo fmt --all -- --check
step "clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo deny" cargo deny --log-level error check bans licenses sources

run_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    cargo nextest run --workspace --locked --no-fail-fast ${TEST_FILTER:-}
    cargo test --workspace --locked --doc
  else
    # shellcheck disable=SC2086
    cargo test --workspace --locked --no-fail-fast ${TEST_FILTER:-}
  fi
}
step "tests" run_tests
