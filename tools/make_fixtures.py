"""Build the small parity fixtures for crates/demucs from PyTorch demucs 4.1.0 (the reference).

Usage (in a venv outside the repo, never in CI):
    python -m venv ~/demucs-venv && ~/demucs-venv/bin/pip install torch demucs==4.1.0 numpy omegaconf
    ~/demucs-venv/bin/python tools/make_fixtures.py crates/demucs/tests/fixtures

What it writes (all random-init toy models; no real weights):
  tiny_htdemucs.fixture      safetensors bytes: the toy model's state_dict (f32) with the
                             demucs `klass`/`args`/`kwargs` metadata, exactly like
                             demucs.hf.load_safetensors_model expects.
  tiny_htdemucs_th.fixture   the same model in the official checkpoint format
                             (torch.save of demucs.states.serialize_model, f16 state).
  tiny_io.fixture            safetensors bytes: inputs, component outputs and the expected
                             end-to-end output, named below.
  tiny_shifts.fixture        apply_model with shifts=2 and pinned shift offsets.

The toy model keeps every code path of htdemucs (both branches, a dconv in every layer,
GroupNorm in the deeper layers, the frequency embedding, bottom channels, self- and
cross-attention layers) with far fewer channels and a 0.5 s segment. Its weights are drawn
with a healthy spread (and rounded to f16) so that every branch contributes to the output:
the default init would hide the dconv branches behind LayerScale 1e-3.
"""
import argparse
import json
import math
import os
from fractions import Fraction

import numpy as np
import torch
from safetensors.torch import save_file

from demucs.apply import apply_model, BagOfModels
from demucs.htdemucs import HTDemucs
from demucs.states import serialize_model

SOURCES = ["drums", "bass", "other", "vocals"]
KWARGS = dict(
    sources=SOURCES, audio_channels=2, samplerate=44100, segment=Fraction(1, 2),
    channels=4, growth=2, nfft=4096, depth=4, freq_emb=0.2, emb_scale=10, emb_smooth=True,
    kernel_size=8, stride=4, time_stride=2, context=1, context_enc=0,
    norm_starts=2, norm_groups=2, dconv_mode=3, dconv_depth=2, dconv_comp=2, dconv_init=1e-3,
    bottom_channels=16, t_layers=3, t_hidden_scale=2.0, t_heads=2, t_dropout=0.0,
    t_layer_scale=True, t_gelu=True, t_emb="sin", t_max_positions=10000,
    t_max_period=10000.0, t_weight_pos_embed=1.0, t_norm_in=True, t_norm_in_group=False,
    t_group_norm=False, t_norm_first=True, t_norm_out=True, t_cross_first=False,
    t_sin_random_shift=0, cac=True, rescale=0.1,
)


def json_kwargs(kwargs):
    out = {}
    for k, v in kwargs.items():
        if isinstance(v, Fraction):
            v = {"_type": "fraction", "numerator": v.numerator, "denominator": v.denominator}
        out[k] = v
    return json.dumps(out)


def randomize(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".scale") or (p.dim() == 1 and "norm" in name and name.endswith("weight")):
                v = 1.0 + 0.3 * torch.randn(p.shape, generator=gen)
            elif p.dim() == 1:
                v = 0.1 * torch.randn(p.shape, generator=gen)
            else:
                fan_in = p.shape[1] * (int(np.prod(p.shape[2:])) if p.dim() > 2 else 1)
                v = torch.randn(p.shape, generator=gen) / math.sqrt(fan_in)
            # f16-representable, so the f16 .th and the f32 safetensors hold the same model
            p.copy_(v.half().float())


def make_input(seconds, gen):
    sr = 44100
    n = int(seconds * sr)
    t = torch.arange(n) / sr
    left = 0.5 * torch.sin(2 * math.pi * 110 * t) + 0.3 * torch.sin(2 * math.pi * 880 * t * (1 + t))
    right = 0.4 * torch.sin(2 * math.pi * 220 * t + 1.0) + 0.2 * torch.randn(n, generator=gen)
    kick = torch.exp(-((t % 0.25) * 40)) * torch.sin(2 * math.pi * 60 * t)
    return torch.stack([left + kick, right + kick]).float() + 0.1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)

    model = HTDemucs(**KWARGS)
    model.eval()
    randomize(model, gen)

    meta = {"klass": "demucs.htdemucs.HTDemucs", "args": "[]", "kwargs": json_kwargs(KWARGS),
            "note": "random-init toy HTDemucs for parity tests, made by tools/make_fixtures.py"}
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(args.out, "tiny_htdemucs.fixture"), metadata=meta)

    from omegaconf import OmegaConf
    torch.save(serialize_model(model, OmegaConf.create({}), half=True),
               os.path.join(args.out, "tiny_htdemucs_th.fixture"))

    io = {}
    seg_len = int(model.segment * model.samplerate)
    # One segment through the model, and its components.
    seg = make_input(float(model.segment), gen)[None]
    io["segment.input"] = seg
    with torch.no_grad():
        z = model._spec(seg)
        io["spec.real"] = z.real.contiguous()
        io["spec.imag"] = z.imag.contiguous()
        io["ispec.output"] = model._ispec(z, seg_len)

        captured = {}

        def hook(name):
            def f(_module, inputs, output):
                captured[name] = (inputs, output)
            return f

        hooks = [
            model.encoder[0].register_forward_hook(hook("encoder.0")),
            model.tencoder[0].register_forward_hook(hook("tencoder.0")),
            model.decoder[1].register_forward_hook(hook("decoder.1")),
            model.crosstransformer.layers[0].register_forward_hook(hook("ct.layers.0")),
            model.crosstransformer.layers[1].register_forward_hook(hook("ct.layers.1")),
        ]
        io["segment.output"] = model(seg)
        for h in hooks:
            h.remove()
        io["encoder.0.output"] = captured["encoder.0"][1]
        io["tencoder.0.input"] = captured["tencoder.0"][0][0]
        io["tencoder.0.output"] = captured["tencoder.0"][1]
        io["decoder.1.input"] = captured["decoder.1"][0][0]
        io["decoder.1.skip"] = captured["decoder.1"][0][1]
        io["decoder.1.output"] = captured["decoder.1"][1][0]
        io["ct.layers.0.input"] = captured["ct.layers.0"][0][0]
        io["ct.layers.0.output"] = captured["ct.layers.0"][1]
        io["ct.layers.1.q"] = captured["ct.layers.1"][0][0]
        io["ct.layers.1.k"] = captured["ct.layers.1"][0][1]
        io["ct.layers.1.output"] = captured["ct.layers.1"][1]

    # The whole `demucs.separate` recipe on a clip of 1.8 segments: mono mean/std
    # normalisation, split with overlap 0.25 (so a short, padded last chunk), shifts=0.
    mix = make_input(0.9, gen)
    ref = mix.mean(0)
    mix_n = (mix - ref.mean()) / ref.std()
    with torch.no_grad():
        est = apply_model(BagOfModels([model]), mix_n[None], shifts=0, split=True, overlap=0.25)[0]
    est = est * ref.std() + ref.mean()
    io["separate.input"] = mix
    io["separate.output"] = est

    io = {k: v.detach().float().contiguous() for k, v in io.items()}
    save_file(io, os.path.join(args.out, "tiny_io.fixture"))
    for k, v in io.items():
        print(f"{k}: {tuple(v.shape)}")

    # The shift trick with the offsets pinned (demucs draws them with random.randint):
    # one offset inside the range and one at its end.
    import demucs.apply
    offsets = iter([1234, 22050])
    demucs.apply.random.randint = lambda a, b: next(offsets)
    mix = make_input(0.6, gen)
    with torch.no_grad():
        est = apply_model(BagOfModels([model]), mix[None], shifts=2, split=True, overlap=0.25)[0]
    shifts = {"shifts.input": mix, "shifts.offsets": torch.tensor([1234.0, 22050.0]), "shifts.output": est}
    save_file({k: v.float().contiguous() for k, v in shifts.items()}, os.path.join(args.out, "tiny_shifts.fixture"))


if __name__ == "__main__":
    main()
