#!/usr/bin/env bash
# Builds the Linux installers (.deb and AppImage) with the Tauri bundler, in release mode.
# They land in <target>/release/bundle/{deb,appimage}/. Pass `--bundles deb` for one kind.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-system.sh
[ -d ui/node_modules ] || npm --prefix ui install --no-audit --no-fund --loglevel=error
cd src-tauri
exec ../ui/node_modules/.bin/tauri build "$@"
