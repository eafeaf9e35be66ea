/*
 * test_cmd_generate.c - `tttd generate` on the tiny pipeline (tests/fixtures/tiny_model): the PNG
 * decodes to the asked size, a seed gives identical bytes twice, -n 2 writes OUT-0 / OUT-1 with
 * seeds S and S+1, JPEG output decodes, --latents from the golden file gives the reference's
 * RGB (tests/fixtures/pipeline/golden.safetensors, within 1 level: the C engine and PyTorch
 * round differently in the last float bits), and the error paths (usage, missing model, bad
 * size, bad latents file) give their status and a message. The files carry A1111's "parameters"
 * text and a "tttd" JSON chunk (a JPEG: EXIF UserComment) unless --no-metadata.
 */
#include <criterion/criterion.h>

#include <limits.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <spng.h>
#include <turbojpeg.h>

#include "engine/io/safetensors.h"
#include "cmd/cmd_generate.h"
#include "tests/common/test_util.h"

#define MODEL "tests/fixtures/tiny_model"
#define GOLDEN "tests/fixtures/pipeline/golden.safetensors"

typedef struct run_result {
    int rc;
    char *out, *err;
} run_result;

/* Runs `tttd generate ARGS...` (NULL-terminated) with out and errout captured. */
static run_result run(const char *first, ...)
{
    char *argv[48];
    int argc = 0;
    argv[argc++] = "generate";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *)) {
        cr_assert_lt(argc, 47);
        argv[argc++] = (char *)a;
    }
    va_end(ap);
    argv[argc] = NULL;
    run_result r;
    size_t no, ne;
    FILE *out = open_memstream(&r.out, &no), *err = open_memstream(&r.err, &ne);
    cr_assert(out && err);
    r.rc = cmd_generate(argc, argv, out, err);
    fclose(out), fclose(err);
    return r;
}

static void done(run_result *r)
{
    free(r->out), free(r->err);
}

static char tmpdir[64];

static void make_tmp(void)
{
    strcpy(tmpdir, "/tmp/tttd_generate_XXXXXX");
    cr_assert(mkdtemp(tmpdir));
}

static void remove_tmp(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

static const char *tmp(const char *name)
{
    static char buf[4][128];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 128, "%s/%s", tmpdir, name);
    return p;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    cr_assert(b);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* The RGB pixels of a PNG file; *w, *h its size. */
static uint8_t *png_pixels(const char *path, int *w, int *h)
{
    size_t len;
    uint8_t *buf = slurp(path, &len);
    spng_ctx *ctx = spng_ctx_new(0);
    cr_assert(ctx);
    cr_assert_eq(spng_set_png_buffer(ctx, buf, len), 0);
    struct spng_ihdr ihdr;
    cr_assert_eq(spng_get_ihdr(ctx, &ihdr), 0, "%s is not a PNG", path);
    size_t n;
    cr_assert_eq(spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &n), 0);
    uint8_t *img = malloc(n);
    cr_assert(img);
    cr_assert_eq(spng_decode_image(ctx, img, n, SPNG_FMT_RGB8, 0), 0);
    spng_ctx_free(ctx);
    free(buf);
    *w = (int)ihdr.width;
    *h = (int)ihdr.height;
    return img;
}

/* Largest per-channel difference of two RGB buffers, and how many bytes differ at all. */
static int max_diff(const uint8_t *a, const uint8_t *b, size_t n, size_t *count)
{
    int m = 0;
    *count = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        m = d > m ? d : m;
        *count += d != 0;
    }
    return m;
}

TestSuite(cmd_generate, .init = make_tmp, .fini = remove_tmp, .timeout = 60);

Test(cmd_generate, help_names_every_option)
{
    run_result r = run("--help", NULL);
    cr_assert_eq(r.rc, 0);
    const char *opts[] = {"--model",  "--prompt", "--negative-prompt", "--steps",  "--guidance",
                          "--seed",   "--width",  "--height",          "-n",       "--latents",
                          "--cpu",    "--cuda",   "--dtype",           "--quality", "-o",
                          "--no-metadata", "--help"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        cr_assert(strstr(r.out, opts[i]), "usage lacks %s", opts[i]);
    cr_assert_eq(r.err[0], '\0');
    done(&r);
}

Test(cmd_generate, bad_usage_is_status_2)
{
    static const struct {
        const char *args[10];
        const char *msg;
    } cases[] = {
        {{"--frobnicate"}, "unknown option --frobnicate"},
        {{"--model", MODEL, "-o", "a.png"}, "--prompt is required"},
        {{"--model", MODEL, "--prompt", "x"}, "-o is required"},
        {{"--model", MODEL, "--prompt", "x", "-o", "a.gif"}, "must end in .png, .jpg or .jpeg"},
        {{"--model", MODEL, "--prompt", "x", "-o", "a.png", "--quality", "80"}, "JPEG output"},
        {{"--model", MODEL, "--prompt", "x", "-o", "a.jpg", "--quality", "0"},
         "--quality 0: expected an integer in [1, 100]"},
        {{"--model", MODEL, "--prompt", "x", "-o", "a.png", "--steps", "0"},
         "--steps 0: expected an integer in [1, 10000]"},
        {{"--model", MODEL, "--prompt", "x", "-o", "a.png", "--seed", "-2"}, "--seed -2"},
        {{"--model", MODEL, "--prompt", "x", "-o", "a.png", "--guidance", "nan"}, "--guidance"},
        {{"--model", MODEL, "--prompt", "x", "-o", "a.png", "--width", "64"}, "both --width"},
        {{"--model", MODEL, "--prompt", "x", "-o", "a.png", "-n", "65"}, "-n 65"},
        {{"--model", MODEL, "--prompt", "x", "-o", "a.png", "--dtype", "bf16"}, "needs --cuda"},
        {{"--model", MODEL, "--prompt", "x", "-o", "a.png", "--seed", "1", "--latents", "l"},
         "exclude each other"},
        {{"--model", MODEL, "--prompt"}, "--prompt needs a value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *const *a = cases[i].args;
        run_result r = run(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], NULL);
        cr_assert_eq(r.rc, 2, "case %zu: status %d, stderr %s", i, r.rc, r.err);
        cr_assert(strstr(r.err, cases[i].msg), "case %zu: %s", i, r.err);
        done(&r);
    }
}

/* --seed -1 is "random", as in the API: a seed below 2^52 is drawn and printed. */
Test(cmd_generate, seed_minus_one_is_random)
{
    run_result r = run("--model", MODEL, "--prompt", "x", "-o", tmp("r.png"), "--seed", "-1",
                       "--steps", "1", NULL);
    cr_assert_eq(r.rc, 0, "status %d: %s", r.rc, r.err);
    const char *p = strstr(r.out, "seed ");
    cr_assert_not_null(p, "%s", r.out);
    unsigned long long s = strtoull(p + 5, NULL, 10);
    cr_assert_lt(s, 1ull << 52, "seed %llu", s);
    done(&r);
}

Test(cmd_generate, missing_model_is_status_1)
{
    run_result r = run("--model", "/nonexistent/tttd-model", "--prompt", "x", "-o", tmp("a.png"),
                       "--seed", "1", NULL);
    cr_assert_eq(r.rc, 1);
    cr_assert(strstr(r.err, "/nonexistent/tttd-model"), "%s", r.err);
    cr_assert_eq(access(tmp("a.png"), F_OK), -1, "a file was written");
    done(&r);
}

/* No --model: the embedded model, found through $TTTD_MODELS_DIR first (here the tiny test model
 * under that name: its default size, 64 x 64, tells it from the shipped 128 x 128 one). */
Test(cmd_generate, default_model_from_tttd_models_dir)
{
    char src[PATH_MAX], link[PATH_MAX];
    cr_assert_not_null(realpath(MODEL, src));
    snprintf(link, sizeof link, "%s/default", tmpdir);
    cr_assert_eq(symlink(src, link), 0);
    cr_assert_eq(setenv("TTTD_MODELS_DIR", tmpdir, 1), 0);
    run_result r = run("--prompt", "x", "-o", tmp("a.png"), "--seed", "1", "--steps", "1", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    done(&r);
    int w, h;
    uint8_t *img = png_pixels(tmp("a.png"), &w, &h);
    cr_assert(w == 64 && h == 64, "%d x %d: not the model of $TTTD_MODELS_DIR", w, h);
    free(img);
}

Test(cmd_generate, bad_size_is_status_2)
{
    /* The tiny model: VAE scale 8 x patch 2 = 16-pixel cells, pos_embed_max_size 16 cells. */
    run_result r = run("--model", MODEL, "--prompt", "x", "-o", tmp("a.png"), "--width", "40",
                       "--height", "48", "--seed", "1", NULL);
    cr_assert_eq(r.rc, 2, "%s", r.err);
    cr_assert(strstr(r.err, "--width 40: must be a multiple of 16"), "%s", r.err);
    done(&r);
    r = run("--model", MODEL, "--prompt", "x", "-o", tmp("a.png"), "--width", "64", "--height",
            "512", "--seed", "1", NULL);
    cr_assert_eq(r.rc, 2, "%s", r.err);
    cr_assert(strstr(r.err, "--height 512: this model goes up to 256"), "%s", r.err);
    done(&r);
}

Test(cmd_generate, png_of_a_seed_is_reproducible)
{
    run_result r = run("--model", MODEL, "--prompt", "a photo of a cat", "-o", tmp("a.png"),
                       "--seed", "7", "--steps", "2", "--width", "64", "--height", "48", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert(strstr(r.out, "seed 7"), "%s", r.out);
    cr_assert(strstr(r.out, "wrote "), "%s", r.out);
    cr_assert(strstr(r.out, "time: load"), "%s", r.out);
    cr_assert(strstr(r.err, "step 2/2"), "no progress in %s", r.err);
    done(&r);
    int w, h;
    uint8_t *img = png_pixels(tmp("a.png"), &w, &h);
    cr_assert_eq(w, 64);
    cr_assert_eq(h, 48);
    free(img);

    r = run("--model", MODEL, "--prompt", "a photo of a cat", "-o", tmp("b.png"), "--seed", "7",
            "--steps", "2", "--width", "64", "--height", "48", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    done(&r);
    size_t la, lb;
    uint8_t *a = slurp(tmp("a.png"), &la), *b = slurp(tmp("b.png"), &lb);
    cr_assert_eq(la, lb);
    cr_assert_eq(memcmp(a, b, la), 0, "same seed, different bytes");
    free(a), free(b);
}

Test(cmd_generate, n_images_use_seed_plus_k)
{
    /* The default size of the tiny model: sample_size 8 x VAE scale 8 = 64 x 64. */
    run_result r = run("--model", MODEL, "--prompt", "cute cat", "-o", tmp("m.png"), "--seed",
                       "41", "--steps", "1", "--guidance", "2.5", "-n", "2", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    done(&r);
    cr_assert_eq(access(tmp("m.png"), F_OK), -1, "-n 2 wrote the plain name");
    r = run("--model", MODEL, "--prompt", "cute cat", "-o", tmp("s.png"), "--seed", "42",
            "--steps", "1", "--guidance", "2.5", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    done(&r);
    int w0, h0, w1, h1, ws, hs;
    uint8_t *i0 = png_pixels(tmp("m-0.png"), &w0, &h0);
    uint8_t *i1 = png_pixels(tmp("m-1.png"), &w1, &h1);
    uint8_t *is = png_pixels(tmp("s.png"), &ws, &hs);
    cr_assert(w0 == 64 && h0 == 64 && w1 == 64 && h1 == 64 && ws == 64 && hs == 64);
    size_t n = 64 * 64 * 3, count;
    /* Image 1 of seed 41 is image 0 of seed 42 (up to batch-size rounding), and not image 0. */
    int d = max_diff(i1, is, n, &count);
    cr_assert_leq(d, 1, "m-1.png vs seed 42: max diff %d (%zu bytes)", d, count);
    max_diff(i0, is, n, &count);
    cr_assert_gt(count, n / 2, "images 0 and 1 look alike");
    free(i0), free(i1), free(is);
}

Test(cmd_generate, jpeg_output)
{
    run_result r = run("--model", MODEL, "--prompt", "hello world", "-o", tmp("j.JPG"), "--seed",
                       "3", "--steps", "1", "--width", "32", "--height", "48", "--quality", "75",
                       NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert(strstr(r.out, "jpeg"), "%s", r.out);
    done(&r);
    size_t len;
    uint8_t *buf = slurp(tmp("j.JPG"), &len);
    tjhandle tj = tjInitDecompress();
    int w, h, sub, cs;
    cr_assert_eq(tjDecompressHeader3(tj, buf, len, &w, &h, &sub, &cs), 0);
    cr_assert_eq(w, 32);
    cr_assert_eq(h, 48);
    cr_assert_eq(sub, TJSAMP_420);
    tjDestroy(tj);
    free(buf);
}

/* Writes image b of the golden latents_in as a [1, C, h, w] "latents" file at path. */
static void golden_latents(const eng_safetensors *st, int b, const char *path)
{
    const eng_st_tensor *t = eng_safetensors_find(st, "latents_in");
    cr_assert(t && t->ndim == 4);
    int64_t per = t->shape[1] * t->shape[2] * t->shape[3];
    float *all = malloc(sizeof(float) * (size_t)(per * t->shape[0]));
    cr_assert(all);
    cr_assert_eq(eng_st_tensor_to_f32(t, all, NULL), 0);
    eng_st_writer *w;
    eng_error err = {0};
    cr_assert_eq(eng_st_writer_init(&w, &err), 0);
    const int64_t shape[4] = {1, t->shape[1], t->shape[2], t->shape[3]};
    cr_assert_eq(eng_st_writer_add(w, "latents", ENG_DTYPE_F32, 4, shape, all + per * b, &err), 0);
    cr_assert_eq(eng_st_writer_write(w, path, &err), 0, "%s", err.msg);
    eng_st_writer_free(w);
    free(all);
}

/* Runs image b of the golden batch (its prompt, negative prompt, guidance, size, steps) with
 * the extra arguments given (--latents FILE or --seed S); compares the PNG with golden rgb[b]. */
static void golden_case(const eng_safetensors *st, int b, const char *how, const char *value)
{
    const eng_st_tensor *rgb = eng_safetensors_find(st, "rgb");
    const eng_st_tensor *g = eng_safetensors_find(st, "guidance");
    cr_assert(rgb && rgb->dtype == ENG_DTYPE_I32 && rgb->ndim == 4 && rgb->shape[3] == 3 && g);
    const int H = (int)rgb->shape[1], W = (int)rgb->shape[2];
    float guidance[2];
    cr_assert_eq(eng_st_tensor_to_f32(g, guidance, NULL), 0);
    const char *steps = eng_safetensors_metadata(st, "steps");
    char key[32], gs[32], ws[16], hs[16], png[32];
    snprintf(key, sizeof key, "prompt%d", b);
    const char *prompt = eng_safetensors_metadata(st, key);
    snprintf(key, sizeof key, "negative_prompt%d", b);
    const char *neg = eng_safetensors_metadata(st, key);
    cr_assert(prompt && neg && steps);
    snprintf(gs, sizeof gs, "%.9g", guidance[b]);
    snprintf(ws, sizeof ws, "%d", W);
    snprintf(hs, sizeof hs, "%d", H);
    snprintf(png, sizeof png, "g%d.png", b);
    run_result r = run("--model", MODEL, "--prompt", prompt, "--negative-prompt", neg,
                       "--guidance", gs, "--steps", steps, "--width", ws, "--height", hs, how,
                       value, "-o", tmp(png), NULL);
    cr_assert_eq(r.rc, 0, "image %d: %s", b, r.err);
    done(&r);
    int w, h;
    uint8_t *img = png_pixels(tmp(png), &w, &h);
    cr_assert(w == W && h == H);
    size_t n = (size_t)W * H * 3, count;
    const int32_t *want32 = rgb->data;
    uint8_t *want = malloc(n);
    cr_assert(want);
    for (size_t i = 0; i < n; i++) {
        int32_t v;
        memcpy(&v, want32 + (size_t)b * n + i, sizeof v); /* may be unaligned */
        want[i] = (uint8_t)v;
    }
    int d = max_diff(img, want, n, &count);
    cr_assert_leq(d, 1, "image %d (%s): max diff %d against the reference", b, how, d);
    cr_assert_leq(count, n / 100, "image %d (%s): %zu of %zu bytes differ", b, how, count, n);
    free(want), free(img);
}

Test(cmd_generate, latents_file_gives_the_golden_rgb)
{
    eng_safetensors *st;
    eng_error err = {0};
    cr_assert_eq(eng_safetensors_open(&st, GOLDEN, &err), 0, "%s", err.msg);
    for (int b = 0; b < 2; b++) {
        char lat[32];
        snprintf(lat, sizeof lat, "lat%d.safetensors", b);
        golden_latents(st, b, tmp(lat));
        golden_case(st, b, "--latents", tmp(lat));
    }
    eng_safetensors_close(st);
}

Test(cmd_generate, seed_gives_the_golden_rgb)
{
    /* Image 1 of the golden batch was made from seed 8 with the project RNG. */
    eng_safetensors *st;
    eng_error err = {0};
    cr_assert_eq(eng_safetensors_open(&st, GOLDEN, &err), 0, "%s", err.msg);
    golden_case(st, 1, "--seed", "8");
    eng_safetensors_close(st);
}

Test(cmd_generate, bad_latents_files_are_status_1)
{
    /* Missing file. */
    run_result r = run("--model", MODEL, "--prompt", "x", "-o", tmp("a.png"), "--steps", "1",
                       "--width", "64", "--height", "48", "--latents", tmp("none.safetensors"),
                       NULL);
    cr_assert_eq(r.rc, 1);
    cr_assert(strstr(r.err, "none.safetensors"), "%s", r.err);
    done(&r);

    /* Wrong shape: 4 x 4 latents for a 64 x 48 image (6 x 8). */
    eng_st_writer *w;
    eng_error err = {0};
    float zeros[16 * 4 * 4] = {0};
    cr_assert_eq(eng_st_writer_init(&w, &err), 0);
    cr_assert_eq(eng_st_writer_add(w, "latents", ENG_DTYPE_F32, 4, (int64_t[]){1, 16, 4, 4},
                                   zeros, &err), 0);
    cr_assert_eq(eng_st_writer_write(w, tmp("small.safetensors"), &err), 0);
    eng_st_writer_free(w);
    r = run("--model", MODEL, "--prompt", "x", "-o", tmp("a.png"), "--steps", "1", "--width",
            "64", "--height", "48", "--latents", tmp("small.safetensors"), NULL);
    cr_assert_eq(r.rc, 1);
    cr_assert(strstr(r.err, "expected [*, 16, 6, 8]"), "%s", r.err);
    done(&r);

    /* -n that disagrees with the file's count. */
    r = run("--model", MODEL, "--prompt", "x", "-o", tmp("a.png"), "--steps", "1", "--width",
            "32", "--height", "32", "-n", "2", "--latents", tmp("small.safetensors"), NULL);
    cr_assert_eq(r.rc, 1);
    cr_assert(strstr(r.err, "expected [2, 16, 4, 4]"), "%s", r.err);
    done(&r);

    /* No tensor called "latents". */
    cr_assert_eq(eng_st_writer_init(&w, &err), 0);
    cr_assert_eq(eng_st_writer_add(w, "noise", ENG_DTYPE_F32, 4, (int64_t[]){1, 16, 4, 4}, zeros,
                                   &err), 0);
    cr_assert_eq(eng_st_writer_write(w, tmp("other.safetensors"), &err), 0);
    eng_st_writer_free(w);
    r = run("--model", MODEL, "--prompt", "x", "-o", tmp("a.png"), "--steps", "1", "--width",
            "32", "--height", "32", "--latents", tmp("other.safetensors"), NULL);
    cr_assert_eq(r.rc, 1);
    cr_assert(strstr(r.err, "no tensor \"latents\""), "%s", r.err);
    done(&r);
    cr_assert_eq(access(tmp("a.png"), F_OK), -1, "a file was written");
}

/* The PNG text chunk named keyword of a file (malloc'd), or NULL. */
static char *png_text(const char *path, const char *keyword)
{
    size_t len;
    uint8_t *buf = slurp(path, &len);
    char *found = tu_png_text(buf, len, keyword, NULL);
    free(buf);
    return found;
}

Test(cmd_generate, files_carry_metadata_unless_no_metadata)
{
    run_result r = run("--model", MODEL "/", "--prompt", "a lighthouse", "--negative-prompt",
                       "fog", "-o", tmp("meta.png"), "--seed", "5", "--steps", "1", "--guidance",
                       "2.5", "-n", "2", "--width", "32", "--height", "48", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    done(&r);
    char *p = png_text(tmp("meta-1.png"), "parameters");
    cr_assert_str_eq(p, "a lighthouse\nNegative prompt: fog\nSteps: 1, Sampler: Euler, CFG "
                        "scale: 2.5, Seed: 6, Size: 32x48, Model: tiny_model");
    free(p);
    char *j = png_text(tmp("meta-0.png"), "tttd");
    cr_assert(j && strstr(j, "\"seed\":5") && strstr(j, "\"model\":\"tiny_model\""), "%s", j);
    free(j);

    r = run("--model", MODEL, "--prompt", "a lighthouse", "-o", tmp("bare.png"), "--seed", "5",
            "--steps", "1", "--width", "32", "--height", "48", "--no-metadata", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    done(&r);
    cr_assert_null(png_text(tmp("bare.png"), "parameters"));
    cr_assert_null(png_text(tmp("bare.png"), "tttd"));
}
