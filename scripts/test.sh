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
#
# Each phase (setup, format check, clippy, cargo deny, test build, tests)
# logs its UTC start time and duration, and a summary of all of them ends the
# log, also after a failure.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
cd "$PROJECT_ROOT"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cloud_was_up=0; rabbit_was_up=0
port_open 5000 && port_open 9292 && port_open 9293 && port_open 9294 && cloud_was_up=1
port_open 5672 && rabbit_was_up=1

run_t0=$(now)
phase_times=()
# A step (lib.sh) with its UTC start time, remembered for the summary.
phase_name= phase_t0=
phase() {
  phase_name=$1 phase_t0=$(now)
  log "$(date -u +%H:%M:%S) UTC: $phase_name"
  step "$@"
  phase_times+=("$phase_name $(( $(now) - phase_t0 )) s")
  phase_name=
}
summary() {
  local joined=
  [ -z "$phase_name" ] || phase_times+=("$phase_name FAILED after $(( $(now) - phase_t0 )) s")
  [ "${#phase_times[@]}" -eq 0 ] || printf -v joined '%s, ' "${phase_times[@]}"
  log "phases: ${joined}total $(( $(now) - run_t0 )) s"
}

test_image_pid=
stop_started_services() {
  local rc=$?
  # Never leave the background test-image build (chroot mounts) behind.
  if [ -n "$test_image_pid" ]; then wait "$test_image_pid" 2>/dev/null || true; fi
  summary
  if [ "${KEEP_SERVICES:-0}" != 1 ]; then
    [ "$rabbit_was_up" -eq 1 ] || "$PROJECT_ROOT/scripts/rabbitmq/down.sh" || true
    [ "$cloud_was_up" -eq 1 ] || "$PROJECT_ROOT/scripts/cloud/down.sh" || true
  fi
  exit $rc
}
trap stop_started_services EXIT

phase "setup" "$PROJECT_ROOT/scripts/setup.sh"
ensure_cargo_path
export OS_CLIENT_CONFIG_FILE="$LOCAL_CLOUD_DIR/clouds.yaml"
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# CI runs in a fresh clone each time: keep build artefacts in the cache so a
# rerun only compiles what changed (a cold run still works, just slower).
if [ "${CI:-}" = true ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="$TOOLS_CACHE_DIR/ci-target"
fi

# The Debian test image the VM tests boot (scripts/test-image/build.sh:
# debootstrap and a libguestfs appliance, 2-3 minutes when not cached) is built
# in the background while clippy and the test build compile; the first VM test
# would otherwise build it on the test run's critical path (the vm test group
# runs one test at a time). Tests wait for it on build.sh's lock. A failure
# here is only logged: the first test that needs the image builds it again and
# fails with the reason. Skipped with a TEST_FILTER (it may select no VM test).
test_image_log=$TOOLS_CACHE_DIR/test-image-build.log
if [ -z "${TEST_FILTER:-}" ]; then
  mkdir -p "$TOOLS_CACHE_DIR"
  log "building the test image in the background (log: $test_image_log)"
  "$PROJECT_ROOT/scripts/test-image/build.sh" >/dev/null 2>"$test_image_log" &
  test_image_pid=$!
fi

phase "format check" cargo fmt --all -- --check
phase "clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
phase "cargo deny" cargo deny --log-level error check bans licenses sources
# The test runners reuse these artefacts (same profile and features).
phase "test build" cargo test --workspace --locked --no-run

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
if [ -n "$test_image_pid" ]; then
  last=$(tail -n 1 "$test_image_log" 2>/dev/null || true)
  if kill -0 "$test_image_pid" 2>/dev/null; then
    log "test image: still building (${last:-starting}); the VM tests wait for it"
  else
    log "test image: ${last:-up to date}"
  fi
fi
phase "tests" run_tests
