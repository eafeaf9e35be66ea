"""mmdit.py - the PyTorch reference of diffusers' SD3Transformer2DModel, with TTT attention.

Written from a reading of diffusers (models/transformers/transformer_sd3.py, attention.py
JointTransformerBlock, attention_processor.py JointAttnProcessor2_0, embeddings.py PatchEmbed /
get_2d_sincos_pos_embed / Timesteps / TimestepEmbedding / PixArtAlphaTextProjection,
normalization.py AdaLayerNormZero / SD35AdaLayerNormZeroX / AdaLayerNormContinuous / RMSNorm) and
of DESIGN.md section 4 for the TTT modules. Plain functions over a state dict whose names are
exactly diffusers' (plus tttd's TTT tensors), so that the fixtures can be dumped block by block.

Shapes: B = batch, N = tokens, C = inner dim (heads x head_dim), h = heads, d = head_dim,
Hp x Wp = the patch grid (N_img = Hp * Wp), Nt = text tokens. Everything is float32 on the CPU.
Torch 1.13 has no scaled_dot_product_attention, so softmax attention is written out.
"""
import math

import torch
import torch.nn.functional as F

LN_EPS = 1e-6  # every LayerNorm of the model (no affine) and the per-head RMSNorm
KEY_NORM_EPS = 1.0  # the TTT key instance norm (DESIGN.md section 4, step 2)


class Config:
    """The fields of an SD3Transformer2DModel config.json that the model uses, plus the TTT map."""

    def __init__(self, d):
        self.raw = dict(d)
        self.sample_size = d.get("sample_size", 128)
        self.patch_size = d.get("patch_size", 2)
        self.in_channels = d.get("in_channels", 16)
        out = d.get("out_channels", 16)
        self.out_channels = self.in_channels if out is None else out
        self.num_layers = d.get("num_layers", 18)
        self.head_dim = d.get("attention_head_dim", 64)
        self.heads = d.get("num_attention_heads", 18)
        self.joint_attention_dim = d.get("joint_attention_dim", 4096)
        self.caption_projection_dim = d.get("caption_projection_dim", 1152)
        self.pooled_projection_dim = d.get("pooled_projection_dim", 2048)
        self.pos_embed_max_size = d.get("pos_embed_max_size", 96)
        self.dual = set(d.get("dual_attention_layers") or ())
        self.qk_norm = d.get("qk_norm")
        if self.qk_norm not in (None, "rms_norm"):
            raise ValueError("qk_norm %r is not implemented" % self.qk_norm)
        self.inner = self.heads * self.head_dim
        if self.caption_projection_dim != self.inner:
            raise ValueError("caption_projection_dim must equal heads x head_dim")
        self.ttt_attn, self.ttt_attn2 = ttt_map(d.get("ttt"), self.num_layers, self.dual)

    def ttt_modules(self):
        """The TTT module names, in block order ("transformer_blocks.<i>.attn" / ".attn2")."""
        names = []
        for i in range(self.num_layers):
            if i in self.ttt_attn:
                names.append("transformer_blocks.%d.attn" % i)
            if i in self.ttt_attn2:
                names.append("transformer_blocks.%d.attn2" % i)
        return names


def ttt_map(ttt, num_layers, dual):
    """(blocks whose joint attn is TTT, blocks whose attn2 is TTT), as engine/io/config.h reads it."""
    if not ttt:
        return set(), set()
    if "modules" in ttt:
        attn, attn2 = set(), set()
        for name in ttt["modules"]:
            parts = name.split(".")
            i = int(parts[1])
            if parts[0] != "transformer_blocks" or len(parts) != 3 or not 0 <= i < num_layers:
                raise ValueError("bad TTT module name %r" % name)
            if parts[2] == "attn":
                attn.add(i)
            elif parts[2] == "attn2" and i in dual:
                attn2.add(i)
            else:
                raise ValueError("bad TTT module name %r" % name)
        return attn, attn2
    preset = ttt.get("preset", "none")
    if preset == "none":
        return set(), set()
    if preset == "all":
        return set(range(num_layers)), set(dual)
    if preset == "sd35-t5":  # the paper's SD3.5-T5 map: every attn2, attn of the last 5 blocks
        return set(range(max(0, num_layers - 5), num_layers)), set(dual)
    raise ValueError("unknown TTT preset %r" % preset)


# ---- parameter names and shapes, exactly as diffusers' state_dict ----

def _linear(name, n_in, n_out):
    return [(name + ".weight", (n_out, n_in)), (name + ".bias", (n_out,))]


def _attention(prefix, c, d, qk_norm, added, pre_only):
    p = _linear(prefix + ".to_q", c, c) + _linear(prefix + ".to_k", c, c) + \
        _linear(prefix + ".to_v", c, c)
    if qk_norm:
        p += [(prefix + ".norm_q.weight", (d,)), (prefix + ".norm_k.weight", (d,))]
    if added:
        p += _linear(prefix + ".add_k_proj", c, c) + _linear(prefix + ".add_v_proj", c, c) + \
            _linear(prefix + ".add_q_proj", c, c)
    p += _linear(prefix + ".to_out.0", c, c)
    if added and not pre_only:
        p += _linear(prefix + ".to_add_out", c, c)
    if added and qk_norm:
        p += [(prefix + ".norm_added_q.weight", (d,)), (prefix + ".norm_added_k.weight", (d,))]
    return p


def ttt_param_shapes(module, c, heads, d):
    """The four extra tensors of one TTT module (DESIGN.md section 4)."""
    return [(module + ".w1", (heads, d, d)), (module + ".w2", (heads, d, d)),
            (module + ".q_conv.weight", (c, 1, 3, 3)), (module + ".q_conv.bias", (c,)),
            (module + ".k_conv.weight", (c, 1, 3, 3)), (module + ".k_conv.bias", (c,))]


def param_shapes(cfg, with_ttt=True):
    """[(name, shape)] of every tensor in the checkpoint, in diffusers' module order."""
    c, d, p = cfg.inner, cfg.head_dim, cfg.patch_size
    qk = cfg.qk_norm == "rms_norm"
    out = [("pos_embed.proj.weight", (c, cfg.in_channels, p, p)), ("pos_embed.proj.bias", (c,)),
           ("pos_embed.pos_embed", (1, cfg.pos_embed_max_size ** 2, c))]
    out += _linear("time_text_embed.timestep_embedder.linear_1", 256, c)
    out += _linear("time_text_embed.timestep_embedder.linear_2", c, c)
    out += _linear("time_text_embed.text_embedder.linear_1", cfg.pooled_projection_dim, c)
    out += _linear("time_text_embed.text_embedder.linear_2", c, c)
    out += _linear("context_embedder", cfg.joint_attention_dim, cfg.caption_projection_dim)
    for i in range(cfg.num_layers):
        b = "transformer_blocks.%d" % i
        last = i == cfg.num_layers - 1
        out += _linear(b + ".norm1.linear", c, (9 if i in cfg.dual else 6) * c)
        out += _linear(b + ".norm1_context.linear", c, (2 if last else 6) * c)
        out += _attention(b + ".attn", c, d, qk, True, last)
        if with_ttt and i in cfg.ttt_attn:
            out += ttt_param_shapes(b + ".attn", c, cfg.heads, d)
        if i in cfg.dual:
            out += _attention(b + ".attn2", c, d, qk, False, False)
            if with_ttt and i in cfg.ttt_attn2:
                out += ttt_param_shapes(b + ".attn2", c, cfg.heads, d)
        out += _linear(b + ".ff.net.0.proj", c, 4 * c) + _linear(b + ".ff.net.2", 4 * c, c)
        if not last:
            out += _linear(b + ".ff_context.net.0.proj", c, 4 * c) + \
                _linear(b + ".ff_context.net.2", 4 * c, c)
    out += _linear("norm_out.linear", c, 2 * c)
    out += _linear("proj_out", c, p * p * cfg.out_channels)
    return out


# ---- embeddings ----

def pos_embed_table(cfg):
    """PatchEmbed's pos_embed buffer [1, M*M, C] (M = pos_embed_max_size), as diffusers builds it:
    get_2d_sincos_pos_embed(C, M, base_size = sample_size // patch_size, interpolation_scale 1,
    output_type "pt"). The grid is float32, the frequencies and sin/cos float64, the result
    rounded to float32. Channels [0, C/2) encode the column (w) coordinate and [C/2, C) the row
    (h) coordinate (meshgrid "xy" puts w first), each half as [sin | cos]."""
    m, c = cfg.pos_embed_max_size, cfg.inner
    base = cfg.sample_size // cfg.patch_size
    grid_1d = torch.arange(m, dtype=torch.float32) / (m / base) / 1.0
    # "xy": gw[i, j] = grid[j] (column), gh[i, j] = grid[i] (row)
    gw, gh = torch.meshgrid(grid_1d, grid_1d, indexing="xy")
    half = c // 2
    omega = torch.arange(half // 2, dtype=torch.float64)
    omega /= half / 2.0
    omega = 1.0 / 10000 ** omega

    def one_d(pos):
        out = pos.reshape(-1).double()[:, None] * omega[None, :]
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    emb = torch.cat([one_d(gw), one_d(gh)], dim=1)
    return emb.float().unsqueeze(0)


def cropped_pos_embed(sd, cfg, hp, wp):
    """The centre crop of the pos_embed buffer for an hp x wp patch grid: [1, hp*wp, C]."""
    m = cfg.pos_embed_max_size
    if hp > m or wp > m:
        raise ValueError("patch grid %dx%d exceeds pos_embed_max_size %d" % (hp, wp, m))
    top, left = (m - hp) // 2, (m - wp) // 2
    table = sd["pos_embed.pos_embed"].reshape(1, m, m, -1)
    return table[:, top:top + hp, left:left + wp, :].reshape(1, hp * wp, -1)


def patch_embed(sd, cfg, x):
    """[B, Cin, H, W] -> [B, Hp*Wp, C]: Conv2d(kernel = stride = patch) + cropped pos_embed."""
    p = cfg.patch_size
    y = F.conv2d(x, sd["pos_embed.proj.weight"], sd["pos_embed.proj.bias"], stride=p)
    y = y.flatten(2).transpose(1, 2)
    return y + cropped_pos_embed(sd, cfg, x.shape[-2] // p, x.shape[-1] // p)


def timestep_proj(t, dim=256):
    """Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0): [B] -> [B, 256] as
    [cos | sin], in float32 with diffusers' order of operations."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(0, half, dtype=torch.float32)
    exponent = exponent / (half - 0)
    freqs = torch.exp(exponent)
    args = t[:, None].float() * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def linear(sd, name, x):
    return F.linear(x, sd[name + ".weight"], sd.get(name + ".bias"))


def time_text_embed(sd, t, pooled):
    """CombinedTimestepTextProjEmbeddings: TimestepEmbedding (silu) + PixArtAlphaTextProjection
    (silu), summed: [B, C]."""
    te = "time_text_embed.timestep_embedder."
    tt = "time_text_embed.text_embedder."
    temb = linear(sd, te + "linear_2", F.silu(linear(sd, te + "linear_1", timestep_proj(t))))
    pemb = linear(sd, tt + "linear_2", F.silu(linear(sd, tt + "linear_1", pooled)))
    return temb + pemb


def embed(sd, cfg, x, t, ctx, pooled):
    """(hidden0 [B, N_img, C], context0 [B, Nt, C], temb [B, C])."""
    return patch_embed(sd, cfg, x), linear(sd, "context_embedder", ctx), \
        time_text_embed(sd, t, pooled)


# ---- norms and attention ----

def layer_norm(x):
    return F.layer_norm(x, (x.shape[-1],), eps=LN_EPS)


def rms_norm(x, weight):
    """diffusers' RMSNorm over the last dim: x * rsqrt(mean(x^2) + eps) * weight."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + LN_EPS) * weight


def modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


def softmax_attention(q, k, v):
    """[B, h, N, d] x3 -> [B, h, N, d]; scale d^-1/2, no mask (F.scaled_dot_product_attention)."""
    w = torch.matmul(q, k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    return torch.matmul(torch.softmax(w, dim=-1), v)


def ttt_inner(q, k, v, w1, w2):
    """DESIGN.md section 4 steps 4-5 for [B, h, N, d] q, k, v and [h, d, d] fast weights:
    one gradient step of the inner loss sum((SiLU(K W1) W2 - V)^2) * s / (2N), then the output.
    The order of operations is the paper's (DiT5/models.py TTTAttention.gradient)."""
    n, d = k.shape[-2], k.shape[-1]
    scale = d ** -0.5
    z = torch.matmul(k, w1)
    sig = torch.sigmoid(z)
    s = z * sig
    e = (torch.matmul(s, w2) - v) / float(n) * scale
    g1 = torch.matmul(k.transpose(-2, -1),
                      torch.matmul(e, w2.transpose(-2, -1)) * (sig * (1.0 + z * (1.0 - sig))))
    g2 = torch.matmul(s.transpose(-2, -1), e)
    w1n, w2n = w1 - g1, w2 - g2
    return torch.matmul(F.silu(torch.matmul(q, w1n)), w2n)


def key_instance_norm(k):
    """(k - mean) / sqrt(biased var + 1) per channel over the token axis: [B, N, C]."""
    return F.instance_norm(k.transpose(1, 2).unsqueeze(-1), eps=KEY_NORM_EPS) \
        .squeeze(-1).transpose(1, 2)


def image_dwconv(x, n_img, hp, wp, weight, bias):
    """x + DWConv3x3(x) on the first n_img tokens laid out on the hp x wp grid (row-major);
    the other (text) tokens pass unchanged. x: [B, N, C]."""
    b, n, c = x.shape
    img = x[:, :n_img].transpose(1, 2).reshape(b, c, hp, wp)
    img = img + F.conv2d(img, weight, bias, padding=1, groups=c)
    return torch.cat([img.reshape(b, c, n_img).transpose(1, 2), x[:, n_img:]], dim=1)


def ttt_attention(sd, module, q, k, v, n_img, hp, wp, heads):
    """TTT attention over [B, N, C] q, k, v (heads merged, per-head RMSNorm already applied)."""
    k = key_instance_norm(k)
    q = image_dwconv(q, n_img, hp, wp, sd[module + ".q_conv.weight"], sd[module + ".q_conv.bias"])
    k = image_dwconv(k, n_img, hp, wp, sd[module + ".k_conv.weight"], sd[module + ".k_conv.bias"])
    b, n, c = q.shape
    split = [t.reshape(b, n, heads, c // heads).transpose(1, 2) for t in (q, k, v)]
    o = ttt_inner(*split, sd[module + ".w1"], sd[module + ".w2"])
    return o.transpose(1, 2).reshape(b, n, c)


def attention(sd, cfg, module, x, ctx, hp, wp, ttt, pre_only):
    """One diffusers Attention with JointAttnProcessor2_0 semantics (softmax or TTT).
    x [B, N_img, C] image tokens; ctx [B, Nt, C] text tokens or None (attn2).
    Returns (image output [B, N_img, C], text output [B, Nt, C] or None)."""
    b, n_img, c = x.shape
    h, d = cfg.heads, cfg.head_dim

    def heads_of(t):
        return t.reshape(b, t.shape[1], h, d)

    q, k, v = (heads_of(linear(sd, module + s, x)) for s in (".to_q", ".to_k", ".to_v"))
    if cfg.qk_norm:
        q = rms_norm(q, sd[module + ".norm_q.weight"])
        k = rms_norm(k, sd[module + ".norm_k.weight"])
    if ctx is not None:
        qc, kc, vc = (heads_of(linear(sd, module + s, ctx))
                      for s in (".add_q_proj", ".add_k_proj", ".add_v_proj"))
        if cfg.qk_norm:
            qc = rms_norm(qc, sd[module + ".norm_added_q.weight"])
            kc = rms_norm(kc, sd[module + ".norm_added_k.weight"])
        q, k, v = (torch.cat(p, dim=1) for p in ((q, qc), (k, kc), (v, vc)))  # [image, text]
    n = q.shape[1]
    if ttt:
        o = ttt_attention(sd, module, *(t.reshape(b, n, c) for t in (q, k, v)), n_img, hp, wp, h)
    else:
        o = softmax_attention(*(t.transpose(1, 2) for t in (q, k, v)))
        o = o.transpose(1, 2).reshape(b, n, c)
    img = linear(sd, module + ".to_out.0", o[:, :n_img])
    txt = None
    if ctx is not None and not pre_only:
        txt = linear(sd, module + ".to_add_out", o[:, n_img:])
    return img, txt


def feed_forward(sd, name, x):
    """FeedForward(activation "gelu-approximate"): net.0.proj -> GELU(tanh) -> net.2."""
    return linear(sd, name + ".net.2", F.gelu(linear(sd, name + ".net.0.proj", x),
                                              approximate="tanh"))


# ---- blocks and the whole model ----

def block_forward(sd, cfg, i, hidden, context, temb, hp, wp):
    """JointTransformerBlock i: (context_out or None for the last block, hidden_out)."""
    b = "transformer_blocks.%d" % i
    dual, last = i in cfg.dual, i == cfg.num_layers - 1
    silu_temb = F.silu(temb)

    # norm1: AdaLayerNormZero (6 chunks) or SD35AdaLayerNormZeroX (9 chunks); attn2 takes the
    # same LayerNorm(hidden) modulated by its own (shift_msa2, scale_msa2).
    mods = linear(sd, b + ".norm1.linear", silu_temb).chunk(9 if dual else 6, dim=1)
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods[:6]
    normed = layer_norm(hidden)
    norm_hidden = modulate(normed, shift_msa, scale_msa)
    if dual:
        shift_msa2, scale_msa2, gate_msa2 = mods[6:]
        norm_hidden2 = modulate(normed, shift_msa2, scale_msa2)

    if last:  # AdaLayerNormContinuous: (scale, shift) order
        c_scale, c_shift = linear(sd, b + ".norm1_context.linear", silu_temb).chunk(2, dim=1)
        norm_context = modulate(layer_norm(context), c_shift, c_scale)
    else:
        c_shift_msa, c_scale_msa, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = \
            linear(sd, b + ".norm1_context.linear", silu_temb).chunk(6, dim=1)
        norm_context = modulate(layer_norm(context), c_shift_msa, c_scale_msa)

    attn_out, ctx_attn_out = attention(sd, cfg, b + ".attn", norm_hidden, norm_context, hp, wp,
                                       i in cfg.ttt_attn, last)
    hidden = hidden + gate_msa[:, None] * attn_out
    if dual:  # after the joint attention's residual, as diffusers orders it
        attn2_out, _ = attention(sd, cfg, b + ".attn2", norm_hidden2, None, hp, wp,
                                 i in cfg.ttt_attn2, False)
        hidden = hidden + gate_msa2[:, None] * attn2_out
    ff_in = modulate(layer_norm(hidden), shift_mlp, scale_mlp)
    hidden = hidden + gate_mlp[:, None] * feed_forward(sd, b + ".ff", ff_in)

    if last:
        return None, hidden
    context = context + c_gate_msa[:, None] * ctx_attn_out
    ff_in = modulate(layer_norm(context), c_shift_mlp, c_scale_mlp)
    context = context + c_gate_mlp[:, None] * feed_forward(sd, b + ".ff_context", ff_in)
    return context, hidden


def final_layer(sd, cfg, hidden, temb, hp, wp):
    """norm_out (AdaLayerNormContinuous, (scale, shift)) + proj_out + unpatchify:
    [B, Cout, H, W]."""
    scale, shift = linear(sd, "norm_out.linear", F.silu(temb)).chunk(2, dim=1)
    y = linear(sd, "proj_out", modulate(layer_norm(hidden), shift, scale))
    return unpatchify(y, hp, wp, cfg.patch_size, cfg.out_channels)


def unpatchify(y, hp, wp, p, co):
    """[B, hp*wp, p*p*co] tokens (channel index (pi*p + qi)*co + c) -> [B, co, hp*p, wp*p]."""
    y = y.reshape(y.shape[0], hp, wp, p, p, co)
    y = torch.einsum("nhwpqc->nchpwq", y)
    return y.reshape(y.shape[0], co, hp * p, wp * p)


def forward(sd, cfg, x, t, ctx, pooled, trace=None):
    """The whole denoiser: x [B, Cin, H, W], t [B] (sigma * 1000), ctx [B, Nt, joint_dim],
    pooled [B, pooled_dim] -> velocity [B, Cout, H, W]. trace, a dict, receives the
    intermediates under the fixture names (temb, hidden0, context0, block{i}.*)."""
    hp, wp = x.shape[-2] // cfg.patch_size, x.shape[-1] // cfg.patch_size
    hidden, context, temb = embed(sd, cfg, x, t, ctx, pooled)
    if trace is not None:
        trace.update({"temb": temb, "hidden0": hidden, "context0": context})
    for i in range(cfg.num_layers):
        if trace is not None:
            trace["block%d.hidden_in" % i] = hidden
            trace["block%d.context_in" % i] = context
        context, hidden = block_forward(sd, cfg, i, hidden, context, temb, hp, wp)
        if trace is not None:
            trace["block%d.hidden_out" % i] = hidden
            if context is not None:
                trace["block%d.context_out" % i] = context
    return final_layer(sd, cfg, hidden, temb, hp, wp)


# ---- the SAI single-file layout ----

def _swap_halves(w):
    """(a, b) halves along dim 0 -> (b, a): diffusers' swap_scale_shift is its own inverse."""
    a, b = w.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def to_sai(sd, cfg, prefix="model.diffusion_model."):
    """The softmax state dict in Stability AI's single-file layout: the inverse of diffusers'
    convert_sd3_transformer_checkpoint_to_diffusers (fused qkv; (shift, scale) order in
    final_layer and in the last block's context adaLN, where diffusers has (scale, shift))."""
    out = {"pos_embed": sd["pos_embed.pos_embed"]}
    ren = {"x_embedder.proj": "pos_embed.proj",
           "t_embedder.mlp.0": "time_text_embed.timestep_embedder.linear_1",
           "t_embedder.mlp.2": "time_text_embed.timestep_embedder.linear_2",
           "y_embedder.mlp.0": "time_text_embed.text_embedder.linear_1",
           "y_embedder.mlp.2": "time_text_embed.text_embedder.linear_2",
           "context_embedder": "context_embedder", "final_layer.linear": "proj_out"}
    for s in ("weight", "bias"):
        for dst, src in ren.items():
            out["%s.%s" % (dst, s)] = sd["%s.%s" % (src, s)]
        out["final_layer.adaLN_modulation.1." + s] = _swap_halves(sd["norm_out.linear." + s])
    for i in range(cfg.num_layers):
        j, b = "joint_blocks.%d." % i, "transformer_blocks.%d." % i
        last = i == cfg.num_layers - 1
        for s in ("weight", "bias"):
            out[j + "x_block.attn.qkv." + s] = torch.cat(
                [sd[b + "attn.to_%s.%s" % (p, s)] for p in "qkv"], dim=0)
            out[j + "context_block.attn.qkv." + s] = torch.cat(
                [sd[b + "attn.add_%s_proj.%s" % (p, s)] for p in "qkv"], dim=0)
            out[j + "x_block.attn.proj." + s] = sd[b + "attn.to_out.0." + s]
            out[j + "x_block.adaLN_modulation.1." + s] = sd[b + "norm1.linear." + s]
            ctx_ada = sd[b + "norm1_context.linear." + s]
            out[j + "context_block.adaLN_modulation.1." + s] = \
                _swap_halves(ctx_ada) if last else ctx_ada
            out[j + "x_block.mlp.fc1." + s] = sd[b + "ff.net.0.proj." + s]
            out[j + "x_block.mlp.fc2." + s] = sd[b + "ff.net.2." + s]
            if not last:
                out[j + "context_block.attn.proj." + s] = sd[b + "attn.to_add_out." + s]
                out[j + "context_block.mlp.fc1." + s] = sd[b + "ff_context.net.0.proj." + s]
                out[j + "context_block.mlp.fc2." + s] = sd[b + "ff_context.net.2." + s]
            if i in cfg.dual:
                out[j + "x_block.attn2.qkv." + s] = torch.cat(
                    [sd[b + "attn2.to_%s.%s" % (p, s)] for p in "qkv"], dim=0)
                out[j + "x_block.attn2.proj." + s] = sd[b + "attn2.to_out.0." + s]
        for p in "qk" if cfg.qk_norm else "":
            out[j + "x_block.attn.ln_%s.weight" % p] = sd[b + "attn.norm_%s.weight" % p]
            out[j + "context_block.attn.ln_%s.weight" % p] = sd[b + "attn.norm_added_%s.weight" % p]
            if i in cfg.dual:
                out[j + "x_block.attn2.ln_%s.weight" % p] = sd[b + "attn2.norm_%s.weight" % p]
    return {prefix + k: v for k, v in out.items()}
