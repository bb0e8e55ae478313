#!/usr/bin/env bash
# Installs the system packages Stemdeck builds and tests with (Debian/Ubuntu), when missing.
set -euo pipefail
packages=(
  build-essential pkg-config libasound2-dev ffmpeg sox
  # the desktop shell (Tauri 2 on WebKitGTK) and its headless tests
  libssl-dev libwebkit2gtk-4.1-dev libgtk-3-dev librsvg2-dev libsoup-3.0-dev
  libjavascriptcoregtk-4.1-dev xvfb xauth webkit2gtk-driver imagemagick x11-utils procps
  fonts-dejavu-core chromium unzip
  # scale-out: the job queue of `stemdeck serve --queue` and its workers
  redis-server
  # bindgen, for the Signalsmith Stretch wrapper
  libclang-dev
  # libopus, built into the Opus decoder (symphonia-adapter-libopus)
  cmake
)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  echo "installing: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
