#!/usr/bin/env bash
# The whole test suite: system packages, then every Rust test in the workspace.
# Tests that need ../shared (real weights and music) skip with a printed reason without it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-system.sh
shared="${STEMDECK_SHARED_DIR:-$(pwd)/../shared}"
if [ -f "$shared/models/htdemucs_955717e8_from_onnx.safetensors" ]; then
  echo "real-weights tests: running with $shared"
else
  echo "real-weights tests: SKIPPED, $shared/models/htdemucs_955717e8_from_onnx.safetensors not found (set STEMDECK_SHARED_DIR)"
fi
export STEMDECK_SHARED_DIR="$shared"
cargo test --workspace --no-fail-fast
