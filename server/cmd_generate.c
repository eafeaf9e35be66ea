/*
 * cmd_generate.c - `tttd generate`: one prompt -> -n images in one batch -> PNG / JPEG files.
 *
 * The defaults are diffusers' StableDiffusion3Pipeline's: 28 steps, guidance 7.0, and a size of
 * transformer sample_size x VAE scale pixels (1024 x 1024 for SD3.5). Image k of a run uses
 * seed + k, as a daemon request of n images does, so any one image can be remade alone with
 * --seed S+k. The seed is drawn from /dev/urandom when not given and always printed.
 */
#include "server/cmd_generate.h"
#include "server/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/backend/backend.h"
#include "engine/pipeline.h"
#include "engine/sampler.h"
#include "engine/backend/tensor.h"
#include "server/image_encode.h"
#include "server/models.h"

#define MAX_IMAGES 64

typedef struct gen_opts {
    const char *model, *prompt, *negative, *output, *latents;
    int steps, width, height, n, quality;
    int n_given, quality_given, seed_given, cuda;
    double guidance;
    uint64_t seed;
    eng_dtype dtype;
    srv_image_format format;
} gen_opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tttd generate [--model DIR] --prompt TEXT -o OUT.png|OUT.jpg\n"
            "                     [--negative-prompt TEXT] [--steps N] [--guidance G]\n"
            "                     [--seed S] [--width W --height H] [-n N] [--latents FILE]\n"
            "                     [--cpu | --cuda] [--dtype f32|bf16] [--quality Q]\n"
            "\n"
            "Generates images from a text prompt with a diffusers SD3 / SD3.5 pipeline folder\n"
            "and writes them as PNG or JPEG (chosen by OUT's extension). The -n images are\n"
            "denoised together in one batch; image k starts from the noise of seed S + k.\n"
            "Progress goes to stderr; the files written and the time of each phase (model\n"
            "load, text encoding, denoising, VAE decoding, image encoding) to stdout.\n"
            "\n"
            "  --model DIR            the pipeline folder (model_index.json, transformer/, ...);\n"
            "                         default: the embedded model, models/default (see\n"
            "                         `tttd serve --help`: $TTTD_MODELS_DIR, the working\n"
            "                         directory, then beside the binary)\n"
            "  --prompt TEXT          what to draw (UTF-8)\n"
            "  --negative-prompt TEXT what to steer away from (default: empty, encoded as\n"
            "                         diffusers encodes it); used only when G > 1\n"
            "  -o, --output OUT       the file to write: .png, .jpg or .jpeg; with -n > 1 the\n"
            "                         files are OUT-0.EXT, OUT-1.EXT, ... (OUT minus extension)\n"
            "  --steps N              denoising steps, 1 to %d (default 28)\n"
            "  --guidance G           classifier-free guidance scale, 0 to 100 (default 7.0, as\n"
            "                         diffusers); G <= 1 skips the unconditional pass\n"
            "  --seed S               the first image's seed, 0 to 2^64-1 (default: random from\n"
            "                         /dev/urandom, printed)\n"
            "  --width W, --height H  image size in pixels, multiples of 8 x the patch size (16\n"
            "                         for SD3); default: the transformer's sample_size x 8\n"
            "                         (1024 x 1024 for SD3.5)\n"
            "  -n N                   images, 1 to %d (default 1, or the latents file's count)\n"
            "  --latents FILE         initial noise from a safetensors file holding an F32\n"
            "                         tensor \"latents\" [N, C, H/8, W/8] instead of the seeds\n"
            "  --cpu                  the CPU backend (the default)\n"
            "  --cuda                 the CUDA backend, device 0 (builds with nvcc only)\n"
            "  --dtype D              f32 (default) or bf16 (needs --cuda)\n"
            "  --quality Q            JPEG quality, 1 to 100 (default 90; JPEG only)\n"
            "  --help                 print this help\n",
            ENG_SAMPLER_MAX_STEPS, MAX_IMAGES);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- progress on errout: a redrawn bar on a terminal, a line per ~10 % otherwise ---- */

typedef struct progress {
    FILE *f;
    int tty, last_tenth;
    double t0;
} progress;

static int progress_step(void *user, int step, int steps)
{
    progress *pr = user;
    double s = (now_ms() - pr->t0) / 1e3;
    if (pr->tty) {
        enum { WIDTH = 30 };
        char bar[WIDTH + 1];
        int fill = steps > 0 ? (int)((long long)WIDTH * step / steps) : WIDTH;
        for (int i = 0; i < WIDTH; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[WIDTH] = '\0';
        fprintf(pr->f, "\rstep %d/%d [%s] %.1f s%s", step, steps, bar, s,
                step >= steps ? "\n" : "");
    } else {
        int tenth = steps > 0 ? (int)(10LL * step / steps) : 10;
        if (tenth <= pr->last_tenth && step < steps)
            return 0;
        pr->last_tenth = tenth;
        fprintf(pr->f, "step %d/%d (%.1f s)\n", step, steps, s);
    }
    fflush(pr->f);
    return 0;
}

/* ---- files ---- */

/* OUT for one image; OUT minus its extension + "-k" + the extension for several. */
static int output_name(const char *out, int k, int n, char *buf, size_t len)
{
    int w;
    if (n == 1) {
        w = snprintf(buf, len, "%s", out);
    } else {
        const char *dot = strrchr(out, '.');
        const char *slash = strrchr(out, '/');
        if (!dot || (slash && dot < slash))
            dot = out + strlen(out);
        w = snprintf(buf, len, "%.*s-%d%s", (int)(dot - out), out, k, dot);
    }
    return w < 0 || (size_t)w >= len ? -1 : 0;
}

static int write_file(const char *path, const uint8_t *data, size_t len, char *msg, size_t mlen)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        snprintf(msg, mlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    size_t wrote = fwrite(data, 1, len, f);
    int bad = wrote != len || fflush(f) != 0;
    int e = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (bad) {
        snprintf(msg, mlen, "%s: write failed: %s", path, strerror(e));
        remove(path);
        return -1;
    }
    return 0;
}

static uint64_t random_seed(void)
{
    uint64_t s = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = read(fd, &s, sizeof s);
        close(fd);
        if (r == (ssize_t)sizeof s)
            return s;
    }
    /* No /dev/urandom (a bare chroot): the clock and the pid are still a fine one-off seed. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^
           ((uint64_t)getpid() << 32);
}

/* ---- the run ---- */

/* Checks the size against the loaded model; returns 2 (usage) with a message, or 0. */
static int check_size(const gen_opts *o, const eng_pipeline *p, FILE *errout)
{
    const eng_transformer_config *tc = eng_pipeline_transformer_config(p);
    int cell = eng_pipeline_vae_scale(p) * tc->patch_size;
    int most = cell * tc->pos_embed_max_size;
    const char *name[2] = {"--width", "--height"};
    int v[2] = {o->width, o->height};
    for (int i = 0; i < 2; i++) {
        if (v[i] % cell) {
            fprintf(errout, "tttd generate: %s %d: must be a multiple of %d for this model "
                            "(VAE scale %d x patch size %d)\n",
                    name[i], v[i], cell, eng_pipeline_vae_scale(p), tc->patch_size);
            return 2;
        }
        if (v[i] > most) {
            fprintf(errout, "tttd generate: %s %d: this model goes up to %d (pos_embed_max_size "
                            "%d patches of %d pixels)\n",
                    name[i], v[i], most, tc->pos_embed_max_size, cell);
            return 2;
        }
    }
    return 0;
}

/* Encodes and writes image k; returns 0 or 1 with a message on errout. */
static int save_image(const gen_opts *o, const uint8_t *rgb, int k, FILE *out, FILE *errout)
{
    char path[PATH_MAX], msg[PATH_MAX + 256];
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (output_name(o->output, k, o->n, path, sizeof path)) {
        fprintf(errout, "tttd generate: output name too long: %s\n", o->output);
        return 1;
    }
    if (srv_image_encode(rgb, o->width, o->height, o->format, o->quality, &bytes, &len, msg,
                         sizeof msg)) {
        fprintf(errout, "tttd generate: %s: %s\n", path, msg);
        return 1;
    }
    int bad = write_file(path, bytes, len, msg, sizeof msg);
    free(bytes);
    if (bad) {
        fprintf(errout, "tttd generate: %s\n", msg);
        return 1;
    }
    if (o->latents)
        fprintf(out, "wrote %s (%dx%d %s, latents %s[%d])\n", path, o->width, o->height,
                srv_image_format_name(o->format), o->latents, k);
    else
        fprintf(out, "wrote %s (%dx%d %s, seed %" PRIu64 ")\n", path, o->width, o->height,
                srv_image_format_name(o->format), o->seed + (uint64_t)k);
    return 0;
}

static int generate_run(gen_opts *o, FILE *out, FILE *errout)
{
    eng_error err = {0};
    eng_pipeline *p = NULL;
    eng_tensor lat = {0};
    eng_gen_item *items = NULL;
    uint8_t *rgb = NULL;
    int status = 1;
    double t_start = now_ms();

    eng_backend *be = o->cuda ? eng_backend_cuda_create(0, &err) : eng_backend_cpu_create(&err);
    if (!be)
        goto fail;
    if (eng_pipeline_load(&p, o->model, be, o->dtype, &err))
        goto fail;
    double load_ms = now_ms() - t_start;

    const eng_transformer_config *tc = eng_pipeline_transformer_config(p);
    int scale = eng_pipeline_vae_scale(p);
    if (o->width <= 0)
        o->width = tc->sample_size * scale;
    if (o->height <= 0)
        o->height = tc->sample_size * scale;
    if ((status = check_size(o, p, errout)))
        goto done;
    status = 1;

    if (o->latents) {
        const int64_t expect[4] = {o->n_given ? o->n : -1, eng_pipeline_latent_channels(p),
                                   o->height / scale, o->width / scale};
        if (eng_latents_load(o->latents, NULL, expect, &lat, &err))
            goto fail;
        if (lat.shape[0] < 1 || lat.shape[0] > MAX_IMAGES) {
            fprintf(errout, "tttd generate: %s: %lld images, expected 1 to %d\n", o->latents,
                    (long long)lat.shape[0], MAX_IMAGES);
            goto done;
        }
        o->n = (int)lat.shape[0];
    } else {
        fprintf(out, "seed %" PRIu64 "%s\n", o->seed, o->n > 1 ? " (image k: seed + k)" : "");
    }

    items = calloc((size_t)o->n, sizeof *items);
    rgb = malloc((size_t)o->n * (size_t)o->width * (size_t)o->height * 3);
    if (!items || !rgb) {
        fprintf(errout, "tttd generate: out of memory for %d images of %dx%d\n", o->n, o->width,
                o->height);
        goto done;
    }
    int64_t per = lat.data ? lat.shape[1] * lat.shape[2] * lat.shape[3] : 0;
    for (int k = 0; k < o->n; k++) {
        items[k].prompt = o->prompt;
        items[k].negative_prompt = o->negative;
        items[k].guidance = (float)o->guidance;
        items[k].seed = o->seed + (uint64_t)k;
        items[k].latents = lat.data ? (const float *)lat.data + per * k : NULL;
    }
    progress pr = {.f = errout, .tty = isatty(fileno(errout)) == 1, .last_tenth = 0,
                   .t0 = now_ms()};
    eng_gen_request req = {.items = items, .n = o->n, .width = o->width, .height = o->height,
                           .steps = o->steps, .progress = progress_step, .progress_user = &pr};
    eng_gen_timings tm = {0};
    if (eng_pipeline_generate(p, &req, rgb, &tm, &err))
        goto fail;

    double t_enc = now_ms();
    size_t img_bytes = (size_t)o->width * (size_t)o->height * 3;
    for (int k = 0; k < o->n; k++)
        if (save_image(o, rgb + img_bytes * (size_t)k, k, out, errout))
            goto done;
    double enc_ms = now_ms() - t_enc;
    fprintf(out,
            "time: load %.1f ms, text encode %.1f ms, denoise %.1f ms (%d steps, %.1f ms/step), "
            "vae %.1f ms, image encode %.1f ms, total %.1f ms\n",
            load_ms, tm.text_encode_ms, tm.denoise_ms, o->steps, tm.denoise_ms / o->steps,
            tm.vae_ms, enc_ms, now_ms() - t_start);
    status = 0;
    goto done;
fail:
    fprintf(errout, "tttd generate: %s\n", err.msg[0] ? err.msg : eng_strerror(err.code));
    status = 1;
done:
    free(rgb);
    free(items);
    eng_tensor_free(&lat);
    eng_pipeline_free(p);
    if (be)
        eng_backend_destroy(be);
    return status;
}

/* ---- arguments ---- */

/* Parses argv into o; returns -1 to go on, or the exit status to return now. */
static int parse_args(int argc, char **argv, gen_opts *o, FILE *out, FILE *errout)
{
    static const char *const with_value[] = {
        "--model",  "--prompt", "--negative-prompt", "--steps", "--guidance", "--seed",
        "--width",  "--height", "-n",                "--latents", "-o",       "--output",
        "--dtype",  "--quality"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(out);
            return 0;
        }
        if (strcmp(a, "--cpu") == 0 || strcmp(a, "--cuda") == 0) {
            o->cuda = strcmp(a, "--cuda") == 0;
            continue;
        }
        size_t k = 0, nv = sizeof with_value / sizeof with_value[0];
        while (k < nv && strcmp(a, with_value[k]) != 0)
            k++;
        if (k == nv) {
            fprintf(errout, "tttd generate: unknown option %s\n", a);
            usage(errout);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(errout, "tttd generate: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        int bad = 0;
        const char *want = NULL;
        if (strcmp(a, "--model") == 0) {
            o->model = v;
        } else if (strcmp(a, "--prompt") == 0) {
            o->prompt = v;
        } else if (strcmp(a, "--negative-prompt") == 0) {
            o->negative = v;
        } else if (strcmp(a, "--latents") == 0) {
            o->latents = v;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            o->output = v;
        } else if (strcmp(a, "--steps") == 0) {
            bad = srv_cli_parse_int(v, 1, ENG_SAMPLER_MAX_STEPS, &o->steps);
            want = "an integer in [1, 10000]";
        } else if (strcmp(a, "--width") == 0 || strcmp(a, "--height") == 0) {
            bad = srv_cli_parse_int(v, 8, 16384, a[2] == 'w' ? &o->width : &o->height);
            want = "an integer in [8, 16384]";
        } else if (strcmp(a, "-n") == 0) {
            bad = srv_cli_parse_int(v, 1, MAX_IMAGES, &o->n);
            o->n_given = 1;
            want = "an integer in [1, 64]";
        } else if (strcmp(a, "--quality") == 0) {
            bad = srv_cli_parse_int(v, 1, 100, &o->quality);
            o->quality_given = 1;
            want = "an integer in [1, 100]";
        } else if (strcmp(a, "--seed") == 0) {
            bad = srv_cli_parse_u64(v, &o->seed);
            o->seed_given = 1;
            want = "an integer in [0, 18446744073709551615]";
        } else if (strcmp(a, "--guidance") == 0) {
            char *end;
            o->guidance = strtod(v, &end);
            bad = end == v || *end || !(o->guidance >= 0.0 && o->guidance <= 100.0);
            want = "a number in [0, 100]";
        } else if (strcmp(a, "--dtype") == 0) {
            bad = strcmp(v, "f32") != 0 && strcmp(v, "bf16") != 0;
            o->dtype = strcmp(v, "bf16") == 0 ? ENG_DTYPE_BF16 : ENG_DTYPE_F32;
            want = "f32 or bf16";
        }
        if (bad) {
            fprintf(errout, "tttd generate: %s %s: expected %s\n", a, v, want);
            return 2;
        }
    }
    if (!o->model)
        o->model = srv_models_default_dir();
    const char *missing = !o->prompt ? "--prompt"
                          : !o->output ? "-o"
                                       : NULL;
    if (missing) {
        fprintf(errout, "tttd generate: %s is required\n", missing);
        usage(errout);
        return 2;
    }
    if (srv_image_format_from_path(o->output, &o->format)) {
        fprintf(errout, "tttd generate: -o %s: the name must end in .png, .jpg or .jpeg\n",
                o->output);
        return 2;
    }
    if (o->quality_given && o->format != SRV_IMAGE_JPEG) {
        fprintf(errout, "tttd generate: --quality applies to JPEG output only\n");
        return 2;
    }
    if ((o->width > 0) != (o->height > 0)) {
        fprintf(errout, "tttd generate: give both --width and --height, or neither\n");
        return 2;
    }
    if (o->latents && o->seed_given) {
        fprintf(errout, "tttd generate: --seed and --latents exclude each other (the latents "
                        "are the noise the seed would make)\n");
        return 2;
    }
    if (!o->cuda && o->dtype != ENG_DTYPE_F32) {
        fprintf(errout, "tttd generate: --dtype bf16 needs --cuda (the CPU backend computes in "
                        "F32)\n");
        return 2;
    }
    return -1;
}

int srv_cmd_generate(int argc, char **argv, FILE *out, FILE *errout)
{
    gen_opts o = {.negative = "",
                  .steps = 28,
                  .guidance = 7.0,
                  .n = 1,
                  .quality = 90,
                  .dtype = ENG_DTYPE_F32,
                  .format = SRV_IMAGE_PNG};
    int rc = parse_args(argc, argv, &o, out, errout);
    if (rc >= 0)
        return rc;
    if (!o.seed_given && !o.latents)
        o.seed = random_seed();
    return generate_run(&o, out, errout);
}
