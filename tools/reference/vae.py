"""vae.py - our own PyTorch reference of diffusers' AutoencoderKL decode path (no diffusers here).

The semantics follow diffusers (models/autoencoders/vae.py Decoder, unets/unet_2d_blocks.py
UNetMidBlock2D and UpDecoderBlock2D, resnet.py ResnetBlock2D, upsampling.py Upsample2D,
attention_processor.py Attention + AttnProcessor2_0, autoencoder_kl.py _decode) and the SD3
pipeline's latent scaling and VaeImageProcessor.postprocess:

    z = latents / scaling_factor + shift_factor
    z = post_quant_conv(z)                      (1x1, only when use_post_quant_conv)
    x = decoder.conv_in(z)                      (3x3, latent_channels -> block_out_channels[-1])
    x = mid: resnet, attention (when mid_block_add_attention), resnet
    x = up_blocks[i] for i = 0..n-1 over reversed(block_out_channels): layers_per_block + 1
        resnets, then Upsample2D (nearest 2x, 3x3 conv) except after the last block
    x = conv_out(silu(conv_norm_out(x)))        (GroupNorm, 3x3 -> out_channels)
    image = (x * 0.5 + 0.5).clamp(0, 1)        (float32)
    rgb = (image.permute(0, 2, 3, 1) * 255).round().astype(uint8)   (numpy: half to even)

Every GroupNorm has norm_num_groups groups and eps 1e-6. ResnetBlock2D: norm1, SiLU, conv1,
norm2, SiLU, (dropout), conv2, plus the input (through the 1x1 conv_shortcut when the channel
count changes), output_scale_factor 1. The mid attention is one head of dim C (diffusers passes
attention_head_dim = C) over the H*W tokens: GroupNorm over [B, C, HW], to_q/to_k/to_v, softmax
(q.k / sqrt(C)), to_out.0, plus the residual, rescale_output_factor 1. torch 1.13 has no
F.scaled_dot_product_attention, so the attention is written out.

Weights are a dict name -> float32 tensor with diffusers' state-dict names
("decoder.up_blocks.0.resnets.1.conv1.weight", ...); cfg is a dict shaped like the saved
vae/config.json.
"""
import numpy as np
import torch
import torch.nn.functional as F

EPS = 1e-6


def _groups(cfg):
    return cfg.get("norm_num_groups", 32)


def _conv(x, sd, name, pad):
    return F.conv2d(x, sd[name + ".weight"], sd[name + ".bias"], padding=pad)


def _norm(x, sd, name, groups):
    return F.group_norm(x, groups, sd[name + ".weight"], sd[name + ".bias"], eps=EPS)


def resnet(x, sd, p, groups):
    h = F.silu(_norm(x, sd, p + ".norm1", groups))
    h = _conv(h, sd, p + ".conv1", 1)
    h = F.silu(_norm(h, sd, p + ".norm2", groups))
    h = _conv(h, sd, p + ".conv2", 1)
    if p + ".conv_shortcut.weight" in sd:
        x = _conv(x, sd, p + ".conv_shortcut", 0)
    return x + h


def attention(x, sd, p, groups):
    b, c, hh, ww = x.shape
    t = _norm(x.reshape(b, c, hh * ww), sd, p + ".group_norm", groups).transpose(1, 2)
    q = F.linear(t, sd[p + ".to_q.weight"], sd[p + ".to_q.bias"])
    k = F.linear(t, sd[p + ".to_k.weight"], sd[p + ".to_k.bias"])
    v = F.linear(t, sd[p + ".to_v.weight"], sd[p + ".to_v.bias"])
    s = torch.softmax(torch.matmul(q, k.transpose(1, 2)) * (c ** -0.5), dim=-1)
    o = F.linear(torch.matmul(s, v), sd[p + ".to_out.0.weight"], sd[p + ".to_out.0.bias"])
    return o.transpose(1, 2).reshape(b, c, hh, ww) + x


def decoder(z, sd, cfg):
    """The decoder's output x [B, out_channels, H * 2^(n-1), W * 2^(n-1)] of z (already scaled)."""
    g = _groups(cfg)
    chans = list(reversed(cfg["block_out_channels"]))
    if cfg.get("use_post_quant_conv", True):
        z = _conv(z, sd, "post_quant_conv", 0)
    x = _conv(z, sd, "decoder.conv_in", 1)
    x = resnet(x, sd, "decoder.mid_block.resnets.0", g)
    if cfg.get("mid_block_add_attention", True):
        x = attention(x, sd, "decoder.mid_block.attentions.0", g)
    x = resnet(x, sd, "decoder.mid_block.resnets.1", g)
    for i in range(len(chans)):
        for j in range(cfg.get("layers_per_block", 1) + 1):
            x = resnet(x, sd, "decoder.up_blocks.%d.resnets.%d" % (i, j), g)
        if i < len(chans) - 1:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = _conv(x, sd, "decoder.up_blocks.%d.upsamplers.0.conv" % i, 1)
    x = F.silu(_norm(x, sd, "decoder.conv_norm_out", g))
    return _conv(x, sd, "decoder.conv_out", 1)


def scale_latents(latents, cfg):
    """The SD3 pipeline's latents -> VAE input (shift_factor null reads as 0)."""
    shift = cfg.get("shift_factor") or 0.0
    return latents / cfg.get("scaling_factor", 0.18215) + shift


def postprocess(x):
    """(image float32 [B, C, H, W] in [0, 1], rgb uint8 [B, H, W, C]) as diffusers makes them."""
    image = (x * 0.5 + 0.5).clamp(0, 1)
    arr = image.permute(0, 2, 3, 1).float().numpy()
    rgb = (arr * 255).round().astype("uint8")
    return image, rgb


def decode(latents, sd, cfg):
    """Raw latents -> (decoder output, image, rgb)."""
    with torch.no_grad():
        x = decoder(scale_latents(latents, cfg), sd, cfg)
    image, rgb = postprocess(x)
    return x, image, rgb


def decoder_shapes(cfg):
    """{name: shape} of every tensor decode() reads, in the order the decoder uses them."""
    g_chans = list(cfg["block_out_channels"])
    lat = cfg["latent_channels"]
    out = cfg.get("out_channels", 3)
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

    if cfg.get("use_post_quant_conv", True):
        conv("post_quant_conv", lat, lat, 1)
    top = g_chans[-1]
    conv("decoder.conv_in", top, lat, 3)
    res("decoder.mid_block.resnets.0", top, top)
    if cfg.get("mid_block_add_attention", True):
        a = "decoder.mid_block.attentions.0"
        norm(a + ".group_norm", top)
        for lin in ("to_q", "to_k", "to_v", "to_out.0"):
            shapes["%s.%s.weight" % (a, lin)] = (top, top)
            shapes["%s.%s.bias" % (a, lin)] = (top,)
    res("decoder.mid_block.resnets.1", top, top)
    chans = list(reversed(g_chans))
    prev = chans[0]
    for i, c in enumerate(chans):
        for j in range(cfg.get("layers_per_block", 1) + 1):
            res("decoder.up_blocks.%d.resnets.%d" % (i, j), prev if j == 0 else c, c)
        if i < len(chans) - 1:
            conv("decoder.up_blocks.%d.upsamplers.0.conv" % i, c, c, 3)
        prev = c
    norm("decoder.conv_norm_out", chans[-1])
    conv("decoder.conv_out", out, chans[-1], 3)
    return shapes


def random_weights(cfg, gen, out_gain=1.0, conv1_gain=0.05):
    """Random decoder weights of a sensible scale: convs and linears N(0, 1/fan_in) (so that
    activations stay O(1) through the residual stack), biases N(0, 0.05^2), norm scales
    1 + N(0, 0.1^2) and shifts N(0, 0.1^2). out_gain multiplies conv_out's weight so that the
    image spreads past [-1, 1] and the clamp is exercised. conv1_gain shrinks every resnet's
    conv1 (norm2 rescales its output anyway) so that norm2 sees groups of variance ~1e-2, where
    GroupNorm's eps (1e-6) changes the result measurably."""
    sd = {}
    for name, shape in decoder_shapes(cfg).items():
        if ".norm" in name or "group_norm" in name or "conv_norm_out" in name:
            t = torch.randn(shape, generator=gen) * 0.1
            if name.endswith(".weight"):
                t = t + 1.0
        elif name.endswith(".bias"):
            t = torch.randn(shape, generator=gen) * 0.05
        else:
            fan_in = int(np.prod(shape[1:]))
            t = torch.randn(shape, generator=gen) / np.sqrt(fan_in)
            if name.startswith("decoder.conv_out"):
                t = t * out_gain
            elif name.endswith(".conv1.weight"):
                t = t * conv1_gain
        sd[name] = t.float()
    return sd
