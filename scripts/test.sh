#!/usr/bin/env bash
# The whole test suite: system packages, the UI build, every Rust test in the workspace,
# the UI in headless Chromium with mocked IPC, and the real app end to end under Xvfb.
# Tests that need ../shared (real weights and music) fall back or skip, and say so.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-system.sh
# An S3-compatible server over a folder, for the scale-out test of results in a bucket.
command -v s3s-fs >/dev/null || cargo install s3s-fs --locked --version 0.14.1 --features binary
# The tests that need ../shared (real weights and music) run when STEMDECK_SHARED_DIR is
# set, where missing data fails them, or when ../shared has the weights; otherwise they
# are ignored, and the count below says so.
shared="${STEMDECK_SHARED_DIR:-$(pwd)/../shared}"
if [ -n "${STEMDECK_SHARED_DIR:-}" ] || [ -f "$shared/models/htdemucs_955717e8_from_onnx.safetensors" ]; then
  export STEMDECK_SHARED_DIR="$shared"
  echo "real-weights tests: running with $shared"
else
  echo "real-weights tests: ignored, $shared/models/htdemucs_955717e8_from_onnx.safetensors not found (set STEMDECK_SHARED_DIR); the app's end-to-end test uses the small fixture model"
fi

# The app embeds the built UI, so it is built before any Rust test compiles. (`npm install`
# rather than `npm ci`: npm 11 leaves other platforms' optional packages out of the lock
# file, which `npm ci` then rejects; the versions are still the lock file's.)
npm --prefix ui install --no-audit --no-fund --loglevel=error
npm --prefix ui run build

status=0
log="$(mktemp)"
cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=1
# The real-weights tests live in tests/separate_real_weights.rs.
awk '/Running .*separate_real_weights/ {on=1} on && /^test .* \.\.\. ok$/ {ran++} on && /^test .* \.\.\. ignored/ {ignored++} on && /^test result:/ {on=0} END {printf "real-weights tests: %d ran, %d ignored\n", ran, ignored}' "$log"
rm -f "$log"
npm --prefix ui test || status=1
./scripts/test-app.sh || status=1
echo "screenshots: $(pwd)/artifacts/screenshots"
exit $status
