/*
 * test_pipeline.c - the SD3 text-to-image pipeline (engine/pipeline.h) on the tiny model folder
 * tests/fixtures/tiny_model/ against the golden files of tests/fixtures/pipeline/ (written by
 * tools/reference/make_pipeline_fixtures.py from our PyTorch reference; see their READMEs):
 * token ids, prompt embeddings and pooled vectors, the final latents, the float image and the
 * 8-bit RGB of a 2-image batch whose images have different guidance (one without CFG). Also:
 * batch composition (a repeated prompt, injected latents), text encoders missing from the folder
 * (zeros, as diffusers does for T5), cancellation through the progress callback, bad requests and
 * bad folders.
 *
 * Floats must match within 1e-4 (max |a - b| / max |b|); RGB bytes exactly, except one step
 * where the reference's image * 255 lies so near a .5 tie that the measured image difference can
 * cross it.
 */
#include <criterion/criterion.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/pipeline.h"
#include "engine/core/rng.h"
#include "engine/io/safetensors.h"
#include "tests/common/test_util.h"

/* Overridable on the command line to try other folders (CFLAGS=-DPIPE_MODEL=...). */
#ifndef PIPE_MODEL
#define PIPE_MODEL "tests/fixtures/tiny_model"
#endif
#ifndef PIPE_GOLDEN
#define PIPE_GOLDEN "tests/fixtures/pipeline"
#endif

static eng_backend *be;

static void setup(void)
{
    eng_error err = {0};
    be = eng_backend_cpu_create(&err);
    cr_assert_not_null(be, "%s", err.msg);
}

static void teardown(void)
{
    eng_backend_destroy(be);
    be = NULL;
}

TestSuite(pipeline, .init = setup, .fini = teardown);

/* ---- helpers ---- */

static eng_pipeline *load(const char *dir)
{
    eng_error err = {0};
    eng_pipeline *p = NULL;
    cr_assert_eq(eng_pipeline_load(&p, dir, be, ENG_DTYPE_F32, &err), 0, "%s: %s", dir, err.msg);
    cr_assert_not_null(p);
    return p;
}

static eng_safetensors *open_golden(const char *file)
{
    eng_error err = {0};
    eng_safetensors *st = NULL;
    cr_assert_eq(eng_safetensors_open(&st, file, &err), 0, "%s", err.msg);
    return st;
}

/* A tensor of a golden file as f32 (malloc'd); its element count must be n. */
static float *golden_f32(const eng_safetensors *st, const char *name, int64_t n)
{
    eng_error err = {0};
    const eng_st_tensor *t = eng_safetensors_find(st, name);
    cr_assert_not_null(t, "golden file has no tensor %s", name);
    int64_t m = 1;
    for (int i = 0; i < t->ndim; i++)
        m *= t->shape[i];
    cr_assert_eq(m, n, "%s: %lld elements, want %lld", name, (long long)m, (long long)n);
    float *x = tu_alloc(n);
    cr_assert_eq(eng_st_tensor_to_f32(t, x, &err), 0, "%s", err.msg);
    return x;
}

/* An I32 tensor of a golden file (malloc'd); its element count must be n. */
static int32_t *golden_i32(const eng_safetensors *st, const char *name, int64_t n)
{
    const eng_st_tensor *t = eng_safetensors_find(st, name);
    cr_assert_not_null(t, "golden file has no tensor %s", name);
    cr_assert_eq(t->dtype, ENG_DTYPE_I32, "%s is not I32", name);
    cr_assert_eq(t->nbytes, (size_t)n * 4, "%s: %zu bytes, want %lld I32", name, t->nbytes,
                 (long long)n);
    int32_t *x = malloc((size_t)n * 4);
    cr_assert_not_null(x);
    memcpy(x, t->data, (size_t)n * 4);
    return x;
}

static const char *meta(const eng_safetensors *st, const char *key)
{
    const char *v = eng_safetensors_metadata(st, key);
    cr_assert_not_null(v, "golden file has no metadata %s", key);
    return v;
}

static double rel_err(const float *a, const float *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i]))
            return INFINITY;
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return den > 0 ? num / den : num;
}

/* A backend tensor's contents as host floats (malloc'd). */
static float *fetch(const eng_tensor *t)
{
    eng_error err = {0};
    float *x = tu_alloc(eng_tensor_numel(t));
    cr_assert_eq(eng_tensor_download(t, x, &err), 0, "%s", err.msg);
    return x;
}

/* The golden batch: prompts, guidance, seeds and size from golden.safetensors. */
typedef struct golden_batch {
    eng_safetensors *st;
    eng_gen_item items[2];
    int width, height, steps;
    int64_t C, h, w; /* latent shape of one image */
} golden_batch;

static void golden_batch_open(golden_batch *g)
{
    memset(g, 0, sizeof *g);
    g->st = open_golden(PIPE_GOLDEN "/golden.safetensors");
    g->width = atoi(meta(g->st, "width"));
    g->height = atoi(meta(g->st, "height"));
    g->steps = atoi(meta(g->st, "steps"));
    float *guid = golden_f32(g->st, "guidance", 2);
    int32_t *seeds = golden_i32(g->st, "seeds", 2);
    for (int b = 0; b < 2; b++) {
        char key[32];
        snprintf(key, sizeof key, "prompt%d", b);
        g->items[b].prompt = meta(g->st, key);
        snprintf(key, sizeof key, "negative_prompt%d", b);
        g->items[b].negative_prompt = meta(g->st, key);
        g->items[b].guidance = guid[b];
        g->items[b].seed = (uint64_t)seeds[b];
    }
    /* The case the golden batch is for: one image without CFG, one with. */
    cr_assert(g->items[0].guidance <= 1.0f && g->items[1].guidance > 1.0f);
    free(guid);
    free(seeds);
    g->C = 16, g->h = g->height / 8, g->w = g->width / 8;
}

/*
 * RGB bytes against the reference: exact, except where the reference's image * 255 (NCHW) lies
 * within margin of a .5 tie, where one step is allowed.
 */
static void check_rgb(const uint8_t *got, const uint8_t *want, const float *ref_image, int64_t B,
                      int64_t H, int64_t W, float margin)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++)
                for (int64_t c = 0; c < 3; c++) {
                    const int64_t i = ((b * H + y) * W + x) * 3 + c;
                    const float r = ref_image[((b * 3 + c) * H + y) * W + x];
                    const float s = r * 255.0f;
                    const int near_tie = fabsf(s - floorf(s) - 0.5f) <= margin;
                    const int d = abs((int)got[i] - (int)want[i]);
                    cr_assert(d == 0 || (near_tie && d == 1),
                              "rgb[%lld, %lld, %lld, %lld] = %d, want %d (reference %.7g * 255)",
                              (long long)b, (long long)y, (long long)x, (long long)c, got[i],
                              want[i], r);
                }
}

/* ---- a scratch pipeline folder: the tiny model's components linked, model_index rewritten ---- */

static const char *const COMPONENTS[][3] = {
    {"scheduler", "diffusers", "FlowMatchEulerDiscreteScheduler"},
    {"text_encoder", "transformers", "CLIPTextModelWithProjection"},
    {"text_encoder_2", "transformers", "CLIPTextModelWithProjection"},
    {"text_encoder_3", "transformers", "T5EncoderModel"},
    {"tokenizer", "transformers", "CLIPTokenizer"},
    {"tokenizer_2", "transformers", "CLIPTokenizer"},
    {"tokenizer_3", "transformers", "T5TokenizerFast"},
    {"transformer", "diffusers", "SD3Transformer2DModel"},
    {"vae", "diffusers", "AutoencoderKL"},
};
#define NCOMP (int)(sizeof COMPONENTS / sizeof COMPONENTS[0])

static int in_list(const char *name, const char *list)
{
    /* list: space-separated names */
    size_t n = strlen(name);
    for (const char *s = list; s && (s = strstr(s, name)); s += n)
        if ((s == list || s[-1] == ' ') && (s[n] == ' ' || s[n] == '\0'))
            return 1;
    return 0;
}

/* Makes a folder in dir (PATH_MAX) where the components named in nulls are [null, null] in
 * model_index.json and those in unlinked have no folder. */
/* scratch_folder with extra model_index.json members (a string like ",\n \"key\": 1"). */
static void scratch_folder_ex(char *dir, const char *nulls, const char *unlinked,
                              const char *extra);

static void scratch_folder(char *dir, const char *nulls, const char *unlinked)
{
    scratch_folder_ex(dir, nulls, unlinked, "");
}

static void scratch_folder_ex(char *dir, const char *nulls, const char *unlinked,
                              const char *extra)
{
    char src[PATH_MAX], path[PATH_MAX + 64];
    cr_assert_not_null(realpath(PIPE_MODEL, src), "no %s", PIPE_MODEL);
    strcpy(dir, "/tmp/tttd_test_pipeline_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "{\"_class_name\": \"StableDiffusion3Pipeline\"");
    for (int i = 0; i < NCOMP; i++) {
        const char *name = COMPONENTS[i][0];
        if (in_list(name, nulls))
            fprintf(f, ",\n \"%s\": [null, null]", name);
        else
            fprintf(f, ",\n \"%s\": [\"%s\", \"%s\"]", name, COMPONENTS[i][1], COMPONENTS[i][2]);
        if (!in_list(name, unlinked)) {
            char from[PATH_MAX + 64];
            snprintf(from, sizeof from, "%s/%s", src, name);
            snprintf(path, sizeof path, "%s/%s", dir, name);
            cr_assert_eq(symlink(from, path), 0);
        }
    }
    fprintf(f, "%s\n}\n", extra);
    fclose(f);
}

static void scratch_remove(const char *dir)
{
    tu_rmtree(dir);
}

/* ---- prompt encoding ---- */

Test(pipeline, token_ids_and_prompt_embeddings_match_golden)
{
    eng_error err = {0};
    eng_pipeline *p = load(PIPE_MODEL);
    eng_safetensors *st = open_golden(PIPE_GOLDEN "/encode.safetensors");
    const eng_transformer_config *tc = eng_pipeline_transformer_config(p);
    const int64_t D = tc->joint_attention_dim, P = tc->pooled_projection_dim, Nt = 77 + 256;
    cr_assert_eq(eng_pipeline_text_tokens(p), Nt);
    cr_assert(eng_pipeline_has_encoder(p, ENG_TEXT_ENCODER_CLIP_L) &&
              eng_pipeline_has_encoder(p, ENG_TEXT_ENCODER_CLIP_G) &&
              eng_pipeline_has_encoder(p, ENG_TEXT_ENCODER_T5));

    for (int neg = 0; neg < 2; neg++) {
        const char *prompts[2];
        for (int b = 0; b < 2; b++) {
            char key[32];
            snprintf(key, sizeof key, "%sprompt%d", neg ? "negative_" : "", b);
            prompts[b] = meta(st, key);
        }
        /* The ids of each prompt, as the tokenizers of the folder give them. */
        const char *names[3] = {"clip_l", "clip_g", "t5"};
        const int lens[3] = {77, 77, 256};
        for (int k = 0; k < 3; k++) {
            char key[32];
            snprintf(key, sizeof key, "%sids.%s", neg ? "neg_" : "", names[k]);
            int32_t *want = golden_i32(st, key, 2 * lens[k]);
            for (int b = 0; b < 2; b++) {
                int32_t ids[256];
                memset(ids, 0xFF, sizeof ids);
                cr_assert_eq(eng_pipeline_tokenize(p, prompts[b], k == 0 ? ids : NULL,
                                                   k == 1 ? ids : NULL, k == 2 ? ids : NULL, &err),
                             0, "%s", err.msg);
                for (int i = 0; i < lens[k]; i++)
                    cr_assert_eq(ids[i], want[b * lens[k] + i], "%s row %d id %d: %d, want %d",
                                 key, b, i, ids[i], want[b * lens[k] + i]);
            }
            free(want);
        }
        /* ctx [2, 333, D] and pooled [2, P], both prompts in one batch. */
        eng_tensor ctx, pooled;
        cr_assert_eq(eng_pipeline_encode_prompts(p, prompts, 2, &ctx, &pooled, &err), 0, "%s",
                     err.msg);
        cr_assert(ctx.ndim == 3 && ctx.shape[0] == 2 && ctx.shape[1] == Nt && ctx.shape[2] == D);
        cr_assert(pooled.ndim == 2 && pooled.shape[0] == 2 && pooled.shape[1] == P);
        cr_assert_eq(ctx.dtype, ENG_DTYPE_F32);
        float *got_c = fetch(&ctx), *got_p = fetch(&pooled);
        float *want_c = golden_f32(st, neg ? "neg_ctx" : "ctx", 2 * Nt * D);
        float *want_p = golden_f32(st, neg ? "neg_pooled" : "pooled", 2 * P);
        double ec = rel_err(got_c, want_c, 2 * Nt * D), ep = rel_err(got_p, want_p, 2 * P);
        cr_assert(ec < 1e-4, "%s ctx error %.3g", neg ? "negative" : "positive", ec);
        cr_assert(ep < 1e-4, "%s pooled error %.3g", neg ? "negative" : "positive", ep);
        /* The zero padding of the CLIP part is exact. */
        for (int64_t b = 0; b < 2; b++)
            for (int64_t t = 0; t < 77; t++)
                for (int64_t c = 40; c < D; c++)
                    cr_assert_eq(got_c[(b * Nt + t) * D + c], 0.0f);
        free(got_c), free(got_p), free(want_c), free(want_p);
        eng_tensor_free(&ctx);
        eng_tensor_free(&pooled);
    }

    /* A shorter max_sequence_length shortens T5's part only. */
    cr_assert_eq(eng_pipeline_set_max_sequence_length(p, 16, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_pipeline_text_tokens(p), 77 + 16);
    const char *one[1] = {meta(st, "prompt1")};
    eng_tensor ctx, pooled;
    cr_assert_eq(eng_pipeline_encode_prompts(p, one, 1, &ctx, &pooled, &err), 0, "%s", err.msg);
    cr_assert(ctx.shape[0] == 1 && ctx.shape[1] == 77 + 16 && ctx.shape[2] == D);
    float *got = fetch(&ctx), *want = golden_f32(st, "ctx", 2 * Nt * D);
    double e = rel_err(got, want + Nt * D, 77 * D); /* prompt 1's CLIP tokens */
    cr_assert(e < 1e-4, "CLIP part error %.3g with max_sequence_length 16", e);
    free(got), free(want);
    eng_tensor_free(&ctx);
    eng_tensor_free(&pooled);
    eng_safetensors_close(st);
    eng_pipeline_free(p);
}

/* ---- generation ---- */

typedef struct progress_log {
    int calls, last_step, steps, cancel_at;
} progress_log;

static int on_progress(void *user, int step, int steps)
{
    progress_log *l = user;
    cr_assert_eq(step, l->last_step + 1, "progress step %d after %d", step, l->last_step);
    l->calls++, l->last_step = step, l->steps = steps;
    return l->cancel_at && step >= l->cancel_at;
}

Test(pipeline, batch_with_different_guidance_matches_golden)
{
    eng_error err = {0};
    eng_pipeline *p = load(PIPE_MODEL);
    golden_batch g;
    golden_batch_open(&g);
    const int64_t H = g.height, W = g.width, nl = 2 * g.C * g.h * g.w, ni = 2 * 3 * H * W;

    /* The seeds' latents are the reference's latents_in. */
    float *want_in = golden_f32(g.st, "latents_in", nl);
    float *lat_in = tu_alloc(nl);
    const uint64_t seeds[2] = {g.items[0].seed, g.items[1].seed};
    eng_rng_latents_seeds(lat_in, 2, g.C, g.h, g.w, seeds);
    cr_assert(rel_err(lat_in, want_in, nl) < 1e-6);

    progress_log log = {0};
    eng_gen_request req = {.items = g.items, .n = 2, .width = g.width, .height = g.height,
                           .steps = g.steps, .progress = on_progress, .progress_user = &log};
    float *lat = tu_alloc(nl), *image = tu_alloc(ni);
    uint8_t *rgb = malloc((size_t)ni);
    tu_poison(lat, nl);
    tu_poison(image, ni);
    eng_gen_outputs out = {.rgb = rgb, .image = image, .latents = lat};
    eng_gen_timings tm = {-1, -1, -1};
    cr_assert_eq(eng_pipeline_generate_ex(p, &req, &out, &tm, &err), 0, "%s", err.msg);
    cr_assert_eq(log.calls, g.steps);
    cr_assert_eq(log.steps, g.steps);
    cr_assert(tm.text_encode_ms > 0 && tm.denoise_ms > 0 && tm.vae_ms > 0,
              "timings %.3f %.3f %.3f", tm.text_encode_ms, tm.denoise_ms, tm.vae_ms);

    float *want_lat = golden_f32(g.st, "latents_out", nl);
    float *want_img = golden_f32(g.st, "image", ni);
    int32_t *want_rgb32 = golden_i32(g.st, "rgb", ni);
    double el = rel_err(lat, want_lat, nl), ei = rel_err(image, want_img, ni);
    cr_assert(el < 1e-4, "final latents error %.3g", el);
    cr_assert(ei < 1e-4, "image error %.3g", ei);
    uint8_t *want_rgb = malloc((size_t)ni);
    double dmax = 0;
    for (int64_t i = 0; i < ni; i++) {
        want_rgb[i] = (uint8_t)want_rgb32[i];
        dmax = fmax(dmax, fabs((double)image[i] - want_img[i]));
    }
    check_rgb(rgb, want_rgb, want_img, 2, H, W, (float)(255.0 * dmax) + 1e-4f);

    /* eng_pipeline_generate gives the same bytes (no other output asked for). */
    uint8_t *rgb2 = malloc((size_t)ni);
    memset(rgb2, 0xAB, (size_t)ni);
    req.progress = NULL;
    cr_assert_eq(eng_pipeline_generate(p, &req, rgb2, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(rgb, rgb2, (size_t)ni), 0, "a second run gives other bytes");

    free(rgb2), free(want_rgb), free(want_rgb32), free(want_img), free(want_lat);
    free(rgb), free(image), free(lat), free(lat_in), free(want_in);
    eng_safetensors_close(g.st);
    eng_pipeline_free(p);
}

/*
 * Image 1 of the golden batch twice: once from its seed, once from injected latents (the
 * reference's latents_in), in one batch whose prompts and negative prompts repeat. Each must be
 * what the reference gave image 1 in the other batch.
 */
Test(pipeline, batch_composition_and_injected_latents)
{
    eng_error err = {0};
    eng_pipeline *p = load(PIPE_MODEL);
    golden_batch g;
    golden_batch_open(&g);
    const int64_t per = g.C * g.h * g.w;
    float *lat_in = golden_f32(g.st, "latents_in", 2 * per);
    float *want = golden_f32(g.st, "latents_out", 2 * per);
    eng_gen_item items[2] = {g.items[1], g.items[1]};
    items[0].seed = 12345; /* ignored: the latents are given */
    items[0].latents = lat_in + per;
    eng_gen_request req = {.items = items, .n = 2, .width = g.width, .height = g.height,
                           .steps = g.steps};
    float *lat = tu_alloc(2 * per);
    eng_gen_outputs out = {.latents = lat};
    cr_assert_eq(eng_pipeline_generate_ex(p, &req, &out, NULL, &err), 0, "%s", err.msg);
    for (int b = 0; b < 2; b++) {
        double e = rel_err(lat + b * per, want + per, per);
        cr_assert(e < 1e-4, "image %d: final latents error %.3g", b, e);
    }
    free(lat), free(want), free(lat_in);
    eng_safetensors_close(g.st);
    eng_pipeline_free(p);
}

Test(pipeline, cancel_from_progress_stops_between_steps)
{
    eng_error err = {0};
    eng_pipeline *p = load(PIPE_MODEL);
    golden_batch g;
    golden_batch_open(&g);
    cr_assert(g.steps >= 2);
    progress_log log = {.cancel_at = 1};
    eng_gen_request req = {.items = g.items, .n = 2, .width = g.width, .height = g.height,
                           .steps = g.steps, .progress = on_progress, .progress_user = &log};
    const size_t ni = (size_t)2 * 3 * g.height * g.width;
    uint8_t *rgb = malloc(ni);
    memset(rgb, 0xAB, ni);
    eng_gen_timings tm;
    cr_assert_eq(eng_pipeline_generate(p, &req, rgb, &tm, &err), ENG_ECANCELED, "%s", err.msg);
    cr_assert_eq(log.calls, 1, "the loop went on for %d steps after the cancel", log.calls - 1);
    for (size_t i = 0; i < ni; i++)
        cr_assert_eq(rgb[i], 0xAB, "a canceled request wrote its output");
    cr_assert_eq(tm.vae_ms, 0.0);
    /* The pipeline is still usable. */
    log = (progress_log){0};
    cr_assert_eq(eng_pipeline_generate(p, &req, rgb, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(log.calls, g.steps);
    free(rgb);
    eng_safetensors_close(g.st);
    eng_pipeline_free(p);
}

/* Previews: every preview_every steps, the current latents [n, C, h, w] on the host. */
typedef struct preview_log {
    int calls, steps[8], n, C, h, w, nonfinite, progress_at_call;
    float *last; /* a copy of the latents at the last call */
    progress_log *progress;
} preview_log;

static void on_preview(void *user, int step, int steps, const float *latents, int n, int C, int h,
                       int w)
{
    preview_log *l = user;
    cr_assert_lt(l->calls, 8);
    cr_assert_eq(steps, 4);
    l->steps[l->calls++] = step;
    l->n = n, l->C = C, l->h = h, l->w = w;
    l->progress_at_call = l->progress->last_step;
    size_t nl = (size_t)n * C * h * w;
    for (size_t i = 0; i < nl; i++)
        l->nonfinite += !isfinite(latents[i]);
    free(l->last);
    l->last = malloc(sizeof(float) * nl);
    cr_assert_not_null(l->last);
    memcpy(l->last, latents, sizeof(float) * nl);
}

Test(pipeline, preview_hook_gets_the_latents_every_k_steps)
{
    eng_error err = {0};
    eng_pipeline *p = load(PIPE_MODEL);
    golden_batch g;
    golden_batch_open(&g);
    progress_log plog = {0};
    preview_log vlog = {.progress = &plog};
    eng_gen_request req = {.items = g.items, .n = 2, .width = g.width, .height = g.height,
                           .steps = 4, .progress = on_progress, .progress_user = &plog,
                           .preview_every = 2, .preview = on_preview, .preview_user = &vlog};
    const int64_t nl = 2 * g.C * g.h * g.w;
    float *lat = tu_alloc(nl);
    eng_gen_outputs out = {.latents = lat};
    cr_assert_eq(eng_pipeline_generate_ex(p, &req, &out, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(plog.calls, 4);
    cr_assert_eq(vlog.calls, 2, "previews: %d", vlog.calls);
    cr_assert_eq(vlog.steps[0], 2);
    cr_assert_eq(vlog.steps[1], 4);
    cr_assert_eq(vlog.progress_at_call, 4, "the preview of a step comes after its progress");
    cr_assert_eq(vlog.n, 2);
    cr_assert_eq(vlog.C, g.C);
    cr_assert_eq(vlog.h, g.h);
    cr_assert_eq(vlog.w, g.w);
    cr_assert_eq(vlog.nonfinite, 0);
    cr_assert_eq(memcmp(vlog.last, lat, sizeof(float) * (size_t)nl), 0,
                 "the last step's preview is not the final latents");

    /* preview_every = 0: no call; negative: EINVAL. */
    vlog.calls = 0;
    req.preview_every = 0;
    req.progress = NULL;
    cr_assert_eq(eng_pipeline_generate_ex(p, &req, &out, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(vlog.calls, 0);
    req.preview_every = -1;
    cr_assert_eq(eng_pipeline_generate_ex(p, &req, &out, NULL, &err), ENG_EINVAL);

    free(vlog.last), free(lat);
    eng_safetensors_close(g.st);
    eng_pipeline_free(p);
}

Test(pipeline, bad_requests_are_einval)
{
    eng_error err = {0};
    eng_pipeline *p = load(PIPE_MODEL);
    const eng_transformer_config *tc = eng_pipeline_transformer_config(p);
    const int cell = eng_pipeline_vae_scale(p) * tc->patch_size;
    cr_assert_eq(eng_pipeline_vae_scale(p), 8);
    cr_assert_eq(eng_pipeline_latent_channels(p), 16);
    eng_gen_item items[2] = {{.prompt = "a", .guidance = 2.0f}, {.prompt = "b", .guidance = 1.0f}};
    uint8_t rgb[3 * 64 * 64];
    const eng_gen_request good = {.items = items, .n = 2, .width = 2 * cell, .height = cell,
                                  .steps = 1};
    struct {
        const char *what, *msg;
        eng_gen_request req;
    } cases[] = {
        {"n = 0", "n = 0", {.items = items, .n = 0, .width = 16, .height = 16, .steps = 1}},
        {"no items", "items", {.items = NULL, .n = 2, .width = 16, .height = 16, .steps = 1}},
        {"steps = 0", "steps = 0", {.items = items, .n = 1, .width = 16, .height = 16, .steps = 0}},
        {"steps too many", "steps = 10001",
         {.items = items, .n = 1, .width = 16, .height = 16, .steps = 10001}},
        {"width not a multiple", "width = 24",
         {.items = items, .n = 1, .width = cell + 8, .height = 16, .steps = 1}},
        {"height 0", "height = 0", {.items = items, .n = 1, .width = 16, .height = 0, .steps = 1}},
        {"width too large", "pos_embed_max_size",
         {.items = items, .n = 1, .width = cell * (tc->pos_embed_max_size + 1), .height = 16,
          .steps = 1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err = (eng_error){0};
        cr_assert_eq(eng_pipeline_generate(p, &cases[i].req, rgb, NULL, &err), ENG_EINVAL, "%s",
                     cases[i].what);
        cr_assert(strstr(err.msg, cases[i].msg), "%s: message \"%s\"", cases[i].what, err.msg);
    }
    items[1].prompt = NULL;
    cr_assert_eq(eng_pipeline_generate(p, &good, rgb, NULL, &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "image 1 has a NULL prompt"), "%s", err.msg);
    items[1].prompt = "b";
    items[0].guidance = NAN;
    cr_assert_eq(eng_pipeline_generate(p, &good, rgb, NULL, &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "guidance"), "%s", err.msg);
    items[0].guidance = 2.0f;
    cr_assert_eq(eng_pipeline_generate(p, &good, NULL, NULL, &err), ENG_EINVAL);
    cr_assert_eq(eng_pipeline_generate(NULL, &good, rgb, NULL, &err), ENG_EINVAL);
    cr_assert_eq(eng_pipeline_generate(p, NULL, rgb, NULL, &err), ENG_EINVAL);
    const char *prompts[1] = {NULL};
    eng_tensor ctx, pooled;
    cr_assert_eq(eng_pipeline_encode_prompts(p, prompts, 1, &ctx, &pooled, &err), ENG_EINVAL);
    cr_assert_eq(eng_pipeline_encode_prompts(p, prompts, 0, &ctx, &pooled, &err), ENG_EINVAL);
    cr_assert_eq(eng_pipeline_set_max_sequence_length(p, 513, &err), ENG_EINVAL);
    cr_assert_eq(eng_pipeline_set_max_sequence_length(p, 0, &err), ENG_EINVAL);
    /* The good request runs (one step, guidance 2 and 1). */
    cr_assert_eq(eng_pipeline_generate(p, &good, rgb, NULL, &err), 0, "%s", err.msg);
    eng_pipeline_free(p);
}

/* ---- missing text encoders ---- */

/* ctx / pooled of prompts in a scratch folder against the full model's golden ones: channels
 * [c0, c1) of the CLIP tokens (golden channel c + cshift) and [p0, p1) of pooled must match, the
 * rest be zeros; T5's 256 tokens must be zeros when t5_zero (diffusers' max_sequence_length rows
 * since its PR #12531; tokenizer_max_length = 77 before). */
static void check_zeros(const char *nulls, const char *unlinked, int c0, int c1, int cshift,
                        int p0, int p1, int t5_zero)
{
    eng_error err = {0};
    char dir[PATH_MAX];
    scratch_folder(dir, nulls, unlinked);
    eng_pipeline *p = load(dir);
    eng_safetensors *st = open_golden(PIPE_GOLDEN "/encode.safetensors");
    const char *prompts[2] = {meta(st, "prompt0"), meta(st, "prompt1")};
    const int64_t D = eng_pipeline_transformer_config(p)->joint_attention_dim;
    const int64_t P = eng_pipeline_transformer_config(p)->pooled_projection_dim;
    const int64_t Nt = 77 + 256;
    cr_assert_eq(eng_pipeline_text_tokens(p), Nt);
    cr_assert_eq(eng_pipeline_has_encoder(p, ENG_TEXT_ENCODER_T5), !t5_zero);
    eng_tensor ctx, pooled;
    cr_assert_eq(eng_pipeline_encode_prompts(p, prompts, 2, &ctx, &pooled, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(ctx.shape[1], Nt);
    float *got_c = fetch(&ctx), *got_p = fetch(&pooled);
    float *want_c = golden_f32(st, "ctx", 2 * Nt * D), *want_p = golden_f32(st, "pooled", 2 * P);
    double num = 0, den = 0;
    for (int64_t b = 0; b < 2; b++) {
        for (int64_t t = 0; t < Nt; t++)
            for (int64_t c = 0; c < D; c++) {
                float g = got_c[(b * Nt + t) * D + c];
                if (t >= 77 && t5_zero) {
                    cr_assert_eq(g, 0.0f, "T5 token %lld channel %lld: %g", (long long)t,
                                 (long long)c, g);
                } else if (t >= 77 || (c >= c0 && c < c1)) {
                    float w = want_c[(b * Nt + t) * D + (t >= 77 ? c : c + cshift)];
                    num = fmax(num, fabs((double)g - w)), den = fmax(den, fabs((double)w));
                } else {
                    cr_assert_eq(g, 0.0f, "CLIP token %lld channel %lld: %g", (long long)t,
                                 (long long)c, g);
                }
            }
        for (int64_t c = 0; c < P; c++) {
            float g = got_p[b * P + c];
            if (c >= p0 && c < p1) {
                num = fmax(num, fabs((double)g - want_p[b * P + c]));
            } else {
                cr_assert_eq(g, 0.0f, "pooled channel %lld: %g", (long long)c, g);
            }
        }
    }
    cr_assert(num <= 1e-4 * den, "kept parts differ from the full model's by %.3g (scale %.3g)",
              num, den);
    free(got_c), free(got_p), free(want_c), free(want_p);
    eng_tensor_free(&ctx);
    eng_tensor_free(&pooled);
    eng_safetensors_close(st);
    eng_pipeline_free(p);
    scratch_remove(dir);
}

/* Widths of the tiny model (tools/make_tiny_model.py): CLIP-L 16 hidden / 12 pooled, CLIP-G
 * 24 / 20, T5 48. */
Test(pipeline, missing_t5_gives_zero_tokens)
{
    check_zeros("text_encoder_3 tokenizer_3", "", 0, 40, 0, 0, 32, 1);
}

Test(pipeline, listed_t5_without_folder_gives_zeros)
{
    check_zeros("", "text_encoder_3", 0, 40, 0, 0, 32, 1);
}

Test(pipeline, missing_clip_g_gives_zero_channels)
{
    check_zeros("text_encoder_2 tokenizer_2", "", 0, 16, 0, 0, 12, 0);
}

Test(pipeline, missing_clip_l_keeps_clip_g_in_place)
{
    /* tokenizer/ stays: it gives the CLIP length, as in diffusers. CLIP-L's place is taken to be
     * as wide as its pooled part, P - CLIP-G's projection_dim = 12 (SD3's CLIP-L has hidden_size
     * = projection_dim; the tiny one has 16 != 12), so CLIP-G moves from channel 16 to 12. */
    check_zeros("text_encoder", "", 12, 36, 4, 12, 32, 0);
}

Test(pipeline, no_clip_at_all_gives_zero_clip_tokens_and_pooled)
{
    check_zeros("text_encoder text_encoder_2", "", 0, 0, 0, 0, 0, 0);
}

/* tttd's "_tttd_max_sequence_length": 0 (a pipeline without T5, as the embedded model) leaves the
 * zero rows out: the context is the CLIP tokens alone, equal to the full model's CLIP part. */
Test(pipeline, max_sequence_length_0_without_t5_drops_the_zero_rows)
{
    eng_error err = {0};
    char dir[PATH_MAX];
    scratch_folder_ex(dir, "text_encoder_3 tokenizer_3", "", ",\n \"_tttd_max_sequence_length\": 0");
    eng_pipeline *p = load(dir);
    cr_assert_eq(eng_pipeline_text_tokens(p), 77);
    eng_safetensors *st = open_golden(PIPE_GOLDEN "/encode.safetensors");
    const char *prompts[2] = {meta(st, "prompt0"), meta(st, "prompt1")};
    const int64_t D = eng_pipeline_transformer_config(p)->joint_attention_dim;
    const int64_t Nt = 77 + 256;
    eng_tensor ctx, pooled;
    cr_assert_eq(eng_pipeline_encode_prompts(p, prompts, 2, &ctx, &pooled, &err), 0, "%s",
                 err.msg);
    cr_assert(ctx.ndim == 3 && ctx.shape[0] == 2 && ctx.shape[1] == 77 && ctx.shape[2] == D);
    float *got = fetch(&ctx), *want = golden_f32(st, "ctx", 2 * Nt * D);
    for (int b = 0; b < 2; b++) {
        double e = rel_err(got + b * 77 * D, want + b * Nt * D, 77 * D);
        cr_assert(e < 1e-4, "prompt %d: CLIP tokens differ from the full model's by %.3g", b, e);
    }
    free(got), free(want);
    eng_tensor_free(&ctx);
    eng_tensor_free(&pooled);
    eng_safetensors_close(st);

    /* A whole generation runs on the short context (CFG and not), every pixel written. */
    const eng_transformer_config *tc = eng_pipeline_transformer_config(p);
    const int cell = 8 * tc->patch_size;
    eng_gen_item items[2] = {{.prompt = "a red circle", .guidance = 3.0f, .seed = 7},
                             {.prompt = "b", .guidance = 1.0f, .seed = 8}};
    const eng_gen_request req = {.items = items, .n = 2, .width = cell, .height = cell,
                                 .steps = 2};
    size_t nrgb = (size_t)2 * 3 * cell * cell;
    uint8_t *rgb = malloc(nrgb);
    cr_assert_not_null(rgb);
    memset(rgb, 0xA5, nrgb);
    cr_assert_eq(eng_pipeline_generate(p, &req, rgb, NULL, &err), 0, "%s", err.msg);
    size_t same = 0;
    for (size_t i = 0; i < nrgb; i++)
        same += rgb[i] == 0xA5;
    cr_assert(same < nrgb / 4, "%zu of %zu bytes still hold the poison", same, nrgb);
    free(rgb);
    eng_pipeline_free(p);
    scratch_remove(dir);
}

Test(pipeline, max_sequence_length_is_checked)
{
    static const struct {
        const char *nulls, *extra, *msg;
        int code;
    } cases[] = {
        /* With T5, 0 rows is not diffusers' (its tokenizer needs max_length >= 1). */
        {"", ",\n \"_tttd_max_sequence_length\": 0", "_tttd_max_sequence_length", ENG_EINVAL},
        {"text_encoder_3 tokenizer_3", ",\n \"_tttd_max_sequence_length\": 513",
         "_tttd_max_sequence_length", ENG_EFORMAT},
        {"text_encoder_3 tokenizer_3", ",\n \"_tttd_max_sequence_length\": -1",
         "_tttd_max_sequence_length", ENG_EFORMAT},
        {"text_encoder_3 tokenizer_3", ",\n \"_tttd_max_sequence_length\": \"0\"",
         "_tttd_max_sequence_length", ENG_EFORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        eng_error err = {0};
        char dir[PATH_MAX];
        eng_pipeline *p = NULL;
        scratch_folder_ex(dir, cases[i].nulls, "", cases[i].extra);
        cr_assert_eq(eng_pipeline_load(&p, dir, be, ENG_DTYPE_F32, &err), cases[i].code,
                     "case %zu: %s", i, err.msg);
        cr_assert_null(p);
        cr_assert(strstr(err.msg, cases[i].msg), "case %zu: \"%s\"", i, err.msg);
        scratch_remove(dir);
    }
    /* A folder's value other than 256 is used: 16 rows of zeros. */
    char dir[PATH_MAX];
    scratch_folder_ex(dir, "text_encoder_3 tokenizer_3", "",
                      ",\n \"_tttd_max_sequence_length\": 16");
    eng_pipeline *p = load(dir);
    cr_assert_eq(eng_pipeline_text_tokens(p), 77 + 16);
    eng_pipeline_free(p);
    scratch_remove(dir);
}

/* ---- bad folders ---- */

static void expect_load_error(const char *nulls, const char *unlinked, int code, const char *msg)
{
    eng_error err = {0};
    char dir[PATH_MAX];
    eng_pipeline *p = (eng_pipeline *)&err; /* must be reset to NULL */
    scratch_folder(dir, nulls, unlinked);
    cr_assert_eq(eng_pipeline_load(&p, dir, be, ENG_DTYPE_F32, &err), code, "%s", err.msg);
    cr_assert_null(p);
    cr_assert(strstr(err.msg, msg), "message \"%s\" should name %s", err.msg, msg);
    scratch_remove(dir);
}

Test(pipeline, bad_folders_are_named)
{
    eng_error err = {0};
    eng_pipeline *p = NULL;
    cr_assert_eq(eng_pipeline_load(&p, "/nonexistent/tttd", be, ENG_DTYPE_F32, &err),
                 ENG_ENOTFOUND);
    cr_assert(strstr(err.msg, "/nonexistent/tttd/model_index.json"), "%s", err.msg);
    expect_load_error("transformer", "", ENG_ENOTFOUND, "\"transformer\"");
    expect_load_error("", "vae", ENG_ENOTFOUND, "/vae");
    expect_load_error("scheduler", "", ENG_ENOTFOUND, "\"scheduler\"");
    expect_load_error("tokenizer_3", "", ENG_ENOTFOUND, "tokenizer_3");
    expect_load_error("", "tokenizer_2", ENG_ENOTFOUND, "tokenizer_2");
}
