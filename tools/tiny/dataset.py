"""dataset.py - the procedural captioned-image dataset of tttd's embedded model.

Each sample is a 128 x 128 RGB picture of flat-coloured shapes on a flat-coloured background,
with an English caption. Everything is deterministic from a seed (random.Random, drawing only
with random(), whose sequence is the same on every Python 3 version).

    scene kinds   count:    n = 1..4 objects of one colour and shape      "two yellow stars"
                  relation: two different objects, one left of / right of /
                            above / below the other   "a green square to the left of a white cross"
    shapes        circle, square, triangle, star, ring, cross
    colours       red, green, blue, yellow, purple, orange, white, black (objects);
                  the same eight plus gray (backgrounds); a background never has the colour
                  of an object on it
    captions      templates with paraphrase: number words and digits ("2", "a pair of"),
                  shape synonyms (disk, donut, plus sign), relation synonyms (over, under,
                  beneath), optional background phrases and prefixes ("a picture of ...")

Held-out split (never drawn for training; `heldout_prompts` gives the evaluation prompts):
    count scenes:    the (n, colour, shape) triples whose hash falls under COUNT_HOLDOUT;
    relation scenes: the canonical (colour A, shape A, axis, colour B, shape B) keys (B right of A
                     is A left of B) whose hash falls under RELATION_HOLDOUT.
So every held-out prompt is a combination training never saw, made of parts it did see.

Rendering: each shape is a signed distance function of the unit shape, scaled by the object's
size r (its half-extent in pixels), with analytic anti-aliasing (coverage = clamp(0.5 - d, 0, 1),
d in pixels), composited over the background in object order. The same SDFs run on Python floats
(render_scene_py: no dependencies, slow) and on torch tensors (render_params / render_batch:
batched, on the GPU during training).

CLI (Python 3, standard library; torch only makes `dump` faster):
    python3 tools/tiny/dataset.py dump --n 64 --out /tmp/tiny_samples [--split train|heldout]
    python3 tools/tiny/dataset.py heldout [--n 240] [--jsonl]   the evaluation prompts
    python3 tools/tiny/dataset.py stats                          split sizes and examples
"""
import argparse
import hashlib
import json
import math
import os
import signal
import sys

import random as _random

SIZE = 128

# Well separated in RGB: every object colour is at least ~95 away from every other colour.
COLOURS = {
    "red": (215, 35, 35),
    "green": (40, 165, 60),
    "blue": (35, 85, 215),
    "yellow": (245, 225, 35),
    "purple": (135, 55, 185),
    "orange": (245, 130, 20),
    "white": (240, 240, 240),
    "black": (25, 25, 25),
    "gray": (128, 128, 128),
}
OBJECT_COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
BACKGROUND_COLOURS = OBJECT_COLOURS + ["gray"]
SHAPES = ["circle", "square", "triangle", "star", "ring", "cross"]
RELATIONS = ["left of", "right of", "above", "below"]

# Held-out fractions of the combination keys (see the module docstring).
COUNT_HOLDOUT = 0.15
RELATION_HOLDOUT = 0.04

# ---- caption vocabulary (the evaluator parses every form written here) ----

COLOUR_WORDS = {c: [c] for c in BACKGROUND_COLOURS}
COLOUR_WORDS["purple"] = ["purple", "violet"]
COLOUR_WORDS["gray"] = ["gray", "grey"]
SHAPE_WORDS = {  # (singular, plural)
    "circle": [("circle", "circles"), ("disk", "disks")],
    "square": [("square", "squares")],
    "triangle": [("triangle", "triangles")],
    "star": [("star", "stars")],
    "ring": [("ring", "rings"), ("donut", "donuts")],
    "cross": [("cross", "crosses"), ("plus sign", "plus signs")],
}
NUMBER_WORDS = {1: ["a", "one", "a single", "1"], 2: ["two", "2", "a pair of"],
                3: ["three", "3"], 4: ["four", "4"]}
RELATION_WORDS = {
    "left of": ["to the left of", "left of", "on the left of"],
    "right of": ["to the right of", "right of", "on the right of"],
    "above": ["above", "over"],
    "below": ["below", "under", "beneath"],
}
BACKGROUND_TEMPLATES = ["on {a} {c} background", "against {a} {c} background", "on {c}",
                        "with {a} {c} background", "on {a} {c} backdrop"]
PREFIXES = ["", "", "", "a picture of ", "an image of ", "a drawing of "]


class Rng:
    """random.Random used through random() only, so that sequences are version-independent."""

    def __init__(self, seed):
        self.r = _random.Random(seed)

    def random(self):
        return self.r.random()

    def uniform(self, a, b):
        return a + (b - a) * self.r.random()

    def below(self, n):
        return min(int(self.r.random() * n), n - 1)

    def choice(self, seq):
        return seq[self.below(len(seq))]

    def chance(self, p):
        return self.r.random() < p


def _hash01(text):
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:12], 16) / float(16 ** 12)


def count_key(n, colour, shape):
    return "count|%d|%s|%s" % (n, colour, shape)


def relation_key(ca, sa, rel, cb, sb):
    """Canonical: 'B right of A' is 'A left of B', 'B below A' is 'A above B'."""
    if rel == "right of":
        return relation_key(cb, sb, "left of", ca, sa)
    if rel == "below":
        return relation_key(cb, sb, "above", ca, sa)
    return "relation|%s|%s|%s|%s|%s" % (ca, sa, "h" if rel == "left of" else "v", cb, sb)


def is_heldout_key(key):
    frac = COUNT_HOLDOUT if key.startswith("count|") else RELATION_HOLDOUT
    return _hash01("tttd-tiny-heldout|" + key) < frac


def scene_key(scene):
    o = scene["objects"]
    if scene["kind"] == "count":
        return count_key(len(o), o[0]["colour"], o[0]["shape"])
    a, b = o[0], o[1]
    return relation_key(a["colour"], a["shape"], scene["relation"], b["colour"], b["shape"])


# ---- scenes ----

def _place(rng, sizes, constraint=None, tries=200):
    """Centres for objects of half-extent sizes, inside the image with a margin and apart from
    each other; constraint(centres) must hold. None when no placement was found."""
    for _ in range(tries):
        centres = []
        ok = True
        for r in sizes:
            m = r + 4
            cx, cy = rng.uniform(m, SIZE - m), rng.uniform(m, SIZE - m)
            for (px, py), pr in zip(centres, sizes):
                if math.hypot(cx - px, cy - py) < (r + pr) * 1.2 + 6:
                    ok = False
                    break
            if not ok:
                break
            centres.append((cx, cy))
        if ok and (constraint is None or constraint(centres)):
            return centres
    return None


def relation_holds(rel, a, b, margin=0.0, ratio=0.5):
    """rel between object centres a and b (image y grows downwards): the displacement along the
    relation's axis is positive (beyond margin) and at least ratio times the other axis' one.
    Scenes are placed with margin 20, ratio 1 (the relation's axis dominates); the evaluator
    judges with margin 3, ratio 0.5 (and shape centroids, not the shapes' frame centres)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    along, across = {"left of": (dx, dy), "right of": (-dx, dy), "above": (dy, dx),
                     "below": (-dy, dx)}[rel]
    return along > margin and along >= ratio * abs(across)


def _placed(rel):
    """The placement constraint of a relation scene: clearly on the relation's axis."""
    return lambda c: relation_holds(rel, c[0], c[1], margin=20.0, ratio=1.0)


def _obj(shape, colour, c, r):
    return {"shape": shape, "colour": colour, "cx": round(c[0], 3), "cy": round(c[1], 3),
            "r": round(r, 3)}


def _background(rng, used):
    return rng.choice([c for c in BACKGROUND_COLOURS if c not in used])


def sample_scene(rng, split="train", kind=None):
    """One random scene of the split ("train": no held-out key; "heldout": only held-out keys;
    "any"). Returns a dict: kind, objects [{shape, colour, cx, cy, r}], relation (relation
    scenes: objects[0] <relation> objects[1]), bg."""
    while True:
        k = kind or ("count" if rng.chance(0.55) else "relation")
        if k == "count":
            n = 1 if rng.chance(0.4) else 2 + rng.below(3)
            shape, colour = rng.choice(SHAPES), rng.choice(OBJECT_COLOURS)
            key = count_key(n, colour, shape)
        else:
            sa, ca = rng.choice(SHAPES), rng.choice(OBJECT_COLOURS)
            sb, cb = rng.choice(SHAPES), rng.choice(OBJECT_COLOURS)
            if (sa, ca) == (sb, cb):
                continue
            rel = rng.choice(RELATIONS)
            key = relation_key(ca, sa, rel, cb, sb)
        held = is_heldout_key(key)
        if (split == "train" and held) or (split == "heldout" and not held):
            continue
        if k == "count":
            lo, hi = (16.0, 28.0) if n == 1 else ((14.0, 22.0) if n == 2 else (13.0, 19.0))
            sizes = [rng.uniform(lo, hi)]
            sizes += [sizes[0] * rng.uniform(0.9, 1.1) for _ in range(n - 1)]
            centres = _place(rng, sizes)
            if centres is None:
                continue
            objs = [_obj(shape, colour, c, r) for c, r in zip(centres, sizes)]
            return {"kind": "count", "objects": objs, "relation": None,
                    "bg": _background(rng, {colour})}
        sizes = [rng.uniform(14.0, 22.0), rng.uniform(14.0, 22.0)]
        centres = _place(rng, sizes, _placed(rel))
        if centres is None:
            continue
        objs = [_obj(sa, ca, centres[0], sizes[0]), _obj(sb, cb, centres[1], sizes[1])]
        return {"kind": "relation", "objects": objs, "relation": rel,
                "bg": _background(rng, {ca, cb})}


# ---- captions ----

def _noun(rng, shape, plural):
    s, p = rng.choice(SHAPE_WORDS[shape])
    return p if plural else s


def _article(word):
    return "an" if word[0] in "aeiou" else "a"


def _phrase(rng, colour, shape, n=1, in_relation=False):
    """'a red circle', 'two yellow stars', 'a pair of violet donuts'; in a relation 'a' or
    'one'."""
    cw = rng.choice(COLOUR_WORDS[colour])
    noun = _noun(rng, shape, n > 1)
    num = ("one" if rng.chance(0.15) else "a") if in_relation else rng.choice(NUMBER_WORDS[n])
    if num == "a":
        num = _article(cw)
    return "%s %s %s" % (num, cw, noun)


def caption(rng, scene, background_p=0.6):
    """A caption of the scene, with paraphrase; the background is named with probability
    background_p."""
    o = scene["objects"]
    if scene["kind"] == "count":
        body = _phrase(rng, o[0]["colour"], o[0]["shape"], len(o))
    else:
        rel = scene["relation"]
        a, b = o[0], o[1]
        if rng.chance(0.5):  # say it the other way round
            a, b = b, a
            rel = {"left of": "right of", "right of": "left of", "above": "below",
                   "below": "above"}[rel]
        body = "%s %s %s" % (_phrase(rng, a["colour"], a["shape"], in_relation=True),
                             rng.choice(RELATION_WORDS[rel]),
                             _phrase(rng, b["colour"], b["shape"], in_relation=True))
    prefix = rng.choice(PREFIXES)
    text = prefix + body
    if rng.chance(background_p):
        bgw = rng.choice(COLOUR_WORDS[scene["bg"]])
        tmpl = rng.choice(BACKGROUND_TEMPLATES)
        text += " " + tmpl.format(a=_article(bgw), c=bgw)
    return text


def sample(rng, split="train", background_p=0.6):
    """(scene, caption)."""
    scene = sample_scene(rng, split)
    return scene, caption(rng, scene, background_p)


def vocabulary_corpus():
    """Every word and phrase the captions can use, for the BPE trainer (so that every caption
    word becomes one token whatever the sampled corpus holds)."""
    words = set()
    for ws in COLOUR_WORDS.values():
        words.update(ws)
    for forms in SHAPE_WORDS.values():
        for s, p in forms:
            words.update([s, p])
    for ws in NUMBER_WORDS.values():
        words.update(ws)
    for ws in RELATION_WORDS.values():
        words.update(ws)
    for t in BACKGROUND_TEMPLATES + PREFIXES:
        words.update(t.replace("{c}", "").replace("{a}", "a an").split())
    words.update(["an", "and", "the", "of"])
    return sorted(w for w in words if w)


# ---- held-out prompts ----

def heldout_keys():
    """(count keys, relation keys) of the held-out split, sorted."""
    counts = [count_key(n, c, s) for n in range(1, 5) for c in OBJECT_COLOURS for s in SHAPES
              if is_heldout_key(count_key(n, c, s))]
    rels = set()
    for ca in OBJECT_COLOURS:
        for sa in SHAPES:
            for cb in OBJECT_COLOURS:
                for sb in SHAPES:
                    if (ca, sa) == (cb, sb):
                        continue
                    for rel in ("left of", "above"):
                        k = relation_key(ca, sa, rel, cb, sb)
                        if is_heldout_key(k):
                            rels.add(k)
    return counts, sorted(rels)


def heldout_prompts(n=240, seed=20260901, background_p=0.5):
    """n evaluation prompts (half count scenes, n/8 for each count 1..4 ... as the held-out
    keys allow, half relations), each with the scene it was written from. Deterministic."""
    rng = Rng(seed)
    counts, rels = heldout_keys()
    by_n = {k: [c for c in counts if c.split("|")[1] == str(k)] for k in range(1, 5)}
    out = []
    n_count = n // 2
    for i in range(n_count):
        num = 1 + i % 4
        pool = by_n[num] or counts
        key = pool[(i // 4) % len(pool)]
        _, nn, colour, shape = key.split("|")
        scene = None
        while scene is None:
            scene = _scene_for_count(rng, int(nn), colour, shape)
        out.append((scene, _new_caption(rng, scene, background_p, out)))
    order = list(range(len(rels)))
    for i in range(len(order) - 1, 0, -1):  # Fisher-Yates with our rng
        j = rng.below(i + 1)
        order[i], order[j] = order[j], order[i]
    i = 0
    while len(out) < n:
        key = rels[order[i % len(order)]]
        i += 1
        _, ca, sa, axis, cb, sb = key.split("|")
        rel = "left of" if axis == "h" else "above"
        scene = _scene_for_relation(rng, ca, sa, rel, cb, sb)
        if scene is not None:
            out.append((scene, _new_caption(rng, scene, background_p, out)))
    return out


def _new_caption(rng, scene, background_p, taken):
    """A caption of the scene that no earlier prompt has (the prompts are all distinct)."""
    used = {c for _, c in taken}
    while True:
        cap = caption(rng, scene, background_p)
        if cap not in used:
            return cap


def _scene_for_count(rng, n, colour, shape):
    lo, hi = (16.0, 28.0) if n == 1 else ((14.0, 22.0) if n == 2 else (13.0, 19.0))
    sizes = [rng.uniform(lo, hi)]
    sizes += [sizes[0] * rng.uniform(0.9, 1.1) for _ in range(n - 1)]
    centres = _place(rng, sizes)
    if centres is None:
        return None
    return {"kind": "count", "objects": [_obj(shape, colour, c, r) for c, r in zip(centres, sizes)],
            "relation": None, "bg": _background(rng, {colour})}


def _scene_for_relation(rng, ca, sa, rel, cb, sb):
    sizes = [rng.uniform(14.0, 22.0), rng.uniform(14.0, 22.0)]
    centres = _place(rng, sizes, _placed(rel))
    if centres is None:
        return None
    return {"kind": "relation", "objects": [_obj(sa, ca, centres[0], sizes[0]),
                                            _obj(sb, cb, centres[1], sizes[1])],
            "relation": rel, "bg": _background(rng, {ca, cb})}


# ---- rendering: signed distance functions of the unit shapes ----

# Unit shapes (size 1 = half-extent; image y grows downwards, so "up" is -y), as polygons where
# they are polygons.
TRIANGLE = [(0.0, -1.0), (1.0, 0.75), (-1.0, 0.75)]
STAR_INNER = 0.5  # inner vertices' radius (a regular star's is 0.38: this one is fatter)
STAR = []
for _k in range(10):
    _rad = 1.0 if _k % 2 == 0 else STAR_INNER
    STAR.append((_rad * math.sin(math.pi * _k / 5), -_rad * math.cos(math.pi * _k / 5)))
SQUARE_HALF = 0.85
RING_MID, RING_HALF = 0.775, 0.225  # outer radius 1, inner 0.55
CROSS_ARM = 0.33  # arm half-width; arms reach 1


class _PyOps:
    """The few operations the SDFs need, on Python floats (render_batch has a torch twin)."""
    max = staticmethod(max)
    min = staticmethod(min)
    sqrt = staticmethod(math.sqrt)

    @staticmethod
    def clamp01(v):
        return 0.0 if v < 0.0 else 1.0 if v > 1.0 else v

    @staticmethod
    def crosses(a, b, c):
        """all of the three conditions, or none of them."""
        return (a and b and c) or not (a or b or c)

    @staticmethod
    def flip_where(s, cond):
        return -s if cond else s


def polygon_sdf(ops, v, x, y):
    """Exact signed distance from a simple polygon with vertices v (Inigo Quilez's sdPolygon:
    distance to the nearest edge, sign from the crossing-number test)."""
    d = (x - v[0][0]) * (x - v[0][0]) + (y - v[0][1]) * (y - v[0][1])
    s = 1.0
    n = len(v)
    for i in range(n):
        j = (i + n - 1) % n
        ex, ey = v[j][0] - v[i][0], v[j][1] - v[i][1]
        wx, wy = x - v[i][0], y - v[i][1]
        t = ops.clamp01((wx * ex + wy * ey) / (ex * ex + ey * ey))
        bx, by = wx - ex * t, wy - ey * t
        d = ops.min(d, bx * bx + by * by)
        s = ops.flip_where(s, ops.crosses(y >= v[i][1], y < v[j][1], ex * wy > ey * wx))
    return s * ops.sqrt(d)


def unit_sdf(ops, shape, x, y):
    """Signed distance (negative inside) of (x, y) from the unit shape (exact for every shape
    but the cross, whose outside corners are rounded off in the distance only)."""
    if shape == "circle":
        return ops.sqrt(x * x + y * y) - 1.0
    if shape == "ring":
        return abs(ops.sqrt(x * x + y * y) - RING_MID) - RING_HALF
    if shape == "square":
        return ops.max(abs(x), abs(y)) - SQUARE_HALF
    if shape == "triangle":
        return polygon_sdf(ops, TRIANGLE, x, y)
    if shape == "star":
        return polygon_sdf(ops, STAR, x, y)
    if shape == "cross":
        ax, ay = abs(x), abs(y)
        return ops.min(ops.max(ax - CROSS_ARM, ay - 1.0), ops.max(ax - 1.0, ay - CROSS_ARM))
    raise ValueError("unknown shape %r" % shape)


def render_scene_py(scene):
    """The scene as RGB bytes (SIZE * SIZE * 3), pure Python."""
    bg = COLOURS[scene["bg"]]
    img = [[float(bg[0]), float(bg[1]), float(bg[2])] for _ in range(SIZE * SIZE)]
    for o in scene["objects"]:
        col = COLOURS[o["colour"]]
        r, cx, cy = o["r"], o["cx"], o["cy"]
        x0, x1 = max(0, int(cx - r - 2)), min(SIZE, int(cx + r + 3))
        y0, y1 = max(0, int(cy - r - 2)), min(SIZE, int(cy + r + 3))
        for y in range(y0, y1):
            uy = (y + 0.5 - cy) / r
            for x in range(x0, x1):
                d = r * unit_sdf(_PyOps, o["shape"], (x + 0.5 - cx) / r, uy)
                cov = min(1.0, max(0.0, 0.5 - d))
                if cov > 0.0:
                    p = img[y * SIZE + x]
                    for ch in range(3):
                        p[ch] = p[ch] * (1.0 - cov) + col[ch] * cov
    out = bytearray(SIZE * SIZE * 3)
    for i, p in enumerate(img):
        for ch in range(3):
            out[3 * i + ch] = max(0, min(255, int(math.floor(p[ch] + 0.5))))
    return bytes(out)


MAX_OBJECTS = 4


def scene_params(scenes):
    """The scenes as two tensors for render_params: objects [N, MAX_OBJECTS, 5] float32 rows
    (shape index or -1 for no object, colour index, cx, cy, r) and backgrounds [N] (colour
    indices into BACKGROUND_COLOURS)."""
    import torch

    cidx = {c: i for i, c in enumerate(BACKGROUND_COLOURS)}
    rows = []
    for s in scenes:
        objs = [[SHAPES.index(o["shape"]), cidx[o["colour"]], o["cx"], o["cy"], o["r"]]
                for o in s["objects"]]
        rows.append(objs + [[-1, 0, 0.0, 0.0, 1.0]] * (MAX_OBJECTS - len(objs)))
    return (torch.tensor(rows, dtype=torch.float32),
            torch.tensor([cidx[s["bg"]] for s in scenes], dtype=torch.long))


def render_params(objects, backgrounds):
    """objects [B, MAX_OBJECTS, 5], backgrounds [B] (scene_params, on any device) -> pictures
    [B, 3, SIZE, SIZE] in [-1, 1]: the SDFs of render_scene_py on tensors, every shape evaluated
    for every slot and the object's own selected (no Python per scene: runs on the GPU)."""
    import torch

    class _TorchOps:
        max = staticmethod(torch.maximum)
        min = staticmethod(torch.minimum)
        sqrt = staticmethod(torch.sqrt)

        @staticmethod
        def clamp01(v):
            return v.clamp(0.0, 1.0)

        @staticmethod
        def crosses(a, b, c):
            return (a & b & c) | ~(a | b | c)

        @staticmethod
        def flip_where(s, cond):
            s = torch.as_tensor(s, dtype=torch.float32, device=cond.device)
            return torch.where(cond, -s, s)

    dev = objects.device
    pal = torch.tensor([COLOURS[c] for c in BACKGROUND_COLOURS], dtype=torch.float32,
                       device=dev)
    B = objects.shape[0]
    img = pal[backgrounds][:, :, None, None].expand(B, 3, SIZE, SIZE).clone()
    coords = torch.arange(SIZE, dtype=torch.float32, device=dev) + 0.5
    gy, gx = coords[None, :, None], coords[None, None, :]
    for k in range(objects.shape[1]):
        kind = objects[:, k, 0].round().long()
        col = pal[objects[:, k, 1].round().long()]
        cx, cy, r = (objects[:, k, j][:, None, None] for j in (2, 3, 4))
        ux, uy = (gx - cx) / r, (gy - cy) / r
        d = torch.full((B, SIZE, SIZE), 1e4, device=dev)
        for si, shape in enumerate(SHAPES):
            sel = (kind == si)[:, None, None]
            d = torch.where(sel, r * unit_sdf(_TorchOps, shape, ux, uy), d)
        cov = (0.5 - d).clamp(0.0, 1.0)[:, None]
        img = img * (1.0 - cov) + col[:, :, None, None] * cov
    return img / 127.5 - 1.0


def render_batch(scenes, device="cpu"):
    """Scenes -> float tensor [B, 3, SIZE, SIZE] in [-1, 1] (torch, batched)."""
    objects, backgrounds = scene_params(scenes)
    return render_params(objects.to(device), backgrounds.to(device))


def to_rgb_bytes(t):
    """One [3, H, W] tensor in [-1, 1] -> RGB bytes (round half up, as render_scene_py)."""
    import torch
    a = torch.floor((t.float().clamp(-1, 1) + 1.0) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8)
    return a.permute(1, 2, 0).contiguous().cpu().numpy().tobytes()


# ---- CLI ----

def _dump(args):
    import pngio
    os.makedirs(args.out, exist_ok=True)
    if args.split == "heldout":
        pairs = heldout_prompts(max(args.n, 1))[:args.n]
    else:
        rng = Rng(args.seed)
        pairs = [sample(rng, args.split) for _ in range(args.n)]
    import importlib.util
    have_torch = not args.pure and importlib.util.find_spec("torch") is not None
    images = []
    if have_torch:
        for i in range(0, len(pairs), 256):
            batch = render_batch([s for s, _ in pairs[i:i + 256]])
            images += [to_rgb_bytes(t) for t in batch]
    else:
        images = [render_scene_py(s) for s, _ in pairs]
    with open(os.path.join(args.out, "prompts.txt"), "w") as fp, \
            open(os.path.join(args.out, "scenes.jsonl"), "w") as fs:
        for i, ((scene, cap), rgb) in enumerate(zip(pairs, images)):
            name = "%05d.png" % i
            pngio.write_png(os.path.join(args.out, name), SIZE, SIZE, rgb)
            fp.write(cap + "\n")
            fs.write(json.dumps({"image": name, "caption": cap, "scene": scene},
                                sort_keys=True) + "\n")
    print("%d images, prompts.txt and scenes.jsonl in %s (%s renderer)" %
          (len(pairs), args.out, "torch" if have_torch else "pure Python"))


def main(argv=None):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` ends quietly
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="write N samples as PNG + prompts.txt + scenes.jsonl")
    d.add_argument("--n", type=int, default=64)
    d.add_argument("--out", default="/tmp/tiny_samples")
    d.add_argument("--split", choices=["train", "heldout", "any"], default="train")
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--pure", action="store_true", help="the pure-Python renderer even with torch")
    h = sub.add_parser("heldout", help="print the held-out evaluation prompts")
    h.add_argument("--n", type=int, default=240)
    h.add_argument("--jsonl", action="store_true", help="one JSON object (caption, scene) a line")
    sub.add_parser("stats", help="split sizes and example captions")
    args = ap.parse_args(argv)
    if args.cmd == "dump":
        _dump(args)
    elif args.cmd == "heldout":
        for scene, cap in heldout_prompts(args.n):
            print(json.dumps({"caption": cap, "scene": scene}, sort_keys=True)
                  if args.jsonl else cap)
    else:
        counts, rels = heldout_keys()
        print("held-out count keys: %d of %d; relation keys: %d of %d" %
              (len(counts), 4 * len(OBJECT_COLOURS) * len(SHAPES), len(rels),
               2 * (len(OBJECT_COLOURS) * len(SHAPES)) * (len(OBJECT_COLOURS) * len(SHAPES) - 1)))
        rng = Rng(0)
        for _ in range(12):
            print("  train:", sample(rng)[1])
        for _, cap in heldout_prompts(12):
            print("  heldout:", cap)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
