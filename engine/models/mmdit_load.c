/*
 * mmdit_load.c - loads an SD3-family MMDiT: the diffusers layout (a transformer folder with
 * config.json + *.safetensors) or the SAI single-file layout (model.diffusion_model.*).
 *
 * One walk over the model (walk_model) lists every tensor the config calls for, with its
 * diffusers name and shape. It runs twice: first to declare the tensors to the weight store
 * (which checks them against the file and, for the SAI layout, reads them from their SAI
 * names), then, after the store's one allocation is filled, to bind them into the model.
 *
 * A directory is the diffusers layout; a single file is the SAI layout (mmdit_sai.c: its names
 * and its config, derived from shapes). SAI files carry no TTT parameters: a TTT model is loaded
 * from the diffusers layout.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/core/log.h"
#include "engine/models/mmdit_internal.h"
#include "engine/io/safetensors.h"

#define NAME_MAX_LEN 256

typedef struct walker {
    eng_mmdit *m;
    eng_weights *w;
    int bind;           /* 0: declare to the store; 1: bind from it */
    const char *sai;    /* the SAI name prefix ("model.diffusion_model." or ""); NULL: diffusers */
    eng_error *err;
} walker;

/* ---- the walk ---- */

static int param(walker *W, wt *slot, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Declares or binds one tensor, named by fmt. */
static int param(walker *W, wt *slot, int ndim, const int64_t *shape, const char *fmt, ...)
{
    char name[NAME_MAX_LEN], sai_name[NAME_MAX_LEN];
    eng_weight_src src;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (W->bind)
        return eng_weights_get(W->w, name, ndim, shape, slot, W->err);
    if (W->sai) {
        ENG_TRY(mmdit_sai_source(&W->m->cfg, W->sai, name, ndim, shape, &src, sai_name,
                             sizeof sai_name, W->err));
        return eng_weights_add(W->w, name, ndim, shape, &src, W->err);
    }
    return eng_weights_add(W->w, name, ndim, shape, NULL, W->err);
}

/* <pre>.<sub>.weight [O, K] and <pre>.<sub>.bias [O] (sub may be ""). */
static int lin(walker *W, wt *w, wt *b, int64_t O, int64_t K, const char *pre, const char *sub)
{
    const char *dot = *sub ? "." : "";
    ENG_TRY(param(W, w, ENG_SHAPE(O, K), "%s%s%s.weight", pre, dot, sub));
    return param(W, b, ENG_SHAPE(O), "%s%s%s.bias", pre, dot, sub);
}

static int walk_attn(walker *W, mmdit_attn *a, int block, const char *module, int joint,
                     int add_out, int ttt)
{
    const eng_transformer_config *c = &W->m->cfg;
    int64_t C = c->inner_dim, d = c->attention_head_dim, h = c->num_attention_heads;
    char pre[64];

    snprintf(pre, sizeof pre, "transformer_blocks.%d.%s", block, module);
    ENG_TRY(lin(W, &a->q_w, &a->q_b, C, C, pre, "to_q"));
    ENG_TRY(lin(W, &a->k_w, &a->k_b, C, C, pre, "to_k"));
    ENG_TRY(lin(W, &a->v_w, &a->v_b, C, C, pre, "to_v"));
    ENG_TRY(lin(W, &a->out_w, &a->out_b, C, C, pre, "to_out.0"));
    if (c->qk_norm == ENG_QK_NORM_RMS) {
        ENG_TRY(param(W, &a->norm_q, ENG_SHAPE(d), "%s.norm_q.weight", pre));
        ENG_TRY(param(W, &a->norm_k, ENG_SHAPE(d), "%s.norm_k.weight", pre));
    }
    if (joint) {
        ENG_TRY(lin(W, &a->aq_w, &a->aq_b, C, C, pre, "add_q_proj"));
        ENG_TRY(lin(W, &a->ak_w, &a->ak_b, C, C, pre, "add_k_proj"));
        ENG_TRY(lin(W, &a->av_w, &a->av_b, C, C, pre, "add_v_proj"));
        if (c->qk_norm == ENG_QK_NORM_RMS) {
            ENG_TRY(param(W, &a->norm_aq, ENG_SHAPE(d), "%s.norm_added_q.weight", pre));
            ENG_TRY(param(W, &a->norm_ak, ENG_SHAPE(d), "%s.norm_added_k.weight", pre));
        }
        if (add_out)
            ENG_TRY(lin(W, &a->aout_w, &a->aout_b, C, C, pre, "to_add_out"));
    }
    a->ttt = ttt;
    if (ttt) {
        ENG_TRY(param(W, &a->w1, ENG_SHAPE(h, d, d), "%s.w1", pre));
        ENG_TRY(param(W, &a->w2, ENG_SHAPE(h, d, d), "%s.w2", pre));
        ENG_TRY(param(W, &a->qconv_w, ENG_SHAPE(C, 1, 3, 3), "%s.q_conv.weight", pre));
        ENG_TRY(param(W, &a->qconv_b, ENG_SHAPE(C), "%s.q_conv.bias", pre));
        ENG_TRY(param(W, &a->kconv_w, ENG_SHAPE(C, 1, 3, 3), "%s.k_conv.weight", pre));
        ENG_TRY(param(W, &a->kconv_b, ENG_SHAPE(C), "%s.k_conv.bias", pre));
    }
    return 0;
}

static int walk_block(walker *W, int i)
{
    const eng_transformer_config *c = &W->m->cfg;
    mmdit_block *b = &W->m->blocks[i];
    int64_t C = c->inner_dim;
    char pre[64];

    b->dual = c->dual_attention[i];
    b->pre_only = i == c->num_layers - 1;
    snprintf(pre, sizeof pre, "transformer_blocks.%d", i);
    ENG_TRY(lin(W, &b->norm1_w, &b->norm1_b, (b->dual ? 9 : 6) * C, C, pre, "norm1.linear"));
    ENG_TRY(lin(W, &b->norm1c_w, &b->norm1c_b, (b->pre_only ? 2 : 6) * C, C, pre,
            "norm1_context.linear"));
    ENG_TRY(walk_attn(W, &b->attn, i, "attn", 1, !b->pre_only, c->ttt_attn[i]));
    if (b->dual)
        ENG_TRY(walk_attn(W, &b->attn2, i, "attn2", 0, 0, c->ttt_attn2[i]));
    ENG_TRY(lin(W, &b->ff1_w, &b->ff1_b, 4 * C, C, pre, "ff.net.0.proj"));
    ENG_TRY(lin(W, &b->ff2_w, &b->ff2_b, C, 4 * C, pre, "ff.net.2"));
    if (!b->pre_only) {
        ENG_TRY(lin(W, &b->ffc1_w, &b->ffc1_b, 4 * C, C, pre, "ff_context.net.0.proj"));
        ENG_TRY(lin(W, &b->ffc2_w, &b->ffc2_b, C, 4 * C, pre, "ff_context.net.2"));
    }
    return 0;
}

static int walk_model(walker *W)
{
    eng_mmdit *m = W->m;
    const eng_transformer_config *c = &m->cfg;
    int64_t C = c->inner_dim, p = c->patch_size, M = c->pos_embed_max_size;

    ENG_TRY(param(W, &m->pos_embed, ENG_SHAPE(1, M * M, C), "pos_embed.pos_embed"));
    ENG_TRY(lin(W, &m->t1_w, &m->t1_b, C, MMDIT_TIME_CHANNELS, "time_text_embed.timestep_embedder",
            "linear_1"));
    ENG_TRY(lin(W, &m->t2_w, &m->t2_b, C, C, "time_text_embed.timestep_embedder", "linear_2"));
    ENG_TRY(lin(W, &m->p1_w, &m->p1_b, C, c->pooled_projection_dim, "time_text_embed.text_embedder",
            "linear_1"));
    ENG_TRY(lin(W, &m->p2_w, &m->p2_b, C, C, "time_text_embed.text_embedder", "linear_2"));
    ENG_TRY(param(W, &m->patch_w, ENG_SHAPE(C, c->in_channels, p, p), "pos_embed.proj.weight"));
    ENG_TRY(param(W, &m->patch_b, ENG_SHAPE(C), "pos_embed.proj.bias"));
    ENG_TRY(lin(W, &m->ctx_w, &m->ctx_b, C, c->joint_attention_dim, "context_embedder", ""));
    for (int i = 0; i < c->num_layers; i++)
        ENG_TRY(walk_block(W, i));
    ENG_TRY(lin(W, &m->out_norm_w, &m->out_norm_b, 2 * C, C, "norm_out", "linear"));
    return lin(W, &m->proj_w, &m->proj_b, p * p * c->out_channels, C, "proj_out", "");
}

int mmdit_bind(eng_mmdit *m, eng_error *err)
{
    walker W = {m, m->weights, 1, NULL, err};
    return walk_model(&W);
}

/* Logs the checkpoint tensors that the config does not use (diffusers warns likewise). */
static void warn_unused(const eng_mmdit *m, const eng_safetensors *st, const char *path)
{
    size_t unused = 0;
    const char *first = NULL;
    for (size_t i = 0; i < eng_safetensors_count(st); i++) {
        const char *n = eng_safetensors_at(st, i)->name;
        if (!eng_weights_find(m->weights, n) && !unused++)
            first = n;
    }
    if (unused)
        LOG_WARN("%s: %zu tensors are not used by its config (the first: %s)", path, unused,
                 first);
}

int eng_mmdit_load(eng_mmdit **out, const char *path, eng_backend *be, eng_dtype dtype,
                   eng_error *err)
{
    eng_safetensors *st = NULL;
    const char *sai = NULL;
    struct stat sb;
    int rc = 0;

    *out = NULL;
    if (!path || !be)
        return eng_error_set(err, ENG_EINVAL, "mmdit: NULL path or backend");
    if (dtype != ENG_DTYPE_F32 && dtype != ENG_DTYPE_F16 && dtype != ENG_DTYPE_BF16)
        return eng_error_set(err, ENG_EINVAL, "mmdit: dtype %s is not a float dtype",
                             eng_dtype_name(dtype));
    if (be->kind == ENG_DEVICE_CPU && dtype != ENG_DTYPE_F32)
        return eng_error_set(err, ENG_EUNSUPPORTED, "mmdit: the CPU backend runs F32 models, not %s",
                             eng_dtype_name(dtype));
    if (stat(path, &sb) != 0)
        return eng_error_set(err, ENG_ENOTFOUND, "%s: no such file or folder", path);

    eng_mmdit *m = calloc(1, sizeof *m);
    if (!m)
        return eng_error_set(err, ENG_ENOMEM, "mmdit: out of memory");
    m->be = be;
    m->dtype = dtype;
    eng_arena_init(&m->arena, be);
    m->graphs_on = 1;

    if (S_ISDIR(sb.st_mode)) {
        char cfg_path[4096];
        snprintf(cfg_path, sizeof cfg_path, "%s/config.json", path);
        ENG_TRY_DONE(eng_config_load_transformer(cfg_path, &m->cfg, err));
        ENG_TRY_DONE(eng_safetensors_open_dir(&st, path, err));
    } else {
        ENG_TRY_DONE(eng_safetensors_open(&st, path, err));
        ENG_TRY_DONE(mmdit_sai_prefix(st, path, &sai, err));
        ENG_TRY_DONE(mmdit_sai_config(st, path, sai, &m->cfg, err));
    }
    if (!(m->blocks = calloc((size_t)m->cfg.num_layers, sizeof *m->blocks))) {
        rc = eng_error_set(err, ENG_ENOMEM, "mmdit: out of memory");
        goto done;
    }
    ENG_TRY_DONE(eng_weights_init(&m->weights, st, path, be, dtype, err));
    walker W = {m, m->weights, 0, sai, err};
    ENG_TRY_DONE(walk_model(&W));
    ENG_TRY_DONE(eng_weights_load(m->weights, err));
    if (!sai)
        warn_unused(m, st, path);
    eng_safetensors_close(st); /* the weights are on the backend now */
    st = NULL;
    ENG_TRY_DONE(mmdit_bind(m, err));
    LOG_INFO("%s: MMDiT of %d blocks, %lld parameters (%zu MiB %s on %s), %d TTT modules", path,
             m->cfg.num_layers, (long long)eng_weights_numel(m->weights),
             eng_weights_nbytes(m->weights) >> 20, eng_dtype_name(dtype), be->name,
             m->cfg.num_ttt_modules);
done:
    eng_safetensors_close(st);
    if (rc)
        eng_mmdit_free(m);
    else
        *out = m;
    return rc;
}
