"""make_pipeline_fixtures.py - tests/fixtures/pipeline/: the whole SD3 pipeline on the tiny model.

    /usr/bin/python3 tools/reference/make_pipeline_fixtures.py [--model DIR] [--out DIR]

Runs tools/reference/pipeline.py on tests/fixtures/tiny_model/ (made by tools/make_tiny_model.py)
for a 2-image batch and writes every stage's result:

    encode.safetensors   the token ids of each prompt and negative prompt, ctx / pooled and
                         neg_ctx / neg_pooled (what eng_pipeline_encode_prompts must give)
    golden.safetensors   guidance, seeds, the schedule, latents_in (from the project RNG),
                         the latents after every step, latents_out, the decoder output, the
                         image in [0, 1] and the 8-bit RGB (what eng_pipeline_generate must give)

The prompts are cases of the tokenizer corpus (tools/reference/tokenizer_corpus.py), and their
ids are the ones HF tokenizers gave for them, read from tests/fixtures/tokenizers/expected.json
and padded as diffusers asks for (CLIP-L with <|endoftext|> 49407, CLIP-G with "!" 0, T5 with
<pad> 0; 77 / 77 / 256). No Python tokenizer runs here. Deterministic (seeded RNG, float32 on one
thread, st_io's byte-stable writer). tests/fixtures/pipeline/README.md documents the files.
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import pipeline  # noqa: E402
import st_io  # noqa: E402

EXPECTED = os.path.join(ROOT, "tests", "fixtures", "tokenizers", "expected.json")

# The batch: one image per row. Row 0 has guidance 1 (no unconditional pass; its negative
# prompt is still encoded and stored), row 1 guidance 3.5 with a non-empty negative prompt.
ITEMS = [
    {"prompt": "a photo of a cat", "negative_prompt": "", "guidance": 1.0, "seed": 7},
    {"prompt": "A cinematic photo of a red fox in the snow, golden hour, 85mm, bokeh, "
               "highly detailed",
     "negative_prompt": "(masterpiece:1.2), [lowres], {a|b}, <lora:style:0.8>",
     "guidance": 3.5, "seed": 8},
]
WIDTH, HEIGHT, STEPS = 64, 48, 3

# Hand-checkable ids (vocab.json: "a</w>" 320, "photo</w>" 1125, "of</w>" 539, "cat</w>" 2368;
# BOS 49406, EOS 49407), asserted against expected.json so a changed fixture is caught.
CAT_CLIP = [49406, 320, 1125, 539, 320, 2368, 49407]


def token_ids(cases, text):
    """(clip_l [77], clip_g [77], t5 [256]) for a corpus text, padded."""
    for c in cases["cases"]:
        if c.get("text") == text and "bytes" not in c:
            toks = cases["tokenizers"]
            return (pipeline.pad_ids(c["clip_l"], pipeline.CLIP_TOKENS,
                                     toks["clip_l"]["pad_id"]),
                    pipeline.pad_ids(c["clip_g"], pipeline.CLIP_TOKENS,
                                     toks["clip_g"]["pad_id"]),
                    pipeline.pad_ids(c["t5"], pipeline.T5_TOKENS, toks["t5"]["pad_id"]))
    raise KeyError("%r is not a case of %s" % (text, EXPECTED))


def batch_ids(cases, texts):
    rows = [token_ids(cases, t) for t in texts]
    return tuple(torch.tensor([r[k] for r in rows], dtype=torch.int32) for k in range(3))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "tests", "fixtures", "tiny_model"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "pipeline"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    with open(EXPECTED) as f:
        cases = json.load(f)
    assert cases["tokenizers"]["clip_l"]["pad_id"] == 49407
    assert cases["tokenizers"]["clip_g"]["pad_id"] == 0
    assert token_ids(cases, "a photo of a cat")[0][:7] == CAT_CLIP

    p = pipeline.Pipeline(args.model)
    cond_ids = batch_ids(cases, [it["prompt"] for it in ITEMS])
    uncond_ids = batch_ids(cases, [it["negative_prompt"] for it in ITEMS])
    guidance = [it["guidance"] for it in ITEMS]
    seeds = [it["seed"] for it in ITEMS]
    r = p.generate(cond_ids, uncond_ids, guidance, WIDTH, HEIGHT, STEPS, seeds=seeds)

    os.makedirs(args.out, exist_ok=True)
    meta = {"width": WIDTH, "height": HEIGHT, "steps": STEPS}
    for b, it in enumerate(ITEMS):
        meta["prompt%d" % b] = it["prompt"]
        meta["negative_prompt%d" % b] = it["negative_prompt"]
    enc = {"ctx": r["cond"]["ctx"], "pooled": r["cond"]["pooled"],
           "neg_ctx": r["uncond"]["ctx"], "neg_pooled": r["uncond"]["pooled"]}
    for k, name in enumerate(("clip_l", "clip_g", "t5")):
        enc["ids." + name] = cond_ids[k]
        enc["neg_ids." + name] = uncond_ids[k]
    st_io.save(os.path.join(args.out, "encode.safetensors"),
               {k: v.contiguous() for k, v in enc.items()}, meta)

    gold = {"guidance": torch.tensor(guidance, dtype=torch.float32),
            "seeds": torch.tensor(seeds, dtype=torch.int32),
            "sigmas": r["sigmas"], "timesteps": r["timesteps"],
            "latents_in": r["latents_in"], "latents_out": r["latents_out"],
            "decoded": r["decoded"], "image": r["image"],
            "rgb": torch.from_numpy(r["rgb"]).to(torch.int32)}
    for i, step in enumerate(r["trace"]):
        gold["latents_step%d" % i] = torch.stack(step)
    st_io.save(os.path.join(args.out, "golden.safetensors"),
               {k: v.contiguous() for k, v in gold.items()}, meta)

    rgb = r["rgb"]
    for name in ("encode.safetensors", "golden.safetensors"):
        print("%s: %d bytes" % (name, os.path.getsize(os.path.join(args.out, name))))
    print("ctx %s, pooled %s, image %s; rgb mean %.1f, min %d, max %d; "
          "%.1f%% of image values clamped" % (
              list(r["cond"]["ctx"].shape), list(r["cond"]["pooled"].shape),
              list(r["image"].shape), rgb.mean(), rgb.min(), rgb.max(),
              100.0 * ((r["image"] == 0) | (r["image"] == 1)).float().mean().item()))


if __name__ == "__main__":
    main()
