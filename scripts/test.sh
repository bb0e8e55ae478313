#!/usr/bin/env bash
# The whole test suite: system packages, the UI build, every Rust test in the workspace,
# the UI in headless Chromium with mocked IPC, and the real app end to end under Xvfb.
# Tests that need ../shared (real weights and music) fall back or skip, and say so.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-system.sh
shared="${STEMDECK_SHARED_DIR:-$(pwd)/../shared}"
if [ -f "$shared/models/htdemucs_955717e8_from_onnx.safetensors" ]; then
  echo "real-weights tests: running with $shared"
else
  echo "real-weights tests: SKIPPED, $shared/models/htdemucs_955717e8_from_onnx.safetensors not found (set STEMDECK_SHARED_DIR); the app's end-to-end test uses the small fixture model"
fi
export STEMDECK_SHARED_DIR="$shared"

# The app embeds the built UI, so it is built before any Rust test compiles. (`npm install`
# rather than `npm ci`: npm 11 leaves other platforms' optional packages out of the lock
# file, which `npm ci` then rejects; the versions are still the lock file's.)
npm --prefix ui install --no-audit --no-fund --loglevel=error
npm --prefix ui run build

status=0
cargo test --workspace --no-fail-fast || status=1
npm --prefix ui test || status=1
./scripts/test-app.sh || status=1
echo "screenshots: $(pwd)/artifacts/screenshots"
exit $status
