#!/usr/bin/env bash
# One command on a fresh machine: install what is needed, build Stemdeck, and split a song.
#
# The song: the MUSDB18 excerpt from ../shared/testdata when it is there, otherwise a short
# demo made with sox. The model: the shared htdemucs weights when present, otherwise the
# official htdemucs checkpoint, downloaded (84 MB) and verified on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-system.sh
cargo build --release -p stemdeck-cli

shared="${STEMDECK_SHARED_DIR:-../shared}"
input="$shared/testdata/musdb18_7s/music_delta_80s_rock/mixture.wav"
if [ ! -f "$input" ]; then
  mkdir -p separated
  input="separated/demo-song.wav"
  # Kick, bass line and a chord, 8 seconds, stereo 44.1 kHz.
  sox -n -r 44100 -c 2 "$input" synth 8 sine 55 sine 110 sine 330 sine 392 \
    tremolo 2 90 remix 1,2,3 2,3,4 gain -6
fi
weights=()
if [ -f "$shared/models/htdemucs_955717e8_from_onnx.safetensors" ]; then
  weights=(--weights "$shared/models/htdemucs_955717e8_from_onnx.safetensors")
fi
./target/release/stemdeck separate "${weights[@]}" -o separated "$input"
echo "Stems are in ./separated/$(basename "${input%.*}")/"
