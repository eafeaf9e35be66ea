#!/usr/bin/env python3
"""check_pipeline_diffusers.py - checks tests/fixtures/tiny_model and tests/fixtures/pipeline
against diffusers' StableDiffusion3Pipeline and transformers' models and tokenizers.

Needs torch >= 2, transformers (with tokenizers) and an importable diffusers, e.g. on the GPU
machine: PYTHONPATH=build/refcheck/src python3 tools/reference/check_pipeline_diffusers.py
Runs on the CPU in float32; prints one line per check; exits 1 when one fails. Checks:
  - the tiny model folder loads with StableDiffusion3Pipeline.from_pretrained (every component;
    the transformer's TTT tensors are reported as unexpected, the rest must match);
  - the VAE (encoder included) and the transformer's inherited tensors load strictly;
  - HF's tokenizers, read from tiny_model/tokenizer*/, give the ids stored in encode.safetensors;
  - pipe.encode_prompt gives ctx, pooled, neg_ctx, neg_pooled of encode.safetensors;
  - diffusers' VAE decode + VaeImageProcessor turn golden latents_out into golden image / rgb;
  - the whole pipeline call (each image alone, with its guidance and golden latents_in) against
    tools/reference/pipeline.py with the same model made softmax-only (diffusers has no TTT):
    final latents, image and 8-bit rgb.
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mmdit  # noqa: E402
import pipeline  # noqa: E402
import st_io  # noqa: E402
from diffusers import (AutoencoderKL, FlowMatchEulerDiscreteScheduler,  # noqa: E402
                       SD3Transformer2DModel, StableDiffusion3Pipeline)
from safetensors.torch import load_file  # noqa: E402
from transformers import (AutoTokenizer, CLIPTextModelWithProjection,  # noqa: E402
                          CLIPTokenizer, T5EncoderModel)

ROOT = os.path.dirname(os.path.dirname(HERE))
MODEL = os.path.join(ROOT, "tests", "fixtures", "tiny_model")
FIX = os.path.join(ROOT, "tests", "fixtures", "pipeline")
failures = []


def report(what, got, want, tol):
    got, want = torch.as_tensor(got), torch.as_tensor(want)
    same_shape = tuple(got.shape) == tuple(want.shape)
    diff = (got.double() - want.double()).abs().max().item() if same_shape and got.numel() else -1
    ok = same_shape and 0 <= diff <= tol
    print("%-4s %-62s max|diff| %.3g (tol %.0e)%s" % (
        "ok" if ok else "FAIL", what, diff, tol,
        "" if same_shape else " shapes %s vs %s" % (list(got.shape), list(want.shape))))
    if not ok:
        failures.append(what)


def check(what, cond, detail=""):
    print("%-4s %s%s" % ("ok" if cond else "FAIL", what, (": " + detail) if detail else ""))
    if not cond:
        failures.append(what)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def build_pipe():
    """The pipeline from its parts, each loaded as strictly as diffusers / transformers allow."""
    tcfg = read_json(os.path.join(MODEL, "transformer", "config.json"))
    transformer = SD3Transformer2DModel(
        **{k: v for k, v in tcfg.items() if not k.startswith("_") and k != "ttt"}).eval()
    sd = load_file(os.path.join(MODEL, "transformer", "diffusion_pytorch_model.safetensors"))
    missing, unexpected = transformer.load_state_dict({k: v.float() for k, v in sd.items()},
                                                      strict=False)
    ttt_suffixes = (".w1", ".w2", ".q_conv.weight", ".q_conv.bias", ".k_conv.weight",
                    ".k_conv.bias")
    check("transformer: no missing tensor", not missing, ", ".join(missing[:5]))
    check("transformer: only TTT tensors unexpected (%d)" % len(unexpected),
          all(k.endswith(ttt_suffixes) for k in unexpected))
    vcfg = read_json(os.path.join(MODEL, "vae", "config.json"))
    vae = AutoencoderKL(**{k: v for k, v in vcfg.items() if not k.startswith("_")}).eval()
    vsd = load_file(os.path.join(MODEL, "vae", "diffusion_pytorch_model.safetensors"))
    vae.load_state_dict({k: v.float() for k, v in vsd.items()}, strict=True)
    check("vae: loads strictly (encoder and decoder)", True)
    kw = dict(torch_dtype=torch.float32)
    te1 = CLIPTextModelWithProjection.from_pretrained(os.path.join(MODEL, "text_encoder"), **kw)
    te2 = CLIPTextModelWithProjection.from_pretrained(os.path.join(MODEL, "text_encoder_2"), **kw)
    te3 = T5EncoderModel.from_pretrained(os.path.join(MODEL, "text_encoder_3"), **kw)
    tok1 = CLIPTokenizer.from_pretrained(os.path.join(MODEL, "tokenizer"))
    tok2 = CLIPTokenizer.from_pretrained(os.path.join(MODEL, "tokenizer_2"))
    tok3 = AutoTokenizer.from_pretrained(os.path.join(MODEL, "tokenizer_3"))
    sched = FlowMatchEulerDiscreteScheduler.from_pretrained(os.path.join(MODEL, "scheduler"))
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=sched, vae=vae, text_encoder=te1.eval(),
        tokenizer=tok1, text_encoder_2=te2.eval(), tokenizer_2=tok2,
        text_encoder_3=te3.eval(), tokenizer_3=tok3)


def check_from_pretrained():
    try:
        p = StableDiffusion3Pipeline.from_pretrained(MODEL, torch_dtype=torch.float32,
                                                     low_cpu_mem_usage=False)
        names = sorted(k for k, v in p.components.items() if v is not None)
        check("StableDiffusion3Pipeline.from_pretrained(tiny_model)", True, ", ".join(names))
    except Exception as e:  # report, and go on with the parts loaded one by one
        check("StableDiffusion3Pipeline.from_pretrained(tiny_model)", False, repr(e)[:300])


def main():
    torch.manual_seed(0)
    check_from_pretrained()
    pipe = build_pipe()
    enc = st_io.load(os.path.join(FIX, "encode.safetensors"))
    gold_blob = open(os.path.join(FIX, "golden.safetensors"), "rb").read()
    gold, meta = st_io.loads(gold_blob)
    n = 2
    prompts = [meta["prompt%d" % b] for b in range(n)]
    negs = [meta["negative_prompt%d" % b] for b in range(n)]
    W, H, steps = int(meta["width"]), int(meta["height"]), int(meta["steps"])

    # Token ids, as diffusers asks the tokenizers for them.
    for texts, tag in ((prompts, "ids"), (negs, "neg_ids")):
        for tok, name, length in ((pipe.tokenizer, "clip_l", 77), (pipe.tokenizer_2, "clip_g", 77),
                                  (pipe.tokenizer_3, "t5", 256)):
            ids = tok(texts, padding="max_length", max_length=length, truncation=True,
                      add_special_tokens=True, return_tensors="pt").input_ids
            report("%s.%s (HF tokenizer)" % (tag, name), ids, enc["%s.%s" % (tag, name)], 0)

    with torch.no_grad():
        pe, npe, pp, npp = pipe.encode_prompt(
            prompt=prompts, prompt_2=None, prompt_3=None, negative_prompt=negs,
            do_classifier_free_guidance=True, max_sequence_length=256)
    for got, name in ((pe, "ctx"), (pp, "pooled"), (npe, "neg_ctx"), (npp, "neg_pooled")):
        report("encode_prompt: " + name, got, enc[name], 1e-4)

    # The VAE alone, on the golden final latents (made with the TTT transformer).
    with torch.no_grad():
        z = gold["latents_out"] / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
        x = pipe.vae.decode(z, return_dict=False)[0]
        img = pipe.image_processor.postprocess(x, output_type="np")
    report("vae decode: golden decoded", x, gold["decoded"], 1e-4)
    report("vae postprocess: golden image", torch.from_numpy(img).permute(0, 3, 1, 2),
           gold["image"], 1e-5)
    rgb = (img * 255).round().astype("uint8")
    d = np.abs(rgb.astype(np.int32) - gold["rgb"].numpy())
    check("vae postprocess: golden rgb within 1 level", d.max() <= 1,
          "max %d, %d of %d bytes differ" % (d.max(), (d > 0).sum(), d.size))

    # The whole call, softmax-only model, each image alone.
    ref = pipeline.Pipeline(MODEL)
    ref.transformer_config = mmdit.Config(
        {k: v for k, v in ref.transformer_config.raw.items() if k != "ttt"})
    cond_ids = tuple(enc["ids." + k] for k in ("clip_l", "clip_g", "t5"))
    uncond_ids = tuple(enc["neg_ids." + k] for k in ("clip_l", "clip_g", "t5"))
    guidance = gold["guidance"].tolist()
    r = ref.generate(cond_ids, uncond_ids, guidance, W, H, steps, latents=gold["latents_in"])
    for b in range(n):
        kw = dict(prompt=prompts[b], negative_prompt=negs[b], guidance_scale=guidance[b],
                  num_inference_steps=steps, height=H, width=W,
                  latents=gold["latents_in"][b:b + 1].clone())
        with torch.no_grad():
            lat = pipe(output_type="latent", **kw).images
            img = pipe(output_type="np", **kw).images
        report("pipeline %d (softmax, g %.1f): final latents" % (b, guidance[b]), lat,
               r["latents_out"][b:b + 1], 1e-4)
        report("pipeline %d: image" % b, torch.from_numpy(img).permute(0, 3, 1, 2),
               r["image"][b:b + 1], 1e-4)
        rgb = (img * 255).round().astype("uint8")
        d = np.abs(rgb.astype(np.int32) - r["rgb"][b:b + 1].astype(np.int32))
        check("pipeline %d: rgb within 1 level" % b, d.max() <= 1,
              "max %d, %d of %d bytes differ" % (d.max(), (d > 0).sum(), d.size))

    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
