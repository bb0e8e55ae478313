#!/usr/bin/env bash
# bench-vs-pytorch.sh: Stemdeck against PyTorch demucs 4.1.0, side by side in one run.
# A benchmark, not a test: it prints measured numbers and never fails on them.
#
# Stemdeck runs in each precision asked (default both: fast, its bf16 multiplies, and
# exact, its f32 path); each is compared with the same PyTorch run.
#
# Both sides load the same weights (../shared/models/htdemucs_955717e8_from_onnx.safetensors)
# and separate the same clip (a ../shared/testdata mixture looped with sox to --seconds) with
# the same settings (--threads threads, overlap 0.25, shifts 0), end to end: decode, separate,
# write 4 stems as 16-bit WAV. Each run is measured with /usr/bin/time -v (wall clock and
# maximum resident set size). Then it prints:
#   - wall time, RTF (wall / audio seconds) and peak RSS of each side,
#   - the ratios Stemdeck/PyTorch per precision and whether the targets are met (wall ratio
#     <= 0.4 in fast, <= 0.75 in exact; Stemdeck peak RSS <= 500 MiB),
#   - the SNR of Stemdeck's stems against PyTorch's (expect > 80 dB in exact, > 30 dB in
#     fast: both did the same work),
#   - Stemdeck's forward-pass profile per precision and its whole-run profile with the
#     serial share, the time outside the forward passes (the CLI prints both with
#     STEMDECK_PROFILE=1),
#   - with --scaling, the same runs again on one thread: each side's speed-up from 1 to
#     --threads threads, and Amdahl's law projected to 8 and 16 cores from the measured
#     scaling (per op for Stemdeck, from its profiles; whole-run for PyTorch).
#
# Usage: scripts/bench-vs-pytorch.sh [options]
#   --seconds N       length of the clip in seconds (default 60)
#   --clip PATH       mixture to loop (default ../shared/testdata/everything_is_free/Lithium/mixture.wav)
#   --threads N       threads for each side: stemdeck --jobs N, torch.set_num_threads(N) (default 2)
#   --runs K          run each side K times and keep the best wall time (default 1)
#   --order ORDER     pytorch-first (default) or stemdeck-first; with --runs the sides alternate
#   --precision P     fast, exact or both (default both)
#   --stemdeck-only   skip PyTorch (no venv needed), e.g. memory scaling: --seconds 600 --stemdeck-only
#   --scaling         also run every side on 1 thread (alternating with the others) and
#                     report the thread scaling and its projection to 8 and 16 cores
#   -h, --help        this text
#
# Environment:
#   STEMDECK_SHARED_DIR   the shared folder with models/ and testdata/ (default <repo>/../shared)
#   STEMDECK_BENCH_VENV   Python venv with torch, demucs 4.1.0, soundfile, safetensors (default
#                         ~/.cache/stemdeck/bench-venv; created with pip when it lacks them)
#   CARGO_TARGET_DIR      where cargo builds (default <repo>/target)
#
# Examples:
#   scripts/bench-vs-pytorch.sh                          # 60 s clip, both sides (a few minutes)
#   scripts/bench-vs-pytorch.sh --seconds 10 --runs 3
#   scripts/bench-vs-pytorch.sh --seconds 600 --stemdeck-only
#   scripts/bench-vs-pytorch.sh --runs 3 --scaling       # speed and thread scaling, best of 3
set -euo pipefail

die() { echo "bench-vs-pytorch: $*" >&2; exit 1; }
say() { echo "bench-vs-pytorch: $*" >&2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
is_uint() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -gt 0 ]; }

seconds=60
clip=""
threads=2
runs=1
order=pytorch-first
stemdeck_only=0
scaling=0
precisions="fast exact"
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) [ $# -ge 2 ] || die "--seconds needs a value"; seconds="$2"; shift 2 ;;
    --seconds=*) seconds="${1#*=}"; shift ;;
    --clip) [ $# -ge 2 ] || die "--clip needs a path"; clip="$2"; shift 2 ;;
    --clip=*) clip="${1#*=}"; shift ;;
    --threads) [ $# -ge 2 ] || die "--threads needs a value"; threads="$2"; shift 2 ;;
    --threads=*) threads="${1#*=}"; shift ;;
    --runs) [ $# -ge 2 ] || die "--runs needs a value"; runs="$2"; shift 2 ;;
    --runs=*) runs="${1#*=}"; shift ;;
    --order) [ $# -ge 2 ] || die "--order needs a value"; order="$2"; shift 2 ;;
    --order=*) order="${1#*=}"; shift ;;
    --stemdeck-only) stemdeck_only=1; shift ;;
    --scaling) scaling=1; shift ;;
    --precision) [ $# -ge 2 ] || die "--precision needs a value"; precisions="$2"; shift 2 ;;
    --precision=*) precisions="${1#*=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
is_uint "$seconds" || die "--seconds must be a positive whole number, not '$seconds'"
is_uint "$threads" || die "--threads must be a positive whole number, not '$threads'"
is_uint "$runs" || die "--runs must be a positive whole number, not '$runs'"
case "$order" in pytorch-first|stemdeck-first) ;; *) die "--order must be pytorch-first or stemdeck-first, not '$order'" ;; esac
case "$precisions" in fast|exact|"fast exact") ;; both) precisions="fast exact" ;; *) die "--precision must be fast, exact or both, not '$precisions'" ;; esac
# --clip is relative to where the script was started, not the repo.
if [ -n "$clip" ]; then
  [ -f "$clip" ] || die "clip not found: $clip"
  clip="$(cd "$(dirname "$clip")" && pwd)/$(basename "$clip")"
fi

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
shared="${STEMDECK_SHARED_DIR:-$repo/../shared}"
[ -d "$shared" ] && shared="$(cd "$shared" && pwd)"
weights="$shared/models/htdemucs_955717e8_from_onnx.safetensors"
[ -f "$weights" ] || die "weights not found: $weights
  The benchmark needs the shared folder (models/ and testdata/) next to the repo, or
  STEMDECK_SHARED_DIR pointing at it."
if [ -z "$clip" ]; then
  clip="$shared/testdata/everything_is_free/Lithium/mixture.wav"
  [ -f "$clip" ] || die "test data not found: $clip
  Set STEMDECK_SHARED_DIR to the shared folder, or choose a mixture with --clip PATH."
fi
for tool in sox soxi; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install sox)"
done
[ -x /usr/bin/time ] || die "/usr/bin/time not found (apt-get install time)"
command -v cargo >/dev/null || die "cargo not found"

tmp="$(mktemp -d -t stemdeck-bench.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT

# --- the PyTorch venv (outside the repo) ---------------------------------------------------
py=""
if [ "$stemdeck_only" = 0 ]; then
  venv="${STEMDECK_BENCH_VENV:-$HOME/.cache/stemdeck/bench-venv}"
  py="$venv/bin/python"
  if ! "$py" -c "import demucs, torch, soundfile, safetensors" 2>/dev/null; then
    case "$(mkdir -p "$venv" && cd "$venv" && pwd)/" in
      "$repo"/*) die "STEMDECK_BENCH_VENV ($venv) must be outside the repo" ;;
    esac
    say "setting up the PyTorch venv in $venv (torch, demucs 4.1.0; once, a few minutes)"
    [ -x "$py" ] || python3 -m venv "$venv" || die "python3 -m venv $venv failed (apt-get install python3-venv)"
    "$py" -m pip install -q --upgrade pip
    "$py" -m pip install -q torch demucs==4.1.0 numpy soundfile safetensors \
      || die "pip install into $venv failed"
    "$py" -c "import demucs, torch, soundfile, safetensors" \
      || die "$venv still cannot import demucs, torch, soundfile, safetensors"
  fi
  demucs_version="$("$py" -c "import demucs; print(demucs.__version__)")"
  [ "$demucs_version" = 4.1.0 ] || say "warning: $venv has demucs $demucs_version, not 4.1.0"
fi

# --- Stemdeck, built once -------------------------------------------------------------------
say "building stemdeck-cli (release)"
cargo build --release -q -p stemdeck-cli || die "cargo build --release -p stemdeck-cli failed"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
stemdeck="$target_dir/release/stemdeck"
[ -x "$stemdeck" ] || die "built, but $stemdeck is missing"

# --- the clip: the mixture looped to --seconds, 44.1 kHz 16-bit stereo ----------------------
clip_seconds="$(soxi -D "$clip")" || die "sox cannot read $clip"
repeats="$(awk -v n="$seconds" -v d="$clip_seconds" 'BEGIN { if (d <= 0) { print -1; exit } r = int(n / d); if (r * d >= n) r--; print (r < 0 ? 0 : r) }')"
[ "$repeats" -ge 0 ] || die "$clip is empty"
input="$tmp/clip.wav"
sox "$clip" -r 44100 -c 2 -b 16 "$input" repeat "$repeats" trim 0 "$seconds" || die "sox could not make the clip"
audio_seconds="$(soxi -D "$input")"

# --- measured runs ----------------------------------------------------------------------------
# /usr/bin/time -v writes "Elapsed (wall clock) time (h:mm:ss or m:ss): 1:02.34" and
# "Maximum resident set size (kbytes): 123456".
wall_of() {
  awk -F': ' '/Elapsed \(wall clock\) time/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s }' "$1"
}
rss_mib_of() {
  awk -F': ' '/Maximum resident set size/ { printf "%.0f\n", $2 / 1024 }' "$1"
}

# A side's files are named after it: "pytorch", a precision, or either with "-1" for its
# one-thread runs (--scaling), which write their stems elsewhere.
run_pytorch() { # run number [threads]
  local i="$1" t="${2:-$threads}" side=pytorch out="$tmp/pytorch"
  [ "$t" = "$threads" ] || { side="pytorch-$t"; out="$tmp/scratch"; }
  say "PyTorch run $i/$runs ($t thread(s))"
  rm -rf "$out"
  if ! OMP_NUM_THREADS="$t" MKL_NUM_THREADS="$t" CUDA_VISIBLE_DEVICES="" \
    /usr/bin/time -v -o "$tmp/$side.time.$i" \
    "$py" tools/bench_pytorch.py "$weights" "$input" --out "$out" --threads "$t" \
    >"$tmp/$side.out.$i" 2>"$tmp/$side.err.$i"; then
    tail -n 30 "$tmp/$side.err.$i" >&2
    die "the PyTorch run failed (its stderr is above)"
  fi
}

run_stemdeck() { # precision, run number [threads]
  local precision="$1" i="$2" t="${3:-$threads}" side="$1" out="$tmp/$1"
  [ "$t" = "$threads" ] || { side="$precision-$t"; out="$tmp/scratch"; }
  say "Stemdeck ($precision) run $i/$runs ($t thread(s))"
  rm -rf "$out"
  if ! STEMDECK_PROFILE=1 /usr/bin/time -v -o "$tmp/$side.time.$i" \
    "$stemdeck" separate --weights "$weights" --precision "$precision" --jobs "$t" \
    --overlap 0.25 --shifts 0 --no-cache --out "$out" "$input" \
    >"$tmp/$side.out.$i" 2>"$tmp/$side.err.$i"; then
    tr '\r' '\n' <"$tmp/$side.err.$i" | tail -n 30 >&2
    die "the Stemdeck run failed (its stderr is above)"
  fi
}
run_stemdecks() { for p in $precisions; do run_stemdeck "$p" "$@"; done; }

thread_counts="$threads"
[ "$scaling" = 1 ] && [ "$threads" != 1 ] && thread_counts="$threads 1"
for i in $(seq 1 "$runs"); do
  for t in $thread_counts; do
    if [ "$stemdeck_only" = 1 ]; then
      run_stemdecks "$i" "$t"
    elif [ "$order" = pytorch-first ]; then
      run_pytorch "$i" "$t"; run_stemdecks "$i" "$t"
    else
      run_stemdecks "$i" "$t"; run_pytorch "$i" "$t"
    fi
  done
done

# The best wall time of the runs; the peak RSS is the highest of the runs.
best_run() { # side -> number of the run with the lowest wall time
  local side="$1" best="" best_wall="" i w
  for i in $(seq 1 "$runs"); do
    w="$(wall_of "$tmp/$side.time.$i")"
    if [ -z "$best" ] || awk -v a="$w" -v b="$best_wall" 'BEGIN { exit !(a < b) }'; then
      best="$i"; best_wall="$w"
    fi
  done
  echo "$best"
}
max_rss() { # side
  local side="$1" i
  for i in $(seq 1 "$runs"); do rss_mib_of "$tmp/$side.time.$i"; done | sort -n | tail -n 1
}
declare -A best wall rss
sides="$precisions"
[ "$stemdeck_only" = 1 ] || sides="pytorch $precisions"
if [ "$thread_counts" != "$threads" ]; then
  for side in $sides; do sides="$sides $side-1"; done
fi
for side in $sides; do
  best[$side]="$(best_run "$side")"
  wall[$side]="$(wall_of "$tmp/$side.time.${best[$side]}")"
  rss[$side]="$(max_rss "$side")"
done

# --- report ------------------------------------------------------------------------------------
clip_label="${clip#"$shared/testdata/"}"
echo
echo "== Stemdeck vs PyTorch demucs $([ "$stemdeck_only" = 1 ] && echo "(Stemdeck only)" || echo "$demucs_version") =="
printf 'clip: %.1f s of %s (looped), 44.1 kHz stereo\n' "$audio_seconds" "$clip_label"
echo "weights: $weights"
echo "settings: $threads threads each, overlap 0.25, shifts 0, 16-bit WAV out; best wall of $runs run(s), peak RSS the highest"
echo "bf16 multiplies (avx512_bf16) on this CPU: $(grep -q avx512_bf16 /proc/cpuinfo && echo yes || echo "no, so fast runs the exact arithmetic")"
echo
printf '%-18s %10s %8s %16s\n' side "wall (s)" RTF "peak RSS (MiB)"
row() { awk -v s="$1" -v w="$2" -v a="$audio_seconds" -v r="$3" 'BEGIN { printf "%-18s %10.2f %8.3f %16d\n", s, w, w / a, r }'; }
[ "$stemdeck_only" = 1 ] || row PyTorch "${wall[pytorch]}" "${rss[pytorch]}"
for p in $precisions; do row "Stemdeck $p" "${wall[$p]}" "${rss[$p]}"; done
echo
for p in $precisions; do
  target="$([ "$p" = fast ] && echo 0.4 || echo 0.75)"
  if [ "$stemdeck_only" = 0 ]; then
    awk -v p="$p" -v t="$target" -v sw="${wall[$p]}" -v pw="${wall[pytorch]}" -v sr="${rss[$p]}" -v pr="${rss[pytorch]}" 'BEGIN {
      printf "Stemdeck %s / PyTorch: wall %.3f (Stemdeck %.2fx as fast), peak RSS %.3f\n", p, sw / pw, pw / sw, sr / pr
      printf "  targets: wall ratio <= %s: %s (%.3f); peak RSS <= 500 MiB: %s (%d MiB)\n",
        t, (sw / pw <= t ? "met" : "NOT met"), sw / pw, (sr <= 500 ? "met" : "NOT met"), sr
    }'
  else
    awk -v p="$p" -v sr="${rss[$p]}" 'BEGIN {
      printf "Stemdeck %s: peak RSS <= 500 MiB: %s (%d MiB); wall ratio: not measured (--stemdeck-only)\n", p, (sr <= 500 ? "met" : "NOT met"), sr
    }'
  fi
done
if [ "$precisions" = "fast exact" ]; then
  awk -v f="${wall[fast]}" -v e="${wall[exact]}" 'BEGIN { printf "fast / exact: wall %.3f (fast %.2fx as fast)\n", f / e, e / f }'
fi

if [ "$stemdeck_only" = 0 ]; then
  echo
  sed "s/^pytorch: /pytorch phases: /" "$tmp/pytorch.out.${best[pytorch]}"
  for p in $precisions; do
    echo
    echo "stem agreement ($p), SNR of Stemdeck's stems against PyTorch's (same clip, 16-bit WAV; expect > $([ "$p" = fast ] && echo 30 || echo 80) dB):"
    "$py" - "$tmp/pytorch" "$tmp/$p/$(basename "$input" .wav)" <<'EOF'
import os, sys
import numpy as np, soundfile as sf
ref_dir, est_dir = sys.argv[1], sys.argv[2]
worst = None
for name in sorted(f for f in os.listdir(ref_dir) if f.endswith(".wav")):
    path = os.path.join(est_dir, name)
    if not os.path.exists(path):
        print(f"  {name[:-4]:<8} missing from Stemdeck's output ({est_dir})")
        worst = -np.inf
        continue
    ref, _ = sf.read(os.path.join(ref_dir, name), dtype="float64", always_2d=True)
    est, _ = sf.read(path, dtype="float64", always_2d=True)
    n = min(len(ref), len(est))
    note = "" if len(ref) == len(est) else f" (lengths differ: {len(ref)} vs {len(est)} samples)"
    num, den = np.sum(ref[:n] ** 2), np.sum((ref[:n] - est[:n]) ** 2)
    snr = np.inf if den == 0 else 10 * np.log10(num / den)
    worst = snr if worst is None else min(worst, snr)
    print(f"  {name[:-4]:<8} {snr:7.2f} dB{note}")
if worst is not None:
    print(f"  lowest   {worst:7.2f} dB: {'OK, same work' if worst > 30 else 'LOW, the two sides do not agree'}")
EOF
  done
fi

# --- thread scaling and its projection ---------------------------------------------------
# own_times FILE: "op seconds" for each row of a run's forward-pass profile, then "(outside)
# seconds" for the time outside the forward passes (the whole-run profile's serial share).
own_times() {
  tr '\r' '\n' <"$1" | awk '
    /forward-pass profile/ { f = 1; next }
    /whole-run profile/ { f = 0 }
    f && NF >= 5 && $(NF - 3) ~ /^[0-9]+$/ { name = $1; for (i = 2; i <= NF - 4; i++) name = name "_" $i; print name, $(NF - 2) }
    /serial share/ { print "(outside)", $(NF - 2) }'
}
if [ "$thread_counts" != "$threads" ]; then
  echo
  echo "thread scaling, 1 -> $threads threads (best of $runs run(s) each, alternating):"
  for side in $([ "$stemdeck_only" = 1 ] || echo pytorch) $precisions; do
    label="$([ "$side" = pytorch ] && echo PyTorch || echo "Stemdeck $side")"
    awk -v s="$label" -v a="${wall[$side-1]}" -v b="${wall[$side]}" -v n="$threads" 'BEGIN {
      printf "  %-16s %8.2f s -> %8.2f s   %.2fx%s\n", s, a, b, a / b, (s == "PyTorch" ? "" : (a / b >= 1.9 ? "   (target >= 1.9x: met)" : "   (target >= 1.9x: NOT met)"))
    }'
  done
  echo
  echo "Amdahl's law from the measured scaling: each op's parallel fraction p from its own"
  echo "time on 1 and $threads threads (t_N = t_1 ((1 - p) + p / N)), summed per op for Stemdeck,"
  echo "whole-run for PyTorch; projected wall seconds for 8 and 16 cores:"
  declare -A projected
  for side in $precisions; do
    for cores in 8 16; do
      projected[$side.$cores]="$(join <(own_times "$tmp/$side-1.err.${best[$side-1]}" | sort) \
        <(own_times "$tmp/$side.err.${best[$side]}" | sort) |
        awk -v n="$threads" -v c="$cores" -v w1="${wall[$side-1]}" -v wn="${wall[$side]}" '
          { t1 = $2; tn = $3; p = (t1 > 0) ? (1 - tn / t1) / (1 - 1 / n) : 0; if (p < 0) p = 0; if (p > 1) p = 1
            sum1 += t1; total += t1 * ((1 - p) + p / c) }
          END { rest = w1 - sum1; if (rest < 0) rest = 0; printf "%.2f", total + rest }')"
    done
  done
  if [ "$stemdeck_only" = 0 ]; then
    for cores in 8 16; do
      projected[pytorch.$cores]="$(awk -v a="${wall[pytorch-1]}" -v b="${wall[pytorch]}" -v n="$threads" -v c="$cores" 'BEGIN {
        p = (1 - b / a) / (1 - 1 / n); if (p < 0) p = 0; if (p > 1) p = 1; printf "%.2f", a * ((1 - p) + p / c) }')"
    done
  fi
  for cores in 8 16; do
    line="$(printf '  %2d cores:' "$cores")"
    [ "$stemdeck_only" = 1 ] || line="$line $(printf 'PyTorch %7.2f s' "${projected[pytorch.$cores]}")"
    for side in $precisions; do
      line="$line, $(printf 'Stemdeck %s %7.2f s' "$side" "${projected[$side.$cores]}")"
      [ "$stemdeck_only" = 1 ] || line="$line $(awk -v a="${projected[$side.$cores]}" -v b="${projected[pytorch.$cores]}" 'BEGIN { printf "(%.2f of PyTorch)", a / b }')"
    done
    echo "${line/:,/:}"
  done
fi

# Stemdeck's op-level profile of the forward pass (STEMDECK_PROFILE=1), per precision.
for p in $precisions; do
  profile="$(tr '\r' '\n' <"$tmp/$p.err.${best[$p]}" | awk '/first separated audio|forward-pass profile|whole-run profile/ { f = 1 } f')"
  if [ -n "$profile" ]; then
    echo
    echo "Stemdeck $p profile (run ${best[$p]}):"
    echo "$profile"
  fi
done
