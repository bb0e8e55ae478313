#!/usr/bin/env bash
# Crash safety by SIGKILL (tests/crash_safety.rs): the CLI killed during downloads, decodes,
# separations, stem writes and ZIP exports; the real app killed while its queue runs jobs
# and saves the library; a library save loop killed. Each CRASH_KILLS times (default 50).
# After every kill it checks that nothing under a final name is incomplete, that the
# result cache points only at complete files, that the library reads and marks the
# interrupted job, and that the next start clears what the killed run left. Not in CI
# (it takes several minutes); see docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CRASH_KILLS="${CRASH_KILLS:-50}"
[ -d ui/node_modules ] || npm --prefix ui install --no-audit --no-fund --loglevel=error
npm --prefix ui run build >/dev/null
cargo build -p stemdeck-app
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
export STEMDECK_APP_BIN="$target_dir/debug/stemdeck-app"
cargo test --workspace --test crash_safety --no-run
xvfb-run -a -s "-screen 0 1280x800x24" \
  cargo test --workspace --test crash_safety -- --ignored --nocapture --test-threads=1 \
  --skip child_saves_library_until_killed
