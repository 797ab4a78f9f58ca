#!/usr/bin/env bash
# The one test command: unit, integration, property and doc tests of every crate.
#
#   bash scripts/test.sh [--screenshots] [extra cargo test arguments]
#
# --screenshots (implied in CI, where CI is set) lets the browser test of the web
# interface (tests/tests/web.rs) renew docs/screenshots/; otherwise it takes none, so
# that a test run leaves the work tree as it was.
set -euo pipefail

cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--screenshots" ]]; then
    shift
    export KITH_SCREENSHOTS=docs/screenshots
elif [[ -n "${CI:-}" ]]; then
    export KITH_SCREENSHOTS="${KITH_SCREENSHOTS:-docs/screenshots}"
fi

echo "==> cargo test --workspace"
cargo test --workspace "$@"
