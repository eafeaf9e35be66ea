"""make_tiny_model.py - writes a tiny random-weight SD3.5-layout pipeline folder.

    /usr/bin/python3 tools/make_tiny_model.py [OUT_DIR]      (default tests/fixtures/tiny_model)

The folder is laid out exactly as diffusers saves a StableDiffusion3Pipeline (model_index.json,
transformer/, text_encoder/, text_encoder_2/, text_encoder_3/, tokenizer/, tokenizer_2/,
tokenizer_3/, vae/, scheduler/), with every tensor the real classes hold, at toy widths, so that
the whole text-to-image pipeline (tokenizers, CLIP-L, CLIP-G, T5, the MMDiT with a mixed
softmax / TTT map, the sampler and the VAE decoder) runs in well under a second on a CPU.
Widths line up as in SD3: CLIP-L hidden (16) + CLIP-G hidden (24) = 40 channels, zero-padded to
T5's d_model (48) = joint_attention_dim; pooled_projection_dim 32 = CLIP-L projection (12) +
CLIP-G projection (20). The tokenizers are the real CLIP BPE files and the test T5 Unigram
tokenizer of tests/fixtures/tokenizers/, so the CLIP embeddings keep the real vocabulary size
(49408 rows: stored F16 to keep the folder small; the loaders widen it).

Deterministic: every tensor comes from torch.Generator seeds fixed below, configs are written with
json.dump(indent=2, sort_keys=True) and weights with st_io's byte-stable writer, so two runs give
identical files. tests/fixtures/tiny_model/README.md documents the result.
"""
import json
import os
import shutil
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "reference"))
import mmdit  # noqa: E402
import st_io  # noqa: E402
import vae  # noqa: E402

TOKENIZERS = os.path.join(ROOT, "tests", "fixtures", "tokenizers")

MODEL_INDEX = {
    "_class_name": "StableDiffusion3Pipeline",
    "_diffusers_version": "0.31.0.dev0",
    "feature_extractor": [None, None],
    "image_encoder": [None, None],
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "text_encoder_3": ["transformers", "T5EncoderModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "tokenizer_3": ["transformers", "T5TokenizerFast"],
    "transformer": ["diffusers", "SD3Transformer2DModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}

# SD3.5-Medium's structure at toy width: MMDiT-X (attn2) in the first blocks, a TTT map that
# mixes every kind of module: block 0 softmax attn + TTT attn2, block 1 softmax attn + softmax
# attn2, blocks 2-3 TTT joint attn (block 3 is the context_pre_only last block).
TRANSFORMER = {
    "_class_name": "SD3Transformer2DModel",
    "_diffusers_version": "0.31.0.dev0",
    "attention_head_dim": 16,
    "caption_projection_dim": 32,
    "dual_attention_layers": [0, 1],
    "in_channels": 16,
    "joint_attention_dim": 48,
    "num_attention_heads": 2,
    "num_layers": 4,
    "out_channels": 16,
    "patch_size": 2,
    "pooled_projection_dim": 32,
    "pos_embed_max_size": 16,
    "qk_norm": "rms_norm",
    "sample_size": 8,
    "ttt": {"modules": ["transformer_blocks.0.attn2", "transformer_blocks.2.attn",
                        "transformer_blocks.3.attn"]},
}

# transformers' CLIPTextConfig as SD3.5's text_encoder/ and text_encoder_2/ save it (eos_token_id
# 2: the legacy argmax pooling rule; CLIP-L quick_gelu, CLIP-G gelu).
CLIP_COMMON = {
    "architectures": ["CLIPTextModelWithProjection"], "attention_dropout": 0.0,
    "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2, "initializer_factor": 1.0,
    "initializer_range": 0.02, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
    "model_type": "clip_text_model", "pad_token_id": 1, "torch_dtype": "float16",
    "transformers_version": "4.41.2", "vocab_size": 49408,
}
CLIP_L = dict(CLIP_COMMON, hidden_act="quick_gelu", hidden_size=16, intermediate_size=32,
              num_attention_heads=2, num_hidden_layers=3, projection_dim=12)
CLIP_G = dict(CLIP_COMMON, hidden_act="gelu", hidden_size=24, intermediate_size=48,
              num_attention_heads=3, num_hidden_layers=3, projection_dim=20)

# T5 v1.1 encoder (gated-gelu), vocabulary of the test T5 tokenizer (2100 ids, added tokens
# included), attention width 4 x 8 = 32 != d_model 48.
T5 = {
    "architectures": ["T5EncoderModel"], "classifier_dropout": 0.0, "d_ff": 64, "d_kv": 8,
    "d_model": 48, "decoder_start_token_id": 0, "dense_act_fn": "gelu_new", "dropout_rate": 0.1,
    "eos_token_id": 1, "feed_forward_proj": "gated-gelu", "initializer_factor": 1.0,
    "is_encoder_decoder": True, "is_gated_act": True, "layer_norm_epsilon": 1e-06,
    "model_type": "t5", "num_decoder_layers": 2, "num_heads": 4, "num_layers": 2,
    "output_past": True, "pad_token_id": 0, "relative_attention_max_distance": 128,
    "relative_attention_num_buckets": 32, "tie_word_embeddings": False,
    "torch_dtype": "float16", "transformers_version": "4.41.2", "use_cache": True,
    "vocab_size": 2100,
}

# SD3's AutoencoderKL at toy width: 4 levels (3 upsamplers: 8x), 16 latent channels, no
# (post-)quant conv, mid attention, layers_per_block 2, groups of 2 and 4 channels.
VAE = {
    "_class_name": "AutoencoderKL", "_diffusers_version": "0.31.0.dev0", "act_fn": "silu",
    "block_out_channels": [8, 8, 16, 16], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "force_upcast": True, "in_channels": 3, "latent_channels": 16, "latents_mean": None,
    "latents_std": None, "layers_per_block": 2, "mid_block_add_attention": True,
    "norm_num_groups": 4, "out_channels": 3, "sample_size": 64, "scaling_factor": 1.5305,
    "shift_factor": 0.0609, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "use_post_quant_conv": False, "use_quant_conv": False,
}

SCHEDULER = {
    "_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.31.0.dev0",
    "num_train_timesteps": 1000, "shift": 3.0,
}

# (file, dtype stored) per component. SD3.5 ships its text encoders in F16; the transformer here
# is BF16 and the VAE F16, so that loading exercises both conversions.
DTYPES = {"transformer": torch.bfloat16, "text_encoder": torch.float16,
          "text_encoder_2": torch.float16, "text_encoder_3": torch.float16,
          "vae": torch.float16}


def _randn(g, *shape, std=1.0, mean=0.0):
    return torch.randn(*shape, generator=g, dtype=torch.float32) * std + mean


def _uniform(g, shape, bound):
    return (torch.rand(*shape, generator=g, dtype=torch.float32) * 2.0 - 1.0) * bound


def transformer_weights(cfg_dict, seed):
    """Every Linear / Conv2d weight and bias U(+-1/sqrt(fan_in)) (PyTorch's default init, but
    the adaLN and output layers are not zeroed), RMSNorm gains U(0.5, 1.5), the real sin-cos
    pos_embed buffer; TTT tensors: w1, w2 N(0, 0.2^2), convs U(+-1/3)."""
    cfg = mmdit.Config(cfg_dict)
    g = torch.Generator().manual_seed(seed)
    shapes = dict(mmdit.param_shapes(cfg))
    w = {}
    for name, shape in mmdit.param_shapes(cfg):
        if name == "pos_embed.pos_embed":
            w[name] = mmdit.pos_embed_table(cfg)
        elif name.endswith((".w1", ".w2")):
            w[name] = _randn(g, *shape, std=0.2)
        elif "_conv." in name:
            w[name] = _uniform(g, shape, 1.0 / 3.0)
        elif ".norm_" in name:
            w[name] = 1.0 + _uniform(g, shape, 0.5)
        else:
            wname = name[:-len(".bias")] + ".weight" if name.endswith(".bias") else name
            fan_in = 1
            for s in shapes[wname][1:]:
                fan_in *= s
            w[name] = _uniform(g, shape, fan_in ** -0.5)
    return w


def clip_weights(cfg, seed):
    """Scaled so that attention is far from uniform and every layer matters."""
    g = torch.Generator().manual_seed(seed)
    C, F = cfg["hidden_size"], cfg["intermediate_size"]
    p = "text_model."
    w = {p + "embeddings.token_embedding.weight": _randn(g, cfg["vocab_size"], C),
         p + "embeddings.position_embedding.weight":
             _randn(g, cfg["max_position_embeddings"], C, std=0.5)}
    for i in range(cfg["num_hidden_layers"]):
        q = "%sencoder.layers.%d." % (p, i)
        for n in ("layer_norm1", "layer_norm2"):
            w[q + n + ".weight"] = _randn(g, C, std=0.1, mean=1.0)
            w[q + n + ".bias"] = _randn(g, C, std=0.1)
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            gain = 2.0 if n in ("q_proj", "k_proj") else 1.0
            w[q + "self_attn." + n + ".weight"] = _randn(g, C, C, std=C ** -0.5 * gain)
            w[q + "self_attn." + n + ".bias"] = _randn(g, C, std=0.1)
        w[q + "mlp.fc1.weight"] = _randn(g, F, C, std=C ** -0.5)
        w[q + "mlp.fc1.bias"] = _randn(g, F, std=0.1)
        w[q + "mlp.fc2.weight"] = _randn(g, C, F, std=F ** -0.5)
        w[q + "mlp.fc2.bias"] = _randn(g, C, std=0.1)
    w[p + "final_layer_norm.weight"] = _randn(g, C, std=0.1, mean=1.0)
    w[p + "final_layer_norm.bias"] = _randn(g, C, std=0.1)
    w["text_projection.weight"] = _randn(g, cfg["projection_dim"], C, std=C ** -0.5)
    return w


def t5_weights(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    D, I, F = cfg["d_model"], cfg["num_heads"] * cfg["d_kv"], cfg["d_ff"]
    w = {"shared.weight": _randn(g, cfg["vocab_size"], D, std=2.0),
         "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight":
             _randn(g, cfg["relative_attention_num_buckets"], cfg["num_heads"])}
    for i in range(cfg["num_layers"]):
        p = "encoder.block.%d.layer." % i
        w[p + "0.layer_norm.weight"] = _randn(g, D, std=0.1, mean=1.0)
        for n in ("q", "k", "v"):
            gain = 0.5 if n != "v" else 1.0  # T5 has no score scaling: q and k carry it
            w[p + "0.SelfAttention.%s.weight" % n] = _randn(g, I, D, std=D ** -0.5 * gain)
        w[p + "0.SelfAttention.o.weight"] = _randn(g, D, I, std=I ** -0.5)
        w[p + "1.layer_norm.weight"] = _randn(g, D, std=0.1, mean=1.0)
        w[p + "1.DenseReluDense.wi_0.weight"] = _randn(g, F, D, std=D ** -0.5)
        w[p + "1.DenseReluDense.wi_1.weight"] = _randn(g, F, D, std=D ** -0.5)
        w[p + "1.DenseReluDense.wo.weight"] = _randn(g, D, F, std=F ** -0.5)
    w["encoder.final_layer_norm.weight"] = _randn(g, D, std=0.1, mean=1.0)
    return w


def vae_encoder_shapes(cfg):
    """{name: shape} of diffusers' Encoder (unused by tttd, present so that the folder holds a
    complete AutoencoderKL): conv_in, down blocks (layers_per_block resnets, a stride-2 conv
    except after the last), the mid block, conv_norm_out, conv_out to 2 x latent channels."""
    chans, lpb = cfg["block_out_channels"], cfg["layers_per_block"]
    shapes = {}

    def conv(name, o, i, k):
        shapes[name + ".weight"] = (o, i, k, k)
        shapes[name + ".bias"] = (o,)

    def norm(name, c):
        shapes[name + ".weight"] = (c,)
        shapes[name + ".bias"] = (c,)

    def res(p, cin, cout):
        norm(p + ".norm1", cin)
        conv(p + ".conv1", cout, cin, 3)
        norm(p + ".norm2", cout)
        conv(p + ".conv2", cout, cout, 3)
        if cin != cout:
            conv(p + ".conv_shortcut", cout, cin, 1)

    conv("encoder.conv_in", chans[0], cfg["in_channels"], 3)
    prev = chans[0]
    for i, c in enumerate(chans):
        for j in range(lpb):
            res("encoder.down_blocks.%d.resnets.%d" % (i, j), prev if j == 0 else c, c)
        if i < len(chans) - 1:
            conv("encoder.down_blocks.%d.downsamplers.0.conv" % i, c, c, 3)
        prev = c
    top = chans[-1]
    res("encoder.mid_block.resnets.0", top, top)
    a = "encoder.mid_block.attentions.0"
    norm(a + ".group_norm", top)
    for lin in ("to_q", "to_k", "to_v", "to_out.0"):
        shapes["%s.%s.weight" % (a, lin)] = (top, top)
        shapes["%s.%s.bias" % (a, lin)] = (top,)
    res("encoder.mid_block.resnets.1", top, top)
    norm("encoder.conv_norm_out", top)
    conv("encoder.conv_out", 2 * cfg["latent_channels"], top, 3)
    return shapes


def vae_weights(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    # The decoder as the VAE fixtures make it (conv_out x1.5: some values are clamped).
    w = vae.random_weights(cfg, g, out_gain=1.5)
    for name, shape in vae_encoder_shapes(cfg).items():
        w[name] = _randn(g, *shape, std=0.05)
    return w


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def write_component(out, name, cfg, cfg_file, weights, weight_file):
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    write_json(os.path.join(folder, cfg_file), cfg)
    stored = {k: v.to(DTYPES[name]) for k, v in weights.items()}
    st_io.save(os.path.join(folder, weight_file), stored, {"format": "pt"})


def copy_tokenizers(out):
    """tokenizer/ (CLIP-L: pads with <|endoftext|>), tokenizer_2/ (CLIP-G: pads with "!", id 0;
    its vocab.json and merges.txt are links to tokenizer/'s, as the files are identical) and
    tokenizer_3/ (the test T5 Unigram tokenizer.json)."""
    t1, t2, t3 = (os.path.join(out, n) for n in ("tokenizer", "tokenizer_2", "tokenizer_3"))
    for d in (t1, t2, t3):
        os.makedirs(d, exist_ok=True)
    src = os.path.join(TOKENIZERS, "clip_l")
    for f in ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json",
              "LICENSE.openai-clip"):
        shutil.copyfile(os.path.join(src, f), os.path.join(t1, f))
    src = os.path.join(TOKENIZERS, "clip_g")
    for f in ("special_tokens_map.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(src, f), os.path.join(t2, f))
    for f in ("vocab.json", "merges.txt"):
        link = os.path.join(t2, f)
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.join("..", "tokenizer", f), link)
    src = os.path.join(TOKENIZERS, "t5")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(src, f), os.path.join(t3, f))


def make(out):
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, "model_index.json"), MODEL_INDEX)
    write_component(out, "transformer", TRANSFORMER, "config.json",
                    transformer_weights(TRANSFORMER, 11), "diffusion_pytorch_model.safetensors")
    write_component(out, "text_encoder", CLIP_L, "config.json", clip_weights(CLIP_L, 12),
                    "model.safetensors")
    write_component(out, "text_encoder_2", CLIP_G, "config.json", clip_weights(CLIP_G, 13),
                    "model.safetensors")
    write_component(out, "text_encoder_3", T5, "config.json", t5_weights(T5, 14),
                    "model.safetensors")
    write_component(out, "vae", VAE, "config.json", vae_weights(VAE, 15),
                    "diffusion_pytorch_model.safetensors")
    os.makedirs(os.path.join(out, "scheduler"), exist_ok=True)
    write_json(os.path.join(out, "scheduler", "scheduler_config.json"), SCHEDULER)
    copy_tokenizers(out)


def main():
    torch.set_num_threads(1)
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures",
                                                             "tiny_model")
    make(out)
    total = 0
    for d, _, files in sorted(os.walk(out)):
        for f in sorted(files):
            p = os.path.join(d, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    print("%s: %.2f MB" % (out, total / 1e6))


if __name__ == "__main__":
    main()
