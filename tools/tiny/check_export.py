"""check_export.py - an exported tiny model folder under tttd against the PyTorch reference.

    /usr/bin/python3 tools/tiny/check_export.py --model build/tiny/default --tttd build/tttd \
        [--prompts 200] [--images 4] [--steps 8]

1. Tokenizers: tools/tiny/bpe.py (what training used) against `tttd tokenize --max-length L` on
   the held-out prompts, training captions and some odd strings: ids must be equal.
2. Prompt encoding: models.encode_prompt (training's reading of the folder: one CLIP as both
   encoders, T5 zeros) against tools/reference/pipeline.py's encode_prompt on the folder (which
   follows diffusers' StableDiffusion3Pipeline): must be equal.
3. Pictures: `tttd generate --latents` against the reference pipeline from the same initial
   latents, guidance 7: the 8-bit outputs may differ by float rounding only.
Exit status 1 when a check fails.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bpe  # noqa: E402
import dataset as ds  # noqa: E402
import models as M  # noqa: E402
import pipeline as ref_pipeline  # noqa: E402  (tools/reference, on the path through models)
import pngio  # noqa: E402
import st_io  # noqa: E402

ODD = ["", "   ", "A RED Circle!!", "zebra 12345 ---", "a red circle, a blue square.",
       "naïve café", "a  very   long prompt " * 8, "<|endoftext|> red", "it's a star's ring"]


def check_tokens(args, tok):
    rng = ds.Rng(17)
    prompts = [c for _, c in ds.heldout_prompts(args.prompts)]
    prompts += [ds.sample(rng, "train")[1] for _ in range(args.prompts // 2)] + ODD
    bad = 0
    for p in prompts:
        r = subprocess.run([args.tttd, "tokenize", os.path.join(args.model), p, "--max-length",
                            str(tok.max_length)], capture_output=True, text=True)
        if r.returncode != 0:
            print("tokenize failed for %r: %s" % (p, r.stderr.strip()))
            bad += 1
            continue
        got = json.loads(r.stdout)["tokenizer"]
        if got != tok.encode(p):
            bad += 1
            if bad <= 5:
                print("token mismatch %r:\n  tttd %s\n  bpe  %s" % (p, got, tok.encode(p)))
    print("tokenizer: %d prompts, %d differ" % (len(prompts), bad))
    return bad == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--tttd", required=True)
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tok = bpe.Tokenizer.from_files(os.path.join(args.model, "tokenizer"))
    ok = check_tokens(args, tok)

    pipe = ref_pipeline.Pipeline(args.model)
    with open(os.path.join(args.model, "text_encoder", "config.json")) as f:
        clip = M.Clip(json.load(f), pipe.clip_l)
    prompts = [c for _, c in ds.heldout_prompts(max(args.images, 1))[:args.images]]
    ids = torch.tensor([tok.encode(p) for p in prompts])
    t5_ids = torch.zeros(len(prompts), pipe.t5_tokens, dtype=torch.long)
    with torch.no_grad():
        want = pipe.encode_prompt(ids, ids, t5_ids)
        ctx, pooled = M.encode_prompt(clip, ids, pipe.t5_tokens)
    enc_ok = torch.equal(ctx, want["ctx"]) and torch.equal(pooled, want["pooled"])
    print("prompt encoding: models.encode_prompt %s the reference pipeline's (ctx %s)" %
          ("equals" if enc_ok else "DIFFERS FROM", tuple(ctx.shape)))
    ok = ok and enc_ok

    worst = 0
    empty = torch.tensor([tok.encode("")])
    with tempfile.TemporaryDirectory() as tmp:
        for i, p in enumerate(prompts):
            lat = torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(i))
            lat_path = os.path.join(tmp, "lat%d.safetensors" % i)
            st_io.save(lat_path, {"latents": lat})
            out = os.path.join(tmp, "img%d.png" % i)
            r = subprocess.run([args.tttd, "generate", "--model", args.model, "--prompt", p,
                                "--latents", lat_path, "--steps", str(args.steps),
                                "--guidance", "7", "-o", out], capture_output=True, text=True)
            if r.returncode != 0:
                print("tttd generate failed: %s" % r.stderr.strip())
                return 1
            _, _, got = pngio.read_png(out)
            res = pipe.generate((ids[i:i + 1], ids[i:i + 1], t5_ids[i:i + 1]),
                                (empty, empty, t5_ids[:1]), [7.0], 128, 128, args.steps,
                                latents=lat)
            want_rgb = res["rgb"][0].tobytes()
            diff = max(abs(a - b) for a, b in zip(got, want_rgb))
            worst = max(worst, diff)
            print("picture %d %r: max 8-bit difference %d" % (i, p, diff))
    pic_ok = worst <= 2
    print("pictures: worst difference %d (%s)" % (worst, "ok" if pic_ok else "TOO LARGE"))
    return 0 if ok and pic_ok else 1


if __name__ == "__main__":
    sys.exit(main())
