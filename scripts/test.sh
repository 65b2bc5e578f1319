#!/usr/bin/env bash
# The project's test command: installs the native engines (scripts/setup.sh --dev, quick when they are
# already there), checks formatting and lints, then runs every test of both packages.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
source scripts/env.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace "$@"
