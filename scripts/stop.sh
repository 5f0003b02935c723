#!/usr/bin/env bash
# Stop the services scripts/setup.sh started (only those; safe to run twice).
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
rc=0
"$PROJECT_ROOT/scripts/rabbitmq/down.sh" || rc=1
"$PROJECT_ROOT/scripts/cloud/down.sh" || rc=1
exit $rc
