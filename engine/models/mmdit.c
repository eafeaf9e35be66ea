/*
 * mmdit.c - the forward pass of diffusers' SD3Transformer2DModel (transformer_sd3.py) on the
 * eng_op_* front end: embeddings, the joint blocks (mmdit_block.c), norm_out, proj_out and
 * unpatchify; plus the model's accessors. Loading is in mmdit_load.c.
 *
 * Shapes: B = batch, H x W latent, p = patch size, gh = H/p, gw = W/p, Ni = gh*gw image tokens
 * (row-major over the patch grid), Nt text tokens, C = inner_dim, M = pos_embed_max_size.
 * Activations come from m->arena and are given back before each entry point returns.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/models/mmdit_internal.h"

static int tmp(eng_mmdit *m, eng_tensor *t, int ndim, const int64_t *shape, eng_error *err)
{
    return eng_arena_tensor(&m->arena, t, m->dtype, ndim, shape, err);
}

const eng_transformer_config *eng_mmdit_config(const eng_mmdit *m)
{
    return &m->cfg;
}

eng_backend *eng_mmdit_backend(const eng_mmdit *m)
{
    return m->be;
}

eng_dtype eng_mmdit_dtype(const eng_mmdit *m)
{
    return m->dtype;
}


/*
 * diffusers' Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0): for i < 128,
 * freq_i = exp(-ln(10000) * i / 128), features [cos(t freq), sin(t freq)]. Computed in float
 * step by step as get_timestep_embedding does in float32, so the rounding matches.
 */
void mmdit_time_features(const float *t, int64_t B, float *f)
{
    const int half = MMDIT_TIME_CHANNELS / 2;
    const float c = (float)-log(10000.0);
    for (int i = 0; i < half; i++) {
        float freq = expf(c * (float)i / (float)half);
        for (int64_t b = 0; b < B; b++) {
            float arg = t[b] * freq;
            f[b * MMDIT_TIME_CHANNELS + i] = cosf(arg);
            f[b * MMDIT_TIME_CHANNELS + half + i] = sinf(arg);
        }
    }
}

/* y = linear_2(SiLU(linear_1(x))): TimestepEmbedding and PixArtAlphaTextProjection alike. */
static int mlp2(eng_mmdit *m, eng_tensor *y, const eng_tensor *x, wt w1, wt b1, wt w2, wt b2,
                eng_error *err)
{
    eng_tensor h;
    ENG_TRY(mmdit_linear(m, &h, x, w1, b1, err));
    ENG_TRY(eng_op_act(&h, &h, ENG_ACT_SILU, err));
    return mmdit_linear(m, y, &h, w2, b2, err);
}

/* temb from the timestep features on the device (F32 [B, 256]). */
static int time_embed_dev(eng_mmdit *m, const eng_tensor *tfeat, const eng_tensor *pooled,
                          eng_tensor *temb, eng_error *err)
{
    eng_arena_mark mark = eng_arena_get_mark(&m->arena);
    eng_tensor f, te, pe;
    int rc;
    ENG_TRY_DONE(tmp(m, &f, tfeat->ndim, tfeat->shape, err));
    ENG_TRY_DONE(eng_op_convert(&f, tfeat, err));
    ENG_TRY_DONE(mlp2(m, &te, &f, m->t1_w, m->t1_b, m->t2_w, m->t2_b, err));
    ENG_TRY_DONE(mlp2(m, &pe, pooled, m->p1_w, m->p1_b, m->p2_w, m->p2_b, err));
    ENG_TRY_DONE(eng_op_add(temb, &te, &pe, err));
done:
    eng_arena_release(&m->arena, mark);
    return rc;
}

int mmdit_upload_features(eng_mmdit *m, eng_tensor *tfeat, const float *t, int64_t B,
                           eng_error *err)
{
    float *feat = malloc((size_t)B * MMDIT_TIME_CHANNELS * sizeof *feat);
    int rc;
    if (!feat)
        return eng_error_set(err, ENG_ENOMEM, "mmdit: out of memory");
    mmdit_time_features(t, B, feat);
    rc = eng_arena_tensor(&m->arena, tfeat, ENG_DTYPE_F32, ENG_SHAPE(B, MMDIT_TIME_CHANNELS), err);
    if (!rc)
        rc = eng_tensor_upload(tfeat, feat, err);
    free(feat);
    return rc;
}

int eng_mmdit_time_embed(eng_mmdit *m, const float *t, const eng_tensor *pooled, eng_tensor *temb,
                         eng_error *err)
{
    if (!t || !pooled || pooled->ndim != 2)
        return eng_error_set(err, ENG_EINVAL, "mmdit: time embedding needs t and pooled [B, P]");
    eng_arena_mark mark = eng_arena_get_mark(&m->arena);
    eng_tensor f;
    int rc;
    ENG_TRY_DONE(mmdit_upload_features(m, &f, t, pooled->shape[0], err));
    rc = time_embed_dev(m, &f, pooled, temb, err);
done:
    eng_arena_release(&m->arena, mark);
    return rc;
}

int eng_mmdit_patch_embed(eng_mmdit *m, const eng_tensor *x, eng_tensor *hidden, eng_error *err)
{
    const eng_transformer_config *c = &m->cfg;
    int64_t B = x->shape[0], C = c->inner_dim, p = c->patch_size, M = c->pos_embed_max_size;
    int64_t gh = x->shape[2] / p, gw = x->shape[3] / p, Ni = gh * gw;
    int64_t top = (M - gh) / 2, left = (M - gw) / 2;
    size_t es = eng_dtype_size(m->dtype);
    eng_conv2d_params cp = {(int)p, (int)p, 0, 0, 1};
    eng_arena_mark mark = eng_arena_get_mark(&m->arena);
    eng_tensor conv, crop;
    int rc;

    ENG_TRY_DONE(tmp(m, &conv, ENG_SHAPE(B, C, gh, gw), err));
    ENG_TRY_DONE(eng_op_conv2d(&conv, x, m->patch_w, m->patch_b, &cp, err));
    eng_tensor c3 = eng_tensor_view(conv.data, conv.backend, conv.dtype, ENG_SHAPE(B, C, Ni));
    ENG_TRY_DONE(eng_op_transpose(hidden, &c3, err));

    /* PatchEmbed.cropped_pos_embed: rows top.., columns left.. of the M x M table; each grid row
     * is a contiguous run of gw*C values, copied with a same-dtype convert. */
    ENG_TRY_DONE(tmp(m, &crop, ENG_SHAPE(Ni, C), err));
    for (int64_t r = 0; r < gh; r++) {
        eng_tensor dst = eng_tensor_view((char *)crop.data + (size_t)(r * gw * C) * es, m->be,
                                         m->dtype, ENG_SHAPE(gw * C));
        eng_tensor src = eng_tensor_view(
            (char *)m->pos_embed->data + (size_t)(((top + r) * M + left) * C) * es, m->be,
            m->dtype, ENG_SHAPE(gw * C));
        ENG_TRY_DONE(eng_op_convert(&dst, &src, err));
    }
    ENG_TRY_DONE(eng_op_add(hidden, hidden, &crop, err));
done:
    eng_arena_release(&m->arena, mark);
    return rc;
}

int eng_mmdit_context_embed(eng_mmdit *m, const eng_tensor *ctx, eng_tensor *context,
                            eng_error *err)
{
    return eng_op_linear(context, ctx, m->ctx_w, m->ctx_b, err);
}

int eng_mmdit_final(eng_mmdit *m, const eng_tensor *hidden, const eng_tensor *temb, int gh, int gw,
                    eng_tensor *out, eng_error *err)
{
    const eng_transformer_config *c = &m->cfg;
    int64_t B = hidden->shape[0], p = c->patch_size, oc = c->out_channels;
    eng_arena_mark mark = eng_arena_get_mark(&m->arena);
    eng_tensor st, scale, shift, y, pr;
    int rc;

    /* norm_out is AdaLayerNormContinuous: chunk 0 is the scale, chunk 1 the shift. */
    ENG_TRY_DONE(tmp(m, &st, temb->ndim, temb->shape, err));
    ENG_TRY_DONE(eng_op_act(&st, temb, ENG_ACT_SILU, err));
    ENG_TRY_DONE(mmdit_mod_chunk(m, &scale, &st, m->out_norm_w, m->out_norm_b, 0, err));
    ENG_TRY_DONE(mmdit_mod_chunk(m, &shift, &st, m->out_norm_w, m->out_norm_b, 1, err));
    ENG_TRY_DONE(tmp(m, &y, hidden->ndim, hidden->shape, err));
    ENG_TRY_DONE(eng_op_norm_modulate(&y, hidden, &scale, &shift, 1e-6f, err));
    ENG_TRY_DONE(mmdit_linear(m, &pr, &y, m->proj_w, m->proj_b, err));

    /* Unpatchify: [B, gh, gw, p, p, oc] -> [B, oc, gh, p, gw, p] = [B, oc, H, W]. */
    static const int perm[6] = {0, 5, 1, 3, 2, 4};
    eng_tensor src = eng_tensor_view(pr.data, pr.backend, pr.dtype, ENG_SHAPE(B, gh, gw, p, p, oc));
    eng_tensor dst = eng_tensor_view(out->data, out->backend, out->dtype,
                                     ENG_SHAPE(B, oc, gh, p, gw, p));
    if (eng_tensor_numel(out) != eng_tensor_numel(&dst)) {
        rc = eng_error_set(err, ENG_EINVAL, "mmdit: out has %lld values, expected %lld",
                           (long long)eng_tensor_numel(out), (long long)eng_tensor_numel(&dst));
        goto done;
    }
    ENG_TRY_DONE(eng_op_permute(&dst, &src, perm, err));
done:
    eng_arena_release(&m->arena, mark);
    return rc;
}



int mmdit_forward_body(eng_mmdit *m, const eng_tensor *x, const eng_tensor *tfeat,
                       const eng_tensor *ctx, const eng_tensor *pooled, eng_tensor *out,
                       eng_error *err)
{
    const eng_transformer_config *c = &m->cfg;
    int64_t B = x->shape[0], C = c->inner_dim, Nt = ctx->shape[1];
    int gh = (int)(x->shape[2] / c->patch_size), gw = (int)(x->shape[3] / c->patch_size);
    eng_arena_mark mark = eng_arena_get_mark(&m->arena);
    eng_tensor temb, hidden, context;
    int rc;

    ENG_TRY_DONE(tmp(m, &temb, ENG_SHAPE(B, C), err));
    ENG_TRY_DONE(tmp(m, &hidden, ENG_SHAPE(B, (int64_t)gh * gw, C), err));
    ENG_TRY_DONE(tmp(m, &context, ENG_SHAPE(B, Nt, C), err));
    ENG_TRY_DONE(time_embed_dev(m, tfeat, pooled, &temb, err));
    ENG_TRY_DONE(eng_mmdit_patch_embed(m, x, &hidden, err));
    ENG_TRY_DONE(eng_mmdit_context_embed(m, ctx, &context, err));
    for (int i = 0; i < c->num_layers; i++)
        ENG_TRY_DONE(eng_mmdit_block(m, i, &hidden, &context, &temb, gh, gw, err));
    ENG_TRY_DONE(eng_mmdit_final(m, &hidden, &temb, gh, gw, out, err));
done:
    eng_arena_release(&m->arena, mark);
    return rc;
}

