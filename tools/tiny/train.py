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
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from train_common import PRESETS, STAGES, Run, _load  # noqa: E402
import train_export  # noqa: E402
import train_stages  # noqa: E402
from train_export import init_only  # noqa: E402
from train_stages import stage_data, stage_latents  # noqa: E402


# ---- pack / unpack: the state carried to a fresh machine ----

PACK_PART = 15 * 1000 * 1000  # the device tool brings back files of at most 16 MiB
DERIVED = ("pool.pt", "latents.pt", "linearize_check")  # rebuilt from the rest, deterministically


def _cast_floats(obj, dtype):
    """obj with every float32/float16 tensor inside (dicts, lists) cast to dtype."""
    if torch.is_tensor(obj):
        return obj.to(dtype) if obj.dtype in (torch.float32, torch.float16) else obj
    if isinstance(obj, dict):
        return {k: _cast_floats(v, dtype) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cast_floats(v, dtype) for v in obj)
    return obj


def pack(run, to):
    """Writes OUT's state without what can be rebuilt (the scene pool, the latents) and without
    optimizer moments (half a checkpoint's size), its float32 tensors (weights, EMA) stored as
    float16, as state.tar.000, .001, ... of <= 15 MB in TO: small enough to bring back from one
    machine and carry to another, where --unpack continues the run (the derived files rebuilt,
    tensors widened back to float32, AdamW restarted with a short re-warm-up)."""
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
                s = _cast_floats(s, torch.float16)
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
    for name in os.listdir(run.state):
        if name.endswith(".pt"):
            path = os.path.join(run.state, name)
            torch.save(_cast_floats(_load(path, "cpu"), torch.float32), path)
    with open(run.progress_path) as f:
        run.progress = json.load(f)
    run.log("unpacked %d parts from %s: stages done %s", len(parts), frm,
            ", ".join(k for k, v in run.progress.items() if v == "done") or "none")


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


# ---- main ----

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
    ap.add_argument("--probe", metavar="B1,B2,...",
                    help="time the dit training step at these batch sizes (this run's sizes, "
                         "random data) and stop: no state is written")
    ap.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--compile", default="default",
                    choices=["none", "default", "reduce-overhead", "max-autotune-no-cudagraphs"],
                    help="torch.compile mode of the transformer and text encoder in the dit "
                         "training step and --probe (CUDA only; the short ttt stage runs eager; "
                         "default: default)")
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
    if args.probe:
        train_stages.probe(run, [int(b) for b in args.probe.split(",")])
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
        stage = getattr(train_stages, "stage_" + st, None) or getattr(train_export, "stage_" + st)
        stage(run)
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
