#!/usr/bin/env bash
# Checks Cargo.lock against a local copy of the RustSec advisory database, for machines
# (CI among them) that cannot fetch it. Usage:
#
#   git clone https://github.com/rustsec/advisory-db /some/where/advisory-db
#   scripts/advisories.sh /some/where/advisory-db
#
# Needs cargo-deny (the version .ci/run installs). Advisories that apply are listed, with
# why each is accepted, in deny.toml ([advisories] ignore) and docs/reliability.md.
set -euo pipefail

db=${1:?usage: scripts/advisories.sh PATH-TO-ADVISORY-DB-CLONE}
db=$(cd "$db" && pwd)
[[ -d "$db/crates" ]] || { echo "no advisory database at $db (no crates/ folder)" >&2; exit 2; }
cd "$(dirname "$0")/.."

deny=${CARGO_DENY:-cargo-deny}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# cargo deny looks for the default database under a name derived from its URL.
ln -s "$db" "$work/advisory-db-3157b0e258782691"
sed "s|^\[advisories\]|[advisories]\ndb-path = \"$work\"|" deny.toml > "$work/deny.toml"
echo "advisory database: $db ($(git -C "$db" log -1 --format=%cs 2>/dev/null || echo 'date unknown'))"
# Offline, so that the local copy is used as it is; every crate's manifest must then be
# on disk (cargo fetch takes those of all platforms).
cargo fetch --quiet
"$deny" --offline --config "$work/deny.toml" check advisories
