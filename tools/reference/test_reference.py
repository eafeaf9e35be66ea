#!/usr/bin/env python3
"""test_reference.py - self-checks of the PyTorch reference (run: /usr/bin/python3 <this file>).

Each check compares the reference with something written independently of it: the published
Philox known-answer vectors and a vectorised numpy Philox, torch.autograd for the TTT inner
update, closed-form sin-cos values for the cropped pos_embed, hand-derived sigma schedules, a
naive loop for the depthwise conv and the unpatchify layout, and a second run of
make_fixtures.py against the files in tests/fixtures/. check_diffusers.py (needs torch >= 2 and
diffusers) checks the reference against diffusers itself.
"""
import json
import math
import os
import struct
import sys
import tempfile
import unittest

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import make_fixtures  # noqa: E402
import mmdit  # noqa: E402
import rng  # noqa: E402
import sampler  # noqa: E402
import st_io  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "fixtures")


def philox_numpy(ctr, key):
    """Vectorised Philox4x32-10 over uint64 arrays (a second, independent implementation)."""
    m = np.uint64(0xFFFFFFFF)
    c = [np.asarray(v, dtype=np.uint64) for v in ctr]
    k0, k1 = (np.asarray(v, dtype=np.uint64) for v in key)
    for r in range(10):
        p0 = np.uint64(0xD2511F53) * c[0]
        p1 = np.uint64(0xCD9E8D57) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & m, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & m]
        k0 = (k0 + np.uint64(0x9E3779B9)) & m
        k1 = (k1 + np.uint64(0xBB67AE85)) & m
    return c


class RngTest(unittest.TestCase):
    def test_known_answer_vectors(self):
        for ctr, key, want in rng.KAT_VECTORS:
            self.assertEqual(rng.philox4x32_10(ctr, key), want)
            got = philox_numpy([[v] for v in ctr], key)
            self.assertEqual(tuple(int(g[0]) for g in got), want)

    def test_key_and_counter_layout(self):
        seed = (1 << 40) + 7  # key words (7, 256)
        self.assertEqual(rng.block(seed, 5), rng.philox4x32_10((5, 0, 0, 0), (7, 256)))
        self.assertEqual(rng.block(seed, (3 << 32) + 9), rng.philox4x32_10((9, 3, 0, 0), (7, 256)))

    def test_normals_match_numpy(self):
        for seed in (0, 42, (1 << 40) + 7):
            n_blocks = 300
            i = np.arange(n_blocks, dtype=np.uint64)
            r = philox_numpy([i, np.zeros_like(i), np.zeros_like(i), np.zeros_like(i)],
                             (seed & 0xFFFFFFFF, seed >> 32))
            out = np.empty((n_blocks, 4))
            for a, b, col in ((r[0], r[1], 0), (r[2], r[3], 2)):
                u1 = (a.astype(np.float64) + 1.0) / 2.0 ** 32
                u2 = b.astype(np.float64) / 2.0 ** 32
                rad = np.sqrt(-2.0 * np.log(u1))
                out[:, col] = rad * np.cos(2.0 * np.pi * u2)
                out[:, col + 1] = rad * np.sin(2.0 * np.pi * u2)
            want = out.reshape(-1).astype(np.float32)
            got = np.array(rng.normals(seed, 4 * n_blocks), dtype=np.float32)
            # numpy's vectorised sin/cos/log may differ from libm by an ulp in double.
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)

    def test_normal_statistics(self):
        x = np.array(rng.normals(123, 20000))
        self.assertLess(abs(x.mean()), 0.03)
        self.assertLess(abs(x.std() - 1.0), 0.03)
        # values are float32-representable
        self.assertTrue(all(struct.unpack("<f", struct.pack("<f", v))[0] == v for v in x[:100]))

    def test_latent_is_row_major(self):
        t = rng.latent(42, (4, 8, 12))
        self.assertEqual(t.reshape(-1).tolist(), rng.normals(42, 384))


class TttTest(unittest.TestCase):
    def test_inner_update_is_the_exact_gradient(self):
        """G1, G2 of DESIGN.md are the gradients of sum((SiLU(K W1) W2 - V)^2) * s / (2N)."""
        g = torch.Generator().manual_seed(0)
        b, h, n, d = 2, 3, 11, 8
        q, k, v = (torch.randn((b, h, n, d), generator=g, dtype=torch.float64) for _ in range(3))
        w1, w2 = (torch.randn((h, d, d), generator=g, dtype=torch.float64) * 0.3 for _ in range(2))
        s = d ** -0.5
        outs = []
        for bi in range(b):
            a1, a2 = w1.clone().requires_grad_(), w2.clone().requires_grad_()
            pred = torch.nn.functional.silu(k[bi] @ a1) @ a2
            loss = ((pred - v[bi]) ** 2).sum() * s / (2 * n)
            g1, g2 = torch.autograd.grad(loss, (a1, a2))
            w1n, w2n = w1 - g1, w2 - g2
            outs.append(torch.nn.functional.silu(q[bi] @ w1n) @ w2n)
        want = torch.stack(outs)
        got = mmdit.ttt_inner(q, k, v, w1, w2)
        self.assertLess((got - want).abs().max().item(), 1e-12)
        # and the update matters: without it the output is clearly different
        no_update = torch.nn.functional.silu(q @ w1) @ w2
        self.assertGreater((got - no_update).abs().max().item(), 1e-3)

    def test_key_instance_norm(self):
        k = torch.randn(2, 9, 6, dtype=torch.float64) * 3 + 1
        mean = k.mean(dim=1, keepdim=True)
        var = ((k - mean) ** 2).mean(dim=1, keepdim=True)
        want = (k - mean) / torch.sqrt(var + 1.0)
        self.assertLess((mmdit.key_instance_norm(k) - want).abs().max().item(), 1e-12)

    def test_image_dwconv_layout(self):
        b, hp, wp, c, nt = 2, 3, 4, 5, 2
        x = torch.randn(b, hp * wp + nt, c, dtype=torch.float64)
        w = torch.randn(c, 1, 3, 3, dtype=torch.float64)
        bias = torch.randn(c, dtype=torch.float64)
        y = mmdit.image_dwconv(x, hp * wp, hp, wp, w, bias)
        self.assertTrue(torch.equal(y[:, hp * wp:], x[:, hp * wp:]))  # text untouched
        for bi, r, col, ch in ((0, 0, 0, 1), (1, 1, 2, 4), (0, 2, 3, 0), (1, 2, 1, 2)):
            acc = bias[ch].item() + x[bi, r * wp + col, ch].item()
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, col + dc
                    if 0 <= rr < hp and 0 <= cc < wp:
                        acc += w[ch, 0, dr + 1, dc + 1].item() * x[bi, rr * wp + cc, ch].item()
            self.assertAlmostEqual(y[bi, r * wp + col, ch].item(), acc, places=10)

    def test_ttt_map(self):
        self.assertEqual(mmdit.ttt_map({"preset": "all"}, 4, {0, 1}), ({0, 1, 2, 3}, {0, 1}))
        self.assertEqual(mmdit.ttt_map({"preset": "sd35-t5"}, 24, set(range(13))),
                         (set(range(19, 24)), set(range(13))))
        self.assertEqual(mmdit.ttt_map({"modules": ["transformer_blocks.2.attn"]}, 3, {0}),
                         ({2}, set()))
        with self.assertRaises(ValueError):
            mmdit.ttt_map({"modules": ["transformer_blocks.1.attn2"]}, 3, {0})


class ModelTest(unittest.TestCase):
    def setUp(self):
        self.cfg = mmdit.Config(make_fixtures.BASE_CONFIG)

    def test_pos_embed_crop(self):
        """Cropped rows against closed-form sin-cos values: channels [0, C/2) the column,
        [C/2, C) the row, each [sin | cos]; positions in units of max / base patches."""
        cfg = self.cfg
        m, c = cfg.pos_embed_max_size, cfg.inner
        base = cfg.sample_size // cfg.patch_size
        hp, wp = 4, 6
        top, left = (m - hp) // 2, (m - wp) // 2
        self.assertEqual((top, left), (2, 1))
        sd = {"pos_embed.pos_embed": mmdit.pos_embed_table(cfg)}
        got = mmdit.cropped_pos_embed(sd, cfg, hp, wp)[0]
        quarter = c // 4
        omega = [10000.0 ** (-j / quarter) for j in range(quarter)]
        for r in range(hp):
            for col in range(wp):
                pw = (col + left) * base / m
                ph = (r + top) * base / m
                want = [math.sin(pw * o) for o in omega] + [math.cos(pw * o) for o in omega] + \
                    [math.sin(ph * o) for o in omega] + [math.cos(ph * o) for o in omega]
                row = got[r * wp + col].tolist()
                for a, e in zip(row, want):
                    self.assertAlmostEqual(a, e, delta=1e-6)

    def test_unpatchify_layout(self):
        p, co, hp, wp = 2, 3, 2, 3
        x = torch.randn(2, co, hp * p, wp * p)
        tokens = torch.zeros(2, hp * wp, p * p * co)
        for r in range(hp):
            for col in range(wp):
                for pi in range(p):
                    for qi in range(p):
                        for ch in range(co):
                            tokens[:, r * wp + col, (pi * p + qi) * co + ch] = \
                                x[:, ch, r * p + pi, col * p + qi]
        self.assertTrue(torch.equal(mmdit.unpatchify(tokens, hp, wp, p, co), x))

    def test_forward_structure(self):
        sd = make_fixtures.init_inherited(self.cfg, 1)
        ttt = make_fixtures.init_ttt(self.cfg, 2)
        x, t = torch.randn(1, 4, 8, 12), torch.tensor([500.0])
        ctx, pooled = torch.randn(1, 5, 24), torch.randn(1, 20)
        trace = {}
        with torch.no_grad():
            out = mmdit.forward(sd, self.cfg, x, t, ctx, pooled, trace)
            mixed = mmdit.Config(make_fixtures.config_for(make_fixtures.VARIANTS[1][1]))
            out_ttt = mmdit.forward(dict(sd, **ttt), mixed, x, t, ctx, pooled)
        self.assertEqual(out.shape, x.shape)
        self.assertNotIn("block2.context_out", trace)  # the last block drops its context
        self.assertIn("block1.context_out", trace)
        self.assertGreater((out - out_ttt).abs().max().item(), 1e-2)
        names = [n for n, _ in mmdit.param_shapes(self.cfg)]
        self.assertEqual(len(names), len(set(names)))
        self.assertNotIn("transformer_blocks.2.attn.to_add_out.weight", names)
        self.assertNotIn("transformer_blocks.2.ff_context.net.0.proj.weight", names)
        self.assertIn("transformer_blocks.0.attn2.norm_q.weight", names)
        self.assertNotIn("transformer_blocks.0.attn2.norm_added_q.weight", names)

    def test_sai_round_trip(self):
        """SAI -> diffusers as diffusers' convert_sd3_transformer_checkpoint_to_diffusers does."""
        cfg = self.cfg
        sd = make_fixtures.init_inherited(cfg, 1)
        sai = {k[len("model.diffusion_model."):]: v for k, v in mmdit.to_sai(sd, cfg).items()}

        def swap(w):
            a, b = w.chunk(2)
            return torch.cat([b, a])

        back = {"pos_embed.pos_embed": sai.pop("pos_embed")}
        simple = {"pos_embed.proj": "x_embedder.proj", "context_embedder": "context_embedder",
                  "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
                  "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
                  "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
                  "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
                  "proj_out": "final_layer.linear"}
        for s in ("weight", "bias"):
            for dst, src in simple.items():
                back["%s.%s" % (dst, s)] = sai.pop("%s.%s" % (src, s))
            back["norm_out.linear." + s] = swap(sai.pop("final_layer.adaLN_modulation.1." + s))
        for i in range(cfg.num_layers):
            j, b = "joint_blocks.%d." % i, "transformer_blocks.%d." % i
            last = i == cfg.num_layers - 1
            for s in ("weight", "bias"):
                for blk, names in (("x_block.attn", ["attn.to_q", "attn.to_k", "attn.to_v"]),
                                   ("context_block.attn", ["attn.add_q_proj", "attn.add_k_proj",
                                                           "attn.add_v_proj"]),
                                   ("x_block.attn2", ["attn2.to_q", "attn2.to_k", "attn2.to_v"])):
                    if blk.endswith("attn2") and i not in cfg.dual:
                        continue
                    for name, part in zip(names, sai.pop(j + blk + ".qkv." + s).chunk(3)):
                        back[b + name + "." + s] = part
                pairs = [("x_block.attn.proj", "attn.to_out.0"),
                         ("x_block.adaLN_modulation.1", "norm1.linear"),
                         ("x_block.mlp.fc1", "ff.net.0.proj"), ("x_block.mlp.fc2", "ff.net.2")]
                if not last:
                    pairs += [("context_block.attn.proj", "attn.to_add_out"),
                              ("context_block.adaLN_modulation.1", "norm1_context.linear"),
                              ("context_block.mlp.fc1", "ff_context.net.0.proj"),
                              ("context_block.mlp.fc2", "ff_context.net.2")]
                else:
                    back[b + "norm1_context.linear." + s] = swap(
                        sai.pop(j + "context_block.adaLN_modulation.1." + s))
                if i in cfg.dual:
                    pairs.append(("x_block.attn2.proj", "attn2.to_out.0"))
                for src, dst in pairs:
                    back[b + dst + "." + s] = sai.pop(j + src + "." + s)
            for p in "qk":
                back[b + "attn.norm_%s.weight" % p] = sai.pop(j + "x_block.attn.ln_%s.weight" % p)
                back[b + "attn.norm_added_%s.weight" % p] = \
                    sai.pop(j + "context_block.attn.ln_%s.weight" % p)
                if i in cfg.dual:
                    back[b + "attn2.norm_%s.weight" % p] = \
                        sai.pop(j + "x_block.attn2.ln_%s.weight" % p)
        self.assertEqual(sai, {})
        self.assertEqual(sorted(back), sorted(sd))
        for k in sd:
            self.assertTrue(torch.equal(back[k], sd[k]), k)


class SamplerTest(unittest.TestCase):
    @staticmethod
    def by_hand(n, shift):
        """The schedule from its definition, in double, with float32 end points as diffusers."""
        f32 = lambda v: struct.unpack("<f", struct.pack("<f", v))[0]  # noqa: E731
        s_min = f32(0.001)
        s_min = f32(f32(shift * s_min) / f32(1 + f32((shift - 1) * s_min)))
        ts = [1000.0] if n == 1 else [1000.0 + (s_min * 1000 - 1000.0) * i / (n - 1)
                                      for i in range(n)]
        sig = [shift * (t / 1000) / (1 + (shift - 1) * (t / 1000)) for t in ts]
        return sig

    def test_schedules_by_hand(self):
        for shift in (1.0, 3.0):
            sched = sampler.FlowMatchEuler(1000, shift)
            for n in (1, 4, 28, 40):
                sig, ts = sched.set_timesteps(n)
                self.assertEqual(sig.shape, (n + 1,))
                self.assertEqual(sig[-1].item(), 0.0)
                self.assertEqual(sig[0].item(), 1.0)
                want = self.by_hand(n, shift)
                for a, e in zip(sig[:-1].tolist(), want):
                    self.assertAlmostEqual(a, e, delta=1e-7)
                for a, e in zip(ts.tolist(), want):
                    self.assertAlmostEqual(a, e * 1000, delta=1e-4)

    def test_schedule_literals(self):
        sig, ts = sampler.FlowMatchEuler(1000, 1.0).set_timesteps(4)
        np.testing.assert_allclose(sig.numpy(), [1.0, 0.667, 0.334, 0.001, 0.0], atol=1e-7)
        sig, ts = sampler.FlowMatchEuler(1000, 3.0).set_timesteps(4)
        # The end point 0.001 shifted: 0.003 / 1.002 = 0.00299401. linspace(1, 0.00299401, 4)
        # = 1, 0.66766467, 0.33532934, 0.00299401; shifted again by 3s / (1 + 2s):
        # 2.00299401 / 2.33532934 = 0.857692, 1.00598802 / 1.67065868 = 0.602151,
        # 0.00898204 / 1.00598802 = 0.008929.
        np.testing.assert_allclose(sig.numpy(), [1.0, 0.857692, 0.602151, 0.008929, 0.0],
                                   atol=1e-6)
        self.assertEqual(ts[0].item(), 1000.0)

    def test_euler_step_and_cfg(self):
        x, v = torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3)
        s0, s1 = torch.tensor(0.75), torch.tensor(0.5)
        self.assertTrue(torch.equal(sampler.FlowMatchEuler.step(v, s0, s1, x), x + (s1 - s0) * v))
        u, c = torch.randn(3), torch.randn(3)
        self.assertTrue(torch.equal(sampler.cfg_combine(u, c, 4.0), u + 4.0 * (c - u)))

    def test_guidance_one_skips_uncond(self):
        calls = []

        def model(x, t, ctx, pooled):
            calls.append(x.shape[0])
            return torch.zeros_like(x)

        lat = torch.randn(2, 4, 2, 2)
        z = torch.zeros(2, 5, 24)
        p = torch.zeros(2, 20)
        out = sampler.denoise(model, lat, z, z, p, p, [1.0, 4.0], 3,
                              sampler.FlowMatchEuler(1000, 3.0))
        self.assertEqual(calls, [1, 1, 1, 2, 2, 2])
        self.assertTrue(torch.equal(out, lat))


class StIoTest(unittest.TestCase):
    def test_round_trip_and_layout(self):
        t = {"b": torch.randn(2, 3), "a": torch.arange(5, dtype=torch.int32),
             "c.half": torch.randn(4).half(), "d.bf16": torch.randn(3).bfloat16(),
             "e": torch.zeros(0, 4)}
        blob = st_io.dumps(t, {"format": "pt"})
        (n,) = struct.unpack("<Q", blob[:8])
        self.assertEqual(n % 8, 0)
        header = json.loads(blob[8:8 + n])
        names = [k for k in header if k != "__metadata__"]
        self.assertEqual(names, sorted(names))
        end = 0
        for k in names:
            self.assertEqual(header[k]["data_offsets"][0], end)
            end = header[k]["data_offsets"][1]
        self.assertEqual(8 + n + end, len(blob))
        back, meta = st_io.loads(blob)
        self.assertEqual(meta, {"format": "pt"})
        for k, v in t.items():
            self.assertEqual(back[k].dtype, v.dtype)
            self.assertTrue(torch.equal(back[k], v), k)


class FixturesTest(unittest.TestCase):
    def test_regenerated_fixtures_are_identical(self):
        with tempfile.TemporaryDirectory() as tmp:
            devnull = open(os.devnull, "w")
            old, sys.stdout = sys.stdout, devnull
            try:
                make_fixtures.main(["make_fixtures.py", tmp])
            finally:
                sys.stdout = old
                devnull.close()
            produced = []
            for dirpath, _, files in os.walk(tmp):
                for f in files:
                    rel = os.path.relpath(os.path.join(dirpath, f), tmp)
                    produced.append(rel)
                    with open(os.path.join(tmp, rel), "rb") as a, \
                            open(os.path.join(FIXTURES, rel), "rb") as b:
                        self.assertEqual(a.read(), b.read(), "%s is stale: run make fixtures" % rel)
            self.assertGreater(len(produced), 10)

    def test_io_contract(self):
        io = st_io.load(os.path.join(FIXTURES, "mmdit", "io.safetensors"))
        self.assertEqual(io["x"].shape, (2, 4, 8, 12))
        self.assertEqual(io["t"].tolist(), [700.0, 37.5])
        for v in ("softmax", "ttt_mixed", "ttt_all"):
            self.assertEqual(io[v + ".out"].shape, (2, 4, 8, 12))
            self.assertEqual(io[v + ".temb"].shape, (2, 32))
            self.assertEqual(io[v + ".hidden0"].shape, (2, 24, 32))
            self.assertEqual(io[v + ".context0"].shape, (2, 5, 32))
            for i in range(3):
                self.assertEqual(io["%s.block%d.hidden_out" % (v, i)].shape, (2, 24, 32))
                self.assertEqual(("%s.block%d.context_out" % (v, i)) in io, i < 2)
        self.assertGreater((io["softmax.out"] - io["ttt_mixed.out"]).abs().max().item(), 1e-2)
        self.assertGreater((io["ttt_all.out"] - io["ttt_mixed.out"]).abs().max().item(), 1e-2)


if __name__ == "__main__":
    torch.set_num_threads(1)
    unittest.main(verbosity=2)
