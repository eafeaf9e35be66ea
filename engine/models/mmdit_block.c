/*
 * mmdit_block.c - diffusers' JointTransformerBlock (models/attention.py) on the eng_op_* front
 * end, with its attention modules either softmax (JointAttnProcessor2_0 / AttnProcessor2_0) or
 * TTT (DESIGN.md section 4).
 *
 * Shapes: B = batch, Ni = image tokens on a gh x gw patch grid (row-major), Nt = text tokens,
 * N = Ni + Nt, C = inner_dim, h = heads, d = head dim. Every temporary comes from m->arena and
 * is given back before the function returns.
 *
 * adaLN chunk order, as diffusers splits the linear's output:
 *   AdaLayerNormZero (6):      shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
 *   SD35AdaLayerNormZeroX (9): the same six, then shift_msa2, scale_msa2, gate_msa2
 *   AdaLayerNormContinuous (2, the last block's context): scale, shift
 * All norms here are LayerNorm without affine, eps 1e-6; q/k RMSNorm eps 1e-6.
 */
#include <math.h>
#include <stdio.h>

#include "engine/models/mmdit_internal.h"

#define NORM_EPS 1e-6f
/* The key instance norm of TTT: eps 1 (the paper's F.instance_norm(k, eps=1.0)). */
#define TTT_KEY_EPS 1.0f

static int tmp(eng_mmdit *m, eng_tensor *t, int ndim, const int64_t *shape, eng_error *err)
{
    return eng_arena_tensor(&m->arena, t, m->dtype, ndim, shape, err);
}

/* A view of t's data with another shape (same element count, checked by the caller). */
static eng_tensor view(const eng_tensor *t, int ndim, const int64_t *shape)
{
    return eng_tensor_view(t->data, t->backend, t->dtype, ndim, shape);
}

int mmdit_linear(eng_mmdit *m, eng_tensor *y, const eng_tensor *x, wt w, wt b, eng_error *err)
{
    int64_t shape[ENG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++)
        shape[i] = x->shape[i];
    shape[x->ndim - 1] = w->shape[0];
    ENG_TRY(tmp(m, y, x->ndim, shape, err));
    return eng_op_linear(y, x, w, b, err);
}

int mmdit_mod_chunk(eng_mmdit *m, eng_tensor *mod, const eng_tensor *silu_temb, wt w, wt b, int j,
                    eng_error *err)
{
    int64_t C = m->cfg.inner_dim;
    size_t es = eng_dtype_size(w->dtype);
    eng_tensor wv = eng_tensor_view((char *)w->data + (size_t)(j * C * C) * es, w->backend,
                                    w->dtype, ENG_SHAPE(C, C));
    eng_tensor bv = eng_tensor_view((char *)b->data + (size_t)(j * C) * es, b->backend, b->dtype,
                                    ENG_SHAPE(C));
    ENG_TRY(tmp(m, mod, ENG_SHAPE(silu_temb->shape[0], C), err));
    return eng_op_linear(mod, silu_temb, &wv, &bv, err);
}

/* y = x projected by (w, b), then per-head RMSNorm with weight norm when there is one. */
static int project(eng_mmdit *m, eng_tensor *y, const eng_tensor *x, wt w, wt b, wt norm,
                   eng_error *err)
{
    eng_tensor p;
    ENG_TRY(mmdit_linear(m, &p, x, w, b, err));
    if (!norm) {
        *y = p;
        return 0;
    }
    int64_t d = m->cfg.attention_head_dim, rows = eng_tensor_numel(&p) / d;
    eng_tensor pv = view(&p, ENG_SHAPE(rows, d)), yv;
    ENG_TRY(tmp(m, y, p.ndim, p.shape, err));
    yv = view(y, ENG_SHAPE(rows, d));
    return eng_op_rms_norm(&yv, &pv, norm, NORM_EPS, err);
}

/* Rows [r0, r0 + n) of sample b of t [B, N, C], as a contiguous [n, C] view. */
static eng_tensor rows_view(const eng_tensor *t, int64_t b, int64_t r0, int64_t n)
{
    int64_t N = t->shape[1], C = t->shape[2];
    size_t es = eng_dtype_size(t->dtype);
    return eng_tensor_view((char *)t->data + (size_t)((b * N + r0) * C) * es, t->backend,
                           t->dtype, ENG_SHAPE(n, C));
}

/*
 * Sample by sample, rows [r0, r0 + x.N) of y [B, N, C] = x [B, Nx, C] projected by (w, b), then
 * per-head RMSNorm with weight norm (in place) when there is one: the joint attention's [image;
 * text] tensors filled without a separate concatenation.
 */
static int project_into(eng_mmdit *m, eng_tensor *y, int64_t r0, const eng_tensor *x, wt w, wt b,
                        wt norm, eng_error *err)
{
    int64_t n = x->shape[1], d = m->cfg.attention_head_dim;
    for (int64_t s = 0; s < x->shape[0]; s++) {
        eng_tensor ys = rows_view(y, s, r0, n), xs = rows_view(x, s, 0, n);
        ENG_TRY(eng_op_linear(&ys, &xs, w, b, err));
        if (norm) {
            eng_tensor hv = eng_tensor_view(ys.data, ys.backend, ys.dtype,
                                            ENG_SHAPE(n * ys.shape[1] / d, d));
            ENG_TRY(eng_op_rms_norm(&hv, &hv, norm, NORM_EPS, err));
        }
    }
    return 0;
}

/* Sample by sample, y [B, n, O] = rows [r0, r0 + n) of x [B, N, C] projected by (w, b). */
static int project_from(eng_tensor *y, const eng_tensor *x, int64_t r0, wt w, wt b,
                        eng_error *err)
{
    int64_t n = y->shape[1];
    for (int64_t s = 0; s < x->shape[0]; s++) {
        eng_tensor ys = rows_view(y, s, 0, n), xs = rows_view(x, s, r0, n);
        ENG_TRY(eng_op_linear(&ys, &xs, w, b, err));
    }
    return 0;
}

/*
 * The TTT module's inputs after projection and q/k RMSNorm (one op, eng_op_ttt_local): the key
 * instance norm (per sample and channel over all N tokens of the module, biased variance, eps 1),
 * then the local depthwise convolution with residual on the image tokens of q and k.
 */
static int ttt_inputs(eng_mmdit *m, const mmdit_attn *a, eng_tensor *q, eng_tensor *k, int gh,
                      int gw, eng_error *err)
{
    eng_tensor q2, k2;
    ENG_TRY(tmp(m, &q2, q->ndim, q->shape, err));
    ENG_TRY(tmp(m, &k2, k->ndim, k->shape, err));
    ENG_TRY(eng_op_ttt_local(&q2, &k2, q, k, a->qconv_w, a->qconv_b, a->kconv_w, a->kconv_b, gh,
                             gw, TTT_KEY_EPS, err));
    *q = q2;
    *k = k2;
    return 0;
}

int mmdit_attention(eng_mmdit *m, const mmdit_attn *a, const eng_tensor *x, const eng_tensor *c,
                    int gh, int gw, eng_tensor *out_x, eng_tensor *out_c, eng_error *err)
{
    const eng_transformer_config *cfg = &m->cfg;
    eng_arena_mark mark = eng_arena_get_mark(&m->arena);
    eng_tensor q, k, v, o;
    int rc = 0;

    if (c) { /* joint: [image; text] tokens, in that order, projected into place */
        int64_t B = x->shape[0], Ni = x->shape[1], N = Ni + c->shape[1];
        ENG_TRY_DONE(tmp(m, &q, ENG_SHAPE(B, N, x->shape[2]), err));
        ENG_TRY_DONE(tmp(m, &k, ENG_SHAPE(B, N, x->shape[2]), err));
        ENG_TRY_DONE(tmp(m, &v, ENG_SHAPE(B, N, x->shape[2]), err));
        ENG_TRY_DONE(project_into(m, &q, 0, x, a->q_w, a->q_b, a->norm_q, err));
        ENG_TRY_DONE(project_into(m, &k, 0, x, a->k_w, a->k_b, a->norm_k, err));
        ENG_TRY_DONE(project_into(m, &v, 0, x, a->v_w, a->v_b, NULL, err));
        ENG_TRY_DONE(project_into(m, &q, Ni, c, a->aq_w, a->aq_b, a->norm_aq, err));
        ENG_TRY_DONE(project_into(m, &k, Ni, c, a->ak_w, a->ak_b, a->norm_ak, err));
        ENG_TRY_DONE(project_into(m, &v, Ni, c, a->av_w, a->av_b, NULL, err));
    } else {
        ENG_TRY_DONE(project(m, &q, x, a->q_w, a->q_b, a->norm_q, err));
        ENG_TRY_DONE(project(m, &k, x, a->k_w, a->k_b, a->norm_k, err));
        ENG_TRY_DONE(project(m, &v, x, a->v_w, a->v_b, NULL, err));
    }
    ENG_TRY_DONE(tmp(m, &o, q.ndim, q.shape, err));
    if (a->ttt) {
        ENG_TRY_DONE(ttt_inputs(m, a, &q, &k, gh, gw, err));
        ENG_TRY_DONE(eng_op_ttt(&o, &q, &k, &v, a->w1, a->w2, cfg->num_attention_heads, err));
    } else {
        eng_attention_params p = {cfg->num_attention_heads,
                                  (float)(1.0 / sqrt((double)cfg->attention_head_dim)), 0};
        ENG_TRY_DONE(eng_op_attention(&o, &q, &k, &v, NULL, &p, err));
    }
    if (!c) {
        rc = eng_op_linear(out_x, &o, a->out_w, a->out_b, err);
        goto done;
    }
    ENG_TRY_DONE(project_from(out_x, &o, 0, a->out_w, a->out_b, err));
    if (a->aout_w && out_c)
        ENG_TRY_DONE(project_from(out_c, &o, x->shape[1], a->aout_w, a->aout_b, err));
done:
    eng_arena_release(&m->arena, mark);
    return rc;
}

/* x += gate * FF(x1): FeedForward with GELU-tanh, 4C hidden. */
static int feed_forward(eng_mmdit *m, eng_tensor *x, const eng_tensor *x1, wt w1, wt b1, wt w2,
                        wt b2, const eng_tensor *gate, eng_error *err)
{
    eng_tensor h, f;
    int64_t shape[ENG_MAX_DIMS];
    for (int i = 0; i < x1->ndim; i++)
        shape[i] = x1->shape[i];
    shape[x1->ndim - 1] = w1->shape[0];
    ENG_TRY(tmp(m, &h, x1->ndim, shape, err));
    ENG_TRY(eng_op_linear_gelu(&h, x1, w1, b1, err));
    ENG_TRY(mmdit_linear(m, &f, &h, w2, b2, err));
    return eng_op_gated_add(x, &f, gate, err);
}

/* y = LayerNorm(x) * (1 + scale) + shift into a new arena tensor (one op). */
static int norm_mod(eng_mmdit *m, eng_tensor *y, const eng_tensor *x, const eng_tensor *scale,
                    const eng_tensor *shift, eng_error *err)
{
    ENG_TRY(tmp(m, y, x->ndim, x->shape, err));
    return eng_op_norm_modulate(y, x, scale, shift, NORM_EPS, err);
}

/*
 * One stream's adaLN modulation, [B, C] each, named as diffusers names the chunks. The image side
 * fills the first six (AdaLayerNormZero) or all nine (SD35AdaLayerNormZeroX, dual attention);
 * the context side six, or for the last block's AdaLayerNormContinuous only scale_msa and
 * shift_msa. Chunks a variant lacks stay zeroed.
 */
typedef struct adaln_mod {
    eng_tensor shift_msa, scale_msa, gate_msa;
    eng_tensor shift_mlp, scale_mlp, gate_mlp;
    eng_tensor shift_msa2, scale_msa2, gate_msa2;
} adaln_mod;

typedef enum adaln_kind {
    ADALN_ZERO = 6,       /* AdaLayerNormZero */
    ADALN_ZERO_X = 9,     /* SD35AdaLayerNormZeroX */
    ADALN_CONTINUOUS = 2, /* AdaLayerNormContinuous: scale, then shift */
} adaln_kind;

/* Splits the modulation linear (w, b) of SiLU(temb) st into o's named chunks, in diffusers' order. */
static int adaln_split(eng_mmdit *m, adaln_mod *o, adaln_kind kind, const eng_tensor *st, wt w,
                       wt b, eng_error *err)
{
    eng_tensor *const zero[9] = {&o->shift_msa,  &o->scale_msa,  &o->gate_msa,
                                 &o->shift_mlp,  &o->scale_mlp,  &o->gate_mlp,
                                 &o->shift_msa2, &o->scale_msa2, &o->gate_msa2};
    eng_tensor *const continuous[2] = {&o->scale_msa, &o->shift_msa};
    eng_tensor *const *order = kind == ADALN_CONTINUOUS ? continuous : zero;
    *o = (adaln_mod){0};
    for (int j = 0; j < (int)kind; j++)
        ENG_TRY(mmdit_mod_chunk(m, order[j], st, w, b, j, err));
    return 0;
}

static int check_block_args(const eng_mmdit *m, int i, const eng_tensor *hidden,
                            const eng_tensor *context, const eng_tensor *temb, int gh, int gw,
                            eng_error *err)
{
    int64_t C = m->cfg.inner_dim;
    if (i < 0 || i >= m->cfg.num_layers)
        return eng_error_set(err, ENG_EINVAL, "mmdit: block %d outside 0..%d", i,
                             m->cfg.num_layers - 1);
    if (!hidden || !context || !temb || hidden->ndim != 3 || context->ndim != 3 ||
        temb->ndim != 2 || gh < 1 || gw < 1 || hidden->shape[1] != (int64_t)gh * gw ||
        hidden->shape[2] != C || context->shape[2] != C || context->shape[0] != hidden->shape[0] ||
        temb->shape[0] != hidden->shape[0] || temb->shape[1] != C)
        return eng_error_set(err, ENG_EINVAL,
                             "mmdit: block %d needs hidden [B, %d x %d, %lld], context "
                             "[B, Nt, %lld], temb [B, %lld]",
                             i, gh, gw, (long long)C, (long long)C, (long long)C);
    return 0;
}

int eng_mmdit_block(eng_mmdit *m, int i, eng_tensor *hidden, eng_tensor *context,
                    const eng_tensor *temb, int gh, int gw, eng_error *err)
{
    ENG_TRY(check_block_args(m, i, hidden, context, temb, gh, gw, err));
    const mmdit_block *bl = &m->blocks[i];
    eng_arena_mark mark = eng_arena_get_mark(&m->arena);
    eng_tensor st, xa, xa2, ca, ax, ac, a2, n2;
    adaln_mod mx, mc; /* the image and the context modulation */
    int rc = 0;

    /* Every adaLN of the block reads SiLU(temb). */
    ENG_TRY_DONE(tmp(m, &st, temb->ndim, temb->shape, err));
    ENG_TRY_DONE(eng_op_act(&st, temb, ENG_ACT_SILU, err));
    ENG_TRY_DONE(adaln_split(m, &mx, bl->dual ? ADALN_ZERO_X : ADALN_ZERO, &st, bl->norm1_w,
                             bl->norm1_b, err));
    ENG_TRY_DONE(adaln_split(m, &mc, bl->pre_only ? ADALN_CONTINUOUS : ADALN_ZERO, &st,
                             bl->norm1c_w, bl->norm1c_b, err));

    /* norm1: both image branches modulate the same LayerNorm(hidden). */
    ENG_TRY_DONE(norm_mod(m, &xa, hidden, &mx.scale_msa, &mx.shift_msa, err));
    if (bl->dual)
        ENG_TRY_DONE(norm_mod(m, &xa2, hidden, &mx.scale_msa2, &mx.shift_msa2, err));
    ENG_TRY_DONE(norm_mod(m, &ca, context, &mc.scale_msa, &mc.shift_msa, err));

    ENG_TRY_DONE(tmp(m, &ax, hidden->ndim, hidden->shape, err));
    if (!bl->pre_only)
        ENG_TRY_DONE(tmp(m, &ac, context->ndim, context->shape, err));
    ENG_TRY_DONE(mmdit_attention(m, &bl->attn, &xa, &ca, gh, gw, &ax, bl->pre_only ? NULL : &ac, err));
    ENG_TRY_DONE(eng_op_gated_add(hidden, &ax, &mx.gate_msa, err));
    if (bl->dual) {
        ENG_TRY_DONE(tmp(m, &a2, hidden->ndim, hidden->shape, err));
        ENG_TRY_DONE(mmdit_attention(m, &bl->attn2, &xa2, NULL, gh, gw, &a2, NULL, err));
        ENG_TRY_DONE(eng_op_gated_add(hidden, &a2, &mx.gate_msa2, err));
    }
    ENG_TRY_DONE(norm_mod(m, &n2, hidden, &mx.scale_mlp, &mx.shift_mlp, err));
    ENG_TRY_DONE(feed_forward(m, hidden, &n2, bl->ff1_w, bl->ff1_b, bl->ff2_w, bl->ff2_b,
                              &mx.gate_mlp, err));

    if (!bl->pre_only) {
        ENG_TRY_DONE(eng_op_gated_add(context, &ac, &mc.gate_msa, err));
        ENG_TRY_DONE(norm_mod(m, &n2, context, &mc.scale_mlp, &mc.shift_mlp, err));
        ENG_TRY_DONE(feed_forward(m, context, &n2, bl->ffc1_w, bl->ffc1_b, bl->ffc2_w, bl->ffc2_b,
                                  &mc.gate_mlp, err));
    }
done:
    eng_arena_release(&m->arena, mark);
    if (rc)
        eng_error_prefix(err, "mmdit block %d", i);
    return rc;
}
