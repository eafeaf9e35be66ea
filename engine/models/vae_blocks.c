/*
 * vae_blocks.c - the VAE decoder's layers as eng_op_* sequences: diffusers' ResnetBlock2D,
 * the mid block's single-head spatial Attention, Upsample2D and the output head.
 *
 * Every forward takes an owned activation x[1, C, H, W], frees it as soon as it is last read and
 * hands back its output, so that at most about three activations of the current level are alive
 * at once: at SD3.5's last level one activation is 0.5 to 1 GB in F32.
 */
#include "engine/models/vae_internal.h"

#include <math.h>

/* Every GroupNorm of diffusers' decoder (resnets, attention, conv_norm_out) uses eps 1e-6. */
#define VAE_NORM_EPS 1e-6f

static int new_act(const eng_vae *v, eng_tensor *t, int64_t c, int64_t h, int64_t w,
                   eng_error *err)
{
    return eng_tensor_init(t, v->be, v->dtype, ENG_SHAPE(1, c, h, w), err);
}

static int conv(eng_tensor *y, const eng_tensor *x, const vae_conv *c, eng_error *err)
{
    const eng_conv2d_params p = {1, 1, c->pad, c->pad, 1};
    return eng_op_conv2d(y, x, c->w, c->b, &p, err);
}

static int norm_silu(eng_tensor *y, const eng_tensor *x, const vae_norm *n, int groups,
                     eng_error *err)
{
    ENG_TRY(eng_op_group_norm(y, x, n->w, n->b, groups, VAE_NORM_EPS, err));
    return eng_op_act(y, y, ENG_ACT_SILU, err);
}

/* Replaces *x by y (both owned), freeing the old *x. */
static void replace(eng_tensor *x, eng_tensor *y)
{
    eng_tensor_free(x);
    *x = *y;
    y->data = NULL;
    y->owned = 0;
}

int vae_resnet_forward(const eng_vae *v, const vae_resnet *r, eng_tensor *x, eng_error *err)
{
    const int64_t H = x->shape[2], W = x->shape[3];
    eng_tensor a = {0}, b = {0};
    int rc = 0;

    ENG_TRY_DONE(new_act(v, &a, r->cin, H, W, err));
    ENG_TRY_DONE(norm_silu(&a, x, &r->norm1, v->groups, err));
    ENG_TRY_DONE(new_act(v, &b, r->cout, H, W, err));
    ENG_TRY_DONE(conv(&b, &a, &r->conv1, err));
    if (r->cin != r->cout) {
        eng_tensor_free(&a);
        ENG_TRY_DONE(new_act(v, &a, r->cout, H, W, err));
    }
    ENG_TRY_DONE(norm_silu(&a, &b, &r->norm2, v->groups, err));
    /* Dropout is the identity at inference. b is free again: conv2 writes into it. */
    ENG_TRY_DONE(conv(&b, &a, &r->conv2, err));
    if (r->shortcut.w) {
        ENG_TRY_DONE(conv(&a, x, &r->shortcut, err)); /* a has cout channels here */
        ENG_TRY_DONE(eng_op_add(&b, &b, &a, err));
    } else {
        ENG_TRY_DONE(eng_op_add(&b, &b, x, err));
    }
    replace(x, &b);
done:
    eng_tensor_free(&a);
    eng_tensor_free(&b);
    if (rc) {
        eng_tensor_free(x);
        eng_error_prefix(err, "%s", r->name);
    }
    return rc;
}

int vae_attn_forward(const eng_vae *v, const vae_attn *at, eng_tensor *x, eng_error *err)
{
    const int64_t C = x->shape[1], H = x->shape[2], W = x->shape[3], N = H * W;
    eng_tensor n = {0}, t = {0}, q = {0}, k = {0}, val = {0}, o = {0};
    eng_tensor n3, o3;
    const eng_attention_params p = {1, 1.0f / sqrtf((float)C), 0};
    int rc = 0;

    /* GroupNorm over [1, C, HW] is the NCHW GroupNorm; then tokens are the pixels. */
    ENG_TRY_DONE(new_act(v, &n, C, H, W, err));
    ENG_TRY_DONE(eng_op_group_norm(&n, x, at->norm.w, at->norm.b, v->groups, VAE_NORM_EPS, err));
    ENG_TRY_DONE(eng_tensor_reshape(&n, ENG_SHAPE(1, C, N), &n3, err));
    ENG_TRY_DONE(eng_tensor_init(&t, v->be, v->dtype, ENG_SHAPE(1, N, C), err));
    ENG_TRY_DONE(eng_op_transpose(&t, &n3, err));
    eng_tensor_free(&n);
    ENG_TRY_DONE(eng_tensor_init(&q, v->be, v->dtype, ENG_SHAPE(1, N, C), err));
    ENG_TRY_DONE(eng_tensor_init(&k, v->be, v->dtype, ENG_SHAPE(1, N, C), err));
    ENG_TRY_DONE(eng_tensor_init(&val, v->be, v->dtype, ENG_SHAPE(1, N, C), err));
    ENG_TRY_DONE(eng_op_linear(&q, &t, at->qw, at->qb, err));
    ENG_TRY_DONE(eng_op_linear(&k, &t, at->kw, at->kb, err));
    ENG_TRY_DONE(eng_op_linear(&val, &t, at->vw, at->vb, err));
    /* One head of dim C (diffusers passes attention_head_dim = C): scale 1/sqrt(C). t is free
     * again and takes the attention output. */
    ENG_TRY_DONE(eng_op_attention(&t, &q, &k, &val, NULL, &p, err));
    eng_tensor_free(&k);
    eng_tensor_free(&val);
    ENG_TRY_DONE(eng_op_linear(&q, &t, at->ow, at->ob, err)); /* to_out.0 into q */
    eng_tensor_free(&t);
    ENG_TRY_DONE(new_act(v, &o, C, H, W, err));
    ENG_TRY_DONE(eng_tensor_reshape(&o, ENG_SHAPE(1, C, N), &o3, err));
    ENG_TRY_DONE(eng_op_transpose(&o3, &q, err));
    /* residual_connection, rescale_output_factor 1 */
    ENG_TRY_DONE(eng_op_add(&o, &o, x, err));
    replace(x, &o);
done:
    eng_tensor_free(&n);
    eng_tensor_free(&t);
    eng_tensor_free(&q);
    eng_tensor_free(&k);
    eng_tensor_free(&val);
    eng_tensor_free(&o);
    if (rc) {
        eng_tensor_free(x);
        eng_error_prefix(err, "%s", at->name);
    }
    return rc;
}

int vae_conv_forward(const eng_vae *v, const vae_conv *c, const char *name, eng_tensor *x,
                     eng_error *err)
{
    const int64_t H = x->shape[2], W = x->shape[3];
    eng_tensor y = {0};
    int rc = 0;

    ENG_TRY_DONE(new_act(v, &y, c->w->shape[0], H, W, err));
    ENG_TRY_DONE(conv(&y, x, c, err));
    replace(x, &y);
done:
    eng_tensor_free(&y);
    if (rc) {
        eng_tensor_free(x);
        eng_error_prefix(err, "%s", name);
    }
    return rc;
}

int vae_upsample_forward(const eng_vae *v, const vae_up_block *u, eng_tensor *x, eng_error *err)
{
    const int64_t C = x->shape[1], H = x->shape[2], W = x->shape[3];
    eng_tensor y = {0};
    int rc = 0;

    ENG_TRY_DONE(new_act(v, &y, C, 2 * H, 2 * W, err));
    ENG_TRY_DONE(eng_op_upsample_nearest2x(&y, x, err));
    replace(x, &y);
done:
    eng_tensor_free(&y);
    if (rc) {
        eng_tensor_free(x);
        eng_error_prefix(err, "%s", u->up_name);
        return rc;
    }
    return vae_conv_forward(v, &u->up, u->up_name, x, err);
}

int vae_out_forward(const eng_vae *v, eng_tensor *x, eng_error *err)
{
    eng_tensor a = {0};
    int rc = 0;

    ENG_TRY_DONE(new_act(v, &a, x->shape[1], x->shape[2], x->shape[3], err));
    ENG_TRY_DONE(norm_silu(&a, x, &v->norm_out, v->groups, err));
    replace(x, &a);
done:
    eng_tensor_free(&a);
    if (rc) {
        eng_tensor_free(x);
        eng_error_prefix(err, "decoder.conv_norm_out");
        return rc;
    }
    return vae_conv_forward(v, &v->conv_out, "decoder.conv_out", x, err);
}
