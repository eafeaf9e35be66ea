"""train_common.py - what every stage of train.py shares: the size presets, the run (paths,
options, deadline, device, progress), configs, and the training helpers (EMA, learning-rate
schedule, time budgets, AdamW, checkpoint loading)."""
import json
import math
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bpe  # noqa: E402
import dataset as ds  # noqa: E402
import models as M  # noqa: E402
import sampler as ref_sampler  # noqa: E402  (tools/reference, on the path through models)

# Sizes. "full": the shipped model (sized for 1.5 s per 128 x 128 picture on 2 CPU cores with
# tttd, see README.md); "smoke": every stage in a few minutes on a CPU.
PRESETS = {
    "full": dict(clip_hidden=128, clip_layers=4, clip_heads=4, clip_ffn=512, clip_proj=64,
                 clip_len=24, t5_len=0, dit_layers=6, dit_heads=5, head_dim=32,
                 dual=[0, 1, 2], ttt_map=",".join(["transformer_blocks.0.attn2",
                                                   "transformer_blocks.1.attn2",
                                                   "transformer_blocks.2.attn2",
                                                   "transformer_blocks.3.attn",
                                                   "transformer_blocks.4.attn",
                                                   "transformer_blocks.5.attn"]),
                 vae_channels=[16, 32, 64, 64], vae_lpb=1, vae_groups=8, shift=3.0,
                 pool=400000, vae_batch=64, dit_batch=4096, lr=1.2e-3, minutes_vae=2.0,
                 minutes_dit=12.5, minutes_ttt=2.5, eval_prompts=240, eval_steps=28,
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
        scratch = args.init_only or getattr(args, "probe", None)  # writes no state
        if os.path.exists(sizes) and not scratch:
            with open(sizes) as f:
                stored = json.load(f)
            clash = [k for k, v in self.p.items() if stored["sizes"].get(k) != v]
            if stored["preset"] != preset or clash:
                raise SystemExit("train.py: %s was started with preset %s and other sizes (%s); "
                                 "resume with the same options or use another --out" %
                                 (self.state, stored["preset"], ", ".join(clash)))
        elif not scratch:
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

    def compile_mode(self):
        """The torch.compile mode in effect: --compile's on CUDA with a torch that has
        torch.compile, else "none"."""
        if self.device.type != "cuda" or not hasattr(torch, "compile"):
            return "none"
        return self.args.compile

    def compiled(self, module, mode):
        """module under torch.compile in mode (the training step is launch-bound at these
        widths: fusion cuts the launches), or module itself for "none". Parameters stay the
        module's: EMA, checkpoints and export use the original. Dynamo falls back to eager code
        where it cannot compile."""
        if mode == "none":
            return module
        import torch._dynamo as dynamo
        dynamo.config.suppress_errors = True
        return torch.compile(module, mode=None if mode == "default" else mode)

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


def latent_stats(run):
    """{"shift", "scale"} of the latents stage (its small file; a state older than that file
    has them in latents.pt only)."""
    path = run.path("latents_stats.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    lat = _load(run.path("latents.pt"), "cpu")
    return {"shift": lat["shift"], "scale": lat["scale"]}


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
