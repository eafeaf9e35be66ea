/*
 * vae.c - loading the AutoencoderKL decoder (config + weights by diffusers' names) and the decode
 * driver: latent scaling, post_quant_conv, conv_in, mid block, up blocks, output head, then the
 * host-side postprocess to a [0, 1] float image and 8-bit RGB. The layers are in vae_blocks.c.
 */
#include "engine/models/vae_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Loading walks the decoder's tensors twice with the same code: once declaring each name and
 * expected shape to the weight store (which checks the file), once after the store is loaded
 * taking each tensor's pointer. `declare` selects the pass.
 */
typedef struct vae_loader {
    eng_vae *v;
    int declare;
    eng_error *err;
} vae_loader;

static int param(vae_loader *L, const eng_tensor **slot, int ndim, const int64_t *shape,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int param(vae_loader *L, const eng_tensor **slot, int ndim, const int64_t *shape,
                 const char *fmt, ...)
{
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (L->declare)
        return eng_weights_add(L->v->weights, name, ndim, shape, NULL, L->err);
    return eng_weights_get(L->v->weights, name, ndim, shape, slot, L->err);
}

static int conv_params(vae_loader *L, vae_conv *c, const char *name, int64_t o, int64_t i, int k)
{
    c->pad = k / 2;
    ENG_TRY(param(L, &c->w, ENG_SHAPE(o, i, k, k), "%s.weight", name));
    return param(L, &c->b, ENG_SHAPE(o), "%s.bias", name);
}

static int norm_params(vae_loader *L, vae_norm *n, const char *name, int64_t c)
{
    ENG_TRY(param(L, &n->w, ENG_SHAPE(c), "%s.weight", name));
    return param(L, &n->b, ENG_SHAPE(c), "%s.bias", name);
}

static int resnet_params(vae_loader *L, vae_resnet *r, const char *name, int cin, int cout)
{
    char sub[VAE_NAME_MAX + 32];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->cin = cin;
    r->cout = cout;
#define SUB(s) (snprintf(sub, sizeof sub, "%s." s, name), sub)
    ENG_TRY(norm_params(L, &r->norm1, SUB("norm1"), cin));
    ENG_TRY(conv_params(L, &r->conv1, SUB("conv1"), cout, cin, 3));
    ENG_TRY(norm_params(L, &r->norm2, SUB("norm2"), cout));
    ENG_TRY(conv_params(L, &r->conv2, SUB("conv2"), cout, cout, 3));
    /* diffusers adds the 1x1 conv_shortcut exactly when the channel count changes. */
    if (cin != cout)
        return conv_params(L, &r->shortcut, SUB("conv_shortcut"), cout, cin, 1);
#undef SUB
    return 0;
}

static int attn_params(vae_loader *L, vae_attn *a, int64_t c)
{
    const char *p = "decoder.mid_block.attentions.0";
    snprintf(a->name, sizeof a->name, "%s", p);
    a->c = (int)c;
    ENG_TRY(param(L, &a->norm.w, ENG_SHAPE(c), "%s.group_norm.weight", p));
    ENG_TRY(param(L, &a->norm.b, ENG_SHAPE(c), "%s.group_norm.bias", p));
    ENG_TRY(param(L, &a->qw, ENG_SHAPE(c, c), "%s.to_q.weight", p));
    ENG_TRY(param(L, &a->qb, ENG_SHAPE(c), "%s.to_q.bias", p));
    ENG_TRY(param(L, &a->kw, ENG_SHAPE(c, c), "%s.to_k.weight", p));
    ENG_TRY(param(L, &a->kb, ENG_SHAPE(c), "%s.to_k.bias", p));
    ENG_TRY(param(L, &a->vw, ENG_SHAPE(c, c), "%s.to_v.weight", p));
    ENG_TRY(param(L, &a->vb, ENG_SHAPE(c), "%s.to_v.bias", p));
    ENG_TRY(param(L, &a->ow, ENG_SHAPE(c, c), "%s.to_out.0.weight", p));
    return param(L, &a->ob, ENG_SHAPE(c), "%s.to_out.0.bias", p);
}

/* Every tensor of the decoder, in diffusers' module order. */
static int walk(vae_loader *L)
{
    eng_vae *v = L->v;
    const eng_vae_config *c = &v->cfg;
    const int n = c->num_blocks, lat = c->latent_channels, top = c->block_out_channels[n - 1];
    char name[VAE_NAME_MAX];

    if (c->use_post_quant_conv)
        ENG_TRY(conv_params(L, &v->post_quant, "post_quant_conv", lat, lat, 1));
    ENG_TRY(conv_params(L, &v->conv_in, "decoder.conv_in", top, lat, 3));
    ENG_TRY(resnet_params(L, &v->mid_res[0], "decoder.mid_block.resnets.0", top, top));
    if (v->has_attn)
        ENG_TRY(attn_params(L, &v->attn, top));
    ENG_TRY(resnet_params(L, &v->mid_res[1], "decoder.mid_block.resnets.1", top, top));
    /* Up block i works at reversed(block_out_channels)[i]; its first resnet takes the previous
     * block's width. */
    int prev = top;
    for (int i = 0; i < n; i++) {
        vae_up_block *u = &v->up[i];
        const int ch = c->block_out_channels[n - 1 - i];
        for (int j = 0; j < u->nres; j++) {
            snprintf(name, sizeof name, "decoder.up_blocks.%d.resnets.%d", i, j);
            ENG_TRY(resnet_params(L, &u->res[j], name, j == 0 ? prev : ch, ch));
        }
        if (u->has_upsampler) {
            snprintf(u->up_name, sizeof u->up_name, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            ENG_TRY(conv_params(L, &u->up, u->up_name, ch, ch, 3));
        }
        prev = ch;
    }
    const int bottom = c->block_out_channels[0];
    ENG_TRY(norm_params(L, &v->norm_out, "decoder.conv_norm_out", bottom));
    return conv_params(L, &v->conv_out, "decoder.conv_out", c->out_channels, bottom, 3);
}

void eng_vae_free(eng_vae *v)
{
    if (!v)
        return;
    if (v->up)
        for (int i = 0; i < v->cfg.num_blocks; i++)
            free(v->up[i].res);
    free(v->up);
    eng_weights_free(v->weights);
    free(v);
}

int eng_vae_init(eng_vae **out, const eng_vae_config *cfg, const eng_safetensors *st,
                 const char *label, eng_backend *be, eng_dtype dtype, eng_error *err)
{
    eng_vae *v;
    int rc = 0;

    *out = NULL;
    if (!cfg || !st || !be)
        return eng_error_set(err, ENG_EINVAL, "vae: NULL config, safetensors or backend");
    if (cfg->num_blocks < 1 || cfg->num_blocks > ENG_CONFIG_MAX_VAE_BLOCKS ||
        cfg->norm_num_groups < 1 || cfg->layers_per_block < 0 || cfg->scaling_factor == 0.0)
        return eng_error_set(err, ENG_EINVAL, "%s: invalid VAE config", label);
    if (!(v = calloc(1, sizeof *v)) || !(v->up = calloc((size_t)cfg->num_blocks, sizeof *v->up))) {
        free(v);
        return eng_error_set(err, ENG_ENOMEM, "vae: out of memory");
    }
    v->cfg = *cfg;
    v->be = be;
    v->dtype = dtype;
    v->groups = cfg->norm_num_groups;
    v->has_attn = cfg->mid_block_add_attention;
    for (int i = 0; i < cfg->num_blocks; i++) {
        v->up[i].nres = cfg->layers_per_block + 1;
        v->up[i].has_upsampler = i < cfg->num_blocks - 1;
        if (!(v->up[i].res = calloc((size_t)v->up[i].nres, sizeof *v->up[i].res))) {
            eng_vae_free(v);
            return eng_error_set(err, ENG_ENOMEM, "vae: out of memory");
        }
    }
    vae_loader L = {v, 1, err};
    ENG_TRY_DONE(eng_weights_init(&v->weights, st, label, be, dtype, err));
    ENG_TRY_DONE(walk(&L));
    ENG_TRY_DONE(eng_weights_load(v->weights, err));
    L.declare = 0;
    ENG_TRY_DONE(walk(&L));
    *out = v;
done:
    if (rc)
        eng_vae_free(v);
    return rc;
}

int eng_vae_load(eng_vae **out, const char *dir, eng_backend *be, eng_dtype dtype, eng_error *err)
{
    eng_vae_config cfg;
    eng_safetensors *st = NULL;
    char path[4096];

    *out = NULL;
    snprintf(path, sizeof path, "%s/config.json", dir);
    ENG_TRY(eng_config_load_vae(path, &cfg, err));
    ENG_TRY(eng_safetensors_open_dir(&st, dir, err));
    int rc = eng_vae_init(out, &cfg, st, dir, be, dtype, err);
    eng_safetensors_close(st);
    return rc;
}

const eng_vae_config *eng_vae_get_config(const eng_vae *v)
{
    return &v->cfg;
}

int eng_vae_scale_factor(const eng_vae *v)
{
    return 1 << (v->cfg.num_blocks - 1);
}

void eng_vae_postprocess(const float *x, int64_t B, int64_t C, int64_t H, int64_t W, float *image,
                         uint8_t *rgb)
{
    const int64_t plane = H * W;
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < plane; i++) {
                const int64_t at = (b * C + c) * plane + i;
                /* Each step rounds to float32 as torch and numpy do: x * 0.5 is exact, + 0.5 and
                 * * 255 round once each. The comparisons keep a NaN as NaN, like torch.clamp. */
                float f = x[at] * 0.5f + 0.5f;
                if (f < 0.0f)
                    f = 0.0f;
                else if (f > 1.0f)
                    f = 1.0f;
                if (image)
                    image[at] = f;
                if (rgb) {
                    /* numpy's round is half to even: nearbyintf in the default rounding mode. */
                    const float s = f * 255.0f;
                    rgb[(b * plane + i) * C + c] = isnan(s) ? 0 : (uint8_t)nearbyintf(s);
                }
            }
}

/*
 * z[1, Cl, h, w] = one sample of the latents, in the model dtype on the backend, scaled as the SD3
 * pipeline does: latents / scaling_factor + shift_factor. The division is a multiplication by the
 * float reciprocal (what torch does on CUDA; within an ulp of the division), the shift an add of
 * a [w] row broadcast over the leading dims.
 */
static int scaled_latents(const eng_vae *v, const eng_tensor *lat, int64_t b, eng_tensor *z,
                          eng_error *err)
{
    const int64_t Cl = lat->shape[1], h = lat->shape[2], w = lat->shape[3];
    const size_t sample_bytes = (size_t)(Cl * h * w) * eng_dtype_size(lat->dtype);
    eng_tensor src = {0}, row = {0}, row32 = {0};
    float *host = NULL;
    int rc = 0;

    ENG_TRY(eng_tensor_init(z, v->be, v->dtype, ENG_SHAPE(1, Cl, h, w), err));
    if (lat->backend) {
        src = eng_tensor_view((char *)lat->data + (size_t)b * sample_bytes, lat->backend,
                              lat->dtype, ENG_SHAPE(1, Cl, h, w));
    } else {
        ENG_TRY_DONE(eng_tensor_init(&src, v->be, lat->dtype, ENG_SHAPE(1, Cl, h, w), err));
        ENG_TRY_DONE(eng_tensor_upload(&src, (const char *)lat->data + (size_t)b * sample_bytes,
                                       err));
    }
    ENG_TRY_DONE(eng_op_convert(z, &src, err));
    ENG_TRY_DONE(eng_op_scale(z, z, 1.0f / (float)v->cfg.scaling_factor, err));
    if (v->cfg.shift_factor != 0.0) {
        if (!(host = malloc((size_t)w * sizeof *host)))
            ENG_TRY_DONE(eng_error_set(err, ENG_ENOMEM, "vae: out of memory"));
        for (int64_t i = 0; i < w; i++)
            host[i] = (float)v->cfg.shift_factor;
        ENG_TRY_DONE(eng_tensor_init(&row32, v->be, ENG_DTYPE_F32, ENG_SHAPE(w), err));
        ENG_TRY_DONE(eng_tensor_upload(&row32, host, err));
        ENG_TRY_DONE(eng_tensor_init(&row, v->be, v->dtype, ENG_SHAPE(w), err));
        ENG_TRY_DONE(eng_op_convert(&row, &row32, err));
        ENG_TRY_DONE(eng_op_add(z, z, &row, err));
    }
done:
    free(host);
    eng_tensor_free(&src);
    eng_tensor_free(&row);
    eng_tensor_free(&row32);
    if (rc) {
        eng_tensor_free(z);
        eng_error_prefix(err, "vae: scaling latents");
    }
    return rc;
}

/* The decoder on one sample: z (consumed) -> x[1, out_channels, f*h, f*w]. */
static int decode_one(const eng_vae *v, eng_tensor *x, eng_error *err)
{
    if (v->post_quant.w)
        ENG_TRY(vae_conv_forward(v, &v->post_quant, "post_quant_conv", x, err));
    ENG_TRY(vae_conv_forward(v, &v->conv_in, "decoder.conv_in", x, err));
    ENG_TRY(vae_resnet_forward(v, &v->mid_res[0], x, err));
    if (v->has_attn)
        ENG_TRY(vae_attn_forward(v, &v->attn, x, err));
    ENG_TRY(vae_resnet_forward(v, &v->mid_res[1], x, err));
    for (int i = 0; i < v->cfg.num_blocks; i++) {
        const vae_up_block *u = &v->up[i];
        for (int j = 0; j < u->nres; j++)
            ENG_TRY(vae_resnet_forward(v, &u->res[j], x, err));
        if (u->has_upsampler)
            ENG_TRY(vae_upsample_forward(v, u, x, err));
    }
    return vae_out_forward(v, x, err);
}

int eng_vae_decode(eng_vae *v, const eng_tensor *latents, float *image, uint8_t *rgb,
                   eng_error *err)
{
    const eng_tensor *lat = latents;
    int rc = 0;

    if (!v || !lat)
        return eng_error_set(err, ENG_EINVAL, "vae: NULL model or latents");
    if (lat->ndim != 4 || lat->shape[1] != v->cfg.latent_channels) {
        char s[96];
        return eng_error_set(err, ENG_EINVAL,
                             "vae: latents have shape %s, expected [B, %d, h, w] (latent_channels)",
                             eng_shape_str(lat, s, sizeof s), v->cfg.latent_channels);
    }
    if (lat->backend && lat->backend != v->be)
        return eng_error_set(err, ENG_EINVAL, "vae: latents live on %s, the VAE on %s",
                             lat->backend->name, v->be->name);
    if (lat->dtype != ENG_DTYPE_F32 && lat->dtype != ENG_DTYPE_F16 &&
        lat->dtype != ENG_DTYPE_BF16)
        return eng_error_set(err, ENG_EINVAL, "vae: latents have dtype %s, expected a float dtype",
                             eng_dtype_name(lat->dtype));

    const int64_t B = lat->shape[0], f = eng_vae_scale_factor(v), C = v->cfg.out_channels;
    const int64_t H = lat->shape[2] * f, W = lat->shape[3] * f, n = C * H * W;
    float *host = image ? NULL : malloc((size_t)n * sizeof *host);
    eng_tensor x = {0}, x32 = {0};
    if (!image && !host)
        return eng_error_set(err, ENG_ENOMEM, "vae: out of memory");

    for (int64_t b = 0; b < B; b++) {
        float *dst = image ? image + b * n : host;
        ENG_TRY_DONE(scaled_latents(v, lat, b, &x, err));
        ENG_TRY_DONE(decode_one(v, &x, err));
        if (x.dtype == ENG_DTYPE_F32) {
            ENG_TRY_DONE(eng_tensor_download(&x, dst, err));
        } else {
            ENG_TRY_DONE(eng_tensor_init(&x32, v->be, ENG_DTYPE_F32, x.ndim, x.shape, err));
            ENG_TRY_DONE(eng_op_convert(&x32, &x, err));
            ENG_TRY_DONE(eng_tensor_download(&x32, dst, err));
        }
        eng_tensor_free(&x);
        eng_tensor_free(&x32);
        eng_vae_postprocess(dst, 1, C, H, W, image ? dst : NULL, rgb ? rgb + b * n : NULL);
    }
done:
    eng_tensor_free(&x);
    eng_tensor_free(&x32);
    free(host);
    return rc;
}
