/*
 * test_vae.c - the AutoencoderKL decoder (engine/models/vae.h) against tools/reference/vae.py through
 * the fixtures of tests/fixtures/vae/ (see its README): the SD3-shaped model (16 latent channels,
 * mid attention, conv_shortcut, two upsamplers, encoder tensors to ignore) and the "pqc" variant
 * (post_quant_conv, no attention, F16 weights, null shift); the postprocess's rounding on exact
 * .5 ties; and errors: a tensor missing from the file or from the config's expectations, a
 * misshapen tensor, latents with the wrong channel count.
 *
 * Float images must match within 1e-4 (max |a - b| / max |b|); RGB bytes exactly, except where
 * the reference's float * 255 lies so near a .5 tie that the images' measured difference can cross
 * it; and the bytes must be exactly our own image rounded half to even (the rounding itself is
 * checked strictly on exact ties by the postprocess test).
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/backend/backend.h"
#include "engine/io/safetensors.h"
#include "engine/models/vae.h"
#include "tests/common/test_util.h"

#define FIX "tests/fixtures/vae/"

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

TestSuite(vae, .init = setup, .fini = teardown);

/* A float tensor of an open fixture, as f32 (malloc'd), its shape checked against want. */
static float *fixture_f32(const eng_safetensors *st, const char *name, int ndim,
                          const int64_t *want, int64_t *numel)
{
    eng_error err = {0};
    const eng_st_tensor *t = eng_safetensors_find(st, name);
    cr_assert_not_null(t, "fixture has no tensor %s", name);
    cr_assert_eq(t->ndim, ndim, "%s: rank %d", name, t->ndim);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        cr_assert_eq(t->shape[i], want[i], "%s: dim %d is %lld, want %lld", name, i,
                     (long long)t->shape[i], (long long)want[i]);
        n *= want[i];
    }
    float *x = tu_alloc(n);
    cr_assert_eq(eng_st_tensor_to_f32(t, x, &err), 0, "%s", err.msg);
    if (numel)
        *numel = n;
    return x;
}

/* The I32 rgb tensor of a fixture, as bytes (the C reader has no U8 dtype). */
static uint8_t *fixture_rgb(const eng_safetensors *st, int64_t n)
{
    const eng_st_tensor *t = eng_safetensors_find(st, "rgb");
    cr_assert_not_null(t);
    cr_assert_eq(t->dtype, ENG_DTYPE_I32);
    cr_assert_eq(t->nbytes, (size_t)n * 4);
    uint8_t *rgb = malloc((size_t)n);
    cr_assert_not_null(rgb);
    for (int64_t i = 0; i < n; i++) {
        int32_t v;
        memcpy(&v, (const char *)t->data + 4 * i, 4);
        cr_assert(v >= 0 && v <= 255);
        rgb[i] = (uint8_t)v;
    }
    return rgb;
}

static double rel_err(const float *a, const float *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]))
            return INFINITY;
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return den > 0 ? num / den : num;
}

/*
 * RGB bytes against the reference: exact, except where the reference's image * 255 (ref_image
 * NCHW) lies within `margin` of a .5 tie, where one step is allowed. Returns the steps taken.
 */
static int check_rgb(const uint8_t *got, const uint8_t *want, const float *ref_image, int64_t B,
                     int64_t C, int64_t H, int64_t W, float margin)
{
    int steps = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++)
                for (int64_t c = 0; c < C; c++) {
                    const int64_t i = ((b * H + y) * W + x) * C + c;
                    const float s = ref_image[((b * C + c) * H + y) * W + x] * 255.0f;
                    const int near_tie = fabsf(s - floorf(s) - 0.5f) <= margin;
                    const int d = abs((int)got[i] - (int)want[i]);
                    steps += d;
                    cr_assert(d == 0 || (near_tie && d == 1),
                              "rgb[%lld, %lld, %lld, %lld] = %d, want %d (reference %.7g * 255)",
                              (long long)b, (long long)y, (long long)x, (long long)c, got[i],
                              want[i], ref_image[((b * C + c) * H + y) * W + x]);
                }
    return steps;
}

/*
 * Loads fixture `name` (folder FIX name/, io FIX name_io.safetensors), decodes its latents from
 * the backend and from host memory, and compares the image and RGB with the reference.
 */
static void check_model(const char *name, int64_t B, int64_t h, int64_t w, int factor)
{
    char dir[256], io[256];
    eng_error err = {0};
    eng_vae *v = NULL;
    eng_safetensors *st = NULL;
    snprintf(dir, sizeof dir, FIX "%s", name);
    snprintf(io, sizeof io, FIX "%s_io.safetensors", name);
    cr_assert_eq(eng_vae_load(&v, dir, be, ENG_DTYPE_F32, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_vae_scale_factor(v), factor);
    cr_assert_eq(eng_vae_get_config(v)->latent_channels, 16);
    cr_assert_eq(eng_safetensors_open(&st, io, &err), 0, "%s", err.msg);

    const int64_t H = h * factor, W = w * factor, n = B * 3 * H * W;
    float *lat = fixture_f32(st, "latents", ENG_SHAPE(B, 16, h, w), NULL);
    float *want = fixture_f32(st, "image", ENG_SHAPE(B, 3, H, W), NULL);
    uint8_t *want_rgb = fixture_rgb(st, n);

    /* Latents on the backend, both outputs. */
    eng_tensor t;
    cr_assert_eq(eng_tensor_init(&t, be, ENG_DTYPE_F32, ENG_SHAPE(B, 16, h, w), &err), 0);
    cr_assert_eq(eng_tensor_upload(&t, lat, &err), 0, "%s", err.msg);
    float *image = tu_alloc(n);
    uint8_t *rgb = malloc((size_t)n);
    tu_poison(image, n);
    memset(rgb, 0xAB, (size_t)n);
    cr_assert_eq(eng_vae_decode(v, &t, image, rgb, &err), 0, "%s", err.msg);
    double e = rel_err(image, want, n);
    cr_assert(e < 1e-4, "%s: image error %.3g", name, e);
    int lo = 0, hi = 0;
    for (int64_t i = 0; i < n; i++) {
        lo += image[i] == 0.0f;
        hi += image[i] == 1.0f;
    }
    cr_assert(lo > 0 && hi > 0 && lo + hi < n / 2, "%s: the fixture should clamp a few pixels",
              name);
    /* A byte may differ only where the images' own difference can cross a .5 tie. */
    double dmax = 0;
    for (int64_t i = 0; i < n; i++)
        dmax = fmax(dmax, fabs((double)image[i] - want[i]));
    check_rgb(rgb, want_rgb, want, B, 3, H, W, (float)(255.0 * dmax) + 1e-4f);
    /* The bytes are exactly our own image's, rounded half to even, in HWC order. */
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < 3; c++)
            for (int64_t i = 0; i < H * W; i++) {
                const float s = image[(b * 3 + c) * H * W + i] * 255.0f;
                cr_assert_eq(rgb[(b * H * W + i) * 3 + c], (uint8_t)nearbyintf(s));
            }

    /* Host latents, RGB only: the same bytes. */
    eng_tensor host = eng_tensor_view(lat, NULL, ENG_DTYPE_F32, ENG_SHAPE(B, 16, h, w));
    uint8_t *rgb2 = malloc((size_t)n);
    memset(rgb2, 0xCD, (size_t)n);
    cr_assert_eq(eng_vae_decode(v, &host, NULL, rgb2, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(rgb, rgb2, (size_t)n), 0, "%s: host latents give other bytes", name);

    free(rgb2);
    free(rgb);
    free(image);
    free(want_rgb);
    free(want);
    free(lat);
    eng_tensor_free(&t);
    eng_safetensors_close(st);
    eng_vae_free(v);
}

Test(vae, sd3_shaped_model_matches_reference)
{
    check_model("sd3", 2, 4, 6, 4);
}

Test(vae, post_quant_conv_f16_weights_no_attention)
{
    check_model("pqc", 1, 5, 3, 2);
}

Test(vae, postprocess_rounds_half_to_even)
{
    eng_safetensors *st = NULL;
    eng_error err = {0};
    cr_assert_eq(eng_safetensors_open(&st, FIX "postprocess.safetensors", &err), 0, "%s",
                 err.msg);
    const eng_st_tensor *tx = eng_safetensors_find(st, "x");
    cr_assert_not_null(tx);
    const int64_t M = tx->shape[3], n = 3 * M;
    float *x = fixture_f32(st, "x", ENG_SHAPE(1, 3, 1, M), NULL);
    float *want = fixture_f32(st, "image", ENG_SHAPE(1, 3, 1, M), NULL);
    uint8_t *want_rgb = fixture_rgb(st, n);
    float *image = tu_alloc(n);
    uint8_t *rgb = malloc((size_t)n);

    eng_vae_postprocess(x, 1, 3, 1, M, image, rgb);
    int ties = 0;
    for (int64_t i = 0; i < n; i++) {
        cr_assert_eq(image[i], want[i], "image[%lld] = %.9g, want %.9g (x %.9g)", (long long)i,
                     image[i], want[i], x[i]);
        const float s = want[i] * 255.0f;
        ties += s - floorf(s) == 0.5f;
    }
    /* rgb is [1, 1, M, 3]: pixel j, channel c <- x[c, j]. */
    for (int64_t j = 0; j < M; j++)
        for (int c = 0; c < 3; c++)
            cr_assert_eq(rgb[j * 3 + c], want_rgb[j * 3 + c], "pixel %lld channel %d: %d, want %d "
                         "(x %.9g)", (long long)j, c, rgb[j * 3 + c], want_rgb[j * 3 + c],
                         x[c * M + j]);
    cr_assert(ties > 100, "only %d exact ties in the fixture", ties);

    /* In place (image aliasing x) gives the same floats. */
    eng_vae_postprocess(x, 1, 3, 1, M, x, NULL);
    cr_assert_eq(memcmp(x, want, (size_t)n * sizeof *x), 0);
    free(rgb);
    free(image);
    free(want_rgb);
    free(want);
    free(x);
    eng_safetensors_close(st);
}

Test(vae, wrong_latent_channels)
{
    eng_error err = {0};
    eng_vae *v = NULL;
    cr_assert_eq(eng_vae_load(&v, FIX "sd3", be, ENG_DTYPE_F32, &err), 0, "%s", err.msg);
    eng_tensor t;
    cr_assert_eq(eng_tensor_init(&t, be, ENG_DTYPE_F32, ENG_SHAPE(1, 4, 4, 6), &err), 0);
    uint8_t rgb[3 * 16 * 24];
    cr_assert_eq(eng_vae_decode(v, &t, NULL, rgb, &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "[1, 4, 4, 6]") && strstr(err.msg, "16"), "%s", err.msg);
    eng_tensor_free(&t);
    eng_vae_free(v);
}

/* eng_vae_init over the sd3 fixture's weights with a config changed by `edit`. */
static int init_with(void (*edit)(eng_vae_config *), eng_error *err)
{
    eng_vae_config cfg;
    eng_safetensors *st = NULL;
    eng_vae *v = NULL;
    cr_assert_eq(eng_config_load_vae(FIX "sd3/config.json", &cfg, err), 0, "%s", err->msg);
    cr_assert_eq(eng_safetensors_open_dir(&st, FIX "sd3", err), 0, "%s", err->msg);
    edit(&cfg);
    int rc = eng_vae_init(&v, &cfg, st, FIX "sd3", be, ENG_DTYPE_F32, err);
    cr_assert_null(v);
    eng_safetensors_close(st);
    return rc;
}

static void four_latent_channels(eng_vae_config *c)
{
    c->latent_channels = 4;
}
static void post_quant_conv_on(eng_vae_config *c)
{
    c->use_post_quant_conv = 1;
}
static void more_layers(eng_vae_config *c)
{
    c->layers_per_block = 3;
}

Test(vae, config_and_weights_disagree)
{
    eng_error err = {0};
    cr_assert_eq(init_with(four_latent_channels, &err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, "\"decoder.conv_in.weight\"") && strstr(err.msg, "[16, 4, 3, 3]"),
              "%s", err.msg);
    cr_assert_eq(init_with(post_quant_conv_on, &err), ENG_ENOTFOUND);
    cr_assert(strstr(err.msg, "\"post_quant_conv.weight\"") && strstr(err.msg, "[16, 16, 1, 1]"),
              "%s", err.msg);
    cr_assert_eq(init_with(more_layers, &err), ENG_ENOTFOUND);
    cr_assert(strstr(err.msg, "\"decoder.up_blocks.0.resnets.3.norm1.weight\""), "%s", err.msg);
}

/* A copy of the sd3 fixture folder without one tensor fails to load, naming the tensor. */
Test(vae, missing_tensor_is_named)
{
    const char *drop = "decoder.up_blocks.2.resnets.0.conv_shortcut.bias";
    char dir[] = "/tmp/tttd_vae_XXXXXX", path[256];
    eng_error err = {0};
    eng_safetensors *st = NULL;
    eng_st_writer *wr = NULL;
    eng_vae *v = NULL;
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(eng_safetensors_open_dir(&st, FIX "sd3", &err), 0, "%s", err.msg);
    cr_assert_not_null(eng_safetensors_find(st, drop), "the fixture lacks %s", drop);
    cr_assert_eq(eng_st_writer_init(&wr, &err), 0);
    for (size_t i = 0; i < eng_safetensors_count(st); i++) {
        const eng_st_tensor *t = eng_safetensors_at(st, i);
        if (strcmp(t->name, drop) != 0)
            cr_assert_eq(eng_st_writer_add(wr, t->name, t->dtype, t->ndim, t->shape, t->data,
                                           &err), 0, "%s", err.msg);
    }
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    cr_assert_eq(eng_st_writer_write(wr, path, &err), 0, "%s", err.msg);
    eng_st_writer_free(wr);
    eng_safetensors_close(st);

    FILE *in = fopen(FIX "sd3/config.json", "rb");
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *out = fopen(path, "wb");
    cr_assert(in && out);
    char buf[4096];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, in)) > 0)
        cr_assert_eq(fwrite(buf, 1, got, out), got);
    fclose(in);
    fclose(out);

    int rc = eng_vae_load(&v, dir, be, ENG_DTYPE_F32, &err);
    tu_rmtree(dir);
    cr_assert_eq(rc, ENG_ENOTFOUND, "%d: %s", rc, err.msg);
    cr_assert_null(v);
    cr_assert(strstr(err.msg, drop) && strstr(err.msg, "[8]"), "%s", err.msg);
}

Test(vae, missing_folder)
{
    eng_error err = {0};
    eng_vae *v = NULL;
    cr_assert_eq(eng_vae_load(&v, FIX "no_such_vae", be, ENG_DTYPE_F32, &err), ENG_ENOTFOUND);
    cr_assert(strstr(err.msg, "no_such_vae/config.json"), "%s", err.msg);
    cr_assert_null(v);
    eng_vae_free(NULL);
}
