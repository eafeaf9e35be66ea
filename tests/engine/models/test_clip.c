/*
 * test_clip.c - the CLIP text encoder (engine/models/clip.h) against the PyTorch reference's fixtures
 * in tests/fixtures/text_encoders/{clip_l,clip_g} (tools/reference/make_text_encoder_fixtures.py):
 * every hidden state, the final layer norm, both pooling rules (legacy argmax for eos_token_id 2,
 * first EOS otherwise, no EOS -> position 0), the projection, F16 weights converted at load, ids
 * on the host or the backend; and errors naming the missing or misshapen tensor, ids out of the
 * vocabulary, too many tokens, bad output shapes.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/models/clip.h"
#include "engine/io/safetensors.h"
#include "tests/common/test_util.h"

#define FIX "tests/fixtures/text_encoders"
#define TOL 1e-4

static eng_backend *cpu;
static char tmpdir[64];

static void setup(void)
{
    eng_error err = {0};
    cpu = eng_backend_cpu_create(&err);
    cr_assert_not_null(cpu, "%s", err.msg);
    tmpdir[0] = '\0';
}

static void teardown(void)
{
    if (tmpdir[0])
        tu_rmtree(tmpdir);
    eng_backend_destroy(cpu);
}

TestSuite(clip, .init = setup, .fini = teardown);

/* ---- fixture access ---- */

typedef struct io_file {
    eng_safetensors *st;
} io_file;

static io_file io_open(const char *model)
{
    char path[256];
    eng_error err = {0};
    io_file f = {NULL};
    snprintf(path, sizeof path, FIX "/%s/io.safetensors", model);
    cr_assert_eq(eng_safetensors_open(&f.st, path, &err), 0, "%s", err.msg);
    return f;
}

static const eng_st_tensor *io_get(io_file *f, const char *tag, const char *what)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", tag, what);
    const eng_st_tensor *t = eng_safetensors_find(f->st, name);
    cr_assert_not_null(t, "fixture tensor %s missing", name);
    return t;
}

/* The fixture tensor as doubles (malloc'd). */
static double *io_f64(io_file *f, const char *tag, const char *what, int64_t *n)
{
    const eng_st_tensor *t = io_get(f, tag, what);
    int64_t count = (int64_t)(t->nbytes / 4);
    float *tmp = tu_alloc(count);
    eng_error err = {0};
    cr_assert_eq(eng_st_tensor_to_f32(t, tmp, &err), 0, "%s", err.msg);
    double *d = tu_alloc_d(count);
    for (int64_t i = 0; i < count; i++)
        d[i] = tmp[i];
    free(tmp);
    *n = count;
    return d;
}

/* The ids as a host I32 tensor (data malloc'd; free with free(t.data)). */
static eng_tensor io_ids(io_file *f, const char *tag)
{
    const eng_st_tensor *t = io_get(f, tag, "input_ids");
    cr_assert_eq(t->dtype, ENG_DTYPE_I32);
    void *data = malloc(t->nbytes);
    memcpy(data, t->data, t->nbytes);
    return eng_tensor_view(data, NULL, ENG_DTYPE_I32, t->ndim, t->shape);
}

static eng_clip *load(const char *dir)
{
    eng_clip *m = NULL;
    eng_error err = {0};
    cr_assert_eq(eng_clip_load(&m, dir, cpu, ENG_DTYPE_F32, &err), 0, "%s", err.msg);
    return m;
}

static void out_tensor(eng_tensor *t, int ndim, const int64_t *shape)
{
    eng_error err = {0};
    cr_assert_eq(eng_tensor_init(t, cpu, ENG_DTYPE_F32, ndim, shape, &err), 0, "%s", err.msg);
    tu_poison(t->data, eng_tensor_numel(t));
}

/* Expects max |out - ref| / max |ref| <= TOL over all of out. */
static void expect_close(const eng_tensor *out, const double *ref, const char *what)
{
    double e = tu_rel_err(out->data, ref, eng_tensor_numel(out));
    cr_expect(e <= TOL, "%s: relative error %.3g > %.0e", what, e, TOL);
}

/* ---- parity with the reference ---- */

/* Every output of one case: hidden_states[-k] for every k, last_hidden, pooled, text_embeds. */
static void check_case(const char *model, const char *tag)
{
    char dir[128], what[96];
    eng_error err = {0};
    snprintf(dir, sizeof dir, FIX "/%s", model);
    eng_clip *m = load(dir);
    const eng_clip_text_config *c = eng_clip_get_config(m);
    io_file f = io_open(model);
    eng_tensor ids = io_ids(&f, tag);
    const int64_t B = ids.shape[0], N = ids.shape[1], C = c->hidden_size;
    int64_t n;
    double *hs = io_f64(&f, tag, "hidden_states", &n);
    cr_assert_eq(n, (c->num_hidden_layers + 1) * B * N * C);
    double *last = io_f64(&f, tag, "last_hidden_state", &n);
    double *pooled = io_f64(&f, tag, "pooled", &n);
    double *embeds = io_f64(&f, tag, "text_embeds", &n);

    eng_tensor hidden, o_last, o_pooled, o_embeds;
    out_tensor(&hidden, ENG_SHAPE(B, N, C));
    out_tensor(&o_last, ENG_SHAPE(B, N, C));
    out_tensor(&o_pooled, ENG_SHAPE(B, C));
    out_tensor(&o_embeds, ENG_SHAPE(B, c->projection_dim));
    eng_clip_outputs o = {2, &hidden, &o_last, &o_pooled, &o_embeds};
    cr_assert_eq(eng_clip_encode_ex(m, &ids, &o, &err), 0, "%s", err.msg);
    snprintf(what, sizeof what, "%s %s hidden_states[-2]", model, tag);
    expect_close(&hidden, hs + (c->num_hidden_layers - 1) * B * N * C, what);
    snprintf(what, sizeof what, "%s %s last_hidden_state", model, tag);
    expect_close(&o_last, last, what);
    snprintf(what, sizeof what, "%s %s pooled", model, tag);
    expect_close(&o_pooled, pooled, what);
    snprintf(what, sizeof what, "%s %s text_embeds", model, tag);
    expect_close(&o_embeds, embeds, what);

    /* The SD3 call for every depth (hidden only runs just the layers it needs). */
    for (int k = 1; k <= c->num_hidden_layers + 1; k++) {
        tu_poison(hidden.data, B * N * C);
        tu_poison(o_embeds.data, B * c->projection_dim);
        cr_assert_eq(eng_clip_encode(m, &ids, k, &hidden, k == 1 ? &o_embeds : NULL, &err), 0,
                     "%s", err.msg);
        snprintf(what, sizeof what, "%s %s hidden_states[-%d]", model, tag, k);
        expect_close(&hidden, hs + (c->num_hidden_layers + 1 - k) * B * N * C, what);
        if (k == 1)
            expect_close(&o_embeds, embeds, "text_embeds with hidden_states[-1]");
    }

    /* Pooled positions as the reference picked them. */
    const eng_st_tensor *pp = io_get(&f, tag, "pool_positions");
    for (int64_t b = 0; b < B; b++) {
        int32_t want;
        memcpy(&want, (const char *)pp->data + 4 * b, 4);
        cr_expect_eq(eng_clip_pool_position(c, (const int32_t *)ids.data + b * N, (int)N), want,
                     "%s %s row %lld", model, tag, (long long)b);
    }

    eng_tensor_free(&hidden);
    eng_tensor_free(&o_last);
    eng_tensor_free(&o_pooled);
    eng_tensor_free(&o_embeds);
    free(hs), free(last), free(pooled), free(embeds);
    free(ids.data);
    eng_safetensors_close(f.st);
    eng_clip_free(m);
}

Test(clip, clip_l_legacy_pooling_matches_reference)
{
    check_case("clip_l", "n77");
    check_case("clip_l", "n7");
}

Test(clip, clip_g_first_eos_pooling_and_f16_weights_match_reference)
{
    check_case("clip_g", "n77");
    check_case("clip_g", "n7");
}

Test(clip, ids_on_the_backend_give_the_same_result)
{
    eng_error err = {0};
    eng_clip *m = load(FIX "/clip_g");
    io_file f = io_open("clip_g");
    eng_tensor ids = io_ids(&f, "n77"), dev;
    int64_t n;
    double *embeds = io_f64(&f, "n77", "text_embeds", &n);
    double *hs = io_f64(&f, "n77", "hidden_states", &n);
    const int64_t B = ids.shape[0], N = ids.shape[1], C = 48;
    cr_assert_eq(eng_tensor_init(&dev, cpu, ENG_DTYPE_I32, 2, ids.shape, &err), 0);
    cr_assert_eq(eng_tensor_upload(&dev, ids.data, &err), 0);
    eng_tensor hidden, out;
    out_tensor(&hidden, ENG_SHAPE(B, N, C));
    out_tensor(&out, ENG_SHAPE(B, 40));
    cr_assert_eq(eng_clip_encode(m, &dev, 2, &hidden, &out, &err), 0, "%s", err.msg);
    expect_close(&out, embeds, "text_embeds from backend ids");
    expect_close(&hidden, hs + 1 * B * N * C, "hidden from backend ids");
    eng_tensor_free(&hidden);
    eng_tensor_free(&out);
    eng_tensor_free(&dev);
    free(embeds), free(hs), free(ids.data);
    eng_safetensors_close(f.st);
    eng_clip_free(m);
}

Test(clip, pool_position_rules)
{
    eng_clip_text_config legacy = {.eos_token_id = 2}, modern = {.eos_token_id = 7};
    const int32_t a[] = {5, 9, 2, 9, 7, 7};
    cr_expect_eq(eng_clip_pool_position(&legacy, a, 6), 1); /* first of the equal maxima */
    cr_expect_eq(eng_clip_pool_position(&modern, a, 6), 4); /* first EOS */
    const int32_t none[] = {5, 9, 2, 9};
    cr_expect_eq(eng_clip_pool_position(&modern, none, 4), 0);
    cr_expect_eq(eng_clip_pool_position(&legacy, none, 1), 0);
}

/* ---- errors ---- */

/*
 * Writes a copy of the fixture folder model into tmpdir: config.json as is, model.safetensors
 * without the tensor `drop` (NULL: none) and with `reshape` stored transposed (2-D; NULL: none).
 */
static const char *broken_copy(const char *model, const char *drop, const char *reshape)
{
    char src[256], dst[256];
    eng_error err = {0};
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tttd_clip_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));

    snprintf(src, sizeof src, FIX "/%s/config.json", model);
    snprintf(dst, sizeof dst, "%s/config.json", tmpdir);
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    cr_assert(in && out);
    char buf[4096];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, in)) > 0)
        fwrite(buf, 1, got, out);
    fclose(in);
    fclose(out);

    eng_safetensors *st = NULL;
    eng_st_writer *w = NULL;
    snprintf(src, sizeof src, FIX "/%s/model.safetensors", model);
    cr_assert_eq(eng_safetensors_open(&st, src, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_st_writer_init(&w, &err), 0);
    for (size_t i = 0; i < eng_safetensors_count(st); i++) {
        const eng_st_tensor *t = eng_safetensors_at(st, i);
        int64_t shape[ENG_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        if (drop && strcmp(t->name, drop) == 0)
            continue;
        if (reshape && strcmp(t->name, reshape) == 0) {
            cr_assert_eq(t->ndim, 2);
            shape[0] = t->shape[1], shape[1] = t->shape[0];
        }
        cr_assert_eq(eng_st_writer_add(w, t->name, t->dtype, t->ndim, shape, t->data, &err), 0,
                     "%s", err.msg);
    }
    snprintf(dst, sizeof dst, "%s/model.safetensors", tmpdir);
    cr_assert_eq(eng_st_writer_write(w, dst, &err), 0, "%s", err.msg);
    eng_st_writer_free(w);
    eng_safetensors_close(st);
    return tmpdir;
}

Test(clip, missing_tensor_is_named)
{
    eng_error err = {0};
    eng_clip *m = (eng_clip *)1;
    const char *name = "text_model.encoder.layers.1.mlp.fc2.bias";
    const char *dir = broken_copy("clip_l", name, NULL);
    cr_assert_eq(eng_clip_load(&m, dir, cpu, ENG_DTYPE_F32, &err), ENG_ENOTFOUND);
    cr_expect_null(m);
    cr_expect(strstr(err.msg, name) != NULL, "message: %s", err.msg);
}

Test(clip, missing_projection_is_named)
{
    eng_error err = {0};
    eng_clip *m = NULL;
    const char *dir = broken_copy("clip_g", "text_projection.weight", NULL);
    cr_assert_eq(eng_clip_load(&m, dir, cpu, ENG_DTYPE_F32, &err), ENG_ENOTFOUND);
    cr_expect(strstr(err.msg, "text_projection.weight") != NULL, "message: %s", err.msg);
}

Test(clip, misshapen_tensor_is_named)
{
    eng_error err = {0};
    eng_clip *m = NULL;
    const char *name = "text_model.encoder.layers.0.mlp.fc1.weight";
    const char *dir = broken_copy("clip_l", NULL, name);
    cr_assert_eq(eng_clip_load(&m, dir, cpu, ENG_DTYPE_F32, &err), ENG_EFORMAT);
    cr_expect(strstr(err.msg, name) != NULL, "message: %s", err.msg);
    cr_expect(strstr(err.msg, "[64, 32]") != NULL, "message: %s", err.msg);
}

Test(clip, missing_folder_or_config)
{
    eng_error err = {0};
    eng_clip *m = NULL;
    cr_expect_eq(eng_clip_load(&m, "/nonexistent/text_encoder", cpu, ENG_DTYPE_F32, &err),
                 ENG_ENOTFOUND);
    cr_expect(strstr(err.msg, "config.json") != NULL, "message: %s", err.msg);
}

Test(clip, bad_ids_and_outputs)
{
    eng_error err = {0};
    eng_clip *m = load(FIX "/clip_l");
    int32_t ids78[78] = {0};
    int32_t ids3[3] = {998, 1000, 999}; /* 1000 is outside vocab_size 1000 */
    eng_tensor hidden, embeds, small;
    out_tensor(&hidden, ENG_SHAPE(1, 3, 32));
    out_tensor(&embeds, ENG_SHAPE(1, 24));
    out_tensor(&small, ENG_SHAPE(1, 23));

    eng_tensor t = eng_tensor_view(ids3, NULL, ENG_DTYPE_I32, ENG_SHAPE(1, 3));
    cr_expect_neq(eng_clip_encode(m, &t, 2, &hidden, &embeds, &err), 0);
    cr_expect(strstr(err.msg, "embedding") != NULL, "message: %s", err.msg);
    ids3[1] = -1;
    cr_expect_neq(eng_clip_encode(m, &t, 2, &hidden, &embeds, &err), 0);
    ids3[1] = 5;
    cr_expect_eq(eng_clip_encode(m, &t, 2, &hidden, &embeds, &err), 0, "%s", err.msg);

    cr_expect_eq(eng_clip_encode(m, &t, 2, &hidden, &small, &err), ENG_EINVAL);
    cr_expect(strstr(err.msg, "text_embeds") != NULL, "message: %s", err.msg);
    cr_expect_eq(eng_clip_encode(m, &t, 0, &hidden, NULL, &err), ENG_EINVAL);
    cr_expect_eq(eng_clip_encode(m, &t, 5, &hidden, NULL, &err), ENG_EINVAL);
    cr_expect(strstr(err.msg, "hidden_layer_from_end") != NULL, "message: %s", err.msg);

    eng_tensor long_ids = eng_tensor_view(ids78, NULL, ENG_DTYPE_I32, ENG_SHAPE(1, 78));
    cr_expect_eq(eng_clip_encode(m, &long_ids, 2, NULL, NULL, &err), ENG_EINVAL);
    cr_expect(strstr(err.msg, "max_position_embeddings") != NULL, "message: %s", err.msg);
    eng_tensor f32_ids = eng_tensor_view(ids3, NULL, ENG_DTYPE_F32, ENG_SHAPE(1, 3));
    cr_expect_eq(eng_clip_encode(m, &f32_ids, 2, NULL, NULL, &err), ENG_EINVAL);

    eng_tensor_free(&hidden);
    eng_tensor_free(&embeds);
    eng_tensor_free(&small);
    eng_clip_free(m);
}
