#!/usr/bin/env bash
# The one test command: unit, integration, property and doc tests of every crate.
#
#   bash scripts/test.sh [extra cargo test arguments]
set -euo pipefail

cd "$(dirname "$0")/.."

echo "==> cargo test --workspace"
cargo test --workspace "$@"
