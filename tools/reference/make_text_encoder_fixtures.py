"""make_text_encoder_fixtures.py - writes tests/fixtures/text_encoders/{clip_l,clip_g,t5}/.

Each folder is a tiny random-weight text encoder laid out as a diffusers pipeline's
text_encoder*/ folder (config.json as transformers saves it + model.safetensors with
transformers' tensor names) plus io.safetensors: input ids and the outputs of the reference in
tools/reference/text_encoders.py, computed in float64 from the stored (rounded) weights and saved
as float32. Deterministic: fixed seeds, st_io's deterministic writer.

    clip_l  CLIP-L-like: quick_gelu, eos_token_id 2 (the legacy pooling rule: argmax of the ids),
            weights F32, EOS padding. Cases n77 (B=2, one row truncated: EOS at 76) and n7.
    clip_g  CLIP-G-like: gelu (erf), eos_token_id 997 (the first-EOS rule), weights F16, pad 0;
            the text holds id 999 > EOS so the two rules disagree; one row has no EOS at all.
    t5      T5 v1.1-like: gated-gelu, 4 heads x 16 = 64 != d_model 32, weights BF16, only
            shared.weight saved (as transformers saves the tied table). Cases n256 (B=2) and n20
            (B=1, with the [h, 20, 20] position bias), and the bucket of every relative position
            in [-1000, 1000].

Run with /usr/bin/python3 (Debian's torch) from the repository root.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402
import text_encoders as te  # noqa: E402

OUT = os.path.join("tests", "fixtures", "text_encoders")

CLIP_L = {
    "architectures": ["CLIPTextModelWithProjection"], "attention_dropout": 0.0,
    "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2, "hidden_act": "quick_gelu",
    "hidden_size": 32, "initializer_factor": 1.0, "initializer_range": 0.02,
    "intermediate_size": 64, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
    "model_type": "clip_text_model", "num_attention_heads": 2, "num_hidden_layers": 3,
    "pad_token_id": 1, "projection_dim": 24, "torch_dtype": "float32",
    "transformers_version": "4.41.2", "vocab_size": 1000,
}

CLIP_G = {
    "architectures": ["CLIPTextModelWithProjection"], "attention_dropout": 0.0,
    "bos_token_id": 998, "dropout": 0.0, "eos_token_id": 997, "hidden_act": "gelu",
    "hidden_size": 48, "initializer_factor": 1.0, "initializer_range": 0.02,
    "intermediate_size": 96, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
    "model_type": "clip_text_model", "num_attention_heads": 4, "num_hidden_layers": 2,
    "pad_token_id": 0, "projection_dim": 40, "torch_dtype": "float16",
    "transformers_version": "4.41.2", "vocab_size": 1000,
}

T5 = {
    "architectures": ["T5EncoderModel"], "classifier_dropout": 0.0, "d_ff": 48, "d_kv": 16,
    "d_model": 32, "decoder_start_token_id": 0, "dense_act_fn": "gelu_new", "dropout_rate": 0.1,
    "eos_token_id": 1, "feed_forward_proj": "gated-gelu", "initializer_factor": 1.0,
    "is_encoder_decoder": True, "is_gated_act": True, "layer_norm_epsilon": 1e-06,
    "model_type": "t5", "num_decoder_layers": 2, "num_heads": 4, "num_layers": 2,
    "output_past": True, "pad_token_id": 0, "relative_attention_max_distance": 128,
    "relative_attention_num_buckets": 32, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "transformers_version": "4.41.2", "use_cache": True,
    "vocab_size": 1000,
}


def _randn(g, *shape, std=1.0, mean=0.0):
    return torch.randn(*shape, generator=g, dtype=torch.float32) * std + mean


def clip_weights(cfg, seed, dtype):
    """Random weights, scaled so that attention is far from uniform and every layer matters."""
    g = torch.Generator().manual_seed(seed)
    C, F = cfg["hidden_size"], cfg["intermediate_size"]
    V, P = cfg["vocab_size"], cfg["projection_dim"]
    w = {}
    p = "text_model."
    w[p + "embeddings.token_embedding.weight"] = _randn(g, V, C)
    w[p + "embeddings.position_embedding.weight"] = _randn(
        g, cfg["max_position_embeddings"], C, std=0.5)
    for i in range(cfg["num_hidden_layers"]):
        q = "%sencoder.layers.%d." % (p, i)
        for n in ("layer_norm1", "layer_norm2"):
            w[q + n + ".weight"] = _randn(g, C, std=0.1, mean=1.0)
            w[q + n + ".bias"] = _randn(g, C, std=0.1)
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            # q and k twice the usual scale: attention far from uniform.
            gain = 2.0 if n in ("q_proj", "k_proj") else 1.0
            w[q + "self_attn." + n + ".weight"] = _randn(g, C, C, std=C ** -0.5 * gain)
            w[q + "self_attn." + n + ".bias"] = _randn(g, C, std=0.1)
        w[q + "mlp.fc1.weight"] = _randn(g, F, C, std=C ** -0.5)
        w[q + "mlp.fc1.bias"] = _randn(g, F, std=0.1)
        w[q + "mlp.fc2.weight"] = _randn(g, C, F, std=F ** -0.5)
        w[q + "mlp.fc2.bias"] = _randn(g, C, std=0.1)
    w[p + "final_layer_norm.weight"] = _randn(g, C, std=0.1, mean=1.0)
    w[p + "final_layer_norm.bias"] = _randn(g, C, std=0.1)
    w["text_projection.weight"] = _randn(g, P, C, std=C ** -0.5)
    return {k: v.to(dtype) for k, v in w.items()}


def t5_weights(cfg, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    D, I, F = cfg["d_model"], cfg["num_heads"] * cfg["d_kv"], cfg["d_ff"]
    w = {"shared.weight": _randn(g, cfg["vocab_size"], D, std=2.0)}
    w["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = _randn(
        g, cfg["relative_attention_num_buckets"], cfg["num_heads"], std=1.0)
    for i in range(cfg["num_layers"]):
        p = "encoder.block.%d.layer." % i
        w[p + "0.layer_norm.weight"] = _randn(g, D, std=0.1, mean=1.0)
        for n in ("q", "k", "v"):
            # No score scaling in T5: q carries it, so q and k are sized for O(1) scores.
            gain = 0.5 if n != "v" else 1.0
            w[p + "0.SelfAttention.%s.weight" % n] = _randn(g, I, D, std=D ** -0.5 * gain)
        w[p + "0.SelfAttention.o.weight"] = _randn(g, D, I, std=I ** -0.5)
        w[p + "1.layer_norm.weight"] = _randn(g, D, std=0.1, mean=1.0)
        w[p + "1.DenseReluDense.wi_0.weight"] = _randn(g, F, D, std=D ** -0.5)
        w[p + "1.DenseReluDense.wi_1.weight"] = _randn(g, F, D, std=D ** -0.5)
        w[p + "1.DenseReluDense.wo.weight"] = _randn(g, D, F, std=F ** -0.5)
    w["encoder.final_layer_norm.weight"] = _randn(g, D, std=0.1, mean=1.0)
    return {k: v.to(dtype) for k, v in w.items()}


def _as64(w):
    return {k: v.to(torch.float64) for k, v in w.items()}


def _text(g, n, lo, hi):
    return torch.randint(lo, hi, (n,), generator=g).tolist()


def clip_l_ids(seed):
    """EOS (999, the largest id) padding as CLIP-L's tokenizer pads; BOS 998. The text holds
    id 2 (= the config's eos_token_id) so that the first-EOS rule would pick another token."""
    g = torch.Generator().manual_seed(seed)
    r0 = [998] + _text(g, 4, 3, 997) + [2] + _text(g, 5, 3, 997) + [999]
    r0 += [999] * (77 - len(r0))
    r1 = [998] + _text(g, 30, 3, 997) + [2] + _text(g, 44, 3, 997) + [999]  # truncated: EOS at 76
    short = [[998, 17, 2, 400, 999, 999, 999]]
    return torch.tensor([r0, r1], dtype=torch.int32), torch.tensor(short, dtype=torch.int32)


def clip_g_ids(seed):
    """Pad 0 as CLIP-G's tokenizer pads; EOS 997; the text holds 999 (> EOS), so the argmax rule
    would pick another token; row 2 has no EOS (transformers then pools position 0)."""
    g = torch.Generator().manual_seed(seed)
    r0 = [998] + _text(g, 6, 3, 990) + [999] + _text(g, 5, 3, 990) + [997]
    r0 += [0] * (77 - len(r0))
    r1 = [998] + _text(g, 20, 3, 990) + [999, 999] + _text(g, 17, 3, 990) + [997, 997]
    r1 += [0] * (77 - len(r1))
    r2 = [998] + _text(g, 10, 3, 990) + [999] + [0] * 65
    short = [[998, 999, 5, 997, 0, 0, 0]]
    return torch.tensor([r0, r1, r2], dtype=torch.int32), torch.tensor(short, dtype=torch.int32)


def t5_ids(seed, rows, n):
    """T5's tokenizer: text, EOS 1, then pad 0 up to n (256 in SD3)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for length in rows:
        r = _text(g, length, 2, 1000) + [1]
        out.append((r + [0] * n)[:n])
    return torch.tensor(out, dtype=torch.int32)


def write_config(folder, cfg):
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def clip_case(io, tag, w64, cfg, ids):
    r = te.clip_text_forward(w64, te.ClipConfig(cfg), ids)
    f32 = lambda t: t.to(torch.float32).contiguous()  # noqa: E731
    io[tag + ".input_ids"] = ids
    io[tag + ".hidden_states"] = f32(torch.stack(r["hidden_states"]))
    io[tag + ".last_hidden_state"] = f32(r["last_hidden_state"])
    io[tag + ".pooled"] = f32(r["pooled"])
    io[tag + ".text_embeds"] = f32(r["text_embeds"])
    io[tag + ".pool_positions"] = r["pool_positions"].to(torch.int32)


def make_clip(name, cfg, seed, dtype, ids_fn):
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    w = clip_weights(cfg, seed, dtype)
    write_config(folder, cfg)
    st_io.save(os.path.join(folder, "model.safetensors"), w, {"format": "pt"})
    w64 = _as64(w)
    io = {}
    full, short = ids_fn(seed + 1)
    clip_case(io, "n77", w64, cfg, full)
    clip_case(io, "n7", w64, cfg, short)
    st_io.save(os.path.join(folder, "io.safetensors"), io)
    pos = io["n77.pool_positions"].tolist()
    print("%s: pooled positions %s" % (name, pos))
    return pos


def make_t5(seed):
    folder = os.path.join(OUT, "t5")
    os.makedirs(folder, exist_ok=True)
    w = t5_weights(T5, seed, torch.bfloat16)
    write_config(folder, T5)
    st_io.save(os.path.join(folder, "model.safetensors"), w, {"format": "pt"})
    w64 = _as64(w)
    c = te.T5Config(T5)
    io = {}
    for tag, rows, n in (("n256", [37, 300], 256), ("n20", [7], 20)):
        ids = t5_ids(seed + n, rows, n)
        r = te.t5_encoder_forward(w64, c, ids)
        io[tag + ".input_ids"] = ids
        io[tag + ".last_hidden_state"] = r["last_hidden_state"].to(torch.float32).contiguous()
        if n == 20:
            hs = torch.stack(r["hidden_states"])
            io[tag + ".hidden_states"] = hs.to(torch.float32).contiguous()
            io[tag + ".bias"] = r["bias"].to(torch.float32).contiguous()
    rel = torch.arange(-1000, 1001, dtype=torch.long)
    table = te.t5_relative_position_bucket(rel, c.num_buckets, c.max_distance)
    # compute_bias evaluates the buckets on an [N, N] tensor, where vectorised and scalar log
    # paths may both run: check that it agrees with the 1-D table on every diagonal.
    n = 256
    mat = te.t5_relative_position_bucket(
        torch.arange(n)[None, :] - torch.arange(n)[:, None], c.num_buckets, c.max_distance)
    for i in range(n):
        for j in range(n):
            assert mat[i, j] == table[j - i + 1000], (i, j)
    io["buckets.relative_position"] = rel.to(torch.int32)
    io["buckets.bucket"] = table.to(torch.int32)
    st_io.save(os.path.join(folder, "io.safetensors"), io)


def _rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def check_against_transformers():
    """Loads the fixture folders with transformers' own classes (where transformers is
    installed, e.g. on the GPU machine) and prints the relative error of each stored output."""
    import transformers
    from transformers import CLIPTextModelWithProjection, T5EncoderModel

    print("transformers", transformers.__version__, "torch", torch.__version__)
    for name in ("clip_l", "clip_g"):
        folder = os.path.join(OUT, name)
        m = CLIPTextModelWithProjection.from_pretrained(folder, torch_dtype=torch.float32).eval()
        io = st_io.load(os.path.join(folder, "io.safetensors"))
        for tag in ("n77", "n7"):
            with torch.no_grad():
                o = m(input_ids=io[tag + ".input_ids"].long(), output_hidden_states=True)
            hs = torch.stack(o.hidden_states)
            print("%s %s: hidden_states %.2e last %.2e text_embeds %.2e" % (
                name, tag, _rel(hs, io[tag + ".hidden_states"]),
                _rel(o.last_hidden_state, io[tag + ".last_hidden_state"]),
                _rel(o.text_embeds, io[tag + ".text_embeds"])))
    folder = os.path.join(OUT, "t5")
    m = T5EncoderModel.from_pretrained(folder, torch_dtype=torch.float32).eval()
    io = st_io.load(os.path.join(folder, "io.safetensors"))
    for tag in ("n256", "n20"):
        with torch.no_grad():
            o = m(input_ids=io[tag + ".input_ids"].long())
        print("t5 %s: last_hidden_state %.2e" % (tag, _rel(o.last_hidden_state,
                                                          io[tag + ".last_hidden_state"])))
    attn = m.encoder.block[0].layer[0].SelfAttention
    rel = io["buckets.relative_position"].long()
    got = attn._relative_position_bucket(rel, True, 32, 128)
    print("t5 buckets: %d of %d differ" % (int((got != io["buckets.bucket"].long()).sum()),
                                           rel.numel()))


def main():
    if "--check-transformers" in sys.argv[1:]:
        check_against_transformers()
        return
    torch.manual_seed(0)
    pl = make_clip("clip_l", CLIP_L, 1000, torch.float32, clip_l_ids)
    pg = make_clip("clip_g", CLIP_G, 2000, torch.float16, clip_g_ids)
    # The cases must exercise what they claim: legacy rule at the EOS run, first-EOS rule, no EOS.
    assert pl == [11, 76], pl
    assert pg == [13, 40, 0], pg
    make_t5(3000)
    for d in ("clip_l", "clip_g", "t5"):
        for f in ("config.json", "model.safetensors", "io.safetensors"):
            p = os.path.join(OUT, d, f)
            print("%-50s %7d bytes" % (p, os.path.getsize(p)))


if __name__ == "__main__":
    main()
