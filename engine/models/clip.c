/*
 * clip.c - the CLIP text encoder of clip.h: loading from a transformers folder and the forward
 * pass through the eng_op_* front end (so it runs on any backend).
 *
 * Shapes: B = batch, N = tokens, C = hidden_size, F = intermediate_size, P = projection_dim,
 * L = num_hidden_layers. Activations come from the model's arena and are given back layer by
 * layer.
 */
#include "engine/models/clip.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend/arena.h"
#include "engine/io/safetensors.h"
#include "engine/io/weights.h"

typedef const eng_tensor *wt; /* a weight borrowed from the store */

typedef struct clip_layer {
    wt ln1_w, ln1_b, ln2_w, ln2_b;
    wt q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b;
    wt fc1_w, fc1_b, fc2_w, fc2_b;
} clip_layer;

struct eng_clip {
    eng_clip_text_config cfg;
    eng_backend *be;
    eng_dtype dtype;
    eng_weights *weights;
    eng_arena arena;
    wt tok_emb, pos_emb;  /* [V, C], [max_positions, C] */
    wt final_w, final_b;  /* final_layer_norm */
    wt proj;              /* text_projection [P, C] */
    clip_layer *layers;   /* L */
};

/* ---- loading ---- */

/*
 * One list of every tensor the config calls for, walked twice: to declare them to the weight
 * store (which checks names and shapes against the file) and, once loaded, to bind them.
 */
typedef struct clip_walk {
    eng_clip *m;
    int bind;
    eng_error *err;
} clip_walk;

static int walk_one(clip_walk *w, wt *slot, const char *name, int64_t d0, int64_t d1)
{
    int64_t shape[2] = {d0, d1};
    int ndim = d1 > 0 ? 2 : 1;
    if (!w->bind)
        return eng_weights_add(w->m->weights, name, ndim, shape, NULL, w->err);
    return eng_weights_get(w->m->weights, name, ndim, shape, slot, w->err);
}

static int walk_layer(clip_walk *w, int i, clip_layer *l)
{
    const eng_clip_text_config *c = &w->m->cfg;
    const int64_t C = c->hidden_size, F = c->intermediate_size;
    char n[160];
    struct {
        const char *suffix;
        wt *slot;
        int64_t d0, d1;
    } t[] = {
        {"layer_norm1.weight", &l->ln1_w, C, 0},     {"layer_norm1.bias", &l->ln1_b, C, 0},
        {"self_attn.q_proj.weight", &l->q_w, C, C},  {"self_attn.q_proj.bias", &l->q_b, C, 0},
        {"self_attn.k_proj.weight", &l->k_w, C, C},  {"self_attn.k_proj.bias", &l->k_b, C, 0},
        {"self_attn.v_proj.weight", &l->v_w, C, C},  {"self_attn.v_proj.bias", &l->v_b, C, 0},
        {"self_attn.out_proj.weight", &l->o_w, C, C}, {"self_attn.out_proj.bias", &l->o_b, C, 0},
        {"layer_norm2.weight", &l->ln2_w, C, 0},     {"layer_norm2.bias", &l->ln2_b, C, 0},
        {"mlp.fc1.weight", &l->fc1_w, F, C},         {"mlp.fc1.bias", &l->fc1_b, F, 0},
        {"mlp.fc2.weight", &l->fc2_w, C, F},         {"mlp.fc2.bias", &l->fc2_b, C, 0},
    };
    for (size_t j = 0; j < sizeof t / sizeof t[0]; j++) {
        snprintf(n, sizeof n, "text_model.encoder.layers.%d.%s", i, t[j].suffix);
        ENG_TRY(walk_one(w, t[j].slot, n, t[j].d0, t[j].d1));
    }
    return 0;
}

static int walk_model(clip_walk *w)
{
    eng_clip *m = w->m;
    const eng_clip_text_config *c = &m->cfg;
    const int64_t C = c->hidden_size;
    ENG_TRY(walk_one(w, &m->tok_emb, "text_model.embeddings.token_embedding.weight", c->vocab_size, C));
    ENG_TRY(walk_one(w, &m->pos_emb, "text_model.embeddings.position_embedding.weight",
                 c->max_position_embeddings, C));
    for (int i = 0; i < c->num_hidden_layers; i++)
        ENG_TRY(walk_layer(w, i, &m->layers[i]));
    ENG_TRY(walk_one(w, &m->final_w, "text_model.final_layer_norm.weight", C, 0));
    ENG_TRY(walk_one(w, &m->final_b, "text_model.final_layer_norm.bias", C, 0));
    ENG_TRY(walk_one(w, &m->proj, "text_projection.weight", c->projection_dim, C));
    return 0;
}

static int load_weights(eng_clip *m, const char *dir, eng_error *err)
{
    eng_safetensors *st = NULL;
    clip_walk w = {m, 0, err};
    int rc = 0;

    ENG_TRY(eng_safetensors_open_dir(&st, dir, err));
    ENG_TRY_DONE(eng_weights_init(&m->weights, st, dir, m->be, m->dtype, err));
    ENG_TRY_DONE(walk_model(&w));
    ENG_TRY_DONE(eng_weights_load(m->weights, err));
done:
    eng_safetensors_close(st);
    ENG_TRY(rc);
    w.bind = 1;
    return walk_model(&w);
}

int eng_clip_load(eng_clip **out, const char *dir, eng_backend *be, eng_dtype dtype,
                  eng_error *err)
{
    char path[4096];
    int rc = 0;

    *out = NULL;
    if (!dir || !be)
        return eng_error_set(err, ENG_EINVAL, "clip: NULL folder or backend");
    eng_clip *m = calloc(1, sizeof *m);
    if (!m)
        return eng_error_set(err, ENG_ENOMEM, "clip: out of memory");
    m->be = be;
    m->dtype = dtype;
    eng_arena_init(&m->arena, be);
    snprintf(path, sizeof path, "%s/config.json", dir);
    ENG_TRY_DONE(eng_config_load_clip_text(path, &m->cfg, err));
    m->layers = calloc((size_t)m->cfg.num_hidden_layers, sizeof *m->layers);
    if (!m->layers)
        ENG_TRY_DONE(eng_error_set(err, ENG_ENOMEM, "clip: out of memory"));
    ENG_TRY_DONE(load_weights(m, dir, err));
    *out = m;
done:
    if (rc)
        eng_clip_free(m);
    return rc;
}

void eng_clip_free(eng_clip *m)
{
    if (!m)
        return;
    eng_arena_free(&m->arena);
    eng_weights_free(m->weights);
    free(m->layers);
    free(m);
}

const eng_clip_text_config *eng_clip_get_config(const eng_clip *m)
{
    return &m->cfg;
}

eng_backend *eng_clip_backend(const eng_clip *m)
{
    return m->be;
}

/* ---- the forward pass ---- */

int eng_clip_pool_position(const eng_clip_text_config *cfg, const int32_t *ids, int n)
{
    int best = 0;
    if (cfg->eos_token_id == 2) {
        for (int i = 1; i < n; i++)
            if (ids[i] > ids[best])
                best = i;
        return best;
    }
    for (int i = 0; i < n; i++)
        if (ids[i] == cfg->eos_token_id)
            return i;
    return 0;
}

/* A new arena tensor in the model dtype. */
static int act(eng_clip *m, eng_tensor *t, int ndim, const int64_t *shape, eng_error *err)
{
    return eng_arena_tensor(&m->arena, t, m->dtype, ndim, shape, err);
}

/* Checks an output the caller asked for: on m's backend, a float dtype, the given shape. */
static int check_out(eng_clip *m, const char *what, const eng_tensor *t, int ndim,
                     const int64_t *shape, eng_error *err)
{
    if (!t)
        return 0;
    eng_tensor want = eng_tensor_view(NULL, m->be, m->dtype, ndim, shape);
    char a[96], b[96];
    if (t->backend != m->be)
        return eng_error_set(err, ENG_EINVAL, "clip: output %s is not on backend %s", what,
                             m->be->name);
    if (t->dtype == ENG_DTYPE_I32)
        return eng_error_set(err, ENG_EINVAL, "clip: output %s has dtype I32, expected a float",
                             what);
    if (!eng_tensor_same_shape(t, &want))
        return eng_error_set(err, ENG_EINVAL, "clip: output %s has shape %s, expected %s", what,
                             eng_shape_str(t, a, sizeof a), eng_shape_str(&want, b, sizeof b));
    return 0;
}

/* One encoder layer, in place on x [B, N, C]. */
static int layer_forward(eng_clip *m, const clip_layer *l, eng_tensor *x, eng_error *err)
{
    const eng_clip_text_config *c = &m->cfg;
    const int64_t B = x->shape[0], N = x->shape[1], C = c->hidden_size;
    const float eps = (float)c->layer_norm_eps;
    eng_arena_mark mark = eng_arena_get_mark(&m->arena);
    eng_tensor h, q, k, v, a, f;
    int rc = 0;

    ENG_TRY_DONE(act(m, &h, ENG_SHAPE(B, N, C), err));
    ENG_TRY_DONE(act(m, &q, ENG_SHAPE(B, N, C), err));
    ENG_TRY_DONE(act(m, &k, ENG_SHAPE(B, N, C), err));
    ENG_TRY_DONE(act(m, &v, ENG_SHAPE(B, N, C), err));
    ENG_TRY_DONE(act(m, &a, ENG_SHAPE(B, N, C), err));
    ENG_TRY_DONE(act(m, &f, ENG_SHAPE(B, N, c->intermediate_size), err));

    ENG_TRY_DONE(eng_op_layer_norm(&h, x, l->ln1_w, l->ln1_b, eps, err));
    ENG_TRY_DONE(eng_op_linear(&q, &h, l->q_w, l->q_b, err));
    ENG_TRY_DONE(eng_op_linear(&k, &h, l->k_w, l->k_b, err));
    ENG_TRY_DONE(eng_op_linear(&v, &h, l->v_w, l->v_b, err));
    eng_attention_params p = {c->num_attention_heads, 1.0f / sqrtf((float)c->head_dim), 1};
    ENG_TRY_DONE(eng_op_attention(&a, &q, &k, &v, NULL, &p, err));
    ENG_TRY_DONE(eng_op_linear(&h, &a, l->o_w, l->o_b, err));
    ENG_TRY_DONE(eng_op_add(x, x, &h, err));

    ENG_TRY_DONE(eng_op_layer_norm(&h, x, l->ln2_w, l->ln2_b, eps, err));
    ENG_TRY_DONE(eng_op_linear(&f, &h, l->fc1_w, l->fc1_b, err));
    ENG_TRY_DONE(eng_op_act(&f, &f, c->hidden_act, err));
    ENG_TRY_DONE(eng_op_linear(&h, &f, l->fc2_w, l->fc2_b, err));
    ENG_TRY_DONE(eng_op_add(x, x, &h, err));
done:
    eng_arena_release(&m->arena, mark);
    return rc;
}

/* dst = src (both on the backend; dst may have another float dtype). */
static int copy_to(eng_tensor *dst, const eng_tensor *src, eng_error *err)
{
    eng_tensor s;
    ENG_TRY(eng_tensor_reshape(src, dst->ndim, dst->shape, &s, err));
    return eng_op_convert(dst, &s, err);
}

/* ids [B, N] on the host: the pooled positions; ids on the backend: their host copy first. */
static int host_ids(const eng_tensor *ids, int32_t **host, int32_t **owned, eng_error *err)
{
    *owned = NULL;
    if (!ids->backend) {
        *host = ids->data;
        return 0;
    }
    *owned = malloc(eng_tensor_nbytes(ids) ? eng_tensor_nbytes(ids) : 1);
    if (!*owned)
        return eng_error_set(err, ENG_ENOMEM, "clip: out of memory");
    *host = *owned;
    return eng_tensor_download(ids, *owned, err);
}

static int check_ids(eng_clip *m, const eng_tensor *ids, eng_error *err)
{
    if (!ids || ids->dtype != ENG_DTYPE_I32 || ids->ndim != 2)
        return eng_error_set(err, ENG_EINVAL, "clip: ids must be an I32 tensor [B, N]");
    if (ids->backend && ids->backend != m->be)
        return eng_error_set(err, ENG_EINVAL, "clip: ids are neither on the host nor on %s",
                             m->be->name);
    if (ids->shape[0] < 1 || ids->shape[1] < 1 ||
        ids->shape[1] > m->cfg.max_position_embeddings)
        return eng_error_set(err, ENG_EINVAL,
                             "clip: ids have shape [%lld, %lld]; need B >= 1 and 1 <= N <= %d "
                             "(max_position_embeddings)",
                             (long long)ids->shape[0], (long long)ids->shape[1],
                             m->cfg.max_position_embeddings);
    return 0;
}

static int check_outputs(eng_clip *m, const eng_clip_outputs *o, int64_t B, int64_t N,
                         eng_error *err)
{
    const eng_clip_text_config *c = &m->cfg;
    const int64_t C = c->hidden_size;
    if (o->hidden && (o->hidden_layer_from_end < 1 ||
                      o->hidden_layer_from_end > c->num_hidden_layers + 1))
        return eng_error_set(err, ENG_EINVAL,
                             "clip: hidden_layer_from_end = %d is outside 1..%d "
                             "(hidden_states holds the embeddings and %d layers)",
                             o->hidden_layer_from_end, c->num_hidden_layers + 1,
                             c->num_hidden_layers);
    ENG_TRY(check_out(m, "hidden", o->hidden, ENG_SHAPE(B, N, C), err));
    ENG_TRY(check_out(m, "last_hidden", o->last_hidden, ENG_SHAPE(B, N, C), err));
    ENG_TRY(check_out(m, "pooled", o->pooled, ENG_SHAPE(B, C), err));
    ENG_TRY(check_out(m, "text_embeds", o->text_embeds, ENG_SHAPE(B, c->projection_dim), err));
    return 0;
}

/*
 * The final layer norm, pooling and projection on the last layer's output x [B, N, C]. The norm
 * is per token, so the pooled rows are gathered first and normalised alone, unless the whole
 * last_hidden is wanted.
 */
static int finish(eng_clip *m, const eng_tensor *x, const int32_t *ids, const eng_clip_outputs *o,
                  eng_error *err)
{
    const eng_clip_text_config *c = &m->cfg;
    const int64_t B = x->shape[0], N = x->shape[1], C = c->hidden_size;
    const size_t row = (size_t)C * eng_dtype_size(m->dtype);
    const float eps = (float)c->layer_norm_eps;
    eng_tensor last, pooled, embeds;
    const eng_tensor *src = x; /* rows gathered from here */

    if (o->last_hidden) {
        ENG_TRY(act(m, &last, ENG_SHAPE(B, N, C), err));
        ENG_TRY(eng_op_layer_norm(&last, x, m->final_w, m->final_b, eps, err));
        ENG_TRY(copy_to(o->last_hidden, &last, err));
        src = &last;
    }
    if (!o->pooled && !o->text_embeds)
        return 0;
    ENG_TRY(act(m, &pooled, ENG_SHAPE(B, C), err));
    for (int64_t b = 0; b < B; b++) {
        int pos = eng_clip_pool_position(c, ids + b * N, (int)N);
        eng_tensor from = eng_tensor_view((char *)src->data + (size_t)(b * N + pos) * row, m->be,
                                          m->dtype, ENG_SHAPE(1, C));
        eng_tensor to = eng_tensor_view((char *)pooled.data + (size_t)b * row, m->be, m->dtype,
                                        ENG_SHAPE(1, C));
        ENG_TRY(eng_op_convert(&to, &from, err));
    }
    if (!o->last_hidden)
        ENG_TRY(eng_op_layer_norm(&pooled, &pooled, m->final_w, m->final_b, eps, err));
    if (o->pooled)
        ENG_TRY(copy_to(o->pooled, &pooled, err));
    if (o->text_embeds) {
        ENG_TRY(act(m, &embeds, ENG_SHAPE(B, c->projection_dim), err));
        ENG_TRY(eng_op_linear(&embeds, &pooled, m->proj, NULL, err));
        ENG_TRY(copy_to(o->text_embeds, &embeds, err));
    }
    return 0;
}

static int encode(eng_clip *m, const eng_tensor *ids, const int32_t *host,
                  const eng_clip_outputs *o, eng_error *err)
{
    const eng_clip_text_config *c = &m->cfg;
    const int64_t B = ids->shape[0], N = ids->shape[1], C = c->hidden_size;
    const int L = c->num_hidden_layers;
    eng_tensor dev_ids, x;

    if (ids->backend) {
        dev_ids = *ids;
    } else {
        ENG_TRY(eng_arena_tensor(&m->arena, &dev_ids, ENG_DTYPE_I32, ENG_SHAPE(B, N), err));
        ENG_TRY(eng_tensor_upload(&dev_ids, host, err));
    }
    ENG_TRY(act(m, &x, ENG_SHAPE(B, N, C), err));
    ENG_TRY(eng_op_embedding(&x, m->tok_emb, &dev_ids, err));
    /* Positions 0..N-1 are the first N rows of the table. */
    eng_tensor pos = eng_tensor_view(m->pos_emb->data, m->be, m->dtype, ENG_SHAPE(N, C));
    ENG_TRY(eng_op_add(&x, &x, &pos, err));

    /* hidden_states[i]: i = 0 the embeddings, i = j + 1 the output of layer j. */
    const int want_hidden = o->hidden ? L + 1 - o->hidden_layer_from_end : -1;
    const int need_all = o->last_hidden || o->pooled || o->text_embeds;
    const int run = need_all ? L : (want_hidden > 0 ? want_hidden : 0);
    if (want_hidden == 0)
        ENG_TRY(copy_to(o->hidden, &x, err));
    for (int j = 0; j < run; j++) {
        ENG_TRY(layer_forward(m, &m->layers[j], &x, err));
        if (j + 1 == want_hidden)
            ENG_TRY(copy_to(o->hidden, &x, err));
    }
    if (need_all)
        ENG_TRY(finish(m, &x, host, o, err));
    return 0;
}

int eng_clip_encode_ex(eng_clip *m, const eng_tensor *ids, const eng_clip_outputs *o,
                       eng_error *err)
{
    int32_t *host = NULL, *owned = NULL;
    int rc = 0;

    if (!m || !o)
        return eng_error_set(err, ENG_EINVAL, "clip: NULL model or outputs");
    ENG_TRY(check_ids(m, ids, err));
    ENG_TRY(check_outputs(m, o, ids->shape[0], ids->shape[1], err));
    eng_arena_mark mark = eng_arena_get_mark(&m->arena);
    ENG_TRY_DONE(host_ids(ids, &host, &owned, err));
    ENG_TRY_DONE(encode(m, ids, host, o, err));
done:
    eng_arena_release(&m->arena, mark);
    free(owned);
    if (rc)
        eng_error_prefix(err, "clip");
    return rc;
}

int eng_clip_encode(eng_clip *m, const eng_tensor *ids, int hidden_layer_from_end,
                    eng_tensor *hidden, eng_tensor *text_embeds, eng_error *err)
{
    eng_clip_outputs o = {hidden_layer_from_end, hidden, NULL, NULL, text_embeds};
    return eng_clip_encode_ex(m, ids, &o, err);
}
