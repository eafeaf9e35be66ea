/*
 * cmd_bench.c - `tttd bench`: times the MMDiT transformer on the CPU or the CUDA backend.
 *
 * Without --model it writes a random-weight SD3 transformer of a preset shape (a small one, or
 * SD3.5-Medium's) into a
 * temporary folder (diffusers layout, every tensor SD3Transformer2DModel has, plus the TTT
 * tensors of the chosen map), loads it like any model and removes the folder. Then it times one
 * transformer forward (or, with --steps, a whole denoising loop) R times after one warm-up and
 * prints the median and the minimum. With --profile, one more run follows with the backend's op
 * profiler on (engine/backend/profile.h), and a table of the time per op kind.
 */
#include "cmd/cmd_bench.h"
#include "cmd/args.h"
#include "cmd/cli.h"

#include <errno.h>
#include <math.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/backend/backend.h"
#include "engine/backend/profile.h"
#include "engine/io/config.h"
#include "engine/models/mmdit.h"
#include "engine/pipeline.h"
#include "engine/core/rng.h"
#include "engine/io/safetensors.h"
#include "engine/prompt.h"
#include "engine/sampler.h"

/* The random model's shape: a preset of --preset. */
typedef struct rnd_shape {
    const char *name;
    int layers, heads, head_dim, channels, joint_dim, pooled_dim, pos_max;
    int dual_layers; /* blocks 0 .. dual_layers-1 have attn2, as SD3.5-Medium's first half */
} rnd_shape;

static const rnd_shape rnd_shapes[] = {
    /* Like the tiny test fixtures, a bit larger, SD3.5-like in its parts. */
    {"tiny", 4, 4, 32, 16, 64, 64, 64, 2},
    /* SD3.5-Medium: 24 blocks, 24 heads x 64, dual attention in blocks 0-12. */
    {"sd35m", 24, 24, 64, 16, 4096, 2048, 384, 13},
};
_Static_assert(sizeof rnd_shapes / sizeof rnd_shapes[0] == 2,
               "--preset's choices (\"tiny|sd35m\") name every shape, in order");

typedef struct bench_opts {
    const char *model;      /* NULL: the random model */
    const char *save_model; /* the random model's folder, kept (NULL: a temporary one) */
    int ttt;                /* the random model's TTT map: an index of TTT_MAPS */
    int preset;             /* the random model's shape: an index of rnd_shapes */
    const rnd_shape *shape; /* rnd_shapes[preset] */
    int cuda;               /* 1: the CUDA backend */
    int dtype_choice;       /* 0 f32, 1 bf16 */
    eng_dtype dtype;        /* the model's dtype */
    int width, height, batch, tokens, steps, repeat;
    double guidance;
    int profile; /* 1: one more run with the op profiler on, and its table */
    int graphs;  /* 0 off, 1 on: forwards recorded and replayed as graphs where the backend can */
} bench_opts;

/* The names a config's "ttt": {"preset": ...} takes; --preset's choices are rnd_shapes' names. */
#define TTT_MAPS "none|all|sd35-t5"

/* Text tokens with --model or --preset sd35m: SD3's prompt encoding (engine/prompt.h). */
#define SD3_TOKENS (ENG_PROMPT_CLIP_LEN + ENG_PROMPT_T5_LEN)

#define XSTR(x) #x
#define STR(x) XSTR(x)
#define F(field) offsetof(bench_opts, field)

static const cmd_arg bench_rows[] = {
    {.name = "cpu", .type = CMD_ARG_FLAG, .hi = 0, .off = F(cuda),
     .help = "the CPU backend (the default)"},
    {.name = "cuda", .type = CMD_ARG_FLAG, .hi = 1, .off = F(cuda),
     .help = "the CUDA backend, device 0 (builds with nvcc only)"},
    {.name = "dtype", .type = CMD_ARG_ENUM, .def = "f32", .choices = "f32|bf16", .metavar = "D",
     .off = F(dtype_choice), .help = "the model's dtype; the CPU has only f32"},
    {.name = "model", .type = CMD_ARG_STR, .metavar = "PATH", .off = F(model),
     .help = "a transformer folder (config.json + *.safetensors), a pipeline folder (its "
             "transformer/), or an SAI single-file .safetensors; default: a random-weight model "
             "of the --preset shape"},
    {.name = "save-model", .type = CMD_ARG_STR, .metavar = "DIR", .off = F(save_model),
     .help = "write the random model into DIR (made if missing) and keep it, so that later runs "
             "load it with --model DIR instead of generating it again (minutes at sd35m size)"},
    {.name = "preset", .type = CMD_ARG_ENUM, .def = "tiny", .choices = "tiny|sd35m",
     .metavar = "P", .off = F(preset),
     .help = "the random model's shape: tiny (4 blocks, 4 heads x 32, dual attention in blocks "
             "0-1) or sd35m (SD3.5-Medium: 24 blocks, 24 heads x 64, dual attention in blocks "
             "0-12, 4096-wide text)"},
    {.name = "ttt", .type = CMD_ARG_ENUM, .def = "none", .choices = TTT_MAPS, .metavar = "MAP",
     .off = F(ttt), .help = "the random model's TTT map"},
    {.name = "width", .type = CMD_ARG_INT, .def = "256", .lo = 8, .hi = 16384, .metavar = "W",
     .off = F(width), .help = "image width in pixels (latent W/8); a multiple of 8 x patch size"},
    {.name = "height", .type = CMD_ARG_INT, .def = "256", .lo = 8, .hi = 16384, .metavar = "H",
     .off = F(height), .help = "image height in pixels"},
    {.name = "batch", .type = CMD_ARG_INT, .def = "1", .lo = 1, .hi = 1024, .metavar = "B",
     .off = F(batch), .help = "samples per forward"},
    {.name = "tokens", .type = CMD_ARG_INT, .lo = 1, .hi = 4096, .metavar = "T",
     .off = F(tokens),
     .help = "text tokens; default: a pipeline folder's own (its tokenizer's length + its T5 "
             "length, as tttd generate encodes a prompt: 24 for the embedded model), else SD3's "
             "prompt encoding (" STR(ENG_PROMPT_CLIP_LEN) " CLIP + " STR(ENG_PROMPT_T5_LEN)
             " T5) with --model or --preset sd35m, 32 for the tiny random model"},
    {.name = "steps", .type = CMD_ARG_INT, .def = "0", .lo = 0, .hi = ENG_SAMPLER_MAX_STEPS,
     .metavar = "N", .off = F(steps),
     .help = "time an N-step denoising loop instead of one forward (0: the forward)"},
    {.name = "guidance", .type = CMD_ARG_DOUBLE, .def = "1", .lo = 0, .hi = 100, .metavar = "G",
     .off = F(guidance),
     .help = "the loop's guidance scale: 1 is no unconditional pass; above 1 every forward "
             "holds 2B rows"},
    {.name = "repeat", .type = CMD_ARG_INT, .def = "5", .lo = 1, .hi = 10000, .metavar = "R",
     .off = F(repeat), .help = "timed runs"},
    {.name = "profile", .type = CMD_ARG_FLAG, .hi = 1, .off = F(profile),
     .help = "then one more run with the op profiler on, and a table of its time per op kind "
             "(calls, total ms, share of the run's wall time, mean us per call), largest first; "
             "the rest of the wall time is host overhead and gaps between ops"},
    {.name = "graphs", .type = CMD_ARG_ENUM, .def = "on", .choices = "off|on", .metavar = "G",
     .off = F(graphs),
     .help = "on CUDA, record each forward shape once as a graph and replay it (one launch "
             "instead of one per op; the warm-up and first timed run record it); off: every op "
             "launched one by one. The profiled run is always op by op"},
};

static const cmd_args_spec bench_spec = {
    .prog = "tttd bench",
    .about = "Times the MMDiT transformer: one forward pass of a batch (default), or a whole "
             "denoising loop with --steps. Runs once to warm up, then R timed runs; prints the "
             "model's shape, the input sizes, and the median and minimum time. Informative only: "
             "results depend on the machine, its load and OMP_NUM_THREADS.",
    .rows = bench_rows,
    .n_rows = (int)(sizeof bench_rows / sizeof bench_rows[0]),
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- the random model ---- */

typedef struct rnd_writer {
    eng_st_writer *w;
    uint64_t state; /* splitmix64 */
    const rnd_shape *shape;
    eng_dtype dtype;  /* what the file stores: F32, or BF16 to halve a large model's file */
    eng_backend *cpu; /* converts F32 to BF16 */
    eng_error *err;
} rnd_writer;

/* A tensor of uniform values in [-bound, bound). */
static int rnd_tensor_b(rnd_writer *rw, const char *name, int ndim, const int64_t *shape,
                        double bound)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    float *v = malloc((size_t)n * sizeof *v);
    if (!v)
        return eng_error_set(rw->err, ENG_ENOMEM, "random model: out of memory for %s", name);
    /* A cheap generator keeps the set-up short; the timing does not depend on the values. */
    for (int64_t i = 0; i < n; i++) {
        uint64_t z = (rw->state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        v[i] = (float)(((double)(z >> 11) * 0x1.0p-53 * 2.0 - 1.0) * bound);
    }
    int rc = 0;
    if (rw->dtype != ENG_DTYPE_F32) {
        /* In place: the BF16 halves fill the front of the F32 buffer. */
        eng_tensor src = eng_tensor_view(v, rw->cpu, ENG_DTYPE_F32, 1, &n);
        eng_tensor dst = eng_tensor_view(v, rw->cpu, rw->dtype, 1, &n);
        ENG_TRY_DONE(eng_op_convert(&dst, &src, rw->err));
    }
    ENG_TRY_DONE(eng_st_writer_add(rw->w, name, rw->dtype, ndim, shape, v, rw->err));
done:
    free(v);
    return rc;
}

/* Small values keep activations in a normal range. */
static int rnd_tensor(rnd_writer *rw, const char *name, int ndim, const int64_t *shape)
{
    return rnd_tensor_b(rw, name, ndim, shape, 0.05);
}

/* Weights uniform in +-1/sqrt(K), as PyTorch initialises a Linear, so that deep random models
 * keep their activations finite. */
static int rnd_linear(rnd_writer *rw, const char *pre, int64_t O, int64_t K)
{
    char name[160];
    snprintf(name, sizeof name, "%s.weight", pre);
    ENG_TRY(rnd_tensor_b(rw, name, 2, (const int64_t[]){O, K}, 1.0 / sqrt((double)K)));
    snprintf(name, sizeof name, "%s.bias", pre);
    return rnd_tensor(rw, name, 1, (const int64_t[]){O});
}

/* Every tensor of one attention module, as diffusers names them (and the TTT ones). */
static int rnd_attn(rnd_writer *rw, int blk, const char *mod, int joint, int add_out, int ttt)
{
    const rnd_shape *sh = rw->shape;
    const int64_t C = (int64_t)sh->heads * sh->head_dim, d = sh->head_dim, h = sh->heads;
    static const char *const proj[] = {"to_q", "to_k", "to_v", "to_out.0"};
    static const char *const add_proj[] = {"add_q_proj", "add_k_proj", "add_v_proj"};
    char pre[128];
    for (int j = 0; j < 4; j++) {
        snprintf(pre, sizeof pre, "transformer_blocks.%d.%s.%s", blk, mod, proj[j]);
        ENG_TRY(rnd_linear(rw, pre, C, C));
    }
    const char *norms[4] = {"norm_q", "norm_k", "norm_added_q", "norm_added_k"};
    for (int j = 0; j < (joint ? 4 : 2); j++) {
        snprintf(pre, sizeof pre, "transformer_blocks.%d.%s.%s.weight", blk, mod, norms[j]);
        ENG_TRY(rnd_tensor(rw, pre, 1, (const int64_t[]){d}));
    }
    for (int j = 0; joint && j < 3; j++) {
        snprintf(pre, sizeof pre, "transformer_blocks.%d.%s.%s", blk, mod, add_proj[j]);
        ENG_TRY(rnd_linear(rw, pre, C, C));
    }
    if (joint && add_out) {
        snprintf(pre, sizeof pre, "transformer_blocks.%d.%s.to_add_out", blk, mod);
        ENG_TRY(rnd_linear(rw, pre, C, C));
    }
    if (!ttt)
        return 0;
    const char *sq[2] = {"w1", "w2"}, *conv[2] = {"q_conv", "k_conv"};
    for (int j = 0; j < 2; j++) {
        snprintf(pre, sizeof pre, "transformer_blocks.%d.%s.%s", blk, mod, sq[j]);
        ENG_TRY(rnd_tensor(rw, pre, 3, (const int64_t[]){h, d, d}));
        snprintf(pre, sizeof pre, "transformer_blocks.%d.%s.%s.weight", blk, mod, conv[j]);
        ENG_TRY(rnd_tensor(rw, pre, 4, (const int64_t[]){C, 1, 3, 3}));
        snprintf(pre, sizeof pre, "transformer_blocks.%d.%s.%s.bias", blk, mod, conv[j]);
        ENG_TRY(rnd_tensor(rw, pre, 1, (const int64_t[]){C}));
    }
    return 0;
}

/* Writes config.json and the weights of the random model into dir, using the parsed config. */
static int rnd_model_write(const char *dir, const bench_opts *o, eng_backend *cpu, eng_error *err)
{
    char path[PATH_MAX + 48], json[1024], dual[512];
    const rnd_shape *sh = o->shape;
    const int64_t C = (int64_t)sh->heads * sh->head_dim, p = 2;
    char ttt[32];
    size_t n = 0;
    for (int i = 0; i < sh->dual_layers && n < sizeof dual; i++)
        n += (size_t)snprintf(dual + n, sizeof dual - n, i ? ", %d" : "%d", i);
    if (sh->dual_layers == 0)
        dual[0] = '\0';
    snprintf(json, sizeof json,
             "{\"_class_name\": \"SD3Transformer2DModel\", \"sample_size\": 32, \"patch_size\": "
             "2, \"in_channels\": %d, \"out_channels\": %d, \"num_layers\": %d, "
             "\"attention_head_dim\": %d, \"num_attention_heads\": %d, \"joint_attention_dim\": "
             "%d, \"caption_projection_dim\": %lld, \"pooled_projection_dim\": %d, "
             "\"pos_embed_max_size\": %d, \"dual_attention_layers\": [%s], \"qk_norm\": "
             "\"rms_norm\", \"ttt\": {\"preset\": \"%s\"}}\n",
             sh->channels, sh->channels, sh->layers, sh->head_dim, sh->heads, sh->joint_dim,
             (long long)C, sh->pooled_dim, sh->pos_max, dual,
             cmd_args_choice(TTT_MAPS, o->ttt, ttt, sizeof ttt));
    eng_transformer_config cfg;
    ENG_TRY(eng_config_parse_transformer(json, strlen(json), "random model config", &cfg, err));

    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f || fputs(json, f) < 0 || fclose(f) != 0)
        return eng_error_set(err, ENG_EIO, "%s: cannot write: %s", path, strerror(errno));

    rnd_writer rw = {.state = 0x7474746462656e63ull,
                     .shape = sh,
                     .dtype = o->dtype,
                     .cpu = cpu,
                     .err = err};
    ENG_TRY(eng_st_writer_init(&rw.w, err));
    int rc = 0;
    ENG_TRY_DONE(rnd_tensor(&rw, "pos_embed.pos_embed", 3,
                            (const int64_t[]){1, (int64_t)sh->pos_max * sh->pos_max, C}));
    ENG_TRY_DONE(
        rnd_tensor(&rw, "pos_embed.proj.weight", 4, (const int64_t[]){C, sh->channels, p, p}));
    ENG_TRY_DONE(rnd_tensor(&rw, "pos_embed.proj.bias", 1, (const int64_t[]){C}));
    ENG_TRY_DONE(rnd_linear(&rw, "time_text_embed.timestep_embedder.linear_1", C, 256));
    ENG_TRY_DONE(rnd_linear(&rw, "time_text_embed.timestep_embedder.linear_2", C, C));
    ENG_TRY_DONE(rnd_linear(&rw, "time_text_embed.text_embedder.linear_1", C, sh->pooled_dim));
    ENG_TRY_DONE(rnd_linear(&rw, "time_text_embed.text_embedder.linear_2", C, C));
    ENG_TRY_DONE(rnd_linear(&rw, "context_embedder", C, sh->joint_dim));
    for (int i = 0; i < sh->layers; i++) {
        char pre[96];
        int last = i == sh->layers - 1;
        snprintf(pre, sizeof pre, "transformer_blocks.%d.norm1.linear", i);
        ENG_TRY_DONE(rnd_linear(&rw, pre, (cfg.dual_attention[i] ? 9 : 6) * C, C));
        snprintf(pre, sizeof pre, "transformer_blocks.%d.norm1_context.linear", i);
        ENG_TRY_DONE(rnd_linear(&rw, pre, (last ? 2 : 6) * C, C));
        ENG_TRY_DONE(rnd_attn(&rw, i, "attn", 1, !last, cfg.ttt_attn[i]));
        if (cfg.dual_attention[i])
            ENG_TRY_DONE(rnd_attn(&rw, i, "attn2", 0, 0, cfg.ttt_attn2[i]));
        const char *ffs[2] = {"ff", "ff_context"};
        for (int j = 0; j < (last ? 1 : 2); j++) {
            snprintf(pre, sizeof pre, "transformer_blocks.%d.%s.net.0.proj", i, ffs[j]);
            ENG_TRY_DONE(rnd_linear(&rw, pre, 4 * C, C));
            snprintf(pre, sizeof pre, "transformer_blocks.%d.%s.net.2", i, ffs[j]);
            ENG_TRY_DONE(rnd_linear(&rw, pre, C, 4 * C));
        }
    }
    ENG_TRY_DONE(rnd_linear(&rw, "norm_out.linear", 2 * C, C));
    ENG_TRY_DONE(rnd_linear(&rw, "proj_out", p * p * sh->channels, C));
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    rc = eng_st_writer_write(rw.w, path, err);
done:
    eng_st_writer_free(rw.w);
    return rc;
}

/* Makes, loads and removes the random model. */
static int rnd_model_load(eng_mmdit **m, const bench_opts *o, eng_backend *be, eng_error *err)
{
    const char *tmp = getenv("TMPDIR");
    char dir[PATH_MAX], path[PATH_MAX + 48];
    eng_backend *cpu = eng_backend_cpu_create(err);
    if (!cpu)
        return err->code;
    int keep = o->save_model != NULL;
    if (keep) {
        if (strlen(o->save_model) >= sizeof dir) {
            eng_backend_destroy(cpu);
            return eng_error_set(err, ENG_EINVAL, "--save-model: path too long");
        }
        snprintf(dir, sizeof dir, "%s", o->save_model);
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            eng_backend_destroy(cpu);
            return eng_error_set(err, ENG_EIO, "--save-model %s: cannot make the folder: %s",
                                 dir, strerror(errno));
        }
    } else {
        snprintf(dir, sizeof dir, "%s/tttd-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    }
    if (!keep && !mkdtemp(dir)) {
        eng_backend_destroy(cpu);
        return eng_error_set(err, ENG_EIO, "%s: cannot make a temporary folder: %s", dir,
                             strerror(errno));
    }
    int rc = 0;
    ENG_TRY_DONE(rnd_model_write(dir, o, cpu, err));
    ENG_TRY_DONE(eng_mmdit_load(m, dir, be, o->dtype, err));
done:
    if (keep && !rc) {
        eng_backend_destroy(cpu);
        return 0;
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    unlink(path);
    rmdir(dir);
    eng_backend_destroy(cpu);
    return rc;
}

/* ---- the timed runs ---- */

typedef struct bench_inputs {
    eng_tensor x, out, ctx, pooled; /* in the model's dtype */
    eng_tensor lat;                 /* F32 latents: the loop's state */
    float *t, *g;
    int64_t B, C, H, W;
} bench_inputs;

/* t = normal values of the project RNG (stream seed), converted to t's dtype. */
static int fill_normal(eng_tensor *t, uint64_t seed, eng_backend *be, eng_error *err)
{
    int64_t n = eng_tensor_numel(t);
    eng_tensor h, fv;
    ENG_TRY(eng_tensor_init(&h, be, ENG_DTYPE_F32, 1, &n, err));
    int rc = 0;
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) {
        rc = eng_error_set(err, ENG_ENOMEM, "bench: out of memory");
        goto done;
    }
    eng_rng_normal(seed, 0, v, n);
    ENG_TRY_DONE(eng_tensor_upload(&h, v, err));
    ENG_TRY_DONE(eng_tensor_reshape(t, 1, &n, &fv, err));
    ENG_TRY_DONE(eng_op_convert(&fv, &h, err));
done:
    free(v);
    eng_tensor_free(&h);
    return rc;
}

static int inputs_make(bench_inputs *in, eng_backend *be, const eng_transformer_config *c,
                       const bench_opts *o, eng_dtype dt, eng_error *err)
{
    memset(in, 0, sizeof *in);
    in->B = o->batch, in->C = c->in_channels, in->H = o->height / 8, in->W = o->width / 8;
    const int64_t xs[4] = {in->B, in->C, in->H, in->W};
    const int64_t cs[3] = {in->B, o->tokens, c->joint_attention_dim};
    const int64_t ps[2] = {in->B, c->pooled_projection_dim};
    ENG_TRY(eng_tensor_init(&in->x, be, dt, 4, xs, err));
    ENG_TRY(eng_tensor_init(&in->out, be, dt, 4, xs, err));
    ENG_TRY(eng_tensor_init(&in->lat, be, ENG_DTYPE_F32, 4, xs, err));
    ENG_TRY(eng_tensor_init(&in->ctx, be, dt, 3, cs, err));
    ENG_TRY(eng_tensor_init(&in->pooled, be, dt, 2, ps, err));
    in->t = malloc((size_t)in->B * sizeof *in->t);
    in->g = malloc((size_t)in->B * sizeof *in->g);
    if (!in->t || !in->g)
        return eng_error_set(err, ENG_ENOMEM, "bench: out of memory");
    eng_tensor *fill[3] = {&in->x, &in->ctx, &in->pooled};
    for (int k = 0; k < 3; k++)
        ENG_TRY(fill_normal(fill[k], (uint64_t)k, be, err));
    for (int64_t b = 0; b < in->B; b++)
        in->t[b] = 500.0f, in->g[b] = (float)o->guidance;
    return 0;
}

static void inputs_free(bench_inputs *in)
{
    eng_tensor_free(&in->x), eng_tensor_free(&in->out), eng_tensor_free(&in->lat);
    eng_tensor_free(&in->ctx), eng_tensor_free(&in->pooled);
    free(in->t), free(in->g);
}

/* One timed unit: a forward, or a whole loop (from the same initial latents each time). */
static int run_once(eng_mmdit *m, bench_inputs *in, const bench_opts *o,
                    const eng_scheduler_config *sch, double *ms, eng_error *err)
{
    eng_backend *be = eng_mmdit_backend(m);
    double t0 = now_ms();
    if (o->steps == 0) {
        ENG_TRY(eng_mmdit_forward(m, &in->x, in->t, &in->ctx, &in->pooled, &in->out, err));
    } else {
        ENG_TRY(eng_op_convert(&in->lat, &in->x, err)); /* the loop works on a copy */
        eng_denoise_params p = {
            .steps = o->steps,
            .scheduler = sch,
            .guidance = in->g,
            .ctx = &in->ctx,
            .pooled = &in->pooled,
            .neg_ctx = &in->ctx, /* the same embeddings: the cost is what matters */
            .neg_pooled = &in->pooled,
        };
        ENG_TRY(eng_denoise(m, &in->lat, &p, err));
    }
    if (be->synchronize && be->synchronize(be))
        return eng_error_set(err, ENG_EDEVICE, "bench: %s: synchronize failed", be->name);
    *ms = now_ms() - t0;
    return 0;
}

static void print_setup(FILE *out, const bench_opts *o, const eng_transformer_config *c,
                        const bench_inputs *in, eng_backend *be)
{
    int p = c->patch_size;
    fprintf(out, "tttd bench: %s on %s (%s)\n",
            o->steps ? "denoising loop" : "transformer forward", be->name,
            eng_dtype_name(o->dtype));
    const char *policy = getenv("OMP_WAIT_POLICY");
    fprintf(out, "OpenMP wait policy: %s\n", policy ? policy : "(libgomp's default)");
    if (o->model)
        fprintf(out, "model: %s\n", o->model);
    else
        fprintf(out, "model: random weights, preset %s\n", o->shape->name);
    fprintf(out,
            "  %d blocks, %d heads x %d (inner %d), patch %d, %d latent channels, "
            "dual attention in %d blocks, TTT map %s (%d modules), joint dim %d, pooled dim %d\n",
            c->num_layers, c->num_attention_heads, c->attention_head_dim, c->inner_dim, p,
            c->in_channels, c->num_dual_attention_layers, eng_ttt_preset_name(c->ttt_preset),
            c->num_ttt_modules, c->joint_attention_dim, c->pooled_projection_dim);
    fprintf(out,
            "input: batch %lld, %dx%d px -> latent %lldx%lldx%lld (%lld image tokens), "
            "%d text tokens\n",
            (long long)in->B, o->width, o->height, (long long)in->C, (long long)in->H,
            (long long)in->W, (long long)((in->H / p) * (in->W / p)), o->tokens);
    if (o->steps)
        fprintf(out, "loop: %d steps, guidance %g (%lld rows per forward)\n", o->steps, o->guidance,
                (long long)(o->guidance > 1.0 ? 2 * in->B : in->B));
}

/* ---- the profile ---- */

/* The table of one profiled run, kinds by total time, largest first. */
static void print_profile(FILE *out, const bench_opts *o, const eng_profile *p, double wall_ms,
                          const eng_backend *be)
{
    int order[ENG_OP_KINDS], n = 0;
    for (int k = 0; k < ENG_OP_KINDS; k++)
        if (p->calls[k])
            order[n++] = k;
    for (int i = 1; i < n; i++) /* insertion sort: a few kinds */
        for (int j = i; j > 0 && p->ms[order[j]] > p->ms[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    double pct = wall_ms > 0 ? 100.0 / wall_ms : 0.0;
    fprintf(out, "profile of one %s on %s: %lld ops, timed by %s\n", o->steps ? "loop" : "forward",
            be->name, (long long)p->total_calls,
            be->timer_record ? "device events around each op" : "the host clock around each op");
    fprintf(out, "  %-20s %8s %12s %9s %12s\n", "op kind", "calls", "total ms", "% of run",
            "mean us");
    for (int i = 0; i < n; i++) {
        int k = order[i];
        fprintf(out, "  %-20s %8lld %12.3f %8.1f%% %12.1f\n", eng_op_kind_name((eng_op_kind)k),
                (long long)p->calls[k], p->ms[k], p->ms[k] * pct, 1e3 * p->ms[k] / p->calls[k]);
    }
    fprintf(out, "  %-20s %8lld %12.3f %8.1f%%\n", "all ops", (long long)p->total_calls,
            p->total_ms, p->total_ms * pct);
    fprintf(out, "  %-20s %8s %12.3f %8.1f%%\n", "wall time", "", wall_ms,
            wall_ms > 0 ? 100.0 : 0.0);
    fprintf(out, "  host overhead and gaps between ops: %.3f ms (%.1f%% of the run)\n",
            wall_ms - p->total_ms, (wall_ms - p->total_ms) * pct);
}

/* One more run with the op profiler on, then its table. */
static int profile_run(eng_mmdit *m, bench_inputs *in, const bench_opts *o,
                       const eng_scheduler_config *sch, FILE *out, eng_error *err)
{
    eng_backend *be = eng_mmdit_backend(m);
    eng_profile p;
    double wall_ms = 0.0;
    ENG_TRY(eng_backend_profile_start(be, err));
    /* A failed run leaves the profile running: destroying the backend drops it. */
    ENG_TRY(run_once(m, in, o, sch, &wall_ms, err));
    ENG_TRY(eng_backend_profile_stop(be, &p, err));
    print_profile(out, o, &p, wall_ms, be);
    return 0;
}

static int bench_run(const bench_opts *o, FILE *out, eng_error *err)
{
    eng_backend *be = o->cuda ? eng_backend_cuda_create(0, err) : eng_backend_cpu_create(err);
    eng_mmdit *m = NULL;
    bench_inputs in;
    double *ms = NULL;
    int rc = 0;

    memset(&in, 0, sizeof in);
    if (!be)
        return err->code ? err->code : ENG_EDEVICE;
    if (o->model) {
        char tr[PATH_MAX + 16];
        struct stat sb;
        snprintf(tr, sizeof tr, "%s/transformer", o->model);
        ENG_TRY_DONE(eng_mmdit_load(&m, stat(tr, &sb) == 0 && S_ISDIR(sb.st_mode) ? tr : o->model,
                                    be, o->dtype, err));
    } else {
        ENG_TRY_DONE(rnd_model_load(&m, o, be, err));
    }
    const eng_transformer_config *c = eng_mmdit_config(m);
    int unit = 8 * c->patch_size;
    if (o->width % unit || o->height % unit) {
        rc = eng_error_set(err, ENG_EINVAL,
                           "--width %d / --height %d: must be multiples of %d "
                           "(8 x patch size)",
                           o->width, o->height, unit);
        goto done;
    }
    ENG_TRY_DONE(inputs_make(&in, be, c, o, eng_mmdit_dtype(m), err));
    /* SD3.5's scheduler: only the loop uses it. */
    const char *sch_json = "{\"shift\": 3.0}";
    eng_scheduler_config sch;
    ENG_TRY_DONE(
        eng_config_parse_scheduler(sch_json, strlen(sch_json), "bench scheduler", &sch, err));
    print_setup(out, o, c, &in, be);
    fflush(out);

    ms = malloc((size_t)o->repeat * sizeof *ms);
    double warm;
    if (!ms) {
        rc = eng_error_set(err, ENG_ENOMEM, "bench: out of memory");
        goto done;
    }
    eng_mmdit_set_graphs(m, o->graphs);
    ENG_TRY_DONE(run_once(m, &in, o, &sch, &warm, err));
    if (o->graphs) { /* the second run records the graph: keep it out of the timed runs */
        double rec;
        ENG_TRY_DONE(run_once(m, &in, o, &sch, &rec, err));
    }
    for (int r = 0; r < o->repeat; r++)
        ENG_TRY_DONE(run_once(m, &in, o, &sch, &ms[r], err));
    qsort(ms, (size_t)o->repeat, sizeof *ms, cmp_double);
    double med =
        o->repeat % 2 ? ms[o->repeat / 2] : 0.5 * (ms[o->repeat / 2 - 1] + ms[o->repeat / 2]);
    fprintf(out, "%s: median %.3f ms, min %.3f ms over %d runs (warm-up %.3f ms)\n",
            o->steps ? "loop" : "forward", med, ms[0], o->repeat, warm);
    if (o->steps)
        fprintf(out, "per step: median %.3f ms\n", med / o->steps);
    if (o->profile)
        ENG_TRY_DONE(profile_run(m, &in, o, &sch, out, err));
done:
    free(ms);
    inputs_free(&in);
    eng_mmdit_free(m);
    eng_backend_destroy(be);
    return rc;
}

/* ---- arguments ---- */

int cmd_bench(int argc, char **argv, FILE *out, FILE *errout)
{
    bench_opts o = {.tokens = -1};
    int rc = cmd_args_parse(&bench_spec, &o, argc, argv, out, errout);
    if (rc >= 0)
        return rc;
    o.shape = &rnd_shapes[o.preset];
    o.dtype = o.dtype_choice ? ENG_DTYPE_BF16 : ENG_DTYPE_F32;
    if (o.model && o.ttt != 0) {
        fprintf(errout, "tttd bench: --ttt applies to the random model only (--model's config "
                        "holds its own map)\n");
        return 2;
    }
    if (o.tokens < 0) {
        /* A pipeline folder's own count, as tttd generate would encode a prompt for it (24 for
         * the embedded model); a bare transformer or an SAI file says nothing of its text
         * encoders, so SD3's. */
        char idx[4096];
        struct stat sb;
        snprintf(idx, sizeof idx, "%s/model_index.json", o.model ? o.model : "");
        if (o.model && stat(idx, &sb) == 0) {
            eng_error err = {0};
            o.tokens = eng_pipeline_text_tokens_of(o.model, &err);
            if (o.tokens < 0)
                return cmd_engine_fail(errout, "bench", NULL, &err);
        } else {
            o.tokens = o.model || o.shape != &rnd_shapes[0] ? SD3_TOKENS : 32;
        }
    }
    if (!o.cuda && o.dtype != ENG_DTYPE_F32) {
        fprintf(errout, "tttd bench: --dtype bf16 needs --cuda (the CPU backend computes in F32)\n");
        return 2;
    }

    eng_error err = {0};
    if (bench_run(&o, out, &err) != 0)
        return cmd_engine_fail(errout, "bench", NULL, &err);
    return 0;
}
