"""train.py - trains tttd's embedded model: a small SD3-architecture text-to-image model, softmax,
then TTT-linearized and fine-tuned, exported as diffusers-layout folders that tttd loads.

    python3 tools/tiny/train.py --out build/tiny            (on the GPU machine; PyTorch >= 1.13)
    /usr/bin/python3 tools/tiny/train.py --smoke --out /tmp/tiny_smoke    (CPU, about a minute)

Stages (each resumable: state lives in OUT/state/, and a second run of the same command
continues where the first stopped):
  data     BPE vocabulary (CLIP format) from the caption corpus; a pool of scenes from the
           training split of tools/tiny/dataset.py, two captions each, tokenized
  preflight  every model at this run's sizes for one step on the device (seconds): fail fast
  vae      AutoencoderKL (SD3's: 16 latent channels, 8x down) on the pool's pictures, rendered on
           the fly; L1 + L2 + a small KL
  latents  the pool encoded once (posterior means); scaling/shift factors from their statistics
  dit      the softmax MMDiT and the CLIP text encoder, trained together from scratch:
           rectified flow (x_t = (1 - s) x0 + s e, target e - x0), s logit-normal then shifted
           as the scheduler's shift (SD3's recipe), 10% empty captions for guidance; EMA
  ttt      linearize by weight inheritance (the map --ttt-map; new tensors initialised exactly as
           `tttd linearize --seed 0` does: models.linearize_init) and fine-tune the whole
           transformer (new TTT tensors at a higher learning rate), text encoder frozen; EMA
  export   OUT/default (TTT) and OUT/softmax (its components other than the transformer are
           links into ../default), F16 weights
  eval     both models on held-out prompts with the PyTorch sampler (28 steps, guidance 7):
           tools/tiny/evaluate.py's scores, a contact sheet of samples; OUT/eval.json
Each run stops itself before --deadline minutes (default 9.5: the GPU machine's limit per command
is 10), saving its state; time budgets per stage are in minutes of training (--minutes-*), so
the whole schedule is fixed in advance whatever the machine's speed. The log goes to stdout
and OUT/train.log.

--init-only writes untrained folders of the configured size (for timing with `tttd bench` and
`tttd generate` before training). --tttd PATH: cross-check the Python linearize against the C
binary (bit for bit on the F16 file).
"""
import argparse
import json
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bpe  # noqa: E402
import dataset as ds  # noqa: E402
import evaluate as ev  # noqa: E402
import models as M  # noqa: E402
import pngio  # noqa: E402
import sampler as ref_sampler  # noqa: E402  (tools/reference, on the path through models)
import st_io  # noqa: E402

# Sizes. "full": the shipped model (sized for 1.5 s per 128 x 128 picture on 2 CPU cores with
# tttd, see README.md); "smoke": every stage in a few minutes on a CPU.
PRESETS = {
    "full": dict(clip_hidden=128, clip_layers=4, clip_heads=4, clip_ffn=512, clip_proj=64,
                 clip_len=24, t5_len=256, dit_layers=4, dit_heads=4, head_dim=32,
                 dual=[0, 1], ttt_map=",".join(["transformer_blocks.0.attn2",
                                                "transformer_blocks.1.attn2",
                                                "transformer_blocks.2.attn",
                                                "transformer_blocks.3.attn"]),
                 vae_channels=[16, 32, 64, 64], vae_lpb=1, vae_groups=8, shift=3.0,
                 pool=200000, vae_batch=64, dit_batch=256, lr=5e-4, minutes_vae=2.5,
                 minutes_dit=8.0, minutes_ttt=3.5, eval_prompts=240, eval_steps=28,
                 max_steps=0),
    "smoke": dict(clip_hidden=32, clip_layers=2, clip_heads=2, clip_ffn=64, clip_proj=16,
                  clip_len=24, t5_len=256, dit_layers=3, dit_heads=2, head_dim=16, dual=[0],
                  ttt_map="sd35-t5", vae_channels=[8, 16, 16, 16], vae_lpb=1, vae_groups=4,
                  shift=3.0, pool=512, vae_batch=8, dit_batch=8, lr=5e-4, minutes_vae=0.4,
                  minutes_dit=0.6, minutes_ttt=0.4, eval_prompts=6, eval_steps=4,
                  max_steps=25),
}
# data first: it forks worker processes, which is safest before CUDA is in use.
STAGES = ["data", "preflight", "vae", "latents", "dit", "ttt", "export", "eval"]


class Log:
    def __init__(self, path):
        self.f = open(path, "a")
        self.t0 = time.time()

    def __call__(self, fmt, *a):
        line = "[%7.1fs] %s" % (time.time() - self.t0, fmt % a if a else fmt)
        print(line, flush=True)
        self.f.write(line + "\n")
        self.f.flush()


class Run:
    """Paths, options, the deadline and the device of one invocation."""

    def __init__(self, args):
        self.args = args
        preset = "smoke" if args.smoke else "full"
        self.p = dict(PRESETS[preset])
        for k in list(self.p):
            v = getattr(args, k, None)
            if v is not None:
                self.p[k] = v
        self.out = args.out
        self.state = os.path.join(self.out, "state")
        os.makedirs(self.state, exist_ok=True)
        self.log = Log(os.path.join(self.out, "train.log"))
        # A resumed run keeps the sizes of the run that started the state.
        sizes = os.path.join(self.state, "sizes.json")
        if os.path.exists(sizes) and not args.init_only:
            with open(sizes) as f:
                stored = json.load(f)
            clash = [k for k, v in self.p.items() if stored["sizes"].get(k) != v]
            if stored["preset"] != preset or clash:
                raise SystemExit("train.py: %s was started with preset %s and other sizes (%s); "
                                 "resume with the same options or use another --out" %
                                 (self.state, stored["preset"], ", ".join(clash)))
        elif not args.init_only:
            M.write_json(sizes, {"preset": preset, "sizes": self.p})
        self.start = time.time()
        self.deadline = self.start + 60.0 * args.deadline if args.deadline > 0 else None
        self.device = torch.device(args.device or ("cuda" if torch.cuda.is_available()
                                                   else "cpu"))
        self.amp = self.device.type == "cuda" if args.amp is None else bool(args.amp)
        self.progress_path = os.path.join(self.state, "progress.json")
        self.progress = json.load(open(self.progress_path)) \
            if os.path.exists(self.progress_path) else {}

    def done(self, stage):
        return self.progress.get(stage) == "done"

    def mark(self, stage, value="done"):
        self.progress[stage] = value
        M.write_json(self.progress_path, self.progress)

    def time_left(self, margin=20.0):
        """Seconds before this run must stop (margin kept for saving); inf without deadline."""
        if self.deadline is None:
            return float("inf")
        return self.deadline - time.time() - margin

    def path(self, name):
        return os.path.join(self.state, name)

    def autocast(self):
        if self.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return _Null()


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


# ---- configs of this run ----

def configs(run, tok, scaling=1.0, shift_factor=0.0):
    p = run.p
    clip_cfg = M.clip_config(p["clip_hidden"], p["clip_layers"], p["clip_heads"], p["clip_ffn"],
                             p["clip_proj"], len(tok.vocab), p["clip_len"], tok.sot, tok.eot)
    tcfg = M.transformer_config(p["dit_layers"], p["dit_heads"], p["head_dim"], p["dual"],
                                2 * p["clip_hidden"], 2 * p["clip_proj"], 16)
    vcfg = M.vae_config(p["vae_channels"], p["vae_lpb"], p["vae_groups"], scaling, shift_factor)
    return clip_cfg, tcfg, vcfg


def ttt_config(run, tcfg):
    m = run.p["ttt_map"]
    ttt = {"preset": m} if m in ("all", "sd35-t5") else {"modules": m.split(",")}
    return dict(tcfg, ttt=ttt)


# ---- stage: preflight ----

def stage_preflight(run):
    """A few seconds of every model at full size, batch 2, on the run's device, before the long
    stages: a failure here costs seconds, not a stage."""
    rng = ds.Rng(1)
    tok = bpe.Tokenizer(bpe.train([ds.sample(rng)[1] for _ in range(500)] +
                                  ds.vocabulary_corpus()), run.p["clip_len"])
    clip_cfg, tcfg, vcfg = configs(run, tok)
    g = torch.Generator().manual_seed(0)
    vae = build_vae(run, vcfg, g)
    x = ds.render_batch([ds.sample(rng)[0] for _ in range(2)], run.device)
    with run.autocast():
        mean, logvar = vae.encode(x)
        y = vae.decode(mean)
    (y.float() - x).abs().mean().backward()
    clip = M.Clip(clip_cfg, M.init_clip(clip_cfg, g)).to(run.device)
    soft = M.MMDiT(tcfg, M.init_transformer(tcfg, g)).to(run.device)
    tt = ttt_config(run, tcfg)
    tensors = {k: v.detach().cpu() for k, v in soft.sd().items()}
    tensors.update(M.linearize_init(tt, 0))
    ttt = M.MMDiT(tt, tensors).to(run.device)
    ids = torch.tensor([tok.encode("a red circle"), tok.encode("")], device=run.device)
    x0 = mean.detach().float()
    for dit in (soft, ttt):
        loss = flow_loss(run, dit, clip, x0, ids, run.p["shift"], _generator(run, 0))
        loss.backward()
        opt = _adamw(run, list(dit.parameters()) + list(clip.parameters()), 1e-4)
        opt.step()
        EMA(dit, 0.99).update(dit)
    imgs = sample_images(run, clip, ttt, vae, dict(vcfg, scaling_factor=1.0, shift_factor=0.0),
                         tok, ["a red circle"], 2, 7.0, 0)
    ev.evaluate_image("a red circle", ds.SIZE, ds.SIZE, imgs[0])
    run.log("preflight: VAE, CLIP, softmax and TTT MMDiT (this run's sizes), optimiser, EMA, "
            "sampler and evaluator ran on %s%s", run.device,
            " with bfloat16 autocast" if run.amp else "")
    run.mark("preflight")


# ---- stage: data ----

def _pool_chunk(job):
    seed, n, merges, clip_len = job
    rng = ds.Rng(seed)
    tok = bpe.Tokenizer(merges, clip_len)
    scenes, ids = [], []
    for _ in range(n):
        scene, cap = ds.sample(rng, "train")
        scenes.append(scene)
        ids.append([tok.encode(cap), tok.encode(ds.caption(rng, scene))])
    return scenes, ids


def stage_data(run):
    p = run.p
    rng = ds.Rng(run.args.seed * 7919 + 1)
    corpus = [ds.sample(rng, "train")[1] for _ in range(20000)] + ds.vocabulary_corpus()
    merges = bpe.train(corpus)
    tok = bpe.Tokenizer(merges, p["clip_len"])
    tok.write_files(run.path("tokenizer"))
    chunk = 2000
    jobs = [(run.args.seed * 1000003 + i, min(chunk, p["pool"] - i * chunk), merges,
             p["clip_len"]) for i in range((p["pool"] + chunk - 1) // chunk)]
    procs = min(len(jobs), max(1, (os.cpu_count() or 2) - 1))
    if procs > 1:
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            parts = pool.map(_pool_chunk, jobs)
    else:
        parts = [_pool_chunk(j) for j in jobs]
    scenes = [s for part in parts for s in part[0]]
    ids = torch.tensor([i for part in parts for i in part[1]], dtype=torch.int32)
    empty = torch.tensor(tok.encode(""), dtype=torch.int32)
    objects, backgrounds = ds.scene_params(scenes)
    torch.save({"scenes": scenes, "ids": ids, "empty": empty, "objects": objects,
                "backgrounds": backgrounds}, run.path("pool.pt"))
    run.log("data: vocabulary %d tokens (%d merges), pool %d scenes x 2 captions, %d processes",
            len(tok.vocab), len(merges), len(scenes), procs)
    run.mark("data")


def load_tokenizer(run):
    return bpe.Tokenizer.from_files(run.path("tokenizer"))


# ---- shared training helpers ----

class EMA:
    def __init__(self, module, decay):
        self.decay = decay
        self.n = 0
        self.shadow = {k: v.detach().clone().float() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module):
        self.n += 1
        d = min(self.decay, (1.0 + self.n) / (10.0 + self.n))
        cur = module.state_dict()
        keys = [k for k, v in cur.items() if v.dtype.is_floating_point]
        shadow = [self.shadow[k] for k in keys]
        torch._foreach_mul_(shadow, d)
        torch._foreach_add_(shadow, [cur[k].detach().float() for k in keys], alpha=1.0 - d)


def lr_factor(step, warmup, frac, max_steps=0):
    """Linear warm-up, then cosine from 1 to 0.05 over the stage's time budget (or its step
    cap, whichever ends first; the warm-up is at most a fifth of a step cap)."""
    if max_steps:
        warmup = max(1, min(warmup, max_steps // 5))
        frac = max(frac, step / float(max_steps))
    w = min(1.0, (step + 1) / float(warmup))
    frac = min(1.0, max(0.0, frac))
    return w * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * frac)))


class Budget:
    """A stage's training clock, carried across runs: seconds trained so far vs the budget."""

    def __init__(self, run, minutes, spent=0.0, max_steps=0):
        self.run, self.total, self.spent = run, 60.0 * minutes, spent
        self.max_steps = max_steps
        self.t = time.time()

    def frac(self):
        return (self.spent + time.time() - self.t) / self.total

    def now_spent(self):
        return self.spent + time.time() - self.t

    def finished(self, step):
        return self.frac() >= 1.0 or (self.max_steps and step >= self.max_steps)

    def must_pause(self, reserve):
        return self.run.time_left() < reserve


def _adamw(run, params, lr):
    """AdamW, fused on CUDA where this torch has it."""
    kw = dict(lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    params = list(params)
    if run.device.type == "cuda":
        try:
            return torch.optim.AdamW(params, fused=True, **kw)
        except (TypeError, RuntimeError):
            pass
    return torch.optim.AdamW(params, **kw)


def _resume_opt(run, opt, s, name):
    """Loads the optimizer state of a checkpoint; a packed state has none (see pack()): AdamW
    then starts afresh at the saved step, and rewarm() ramps its learning rate up again."""
    if "opt" in s:
        opt.load_state_dict(s["opt"])
        run.rewarm_from = None
    else:
        run.rewarm_from = s["step"]
        run.log("%s: resumed from a packed state at step %d: optimizer restarted, learning rate "
                "re-warmed over %d steps", name, s["step"], REWARM_STEPS)


REWARM_STEPS = 50


def rewarm(run, step):
    """Learning-rate factor after an optimizer restart (1 otherwise)."""
    start = getattr(run, "rewarm_from", None)
    if start is None:
        return 1.0
    return min(1.0, (step - start + 1) / float(REWARM_STEPS))


def _load(path, run):
    """torch.load of our own state files (plain containers; weights_only off for torch >= 2.6's
    default)."""
    where = run if isinstance(run, str) else run.device
    return torch.load(path, map_location=where, weights_only=False)


def _generator(run, seed):
    return torch.Generator(device=run.device).manual_seed(seed)


def _sync(run):
    if run.device.type == "cuda":
        torch.cuda.synchronize()


# ---- stage: vae ----

def build_vae(run, vcfg, g):
    return M.VAE(vcfg, M.init_vae(vcfg, g)).to(run.device)


def _vae_weights(x):
    """Per-pixel loss weights [B, 1, H, W]: 1, plus 1 on objects (pixels unlike the corner's
    background colour), plus 3 within a pixel of a colour edge: the shapes' outlines are a few
    percent of the pixels but all of what the evaluator reads."""
    fg = ((x - x[:, :, :1, :1]).abs().sum(1, keepdim=True) > 0.05).float()
    dx = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().sum(1, keepdim=True) > 0.05
    dy = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().sum(1, keepdim=True) > 0.05
    edge = torch.zeros_like(fg)
    edge[:, :, :, 1:] += dx.float()
    edge[:, :, 1:, :] += dy.float()
    edge = F.max_pool2d((edge > 0).float(), 3, stride=1, padding=1)
    return 1.0 + fg + 3.0 * edge


def vae_from_folder(run, vcfg):
    """--vae-from DIR: the VAE of an exported folder (its F16 weights widened) instead of training
    one; its latent factors are kept for the latents stage. The tokenizer this run made must be
    the folder's (the BPE is a function of the seed), or the latents' captions would not match."""
    src = run.args.vae_from
    for name in ("vocab.json", "merges.txt"):
        with open(os.path.join(src, "tokenizer", name)) as a, \
                open(os.path.join(run.path("tokenizer"), name)) as b:
            if a.read() != b.read():
                raise SystemExit("train.py: --vae-from %s: its tokenizer/%s differs from this "
                                 "run's" % (src, name))
    with open(os.path.join(src, "vae", "config.json")) as f:
        cfg = json.load(f)
    w = {k: v.float() for k, v in
         st_io.load(os.path.join(src, "vae", "diffusion_pytorch_model.safetensors")).items()}
    vae = M.VAE(vcfg, w).to(run.device)
    torch.save({"model": vae.state_dict(), "step": 0, "spent": 60.0 * run.p["minutes_vae"]},
               run.path("vae.pt"))
    M.write_json(run.path("latents_stats.json"),
                 {"shift": cfg["shift_factor"], "scale": cfg["scaling_factor"]})
    run.mark("vae")
    run.log("vae: taken from %s (shift_factor %.4f, scaling_factor %.4f)", src,
            cfg["shift_factor"], cfg["scaling_factor"])


def stage_vae(run):
    tok = load_tokenizer(run)
    if run.args.vae_from:
        vae_from_folder(run, configs(run, tok)[2])
        return
    pool = _load(run.path("pool.pt"), "cpu")
    objects, backgrounds = pool["objects"].to(run.device), pool["backgrounds"].to(run.device)
    _, _, vcfg = configs(run, tok)
    g = torch.Generator().manual_seed(run.args.seed + 11)
    vae = build_vae(run, vcfg, g)
    opt = _adamw(run, vae.parameters(), 1e-3)
    ck = run.path("vae.pt")
    step, spent = 0, 0.0
    if os.path.exists(ck):
        s = _load(ck, run)
        vae.load_state_dict(s["model"])
        _resume_opt(run, opt, s, "vae")
        step, spent = s["step"], s["spent"]
    budget = Budget(run, run.p["minutes_vae"], spent, run.p["max_steps"])
    B = run.p["vae_batch"]
    gen = _generator(run, run.args.seed + 12 + step)
    run.log("vae: %d parameters, batch %d, %.1f min budget (%.1f spent)",
            sum(p.numel() for p in vae.parameters()), B, budget.total / 60, spent / 60)
    while not budget.finished(step):
        if budget.must_pause(30):
            break
        idx = torch.randint(objects.shape[0], (B,), generator=gen, device=run.device)
        x = ds.render_params(objects[idx], backgrounds[idx])
        for grp in opt.param_groups:
            grp["lr"] = 1e-3 * lr_factor(step, 100, budget.frac(), run.p["max_steps"]) * \
                rewarm(run, step)
        with run.autocast():
            mean, logvar = vae.encode(x)
            z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=gen,
                                                             device=run.device)
            y = vae.decode(z)
        y = y.float()
        wmap = _vae_weights(x)
        rec = ((y - x).abs() * wmap).mean() + (((y - x) ** 2) * wmap).mean()
        kl = 0.5 * (mean.float() ** 2 + logvar.float().exp() - 1.0 - logvar.float()).mean()
        loss = rec + 1e-5 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 200 == 0 or (run.args.smoke and step % 5 == 0):
            mse = ((y - x) ** 2).mean().item()
            run.log("vae: step %d rec %.4f psnr %.1f dB kl %.2f lr %.2e (%.0f%% of budget)",
                    step, rec.item(), 10 * math.log10(4.0 / max(mse, 1e-10)), kl.item(),
                    opt.param_groups[0]["lr"], 100 * budget.frac())
    torch.save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step,
                "spent": budget.now_spent()}, ck)
    if budget.finished(step):
        run.mark("vae")
        run.log("vae: done after %d steps", step)
    else:
        run.log("vae: paused at step %d (deadline)", step)


def load_vae(run, vcfg):
    vae = M.VAE(vcfg, M.init_vae(vcfg, torch.Generator().manual_seed(0))).to(run.device)
    vae.load_state_dict(_load(run.path("vae.pt"), run)["model"])
    vae.eval()
    return vae


# ---- stage: latents ----

@torch.no_grad()
def stage_latents(run):
    tok = load_tokenizer(run)
    pool = _load(run.path("pool.pt"), "cpu")
    scenes = pool["scenes"]
    _, _, vcfg = configs(run, tok)
    vae = load_vae(run, vcfg)
    chunks = []
    B = 512 if run.device.type == "cuda" else 32
    objects, backgrounds = pool["objects"].to(run.device), pool["backgrounds"].to(run.device)
    for i in range(0, len(scenes), B):
        x = ds.render_params(objects[i:i + B], backgrounds[i:i + B])
        with run.autocast():
            mean, _ = vae.encode(x)
        chunks.append(mean.float().to(torch.bfloat16 if run.amp else torch.float32))
    lat = torch.cat(chunks)
    shift = lat.float().mean().item()
    scale = 1.0 / lat.float().std().item()
    stats_path = run.path("latents_stats.json")
    if os.path.exists(stats_path):
        # Regenerated after an unpack: the models were trained with the first run's factors.
        with open(stats_path) as f:
            stats = json.load(f)
        shift, scale = stats["shift"], stats["scale"]
    else:
        M.write_json(stats_path, {"shift": shift, "scale": scale})
    # The VAE round trip on ground truth, scored by the evaluator: the ceiling of what the
    # diffusion model can reach.
    n = min(64, len(scenes))
    x = ds.render_batch(scenes[:n], run.device)
    with run.autocast():
        y = vae.decode(vae.encode(x)[0]).float()
    mse = ((y - x) ** 2).mean().item()
    rng = ds.Rng(5)
    results = [ev.evaluate_image(ds.caption(rng, scenes[i]), ds.SIZE, ds.SIZE,
                                 ds.to_rgb_bytes(y[i])) for i in range(n)]
    rep = ev.summarize(results)
    torch.save({"latents": lat.cpu(), "shift": shift, "scale": scale}, run.path("latents.pt"))
    run.log("latents: %s, shift_factor %.4f scaling_factor %.4f; VAE round trip psnr %.1f dB, "
            "evaluator on %d reconstructions: overall %.3f strict %.3f",
            tuple(lat.shape), shift, scale, 10 * math.log10(4.0 / max(mse, 1e-10)), n,
            rep["overall"], rep["strict"])
    run.mark("latents")


# ---- stage: dit (and ttt, the same loop) ----

def flow_loss(run, dit, clip, x0, ids, shift, gen, train_clip=True):
    B = x0.shape[0]
    noise = torch.randn(x0.shape, generator=gen, device=run.device)
    u = torch.sigmoid(torch.randn(B, generator=gen, device=run.device))
    sigma = shift * u / (1.0 + (shift - 1.0) * u)
    s = sigma[:, None, None, None]
    xt = (1.0 - s) * x0 + s * noise
    with run.autocast():
        if train_clip:
            ctx, pooled = M.encode_prompt(clip, ids, run.p["t5_len"])
        else:
            with torch.no_grad():
                ctx, pooled = M.encode_prompt(clip, ids, run.p["t5_len"])
        v = dit(xt, sigma * 1000.0, ctx, pooled)
    return F.mse_loss(v.float(), noise - x0)


def _batches(run, lat, ids, empty, gen):
    B = run.p["dit_batch"]
    idx = torch.randint(lat.shape[0], (B,), generator=gen, device=run.device)
    which = torch.randint(2, (B,), generator=gen, device=run.device)
    cap = ids[idx, which].long()
    drop = torch.rand(B, generator=gen, device=run.device) < 0.1
    cap = torch.where(drop[:, None], empty.long()[None, :], cap)  # no boolean-mask sync
    return lat[idx], cap


def build_models(run, tok, with_ttt=False):
    clip_cfg, tcfg, vcfg = configs(run, tok)
    g = torch.Generator().manual_seed(run.args.seed + 21)
    clip = M.Clip(clip_cfg, M.init_clip(clip_cfg, g)).to(run.device)
    dit = M.MMDiT(tcfg, M.init_transformer(tcfg, g)).to(run.device)
    return clip, dit


def train_loop(run, name, dit, clip, params, ema_modules, minutes, warmup, spent, step, opt,
               emas, train_clip, base_lrs):
    lat_state = _load(run.path("latents.pt"), "cpu")
    lat = ((lat_state["latents"].float() - lat_state["shift"]) * lat_state["scale"])
    lat = lat.to(run.device, torch.bfloat16 if run.amp else torch.float32)
    pool = _load(run.path("pool.pt"), "cpu")
    ids, empty = pool["ids"].to(run.device), pool["empty"].to(run.device)
    # Random numbers on the device: a host-to-device copy per step would wait for the GPU.
    gen = _generator(run, run.args.seed * 31 + step + (0 if name == "dit" else 7))
    budget = Budget(run, minutes, spent, run.p["max_steps"])
    run.log("%s: batch %d, %.1f min budget (%.1f spent), step %d", name, run.p["dit_batch"],
            budget.total / 60, spent / 60, step)
    t_log, losses = time.time(), []
    while not budget.finished(step):
        if budget.must_pause(45):
            break
        x0, cap = _batches(run, lat, ids, empty, gen)
        f = lr_factor(step, warmup, budget.frac(), run.p["max_steps"]) * rewarm(run, step)
        for grp, lr in zip(opt.param_groups, base_lrs):
            grp["lr"] = lr * f
        loss = flow_loss(run, dit, clip, x0.float(), cap, run.p["shift"], gen, train_clip)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        for e, m in zip(emas, ema_modules):
            e.update(m)
        step += 1
        losses.append(loss.detach())
        every = 5 if run.args.smoke else 250
        if step % every == 0:
            _sync(run)
            dt = time.time() - t_log
            run.log("%s: step %d loss %.4f lr %.2e %.1f steps/s (%.0f%% of budget)", name, step,
                    torch.stack(losses).mean().item(), opt.param_groups[0]["lr"], every / dt,
                    100 * budget.frac())
            t_log, losses = time.time(), []
    return step, budget.now_spent(), budget.finished(step)


def _folder_weights(folder, component):
    d = os.path.join(folder, component)
    name = [f for f in os.listdir(d) if f.endswith(".safetensors")][0]
    return {k: v.float() for k, v in st_io.load(os.path.join(d, name)).items()}


def stage_dit(run):
    tok = load_tokenizer(run)
    clip, dit = build_models(run, tok)
    if run.args.dit_from and not os.path.exists(run.path("dit.pt")):
        # Continue from an exported softmax folder (its F16 weights widened): a fresh schedule.
        clip = M.Clip(clip.cfg, _folder_weights(run.args.dit_from, "text_encoder")).to(run.device)
        dit = M.MMDiT(dit.cfg, _folder_weights(run.args.dit_from, "transformer")).to(run.device)
        run.log("dit: starting from %s's transformer and text encoder", run.args.dit_from)
    params = list(dit.parameters()) + list(clip.parameters())
    opt = _adamw(run, params, run.p["lr"])
    emas = [EMA(dit, 0.999), EMA(clip, 0.999)]
    ck = run.path("dit.pt")
    step, spent = 0, 0.0
    if os.path.exists(ck):
        s = _load(ck, run)
        dit.load_state_dict(s["dit"])
        clip.load_state_dict(s["clip"])
        _resume_opt(run, opt, s, "dit")
        emas[0].shadow, emas[1].shadow = s["ema_dit"], s["ema_clip"]
        emas[0].n = emas[1].n = s["step"]
        step, spent = s["step"], s["spent"]
    run.log("dit: MMDiT %d parameters, CLIP %d parameters",
            sum(p.numel() for p in dit.parameters()), sum(p.numel() for p in clip.parameters()))
    step, spent, finished = train_loop(run, "dit", dit, clip, params, [dit, clip],
                                       run.p["minutes_dit"], 300, spent, step, opt, emas, True,
                                       [run.p["lr"]])
    torch.save({"dit": dit.state_dict(), "clip": clip.state_dict(), "opt": opt.state_dict(),
                "ema_dit": emas[0].shadow, "ema_clip": emas[1].shadow, "step": step,
                "spent": spent}, ck)
    if finished:
        run.mark("dit")
        run.log("dit: done after %d steps", step)
    else:
        run.log("dit: paused at step %d (deadline)", step)


def load_softmax(run, tok):
    """(clip, dit) with the EMA weights of the softmax stage."""
    clip, dit = build_models(run, tok)
    s = _load(run.path("dit.pt"), run)
    clip.load_state_dict({k: v for k, v in s["ema_clip"].items()})
    dit.load_state_dict({k: v for k, v in s["ema_dit"].items()})
    return clip, dit


def stage_ttt(run):
    tok = load_tokenizer(run)
    clip, soft = load_softmax(run, tok)
    clip.requires_grad_(False)
    tcfg = ttt_config(run, soft.cfg)
    tensors = {k: v.detach().cpu() for k, v in soft.sd().items()}
    new = M.linearize_init(tcfg, 0)
    tensors.update(new)
    dit = M.MMDiT(tcfg, tensors).to(run.device)
    new_keys = {k.replace(".", "__") for k in new}
    fresh = [p for n, p in dit.named_parameters() if n in new_keys]
    inherited = [p for n, p in dit.named_parameters() if n not in new_keys]
    opt = _adamw(run, [{"params": inherited}, {"params": fresh}], 2e-4)
    emas = [EMA(dit, 0.998)]
    ck = run.path("ttt.pt")
    step, spent = 0, 0.0
    if os.path.exists(ck):
        s = _load(ck, run)
        dit.load_state_dict(s["dit"])
        _resume_opt(run, opt, s, "ttt")
        emas[0].shadow, emas[0].n = s["ema_dit"], s["step"]
        step, spent = s["step"], s["spent"]
    else:
        run.log("ttt: map %s, %d TTT modules: %s; %d new tensors (%d parameters)",
                run.p["ttt_map"], len(M.mmdit.Config(tcfg).ttt_modules()),
                ", ".join(M.mmdit.Config(tcfg).ttt_modules()), len(new),
                sum(v.numel() for v in new.values()))
    step, spent, finished = train_loop(run, "ttt", dit, clip, list(dit.parameters()), [dit],
                                       run.p["minutes_ttt"], 100, spent, step, opt, emas, False,
                                       [2e-4, 1e-3])
    torch.save({"dit": dit.state_dict(), "opt": opt.state_dict(), "ema_dit": emas[0].shadow,
                "step": step, "spent": spent, "config": tcfg}, ck)
    if finished:
        run.mark("ttt")
        run.log("ttt: done after %d steps", step)
    else:
        run.log("ttt: paused at step %d (deadline)", step)


def load_ttt(run):
    s = _load(run.path("ttt.pt"), run)
    tcfg = s["config"]
    tensors = {k.replace("__", "."): v for k, v in s["ema_dit"].items()}
    return M.MMDiT(tcfg, tensors).to(run.device)


# ---- stage: export ----

def _export(run, out, tok, clip, dit, vcfg, vae, share_from=None):
    M.export_pipeline(out, dit.cfg, dit.export(torch.float32), clip.cfg, clip.export(torch.float32),
                      vcfg, vae.export(torch.float32), tok, run.p["shift"], share_from,
                      t5_len=run.p["t5_len"])


def stage_export(run):
    tok = load_tokenizer(run)
    lat = latent_stats(run)
    _, _, vcfg = configs(run, tok, lat["scale"], lat["shift"])
    vae = load_vae(run, vcfg)
    clip, soft = load_softmax(run, tok)
    ttt = load_ttt(run)
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
def sample_images(run, clip, dit, vae, vcfg, tok, prompts, steps, guidance, seed):
    """The SD3 pipeline in PyTorch (our reference's scheduler), batched: RGB bytes per prompt."""
    sched = ref_sampler.FlowMatchEuler(1000, run.p["shift"])
    sigmas, timesteps = sched.set_timesteps(steps)
    out = []
    B = 120 if run.device.type == "cuda" else 4
    empty = torch.tensor([tok.encode("")], device=run.device)
    for i in range(0, len(prompts), B):
        ps = prompts[i:i + B]
        ids = torch.tensor([tok.encode(p) for p in ps], device=run.device)
        g = torch.Generator().manual_seed(seed + i)
        x = torch.randn(len(ps), 16, 16, 16, generator=g).to(run.device)
        with run.autocast():
            ctx, pooled = M.encode_prompt(clip, ids, run.p["t5_len"])
            nctx, npooled = M.encode_prompt(clip, empty.expand(len(ps), -1), run.p["t5_len"])
        ctx2, pooled2 = torch.cat([nctx, ctx]).float(), torch.cat([npooled, pooled]).float()
        for k in range(steps):
            t = timesteps[k].to(run.device).expand(2 * len(ps))
            with run.autocast():
                v = dit(torch.cat([x, x]), t, ctx2, pooled2).float()
            vu, vc = v.chunk(2)
            v = vu + guidance * (vc - vu)
            x = x + (sigmas[k + 1] - sigmas[k]).item() * v
        with run.autocast():
            y = vae.decode(x / vcfg["scaling_factor"] + vcfg["shift_factor"]).float()
        out += [ds.to_rgb_bytes(t) for t in y]
    return out


def stage_eval(run):
    tok = load_tokenizer(run)
    lat = latent_stats(run)
    _, _, vcfg = configs(run, tok, lat["scale"], lat["shift"])
    vae = load_vae(run, vcfg)
    clip, soft = load_softmax(run, tok)
    ttt = load_ttt(run)
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


# ---- main ----

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


# ---- pack / unpack: the state carried to a fresh machine ----

PACK_PART = 15 * 1000 * 1000  # the device tool brings back files of at most 16 MiB
DERIVED = ("pool.pt", "latents.pt", "linearize_check")  # rebuilt from the rest, deterministically


def pack(run, to):
    """Writes OUT's state without what can be rebuilt (the scene pool, the latents) and without
    optimizer moments (half a checkpoint's size) as state.tar.000, .001, ... of <= 15 MB in TO:
    small enough to bring back from one machine and carry to another, where --unpack continues
    the run (the derived files rebuilt, AdamW restarted with a short re-warm-up)."""
    import io
    import tarfile
    os.makedirs(to, exist_ok=True)
    for f in os.listdir(to):
        if f.startswith("state.tar."):
            os.remove(os.path.join(to, f))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in sorted(os.listdir(run.state)):
            if name in DERIVED:
                continue
            path = os.path.join(run.state, name)
            if name.endswith(".pt"):
                s = _load(path, "cpu")
                s.pop("opt", None)
                data = io.BytesIO()
                torch.save(s, data)
                info = tarfile.TarInfo("state/" + name)
                info.size = data.tell()
                data.seek(0)
                tar.addfile(info, data)
            else:
                tar.add(path, "state/" + name)
        tar.add(os.path.join(run.out, "train.log"), "train.log")
    data = buf.getvalue()
    parts = 0
    for i in range(0, len(data), PACK_PART):
        with open(os.path.join(to, "state.tar.%03d" % parts), "wb") as f:
            f.write(data[i:i + PACK_PART])
        parts += 1
    run.log("packed %s: %.1f MB in %d parts into %s", run.state, len(data) / 1e6, parts, to)


def unpack(run, frm):
    """Restores a pack() into OUT (refused when OUT already holds a state)."""
    import io
    import tarfile
    if run.progress:
        raise SystemExit("train.py: %s already holds a state; unpack into a fresh --out" %
                         run.state)
    parts = sorted(f for f in os.listdir(frm) if f.startswith("state.tar."))
    if not parts:
        raise SystemExit("train.py: no state.tar.* in %s" % frm)
    data = b"".join(open(os.path.join(frm, f), "rb").read() for f in parts)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for m in tar.getmembers():
            if m.name.startswith("/") or ".." in m.name.split("/") or not (m.isfile() or m.isdir()):
                raise SystemExit("train.py: unexpected member %s in the pack" % m.name)
        tar.extractall(run.out)
    with open(run.progress_path) as f:
        run.progress = json.load(f)
    run.log("unpacked %d parts from %s: stages done %s", len(parts), frm,
            ", ".join(k for k, v in run.progress.items() if v == "done") or "none")


def latent_stats(run):
    """{"shift", "scale"} of the latents stage (its small file; a state older than that file
    has them in latents.pt only)."""
    path = run.path("latents_stats.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    lat = _load(run.path("latents.pt"), "cpu")
    return {"shift": lat["shift"], "scale": lat["scale"]}


def rebuild_derived(run):
    """After an unpack: the scene pool and the latents again, exactly (the pool is a function of
    the seed; the latents of the VAE weights, with the first run's factors)."""
    if run.done("data") and not os.path.exists(run.path("pool.pt")) and \
            not all(run.done(st) for st in ("vae", "latents", "dit", "ttt")):
        run.log("rebuilding the scene pool")
        stage_data(run)
    if run.done("latents") and not os.path.exists(run.path("latents.pt")) and \
            not (run.done("dit") and run.done("ttt")):
        run.log("rebuilding the latents")
        stage_latents(run)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--out", required=True, help="work and output folder")
    ap.add_argument("--smoke", action="store_true", help="tiny widths, a few steps, CPU")
    ap.add_argument("--init-only", action="store_true", help="write untrained folders and stop")
    ap.add_argument("--stages", default=",".join(STAGES),
                    help="comma-separated stages to run (default: all, skipping finished ones)")
    ap.add_argument("--deadline", type=float, default=9.5,
                    help="minutes this run may take before it saves and stops (0: no limit)")
    ap.add_argument("--pack", metavar="DIR",
                    help="after the run, write its state (without what can be rebuilt) as "
                         "DIR/state.tar.* to continue on another machine")
    ap.add_argument("--unpack", metavar="DIR",
                    help="before the run, restore a state written by --pack into a fresh --out")
    ap.add_argument("--vae-from", metavar="DIR",
                    help="take the VAE (and its latent factors) of an exported folder made with "
                         "the same sizes and seed instead of training one")
    ap.add_argument("--dit-from", metavar="DIR",
                    help="start the softmax stage from an exported softmax folder of the same "
                         "sizes (its transformer and text encoder) instead of from scratch")
    ap.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tttd", help="the tttd binary, to cross-check linearize")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--amp", type=int, choices=[0, 1], default=None,
                    help="bfloat16 autocast (default: on for CUDA, off on the CPU; CPU autocast "
                         "of torch 1.13 cannot run the VAE)")
    for k, v in PRESETS["full"].items():
        if isinstance(v, list):
            ap.add_argument("--" + k.replace("_", "-"), dest=k,
                            type=lambda s: [int(x) for x in s.split(",")])
        elif isinstance(v, str):
            ap.add_argument("--" + k.replace("_", "-"), dest=k)
        else:
            ap.add_argument("--" + k.replace("_", "-"), dest=k, type=type(v))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" or (args.device is None and torch.cuda.is_available()):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    run = Run(args)
    run.log("train.py %s on %s (torch %s), preset %s", " ".join(sys.argv[1:]), run.device,
            torch.__version__, "smoke" if args.smoke else "full")
    run.log("sizes: %s", json.dumps(run.p, sort_keys=True))
    if args.init_only:
        init_only(run)
        return 0
    if args.unpack:
        unpack(run, args.unpack)
    rc = run_stages(run, args)
    if args.pack and not all(run.done(st) for st in STAGES):
        pack(run, args.pack)
    return rc


def run_stages(run, args):
    rebuild_derived(run)
    want = args.stages.split(",")
    for st in STAGES:
        if st not in want or run.done(st):
            continue
        # Seconds a stage needs to start: the resumable ones pause on their own.
        if run.time_left() < {"latents": 150, "export": 45, "eval": 90}.get(st, 60):
            run.log("stopping before %s: the deadline is near; run the same command again", st)
            return 0
        t = time.time()
        globals()["stage_" + st](run)
        run.log("stage %s: %.1f s", st, time.time() - t)
        if not run.done(st):
            run.log("paused in %s; run the same command again to continue", st)
            return 0
    if all(run.done(s) for s in STAGES):
        run.log("DONE: %s/default (TTT) and %s/softmax; eval in %s/eval.json", run.out, run.out,
                run.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
