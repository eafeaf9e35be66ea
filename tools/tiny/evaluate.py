"""evaluate.py - GenEval-style prompt adherence of generated pictures of the tiny dataset.

Deterministic image analysis, no learned model, pure Python 3 standard library (numpy is not
needed): runs in CI on the C engine's output.

    python3 tools/tiny/evaluate.py --prompts FILE --images DIR [--out report.json] [-v]
    python3 tools/tiny/evaluate.py --manifest FILE.jsonl [--root DIR] [--out report.json]

--prompts: one prompt a line; --images: a folder whose *.png files, in name order, are the
pictures of those prompts (K consecutive files per prompt when the folder holds K times as many
files). --manifest: JSON lines with "image" (a path, relative to --root or to the manifest's
folder) and "caption" (as tools/tiny/dataset.py dump writes scenes.jsonl).

Per picture (128 x 128 RGB PNG as tttd writes it; any size works):
  1. the prompt is parsed back into objects (colour, shape, count), an optional relation between
     the first and the second object, and an optional background colour (parse_prompt);
  2. the background is the median colour of the 2-pixel frame; pixels further than BG_DIST from
     it (RGB distance) are foreground; 4-connected foreground components of at least MIN_AREA
     pixels (and at least MIN_REL_AREA of the largest) are the objects;
  3. each object's colour is the palette colour nearest to its per-channel median; its shape
     comes from geometry: enclosed holes (ring), solidity = area / convex hull area, fill =
     area / bounding-box area, and the number of corners of the polygon the hull simplifies to;
  4. scores, 1 or 0 per category where it applies:
       colour      every prompted (colour, shape): an object of that shape has that colour (or,
                   when no object has the shape, some object has the colour);
       shape       every prompted shape is among the objects;
       count       the number of objects equals the prompted number (1 for a single object,
                   2 for a relation, n for "n stars");
       position    relation prompts: the objects best matching the two phrases stand in the
                   prompted relation (dataset.relation_holds, margin POS_MARGIN pixels);
       background  prompts that name a background: the background colour is the named one.
Report: accuracy per category (over the pictures where it applies), "overall" = the mean of the
five category accuracies (GenEval averages its tasks the same way), "strict" = the share of
pictures with every applicable category right, the same per prompt kind, and every picture's
detections and scores.
"""
import argparse
import glob
import json
import math
import os
import re
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dataset as ds  # noqa: E402  (pure Python: the vocabulary, palette and relation rule)
import pngio  # noqa: E402

BG_DIST = 48.0      # RGB distance from the background colour above which a pixel is foreground
MIN_AREA = 40       # pixels; smaller components are noise
MIN_REL_AREA = 0.12  # of the largest component's area
POS_MARGIN = 3.0    # pixels, for position
CATEGORIES = ["colour", "shape", "count", "position", "background"]

# ---- prompts ----

_NUMBERS = [("a single", 1), ("a pair of", 2), ("pair of", 2), ("single", 1), ("one", 1),
            ("two", 2), ("three", 3), ("four", 4), ("an", 1), ("a", 1), ("1", 1), ("2", 2),
            ("3", 3), ("4", 4)]
_SHAPES = sorted(((w, s) for s, forms in ds.SHAPE_WORDS.items() for pair in forms for w in pair),
                 key=lambda p: -len(p[0]))
_COLOURS = {w: c for c, ws in ds.COLOUR_WORDS.items() for w in ws}
_RELATIONS = sorted(((w, r) for r, ws in ds.RELATION_WORDS.items() for w in ws),
                    key=lambda p: -len(p[0]))
_PREFIXES = ["a picture of", "an image of", "a drawing of", "a photo of"]


class PromptError(ValueError):
    pass


def _noun_phrase(text):
    """'two yellow stars' -> (colour, shape, n)."""
    words = text.strip()
    n = 1
    for w, v in _NUMBERS:
        if words == w or words.startswith(w + " "):
            n, words = v, words[len(w):].strip()
            break
    colour = None
    for w, c in _COLOURS.items():
        if words.startswith(w + " "):
            colour, words = c, words[len(w):].strip()
            break
    shape = None
    for w, s in _SHAPES:
        if words == w:
            shape = s
            break
    if colour is None or shape is None:
        raise PromptError("cannot read %r as [number] colour shape" % text)
    return colour, shape, n


def parse_prompt(prompt):
    """{'objects': [{'colour', 'shape', 'count'}], 'relation': None or one of
    dataset.RELATIONS (objects[0] <relation> objects[1]), 'background': colour or None}."""
    t = re.sub(r"[^a-z0-9 ]+", " ", prompt.lower())
    t = " ".join(t.split())
    for p in _PREFIXES:
        if t.startswith(p + " "):
            t = t[len(p) + 1:]
            break
    background = None
    m = re.search(r"(?:^| )(?:on|against|with|over) (?:an? )?([a-z]+) (?:background|backdrop)$", t)
    if not m:
        m = re.search(r"(?:^| )on ([a-z]+)$", t)
    if m and m.group(1) in _COLOURS:
        background = _COLOURS[m.group(1)]
        t = t[:m.start()].strip()
    relation = None
    for w, r in _RELATIONS:
        k = t.find(" " + w + " ")
        if k > 0:
            relation = r
            left, right = t[:k], t[k + len(w) + 2:]
            break
    if relation is None:
        c, s, n = _noun_phrase(t)
        objects = [{"colour": c, "shape": s, "count": n}]
    else:
        objects = []
        for part in (left, right):
            c, s, n = _noun_phrase(part)
            objects.append({"colour": c, "shape": s, "count": n})
    return {"objects": objects, "relation": relation, "background": background}


# ---- image analysis ----

def _nearest(rgb, names):
    best, bd = None, None
    for name in names:
        p = ds.COLOURS[name]
        d = (rgb[0] - p[0]) ** 2 + (rgb[1] - p[1]) ** 2 + (rgb[2] - p[2]) ** 2
        if bd is None or d < bd:
            best, bd = name, d
    return best


def _median(values):
    v = sorted(values)
    return v[len(v) // 2]


def _hull(points):
    """Convex hull (Andrew's monotone chain) of integer points, counter-clockwise."""
    pts = sorted(set(points))
    if len(pts) <= 2:
        return pts

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def _area(poly):
    a = 0.0
    for i in range(len(poly)):
        x0, y0 = poly[i]
        x1, y1 = poly[(i + 1) % len(poly)]
        a += x0 * y1 - x1 * y0
    return abs(a) / 2.0


def _corners(hull, tol):
    """Corners of the hull polygon after dropping vertices whose removal moves the outline by
    less than tol (Visvalingam-style: repeatedly remove the flattest vertex)."""
    poly = list(hull)
    while len(poly) > 3:
        best, bi = None, -1
        for i in range(len(poly)):
            a, b, c = poly[i - 1], poly[i], poly[(i + 1) % len(poly)]
            base = math.hypot(c[0] - a[0], c[1] - a[1]) or 1.0
            h = abs((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])) / base
            if best is None or h < best:
                best, bi = h, i
        if best > tol:
            break
        poly.pop(bi)
    return len(poly)


def _symmetry(mask, W, ox, oy, xs, ys, cx, cy, degrees):
    """The share of the component's pixels that land on the component again when turned by
    degrees about its centroid (mask: the component in a W-wide box whose origin is (ox, oy))."""
    a = math.radians(degrees)
    ca, sa = math.cos(a), math.sin(a)
    H = len(mask) // W
    hits = 0
    for x, y in zip(xs, ys):
        px, py = x + 0.5 - cx, y + 0.5 - cy
        qx = int(math.floor(cx + ca * px - sa * py)) - ox
        qy = int(math.floor(cy + sa * px + ca * py)) - oy
        if 0 <= qx < W and 0 <= qy < H and mask[qy * W + qx]:
            hits += 1
    return hits / float(len(xs))


def classify_shape(f):
    """The shape name from the features of one component (see _describe). The turn
    symmetries carry most of it: a triangle maps onto itself turned by 120 degrees, a star by
    72, a square and a cross by 90, a circle and a ring by all three; fill and solidity split
    the solid shapes (circle, square) from the concave ones (star, cross)."""
    if f["hole_frac"] > 0.04:
        return "ring"
    s72, s90, s120 = f["sym72"], f["sym90"], f["sym120"]
    if s120 > max(s72, s90) + 0.05:
        return "triangle"
    if f["fill"] + f["solidity"] < 1.6:
        return "star" if s72 > s90 else "cross"
    if f["fill"] >= 0.83 or s72 - s90 <= -0.045:
        return "square"
    return "circle"


def analyze(width, height, rgb):
    """{'background': colour name, 'background_rgb', 'objects': [{colour, shape, cx, cy, area,
    features}]} of an RGB image (bytes, row-major)."""
    n = width * height
    R, G, B = rgb[0::3], rgb[1::3], rgb[2::3]
    frame = [i for i in range(n)
             if (i % width) < 2 or (i % width) >= width - 2 or i // width < 2 or
             i // width >= height - 2]
    bg = (_median([R[i] for i in frame]), _median([G[i] for i in frame]),
          _median([B[i] for i in frame]))
    t2 = BG_DIST * BG_DIST
    fg = bytearray(n)
    for i in range(n):
        dr, dg, db = R[i] - bg[0], G[i] - bg[1], B[i] - bg[2]
        if dr * dr + dg * dg + db * db > t2:
            fg[i] = 1
    # 4-connected components (iterative flood fill).
    label = [0] * n
    comps = []
    for start in range(n):
        if not fg[start] or label[start]:
            continue
        cid = len(comps) + 1
        label[start] = cid
        stack, pix = [start], []
        while stack:
            i = stack.pop()
            pix.append(i)
            x, y = i % width, i // width
            for j, ok in ((i - 1, x > 0), (i + 1, x < width - 1), (i - width, y > 0),
                          (i + width, y < height - 1)):
                if ok and fg[j] and not label[j]:
                    label[j] = cid
                    stack.append(j)
        comps.append(pix)
    largest = max((len(p) for p in comps), default=0)
    objects = []
    for pix in comps:
        if len(pix) < MIN_AREA or len(pix) < MIN_REL_AREA * largest:
            continue
        objects.append(_describe(width, height, R, G, B, bg, pix))
    objects.sort(key=lambda o: (o["cy"], o["cx"]))
    return {"background": _nearest(bg, ds.BACKGROUND_COLOURS), "background_rgb": list(bg),
            "objects": objects}


def _describe(width, height, R, G, B, bg, pix):
    xs = [i % width for i in pix]
    ys = [i // width for i in pix]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    bw, bh = x1 - x0 + 1, y1 - y0 + 1
    area = len(pix)
    # The colour of the core: the half of the pixels furthest from the background (the rim is a
    # blend of the two colours).
    core = sorted(pix, key=lambda i: -((R[i] - bg[0]) ** 2 + (G[i] - bg[1]) ** 2 +
                                       (B[i] - bg[2]) ** 2))[:max(1, area // 2)]
    med = (_median([R[i] for i in core]), _median([G[i] for i in core]),
           _median([B[i] for i in core]))
    # Holes: pixels of the bounding box (grown by 1) not in the component and not reachable
    # from the box's border without crossing it.
    W, H = bw + 2, bh + 2
    inside = bytearray(W * H)
    for x, y in zip(xs, ys):
        inside[(y - y0 + 1) * W + (x - x0 + 1)] = 1
    seen = bytearray(W * H)
    stack = [0]
    seen[0] = 1
    reached = 0
    while stack:
        k = stack.pop()
        reached += 1
        x, y = k % W, k // W
        for j, ok in ((k - 1, x > 0), (k + 1, x < W - 1), (k - W, y > 0), (k + W, y < H - 1)):
            if ok and not seen[j] and not inside[j]:
                seen[j] = 1
                stack.append(j)
    holes = W * H - area - reached
    # Convex hull of the pixels' corners.
    edge = set()
    for x, y in zip(xs, ys):
        edge.update(((x, y), (x + 1, y), (x, y + 1), (x + 1, y + 1)))
    hull = _hull(list(edge))
    hull_area = _area(hull) or 1.0
    cx, cy = sum(xs) / float(area) + 0.5, sum(ys) / float(area) + 0.5
    f = {"area": area, "bbox": [x0, y0, bw, bh], "fill": area / float(bw * bh),
         "sym72": _symmetry(inside, W, x0 - 1, y0 - 1, xs, ys, cx, cy, 72.0),
         "sym90": _symmetry(inside, W, x0 - 1, y0 - 1, xs, ys, cx, cy, 90.0),
         "sym120": _symmetry(inside, W, x0 - 1, y0 - 1, xs, ys, cx, cy, 120.0),
         "solidity": min(1.0, area / hull_area), "hole_frac": holes / float(area + holes),
         "corners": _corners(hull, 0.08 * math.sqrt(bw * bh)), "aspect": bw / float(bh)}
    return {"colour": _nearest(med, ds.OBJECT_COLOURS), "shape": classify_shape(f),
            "cx": cx, "cy": cy,
            "area": area, "rgb": list(med),
            "features": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in f.items()}}


# ---- scoring ----

def _best_match(objs, colour, shape, taken):
    """The index of the object best matching (colour, shape): both, else the shape, else the
    colour; larger first. None when nothing matches."""
    for want in ((colour, shape), (None, shape), (colour, None)):
        cands = [i for i, o in enumerate(objs) if i not in taken and
                 (want[0] is None or o["colour"] == want[0]) and
                 (want[1] is None or o["shape"] == want[1])]
        if cands:
            return max(cands, key=lambda i: objs[i]["area"])
    return None


def score(spec, det):
    """{category: 1, 0 or None (not applicable)} for a parsed prompt and an analysis."""
    objs = det["objects"]
    out = dict.fromkeys(CATEGORIES)
    shapes = {o["shape"] for o in objs}
    colour_ok = True
    for e in spec["objects"]:
        if e["shape"] in shapes:
            ok = any(o["shape"] == e["shape"] and o["colour"] == e["colour"] for o in objs)
        else:
            ok = any(o["colour"] == e["colour"] for o in objs)
        colour_ok = colour_ok and ok
    out["colour"] = int(colour_ok)
    out["shape"] = int(all(e["shape"] in shapes for e in spec["objects"]))
    out["count"] = int(len(objs) == sum(e["count"] for e in spec["objects"]))
    if spec["relation"]:
        a = _best_match(objs, spec["objects"][0]["colour"], spec["objects"][0]["shape"], set())
        b = None if a is None else _best_match(objs, spec["objects"][1]["colour"],
                                               spec["objects"][1]["shape"], {a})
        out["position"] = int(a is not None and b is not None and ds.relation_holds(
            spec["relation"], (objs[a]["cx"], objs[a]["cy"]), (objs[b]["cx"], objs[b]["cy"]),
            POS_MARGIN))
    if spec["background"]:
        out["background"] = int(det["background"] == spec["background"])
    return out


def evaluate_image(prompt, width, height, rgb):
    spec = parse_prompt(prompt)
    det = analyze(width, height, rgb)
    s = score(spec, det)
    applicable = [v for v in s.values() if v is not None]
    return {"prompt": prompt, "spec": spec, "detected": det, "scores": s,
            "correct": int(all(applicable))}


def summarize(results):
    """The report's numbers over a list of evaluate_image results."""
    def block(rs):
        cats = {}
        for c in CATEGORIES:
            vals = [r["scores"][c] for r in rs if r["scores"][c] is not None]
            cats[c] = {"accuracy": (sum(vals) / float(len(vals))) if vals else None,
                       "n": len(vals)}
        accs = [v["accuracy"] for v in cats.values() if v["accuracy"] is not None]
        return {"images": len(rs), "categories": cats,
                "overall": sum(accs) / len(accs) if accs else None,
                "strict": sum(r["correct"] for r in rs) / float(len(rs)) if rs else None}

    def kind(r):
        if r["spec"]["relation"]:
            return "relation"
        return "count%d" % r["spec"]["objects"][0]["count"]

    kinds = sorted({kind(r) for r in results})
    out = block(results)
    out["by_kind"] = {k: block([r for r in results if kind(r) == k]) for k in kinds}
    return out


def _pairs_from_args(args):
    if args.manifest:
        root = args.root or os.path.dirname(os.path.abspath(args.manifest))
        pairs = []
        with open(args.manifest) as f:
            for line in f:
                if line.strip():
                    d = json.loads(line)
                    pairs.append((d["caption"], os.path.join(root, d["image"])))
        return pairs
    with open(args.prompts) as f:
        prompts = [line.rstrip("\n") for line in f if line.strip()]
    images = sorted(glob.glob(os.path.join(args.images, "*.png")))
    if not prompts or len(images) % len(prompts) or not images:
        raise SystemExit("evaluate: %d images in %s for %d prompts (need K per prompt)" %
                         (len(images), args.images, len(prompts)))
    k = len(images) // len(prompts)
    return [(prompts[i // k], p) for i, p in enumerate(images)]


def main(argv=None):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` ends quietly
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", help="prompts, one a line")
    ap.add_argument("--images", help="folder of *.png, in name order (K per prompt)")
    ap.add_argument("--manifest", help="JSON lines with image and caption")
    ap.add_argument("--root", help="folder the manifest's image paths are relative to")
    ap.add_argument("--out", help="write the JSON report here")
    ap.add_argument("--min-overall", type=float, default=None,
                    help="exit with status 1 when overall accuracy is below this")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every wrong picture")
    args = ap.parse_args(argv)
    if not args.manifest and not (args.prompts and args.images):
        ap.error("give --prompts and --images, or --manifest")
    results = []
    for prompt, path in _pairs_from_args(args):
        w, h, rgb = pngio.read_png(path)
        r = evaluate_image(prompt, w, h, rgb)
        r["image"] = path
        results.append(r)
        if args.verbose and not r["correct"]:
            print("WRONG %s: %r -> bg %s, %s; %s" % (
                os.path.basename(path), prompt, r["detected"]["background"],
                ["%s %s (%.0f,%.0f)" % (o["colour"], o["shape"], o["cx"], o["cy"])
                 for o in r["detected"]["objects"]],
                {k: v for k, v in r["scores"].items() if v is not None}))
    rep = summarize(results)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(rep, results=results), f, indent=1, sort_keys=True)
    print("images %d  overall %.3f  strict %.3f" % (rep["images"], rep["overall"], rep["strict"]))
    for c in CATEGORIES:
        v = rep["categories"][c]
        if v["n"]:
            print("  %-10s %.3f  (%d)" % (c, v["accuracy"], v["n"]))
    for k, v in rep["by_kind"].items():
        print("  kind %-9s overall %.3f strict %.3f (%d)" % (k, v["overall"], v["strict"],
                                                            v["images"]))
    if args.min_overall is not None and rep["overall"] < args.min_overall:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
