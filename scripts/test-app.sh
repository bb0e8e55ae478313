#!/usr/bin/env bash
# The desktop app's end-to-end test: builds the app, starts a virtual display and drives
# the real window through tauri-driver + WebKitWebDriver. Then the same UI in headless
# Chromium against a real `stemdeck serve`. Screenshots go to artifacts/screenshots (kept
# as CI artifacts).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
command -v tauri-driver >/dev/null || cargo install tauri-driver --locked --version '^2'
[ -d ui/node_modules ] || npm --prefix ui install --no-audit --no-fund --loglevel=error
npm --prefix ui run build >/dev/null
cargo build -p stemdeck-app -p stemdeck-cli
status=0
xvfb-run -a -s "-screen 0 1400x900x24" node --test tests/e2e/app.e2e.mjs || status=1
node --test ui/tests/browser.test.mjs || status=1
exit $status
