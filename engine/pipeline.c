/*
 * pipeline.c - the SD3 text-to-image pipeline (engine/pipeline.h): loads a diffusers pipeline
 * folder and runs diffusers' StableDiffusion3Pipeline.__call__ for a batch of images that share
 * a size and a step count: initial latents (project RNG or given), prompt encoding
 * (engine/prompt.c), the batched-CFG denoising loop (engine/sampler.c) and the VAE decoder.
 *
 * Prompts are deduplicated before encoding: the positive prompts of the batch and the negative
 * prompts of the images that need one (guidance > 1) go through each text encoder once, in one
 * batch, and their rows are then copied to where the denoiser wants them. The common case of
 * many images with the default negative prompt "" thus encodes "" once.
 */
#include "engine/pipeline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/models/mmdit.h"
#include "engine/prompt.h"
#include "engine/core/rng.h"
#include "engine/sampler.h"
#include "engine/models/vae.h"

struct eng_pipeline {
    eng_backend *be;
    eng_dtype dtype;
    eng_model_index idx;
    eng_mmdit *mmdit;
    eng_vae *vae;
    eng_scheduler_config sched;
    eng_prompt_encoder *prompt;
};

/* ---- loading ---- */

static int required(const char *dir, const eng_model_index *idx, const char *name, char *path,
                    size_t len, eng_error *err)
{
    snprintf(path, len, "%s/%s", dir, name);
    if (!eng_model_index_find(idx, name))
        return eng_error_set(err, ENG_ENOTFOUND,
                             "%s/model_index.json: no \"%s\" component; an SD3 pipeline needs one",
                             dir, name);
    return 0;
}

static int name_folder(int rc, eng_error *err, const char *path)
{
    if (rc && err && !strstr(err->msg, path))
        eng_error_prefix(err, "%s", path);
    return rc;
}

int eng_pipeline_load(eng_pipeline **out, const char *model_dir, eng_backend *be, eng_dtype dtype,
                      eng_error *err)
{
    char path[4096];
    int rc = 0;
    if (!out)
        return eng_error_set(err, ENG_EINVAL, "pipeline: NULL output");
    *out = NULL;
    if (!model_dir || !be)
        return eng_error_set(err, ENG_EINVAL, "pipeline: NULL model folder or backend");
    eng_pipeline *p = calloc(1, sizeof *p);
    if (!p)
        return eng_error_set(err, ENG_ENOMEM, "pipeline: out of memory");
    p->be = be, p->dtype = dtype;

    snprintf(path, sizeof path, "%s/model_index.json", model_dir);
    ENG_TRY_DONE(eng_model_index_load(path, &p->idx, err));
    if (strncmp(p->idx.class_name, "StableDiffusion3", 16) != 0) {
        rc = eng_error_set(err, ENG_EUNSUPPORTED,
                           "%s: _class_name \"%s\" is not an SD3 pipeline "
                           "(StableDiffusion3Pipeline)",
                           path, p->idx.class_name);
        goto done;
    }

    ENG_TRY_DONE(required(model_dir, &p->idx, "transformer", path, sizeof path, err));
    ENG_TRY_DONE(name_folder(eng_mmdit_load(&p->mmdit, path, be, dtype, err), err, path));
    const eng_transformer_config *tc = eng_mmdit_config(p->mmdit);

    ENG_TRY_DONE(eng_prompt_encoder_load(&p->prompt, model_dir, &p->idx, tc->joint_attention_dim,
                                         tc->pooled_projection_dim, be, dtype, err));
    rc = eng_prompt_set_t5_len(p->prompt, p->idx.max_sequence_length, err);
    if (rc) {
        eng_error_prefix(err, "%s/model_index.json: _tttd_max_sequence_length", model_dir);
        goto done;
    }

    ENG_TRY_DONE(required(model_dir, &p->idx, "vae", path, sizeof path, err));
    ENG_TRY_DONE(name_folder(eng_vae_load(&p->vae, path, be, dtype, err), err, path));
    const eng_vae_config *vc = eng_vae_get_config(p->vae);
    if (vc->latent_channels != tc->in_channels || tc->in_channels != tc->out_channels) {
        rc = eng_error_set(err, ENG_EFORMAT,
                           "%s: latent_channels %d does not match the transformer's in_channels "
                           "%d / out_channels %d",
                           path, vc->latent_channels, tc->in_channels, tc->out_channels);
        goto done;
    }

    ENG_TRY_DONE(required(model_dir, &p->idx, "scheduler", path, sizeof path, err));
    snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", model_dir);
    ENG_TRY_DONE(eng_config_load_scheduler(path, &p->sched, err));
done:
    if (rc)
        eng_pipeline_free(p);
    else
        *out = p;
    return rc;
}

void eng_pipeline_free(eng_pipeline *p)
{
    if (!p)
        return;
    eng_prompt_encoder_free(p->prompt);
    eng_vae_free(p->vae);
    eng_mmdit_free(p->mmdit);
    eng_model_index_free(&p->idx);
    free(p);
}

const eng_transformer_config *eng_pipeline_transformer_config(const eng_pipeline *p)
{
    return eng_mmdit_config(p->mmdit);
}

int eng_pipeline_vae_scale(const eng_pipeline *p) { return eng_vae_scale_factor(p->vae); }

int eng_pipeline_latent_channels(const eng_pipeline *p)
{
    return eng_vae_get_config(p->vae)->latent_channels;
}

const eng_scheduler_config *eng_pipeline_scheduler_config(const eng_pipeline *p)
{
    return &p->sched;
}

int eng_pipeline_text_tokens(const eng_pipeline *p) { return eng_prompt_ctx_len(p->prompt); }

int eng_pipeline_text_tokens_of(const char *model_dir, eng_error *err)
{
    char path[4096];
    eng_model_index idx;
    if (!model_dir)
        return eng_error_set(err, ENG_EINVAL, "pipeline: NULL model folder");
    snprintf(path, sizeof path, "%s/model_index.json", model_dir);
    ENG_TRY(eng_model_index_load(path, &idx, err));
    int n = eng_prompt_ctx_len_of(model_dir, &idx, idx.max_sequence_length, err);
    eng_model_index_free(&idx);
    return n;
}

int eng_pipeline_set_max_sequence_length(eng_pipeline *p, int n, eng_error *err)
{
    if (!p)
        return eng_error_set(err, ENG_EINVAL, "pipeline: NULL pipeline");
    return eng_prompt_set_t5_len(p->prompt, n, err);
}

int eng_pipeline_has_encoder(const eng_pipeline *p, eng_text_encoder which)
{
    switch (which) {
    case ENG_TEXT_ENCODER_CLIP_L:
        return eng_prompt_has_clip_l(p->prompt);
    case ENG_TEXT_ENCODER_CLIP_G:
        return eng_prompt_has_clip_g(p->prompt);
    case ENG_TEXT_ENCODER_T5:
        return eng_prompt_has_t5(p->prompt);
    }
    return 0;
}

int eng_pipeline_encode_prompts(eng_pipeline *p, const char *const *prompts, int n,
                                eng_tensor *ctx, eng_tensor *pooled, eng_error *err)
{
    if (!p)
        return eng_error_set(err, ENG_EINVAL, "pipeline: NULL pipeline");
    return eng_prompt_encode(p->prompt, prompts, n, ctx, pooled, err);
}

int eng_pipeline_tokenize(const eng_pipeline *p, const char *prompt, int32_t *ids_l,
                          int32_t *ids_g, int32_t *ids_t5, eng_error *err)
{
    if (!p)
        return eng_error_set(err, ENG_EINVAL, "pipeline: NULL pipeline");
    return eng_prompt_tokenize(p->prompt, prompt, ids_l, ids_g, ids_t5, err);
}

/* ---- generation ---- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The clock is read after the backend has finished the phase's queued work. */
static int phase_end(eng_backend *be, double *t, eng_error *err)
{
    if (be->synchronize && be->synchronize(be))
        return eng_error_set(err, ENG_EDEVICE, "pipeline: synchronizing %s failed", be->name);
    *t = now_ms();
    return 0;
}

static int validate(const eng_pipeline *p, const eng_gen_request *req, eng_error *err)
{
    if (!p || !req)
        return eng_error_set(err, ENG_EINVAL, "generate: NULL pipeline or request");
    if (req->n < 1)
        return eng_error_set(err, ENG_EINVAL, "generate: n = %d images, expected >= 1", req->n);
    if (!req->items)
        return eng_error_set(err, ENG_EINVAL, "generate: NULL items");
    if (req->preview_every < 0)
        return eng_error_set(err, ENG_EINVAL, "generate: preview_every = %d is negative",
                             req->preview_every);
    if (req->steps < 1 || req->steps > ENG_SAMPLER_MAX_STEPS)
        return eng_error_set(err, ENG_EINVAL, "generate: steps = %d is out of range [1, %d]",
                             req->steps, ENG_SAMPLER_MAX_STEPS);
    const eng_transformer_config *tc = eng_mmdit_config(p->mmdit);
    int cell = eng_vae_scale_factor(p->vae) * tc->patch_size;
    int most = cell * tc->pos_embed_max_size; /* diffusers' cropped_pos_embed refuses more */
    const char *axis[2] = {"width", "height"};
    int size[2] = {req->width, req->height};
    for (int i = 0; i < 2; i++) {
        if (size[i] < cell || size[i] % cell)
            return eng_error_set(err, ENG_EINVAL,
                                 "generate: %s = %d must be a positive multiple of %d (the VAE "
                                 "scale %d times the patch size %d)",
                                 axis[i], size[i], cell, eng_vae_scale_factor(p->vae),
                                 tc->patch_size);
        if (size[i] > most)
            return eng_error_set(err, ENG_EINVAL,
                                 "generate: %s = %d is larger than the model's %d "
                                 "(pos_embed_max_size %d patches of %d pixels)",
                                 axis[i], size[i], most, tc->pos_embed_max_size, cell);
    }
    for (int b = 0; b < req->n; b++) {
        if (!req->items[b].prompt)
            return eng_error_set(err, ENG_EINVAL, "generate: image %d has a NULL prompt", b);
        if (!isfinite(req->items[b].guidance))
            return eng_error_set(err, ENG_EINVAL,
                                 "generate: image %d has a guidance scale that is not a finite "
                                 "number",
                                 b);
    }
    return 0;
}

/* The initial latents [n, C, h, w] on the host: each image's own, or its seed's. */
static int initial_latents(const eng_gen_request *req, int64_t C, int64_t h, int64_t w, float *x,
                           eng_error *err)
{
    int64_t per = C * h * w;
    for (int b = 0; b < req->n; b++) {
        const eng_gen_item *it = &req->items[b];
        float *dst = x + (int64_t)b * per;
        if (!it->latents) {
            eng_rng_latents_seeds(dst, 1, C, h, w, &it->seed);
            continue;
        }
        for (int64_t i = 0; i < per; i++)
            if (!isfinite(it->latents[i]))
                return eng_error_set(err, ENG_EINVAL,
                                     "generate: image %d: latents[%lld] is not a finite number", b,
                                     (long long)i);
        memcpy(dst, it->latents, sizeof(float) * (size_t)per);
    }
    return 0;
}

/* Index of s in list[0..*n), appended when new. */
static int intern(const char **list, int *n, const char *s)
{
    for (int i = 0; i < *n; i++)
        if (strcmp(list[i], s) == 0)
            return i;
    list[*n] = s;
    return (*n)++;
}

/* dst[b] = src[rows[b]] for the b with rows[b] >= 0 (tensors [*, ...] of one dtype). */
static int gather_rows(eng_tensor *dst, const eng_tensor *src, const int *rows, int n,
                       eng_error *err)
{
    int64_t row = eng_tensor_numel(src) / src->shape[0];
    size_t bytes = (size_t)row * eng_dtype_size(src->dtype);
    for (int b = 0; b < n; b++) {
        if (rows[b] < 0)
            continue;
        eng_tensor s = eng_tensor_view((char *)src->data + bytes * (size_t)rows[b], src->backend,
                                       src->dtype, 1, &row);
        eng_tensor d = eng_tensor_view((char *)dst->data + bytes * (size_t)b, dst->backend,
                                       dst->dtype, 1, &row);
        ENG_TRY(eng_op_convert(&d, &s, err));
    }
    return 0;
}

/* The text embeddings of a request: cond ctx / pooled for every image, uncond for those with
 * guidance > 1 (neg_* stay empty when none has). */
typedef struct text_embeds {
    eng_tensor ctx, pooled, neg_ctx, neg_pooled;
} text_embeds;

static void text_embeds_free(text_embeds *t)
{
    eng_tensor_free(&t->ctx);
    eng_tensor_free(&t->pooled);
    eng_tensor_free(&t->neg_ctx);
    eng_tensor_free(&t->neg_pooled);
}

static int encode_request(eng_pipeline *p, const eng_gen_request *req, text_embeds *te,
                          eng_error *err)
{
    int n = req->n, u = 0, any_neg = 0, rc = 0;
    const char **uniq = malloc(sizeof(char *) * 2 * (size_t)n);
    int *pos = malloc(sizeof(int) * 2 * (size_t)n), *neg = pos + n;
    eng_tensor enc_ctx = {0}, enc_pooled = {0};
    if (!uniq || !pos) {
        rc = eng_error_set(err, ENG_ENOMEM, "generate: out of memory");
        goto done;
    }
    for (int b = 0; b < n; b++)
        pos[b] = intern(uniq, &u, req->items[b].prompt);
    for (int b = 0; b < n; b++) {
        const eng_gen_item *it = &req->items[b];
        /* diffusers: do_classifier_free_guidance = guidance_scale > 1; negative_prompt or "". */
        const char *np = it->negative_prompt ? it->negative_prompt : "";
        neg[b] = it->guidance > 1.0f ? intern(uniq, &u, np) : -1;
        any_neg |= neg[b] >= 0;
    }
    ENG_TRY_DONE(eng_prompt_encode(p->prompt, uniq, u, &enc_ctx, &enc_pooled, err));
    int identity = !any_neg && u == n;
    for (int b = 0; b < n && identity; b++)
        identity = pos[b] == b;
    if (identity) { /* every prompt distinct, no negatives: the encodings are the batch */
        te->ctx = enc_ctx, te->pooled = enc_pooled;
        enc_ctx = (eng_tensor){0}, enc_pooled = (eng_tensor){0};
        goto done;
    }
    int64_t nt = enc_ctx.shape[1], d = enc_ctx.shape[2], pd = enc_pooled.shape[1];
    eng_tensor *outs[4] = {&te->ctx, &te->pooled, &te->neg_ctx, &te->neg_pooled};
    for (int k = 0; k < (any_neg ? 4 : 2); k++) {
        const int64_t shape[3] = {n, k % 2 ? pd : nt, d}; /* ctx [n, nt, d], pooled [n, pd] */
        ENG_TRY_DONE(eng_tensor_init(outs[k], p->be, p->dtype, k % 2 ? 2 : 3, shape, err));
        ENG_TRY_DONE(
            gather_rows(outs[k], k % 2 ? &enc_pooled : &enc_ctx, k < 2 ? pos : neg, n, err));
    }
done:
    eng_tensor_free(&enc_ctx);
    eng_tensor_free(&enc_pooled);
    free(uniq);
    free(pos);
    return rc;
}

typedef struct progress_adapter {
    const eng_gen_request *req;
    const eng_tensor *lat; /* the F32 latents the loop works on */
    float *host;           /* [n, C, h, w], for previews */
    eng_error *err;
    int failed; /* a preview download failed: err holds why */
} progress_adapter;

static int progress_thunk(int step, int steps, void *user)
{
    progress_adapter *a = user;
    const eng_gen_request *req = a->req;
    if (req->progress && req->progress(req->progress_user, step, steps))
        return 1; /* canceled: no preview */
    if (req->preview && req->preview_every > 0 && step % req->preview_every == 0) {
        if (eng_tensor_download(a->lat, a->host, a->err)) {
            a->failed = 1;
            return 1; /* stops the loop; the caller turns ENG_ECANCELED back into the error */
        }
        const int64_t *sh = a->lat->shape;
        req->preview(req->preview_user, step, steps, a->host, (int)sh[0], (int)sh[1], (int)sh[2],
                     (int)sh[3]);
    }
    return 0;
}

int eng_pipeline_generate_ex(eng_pipeline *p, const eng_gen_request *req,
                             const eng_gen_outputs *out, eng_gen_timings *timings, eng_error *err)
{
    if (timings)
        memset(timings, 0, sizeof *timings);
    ENG_TRY(validate(p, req, err));
    if (!out || (!out->rgb && !out->image && !out->latents))
        return eng_error_set(err, ENG_EINVAL, "generate: no output buffer");
    const int64_t n = req->n, C = eng_pipeline_latent_channels(p);
    const int64_t f = eng_vae_scale_factor(p->vae);
    const int64_t h = req->height / f, w = req->width / f;
    int rc = 0;
    float *guidance = malloc(sizeof(float) * (size_t)n);
    float *host = malloc(sizeof(float) * (size_t)(n * C * h * w));
    eng_tensor lat = {0};
    text_embeds te = {0};
    double t0 = now_ms(), t1 = t0, t2 = t0, t3 = t0;
    if (!guidance || !host) {
        rc = eng_error_set(err, ENG_ENOMEM, "generate: out of memory");
        goto done;
    }
    for (int b = 0; b < req->n; b++)
        guidance[b] = req->items[b].guidance;
    ENG_TRY_DONE(initial_latents(req, C, h, w, host, err));
    ENG_TRY_DONE(
        eng_tensor_init(&lat, p->be, ENG_DTYPE_F32, 4, (const int64_t[]){n, C, h, w}, err));
    ENG_TRY_DONE(eng_tensor_upload(&lat, host, err));

    t0 = now_ms();
    ENG_TRY_DONE(encode_request(p, req, &te, err));
    ENG_TRY_DONE(phase_end(p->be, &t1, err));

    /* host held the initial latents, uploaded by now: previews reuse it. */
    eng_error perr = {0};
    progress_adapter pa = {.req = req, .lat = &lat, .host = host, .err = &perr};
    int hooked = req->progress || (req->preview && req->preview_every > 0);
    eng_denoise_params dp = {
        .steps = req->steps,
        .scheduler = &p->sched,
        .guidance = guidance,
        .ctx = &te.ctx,
        .pooled = &te.pooled,
        .neg_ctx = te.neg_ctx.data ? &te.neg_ctx : NULL,
        .neg_pooled = te.neg_pooled.data ? &te.neg_pooled : NULL,
        .progress = hooked ? progress_thunk : NULL,
        .progress_user = &pa,
    };
    rc = eng_denoise(p->mmdit, &lat, &dp, err);
    if (pa.failed) {
        rc = perr.code ? perr.code : ENG_EIO;
        if (err)
            *err = perr;
    }
    text_embeds_free(&te); /* the VAE may want the memory */
    if (rc)
        goto done;
    ENG_TRY_DONE(phase_end(p->be, &t2, err));

    if (out->latents)
        ENG_TRY_DONE(eng_tensor_download(&lat, out->latents, err));
    if (out->rgb || out->image)
        ENG_TRY_DONE(eng_vae_decode(p->vae, &lat, out->image, out->rgb, err));
    ENG_TRY_DONE(phase_end(p->be, &t3, err));
done:
    if (timings) {
        timings->text_encode_ms = t1 - t0;
        timings->denoise_ms = t2 > t1 ? t2 - t1 : 0.0;
        timings->vae_ms = t3 > t2 ? t3 - t2 : 0.0;
    }
    text_embeds_free(&te);
    eng_tensor_free(&lat);
    free(host);
    free(guidance);
    return rc;
}

int eng_pipeline_generate(eng_pipeline *p, const eng_gen_request *req, uint8_t *rgb,
                          eng_gen_timings *timings, eng_error *err)
{
    if (!rgb)
        return eng_error_set(err, ENG_EINVAL, "generate: NULL rgb buffer");
    eng_gen_outputs out = {.rgb = rgb};
    return eng_pipeline_generate_ex(p, req, &out, timings, err);
}
