#!/usr/bin/env python3
"""make_fixtures.py - writes the golden files of tests/fixtures/ from the PyTorch reference.

Run with Debian's python3 (torch + numpy): `make fixtures`, or
`/usr/bin/python3 tools/reference/make_fixtures.py [OUT_DIR]` (default: tests/fixtures).
Everything is CPU float32, seeded, on one thread, so two runs give byte-identical files.
tests/fixtures/README.md documents every file and tensor.
"""
import hashlib
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import mmdit  # noqa: E402
import rng  # noqa: E402
import sampler  # noqa: E402
import st_io  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))

BASE_CONFIG = {
    "_class_name": "SD3Transformer2DModel",
    "sample_size": 8,
    "patch_size": 2,
    "in_channels": 4,
    "out_channels": 4,
    "num_layers": 3,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 24,
    "caption_projection_dim": 32,
    "pooled_projection_dim": 20,
    "pos_embed_max_size": 8,
    "dual_attention_layers": [0],
    "qk_norm": "rms_norm",
}
VARIANTS = [
    ("softmax", None),
    ("ttt_mixed", {"modules": ["transformer_blocks.0.attn2", "transformer_blocks.2.attn"]}),
    ("ttt_all", {"preset": "all"}),
]
SCHEDULER_CONFIG = {  # SD3.5's scheduler/scheduler_config.json
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "_diffusers_version": "0.31.0.dev0",
    "num_train_timesteps": 1000,
    "shift": 3.0,
}
SIGMA_STEPS = [1, 4, 28, 40]
RNG_SEEDS = [0, 42, 1099511627783]
LOOP_STEPS = 4
LOOP_SEED = 42  # latents_in[b] = the project's RNG normals of seed LOOP_SEED + b
MODEL_META = {"format": "pt"}
WRITTEN = []  # every file this run wrote, for the summary


def save(path, tensors, metadata=None):
    st_io.save(path, tensors, metadata)
    WRITTEN.append(path)


def config_for(ttt):
    d = dict(BASE_CONFIG)
    if ttt is not None:
        d["ttt"] = ttt
    return d


def uniform(gen, shape, lo, hi):
    return torch.rand(shape, generator=gen) * (hi - lo) + lo


def init_inherited(cfg, seed):
    """Every softmax-model tensor: PyTorch's default Linear/Conv2d ranges U(+-1/sqrt(fan_in))
    for weights and biases alike (adaLN included, so nothing is zero), RMSNorm gains U(0.5, 1.5),
    pos_embed the diffusers buffer."""
    gen = torch.Generator().manual_seed(seed)
    shapes = mmdit.param_shapes(cfg, with_ttt=False)
    fan_in = {n[:-len(".weight")]: s for n, s in shapes if n.endswith(".weight")}
    sd = {}
    for name, shape in shapes:
        if name == "pos_embed.pos_embed":
            sd[name] = mmdit.pos_embed_table(cfg)
        elif ".norm_" in name:
            sd[name] = uniform(gen, shape, 0.5, 1.5)
        else:
            w = fan_in[name.rsplit(".", 1)[0]]
            n_in = 1
            for v in w[1:]:
                n_in *= v
            b = n_in ** -0.5
            sd[name] = uniform(gen, shape, -b, b)
    return sd


def init_ttt(cfg, seed):
    """TTT tensors of every module a TTT map could name, so that variants share them:
    w1, w2 ~ N(0, 0.2^2) (larger than the paper's 0.02, so the TTT path moves the outputs),
    the depthwise convs (weight and bias) ~ U(-1/3, 1/3), PyTorch's default for fan_in 9."""
    gen = torch.Generator().manual_seed(seed)
    every = mmdit.Config(dict(BASE_CONFIG, ttt={"preset": "all"}))
    sd = {}
    for module in every.ttt_modules():
        for name, shape in mmdit.ttt_param_shapes(module, cfg.inner, cfg.heads, cfg.head_dim):
            if name.endswith((".w1", ".w2")):
                sd[name] = torch.randn(shape, generator=gen) * 0.2
            else:
                sd[name] = uniform(gen, shape, -1.0 / 3.0, 1.0 / 3.0)
    return sd


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    WRITTEN.append(path)


def mkdir(path):
    os.makedirs(path, exist_ok=True)
    return path


def make_models(out):
    """The three transformer folders, the SAI single file, and io.safetensors."""
    base = mmdit.Config(BASE_CONFIG)
    inherited = init_inherited(base, 1)
    ttt_all = init_ttt(base, 2)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn((2, 4, 8, 12), generator=gen)
    ctx = torch.randn((2, 5, 24), generator=gen)
    pooled = torch.randn((2, 20), generator=gen)
    t = torch.tensor([700.0, 37.5])
    io = {"x": x, "t": t, "ctx": ctx, "pooled": pooled}
    models = {}
    for name, ttt in VARIANTS:
        cfg = mmdit.Config(config_for(ttt))
        sd = {n: (inherited[n] if n in inherited else ttt_all[n])
              for n, _ in mmdit.param_shapes(cfg)}
        folder = mkdir(os.path.join(out, "mmdit", name, "transformer"))
        write_json(os.path.join(folder, "config.json"), config_for(ttt))
        save(os.path.join(folder, "diffusion_pytorch_model.safetensors"), sd, MODEL_META)
        trace = {}
        with torch.no_grad():
            io[name + ".out"] = mmdit.forward(sd, cfg, x, t, ctx, pooled, trace)
        io.update({"%s.%s" % (name, k): v for k, v in trace.items()})
        models[name] = (sd, cfg)
    save(os.path.join(out, "mmdit", "io.safetensors"), io)
    sd, cfg = models["softmax"]
    save(os.path.join(mkdir(os.path.join(out, "mmdit", "sai")), "softmax.safetensors"),
               mmdit.to_sai(sd, cfg))
    return models


def make_ttt_op(out):
    """A standalone case of the fused TTT op (eng_op_ttt): 2 samples, 7 tokens, 2 heads x 16."""
    gen = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn((2, 7, 32), generator=gen) for _ in range(3))
    w1, w2 = (torch.randn((2, 16, 16), generator=gen) * 0.2 for _ in range(2))
    split = [a.reshape(2, 7, 2, 16).transpose(1, 2) for a in (q, k, v)]
    o = mmdit.ttt_inner(*split, w1, w2).transpose(1, 2).reshape(2, 7, 32)
    save(os.path.join(out, "ttt_op.safetensors"),
         {"q": q, "k": k, "v": v, "w1": w1, "w2": w2, "o": o})


def make_sampler(out, models):
    folder = mkdir(os.path.join(out, "sampler"))
    write_json(os.path.join(folder, "scheduler_config.json"), SCHEDULER_CONFIG)
    sig = {}
    for prefix, shift in (("", 3.0), ("shift1_", 1.0)):
        sched = sampler.FlowMatchEuler(1000, shift)
        for n in SIGMA_STEPS:
            sig["%ssigmas_%d" % (prefix, n)], sig["%stimesteps_%d" % (prefix, n)] = \
                sched.set_timesteps(n)
    save(os.path.join(folder, "sigmas.safetensors"), sig)

    sd, cfg = models["ttt_mixed"]
    gen = torch.Generator().manual_seed(5)
    ctx, neg_ctx = (torch.randn((2, 5, 24), generator=gen) for _ in range(2))
    pooled, neg_pooled = (torch.randn((2, 20), generator=gen) for _ in range(2))
    latents = torch.stack([rng.latent(LOOP_SEED + b, (4, 8, 12)) for b in range(2)])
    guidance = torch.tensor([1.0, 4.0])
    sched = sampler.FlowMatchEuler.from_config(SCHEDULER_CONFIG)
    steps = []
    with torch.no_grad():
        final = sampler.denoise(lambda *a: mmdit.forward(sd, cfg, *a), latents, ctx, neg_ctx,
                                pooled, neg_pooled, guidance.tolist(), LOOP_STEPS, sched, steps)
    sigmas, timesteps = sched.set_timesteps(LOOP_STEPS)
    loop = {"latents_in": latents, "ctx": ctx, "neg_ctx": neg_ctx, "pooled": pooled,
            "neg_pooled": neg_pooled, "guidance": guidance, "latents_out": final,
            "sigmas": sigmas, "timesteps": timesteps}
    for i, per_sample in enumerate(steps):
        loop["latents_step%d" % i] = torch.stack(per_sample)
    save(os.path.join(folder, "loop.safetensors"), loop)


def make_rng(out):
    save(os.path.join(out, "rng.safetensors"),
               {"seed%d" % s: torch.tensor(rng.normals(s, 64), dtype=torch.float32)
                for s in RNG_SEEDS})


def summary(out):
    total = 0
    for path in sorted(WRITTEN):
        with open(path, "rb") as fh:
            blob = fh.read()
        total += len(blob)
        what = ""
        if path.endswith(".safetensors"):
            what = "%d tensors" % len(st_io.loads(blob)[0])
        print("%9d  %s  %s  %s" % (len(blob), hashlib.sha256(blob).hexdigest()[:12],
                                   os.path.relpath(path, out), what))
    print("%9d  total" % total)


def main(argv):
    out = os.path.abspath(argv[1]) if len(argv) > 1 else os.path.join(ROOT, "tests", "fixtures")
    del WRITTEN[:]
    torch.set_num_threads(1)  # one summation order, run after run
    rng.self_check()
    mkdir(out)
    models = make_models(out)
    make_ttt_op(out)
    make_sampler(out, models)
    make_rng(out)
    print("fixtures written to %s" % out)
    summary(out)


if __name__ == "__main__":
    main(sys.argv)
