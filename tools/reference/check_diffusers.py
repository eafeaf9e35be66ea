#!/usr/bin/env python3
"""check_diffusers.py - checks the reference and tests/fixtures/ against diffusers itself.

Needs torch >= 2 and an importable diffusers (with safetensors), e.g. on the GPU machine:
  PYTHONPATH=path/to/diffusers/src python3 tools/reference/check_diffusers.py
Runs on the CPU in float32 and prints one line per check with the largest absolute difference;
exits 1 when a check fails. What it checks:
  - diffusers' own PatchEmbed buffer equals the pos_embed.pos_embed we store;
  - SD3Transformer2DModel loaded (strictly) from the softmax fixture folder reproduces temb, every
    block's outputs and softmax.out of io.safetensors;
  - ttt_mixed's and ttt_all's softmax-only blocks, fed the fixture's block inputs, give the
    fixture's block outputs (so the TTT variants' traces are consistent with diffusers too);
  - diffusers' convert_sd3_transformer_checkpoint_to_diffusers turns mmdit/sai/softmax.safetensors
    back into the diffusers state dict, tensor for tensor;
  - FlowMatchEulerDiscreteScheduler gives sigmas.safetensors bit for bit;
  - the reference's denoising loop (sampler.py) against the same loop driven by diffusers'
    scheduler and transformer, with the softmax model and per-sample guidance.
"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import mmdit  # noqa: E402
import sampler  # noqa: E402
import st_io  # noqa: E402
from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel  # noqa: E402
from diffusers.loaders.single_file_utils import (  # noqa: E402
    convert_sd3_transformer_checkpoint_to_diffusers)
from safetensors.torch import load_file  # noqa: E402

FIX = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "fixtures")
failures = []


def report(what, got, want, tol):
    diff = (got.double() - want.double()).abs().max().item() if got.numel() else 0.0
    ok = got.shape == want.shape and diff <= tol
    print("%-4s %-58s max|diff| %.3g (tol %.0e)" % ("ok" if ok else "FAIL", what, diff, tol))
    if not ok:
        failures.append(what)


def load_model(variant):
    folder = os.path.join(FIX, "mmdit", variant, "transformer")
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    sd = load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors"))
    diff_cfg = {k: v for k, v in cfg.items() if not k.startswith("_") and k != "ttt"}
    model = SD3Transformer2DModel(**diff_cfg).eval()
    return model, sd, cfg


def check_pos_embed(model, sd):
    pe = model.pos_embed.pos_embed.detach().clone()  # built by diffusers before loading
    report("diffusers' own pos_embed buffer", pe, sd["pos_embed.pos_embed"], 0.0)


def check_softmax(io):
    model, sd, cfg = load_model("softmax")
    check_pos_embed(model, sd)
    model.load_state_dict(sd, strict=True)
    seen = {}

    def hook(i):
        def fn(mod, args, kwargs, out):
            seen["block%d.hidden_in" % i] = kwargs["hidden_states"]
            seen["block%d.context_in" % i] = kwargs["encoder_hidden_states"]
            seen["block%d.context_out" % i], seen["block%d.hidden_out" % i] = out
        return fn

    hooks = [b.register_forward_hook(hook(i), with_kwargs=True)
             for i, b in enumerate(model.transformer_blocks)]
    hooks.append(model.time_text_embed.register_forward_hook(
        lambda m, a, o: seen.__setitem__("temb", o)))
    with torch.no_grad():
        out = model(hidden_states=io["x"], encoder_hidden_states=io["ctx"],
                    pooled_projections=io["pooled"], timestep=io["t"], return_dict=False)[0]
    for h in hooks:
        h.remove()
    for name in sorted(seen):
        if seen[name] is not None and "softmax." + name in io:
            report("softmax.%s vs diffusers" % name, seen[name], io["softmax." + name], 2e-5)
    report("softmax.out vs diffusers", out, io["softmax.out"], 2e-5)
    return model, sd


def check_ttt_softmax_blocks(io):
    for variant in ("ttt_mixed", "ttt_all"):
        model, sd, cfg = load_model(variant)
        rcfg = mmdit.Config(cfg)
        ttt_names = [n for n in sd if n.endswith((".w1", ".w2", "_conv.weight", "_conv.bias"))]
        missing, unexpected = model.load_state_dict(
            {k: v for k, v in sd.items() if k not in ttt_names}, strict=False)
        assert not missing and not unexpected, (missing, unexpected)
        for i, block in enumerate(model.transformer_blocks):
            if i in rcfg.ttt_attn or i in rcfg.ttt_attn2:
                continue
            p = "%s.block%d." % (variant, i)
            with torch.no_grad():
                ctx, hid = block(hidden_states=io[p + "hidden_in"],
                                 encoder_hidden_states=io[p + "context_in"],
                                 temb=io[variant + ".temb"])
            report(p + "hidden_out vs diffusers block", hid, io[p + "hidden_out"], 2e-5)
            if ctx is not None:
                report(p + "context_out vs diffusers block", ctx, io[p + "context_out"], 2e-5)


def check_sai(sd):
    sai = load_file(os.path.join(FIX, "mmdit", "sai", "softmax.safetensors"))
    conv = convert_sd3_transformer_checkpoint_to_diffusers(dict(sai))
    same_keys = sorted(conv) == sorted(sd)
    print("%-4s SAI -> diffusers conversion: same %d names" % ("ok" if same_keys else "FAIL",
                                                              len(sd)))
    if not same_keys:
        failures.append("SAI names")
        print("  only converted:", sorted(set(conv) - set(sd))[:8])
        print("  only diffusers:", sorted(set(sd) - set(conv))[:8])
        return
    worst = max((conv[k] - sd[k]).abs().max().item() for k in sd)
    report("SAI -> diffusers conversion, every tensor", torch.tensor([worst]), torch.zeros(1), 0.0)


def check_sigmas():
    with open(os.path.join(FIX, "sampler", "scheduler_config.json")) as f:
        cfg = json.load(f)
    sig = st_io.load(os.path.join(FIX, "sampler", "sigmas.safetensors"))
    for prefix, shift in (("", cfg["shift"]), ("shift1_", 1.0)):
        sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=cfg["num_train_timesteps"],
                                                shift=shift)
        for n in (1, 4, 28, 40):
            sched.set_timesteps(n)
            report("%ssigmas_%d vs diffusers" % (prefix, n), sched.sigmas,
                   sig["%ssigmas_%d" % (prefix, n)], 0.0)
            report("%stimesteps_%d vs diffusers" % (prefix, n), sched.timesteps,
                   sig["%stimesteps_%d" % (prefix, n)], 0.0)


def diffusers_loop(model, latents, ctx, neg_ctx, pooled, neg_pooled, guidance, steps, shift):
    """The SD3 pipeline's loop, one sample at a time, with diffusers' scheduler and model."""
    outs = []
    for b in range(latents.shape[0]):
        sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
        sched.set_timesteps(steps)
        x = latents[b:b + 1]
        cfg_on = guidance[b] > 1
        pe = torch.cat([neg_ctx[b:b + 1], ctx[b:b + 1]]) if cfg_on else ctx[b:b + 1]
        pp = torch.cat([neg_pooled[b:b + 1], pooled[b:b + 1]]) if cfg_on else pooled[b:b + 1]
        for t in sched.timesteps:
            xin = torch.cat([x] * 2) if cfg_on else x
            v = model(hidden_states=xin, timestep=t.expand(xin.shape[0]), encoder_hidden_states=pe,
                      pooled_projections=pp, return_dict=False)[0]
            if cfg_on:
                vu, vc = v.chunk(2)
                v = vu + guidance[b] * (vc - vu)
            x = sched.step(v, t, x, return_dict=False)[0]
        outs.append(x)
    return torch.cat(outs)


def check_loop(model, sd):
    loop = st_io.load(os.path.join(FIX, "sampler", "loop.safetensors"))
    with open(os.path.join(FIX, "mmdit", "softmax", "transformer", "config.json")) as f:
        cfg = mmdit.Config(json.load(f))
    args = [loop[k] for k in ("latents_in", "ctx", "neg_ctx", "pooled", "neg_pooled")]
    g = loop["guidance"].tolist()
    with torch.no_grad():
        ours = sampler.denoise(lambda *a: mmdit.forward(sd, cfg, *a), *args, g, 4,
                               sampler.FlowMatchEuler(1000, 3.0))
        theirs = diffusers_loop(model, *args, g, 4, 3.0)
    report("softmax 4-step CFG loop: reference vs diffusers", ours, theirs, 5e-5)


def main():
    torch.set_num_threads(1)
    io = st_io.load(os.path.join(FIX, "mmdit", "io.safetensors"))
    model, sd = check_softmax(io)
    check_ttt_softmax_blocks(io)
    check_sai(sd)
    check_sigmas()
    check_loop(model, sd)
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
