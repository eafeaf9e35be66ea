/*
 * cmd_generate.c - `tttd generate`: one prompt -> -n images in one batch -> PNG / JPEG files.
 *
 * The options are one table (cmd/args.h). Their defaults are the daemon's: the steps and
 * guidance of diffusers' StableDiffusion3Pipeline (engine/pipeline.h), the API's JPEG quality,
 * and the model's size (transformer sample_size x VAE scale pixels, 1024 x 1024 for SD3.5).
 * Image k of a run uses seed + k, as a daemon request of n images does, so any one image can be
 * remade alone with --seed S+k. The seed is drawn from /dev/urandom when not given and always
 * printed.
 */
#include "cmd/cmd_generate.h"
#include "cmd/args.h"
#include "cmd/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/backend/backend.h"
#include "engine/pipeline.h"
#include "engine/sampler.h"
#include "engine/backend/tensor.h"
#include "api/metadata.h"
#include "api/request.h"
#include "server/image_encode.h"
#include "server/models.h"

#define MAX_IMAGES 64

typedef struct gen_opts {
    const char *model, *prompt, *negative, *output, *latents;
    int steps, width, height, n, quality;
    int n_given, quality_given, seed_given, cuda, dtype_choice; /* dtype_choice: 0 f32, 1 bf16 */
    int no_metadata;
    double guidance;
    uint64_t seed;
    eng_dtype dtype;
    srv_image_format format;
} gen_opts;

#define XSTR(x) #x
#define STR(x) XSTR(x)
#define F(field) offsetof(gen_opts, field)

/* The options. Steps, guidance and quality default to what the daemon's API gives a request
 * that leaves them out; the size, with no default here, is the model's. */
static const cmd_arg gen_rows[] = {
    {.name = "model", .type = CMD_ARG_STR, .metavar = "DIR", .off = F(model),
     .help = "the pipeline folder (model_index.json, transformer/, ...); default: the embedded "
             "model, models/default (see `tttd serve --help`: $TTTD_MODELS_DIR, the working "
             "directory, then beside the binary)"},
    {.name = "prompt", .type = CMD_ARG_STR, .metavar = "TEXT", .off = F(prompt),
     .flags = CMD_ARG_REQUIRED, .help = "what to draw (UTF-8)"},
    {.name = "negative-prompt", .type = CMD_ARG_STR, .def = "", .metavar = "TEXT",
     .off = F(negative),
     .help = "what to steer away from (default: empty, encoded as diffusers encodes it); used "
             "only when G > 1"},
    {.name = "output", .short_name = 'o', .type = CMD_ARG_STR, .metavar = "OUT", .off = F(output),
     .flags = CMD_ARG_REQUIRED,
     .help = "the file to write: .png, .jpg or .jpeg; with -n > 1 the files are OUT-0.EXT, "
             "OUT-1.EXT, ... (OUT minus extension)"},
    {.name = "steps", .type = CMD_ARG_INT, .def = STR(ENG_PIPELINE_DEFAULT_STEPS), .lo = 1,
     .hi = ENG_SAMPLER_MAX_STEPS, .metavar = "N", .off = F(steps), .help = "denoising steps"},
    {.name = "guidance", .type = CMD_ARG_DOUBLE, .def = STR(ENG_PIPELINE_DEFAULT_GUIDANCE),
     .lo = 0, .hi = 100, .metavar = "G", .off = F(guidance),
     .help = "classifier-free guidance scale (the default is diffusers'); G <= 1 skips the "
             "unconditional pass"},
    {.name = "seed", .type = CMD_ARG_U64, .lo = -1, .metavar = "S", .off = F(seed),
     .seen = CMD_ARG_SEEN(gen_opts, seed_given),
     .help = "the first image's seed; default (or -1): random from /dev/urandom (below 2^52), "
             "printed"},
    {.name = "width", .type = CMD_ARG_INT, .lo = 8, .hi = 16384, .metavar = "W", .off = F(width),
     .help = "image width in pixels, a multiple of 8 x the patch size (16 for SD3); give both "
             "--width and --height or neither; default: the transformer's sample_size x 8 "
             "(1024 x 1024 for SD3.5)"},
    {.name = "height", .type = CMD_ARG_INT, .lo = 8, .hi = 16384, .metavar = "H",
     .off = F(height), .help = "image height in pixels, as --width"},
    {.short_name = 'n', .type = CMD_ARG_INT, .def = "1", .lo = 1, .hi = MAX_IMAGES,
     .metavar = "N", .off = F(n), .seen = CMD_ARG_SEEN(gen_opts, n_given),
     .help = "images, denoised together in one batch (with --latents: the file's count unless "
             "given)"},
    {.name = "latents", .type = CMD_ARG_STR, .metavar = "FILE", .off = F(latents),
     .help = "initial noise from a safetensors file holding an F32 tensor \"latents\" [N, C, "
             "H/8, W/8] instead of the seeds"},
    {.name = "cpu", .type = CMD_ARG_FLAG, .hi = 0, .off = F(cuda),
     .help = "the CPU backend (the default)"},
    {.name = "cuda", .type = CMD_ARG_FLAG, .hi = 1, .off = F(cuda),
     .help = "the CUDA backend, device 0 (builds with nvcc only)"},
    {.name = "dtype", .type = CMD_ARG_ENUM, .def = "f32", .choices = "f32|bf16", .metavar = "D",
     .off = F(dtype_choice), .help = "weights and activations; bf16 needs --cuda"},
    {.name = "quality", .type = CMD_ARG_INT, .def = STR(API_DEFAULT_QUALITY), .lo = 1, .hi = 100,
     .metavar = "Q", .off = F(quality), .seen = CMD_ARG_SEEN(gen_opts, quality_given),
     .help = "JPEG quality (JPEG output only)"},
    {.name = "no-metadata", .type = CMD_ARG_FLAG, .hi = 1, .off = F(no_metadata),
     .help = "write no generation parameters into the files (by default a PNG carries A1111's "
             "\"parameters\" text chunk and a \"tttd\" JSON chunk, a JPEG the parameters as "
             "EXIF UserComment)"},
};

static const cmd_args_spec gen_spec = {
    .prog = "tttd generate",
    .about = "Generates images from a text prompt with a diffusers SD3 / SD3.5 pipeline folder "
             "and writes them as PNG or JPEG (chosen by OUT's extension). The -n images are "
             "denoised together in one batch; image k starts from the noise of seed S + k. "
             "Progress goes to stderr; the files written and the time of each phase (model "
             "load, text encoding, denoising, VAE decoding, image encoding) to stdout.",
    .rows = gen_rows,
    .n_rows = (int)(sizeof gen_rows / sizeof gen_rows[0]),
};

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
            return s % API_SEED_RANDOM_LIMIT;
    }
    /* No /dev/urandom (a bare chroot): the clock and the pid are still a fine one-off seed. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^
            ((uint64_t)getpid() << 32)) % API_SEED_RANDOM_LIMIT;
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

/* The model's name in the metadata: its folder's last component. */
static void model_name(const char *dir, char *name, size_t len)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    size_t start = n;
    while (start > 0 && dir[start - 1] != '/')
        start--;
    snprintf(name, len, "%.*s", (int)(n - start), dir + start);
}

/* Encodes and writes image k; returns 0 or 1 with a message on errout. */
static int save_image(const gen_opts *o, const uint8_t *rgb, int k, FILE *out, FILE *errout)
{
    char path[PATH_MAX], msg[PATH_MAX + 256], model[256];
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (output_name(o->output, k, o->n, path, sizeof path)) {
        fprintf(errout, "tttd generate: output name too long: %s\n", o->output);
        return 1;
    }
    model_name(o->model, model, sizeof model);
    api_image_meta im = {.prompt = o->prompt, .negative_prompt = o->negative,
                         .seed = o->seed + (uint64_t)k, .steps = o->steps,
                         .guidance = o->guidance, .width = o->width, .height = o->height,
                         .model = model};
    char *info = o->no_metadata ? NULL : api_meta_infotext(&im);
    char *json = o->no_metadata ? NULL : api_meta_json(&im);
    srv_image_meta meta = {.parameters = info, .json = json};
    int e = srv_image_encode_meta(rgb, o->width, o->height, o->format, o->quality, &meta, &bytes,
                                  &len, msg, sizeof msg);
    free(info);
    free(json);
    if (e) {
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
        o->width = eng_config_default_side(tc, scale);
    if (o->height <= 0)
        o->height = eng_config_default_side(tc, scale);
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
    status = cmd_engine_fail(errout, "generate", NULL, &err);
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

/* Checks across options, once argv is parsed; -1 to go on, or the exit status (2). */
static int check_args(gen_opts *o, FILE *errout)
{
    if (!o->model)
        o->model = srv_models_default_dir();
    o->dtype = o->dtype_choice ? ENG_DTYPE_BF16 : ENG_DTYPE_F32;
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

int cmd_generate(int argc, char **argv, FILE *out, FILE *errout)
{
    gen_opts o = {.format = SRV_IMAGE_PNG};
    int rc = cmd_args_parse(&gen_spec, &o, argc, argv, out, errout);
    if (rc < 0)
        rc = check_args(&o, errout);
    if (rc >= 0)
        return rc;
    if (!o.seed_given && !o.latents)
        o.seed = random_seed();
    return generate_run(&o, out, errout);
}
