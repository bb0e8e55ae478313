#!/usr/bin/env bash
# Coverage-guided fuzzing of the decoder's entry point and the checkpoint loader with
# libFuzzer (libfuzzer-sys) on the stable toolchain: the coverage instrumentation is
# rustc's own sancov pass, so no nightly and no cargo-fuzz are needed. Not run in CI.
#
#   ./scripts/fuzz.sh [EXECUTIONS]     # in total over both targets, default 10000000
#
# The decoder gets 95% of them: its inputs are small and fast. The checkpoint loader's
# seeds are whole (small) models, so each of its executions costs far more.
#
# Seeds are real files of every format the decoder reads (made here with ffmpeg and sox)
# and the fixture checkpoints. The corpus grows under $FUZZ_WORK (default
# ~/.cache/stemdeck-fuzz) from run to run; crashes land in $FUZZ_WORK/crashes/<target>/
# and fail the script. Each one found becomes a file in crates/*/tests/fuzz-regressions/.
set -euo pipefail
cd "$(dirname "$0")/.."
total=${1:-10000000}
work=${FUZZ_WORK:-$HOME/.cache/stemdeck-fuzz}
target_dir=${FUZZ_TARGET_DIR:-$HOME/.cache/stemdeck-fuzz-target}
triple=$(rustc -vV | sed -n 's/^host: //p')
# With --target, these flags reach our code and its dependencies but not build scripts.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release --manifest-path fuzz/Cargo.toml --target "$triple" --target-dir "$target_dir"
bin="$target_dir/$triple/release"

# Seeds. The decode target reads its first byte as the index of the extension hint.
seeds="$work/seeds"
if [ ! -f "$seeds/.made" ]; then
  rm -rf "$seeds"
  mkdir -p "$seeds/decode" "$seeds/checkpoint"
  tmp=$(mktemp -d)
  sox -n -r 44100 -c 2 -b 16 "$tmp/src.wav" synth 0.15 pluck 220 pluck 330
  sox -n -r 48000 -c 2 -b 16 "$tmp/src48.wav" synth 0.15 pluck 220 pluck 330
  ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }
  ff -i "$tmp/src.wav" -c:a pcm_s16le "$tmp/0.wav"
  ff -i "$tmp/src.wav" -c:a pcm_f32le "$tmp/0f.wav"
  ff -i "$tmp/src.wav" -c:a libmp3lame -b:a 96k "$tmp/1.mp3"
  ff -i "$tmp/src.wav" -c:a flac "$tmp/2.flac"
  ff -i "$tmp/src.wav" -c:a libvorbis "$tmp/3.ogg"
  ff -i "$tmp/src48.wav" -c:a libopus -b:a 64k "$tmp/4.opus"
  ff -i "$tmp/src.wav" -c:a aac -b:a 64k "$tmp/5.m4a"
  ff -i "$tmp/src.wav" -c:a alac "$tmp/5a.m4a"
  ff -i "$tmp/src.wav" -c:a aac -b:a 64k -f adts "$tmp/6.aac"
  ff -i "$tmp/src.wav" -c:a flac "$tmp/7.mkv"
  ff -i "$tmp/src48.wav" -c:a libopus -b:a 64k "$tmp/8.webm"
  ff -i "$tmp/src.wav" -c:a pcm_s16be "$tmp/9.aiff"
  ff -i "$tmp/src.wav" -c:a pcm_s16le "$tmp/10.caf"
  ff -i "$tmp/src.wav" -f lavfi -i color=c=black:s=16x16:r=5:d=0.2 -map 1:v -map 0:a -c:v libx264 -c:a aac "$tmp/11.mp4"
  for f in "$tmp"/*.*; do
    base=$(basename "$f")
    index=${base%%[!0-9]*}
    { printf "\\$(printf '%03o' "$index")"; cat "$f"; } > "$seeds/decode/$base"
  done
  rm -f "$seeds/decode/src.wav" "$seeds/decode/src48.wav"
  cp crates/demucs/tests/fixtures/tiny_htdemucs.fixture "$seeds/checkpoint/tiny.safetensors"
  cp crates/demucs/tests/fixtures/tiny_htdemucs_th.fixture "$seeds/checkpoint/tiny.th"
  rm -rf "$tmp"
  touch "$seeds/.made"
fi

# Both targets at once, one per core.
pids=()
for target in decode checkpoint; do
  mkdir -p "$work/corpus/$target" "$work/crashes/$target"
  if [ "$target" = decode ]; then
    runs=$(( total * 95 / 100 )); max_len=16384
  else
    runs=$(( total - total * 95 / 100 )); max_len=600000
  fi
  "$bin/$target" -runs="$runs" -max_len="$max_len" -rss_limit_mb=2048 -timeout=20 \
    -print_final_stats=1 -artifact_prefix="$work/crashes/$target/" \
    "$work/corpus/$target" "$seeds/$target" > "$work/$target.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done

executed=0
for target in decode checkpoint; do
  n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$target.log" | tail -1)
  secs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$target.log" | tail -1)
  crashes=$(find "$work/crashes/$target" -type f | wc -l)
  corpus=$(find "$work/corpus/$target" -type f | wc -l)
  echo "$target: ${n:-0} executions (${secs:-?}/s), corpus $corpus, crashes $crashes"
  executed=$(( executed + ${n:-0} ))
  [ "$crashes" -eq 0 ] || status=1
done
echo "fuzzing: $executed executions in total"
[ $status -eq 0 ] || { echo "a target crashed: see $work/crashes and $work/*.log"; exit 1; }
