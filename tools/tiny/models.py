"""models.py - the tiny model's components as trainable torch modules over our PyTorch reference.

Each module holds its tensors as parameters under exactly the checkpoint's names (diffusers' and
transformers' state-dict names) and runs the reference's functional forward over them:
  Clip   - transformers' CLIPTextModelWithProjection: text_encoders.clip_text_forward's steps,
           from its own pieces (layer norm, linear, attention, activations, pooling rule)
  MMDiT  - diffusers' SD3Transformer2DModel, softmax or TTT per module: mmdit.forward
  VAE    - diffusers' AutoencoderKL: the encoder here (diffusers' Encoder: conv_in, down blocks
           of ResnetBlock2D with a stride-2 conv after a (0, 1, 0, 1) zero pad, mid block with
           attention, GroupNorm, SiLU, conv_out to mean and log-variance), vae.decoder
so that what is trained is, by construction, what the reference (checked against diffusers and
against tttd) computes. Three substitutions make it run well on a GPU, same math: the softmax
attentions become F.scaled_dot_product_attention where torch has it (>= 2.0), and the two
places where the reference makes a tensor on the CPU inside a forward (the timestep frequency
table, CLIP's causal mask and pooled-row index) make it on the input's device instead.

Also here: the configs (as the exported config.json files hold them), initialisation, the prompt
encoding of the pipeline (one CLIP used as both text_encoder and text_encoder_2, T5 absent:
zeros), the Python twin of `tttd linearize`'s initialisation (engine/models/linearize.h), and the
export of diffusers-layout folders.
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
sys.path.insert(0, os.path.join(HERE, ".."))
import mmdit  # noqa: E402
import rng as prng  # noqa: E402
import st_io  # noqa: E402
import text_encoders as te  # noqa: E402
import vae as vae_ref  # noqa: E402
from make_tiny_model import MODEL_INDEX, vae_encoder_shapes  # noqa: E402

# ---- faster attention where torch has it (the reference's math, fused) ----


def _autocast_dtype():
    """The dtype autocast computes in, or None when it is off (across torch versions)."""
    try:
        on = torch.is_autocast_enabled("cuda")
    except TypeError:
        on = torch.is_autocast_enabled()
    if not on:
        return None
    try:
        return torch.get_autocast_dtype("cuda")
    except AttributeError:
        return torch.get_autocast_gpu_dtype()


def _same_dtype(*ts):
    """The reference mixes dtypes under autocast (an RMSNorm gain or a bias in float32 promotes
    a bfloat16 product): SDPA wants one, autocast's when it is on."""
    dt = _autocast_dtype() or ts[0].dtype
    return [t.to(dt) for t in ts]


_REF_MMDIT_ATTENTION = mmdit.softmax_attention
_SDPA_OK = [hasattr(F, "scaled_dot_product_attention")]


def _clip_attention(q, k, v, heads, scale, causal=False, bias=None):
    """text_encoders._attention with its causal mask made on the tensors' device (the
    reference makes it on the CPU, which a CUDA tensor cannot be masked with)."""
    B, N, C = q.shape
    d = C // heads
    q, k, v = (t.reshape(B, N, heads, d).transpose(1, 2) for t in (q, k, v))
    s = (q @ k.transpose(-1, -2)) * scale
    if bias is not None:
        s = s + bias.unsqueeze(0)
    if causal:
        mask = torch.triu(torch.ones(N, N, dtype=torch.bool, device=q.device), diagonal=1)
        s = s.masked_fill(mask, float("-inf"))
    return (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, N, C)


def _sdpa_mmdit(q, k, v):
    if _SDPA_OK[0]:
        try:
            return F.scaled_dot_product_attention(*_same_dtype(q, k, v))
        except (RuntimeError, TypeError) as e:  # fall back for good, once
            print("models: scaled_dot_product_attention failed (%s); written-out attention" % e)
            _SDPA_OK[0] = False
    return _REF_MMDIT_ATTENTION(q, k, v)


def _sdpa_clip(q, k, v, heads, scale, causal=False, bias=None):
    if _SDPA_OK[0]:
        try:
            B, N, C = q.shape
            d = C // heads
            qh, kh, vh = (t.reshape(B, N, heads, d).transpose(1, 2)
                          for t in _same_dtype(q, k, v))
            o = F.scaled_dot_product_attention(
                qh, kh, vh, attn_mask=None if bias is None else bias.unsqueeze(0).to(qh.dtype),
                is_causal=causal, scale=scale)
            return o.transpose(1, 2).reshape(B, N, C)
        except (RuntimeError, TypeError) as e:
            print("models: scaled_dot_product_attention failed (%s); written-out attention" % e)
            _SDPA_OK[0] = False
    return _clip_attention(q, k, v, heads, scale, causal, bias)


_REF_TIMESTEP_PROJ = mmdit.timestep_proj


def _timestep_proj(t, dim=256):
    """mmdit.timestep_proj with its frequency table made on t's device (the reference makes it
    on the CPU); on the CPU the reference itself."""
    if t.device.type == "cpu":
        return _REF_TIMESTEP_PROJ(t, dim)
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(0, half, dtype=torch.float32, device=t.device)
    args = t[:, None].float() * torch.exp(exponent / half)[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


mmdit.timestep_proj = _timestep_proj
te._attention = _sdpa_clip if _SDPA_OK[0] else _clip_attention
if _SDPA_OK[0]:
    mmdit.softmax_attention = _sdpa_mmdit


class Named(nn.Module):
    """Parameters (and fixed buffers) under checkpoint names; sd() gives the name -> tensor dict
    the reference functions take."""

    def __init__(self, tensors, fixed=()):
        super().__init__()
        self._names = sorted(tensors)
        self._fixed = set(fixed)
        for name in self._names:
            key = name.replace(".", "__")
            if name in self._fixed:
                self.register_buffer(key, tensors[name].float().clone())
            else:
                self.register_parameter(key, nn.Parameter(tensors[name].float().clone()))

    def sd(self):
        return {n: getattr(self, n.replace(".", "__")) for n in self._names}

    def export(self, dtype=torch.float16):
        return {n: t.detach().to("cpu", dtype).contiguous() for n, t in self.sd().items()}


# ---- configs ----

def clip_config(hidden, layers, heads, ffn, proj, vocab_size, max_len, bos, eos):
    """transformers' CLIPTextConfig as config.json holds it (eos_token_id is the real one, so
    pooling reads the first <|endoftext|>)."""
    return {"architectures": ["CLIPTextModelWithProjection"], "attention_dropout": 0.0,
            "bos_token_id": bos, "dropout": 0.0, "eos_token_id": eos, "hidden_act": "gelu",
            "hidden_size": hidden, "initializer_factor": 1.0, "initializer_range": 0.02,
            "intermediate_size": ffn, "layer_norm_eps": 1e-05,
            "max_position_embeddings": max_len, "model_type": "clip_text_model",
            "num_attention_heads": heads, "num_hidden_layers": layers, "pad_token_id": eos,
            "projection_dim": proj, "torch_dtype": "float16", "transformers_version": "4.41.2",
            "vocab_size": vocab_size}


def transformer_config(layers, heads, head_dim, dual_layers, joint_dim, pooled_dim,
                       latent_size, ttt=None):
    cfg = {"_class_name": "SD3Transformer2DModel", "_diffusers_version": "0.31.0.dev0",
           "attention_head_dim": head_dim, "caption_projection_dim": heads * head_dim,
           "dual_attention_layers": list(dual_layers), "in_channels": 16,
           "joint_attention_dim": joint_dim, "num_attention_heads": heads,
           "num_layers": layers, "out_channels": 16, "patch_size": 2,
           "pooled_projection_dim": pooled_dim,
           # up to twice the native side (256 x 256 pixels) without refusing
           "pos_embed_max_size": latent_size,
           "qk_norm": "rms_norm", "sample_size": latent_size}
    if ttt:
        cfg["ttt"] = ttt
    return cfg


def vae_config(channels, layers_per_block, groups, scaling=1.0, shift=0.0):
    return {"_class_name": "AutoencoderKL", "_diffusers_version": "0.31.0.dev0",
            "act_fn": "silu", "block_out_channels": list(channels),
            "down_block_types": ["DownEncoderBlock2D"] * len(channels), "force_upcast": True,
            "in_channels": 3, "latent_channels": 16, "latents_mean": None,
            "latents_std": None, "layers_per_block": layers_per_block,
            "mid_block_add_attention": True, "norm_num_groups": groups, "out_channels": 3,
            "sample_size": 128, "scaling_factor": scaling, "shift_factor": shift,
            "up_block_types": ["UpDecoderBlock2D"] * len(channels),
            "use_post_quant_conv": False, "use_quant_conv": False}


def scheduler_config(shift):
    return {"_class_name": "FlowMatchEulerDiscreteScheduler",
            "_diffusers_version": "0.31.0.dev0", "num_train_timesteps": 1000, "shift": shift}


# ---- initialisation ----

def _uniform(g, shape, bound):
    return (torch.rand(*shape, generator=g) * 2.0 - 1.0) * bound


def init_clip(cfg, g):
    """transformers' CLIP init: embeddings N(0, 0.02), linears N(0, 0.02) with zero biases,
    LayerNorms 1 / 0, text_projection N(0, hidden^-1/2)."""
    C, Fd = cfg["hidden_size"], cfg["intermediate_size"]
    p = "text_model."
    w = {p + "embeddings.token_embedding.weight": torch.randn(cfg["vocab_size"], C, generator=g)
         * 0.02,
         p + "embeddings.position_embedding.weight":
             torch.randn(cfg["max_position_embeddings"], C, generator=g) * 0.02}
    for i in range(cfg["num_hidden_layers"]):
        q = "%sencoder.layers.%d." % (p, i)
        for n in ("layer_norm1", "layer_norm2"):
            w[q + n + ".weight"], w[q + n + ".bias"] = torch.ones(C), torch.zeros(C)
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            w[q + "self_attn." + n + ".weight"] = torch.randn(C, C, generator=g) * 0.02
            w[q + "self_attn." + n + ".bias"] = torch.zeros(C)
        w[q + "mlp.fc1.weight"] = torch.randn(Fd, C, generator=g) * 0.02
        w[q + "mlp.fc1.bias"] = torch.zeros(Fd)
        w[q + "mlp.fc2.weight"] = torch.randn(C, Fd, generator=g) * 0.02
        w[q + "mlp.fc2.bias"] = torch.zeros(C)
    w[p + "final_layer_norm.weight"], w[p + "final_layer_norm.bias"] = torch.ones(C), \
        torch.zeros(C)
    w["text_projection.weight"] = torch.randn(cfg["projection_dim"], C, generator=g) * C ** -0.5
    return w


def init_transformer(cfg_dict, g):
    """DiT's adaLN-Zero recipe on diffusers' tensors: linears Xavier-uniform with zero biases,
    the timestep MLP N(0, 0.02), every adaLN projection (norm1, norm1_context, norm_out) and
    proj_out zero, so each block starts as the identity; RMSNorm gains 1; the fixed sin-cos
    pos_embed table. TTT tensors (if the config has a map) as tttd linearize makes them."""
    cfg = mmdit.Config(cfg_dict)
    w = {}
    for name, shape in mmdit.param_shapes(cfg, with_ttt=False):
        if name == "pos_embed.pos_embed":
            w[name] = mmdit.pos_embed_table(cfg)
        elif name.endswith(".bias") or ".norm1" in name or name.startswith(("norm_out.",
                                                                             "proj_out.")):
            w[name] = torch.zeros(shape)
        elif ".norm_" in name:
            w[name] = torch.ones(shape)
        elif name.startswith("time_text_embed.timestep_embedder"):
            w[name] = torch.randn(*shape, generator=g) * 0.02
        else:
            fan_out, fan_in = shape[0], int(torch.tensor(shape[1:]).prod())
            w[name] = _uniform(g, shape, math.sqrt(6.0 / (fan_in + fan_out)))
    return w


def init_vae(cfg, g):
    """PyTorch's default Conv2d / Linear init (U(+-1/sqrt(fan_in)) for weights and biases),
    GroupNorms 1 / 0."""
    shapes = dict(vae_ref.decoder_shapes(cfg))
    shapes.update(vae_encoder_shapes(cfg))
    w = {}
    for name in sorted(shapes):
        shape = shapes[name]
        if "norm" in name:
            w[name] = torch.ones(shape) if name.endswith(".weight") else torch.zeros(shape)
            continue
        wshape = shapes[name[:-len(".bias")] + ".weight"] if name.endswith(".bias") else shape
        fan_in = int(torch.tensor(wshape[1:]).prod())
        w[name] = _uniform(g, shape, fan_in ** -0.5)
    # The log-variance half of the encoder's output starts at -6 (std 0.05): with the usual
    # 0 the sampled noise drowns the means and reconstruction learns slowly at first.
    lat = cfg["latent_channels"]
    w["encoder.conv_out.bias"][lat:] = -6.0
    return w


# ---- the Python twin of `tttd linearize` (engine/models/linearize.h) ----

def _normals_at(seed, offset, n):
    """Normals offset .. offset + n - 1 of the project RNG's stream of seed (offset % 4 == 0)."""
    assert offset % 4 == 0
    out = []
    i = offset // 4
    while len(out) < n:
        r0, r1, r2, r3 = prng.block(seed, i)
        out.extend(prng.box_muller(r0, r1))
        out.extend(prng.box_muller(r2, r3))
        i += 1
    return out[:n]


TTT_PARAMS = ["w1", "w2", "q_conv.weight", "q_conv.bias", "k_conv.weight", "k_conv.bias"]


def linearize_init(cfg_dict, seed):
    """{name: float32 tensor} of every TTT tensor the config's map asks for, with the values
    `tttd linearize --seed seed` gives them: stream offset ((2 * block + attn2) * 8 + p) << 40;
    w1, w2 = 0.02 * z (timm trunc_normal_ with absolute bounds +-2: never reached); convs
    U(-1/3, 1/3) as -1/3 + (2/3) * Phi(z), Phi(z) = erfc(-z / sqrt 2) / 2, in double, rounded
    to float."""
    cfg = mmdit.Config(cfg_dict)
    out = {}
    for module in cfg.ttt_modules():
        block = int(module.split(".")[1])
        attn2 = module.endswith("attn2")
        for p, (name, shape) in enumerate(mmdit.ttt_param_shapes(module, cfg.inner, cfg.heads,
                                                                  cfg.head_dim)):
            assert name.endswith(TTT_PARAMS[p])
            n = 1
            for s in shape:
                n *= s
            z = _normals_at(seed, ((2 * block + int(attn2)) * 8 + p) << 40, n)
            if p < 2:
                vals = [min(2.0, max(-2.0, 0.02 * v)) for v in z]
            else:
                b = 1.0 / math.sqrt(9.0)
                vals = [-b + 2.0 * b * (0.5 * math.erfc(-v / math.sqrt(2.0))) for v in z]
            out[name] = torch.tensor(vals, dtype=torch.float32).reshape(shape)
    return out


# ---- modules ----

class Clip(Named):
    def __init__(self, cfg, tensors):
        super().__init__(tensors)
        self.cfg = cfg
        self.ccfg = te.ClipConfig(cfg)

    def forward(self, ids):
        """ids [B, L] -> (penultimate hidden states [B, L, C], projected pooled [B, P]):
        text_encoders.clip_text_forward's hidden_states[-2] and text_embeds, step for step
        from its pieces, with the pooling gather on the ids' device (the reference gathers
        with a CPU index, a host-device sync per call on a GPU)."""
        w, c = self.sd(), self.ccfg
        B, N = ids.shape
        p = "text_model."
        x = w[p + "embeddings.token_embedding.weight"][ids.long()]
        x = x + w[p + "embeddings.position_embedding.weight"][:N].unsqueeze(0)
        hidden = [x]
        act = te.ACTS[c.hidden_act]
        head_dim = c.hidden_size // c.num_attention_heads
        for i in range(c.num_hidden_layers):
            q = "%sencoder.layers.%d." % (p, i)

            def lin(name, h):
                return te._linear(h, w[q + name + ".weight"], w[q + name + ".bias"])

            h = te._layer_norm(x, w[q + "layer_norm1.weight"], w[q + "layer_norm1.bias"],
                               c.layer_norm_eps)
            a = te._attention(lin("self_attn.q_proj", h), lin("self_attn.k_proj", h),
                              lin("self_attn.v_proj", h), c.num_attention_heads,
                              head_dim ** -0.5, causal=True)
            x = x + lin("self_attn.out_proj", a)
            h = te._layer_norm(x, w[q + "layer_norm2.weight"], w[q + "layer_norm2.bias"],
                               c.layer_norm_eps)
            x = x + lin("mlp.fc2", act(lin("mlp.fc1", h)))
            hidden.append(x)
        last = te._layer_norm(x, w[p + "final_layer_norm.weight"], w[p + "final_layer_norm.bias"],
                              c.layer_norm_eps)
        pos = te.clip_pool_positions(c, ids)
        pooled = last[torch.arange(B, device=ids.device), pos.long()]
        return hidden[-2], te._linear(pooled, w["text_projection.weight"])


def encode_prompt(clip, ids, t5_len):
    """The SD3 pipeline's prompt encoding for a folder whose text_encoder and text_encoder_2 are
    the same CLIP and which has no T5: ctx = [h, h] on channels, then t5_len zero tokens
    (diffusers' zeros for a missing T5); pooled = [p, p]."""
    h, p = clip(ids)
    ctx = torch.cat([h, h], dim=-1)
    zeros = ctx.new_zeros(ctx.shape[0], t5_len, ctx.shape[-1])
    return torch.cat([ctx, zeros], dim=1), torch.cat([p, p], dim=-1)


class MMDiT(Named):
    def __init__(self, cfg, tensors):
        super().__init__(tensors, fixed=["pos_embed.pos_embed"])
        self.cfg = cfg
        self.mcfg = mmdit.Config(cfg)

    def forward(self, x, t, ctx, pooled):
        return mmdit.forward(self.sd(), self.mcfg, x, t, ctx, pooled)


class VAE(Named):
    def __init__(self, cfg, tensors):
        super().__init__(tensors)
        self.cfg = cfg
        self.groups = cfg["norm_num_groups"]

    def encode(self, x):
        """x [B, 3, H, W] in [-1, 1] -> (mean, logvar) [B, 16, H/8, W/8] (diffusers' Encoder
        and DiagonalGaussianDistribution's clamp of logvar to [-30, 20])."""
        sd, g = self.sd(), self.groups
        chans, lpb = self.cfg["block_out_channels"], self.cfg["layers_per_block"]
        h = F.conv2d(x, sd["encoder.conv_in.weight"], sd["encoder.conv_in.bias"], padding=1)
        for i in range(len(chans)):
            for j in range(lpb):
                h = vae_ref.resnet(h, sd, "encoder.down_blocks.%d.resnets.%d" % (i, j), g)
            if i < len(chans) - 1:
                p = "encoder.down_blocks.%d.downsamplers.0.conv" % i
                h = F.conv2d(F.pad(h, (0, 1, 0, 1)), sd[p + ".weight"], sd[p + ".bias"],
                             stride=2)
        h = vae_ref.resnet(h, sd, "encoder.mid_block.resnets.0", g)
        h = vae_ref.attention(h, sd, "encoder.mid_block.attentions.0", g)
        h = vae_ref.resnet(h, sd, "encoder.mid_block.resnets.1", g)
        h = F.silu(F.group_norm(h, g, sd["encoder.conv_norm_out.weight"],
                                sd["encoder.conv_norm_out.bias"], eps=vae_ref.EPS))
        h = F.conv2d(h, sd["encoder.conv_out.weight"], sd["encoder.conv_out.bias"], padding=1)
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z):
        """Unscaled latents z -> the decoder's output [B, 3, H, W] (about [-1, 1])."""
        return vae_ref.decoder(z, self.sd(), self.cfg)


# ---- export ----

def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def _link_or_copy(src_rel, dst):
    if os.path.lexists(dst):
        if os.path.isdir(dst) and not os.path.islink(dst):
            import shutil
            shutil.rmtree(dst)
        else:
            os.remove(dst)
    os.symlink(src_rel, dst)


def export_pipeline(out, transformer_cfg, transformer_sd, clip_cfg, clip_sd, vae_cfg, vae_sd,
                    tokenizer, shift, share_from=None, dtype=torch.float16, t5_len=256):
    """A diffusers StableDiffusion3Pipeline folder (the layout of tools/make_tiny_model.py):
    text_encoder/ (the CLIP), text_encoder_2/ and tokenizer_2/ (links to text_encoder/ and
    tokenizer/: the same CLIP serves as both), text_encoder_3/ and tokenizer_3/ null (zeros),
    transformer/, vae/ (encoder and decoder), scheduler/. t5_len other than diffusers' 256 goes to
    model_index.json's "_tttd_max_sequence_length" (tttd reads it; diffusers ignores "_" keys:
    pass max_sequence_length=t5_len to its pipeline). With share_from (the name of a sibling
    folder), every component but the transformer is a link into that folder instead."""
    os.makedirs(out, exist_ok=True)
    index = dict(MODEL_INDEX)
    index["text_encoder_3"] = [None, None]
    index["tokenizer_3"] = [None, None]
    if t5_len != 256:
        index["_tttd_max_sequence_length"] = t5_len
    write_json(os.path.join(out, "model_index.json"), index)
    tdir = os.path.join(out, "transformer")
    os.makedirs(tdir, exist_ok=True)
    write_json(os.path.join(tdir, "config.json"), transformer_cfg)
    st_io.save(os.path.join(tdir, "diffusion_pytorch_model.safetensors"),
               {k: v.to(dtype) for k, v in transformer_sd.items()}, {"format": "pt"})
    if share_from:
        for comp in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae",
                     "scheduler"):
            _link_or_copy(os.path.join("..", share_from, comp), os.path.join(out, comp))
        return
    cdir = os.path.join(out, "text_encoder")
    os.makedirs(cdir, exist_ok=True)
    write_json(os.path.join(cdir, "config.json"), clip_cfg)
    st_io.save(os.path.join(cdir, "model.safetensors"),
               {k: v.to(dtype) for k, v in clip_sd.items()}, {"format": "pt"})
    tokenizer.write_files(os.path.join(out, "tokenizer"))
    _link_or_copy("text_encoder", os.path.join(out, "text_encoder_2"))
    _link_or_copy("tokenizer", os.path.join(out, "tokenizer_2"))
    vdir = os.path.join(out, "vae")
    os.makedirs(vdir, exist_ok=True)
    write_json(os.path.join(vdir, "config.json"), vae_cfg)
    st_io.save(os.path.join(vdir, "diffusion_pytorch_model.safetensors"),
               {k: v.to(dtype) for k, v in vae_sd.items()}, {"format": "pt"})
    sdir = os.path.join(out, "scheduler")
    os.makedirs(sdir, exist_ok=True)
    write_json(os.path.join(sdir, "scheduler_config.json"), scheduler_config(shift))


def folder_bytes(path):
    """Bytes of the regular files under path, links not followed (what git stores)."""
    total = 0
    for d, dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(d, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total
