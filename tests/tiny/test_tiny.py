"""test_tiny.py - self-tests of tools/tiny/ that need nothing but Python 3's standard library.

    python3 tests/tiny/test_tiny.py        (about 10 s)

The PNG reader (every scanline filter), the prompt parser on every caption form the dataset
writes, the held-out split, the BPE tokenizer, and the evaluator on ground-truth pictures drawn
by the pure-Python renderer (all must score 1) and on wrong pictures (must score 0 where wrong).
"""
import os
import struct
import sys
import unittest
import zlib

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "tiny"))
import bpe  # noqa: E402
import dataset as ds  # noqa: E402
import evaluate as ev  # noqa: E402
import pngio  # noqa: E402


def _filtered_png(width, height, rgba, filters):
    """An RGBA PNG whose row y uses filter filters[y % len(filters)] (the encoder side)."""
    bpp, stride = 4, width * 4
    raw = bytearray()
    prev = bytes(stride)
    for y in range(height):
        line = rgba[y * stride:(y + 1) * stride]
        f = filters[y % len(filters)]
        out = bytearray(stride)
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            pred = {0: 0, 1: a, 2: b, 3: (a + b) >> 1, 4: pngio._paeth(a, b, c)}[f]
            out[i] = (line[i] - pred) & 0xFF
        raw += bytes([f]) + out
        prev = line
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    data = zlib.compress(bytes(raw))
    # Two IDAT chunks, as some writers split them.
    return pngio.SIGNATURE + pngio._chunk(b"IHDR", ihdr) + pngio._chunk(b"IDAT", data[:7]) + \
        pngio._chunk(b"IDAT", data[7:]) + pngio._chunk(b"IEND", b"")


class TestPng(unittest.TestCase):
    def test_round_trip(self):
        rgb = bytes((i * 7) % 256 for i in range(5 * 3 * 3))
        self.assertEqual(pngio.decode_png(pngio.encode_png(5, 3, rgb)), (5, 3, rgb))

    def test_every_filter_rgba(self):
        w, h = 7, 10
        rgba = bytes((i * 31 + (i // 5) * 17) % 256 for i in range(w * h * 4))
        blob = _filtered_png(w, h, rgba, [0, 1, 2, 3, 4])
        got_w, got_h, rgb = pngio.decode_png(blob)
        want = bytearray()
        for i in range(w * h):
            want += rgba[4 * i:4 * i + 3]
        self.assertEqual((got_w, got_h, rgb), (w, h, bytes(want)))

    def test_bad_crc(self):
        blob = bytearray(pngio.encode_png(2, 2, bytes(12)))
        blob[20] ^= 1
        with self.assertRaises(ValueError):
            pngio.decode_png(bytes(blob))


class TestPrompts(unittest.TestCase):
    def test_parse_every_caption_form(self):
        rng = ds.Rng(5)
        inv = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
        for _ in range(3000):
            scene, cap = ds.sample(rng, "any")
            spec = ev.parse_prompt(cap)
            o = scene["objects"]
            if scene["kind"] == "count":
                self.assertEqual(spec["objects"], [{"colour": o[0]["colour"],
                                                    "shape": o[0]["shape"], "count": len(o)}])
                self.assertIsNone(spec["relation"])
            else:
                a, b = ({"colour": x["colour"], "shape": x["shape"], "count": 1} for x in o)
                self.assertIn((spec["objects"], spec["relation"]),
                              [([a, b], scene["relation"]), ([b, a], inv[scene["relation"]])],
                              cap)
            named = cap.endswith(("background", "backdrop")) or any(
                cap.endswith(" on " + w) for ws in ds.COLOUR_WORDS.values() for w in ws)
            self.assertEqual(spec["background"], scene["bg"] if named else None, cap)

    def test_unparseable(self):
        with self.assertRaises(ev.PromptError):
            ev.parse_prompt("a photo of a cat")


class TestSplit(unittest.TestCase):
    def test_heldout_is_deterministic_and_unseen(self):
        a = ds.heldout_prompts(240)
        self.assertEqual(a, ds.heldout_prompts(240))
        self.assertEqual(len(a), 240)
        self.assertGreaterEqual(len({c for _, c in a}), 200)
        for scene, _ in a:
            self.assertTrue(ds.is_heldout_key(ds.scene_key(scene)))
        rng = ds.Rng(9)
        for _ in range(5000):
            scene, _ = ds.sample(rng, "train")
            self.assertFalse(ds.is_heldout_key(ds.scene_key(scene)))

    def test_relation_key_is_canonical(self):
        self.assertEqual(ds.relation_key("red", "star", "right of", "blue", "ring"),
                         ds.relation_key("blue", "ring", "left of", "red", "star"))
        self.assertEqual(ds.relation_key("red", "star", "below", "blue", "ring"),
                         ds.relation_key("blue", "ring", "above", "red", "star"))


class TestBpe(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rng = ds.Rng(3)
        corpus = [ds.sample(rng, "any")[1] for _ in range(2000)] + ds.vocabulary_corpus()
        cls.tok = bpe.Tokenizer(bpe.train(corpus), 24)

    def test_vocabulary_layout(self):
        v = self.tok.vocab
        self.assertEqual(v["!"], 0)
        self.assertEqual(v["!</w>"], 256)
        self.assertEqual(v[bpe.EOT], len(v) - 1)
        self.assertEqual(v[bpe.SOT], len(v) - 2)

    def test_caption_words_are_single_tokens(self):
        ids = self.tok.encode("a green square to the left of a white triangle")
        body = ids[1:ids.index(self.tok.eot)]
        self.assertEqual(len(body), 10)

    def test_any_text_tokenizes(self):
        ids = self.tok.encode("Zebra: 42 naïve café ✓")
        self.assertEqual(len(ids), 24)
        self.assertEqual(ids[0], self.tok.sot)
        long = self.tok.encode("red " * 100)
        self.assertEqual(long[-1], self.tok.eot)


class TestEvaluator(unittest.TestCase):
    def test_ground_truth_scores_one(self):
        rng = ds.Rng(21)
        for _ in range(10):
            scene, cap = ds.sample(rng, "any")
            r = ev.evaluate_image(cap, ds.SIZE, ds.SIZE, ds.render_scene_py(scene))
            self.assertEqual(r["correct"], 1, (cap, r["scores"], r["detected"]["objects"]))

    def test_wrong_picture_scores_zero(self):
        scene = {"kind": "relation", "bg": "blue", "relation": "left of", "objects": [
            {"shape": "star", "colour": "red", "cx": 40.0, "cy": 64.0, "r": 18.0},
            {"shape": "ring", "colour": "white", "cx": 90.0, "cy": 64.0, "r": 18.0}]}
        rgb = ds.render_scene_py(scene)
        s = ev.evaluate_image("a red star to the right of a white ring on a green background",
                              ds.SIZE, ds.SIZE, rgb)["scores"]
        self.assertEqual((s["colour"], s["shape"], s["count"], s["position"], s["background"]),
                         (1, 1, 1, 0, 0))
        s = ev.evaluate_image("three yellow crosses", ds.SIZE, ds.SIZE, rgb)["scores"]
        self.assertEqual((s["colour"], s["shape"], s["count"]), (0, 0, 0))


if __name__ == "__main__":
    unittest.main()
