"""Build the small parity fixtures for crates/demucs from PyTorch demucs 4.1.0 (the reference).

Usage (in a venv outside the repo, never in CI):
    python -m venv ~/demucs-venv && ~/demucs-venv/bin/pip install torch demucs==4.1.0 numpy omegaconf
    ~/demucs-venv/bin/python tools/make_fixtures.py crates/demucs/tests/fixtures [--only GROUPS]

--only takes a comma-separated list of the groups tiny, six_stems and bag (default: all) and
writes only their files, so that adding a group never rewrites the others' fixtures.

What it writes (all random-init models; no real weights):

group tiny (make_tiny):
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

The other groups store no weights: every parameter comes from a deterministic generator
(splitmix64-uniform-v1, see "Generated weights" below) that the Rust tests re-run bit for
bit (crates/demucs/tests/common/mod.rs), and the safetensors metadata carries the model
kwargs (`kwargs`, as demucs.hf writes them), the parameter names and shapes in state_dict
order (`params`, JSON), the generator name and the seeds.

group six_stems (make_six_stems):
  six_stems.fixture          htdemucs_6s in its real configuration (the released htdemucs
                             kwargs with six sources, 42M parameters), model seed 6:
                             `input` [2, 44100] (1 s) and `output` [6, 2, 44100], the
                             `demucs.separate` recipe (apply_model, shifts=0, overlap 0.25).
                             Also prints how much each part of the model moves the output.
group bag (make_bag):
  bag.fixture                BagOfModels of two toy models (KWARGS, seeds 1 and 2) with the
                             per-source weights BAG_WEIGHTS, as htdemucs_ft weighs its
                             members: `input` [2, 39690] (0.9 s, two segments per member)
                             and `output` [4, 2, 39690] through the same recipe.
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


def make_tiny(out):
    """The original toy fixtures (tiny_*.fixture), made exactly as before `--only` existed."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)

    model = HTDemucs(**KWARGS)
    model.eval()
    randomize(model, gen)

    meta = {"klass": "demucs.htdemucs.HTDemucs", "args": "[]", "kwargs": json_kwargs(KWARGS),
            "note": "random-init toy HTDemucs for parity tests, made by tools/make_fixtures.py"}
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(out, "tiny_htdemucs.fixture"), metadata=meta)

    from omegaconf import OmegaConf
    torch.save(serialize_model(model, OmegaConf.create({}), half=True),
               os.path.join(out, "tiny_htdemucs_th.fixture"))

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
    save_file(io, os.path.join(out, "tiny_io.fixture"))
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
    save_file({k: v.float().contiguous() for k, v in shifts.items()}, os.path.join(out, "tiny_shifts.fixture"))



# --- Generated weights (six_stems, bag) ---------------------------------------------------
#
# The full-size htdemucs_6s has 42M parameters, far too many to commit, so these fixtures
# carry no weights at all: every parameter is a pure function of (model seed, tensor name,
# element index), computed bit-exactly in f32 here and in
# crates/demucs/tests/common/mod.rs. The recipe ("splitmix64-uniform-v1"):
#
#   tensor_seed = fnv1a64(utf-8 name) XOR mix64(model_seed)
#   z_i         = mix64(tensor_seed + (i + 1) * 0x9E3779B97F4A7C15)   (wrapping u64; the
#                 (i+1)-th output of a SplitMix64 seeded with tensor_seed, i = flat index
#                 in row-major order)
#   u_i         = ((z_i >> 40) - 2^23) / 2^23     exact in f32, in [-1, 1)
#   value_i     = f32(offset + factor * u_i)      offset and factor in f64, one rounding
#
# with mix64 SplitMix64's finaliser. factor and offset per tensor:
#   >= 2-D (conv, linear, embedding): offset 0, factor sqrt(3 / fan_in), so the standard
#       deviation is 1/sqrt(fan_in) (fan_in = shape[1] * prod(shape[2:]), torch's rule)
#   1-D named *weight or *scale (GroupNorm/LayerNorm gains, LayerScale): 1 + 0.5 u
#   other 1-D (biases): 0.2 u
# Like randomize() above, this keeps activations healthy and every branch alive (the
# default init would hide the dconv and transformer residuals behind LayerScale 1e-3);
# check_branches() below shows that each part moves the output.

GEN_NAME = "splitmix64-uniform-v1"
M64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def mix64_int(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def mix64_np(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & M64
    return h


def tensor_seed(model_seed, name):
    return fnv1a64(name) ^ mix64_int(model_seed & M64)


def uniform(seed, n):
    """u_0..u_{n-1} in [-1, 1), exact multiples of 2^-23 (as float64)."""
    idx = np.arange(1, n + 1, dtype=np.uint64)
    z = mix64_np(np.uint64(seed) + idx * np.uint64(GAMMA))  # wraps mod 2^64
    return ((z >> np.uint64(40)).astype(np.int64) - (1 << 23)).astype(np.float64) / (1 << 23)


def generated_tensor(model_seed, name, shape):
    shape = tuple(int(d) for d in shape)
    n = int(np.prod(shape)) if shape else 1
    if len(shape) >= 2:
        fan_in = shape[1] * (int(np.prod(shape[2:])) if len(shape) > 2 else 1)
        offset, factor = 0.0, math.sqrt(3.0 / fan_in)
    elif name.endswith("weight") or name.endswith("scale"):
        offset, factor = 1.0, 0.5
    else:
        offset, factor = 0.0, 0.2
    u = uniform(tensor_seed(model_seed, name), n)
    return (offset + factor * u).astype(np.float32).reshape(shape)


def generated_model(kwargs, model_seed):
    model = HTDemucs(**kwargs)
    model.eval()
    state = model.state_dict()
    # The generator covers the whole state dict, so it must hold parameters only.
    assert set(state) == {n for n, _ in model.named_parameters()}, "buffers in the state dict"
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(generated_tensor(model_seed, name, p.shape)))
    params = [[name, list(t.shape)] for name, t in state.items()]
    return model, params


def generated_meta(kwargs, params, **extra):
    meta = {"generator": GEN_NAME, "kwargs": json_kwargs(kwargs), "params": json.dumps(params)}
    meta.update({k: json.dumps(v) for k, v in extra.items()})
    return meta


def separate_ref(model, mix):
    """The `demucs.separate` recipe as in make_tiny: mono mean/std normalisation,
    split with overlap 0.25, shifts=0, and back."""
    ref = mix.mean(0)
    mix_n = (mix - ref.mean()) / ref.std()
    with torch.no_grad():
        est = apply_model(model, mix_n[None], shifts=0, split=True, overlap=0.25)[0]
    return est * ref.std() + ref.mean()


def check_branches(model, mix):
    """Prints how much the output moves when one part of the model is silenced: a part
    whose number is ~0 would not be tested by the fixture."""
    with torch.no_grad():
        base = model(mix[None])
        norm = base.norm().item()
        parts = {
            "dconv (LayerScale)": [p for n, p in model.named_parameters() if ".dconv." in n and n.endswith(".scale")],
            "transformer (LayerScale)": [p for n, p in model.named_parameters() if "crosstransformer" in n and n.endswith(".scale")],
            "freq_emb": [model.freq_emb.embedding.weight] if model.freq_emb is not None else [],
            "last freq decoder": [p for n, p in model.named_parameters() if n.startswith(f"decoder.{len(model.decoder) - 1}.conv_tr")],
            "last time decoder": [p for n, p in model.named_parameters() if n.startswith(f"tdecoder.{len(model.tdecoder) - 1}.conv_tr")],
        }
        for what, ps in parts.items():
            saved = [p.clone() for p in ps]
            for p in ps:
                p.zero_()
            out = model(mix[None])
            for p, s in zip(ps, saved):
                p.copy_(s)
            print(f"  without {what}: output moves by {(out - base).norm().item() / norm:.3f} of its norm")
        per_source = base[0].pow(2).mean(dim=(1, 2)).sqrt()
        print("  rms per source:", [round(v, 3) for v in per_source.tolist()])


HTDEMUCS_6S_KWARGS = dict(
    sources=["drums", "bass", "other", "vocals", "guitar", "piano"], audio_channels=2,
    samplerate=44100, segment=Fraction(39, 5), channels=48, growth=2, nfft=4096, depth=4,
    freq_emb=0.2, emb_scale=10, emb_smooth=True, kernel_size=8, stride=4, time_stride=2,
    context=1, context_enc=0, norm_starts=4, norm_groups=4, dconv_mode=3, dconv_depth=2,
    dconv_comp=8, dconv_init=0.001, bottom_channels=512, t_layers=5, t_hidden_scale=4.0,
    t_heads=8, t_dropout=0.0, t_layer_scale=True, t_gelu=True, t_emb="sin",
    t_max_positions=10000, t_max_period=10000.0, t_weight_pos_embed=1.0, t_norm_in=True,
    t_norm_in_group=False, t_group_norm=False, t_norm_first=True, t_norm_out=True,
    t_cross_first=False, t_sin_random_shift=0, cac=True, rescale=0.1,
)
SIX_STEMS_SEED = 6
SIX_STEMS_SECONDS = 1.0

BAG_SEEDS = [1, 2]
BAG_WEIGHTS = [[1.0, 0.25, 0.0, 0.6], [0.0, 0.75, 1.0, 0.4]]
BAG_SECONDS = 0.9


def make_six_stems(out):
    """six_stems.fixture: htdemucs_6s in its real configuration with generated weights.
    Holds the kwargs, the parameter list, a 1 s stereo input and the `demucs.separate`
    output for the 6 sources (one segment of 7.8 s, the clip centred in it)."""
    torch.manual_seed(0)
    model, params = generated_model(HTDEMUCS_6S_KWARGS, SIX_STEMS_SEED)
    print(f"htdemucs_6s: {sum(p.numel() for p in model.parameters())} generated parameters")
    mix = make_input(SIX_STEMS_SECONDS, torch.Generator().manual_seed(66))
    est = separate_ref(model, mix)
    check_branches(model, mix)
    data = {"input": mix.float().contiguous(), "output": est.float().contiguous()}
    meta = generated_meta(HTDEMUCS_6S_KWARGS, params, model_seed=SIX_STEMS_SEED)
    meta["note"] = "htdemucs_6s with generated weights for parity tests, made by tools/make_fixtures.py"
    save_file(data, os.path.join(out, "six_stems.fixture"), metadata=meta)


def make_bag(out):
    """bag.fixture: a bag of two toy models (KWARGS, generated weights with the seeds
    BAG_SEEDS) with per-source weights BAG_WEIGHTS, as htdemucs_ft weighs its members.
    Holds the kwargs, parameter list, seeds, weights, a 0.9 s input (two segments per
    member) and the `demucs.separate` output of the bag."""
    torch.manual_seed(0)
    members = []
    for seed in BAG_SEEDS:
        model, params = generated_model(KWARGS, seed)
        members.append(model)
    mix = make_input(BAG_SECONDS, torch.Generator().manual_seed(77))
    for seed, m in zip(BAG_SEEDS, members):
        print(f"bag member seed {seed}:")
        check_branches(m, make_input(float(m.segment), torch.Generator().manual_seed(78)))
    est = separate_ref(BagOfModels(members, BAG_WEIGHTS), mix)
    data = {"input": mix.float().contiguous(), "output": est.float().contiguous()}
    meta = generated_meta(KWARGS, params, model_seeds=BAG_SEEDS, weights=BAG_WEIGHTS)
    meta["note"] = "a bag of two generated toy HTDemucs for parity tests, made by tools/make_fixtures.py"
    save_file(data, os.path.join(out, "bag.fixture"), metadata=meta)


MAKERS = {"tiny": make_tiny, "six_stems": make_six_stems, "bag": make_bag}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--only", default=",".join(MAKERS),
                    help="comma-separated fixture groups to (re)make: " + ", ".join(MAKERS))
    args = ap.parse_args()
    groups = [g for g in args.only.split(",") if g]
    unknown = [g for g in groups if g not in MAKERS]
    if unknown:
        ap.error(f"unknown fixture groups {unknown}; known: {list(MAKERS)}")
    os.makedirs(args.out, exist_ok=True)
    import demucs.apply
    randint = demucs.apply.random.randint
    for group in groups:
        print(f"== {group}")
        MAKERS[group](args.out)
        # make_tiny pins demucs' shift offsets; the others draw none, but undo it anyway.
        demucs.apply.random.randint = randint

if __name__ == "__main__":
    main()
