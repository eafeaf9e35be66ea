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

void eng_mmdit_free(eng_mmdit *m)
{
    if (!m)
        return;
    mmdit_graphs_free(m);
    eng_arena_free(&m->arena);
    eng_weights_free(m->weights);
    free(m->blocks);
    free(m);
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

/* tfeat: a new F32 arena tensor [B, 256] holding the features of the host timesteps t. */
static int upload_features(eng_mmdit *m, eng_tensor *tfeat, const float *t, int64_t B,
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
    ENG_TRY_DONE(upload_features(m, &f, t, pooled->shape[0], err));
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
    eng_tensor st, scale, shift, n, y, pr;
    int rc;

    /* norm_out is AdaLayerNormContinuous: chunk 0 is the scale, chunk 1 the shift. */
    ENG_TRY_DONE(tmp(m, &st, temb->ndim, temb->shape, err));
    ENG_TRY_DONE(eng_op_act(&st, temb, ENG_ACT_SILU, err));
    ENG_TRY_DONE(mmdit_mod_chunk(m, &scale, &st, m->out_norm_w, m->out_norm_b, 0, err));
    ENG_TRY_DONE(mmdit_mod_chunk(m, &shift, &st, m->out_norm_w, m->out_norm_b, 1, err));
    ENG_TRY_DONE(tmp(m, &n, hidden->ndim, hidden->shape, err));
    ENG_TRY_DONE(eng_op_layer_norm(&n, hidden, NULL, NULL, 1e-6f, err));
    ENG_TRY_DONE(tmp(m, &y, hidden->ndim, hidden->shape, err));
    ENG_TRY_DONE(eng_op_modulate(&y, &n, &scale, &shift, err));
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

/* t exists, lives on m's backend and has m's dtype. */
static int check_tensor(const eng_mmdit *m, const char *name, const eng_tensor *t, eng_error *err)
{
    if (!t || !t->data)
        return eng_error_set(err, ENG_EINVAL, "mmdit: %s is NULL or has no data", name);
    if (t->backend != m->be && !(t->backend == NULL && m->be->kind == ENG_DEVICE_CPU))
        return eng_error_set(err, ENG_EINVAL, "mmdit: %s lives on %s, the model on %s", name,
                             t->backend ? t->backend->name : "the host", m->be->name);
    if (t->dtype != m->dtype)
        return eng_error_set(err, ENG_EINVAL, "mmdit: %s has dtype %s, the model %s", name,
                             eng_dtype_name(t->dtype), eng_dtype_name(m->dtype));
    return 0;
}

static int check_forward(const eng_mmdit *m, const eng_tensor *x, const float *t,
                         const eng_tensor *ctx, const eng_tensor *pooled, const eng_tensor *out,
                         eng_error *err)
{
    const eng_transformer_config *c = &m->cfg;
    char s[128];
    ENG_TRY(check_tensor(m, "x", x, err));
    ENG_TRY(check_tensor(m, "ctx", ctx, err));
    ENG_TRY(check_tensor(m, "pooled", pooled, err));
    ENG_TRY(check_tensor(m, "out", out, err));
    if (!t)
        return eng_error_set(err, ENG_EINVAL, "mmdit: t is NULL");
    eng_shape_str(x, s, sizeof s);
    if (x->ndim != 4 || x->shape[0] < 1 || x->shape[1] != c->in_channels || x->shape[2] < 1 ||
        x->shape[3] < 1)
        return eng_error_set(err, ENG_EINVAL, "mmdit: x has shape %s, expected [B, %d, H, W]", s,
                             c->in_channels);
    int64_t B = x->shape[0], H = x->shape[2], W = x->shape[3], p = c->patch_size;
    if (H % p || W % p)
        return eng_error_set(err, ENG_EINVAL,
                             "mmdit: x has shape %s: height %lld and width %lld must be multiples "
                             "of patch_size %lld",
                             s, (long long)H, (long long)W, (long long)p);
    if (H / p > c->pos_embed_max_size || W / p > c->pos_embed_max_size)
        return eng_error_set(err, ENG_EINVAL,
                             "mmdit: x has shape %s: its %lld x %lld patch grid exceeds "
                             "pos_embed_max_size %d",
                             s, (long long)(H / p), (long long)(W / p), c->pos_embed_max_size);
    if (ctx->ndim != 3 || ctx->shape[0] != B || ctx->shape[1] < 1 ||
        ctx->shape[2] != c->joint_attention_dim)
        return eng_error_set(err, ENG_EINVAL,
                             "mmdit: ctx has shape %s, expected [%lld, Nt, %d] "
                             "(joint_attention_dim %d)",
                             eng_shape_str(ctx, s, sizeof s), (long long)B,
                             c->joint_attention_dim, c->joint_attention_dim);
    if (pooled->ndim != 2 || pooled->shape[0] != B ||
        pooled->shape[1] != c->pooled_projection_dim)
        return eng_error_set(err, ENG_EINVAL,
                             "mmdit: pooled has shape %s, expected [%lld, %d] "
                             "(pooled_projection_dim)",
                             eng_shape_str(pooled, s, sizeof s), (long long)B,
                             c->pooled_projection_dim);
    if (out->ndim != 4 || out->shape[0] != B || out->shape[1] != c->out_channels ||
        out->shape[2] != H || out->shape[3] != W)
        return eng_error_set(err, ENG_EINVAL, "mmdit: out has shape %s, expected [%lld, %d, %lld, %lld]",
                             eng_shape_str(out, s, sizeof s), (long long)B, c->out_channels,
                             (long long)H, (long long)W);
    return 0;
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

int eng_mmdit_forward(eng_mmdit *m, const eng_tensor *x, const float *t, const eng_tensor *ctx,
                      const eng_tensor *pooled, eng_tensor *out, eng_error *err)
{
    if (!m)
        return eng_error_set(err, ENG_EINVAL, "mmdit: model is NULL");
    ENG_TRY(check_forward(m, x, t, ctx, pooled, out, err));
    if (mmdit_graph_usable(m))
        return mmdit_graph_forward(m, x, t, ctx, pooled, out, err);
    eng_arena_mark mark = eng_arena_get_mark(&m->arena);
    eng_tensor tfeat;
    int rc;
    ENG_TRY_DONE(upload_features(m, &tfeat, t, x->shape[0], err));
    rc = mmdit_forward_body(m, x, &tfeat, ctx, pooled, out, err);
done:
    eng_arena_release(&m->arena, mark);
    return rc;
}
