"""train_export.py - the last stages of train.py (export, eval) and its --init-only folders."""
import json
import os
import shutil
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bpe  # noqa: E402
import dataset as ds  # noqa: E402
import evaluate as ev  # noqa: E402
import models as M  # noqa: E402
import pngio  # noqa: E402
import st_io  # noqa: E402
from train_common import (configs, latent_stats, load_tokenizer, sample_images,  # noqa: E402
                          ttt_config)
from train_stages import load_softmax, load_ttt, load_vae  # noqa: E402


# ---- stage: export ----

def _export(run, out, tok, clip, dit, vcfg, vae, share_from=None):
    M.export_pipeline(out, dit.cfg, dit.export(torch.float32), clip.cfg, clip.export(torch.float32),
                      vcfg, vae.export(torch.float32), tok, run.p["shift"], share_from,
                      t5_len=run.p["t5_len"])


def load_trained(run):
    """(tokenizer, VAE config with the latent factors, VAE, CLIP, softmax MMDiT, TTT MMDiT): the
    trained models, EMA weights, as export and eval use them."""
    tok = load_tokenizer(run)
    lat = latent_stats(run)
    _, _, vcfg = configs(run, tok, lat["scale"], lat["shift"])
    vae = load_vae(run, vcfg)
    clip, soft = load_softmax(run, tok)
    return tok, vcfg, vae, clip, soft, load_ttt(run)


def stage_export(run):
    tok, vcfg, vae, clip, soft, ttt = load_trained(run)
    default, softmax = os.path.join(run.out, "default"), os.path.join(run.out, "softmax")
    for d in (default, softmax):
        if os.path.exists(d):
            shutil.rmtree(d)
    _export(run, default, tok, clip, ttt, vcfg, vae)
    _export(run, softmax, tok, clip, soft, vcfg, vae, share_from="default")
    run.log("export: %s %.2f MB, %s %.2f MB (links to default/ not counted), total %.2f MB",
            default, M.folder_bytes(default) / 1e6, softmax, M.folder_bytes(softmax) / 1e6,
            (M.folder_bytes(default) + M.folder_bytes(softmax)) / 1e6)
    if run.args.tttd:
        check_linearize(run, softmax, ttt.cfg)
    run.mark("export")


def check_linearize(run, softmax_dir, tcfg):
    """`tttd linearize` on the exported softmax folder against models.linearize_init."""
    tmp = os.path.join(run.state, "linearize_check")
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    cmd = [run.args.tttd, "linearize", os.path.join(softmax_dir, "transformer"), tmp, "--map",
           run.p["ttt_map"], "--seed", "0"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        run.log("linearize check: %s failed: %s", " ".join(cmd), r.stderr.strip())
        return
    got = st_io.load(os.path.join(tmp, "diffusion_pytorch_model.safetensors"))
    want = M.linearize_init(tcfg, 0)
    bad = [k for k, v in want.items() if not torch.equal(got[k], v.to(torch.float16))]
    with open(os.path.join(tmp, "config.json")) as f:
        same_map = json.load(f).get("ttt") == tcfg.get("ttt")
    run.log("linearize check against %s: %d tensors, %d differ, map %s", run.args.tttd,
            len(want), len(bad), "equal" if same_map else "DIFFERS")


# ---- stage: eval ----

@torch.no_grad()
def stage_eval(run):
    tok, vcfg, vae, clip, soft, ttt = load_trained(run)
    pairs = ds.heldout_prompts(max(run.p["eval_prompts"], 1))[:run.p["eval_prompts"]]
    prompts = [c for _, c in pairs]
    report = {"prompts": len(prompts), "steps": run.p["eval_steps"]}
    sheet_dir = os.path.join(run.out, "samples")
    os.makedirs(sheet_dir, exist_ok=True)
    for name, dit in (("softmax", soft), ("ttt", ttt)):
        # tttd's default guidance 7 is what the bar is measured at; 4 for information.
        for guidance in (7.0, 4.0):
            t = time.time()
            imgs = sample_images(run, clip, dit, vae, vcfg, tok, prompts, run.p["eval_steps"],
                                 guidance, 1000)
            res = [ev.evaluate_image(p, ds.SIZE, ds.SIZE, im) for p, im in zip(prompts, imgs)]
            rep = ev.summarize(res)
            report["%s_guidance%g" % (name, guidance)] = rep
            run.log("eval %s, guidance %g: %d held-out prompts in %.1f s: overall %.3f strict "
                    "%.3f | %s", name, guidance, len(prompts), time.time() - t, rep["overall"],
                    rep["strict"], " ".join("%s %.3f" % (c, v["accuracy"])
                                            for c, v in rep["categories"].items()
                                            if v["accuracy"] is not None))
            if guidance != 7.0:
                continue
            folder = os.path.join(sheet_dir, name)
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "manifest.jsonl"), "w") as f:
                for i, (p, im) in enumerate(zip(prompts, imgs)):
                    pngio.write_png(os.path.join(folder, "%05d.png" % i), ds.SIZE, ds.SIZE, im)
                    f.write(json.dumps({"image": "%05d.png" % i, "caption": p}) + "\n")
            pngio.write_sheet(os.path.join(sheet_dir, name + ".png"), imgs[:48], ds.SIZE)
    M.write_json(os.path.join(run.out, "eval.json"), report)
    run.mark("eval")


def init_only(run):
    """Untrained folders of the configured size (for timing before training)."""
    rng = ds.Rng(1)
    corpus = [ds.sample(rng, "train")[1] for _ in range(2000)] + ds.vocabulary_corpus()
    tok = bpe.Tokenizer(bpe.train(corpus), run.p["clip_len"])
    clip_cfg, tcfg, vcfg = configs(run, tok)
    g = torch.Generator().manual_seed(0)
    clip = M.Clip(clip_cfg, M.init_clip(clip_cfg, g))
    vae = M.VAE(vcfg, M.init_vae(vcfg, g))
    soft = M.MMDiT(tcfg, M.init_transformer(tcfg, g))
    for p in soft.parameters():  # random, not adaLN-zero: every op does real work when timed
        p.data.normal_(0.0, 0.02, generator=g)
    tt = ttt_config(run, tcfg)
    tensors = {k: v.detach() for k, v in soft.sd().items()}
    tensors.update(M.linearize_init(tt, 0))
    ttt = M.MMDiT(tt, tensors)
    default, softmax = os.path.join(run.out, "default"), os.path.join(run.out, "softmax")
    _export(run, default, tok, clip, ttt, vcfg, vae)
    _export(run, softmax, tok, clip, soft, vcfg, vae, share_from="default")
    run.log("init-only: MMDiT %d parameters (TTT %d), CLIP %d, VAE %d; %s %.2f MB + %s %.2f MB",
            sum(p.numel() for p in soft.parameters()), sum(p.numel() for p in ttt.parameters()),
            sum(p.numel() for p in clip.parameters()), sum(p.numel() for p in vae.parameters()),
            default, M.folder_bytes(default) / 1e6, softmax, M.folder_bytes(softmax) / 1e6)
