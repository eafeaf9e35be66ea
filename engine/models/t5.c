/*
 * t5.c - the T5 encoder of t5.h: loading from a transformers folder, the relative position
 * bias (host side, cached per sequence length) and the forward pass through the eng_op_* front
 * end (so it runs on any backend).
 *
 * Shapes: B = batch, N = tokens, D = d_model, I = num_heads * d_kv (the attention width, which
 * need not equal D), F = d_ff, h = num_heads.
 */
#include "engine/models/t5.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend/arena.h"
#include "engine/io/safetensors.h"
#include "engine/io/weights.h"

#define EMBED_NAME "shared.weight"
#define EMBED_ALT_NAME "encoder.embed_tokens.weight"
#define BIAS_NAME "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"

typedef const eng_tensor *wt; /* a weight borrowed from the store */

typedef struct t5_block {
    wt ln_attn, q, k, v, o;
    wt ln_ff, wi_0, wi_1, wo; /* wi_0 is "wi" for a non-gated model (wi_1 NULL) */
} t5_block;

struct eng_t5 {
    eng_t5_config cfg;
    eng_backend *be;
    eng_dtype dtype;
    eng_weights *weights;
    eng_arena arena;
    wt embed;          /* [V, D] */
    wt final_ln;       /* [D] */
    t5_block *blocks;  /* num_layers */
    float *bias_table; /* [num_buckets, h] on the host, F32 */
    eng_tensor bias;   /* [h, n, n] F32 on the backend for the last n seen; data NULL if none */
};

/* ---- relative position bias ---- */

int eng_t5_relative_bucket(int64_t rel, int num_buckets, int max_distance)
{
    const int half = num_buckets / 2;
    const int max_exact = half / 2;
    const int base = rel > 0 ? half : 0;
    const int64_t n = rel < 0 ? -rel : rel;

    if (n < max_exact)
        return base + (int)n;
    /*
     * transformers: max_exact + long(log(float(n) / max_exact) / math.log(max_distance /
     * max_exact) * (half - max_exact)), each step in float32 (the Python double divisor is
     * rounded to float), truncated toward zero. Repeating the float steps keeps the edges of the
     * log-spaced buckets where transformers has them (n = 16, 32, 64 land exactly on them).
     */
    const float denom = (float)log((double)max_distance / (double)max_exact);
    const float r = logf((float)n / (float)max_exact) / denom * (float)(half - max_exact);
    const int64_t large = r >= (float)half ? half - 1 : max_exact + (int64_t)r;
    return base + (int)(large < half - 1 ? large : half - 1);
}

void eng_t5_position_bias(const float *table, int num_buckets, int max_distance, int heads, int n,
                          float *bias)
{
    /* The bias depends only on k - q: one bucket per relative position, then a gather. */
    for (int q = 0; q < n; q++)
        for (int k = 0; k < n; k++) {
            const int bucket = eng_t5_relative_bucket(k - q, num_buckets, max_distance);
            for (int j = 0; j < heads; j++)
                bias[((size_t)j * n + q) * n + k] = table[(size_t)bucket * heads + j];
        }
}

/* The backend bias for n tokens, made when n differs from the cached one. */
static int position_bias(eng_t5 *m, int64_t n, eng_error *err)
{
    const eng_t5_config *c = &m->cfg;
    if (m->bias.data && m->bias.shape[1] == n)
        return 0;
    eng_tensor_free(&m->bias);
    const size_t count = (size_t)c->num_heads * (size_t)n * (size_t)n;
    float *host = malloc(count * sizeof *host);
    if (!host)
        return eng_error_set(err, ENG_ENOMEM, "t5: out of memory for the position bias");
    eng_t5_position_bias(m->bias_table, c->relative_attention_num_buckets,
                         c->relative_attention_max_distance, c->num_heads, (int)n, host);
    int rc = 0;
    ENG_TRY_DONE(eng_tensor_init(&m->bias, m->be, ENG_DTYPE_F32, ENG_SHAPE(c->num_heads, n, n),
                                 err));
    ENG_TRY_DONE(eng_tensor_upload(&m->bias, host, err));
done:
    if (rc)
        eng_tensor_free(&m->bias);
    free(host);
    return rc;
}

/* ---- loading ---- */

typedef struct t5_walk {
    eng_t5 *m;
    int bind;
    const char *embed_src; /* the file's name for the embedding */
    eng_error *err;
} t5_walk;

static int walk_one(t5_walk *w, wt *slot, const char *name, int64_t d0, int64_t d1)
{
    int64_t shape[2] = {d0, d1};
    int ndim = d1 > 0 ? 2 : 1;
    if (w->bind)
        return eng_weights_get(w->m->weights, name, ndim, shape, slot, w->err);
    if (strcmp(name, EMBED_NAME) == 0 && strcmp(w->embed_src, EMBED_NAME) != 0) {
        eng_weight_src src = {w->embed_src, 2, {d0, d1}, 0, 0};
        return eng_weights_add(w->m->weights, name, ndim, shape, &src, w->err);
    }
    return eng_weights_add(w->m->weights, name, ndim, shape, NULL, w->err);
}

static int walk_model(t5_walk *w)
{
    eng_t5 *m = w->m;
    const eng_t5_config *c = &m->cfg;
    const int64_t D = c->d_model, I = (int64_t)c->num_heads * c->d_kv, F = c->d_ff;
    char n[160];
    wt table = NULL;

#define ONE(slot, d0, d1, ...)                                                                     \
    do {                                                                                           \
        snprintf(n, sizeof n, __VA_ARGS__);                                                        \
        ENG_TRY(walk_one(w, slot, n, d0, d1));                                                         \
    } while (0)
    ENG_TRY(walk_one(w, &m->embed, EMBED_NAME, c->vocab_size, D));
    ENG_TRY(walk_one(w, &table, BIAS_NAME, c->relative_attention_num_buckets, c->num_heads));
    for (int i = 0; i < c->num_layers; i++) {
        t5_block *b = &m->blocks[i];
        ONE(&b->ln_attn, D, 0, "encoder.block.%d.layer.0.layer_norm.weight", i);
        ONE(&b->q, I, D, "encoder.block.%d.layer.0.SelfAttention.q.weight", i);
        ONE(&b->k, I, D, "encoder.block.%d.layer.0.SelfAttention.k.weight", i);
        ONE(&b->v, I, D, "encoder.block.%d.layer.0.SelfAttention.v.weight", i);
        ONE(&b->o, D, I, "encoder.block.%d.layer.0.SelfAttention.o.weight", i);
        ONE(&b->ln_ff, D, 0, "encoder.block.%d.layer.1.layer_norm.weight", i);
        if (c->is_gated_act) {
            ONE(&b->wi_0, F, D, "encoder.block.%d.layer.1.DenseReluDense.wi_0.weight", i);
            ONE(&b->wi_1, F, D, "encoder.block.%d.layer.1.DenseReluDense.wi_1.weight", i);
        } else {
            ONE(&b->wi_0, F, D, "encoder.block.%d.layer.1.DenseReluDense.wi.weight", i);
        }
        ONE(&b->wo, D, F, "encoder.block.%d.layer.1.DenseReluDense.wo.weight", i);
    }
#undef ONE
    ENG_TRY(walk_one(w, &m->final_ln, "encoder.final_layer_norm.weight", D, 0));
    if (w->bind) {
        /* The bias is built on the host: keep an F32 copy of the table (as rounded to dtype). */
        eng_tensor tmp;
        const size_t count = (size_t)c->relative_attention_num_buckets * (size_t)c->num_heads;
        m->bias_table = malloc(count * sizeof *m->bias_table);
        if (!m->bias_table)
            return eng_error_set(w->err, ENG_ENOMEM, "t5: out of memory");
        ENG_TRY(eng_tensor_init(&tmp, m->be, ENG_DTYPE_F32, table->ndim, table->shape, w->err));
        int rc = 0;
        ENG_TRY_DONE(eng_op_convert(&tmp, table, w->err));
        ENG_TRY_DONE(eng_tensor_download(&tmp, m->bias_table, w->err));
    done:
        eng_tensor_free(&tmp);
        return rc;
    }
    return 0;
}

static int load_weights(eng_t5 *m, const char *dir, eng_error *err)
{
    eng_safetensors *st = NULL;
    t5_walk w = {m, 0, EMBED_NAME, err};
    int rc = 0;

    ENG_TRY(eng_safetensors_open_dir(&st, dir, err));
    if (!eng_safetensors_find(st, EMBED_NAME) && eng_safetensors_find(st, EMBED_ALT_NAME))
        w.embed_src = EMBED_ALT_NAME;
    ENG_TRY_DONE(eng_weights_init(&m->weights, st, dir, m->be, m->dtype, err));
    ENG_TRY_DONE(walk_model(&w));
    ENG_TRY_DONE(eng_weights_load(m->weights, err));
done:
    eng_safetensors_close(st);
    ENG_TRY(rc);
    w.bind = 1;
    return walk_model(&w);
}

/* The bucket rule divides by max_exact and by log(max_distance / max_exact). */
static int check_buckets(const eng_t5_config *c, const char *path, eng_error *err)
{
    const int max_exact = c->relative_attention_num_buckets / 4;
    if (max_exact < 1)
        return eng_error_set(err, ENG_EUNSUPPORTED,
                             "%s: key \"relative_attention_num_buckets\" = %d: tttd needs >= 4",
                             path, c->relative_attention_num_buckets);
    if (c->relative_attention_max_distance <= max_exact)
        return eng_error_set(err, ENG_EUNSUPPORTED,
                             "%s: key \"relative_attention_max_distance\" = %d must exceed "
                             "relative_attention_num_buckets / 4 = %d",
                             path, c->relative_attention_max_distance, max_exact);
    return 0;
}

int eng_t5_load(eng_t5 **out, const char *dir, eng_backend *be, eng_dtype dtype, eng_error *err)
{
    char path[4096];
    int rc = 0;

    *out = NULL;
    if (!dir || !be)
        return eng_error_set(err, ENG_EINVAL, "t5: NULL folder or backend");
    eng_t5 *m = calloc(1, sizeof *m);
    if (!m)
        return eng_error_set(err, ENG_ENOMEM, "t5: out of memory");
    m->be = be;
    m->dtype = dtype;
    eng_arena_init(&m->arena, be);
    snprintf(path, sizeof path, "%s/config.json", dir);
    ENG_TRY_DONE(eng_config_load_t5(path, &m->cfg, err));
    ENG_TRY_DONE(check_buckets(&m->cfg, path, err));
    m->blocks = calloc((size_t)m->cfg.num_layers, sizeof *m->blocks);
    if (!m->blocks)
        ENG_TRY_DONE(eng_error_set(err, ENG_ENOMEM, "t5: out of memory"));
    ENG_TRY_DONE(load_weights(m, dir, err));
    *out = m;
done:
    if (rc)
        eng_t5_free(m);
    return rc;
}

void eng_t5_free(eng_t5 *m)
{
    if (!m)
        return;
    eng_tensor_free(&m->bias);
    eng_arena_free(&m->arena);
    eng_weights_free(m->weights);
    free(m->bias_table);
    free(m->blocks);
    free(m);
}

const eng_t5_config *eng_t5_get_config(const eng_t5 *m)
{
    return &m->cfg;
}

eng_backend *eng_t5_backend(const eng_t5 *m)
{
    return m->be;
}

/* ---- the forward pass ---- */

static int act(eng_t5 *m, eng_tensor *t, int ndim, const int64_t *shape, eng_error *err)
{
    return eng_arena_tensor(&m->arena, t, m->dtype, ndim, shape, err);
}

/* One block, in place on x [B, N, D]. */
static int block_forward(eng_t5 *m, const t5_block *b, eng_tensor *x, eng_error *err)
{
    const eng_t5_config *c = &m->cfg;
    const int64_t B = x->shape[0], N = x->shape[1], D = c->d_model;
    const int64_t I = (int64_t)c->num_heads * c->d_kv, F = c->d_ff;
    const float eps = (float)c->layer_norm_epsilon;
    eng_arena_mark mark = eng_arena_get_mark(&m->arena);
    eng_tensor h, q, k, v, a, f, g;
    int rc = 0;

    ENG_TRY_DONE(act(m, &h, ENG_SHAPE(B, N, D), err));
    ENG_TRY_DONE(act(m, &q, ENG_SHAPE(B, N, I), err));
    ENG_TRY_DONE(act(m, &k, ENG_SHAPE(B, N, I), err));
    ENG_TRY_DONE(act(m, &v, ENG_SHAPE(B, N, I), err));
    ENG_TRY_DONE(act(m, &a, ENG_SHAPE(B, N, I), err));
    ENG_TRY_DONE(act(m, &f, ENG_SHAPE(B, N, F), err));
    if (c->is_gated_act)
        ENG_TRY_DONE(act(m, &g, ENG_SHAPE(B, N, F), err));

    ENG_TRY_DONE(eng_op_rms_norm(&h, x, b->ln_attn, eps, err));
    ENG_TRY_DONE(eng_op_linear(&q, &h, b->q, NULL, err));
    ENG_TRY_DONE(eng_op_linear(&k, &h, b->k, NULL, err));
    ENG_TRY_DONE(eng_op_linear(&v, &h, b->v, NULL, err));
    /* T5 does not scale the scores: the 1/sqrt(d) is folded into q's initialisation. */
    eng_attention_params p = {c->num_heads, 1.0f, 0};
    ENG_TRY_DONE(eng_op_attention(&a, &q, &k, &v, &m->bias, &p, err));
    ENG_TRY_DONE(eng_op_linear(&h, &a, b->o, NULL, err));
    ENG_TRY_DONE(eng_op_add(x, x, &h, err));

    ENG_TRY_DONE(eng_op_rms_norm(&h, x, b->ln_ff, eps, err));
    ENG_TRY_DONE(eng_op_linear(&f, &h, b->wi_0, NULL, err));
    ENG_TRY_DONE(eng_op_act(&f, &f, c->dense_act_fn, err));
    if (c->is_gated_act) {
        ENG_TRY_DONE(eng_op_linear(&g, &h, b->wi_1, NULL, err));
        ENG_TRY_DONE(eng_op_mul(&f, &f, &g, err));
    }
    ENG_TRY_DONE(eng_op_linear(&h, &f, b->wo, NULL, err));
    ENG_TRY_DONE(eng_op_add(x, x, &h, err));
done:
    eng_arena_release(&m->arena, mark);
    return rc;
}

static int check_args(eng_t5 *m, const eng_tensor *ids, const eng_tensor *out, eng_error *err)
{
    char a[96];
    if (!ids || ids->dtype != ENG_DTYPE_I32 || ids->ndim != 2 || ids->shape[0] < 1 ||
        ids->shape[1] < 1)
        return eng_error_set(err, ENG_EINVAL, "t5: ids must be an I32 tensor [B, N], B, N >= 1");
    if (ids->backend && ids->backend != m->be)
        return eng_error_set(err, ENG_EINVAL, "t5: ids are neither on the host nor on %s",
                             m->be->name);
    /* The bias alone is h * N^2 floats: keep N to what fits an int index comfortably. */
    if (ids->shape[1] > 8192)
        return eng_error_set(err, ENG_EINVAL, "t5: %lld tokens; at most 8192",
                             (long long)ids->shape[1]);
    if (!out || out->backend != m->be || out->dtype == ENG_DTYPE_I32 || out->ndim != 3 ||
        out->shape[0] != ids->shape[0] || out->shape[1] != ids->shape[1] ||
        out->shape[2] != m->cfg.d_model)
        return eng_error_set(err, ENG_EINVAL,
                             "t5: out must be a float tensor [%lld, %lld, %d] on %s, not %s",
                             (long long)ids->shape[0], (long long)ids->shape[1], m->cfg.d_model,
                             m->be->name, out ? eng_shape_str(out, a, sizeof a) : "NULL");
    return 0;
}

static int encode(eng_t5 *m, const eng_tensor *ids, eng_tensor *out, eng_error *err)
{
    const eng_t5_config *c = &m->cfg;
    const int64_t B = ids->shape[0], N = ids->shape[1], D = c->d_model;
    eng_tensor dev_ids, x, y;

    ENG_TRY(position_bias(m, N, err));
    if (ids->backend) {
        dev_ids = *ids;
    } else {
        ENG_TRY(eng_arena_tensor(&m->arena, &dev_ids, ENG_DTYPE_I32, ENG_SHAPE(B, N), err));
        ENG_TRY(eng_tensor_upload(&dev_ids, ids->data, err));
    }
    ENG_TRY(act(m, &x, ENG_SHAPE(B, N, D), err));
    ENG_TRY(eng_op_embedding(&x, m->embed, &dev_ids, err));
    for (int i = 0; i < c->num_layers; i++)
        ENG_TRY(block_forward(m, &m->blocks[i], &x, err));
    if (out->dtype == m->dtype)
        return eng_op_rms_norm(out, &x, m->final_ln, (float)c->layer_norm_epsilon, err);
    ENG_TRY(act(m, &y, ENG_SHAPE(B, N, D), err));
    ENG_TRY(eng_op_rms_norm(&y, &x, m->final_ln, (float)c->layer_norm_epsilon, err));
    return eng_op_convert(out, &y, err);
}

int eng_t5_encode(eng_t5 *m, const eng_tensor *ids, eng_tensor *out, eng_error *err)
{
    if (!m)
        return eng_error_set(err, ENG_EINVAL, "t5: NULL model");
    ENG_TRY(check_args(m, ids, out, err));
    eng_arena_mark mark = eng_arena_get_mark(&m->arena);
    int rc = encode(m, ids, out, err);
    eng_arena_release(&m->arena, mark);
    if (rc)
        eng_error_prefix(err, "t5");
    return rc;
}
