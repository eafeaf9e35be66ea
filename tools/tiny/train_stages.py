"""train_stages.py - the training stages of train.py: data, preflight, vae, latents, dit, ttt
(each resumable from OUT/state/; see train.py's docstring)."""
import json
import math
import multiprocessing
import os
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
import st_io  # noqa: E402
from train_common import (Budget, EMA, _adamw, _generator, _load, _resume_opt, _sync, configs,
                          load_tokenizer, lr_factor, rewarm, sample_images, ttt_config)  # noqa: E402


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


def probe(run, batches, steps=20):
    """--probe: the softmax MMDiT + CLIP training step (loss, backward, clip, AdamW, EMA) at this
    run's sizes on random latents and captions, timed at each batch size after 3 warm-up steps:
    steps/s and samples/s, to choose --dit-batch before a long run (the step is launch-bound on
    the GPU at small widths, where a larger batch costs little more time)."""
    rng = ds.Rng(1)
    tok = bpe.Tokenizer(bpe.train([ds.sample(rng)[1] for _ in range(500)] +
                                  ds.vocabulary_corpus()), run.p["clip_len"])
    clip_cfg, tcfg, _ = configs(run, tok)
    g = torch.Generator().manual_seed(0)
    clip = M.Clip(clip_cfg, M.init_clip(clip_cfg, g)).to(run.device)
    dit = M.MMDiT(tcfg, M.init_transformer(tcfg, g)).to(run.device)
    params = list(dit.parameters()) + list(clip.parameters())
    opt = _adamw(run, params, 1e-4)
    emas = [EMA(dit, 0.999), EMA(clip, 0.999)]
    caps = torch.tensor([tok.encode(ds.sample(rng)[1]) for _ in range(64)], device=run.device)
    gen = _generator(run, 0)
    side = ds.SIZE // 8
    run.log("probe: MMDiT %d parameters, CLIP %d, %d context tokens",
            sum(p.numel() for p in dit.parameters()), sum(p.numel() for p in clip.parameters()),
            run.p["clip_len"] + run.p["t5_len"])
    mode = run.compile_mode()
    fdit, fclip = run.compiled(dit, mode), run.compiled(clip, mode)
    for B in batches:
        x0 = torch.randn(B, 16, side, side, generator=gen, device=run.device)
        ids = caps[torch.randint(caps.shape[0], (B,), generator=gen, device=run.device)]
        if run.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.time()
        for i in range(steps + 3):
            if i == 3:
                _sync(run)
                t = time.time()
                warm = t - t0
            loss = flow_loss(run, fdit, fclip, x0, ids, run.p["shift"], gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            for e, m in zip(emas, (dit, clip)):
                e.update(m)
        _sync(run)
        dt = (time.time() - t) / steps
        run.log("probe: batch %5d: %6.1f steps/s, %8.0f samples/s (compile %s; first 3 steps "
                "%.1f s), %.1f GB peak", B, 1.0 / dt, B / dt, mode, warm,
                torch.cuda.max_memory_allocated() / 1e9 if run.device.type == "cuda" else 0.0)


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
    # The short ttt stage runs eager: compiling takes about 2 minutes of its 2.5.
    mode = run.compile_mode() if name == "dit" else "none"
    run.log("%s: batch %d, %.1f min budget (%.1f spent), step %d, compile %s", name,
            run.p["dit_batch"], budget.total / 60, spent / 60, step, mode)
    fdit, fclip = run.compiled(dit, mode), run.compiled(clip, mode)
    t_log, losses = time.time(), []
    while not budget.finished(step):
        if budget.must_pause(45):
            break
        x0, cap = _batches(run, lat, ids, empty, gen)
        f = lr_factor(step, warmup, budget.frac(), run.p["max_steps"]) * rewarm(run, step)
        for grp, lr in zip(opt.param_groups, base_lrs):
            grp["lr"] = lr * f
        loss = flow_loss(run, fdit, fclip, x0.float(), cap, run.p["shift"], gen, train_clip)
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
    # Inherited tensors at 0.4 x the softmax stage's rate, the fresh TTT ones at 2 x.
    lrs = [0.4 * run.p["lr"], 2.0 * run.p["lr"]]
    opt = _adamw(run, [{"params": inherited}, {"params": fresh}], lrs[0])
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
                                       lrs)
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
