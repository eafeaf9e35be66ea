"""eval_tttd.py - prompt adherence of a model folder as tttd itself draws it (the C engine).

    python3 tools/tiny/eval_tttd.py --tttd build/tttd --model models/default --out DIR \
        [--prompts 240] [--every 1] [--seeds 1] [--steps 28] [--guidance 7] [--min-overall X]

Generates the held-out prompts of tools/tiny/dataset.py (`heldout_prompts(240)`, every
`--every`-th of them, the first `--prompts`) with `tttd generate` (prompt i of the 240, image k:
seed 1000 * k + i, so a subset draws the same pictures as the whole run), scores each picture with tools/tiny/evaluate.py and writes DIR/report.json (the
evaluator's summary, the options, the timings) and the pictures DIR/NNNNN-K.png. Standard library
only: CI runs it. `--min-overall X` exits 1 when the overall accuracy is below X.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dataset as ds  # noqa: E402
import evaluate as ev  # noqa: E402
import pngio  # noqa: E402

_TOTAL = re.compile(r"total ([0-9.]+) ms")


def generate(args, prompt, seed, path):
    """One picture through `tttd generate`; returns its total time in ms (tttd's own figure)."""
    cmd = [args.tttd, "generate", "--model", args.model, "--prompt", prompt, "--seed", str(seed),
           "--steps", str(args.steps), "--guidance", str(args.guidance), "-o", path]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    if p.returncode != 0:
        raise SystemExit("eval_tttd: %s failed (%d): %s" % (" ".join(cmd), p.returncode,
                                                            p.stderr.strip()[-500:]))
    m = _TOTAL.search(p.stdout)
    return float(m.group(1)) if m else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tttd", default="build/tttd", help="the tttd binary")
    ap.add_argument("--model", required=True, help="the pipeline folder")
    ap.add_argument("--out", required=True, help="folder for the pictures and report.json")
    ap.add_argument("--prompts", type=int, default=240, help="how many held-out prompts")
    ap.add_argument("--split", choices=["heldout", "train"], default="heldout",
                    help="held-out prompts (the measure), or 240 training-split prompts (seeded "
                         "4242) to tell under-fitting from failing to generalise")
    ap.add_argument("--every", type=int, default=1,
                    help="take every N-th of the 240 held-out prompts (a spread of kinds)")
    ap.add_argument("--seeds", type=int, default=1, help="pictures per prompt")
    ap.add_argument("--steps", type=int, default=28)
    ap.add_argument("--guidance", type=float, default=7.0)
    ap.add_argument("--min-overall", type=float, default=None,
                    help="exit with status 1 when the overall accuracy is below this")
    ap.add_argument("--sheet", type=int, default=0, metavar="N",
                    help="also write DIR/sheet.png: the first N pictures, 8 a row")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every wrong picture")
    args = ap.parse_args(argv)
    if args.prompts < 1 or args.every < 1 or args.seeds < 1:
        ap.error("--prompts, --every and --seeds must be >= 1")

    if args.split == "heldout":
        everything = ds.heldout_prompts(240)
    else:
        rng = ds.Rng(4242)
        everything = [ds.sample(rng, "train") for _ in range(240)]
    chosen = list(range(len(everything)))[::args.every][:args.prompts]
    os.makedirs(args.out, exist_ok=True)
    results, times, sheet = [], [], []
    t0 = time.time()
    for i in chosen:
        prompt = everything[i][1]
        for k in range(args.seeds):
            path = os.path.join(args.out, "%05d-%d.png" % (i, k))
            ms = generate(args, prompt, 1000 * k + i, path)
            if ms is not None:
                times.append(ms)
            w, h, rgb = pngio.read_png(path)
            if len(sheet) < args.sheet:
                sheet.append(rgb)
            r = ev.evaluate_image(prompt, w, h, rgb)
            r["image"] = os.path.basename(path)
            results.append(r)
            if args.verbose and not r["correct"]:
                print("WRONG %s %r: %s" % (r["image"], prompt, json.dumps(r["scores"])))
    if sheet:
        pngio.write_sheet(os.path.join(args.out, "sheet.png"), sheet, w, min(8, len(sheet)))
    rep = ev.summarize(results)
    times.sort()
    rep["options"] = {"model": args.model, "split": args.split, "prompts": len(chosen),
                      "every": args.every,
                      "seeds": args.seeds, "steps": args.steps, "guidance": args.guidance,
                      "seed_rule": "1000 * k + i"}
    rep["timing_ms"] = {"median_total": times[len(times) // 2] if times else None,
                        "wall_s": round(time.time() - t0, 1)}
    rep["pictures"] = [{"image": r["image"], "prompt": r["prompt"], "scores": r["scores"],
                        "correct": r["correct"]} for r in results]
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(rep, f, indent=1, sort_keys=True)
    cats = rep["categories"]
    print("%s: %d pictures (%d prompts x %d seeds, %d steps, guidance %g): overall %.3f strict "
          "%.3f | %s | median %.0f ms a picture" % (
              args.model, len(results), len(chosen), args.seeds, args.steps, args.guidance,
              rep["overall"], rep["strict"],
              " ".join("%s %.3f" % (c, v["accuracy"]) for c, v in sorted(cats.items())
                       if v["accuracy"] is not None),
              rep["timing_ms"]["median_total"] or -1))
    if args.min_overall is not None and rep["overall"] < args.min_overall:
        print("eval_tttd: overall %.3f is below --min-overall %.3f" %
              (rep["overall"], args.min_overall))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
