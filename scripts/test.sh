#!/usr/bin/env bash
# The whole test suite: system packages, then every Rust test in the workspace.
# Tests that need ../shared (real weights and music) skip with a printed reason without it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-system.sh
cargo test --workspace --no-fail-fast
