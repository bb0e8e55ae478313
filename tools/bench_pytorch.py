"""PyTorch demucs 4.1.0 side of scripts/bench-vs-pytorch.sh: one file, end to end.

Usage: python tools/bench_pytorch.py WEIGHTS.safetensors INPUT.wav --out DIR [--threads N]

Does the same work as `stemdeck separate --overlap 0.25 --shifts 0` with its default output:
decode INPUT.wav, separate it with the demucs.separate recipe (normalize the mix by the mean
and std of its mono downmix, apply_model(shifts=0, split=True, overlap=0.25), undo the
normalization), keep each stem from clipping as demucs' --clip-mode rescale does, and write
DIR/<source>.wav as 16-bit PCM. Prints the time of each phase on stdout.
"""
import argparse
import os
import time

t_start = time.perf_counter()

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from demucs.apply import BagOfModels, apply_model  # noqa: E402
from demucs.hf import load_safetensors_model  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", help="htdemucs .safetensors weights")
    p.add_argument("input", help="audio file to separate (WAV at the model's sample rate)")
    p.add_argument("--out", required=True, help="folder for <source>.wav")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    t_import = time.perf_counter()

    model = load_safetensors_model(a.weights)
    model.eval()
    bag = BagOfModels([model])
    t_load = time.perf_counter()

    mix, sr = sf.read(a.input, dtype="float32", always_2d=True)
    if sr != model.samplerate:
        raise SystemExit(f"bench_pytorch: {a.input} is {sr} Hz, the model wants {model.samplerate} Hz")
    if mix.shape[1] == 1:
        mix = np.repeat(mix, 2, axis=1)
    mix = torch.from_numpy(np.ascontiguousarray(mix.T))
    t_decode = time.perf_counter()

    ref = mix.mean(0)
    mix_n = (mix - ref.mean()) / ref.std()
    with torch.no_grad():
        est = apply_model(bag, mix_n[None], shifts=0, split=True, overlap=0.25, progress=False)[0]
    est = est * ref.std() + ref.mean()
    t_sep = time.perf_counter()

    os.makedirs(a.out, exist_ok=True)
    for i, name in enumerate(model.sources):
        stem = est[i]
        # demucs.audio.prevent_clip(mode="rescale"), as Stemdeck's default clip mode does.
        stem = stem / max(1.01 * stem.abs().max().item(), 1.0)
        # Float to 16-bit as Stemdeck and torchaudio do: scale by 2^15, round, saturate.
        # (libsndfile's own conversion floors, which would put a 1-LSB bias between the sides.)
        pcm = np.clip(np.round(stem.numpy().T.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
        sf.write(os.path.join(a.out, f"{name}.wav"), pcm, sr, subtype="PCM_16")
    t_write = time.perf_counter()

    seconds = mix.shape[1] / sr
    print(
        f"pytorch: {seconds:.1f} s audio; import {t_import - t_start:.2f} s, load {t_load - t_import:.2f} s, "
        f"decode {t_decode - t_load:.2f} s, separate {t_sep - t_decode:.2f} s, write {t_write - t_sep:.2f} s"
    )


if __name__ == "__main__":
    main()
