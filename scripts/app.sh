#!/usr/bin/env bash
# Builds and opens the Stemdeck desktop app (after ./scripts/quickstart.sh has set up the
# machine). With ../shared present, its htdemucs weights stand in for the download.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d ui/node_modules ] || npm --prefix ui install --no-audit --no-fund --loglevel=error
npm --prefix ui run build >/dev/null
shared="${STEMDECK_SHARED_DIR:-../shared}"
weights="$shared/models/htdemucs_955717e8_from_onnx.safetensors"
if [ -z "${STEMDECK_MODEL_DIR:-}" ] && [ -f "$weights" ]; then
  models="$HOME/.cache/stemdeck/shared-models"
  mkdir -p "$models"
  ln -sf "$(realpath "$weights")" "$models/955717e8.safetensors"
  export STEMDECK_MODEL_DIR="$models"
fi
exec cargo run -p stemdeck-app
