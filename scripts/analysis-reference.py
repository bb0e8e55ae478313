#!/usr/bin/env python3
"""Reference tempo/key/loudness numbers for the analysis crate's accuracy test.

Run once by hand (never in CI); its output,
crates/analysis/tests/reference/clips.json, is committed and the Rust test
compares our own analysis against it. It reads the TRUE stems of each test
clip (not a separation) from ../shared/testdata.

Set up its venv outside the repository, then run it from the repo root:

    python3 -m venv /root/.cache/stemdeck/librosa-venv
    /root/.cache/stemdeck/librosa-venv/bin/pip install librosa pyloudnorm soundfile scipy numpy
    /root/.cache/stemdeck/librosa-venv/bin/python scripts/analysis-reference.py [TESTDATA_DIR] [OUTPUT_JSON]

What it computes per clip:
- tempo: librosa.beat.beat_track on the mono drums stem at 44100 Hz, hop 128: at the
  default hop of 512 its tempo comes in steps of about 3 BPM near 128 BPM (129.2, 126.0),
  coarser than the 1 BPM the comparison asks for.
- key: time-averaged librosa chroma_cqt of mono bass+other+vocals, Pearson-
  correlated with the Krumhansl-Kessler major/minor profiles at all 12 tonics.
- loudness: BS.1770 integrated loudness (pyloudnorm) and true peak (4x
  oversampling, scipy resample_poly) of the mix (sum of the four stems) and of
  each stem; null for a silent stem.
"""
import json
import sys
from importlib.metadata import version
from pathlib import Path

import librosa
import numpy as np
import pyloudnorm
import soundfile as sf
from scipy.signal import resample_poly

REPO = Path(__file__).resolve().parent.parent
CLIPS = ["musdb18_7s/music_delta_80s_rock", "everything_is_free/Lithium", "everything_is_free/Francium"]
STEMS = ["drums", "bass", "other", "vocals"]
SR = 44100
NOTES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def load(path):
    audio, sr = sf.read(path, dtype="float64", always_2d=True)  # (samples, channels)
    assert sr == SR, f"{path}: {sr} Hz"
    return audio


TEMPO_HOP = 128


def tempo(drums):
    bpm, frames = librosa.beat.beat_track(y=drums.mean(axis=1), sr=SR, hop_length=TEMPO_HOP)
    beats = librosa.frames_to_time(frames, sr=SR, hop_length=TEMPO_HOP)
    return {"bpm": round(float(np.atleast_1d(bpm)[0]), 1), "beats": [round(float(t), 3) for t in beats]}


def key(tonal):
    chroma = librosa.feature.chroma_cqt(y=tonal.mean(axis=1), sr=SR).mean(axis=1)
    scores = sorted(
        ((float(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1]), tonic, mode)
         for mode, profile in (("major", KK_MAJOR), ("minor", KK_MINOR)) for tonic in range(12)),
        reverse=True,
    )
    (best, tonic, mode), (second, tonic2, mode2) = scores[0], scores[1]
    return {
        "tonic": tonic, "mode": mode, "name": f"{NOTES[tonic]} {mode}", "correlation": round(best, 4),
        "runner_up": {"name": f"{NOTES[tonic2]} {mode2}", "correlation": round(second, 4)},
    }


def loudness(audio, meter):
    if not np.any(audio):
        return {"integrated_lufs": None, "true_peak_dbtp": None}
    lufs = meter.integrated_loudness(audio)
    peak = np.max(np.abs(resample_poly(audio, 4, 1, axis=0)))
    return {
        "integrated_lufs": round(float(lufs), 1) if np.isfinite(lufs) else None,
        "true_peak_dbtp": round(float(20 * np.log10(peak)), 1),
    }


def analyse(clip_dir):
    stems = {name: load(clip_dir / f"{name}.wav") for name in STEMS}
    meter = pyloudnorm.Meter(SR)
    return {
        "tempo": tempo(stems["drums"]),
        "key": key(stems["bass"] + stems["other"] + stems["vocals"]),
        "loudness": {
            "mix": loudness(sum(stems.values()), meter),
            "stems": {name: loudness(audio, meter) for name, audio in stems.items()},
        },
    }


def main():
    testdata = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "../shared/testdata"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else REPO / "crates/analysis/tests/reference/clips.json"
    result = {
        "generated_by": "scripts/analysis-reference.py",
        "librosa": version("librosa"),
        "pyloudnorm": version("pyloudnorm"),
        "clips": {clip: analyse(testdata / clip) for clip in CLIPS},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
