/*
 * mmdit_forward.c - the MMDiT's entry points above its stages (mmdit.c): eng_mmdit_forward (the
 * arguments checked, then op by op or through a graph) and eng_mmdit_free.
 *
 * Graphs: the forward recorded once per input shape and replayed (CUDA graphs through the
 * backend's capture hooks), so that a forward costs one launch of host work instead of one per
 * op.
 *
 * Per shape (B, H, W, Nt) a slot holds staging tensors for the inputs and the output, so that a
 * graph is independent of the caller's buffers: a forward copies x, ctx and pooled in (device
 * copies), uploads the timestep features, replays, and copies out back. The first forward of a
 * shape runs eagerly on the staging: it sizes the arena (which settles into one block at the end
 * of that forward), the kernels' scratch and their cached plans, so that the second, recorded,
 * forward allocates nothing and never waits. A graph records the arena's and the scratch's
 * addresses: when either is later replaced (a larger shape outgrew it), the slot warms up and
 * records again. A recording that fails (an op waited or allocated after all) leaves the shape eager for
 * good, with a warning in the log.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/core/log.h"
#include "engine/models/mmdit_internal.h"

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

static int mmdit_graph_usable(const eng_mmdit *m)
{
    const eng_backend *be = m->be;
    return m->graphs_on && be->capture_begin && be->capture_end && be->graph_launch &&
           be->graph_free && be->memory_generation && !be->prof;
}

static void slot_free(eng_mmdit *m, mmdit_graph *g)
{
    if (g->graph)
        m->be->graph_free(m->be, g->graph);
    eng_tensor_free(&g->x);
    eng_tensor_free(&g->tfeat);
    eng_tensor_free(&g->ctx);
    eng_tensor_free(&g->pooled);
    eng_tensor_free(&g->out);
    memset(g, 0, sizeof *g);
}

static void mmdit_graphs_free(eng_mmdit *m)
{
    for (int i = 0; i < MMDIT_GRAPHS; i++)
        slot_free(m, &m->graphs[i]);
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

void eng_mmdit_set_graphs(eng_mmdit *m, int on)
{
    if (!m)
        return;
    m->graphs_on = on != 0;
    if (!on)
        mmdit_graphs_free(m);
}

/* A slot with staging for this shape: the one that has it, else a new one in place of the least
 * recently used. */
static int slot_get(eng_mmdit *m, const eng_tensor *x, const eng_tensor *ctx,
                    const eng_tensor *pooled, mmdit_graph **out, eng_error *err)
{
    int64_t B = x->shape[0], H = x->shape[2], W = x->shape[3], Nt = ctx->shape[1];
    mmdit_graph *g = NULL;
    int rc;

    for (int i = 0; i < MMDIT_GRAPHS; i++) {
        mmdit_graph *s = &m->graphs[i];
        if (s->B == B && s->H == H && s->W == W && s->Nt == Nt) {
            s->last_use = ++m->graph_clock;
            *out = s;
            return 0;
        }
        if (!g || s->last_use < g->last_use)
            g = s;
    }
    slot_free(m, g);
    g->B = B, g->H = H, g->W = W, g->Nt = Nt;
    g->last_use = ++m->graph_clock;
    ENG_TRY_DONE(eng_tensor_init(&g->x, m->be, m->dtype, x->ndim, x->shape, err));
    ENG_TRY_DONE(eng_tensor_init(&g->tfeat, m->be, ENG_DTYPE_F32, ENG_SHAPE(B, MMDIT_TIME_CHANNELS),
                                 err));
    ENG_TRY_DONE(eng_tensor_init(&g->ctx, m->be, m->dtype, ctx->ndim, ctx->shape, err));
    ENG_TRY_DONE(eng_tensor_init(&g->pooled, m->be, m->dtype, pooled->ndim, pooled->shape, err));
    ENG_TRY_DONE(eng_tensor_init(&g->out, m->be, m->dtype, x->ndim, x->shape, err));
    *out = g;
    return 0;
done:
    slot_free(m, g);
    return rc;
}

/* Records the forward on g's staging (state READY); on failure the shape stays eager (state
 * FAILED, a warning, not an error: the eager forward computes the same). */
static void record(eng_mmdit *m, mmdit_graph *g)
{
    eng_error cerr = {0};
    int rc = m->be->capture_begin(m->be, &cerr);
    if (!rc) {
        int body = mmdit_forward_body(m, &g->x, &g->tfeat, &g->ctx, &g->pooled, &g->out, &cerr);
        eng_error eerr = {0};
        rc = m->be->capture_end(m->be, &g->graph, body ? &eerr : &cerr);
        if (body) {
            if (g->graph)
                m->be->graph_free(m->be, g->graph);
            rc = body;
        }
    }
    if (rc) {
        LOG_WARN("mmdit: recording the forward of batch %lld, %lld x %lld latents, "
                 "%lld text tokens as a graph failed (%s); this shape runs op by op",
                (long long)g->B, (long long)g->H, (long long)g->W, (long long)g->Nt, cerr.msg);
        g->graph = NULL;
        g->state = MMDIT_GRAPH_FAILED;
        return;
    }
    g->state = MMDIT_GRAPH_READY;
    g->arena_base = m->arena.base;
    g->arena_cap = m->arena.cap;
    g->mem_gen = m->be->memory_generation(m->be);
}

static int mmdit_graph_forward(eng_mmdit *m, const eng_tensor *x, const float *t,
                               const eng_tensor *ctx, const eng_tensor *pooled, eng_tensor *out,
                               eng_error *err)
{
    mmdit_graph *g;
    float feat[64 * MMDIT_TIME_CHANNELS], *f = feat;
    int64_t B = x->shape[0];
    int rc = 0;

    ENG_TRY(slot_get(m, x, ctx, pooled, &g, err));
    if (B > 64 && !(f = malloc((size_t)B * MMDIT_TIME_CHANNELS * sizeof *f)))
        return eng_error_set(err, ENG_ENOMEM, "mmdit: out of memory");
    mmdit_time_features(t, B, f);
    ENG_TRY_DONE(eng_tensor_upload(&g->tfeat, f, err));
    ENG_TRY_DONE(eng_op_convert(&g->x, x, err));
    ENG_TRY_DONE(eng_op_convert(&g->ctx, ctx, err));
    ENG_TRY_DONE(eng_op_convert(&g->pooled, pooled, err));

    if (g->state == MMDIT_GRAPH_READY &&
        (g->arena_base != m->arena.base || g->arena_cap != m->arena.cap ||
         g->mem_gen != m->be->memory_generation(m->be))) {
        /* The arena block or the kernels' scratch was replaced since the recording (a larger
         * shape ran): warm up and record again. */
        m->be->graph_free(m->be, g->graph);
        g->graph = NULL;
        g->state = MMDIT_GRAPH_FRESH;
    }
    switch (g->state) {
    case MMDIT_GRAPH_FRESH:
    case MMDIT_GRAPH_FAILED:
        ENG_TRY_DONE(mmdit_forward_body(m, &g->x, &g->tfeat, &g->ctx, &g->pooled, &g->out, err));
        if (g->state == MMDIT_GRAPH_FRESH)
            g->state = MMDIT_GRAPH_WARM;
        break;
    case MMDIT_GRAPH_WARM:
        record(m, g);
        if (g->state == MMDIT_GRAPH_READY)
            ENG_TRY_DONE(m->be->graph_launch(m->be, g->graph, err));
        else
            ENG_TRY_DONE(
                mmdit_forward_body(m, &g->x, &g->tfeat, &g->ctx, &g->pooled, &g->out, err));
        break;
    case MMDIT_GRAPH_READY:
        ENG_TRY_DONE(m->be->graph_launch(m->be, g->graph, err));
        break;
    }
    rc = eng_op_convert(out, &g->out, err);
done:
    if (f != feat)
        free(f);
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
    ENG_TRY_DONE(mmdit_upload_features(m, &tfeat, t, x->shape[0], err));
    rc = mmdit_forward_body(m, x, &tfeat, ctx, pooled, out, err);
done:
    eng_arena_release(&m->arena, mark);
    return rc;
}
