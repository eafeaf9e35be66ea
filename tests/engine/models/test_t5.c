/*
 * test_t5.c - the T5 encoder (engine/models/t5.h) against the PyTorch reference's fixtures in
 * tests/fixtures/text_encoders/t5 (tools/reference/make_text_encoder_fixtures.py): the relative
 * position buckets of every distance in [-1000, 1000] (float32-log edges included), the position
 * bias, last_hidden_state for N = 256 (SD3's length, B = 2) and N = 20, BF16 weights converted at
 * load, the bias cache across lengths, the alternative embedding name; and errors naming the
 * missing or misshapen tensor, ids out of the vocabulary, a bad output.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/io/safetensors.h"
#include "engine/models/t5.h"
#include "tests/common/test_util.h"

#define FIX "tests/fixtures/text_encoders/t5"
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

TestSuite(t5, .init = setup, .fini = teardown);

/* ---- fixture access ---- */

static eng_safetensors *io_open(void)
{
    eng_safetensors *st = NULL;
    eng_error err = {0};
    cr_assert_eq(eng_safetensors_open(&st, FIX "/io.safetensors", &err), 0, "%s", err.msg);
    return st;
}

static const eng_st_tensor *io_get(eng_safetensors *st, const char *name)
{
    const eng_st_tensor *t = eng_safetensors_find(st, name);
    cr_assert_not_null(t, "fixture tensor %s missing", name);
    return t;
}

static double *io_f64(eng_safetensors *st, const char *name, int64_t *n)
{
    const eng_st_tensor *t = io_get(st, name);
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

/* An I32 fixture tensor copied to the host (free with free()). */
static int32_t *io_i32(eng_safetensors *st, const char *name, const eng_st_tensor **info)
{
    const eng_st_tensor *t = io_get(st, name);
    cr_assert_eq(t->dtype, ENG_DTYPE_I32);
    int32_t *d = malloc(t->nbytes);
    memcpy(d, t->data, t->nbytes);
    if (info)
        *info = t;
    return d;
}

static eng_t5 *load(const char *dir)
{
    eng_t5 *m = NULL;
    eng_error err = {0};
    cr_assert_eq(eng_t5_load(&m, dir, cpu, ENG_DTYPE_F32, &err), 0, "%s", err.msg);
    return m;
}

/* Encodes the fixture case tag ("n256", "n20") and compares with its last_hidden_state. */
static void check_case(eng_t5 *m, eng_safetensors *io, const char *tag)
{
    char name[64];
    eng_error err = {0};
    const eng_st_tensor *info;
    snprintf(name, sizeof name, "%s.input_ids", tag);
    int32_t *ids = io_i32(io, name, &info);
    eng_tensor t = eng_tensor_view(ids, NULL, ENG_DTYPE_I32, info->ndim, info->shape);
    int64_t n;
    snprintf(name, sizeof name, "%s.last_hidden_state", tag);
    double *ref = io_f64(io, name, &n);
    eng_tensor out;
    const int64_t B = t.shape[0], N = t.shape[1], D = eng_t5_get_config(m)->d_model;
    cr_assert_eq(n, B * N * D);
    cr_assert_eq(eng_tensor_init(&out, cpu, ENG_DTYPE_F32, ENG_SHAPE(B, N, D), &err), 0);
    tu_poison(out.data, n);
    cr_assert_eq(eng_t5_encode(m, &t, &out, &err), 0, "%s", err.msg);
    double e = tu_rel_err(out.data, ref, n);
    cr_expect(e <= TOL, "t5 %s: relative error %.3g > %.0e", tag, e, TOL);
    eng_tensor_free(&out);
    free(ref);
    free(ids);
}

/* ---- the relative position bias ---- */

Test(t5, buckets_match_reference_for_every_distance)
{
    eng_safetensors *io = io_open();
    const eng_st_tensor *info;
    int32_t *rel = io_i32(io, "buckets.relative_position", &info);
    int32_t *want = io_i32(io, "buckets.bucket", NULL);
    int bad = 0;
    for (int64_t i = 0; i < info->shape[0]; i++) {
        int got = eng_t5_relative_bucket(rel[i], 32, 128);
        if (got != want[i] && bad++ < 5)
            cr_expect_eq(got, want[i], "relative position %d", rel[i]);
    }
    cr_expect_eq(bad, 0, "%d distances in the wrong bucket", bad);
    /* The edges of T5's log-spaced buckets (16 buckets a side, 8 exact). */
    cr_expect_eq(eng_t5_relative_bucket(7, 32, 128), 16 + 7);
    cr_expect_eq(eng_t5_relative_bucket(-8, 32, 128), 8);
    cr_expect_eq(eng_t5_relative_bucket(-15, 32, 128), 9);
    cr_expect_eq(eng_t5_relative_bucket(-16, 32, 128), 10);
    cr_expect_eq(eng_t5_relative_bucket(-64, 32, 128), 14);
    cr_expect_eq(eng_t5_relative_bucket(-90, 32, 128), 14);
    cr_expect_eq(eng_t5_relative_bucket(-91, 32, 128), 15);
    cr_expect_eq(eng_t5_relative_bucket(100000, 32, 128), 31);
    free(rel);
    free(want);
    eng_safetensors_close(io);
}

Test(t5, position_bias_matches_reference)
{
    eng_error err = {0};
    eng_safetensors *io = io_open(), *st = NULL;
    cr_assert_eq(eng_safetensors_open(&st, FIX "/model.safetensors", &err), 0, "%s", err.msg);
    const eng_st_tensor *tt = eng_safetensors_find(
        st, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
    cr_assert_not_null(tt);
    float table[32 * 4], bias[4 * 20 * 20];
    cr_assert_eq(eng_st_tensor_to_f32(tt, table, &err), 0);
    eng_t5_position_bias(table, 32, 128, 4, 20, bias);
    int64_t n;
    double *ref = io_f64(io, "n20.bias", &n);
    cr_assert_eq(n, 4 * 20 * 20);
    cr_expect_eq(tu_rel_err(bias, ref, n), 0.0);
    free(ref);
    eng_safetensors_close(st);
    eng_safetensors_close(io);
}

/* ---- parity with the reference ---- */

Test(t5, encoder_matches_reference_n256_and_n20)
{
    eng_t5 *m = load(FIX);
    eng_safetensors *io = io_open();
    check_case(m, io, "n256");
    check_case(m, io, "n20");
    check_case(m, io, "n256"); /* the bias cache follows the length back */
    eng_safetensors_close(io);
    eng_t5_free(m);
}

Test(t5, ids_on_the_backend_give_the_same_result)
{
    eng_error err = {0};
    eng_t5 *m = load(FIX);
    eng_safetensors *io = io_open();
    const eng_st_tensor *info;
    int32_t *ids = io_i32(io, "n20.input_ids", &info);
    eng_tensor dev, out;
    cr_assert_eq(eng_tensor_init(&dev, cpu, ENG_DTYPE_I32, 2, info->shape, &err), 0);
    cr_assert_eq(eng_tensor_upload(&dev, ids, &err), 0);
    cr_assert_eq(eng_tensor_init(&out, cpu, ENG_DTYPE_F32, ENG_SHAPE(1, 20, 32), &err), 0);
    cr_assert_eq(eng_t5_encode(m, &dev, &out, &err), 0, "%s", err.msg);
    int64_t n;
    double *ref = io_f64(io, "n20.last_hidden_state", &n);
    cr_expect_leq(tu_rel_err(out.data, ref, n), TOL);
    free(ref);
    free(ids);
    eng_tensor_free(&out);
    eng_tensor_free(&dev);
    eng_safetensors_close(io);
    eng_t5_free(m);
}

/* ---- folders that differ from the fixture ---- */

/*
 * Writes a copy of the fixture folder into tmpdir: config.json as is, model.safetensors without
 * `drop`, with `rename` stored under `to`, and with `reshape` stored transposed (each NULL: none).
 */
static const char *variant(const char *drop, const char *rename, const char *to,
                           const char *reshape)
{
    char path[256];
    eng_error err = {0};
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tttd_t5_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));

    snprintf(path, sizeof path, "%s/config.json", tmpdir);
    FILE *in = fopen(FIX "/config.json", "rb"), *out = fopen(path, "wb");
    cr_assert(in && out);
    char buf[4096];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, in)) > 0)
        fwrite(buf, 1, got, out);
    fclose(in);
    fclose(out);

    eng_safetensors *st = NULL;
    eng_st_writer *w = NULL;
    cr_assert_eq(eng_safetensors_open(&st, FIX "/model.safetensors", &err), 0, "%s", err.msg);
    cr_assert_eq(eng_st_writer_init(&w, &err), 0);
    for (size_t i = 0; i < eng_safetensors_count(st); i++) {
        const eng_st_tensor *t = eng_safetensors_at(st, i);
        int64_t shape[ENG_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        const char *name = t->name;
        if (drop && strcmp(name, drop) == 0)
            continue;
        if (rename && strcmp(name, rename) == 0)
            name = to;
        if (reshape && strcmp(name, reshape) == 0) {
            cr_assert_eq(t->ndim, 2);
            shape[0] = t->shape[1], shape[1] = t->shape[0];
        }
        cr_assert_eq(eng_st_writer_add(w, name, t->dtype, t->ndim, shape, t->data, &err), 0,
                     "%s", err.msg);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", tmpdir);
    cr_assert_eq(eng_st_writer_write(w, path, &err), 0, "%s", err.msg);
    eng_st_writer_free(w);
    eng_safetensors_close(st);
    return tmpdir;
}

Test(t5, embedding_under_encoder_embed_tokens_name)
{
    eng_t5 *m = load(variant(NULL, "shared.weight", "encoder.embed_tokens.weight", NULL));
    eng_safetensors *io = io_open();
    check_case(m, io, "n20");
    eng_safetensors_close(io);
    eng_t5_free(m);
}

Test(t5, missing_embedding_is_named)
{
    eng_error err = {0};
    eng_t5 *m = NULL;
    const char *dir = variant("shared.weight", NULL, NULL, NULL);
    cr_assert_eq(eng_t5_load(&m, dir, cpu, ENG_DTYPE_F32, &err), ENG_ENOTFOUND);
    cr_expect_null(m);
    cr_expect(strstr(err.msg, "shared.weight") != NULL, "message: %s", err.msg);
}

Test(t5, missing_tensor_is_named)
{
    eng_error err = {0};
    eng_t5 *m = NULL;
    const char *name = "encoder.block.1.layer.1.DenseReluDense.wi_1.weight";
    cr_assert_eq(eng_t5_load(&m, variant(name, NULL, NULL, NULL), cpu, ENG_DTYPE_F32, &err),
                 ENG_ENOTFOUND);
    cr_expect(strstr(err.msg, name) != NULL, "message: %s", err.msg);
}

Test(t5, misshapen_tensor_is_named)
{
    eng_error err = {0};
    eng_t5 *m = NULL;
    const char *name = "encoder.block.0.layer.0.SelfAttention.o.weight";
    cr_assert_eq(eng_t5_load(&m, variant(NULL, NULL, NULL, name), cpu, ENG_DTYPE_F32, &err),
                 ENG_EFORMAT);
    cr_expect(strstr(err.msg, name) != NULL, "message: %s", err.msg);
    cr_expect(strstr(err.msg, "[32, 64]") != NULL, "message: %s", err.msg);
}

Test(t5, bad_ids_and_output)
{
    eng_error err = {0};
    eng_t5 *m = load(FIX);
    int32_t ids[4] = {5, 1000, 1, 0}; /* 1000 is outside vocab_size 1000 */
    eng_tensor t = eng_tensor_view(ids, NULL, ENG_DTYPE_I32, ENG_SHAPE(1, 4)), out, wrong;
    cr_assert_eq(eng_tensor_init(&out, cpu, ENG_DTYPE_F32, ENG_SHAPE(1, 4, 32), &err), 0);
    cr_assert_eq(eng_tensor_init(&wrong, cpu, ENG_DTYPE_F32, ENG_SHAPE(1, 4, 31), &err), 0);
    cr_expect_neq(eng_t5_encode(m, &t, &out, &err), 0);
    cr_expect(strstr(err.msg, "embedding") != NULL, "message: %s", err.msg);
    ids[1] = 999;
    cr_expect_eq(eng_t5_encode(m, &t, &out, &err), 0, "%s", err.msg);
    cr_expect_eq(eng_t5_encode(m, &t, &wrong, &err), ENG_EINVAL);
    cr_expect(strstr(err.msg, "[1, 4, 31]") != NULL, "message: %s", err.msg);
    cr_expect_eq(eng_t5_encode(m, &t, NULL, &err), ENG_EINVAL);
    eng_tensor_free(&out);
    eng_tensor_free(&wrong);
    eng_t5_free(m);
}
