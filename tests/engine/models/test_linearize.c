/*
 * test_linearize.c - the conversion of `tttd linearize` (engine/models/linearize.c; the command
 * line is tests/cmd/test_cmd_linearize.c's).
 *
 * Each test builds a tiny softmax SD3 model in a fresh mkdtemp folder (the fixture config of
 * tests/fixtures/mmdit, a few tensors per module written with eng_st_writer, as a bare
 * transformer folder, a pipeline folder, or sharded with an index), linearizes it and checks:
 * every source tensor present and bit-identical, the new tensors' names, shapes, dtypes and
 * statistics, the config's map (loaded back with eng_config_load_transformer), the copied
 * files, determinism per seed, and the refusals. The statistics tests tell the paper's
 * truncation (timm's absolute bounds +-2, i.e. none at std 0.02) from a 2-std truncation.
 */
#include <criterion/criterion.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/backend/backend.h"
#include "engine/io/config.h"
#include "engine/models/linearize.h"
#include "engine/models/mmdit.h"
#include "engine/models/mmdit_internal.h"
#include "engine/core/rng.h"
#include "engine/io/safetensors.h"
#include "kernels/cpu/k_cpu.h"
#include "tests/common/test_util.h"

static const char *const tiny_config =
    "{\"_class_name\": \"SD3Transformer2DModel\", \"sample_size\": 8, \"patch_size\": 2,"
    " \"in_channels\": 4, \"out_channels\": 4, \"num_layers\": 3, \"attention_head_dim\": 16,"
    " \"num_attention_heads\": 2, \"joint_attention_dim\": 24, \"caption_projection_dim\": 32,"
    " \"pooled_projection_dim\": 20, \"pos_embed_max_size\": 8, \"dual_attention_layers\": [0],"
    " \"qk_norm\": \"rms_norm\", \"ttt\": null}\n";

static const char *const all_modules[] = {"transformer_blocks.0.attn", "transformer_blocks.0.attn2",
                                          "transformer_blocks.1.attn", "transformer_blocks.2.attn"};

/* ---- temp folders ---- */

static char tmp[64];
static char pbuf[4][512];
static int pnext;

static void setup(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/tttd_lin_XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
}

static void teardown(void)
{
    tu_rmtree(tmp);
}

TestSuite(linearize, .init = setup, .fini = teardown);

/* <tmp>/rel, in one of four rotating buffers. */
static const char *at(const char *rel)
{
    char *b = pbuf[pnext++ & 3];
    snprintf(b, sizeof pbuf[0], "%s/%s", tmp, rel);
    return b;
}

static void put(const char *rel, const char *text)
{
    FILE *f = fopen(at(rel), "wb");
    cr_assert_not_null(f, "%s", rel);
    fputs(text, f);
    fclose(f);
}

static void mk(const char *rel)
{
    cr_assert_eq(mkdir(at(rel), 0755), 0, "%s", rel);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* ---- the tiny input model ---- */

/* A tensor with random values in dtype dt. */
static void add_random(eng_st_writer *w, const char *name, eng_dtype dt, int ndim,
                       const int64_t *shape, uint64_t *rs)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    float *v = tu_alloc(n);
    uint16_t *h = malloc((size_t)n * 2);
    tu_rand_fill(v, n, rs, -1.f, 1.f);
    if (dt == ENG_DTYPE_BF16)
        k_cpu_f32_to_bf16(h, v, n);
    else if (dt == ENG_DTYPE_F16)
        k_cpu_f32_to_f16(h, v, n);
    cr_assert_eq(eng_st_writer_add(w, name, dt, ndim, shape, dt == ENG_DTYPE_F32 ? (void *)v : h,
                                   NULL),
                 0);
    free(v);
    free(h);
}

/* Module tensors of the tiny model: to_q/to_k (weight, bias) and norm_q per attention module. */
static void add_block(eng_st_writer *w, int b, eng_dtype dt, uint64_t *rs)
{
    char name[96];
    const char *mods[2] = {"attn", "attn2"};
    for (int m = 0; m < (b == 0 ? 2 : 1); m++) {
        snprintf(name, sizeof name, "transformer_blocks.%d.%s.to_q.weight", b, mods[m]);
        add_random(w, name, dt, ENG_SHAPE(32, 32), rs);
        snprintf(name, sizeof name, "transformer_blocks.%d.%s.to_k.weight", b, mods[m]);
        add_random(w, name, dt, ENG_SHAPE(32, 32), rs);
        snprintf(name, sizeof name, "transformer_blocks.%d.%s.to_q.bias", b, mods[m]);
        add_random(w, name, dt, ENG_SHAPE(32), rs);
        snprintf(name, sizeof name, "transformer_blocks.%d.%s.norm_q.weight", b, mods[m]);
        add_random(w, name, ENG_DTYPE_F32, ENG_SHAPE(16), rs); /* a mixed-dtype file */
    }
}

enum { LAYOUT_BARE, LAYOUT_PIPELINE, LAYOUT_SHARDED };

/* Writes a softmax model in <tmp>/in (layout and weight dtype as asked). */
static void make_input(int layout, eng_dtype dt)
{
    const char *tr = layout == LAYOUT_PIPELINE ? "in/transformer" : "in";
    char rel[128];
    uint64_t rs = 1234;
    eng_st_writer *w;

    mk("in");
    if (layout == LAYOUT_PIPELINE) {
        mk("in/transformer");
        mk("in/vae");
        mk("in/tokenizer");
        mk("in/tokenizer/extra");
        put("in/model_index.json",
            "{\"_class_name\": \"StableDiffusion3Pipeline\","
            " \"transformer\": [\"diffusers\", \"SD3Transformer2DModel\"],"
            " \"vae\": [\"diffusers\", \"AutoencoderKL\"],"
            " \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"]}\n");
        put("in/vae/config.json", "{\"_class_name\": \"AutoencoderKL\"}\n");
        put("in/tokenizer/vocab.json", "{\"a\": 0}\n");
        put("in/tokenizer/extra/merges.txt", "#version: 0.2\n");
        put("in/README.md", "tiny model\n");
        cr_assert_eq(eng_st_writer_init(&w, NULL), 0);
        add_random(w, "decoder.conv_in.weight", ENG_DTYPE_F32, ENG_SHAPE(4, 4, 3, 3), &rs);
        cr_assert_eq(eng_st_writer_write(w, at("in/vae/diffusion_pytorch_model.safetensors"), NULL),
                     0);
        eng_st_writer_free(w);
        /* A link in the input: the output must hold a real file. */
        cr_assert_eq(symlink("vocab.json", at("in/tokenizer/vocab_link.json")), 0);
    }
    snprintf(rel, sizeof rel, "%s/config.json", tr);
    put(rel, tiny_config);
    snprintf(rel, sizeof rel, "%s/notes.txt", tr);
    put(rel, "kept\n");

    cr_assert_eq(eng_st_writer_init(&w, NULL), 0);
    cr_assert_eq(eng_st_writer_set_metadata(w, "format", "pt", NULL), 0);
    add_random(w, "pos_embed", dt, ENG_SHAPE(1, 64, 32), &rs);
    add_block(w, 0, dt, &rs);
    if (layout == LAYOUT_SHARDED) {
        snprintf(rel, sizeof rel, "%s/diffusion_pytorch_model-00001-of-00002.safetensors", tr);
        cr_assert_eq(eng_st_writer_write(w, at(rel), NULL), 0);
        eng_st_writer_free(w);
        cr_assert_eq(eng_st_writer_init(&w, NULL), 0);
        cr_assert_eq(eng_st_writer_set_metadata(w, "format", "pt", NULL), 0);
    }
    add_block(w, 1, dt, &rs);
    add_block(w, 2, dt, &rs);
    add_random(w, "proj_out.weight", dt, ENG_SHAPE(16, 32), &rs);
    snprintf(rel, sizeof rel, "%s/diffusion_pytorch_model%s.safetensors", tr,
             layout == LAYOUT_SHARDED ? "-00002-of-00002" : "");
    cr_assert_eq(eng_st_writer_write(w, at(rel), NULL), 0);
    eng_st_writer_free(w);

    if (layout == LAYOUT_SHARDED) {
        /* The index diffusers would write: every tensor mapped to its shard. */
        eng_safetensors *st;
        json_t *wm = json_object();
        cr_assert_eq(eng_safetensors_open_dir(&st, at("in"), NULL), 0);
        for (size_t i = 0; i < eng_safetensors_count(st); i++) {
            const eng_st_tensor *t = eng_safetensors_at(st, i);
            json_object_set_new(wm, t->name, json_string(strrchr(t->file, '/') + 1));
        }
        eng_safetensors_close(st);
        json_t *idx = json_pack("{s:{s:I},s:o}", "metadata", "total_size", (json_int_t)123456,
                                "weight_map", wm);
        cr_assert_eq(json_dump_file(idx, at("in/diffusion_pytorch_model.safetensors.index.json"),
                                    JSON_INDENT(2)),
                     0);
        json_decref(idx);
    }
}

static int run_lin(const char *map, uint64_t seed, int force, eng_linearize_report *rep,
                   eng_error *err)
{
    eng_linearize_opts o = {.map = map, .seed = seed, .force = force};
    return eng_linearize(at("in"), at("out"), &o, rep, err);
}

/* ---- checks ---- */

/* Every tensor of src is in dst with the same dtype, shape and bytes; returns src's count. */
static size_t check_inherited(const char *src, const char *dst)
{
    eng_safetensors *a, *b;
    eng_error err = {0};
    cr_assert_eq(eng_safetensors_open_dir(&a, src, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_safetensors_open_dir(&b, dst, &err), 0, "%s", err.msg);
    size_t n = eng_safetensors_count(a);
    for (size_t i = 0; i < n; i++) {
        const eng_st_tensor *x = eng_safetensors_at(a, i);
        const eng_st_tensor *y = eng_safetensors_find(b, x->name);
        cr_assert_not_null(y, "%s missing from the output", x->name);
        cr_assert_eq(x->dtype, y->dtype, "%s", x->name);
        cr_assert_eq(x->ndim, y->ndim, "%s", x->name);
        cr_assert_arr_eq(x->shape, y->shape, sizeof(int64_t) * (size_t)x->ndim, "%s", x->name);
        cr_assert_eq(x->nbytes, y->nbytes, "%s", x->name);
        cr_assert_eq(memcmp(x->data, y->data, x->nbytes), 0, "%s differs", x->name);
    }
    eng_safetensors_close(a);
    eng_safetensors_close(b);
    return n;
}

/*
 * The output holds exactly src's tensors plus the new ones of `modules` (n of them), in dtype dt
 * with the documented shapes and value ranges, and equal to eng_linearize_init_param's values.
 */
static void check_new(const char *dst, const char *const *modules, int n, eng_dtype dt,
                      uint64_t seed, size_t n_src)
{
    eng_safetensors *st;
    eng_transformer_config cfg;
    eng_error err = {0};
    char cfg_path[512];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dst);
    cr_assert_eq(eng_config_load_transformer(cfg_path, &cfg, &err), 0, "%s", err.msg);
    cr_assert_eq(cfg.num_ttt_modules, n);
    cr_assert_eq(eng_safetensors_open_dir(&st, dst, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_safetensors_count(st), n_src + 6 * (size_t)n);
    for (int m = 0; m < n; m++) {
        int block = modules[m][19] - '0', attn2 = strstr(modules[m], "attn2") != NULL;
        cr_assert(attn2 ? cfg.ttt_attn2[block] : cfg.ttt_attn[block], "%s", modules[m]);
        for (int p = 0; p < ENG_TTT_NUM_PARAMS; p++) {
            char name[128];
            int64_t shape[ENG_MAX_DIMS];
            snprintf(name, sizeof name, "%s.%s", modules[m], eng_ttt_param_suffix(p));
            const eng_st_tensor *t = eng_safetensors_find(st, name);
            cr_assert_not_null(t, "%s missing", name);
            cr_assert_eq(t->dtype, dt, "%s", name);
            int ndim = eng_ttt_param_shape(&cfg, p, shape);
            cr_assert_eq(t->ndim, ndim, "%s", name);
            cr_assert_arr_eq(t->shape, shape, sizeof(int64_t) * (size_t)ndim, "%s", name);
            int64_t k = (int64_t)(t->nbytes / eng_dtype_size(dt));
            float *v = tu_alloc(k), *ref = tu_alloc(k), *ref_r = tu_alloc(k);
            cr_assert_eq(eng_st_tensor_to_f32(t, v, NULL), 0);
            cr_assert_eq(eng_linearize_init_param(&cfg, seed, block, attn2, p, ref, k, NULL), 0);
            /* ref rounded to the stored dtype, back to float */
            uint16_t *h = malloc((size_t)k * 2);
            if (dt == ENG_DTYPE_BF16) {
                k_cpu_f32_to_bf16(h, ref, k);
                k_cpu_bf16_to_f32(ref_r, h, k);
            } else if (dt == ENG_DTYPE_F16) {
                k_cpu_f32_to_f16(h, ref, k);
                k_cpu_f16_to_f32(ref_r, h, k);
            } else {
                memcpy(ref_r, ref, (size_t)k * sizeof(float));
            }
            cr_assert_eq(memcmp(v, ref_r, (size_t)k * sizeof(float)), 0, "%s values", name);
            float lim = p <= ENG_TTT_W2 ? 0.2f : 0.334f; /* 1/3 rounds up to 0.33398 in BF16 */
            for (int64_t i = 0; i < k; i++)
                cr_assert(fabsf(v[i]) <= lim && v[i] != 0.f, "%s[%lld] = %g", name,
                          (long long)i, v[i]);
            free(v), free(ref), free(ref_r), free(h);
        }
    }
    eng_safetensors_close(st);
}

/* ---- the initial values ---- */

Test(linearize, trunc_normal_is_timm_with_absolute_bounds)
{
    /* SD3.5-Medium's w1 of one module: 24 heads x 64 x 64 = 98304 values. */
    eng_transformer_config cfg = {.num_attention_heads = 24, .attention_head_dim = 64,
                                  .inner_dim = 1536, .num_layers = 24};
    int64_t n = 24 * 64 * 64;
    float *v = tu_alloc(n);
    cr_assert_eq(eng_linearize_init_param(&cfg, 7, 3, 1, ENG_TTT_W1, v, n, NULL), 0);
    double s = 0, s2 = 0, mx = 0;
    int64_t beyond = 0;
    for (int64_t i = 0; i < n; i++) {
        s += v[i], s2 += (double)v[i] * v[i];
        mx = fmax(mx, fabs(v[i]));
        beyond += fabsf(v[i]) > 0.04f;
    }
    double mean = s / n, sd = sqrt(s2 / n - mean * mean);
    cr_assert(fabs(mean) < 3e-4, "mean %g", mean);
    cr_assert(fabs(sd - 0.02) < 4e-4, "std %g", sd);
    /* Bounds at +-2 = 100 std cut nothing: 4.55% of a normal lies beyond 2 std (0.04), and the
     * largest of ~1e5 draws is ~4.4 std. A 2-std truncation would give 0 and <= 0.04. */
    cr_assert(beyond > n * 40 / 1000 && beyond < n * 51 / 1000, "%lld beyond 0.04",
              (long long)beyond);
    cr_assert(mx > 0.06 && mx <= 2.0, "max |w| %g", mx);
    /* No value was redrawn: each is 0.02 x the normal at its place in the stream. */
    float *z = tu_alloc(n);
    eng_rng_normal(7, eng_linearize_stream_offset(3, 1, ENG_TTT_W1), z, n);
    for (int64_t i = 0; i < n; i++)
        cr_assert_eq(v[i], (float)(0.02 * (double)z[i]), "w1[%lld]", (long long)i);
    free(z);
    free(v);
}

Test(linearize, trunc_normal_redraws_outside_the_bounds)
{
    int64_t n = 4096;
    float *v = tu_alloc(n), *z = tu_alloc(n);
    eng_linearize_trunc_normal(99, 1000, v, n, 0.0, 1.0, -0.5, 0.5);
    eng_rng_normal(99, 1000, z, n);
    int64_t kept = 0, redrawn = 0;
    for (int64_t i = 0; i < n; i++) {
        cr_assert(v[i] >= -0.5f && v[i] <= 0.5f, "v[%lld] = %g", (long long)i, v[i]);
        if (fabsf(z[i]) <= 0.5f) {
            cr_assert_eq(v[i], z[i]);
            kept++;
        } else {
            float r1;
            eng_rng_normal(99, 1000 + (uint64_t)n + (uint64_t)i, &r1, 1);
            if (fabsf(r1) <= 0.5f)
                cr_assert_eq(v[i], r1, "round 1 of %lld", (long long)i);
            redrawn++;
        }
    }
    /* P(|z| <= 0.5) = 0.383 */
    cr_assert(kept > n * 35 / 100 && kept < n * 42 / 100, "%lld kept", (long long)kept);
    cr_assert(redrawn > 0);
    free(v);
    free(z);
}

Test(linearize, conv_init_is_uniform_third)
{
    eng_transformer_config cfg = {.num_attention_heads = 24, .attention_head_dim = 64,
                                  .inner_dim = 1536, .num_layers = 24};
    int64_t n = 1536 * 9;
    float *v = tu_alloc(n);
    cr_assert_eq(eng_linearize_init_param(&cfg, 1, 0, 0, ENG_TTT_K_CONV_WEIGHT, v, n, NULL), 0);
    double s = 0, s2 = 0, lo = 1, hi = -1;
    int hist[6] = {0};
    for (int64_t i = 0; i < n; i++) {
        cr_assert(v[i] >= -(float)(1.0 / 3) && v[i] <= (float)(1.0 / 3), "%g", v[i]);
        s += v[i], s2 += (double)v[i] * v[i];
        lo = fmin(lo, v[i]), hi = fmax(hi, v[i]);
        hist[(int)((v[i] + 1.0 / 3) * 9)]++; /* six bins of width 1/9 */
    }
    double mean = s / n, var = s2 / n - mean * mean;
    cr_assert(fabs(mean) < 0.006, "mean %g", mean);
    cr_assert(fabs(var - 1.0 / 27) < 0.0015, "var %g (1/27 for U(-1/3, 1/3))", var);
    cr_assert(lo < -0.33 && hi > 0.33, "range [%g, %g]", lo, hi);
    for (int b = 0; b < 6; b++)
        cr_assert(hist[b] > n / 6 * 9 / 10 && hist[b] < n / 6 * 11 / 10, "bin %d: %d", b,
                  hist[b]);
    /* The documented derivation: lo + (hi - lo) * Phi(z). */
    float z[4];
    eng_rng_normal(1, eng_linearize_stream_offset(0, 0, ENG_TTT_K_CONV_WEIGHT), z, 4);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(v[i], (float)(-1.0 / 3 + (2.0 / 3) * 0.5 * erfc(-(double)z[i] / sqrt(2.0))));
    free(v);
}

Test(linearize, streams_are_disjoint_and_documented)
{
    cr_assert_eq(eng_linearize_stream_offset(0, 0, ENG_TTT_W1), 0u);
    cr_assert_eq(eng_linearize_stream_offset(0, 0, ENG_TTT_W2), 1ull << 40);
    cr_assert_eq(eng_linearize_stream_offset(0, 1, ENG_TTT_W1), 8ull << 40);
    cr_assert_eq(eng_linearize_stream_offset(5, 1, ENG_TTT_K_CONV_BIAS), (11ull * 8 + 5) << 40);
    cr_assert_eq(eng_linearize_stream_offset(127, 1, ENG_TTT_K_CONV_BIAS), (255ull * 8 + 5) << 40);
    eng_transformer_config cfg = {.num_attention_heads = 2, .attention_head_dim = 16,
                                  .inner_dim = 32, .num_layers = 3};
    float a[512], b[512];
    cr_assert_eq(eng_linearize_init_param(&cfg, 5, 0, 0, ENG_TTT_W1, a, 512, NULL), 0);
    cr_assert_eq(eng_linearize_init_param(&cfg, 5, 0, 0, ENG_TTT_W2, b, 512, NULL), 0);
    cr_assert_neq(memcmp(a, b, sizeof a), 0);
    cr_assert_eq(eng_linearize_init_param(&cfg, 5, 0, 1, ENG_TTT_W1, b, 512, NULL), 0);
    cr_assert_neq(memcmp(a, b, sizeof a), 0);
    cr_assert_eq(eng_linearize_init_param(&cfg, 5, 0, 0, ENG_TTT_W1, b, 512, NULL), 0);
    cr_assert_eq(memcmp(a, b, sizeof a), 0);
    cr_assert_eq(eng_linearize_init_param(&cfg, 5, 0, 0, ENG_TTT_W1, b, 511, NULL), ENG_EINVAL);
}

/* ---- the map ---- */

Test(linearize, resolve_map_kinds_and_errors)
{
    eng_transformer_config cfg;
    eng_error err = {0};
    char *text = NULL;
    size_t len = strlen(tiny_config);

    cr_assert_eq(eng_linearize_resolve_map(tiny_config, len, "c.json", "sd35-t5", &text, &cfg,
                                           &err),
                 0, "%s", err.msg);
    cr_assert_eq(cfg.ttt_preset, ENG_TTT_PRESET_SD35_T5);
    cr_assert_eq(cfg.num_ttt_modules, 4); /* 3 blocks < 5: every attn, plus attn2 of block 0 */
    cr_assert_not_null(strstr(text, "\"preset\": \"sd35-t5\""));
    cr_assert_not_null(strstr(text, "\"qk_norm\": \"rms_norm\""));
    cr_assert_eq(text[strlen(text) - 1], '\n');
    free(text);

    cr_assert_eq(eng_linearize_resolve_map(tiny_config, len, "c.json",
                                           " transformer_blocks.2.attn ,transformer_blocks.0.attn2",
                                           &text, &cfg, &err),
                 0, "%s", err.msg);
    cr_assert_eq(cfg.ttt_preset, ENG_TTT_PRESET_CUSTOM);
    cr_assert_eq(cfg.num_ttt_modules, 2);
    cr_assert(cfg.ttt_attn[2] && cfg.ttt_attn2[0] && !cfg.ttt_attn[0]);
    char name[64];
    int block, attn2;
    cr_assert_eq(eng_linearize_module_name(&cfg, 0, name, sizeof name, &block, &attn2), 0);
    cr_assert_str_eq(name, "transformer_blocks.0.attn2");
    cr_assert_eq(eng_linearize_module_name(&cfg, 1, name, sizeof name, &block, &attn2), 0);
    cr_assert_str_eq(name, "transformer_blocks.2.attn");
    cr_assert_eq(eng_linearize_module_name(&cfg, 2, name, sizeof name, &block, &attn2),
                 ENG_ENOTFOUND);
    free(text);

    static const struct {
        const char *map, *want;
    } bad[] = {
        {"transformer_blocks.3.attn", "no block 3"},
        {"transformer_blocks.1.attn2", "block 1 has no attn2"},
        {"transformer_blocks.1.attn,transformer_blocks.1.attn", "listed twice"},
        {"transformer_blocks.1.mlp", "not a module name"},
        {"transformer_blocks.1.attn,,transformer_blocks.2.attn", "empty module name"},
        {"none", "selects no module"},
        {"", "empty"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        text = NULL;
        cr_assert_neq(eng_linearize_resolve_map(tiny_config, len, "c.json", bad[i].map, &text,
                                                &cfg, &err),
                      0, "%s", bad[i].map);
        cr_assert_null(text);
        cr_assert_not_null(strstr(err.msg, bad[i].want), "%s: %s", bad[i].map, err.msg);
    }
    /* A model that is TTT already. */
    const char *ttt = "{\"num_layers\": 2, \"attention_head_dim\": 8, \"num_attention_heads\": 2,"
                      " \"caption_projection_dim\": 16, \"ttt\": {\"preset\": \"all\"}}";
    cr_assert_eq(eng_linearize_resolve_map(ttt, strlen(ttt), "c.json", "all", &text, &cfg, &err),
                 ENG_EINVAL);
    cr_assert_not_null(strstr(err.msg, "already has a TTT map"), "%s", err.msg);
}

/* ---- whole conversions ---- */

Test(linearize, bare_folder_all_f32)
{
    eng_linearize_report rep;
    eng_error err = {0};
    make_input(LAYOUT_BARE, ENG_DTYPE_F32);
    cr_assert_eq(run_lin("all", 42, 0, &rep, &err), 0, "%s", err.msg);
    size_t n_src = check_inherited(at("in"), at("out"));
    check_new(at("out"), all_modules, 4, ENG_DTYPE_F32, 42, n_src);
    cr_assert_eq(rep.is_pipeline, 0);
    cr_assert_eq(rep.num_modules, 4);
    cr_assert_eq(rep.new_tensors, 24u);
    cr_assert_eq(rep.new_params, 4u * (2 * 2 * 16 * 16 + 20 * 32));
    cr_assert_eq(rep.copied_tensors, n_src);
    cr_assert_eq(rep.weight_files, 1);
    cr_assert_eq(rep.other_files, 1u); /* notes.txt */
    cr_assert(same_file(at("in/notes.txt"), at("out/notes.txt")));
    cr_assert_eq(rep.dtype, ENG_DTYPE_F32);

    /* The config: the input's keys, in order, plus the map. */
    size_t len;
    char *cfg = slurp(at("out/config.json"), &len);
    json_t *root = json_loads(cfg, 0, NULL), *in = json_loads(tiny_config, 0, NULL);
    cr_assert_not_null(root);
    const char *key;
    json_t *v;
    json_object_foreach(in, key, v) {
        if (strcmp(key, "ttt") != 0)
            cr_assert(json_equal(v, json_object_get(root, key)), "key %s", key);
    }
    cr_assert_eq(json_object_size(root), json_object_size(in));
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(root, "ttt"), "preset")),
                     "all");
    cr_assert_lt(strstr(cfg, "\"sample_size\""), strstr(cfg, "\"qk_norm\""));
    json_decref(root);
    json_decref(in);
    free(cfg);

    /* The metadata: the input's plus the seed and the map. */
    eng_safetensors *st;
    cr_assert_eq(eng_safetensors_open(&st, at("out/diffusion_pytorch_model.safetensors"), NULL), 0);
    cr_assert_str_eq(eng_safetensors_metadata(st, "format"), "pt");
    cr_assert_str_eq(eng_safetensors_metadata(st, "tttd.linearize.seed"), "42");
    cr_assert_str_eq(eng_safetensors_metadata(st, "tttd.linearize.map"), "all");
    cr_assert_str_eq(eng_safetensors_metadata(st, "tttd.linearize.modules"),
                     "transformer_blocks.0.attn,transformer_blocks.0.attn2,"
                     "transformer_blocks.1.attn,transformer_blocks.2.attn");
    eng_safetensors_close(st);
}

Test(linearize, pipeline_folder_sd35_t5_bf16)
{
    eng_linearize_report rep;
    eng_error err = {0};
    struct stat sb;
    make_input(LAYOUT_PIPELINE, ENG_DTYPE_BF16);
    cr_assert_eq(run_lin("sd35-t5", 3, 0, &rep, &err), 0, "%s", err.msg);
    cr_assert_eq(rep.is_pipeline, 1);
    size_t n_src = check_inherited(at("in/transformer"), at("out/transformer"));
    check_new(at("out/transformer"), all_modules, 4, ENG_DTYPE_BF16, 3, n_src);
    cr_assert_eq(rep.dtype, ENG_DTYPE_BF16);
    /* Every other file copied as a real file with the same bytes. */
    static const char *const copied[] = {
        "model_index.json", "README.md", "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors", "tokenizer/vocab.json",
        "tokenizer/vocab_link.json", "tokenizer/extra/merges.txt", "transformer/notes.txt"};
    char a[128], b[128];
    for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++) {
        snprintf(a, sizeof a, "in/%s", copied[i]);
        snprintf(b, sizeof b, "out/%s", copied[i]);
        cr_assert_eq(lstat(at(b), &sb), 0, "%s", b);
        cr_assert(S_ISREG(sb.st_mode), "%s is not a regular file", b);
        cr_assert(same_file(at(a), at(b)), "%s differs", b);
    }
    cr_assert_eq(rep.other_files, sizeof copied / sizeof copied[0]);
    eng_transformer_config cfg;
    cr_assert_eq(eng_config_load_transformer(at("out/transformer/config.json"), &cfg, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(cfg.ttt_preset, ENG_TTT_PRESET_SD35_T5);
}

Test(linearize, sharded_f16_module_list)
{
    static const char *const mods[] = {"transformer_blocks.0.attn2", "transformer_blocks.2.attn"};
    eng_linearize_report rep;
    eng_error err = {0};
    make_input(LAYOUT_SHARDED, ENG_DTYPE_F16);
    cr_assert_eq(run_lin("transformer_blocks.0.attn2,transformer_blocks.2.attn", 9, 0, &rep, &err),
                 0, "%s", err.msg);
    size_t n_src = check_inherited(at("in"), at("out"));
    check_new(at("out"), mods, 2, ENG_DTYPE_F16, 9, n_src);
    cr_assert_eq(rep.weight_files, 2);

    /* Each module's tensors sit in the shard of its to_q.weight, and the index says so. */
    json_t *idx = json_load_file(at("out/diffusion_pytorch_model.safetensors.index.json"), 0, NULL);
    cr_assert_not_null(idx);
    json_t *wm = json_object_get(idx, "weight_map");
    cr_assert_str_eq(json_string_value(json_object_get(wm, "transformer_blocks.0.attn2.w1")),
                     "diffusion_pytorch_model-00001-of-00002.safetensors");
    const char *kb = "transformer_blocks.2.attn.k_conv.bias";
    cr_assert_str_eq(json_string_value(json_object_get(wm, kb)),
                     "diffusion_pytorch_model-00002-of-00002.safetensors");
    cr_assert_eq(json_object_size(wm), n_src + 12);
    json_int_t total = json_integer_value(json_object_get(json_object_get(idx, "metadata"),
                                                          "total_size"));
    cr_assert_eq(total, 123456 + 2 * 2 * (2 * 2 * 16 * 16 + 20 * 32));
    json_decref(idx);
    eng_safetensors *st;
    cr_assert_eq(eng_safetensors_open(
                     &st, at("out/diffusion_pytorch_model-00001-of-00002.safetensors"), NULL),
                 0);
    cr_assert_not_null(eng_safetensors_find(st, "transformer_blocks.0.attn2.q_conv.weight"));
    cr_assert_null(eng_safetensors_find(st, "transformer_blocks.2.attn.w1"));
    cr_assert_str_eq(eng_safetensors_metadata(st, "tttd.linearize.seed"), "9");
    eng_safetensors_close(st);
}

Test(linearize, deterministic_per_seed_and_independent_of_the_map)
{
    eng_error err = {0};
    const char *w = "out/diffusion_pytorch_model.safetensors";
    make_input(LAYOUT_BARE, ENG_DTYPE_F32);
    cr_assert_eq(run_lin("all", 5, 0, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(rename(at(w), at("first.safetensors")), 0);
    cr_assert_eq(run_lin("all", 5, 1, NULL, &err), 0, "%s", err.msg);
    cr_assert(same_file(at(w), at("first.safetensors")), "same seed, different files");

    eng_safetensors *a, *b;
    cr_assert_eq(eng_safetensors_open(&a, at("first.safetensors"), NULL), 0);
    cr_assert_eq(run_lin("transformer_blocks.1.attn", 6, 1, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_safetensors_open(&b, at(w), NULL), 0);
    const eng_st_tensor *x = eng_safetensors_find(a, "transformer_blocks.1.attn.w1");
    const eng_st_tensor *y = eng_safetensors_find(b, "transformer_blocks.1.attn.w1");
    cr_assert(x && y);
    cr_assert_neq(memcmp(x->data, y->data, x->nbytes), 0, "another seed, same w1");
    eng_safetensors_close(b);

    /* Seed 5 again with a one-module map: that module's values do not depend on the map. */
    cr_assert_eq(run_lin("transformer_blocks.1.attn", 5, 1, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_safetensors_open(&b, at(w), NULL), 0);
    cr_assert_eq(eng_safetensors_count(b), eng_safetensors_count(a) - 18);
    for (int p = 0; p < ENG_TTT_NUM_PARAMS; p++) {
        char name[96];
        snprintf(name, sizeof name, "transformer_blocks.1.attn.%s", eng_ttt_param_suffix(p));
        x = eng_safetensors_find(a, name);
        y = eng_safetensors_find(b, name);
        cr_assert(x && y && x->nbytes == y->nbytes, "%s", name);
        cr_assert_eq(memcmp(x->data, y->data, x->nbytes), 0, "%s", name);
    }
    eng_safetensors_close(a);
    eng_safetensors_close(b);
}

/* ---- refusals ---- */

Test(linearize, refuses_bad_inputs_and_outputs)
{
    eng_error err = {0};
    /* Missing input folder. */
    cr_assert_eq(run_lin("all", 0, 0, NULL, &err), ENG_ENOTFOUND);
    cr_assert_not_null(strstr(err.msg, "/in: no such folder"), "%s", err.msg);
    /* A folder without config or index. */
    mk("in");
    cr_assert_eq(run_lin("all", 0, 0, NULL, &err), ENG_ENOTFOUND);
    cr_assert_not_null(strstr(err.msg, "neither model_index.json"), "%s", err.msg);
    /* A config without weights. */
    put("in/config.json", tiny_config);
    cr_assert_eq(run_lin("all", 0, 0, NULL, &err), ENG_ENOTFOUND);
    cr_assert_not_null(strstr(err.msg, "no *.safetensors"), "%s", err.msg);
    cr_assert_eq(access(at("out"), F_OK), -1, "nothing may be written on a refusal");
    teardown();
    setup();

    make_input(LAYOUT_BARE, ENG_DTYPE_F32);
    /* A module the config does not have. */
    cr_assert_neq(run_lin("transformer_blocks.7.attn", 0, 0, NULL, &err), 0);
    cr_assert_not_null(strstr(err.msg, "transformer_blocks.7.attn"), "%s", err.msg);
    /* The output inside the input, or the input itself. */
    eng_linearize_opts o = {.map = "all"};
    cr_assert_eq(eng_linearize(at("in"), at("in/sub/out"), &o, NULL, &err), ENG_EINVAL);
    cr_assert_not_null(strstr(err.msg, "overlaps"), "%s", err.msg);
    o.force = 1;
    cr_assert_eq(eng_linearize(at("in"), at("in/"), &o, NULL, &err), ENG_EINVAL);
    cr_assert_eq(eng_linearize(at("in"), tmp, &o, NULL, &err), ENG_EINVAL);
    cr_assert_eq(access(at("in/sub"), F_OK), -1);
    /* A non-empty output folder, without and with --force (stale shards removed). */
    mk("out");
    put("out/diffusion_pytorch_model-00001-of-00009.safetensors", "stale");
    put("out/keep.txt", "mine");
    cr_assert_eq(run_lin("all", 0, 0, NULL, &err), ENG_EINVAL);
    cr_assert_not_null(strstr(err.msg, "not empty"), "%s", err.msg);
    cr_assert_eq(run_lin("all", 0, 1, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(access(at("out/diffusion_pytorch_model-00001-of-00009.safetensors"), F_OK), -1);
    cr_assert_eq(access(at("out/keep.txt"), F_OK), 0);
    check_inherited(at("in"), at("out"));
    /* Linearizing the result again: its config has a map. */
    eng_linearize_opts o2 = {.map = "all"};
    cr_assert_eq(eng_linearize(at("out"), at("out2"), &o2, NULL, &err), ENG_EINVAL);
    cr_assert_not_null(strstr(err.msg, "already has a TTT map"), "%s", err.msg);
    /* A module whose to_q.weight is missing. */
    teardown();
    setup();
    mk("in");
    put("in/config.json", tiny_config);
    eng_st_writer *w;
    uint64_t rs = 1;
    cr_assert_eq(eng_st_writer_init(&w, NULL), 0);
    add_random(w, "pos_embed", ENG_DTYPE_F32, ENG_SHAPE(1, 64, 32), &rs);
    add_random(w, "transformer_blocks.1.attn.w1", ENG_DTYPE_F32, ENG_SHAPE(2, 16, 16), &rs);
    add_random(w, "transformer_blocks.1.attn.to_q.weight", ENG_DTYPE_F32, ENG_SHAPE(32, 32), &rs);
    cr_assert_eq(eng_st_writer_write(w, at("in/m.safetensors"), NULL), 0);
    eng_st_writer_free(w);
    cr_assert_eq(run_lin("transformer_blocks.2.attn", 0, 0, NULL, &err), ENG_ENOTFOUND);
    cr_assert_not_null(strstr(err.msg, "transformer_blocks.2.attn.to_q.weight"), "%s", err.msg);
    /* A new tensor name the input already holds. */
    cr_assert_eq(run_lin("transformer_blocks.1.attn", 0, 0, NULL, &err), ENG_EINVAL);
    cr_assert_not_null(strstr(err.msg, "transformer_blocks.1.attn.w1"), "%s", err.msg);
    cr_assert_eq(access(at("out"), F_OK), -1);
}

/* ---- the reference fixtures (tests/fixtures/mmdit, written by tools/reference) ---- */

#define FIX "tests/fixtures/mmdit"

/* The output has exactly the tensor names, shapes and dtypes of the reference's TTT model. */
static void same_names_as(const char *dst, const char *ref)
{
    eng_safetensors *a, *b;
    cr_assert_eq(eng_safetensors_open_dir(&a, dst, NULL), 0);
    cr_assert_eq(eng_safetensors_open_dir(&b, ref, NULL), 0);
    cr_assert_eq(eng_safetensors_count(a), eng_safetensors_count(b), "%s", ref);
    for (size_t i = 0; i < eng_safetensors_count(b); i++) {
        const eng_st_tensor *y = eng_safetensors_at(b, i);
        const eng_st_tensor *x = eng_safetensors_find(a, y->name);
        cr_assert_not_null(x, "%s: no %s", dst, y->name);
        cr_assert(x->dtype == y->dtype && x->ndim == y->ndim &&
                      memcmp(x->shape, y->shape, sizeof(int64_t) * (size_t)x->ndim) == 0,
                  "%s", y->name);
    }
    eng_safetensors_close(a);
    eng_safetensors_close(b);
}

Test(linearize, reference_softmax_fixture_every_map_kind)
{
    static const struct {
        const char *map, *ref;
    } kinds[] = {
        {"transformer_blocks.0.attn2,transformer_blocks.2.attn", FIX "/ttt_mixed/transformer"},
        {"all", FIX "/ttt_all/transformer"},
        {"sd35-t5", FIX "/ttt_all/transformer"}, /* 3 blocks: sd35-t5 selects them all */
    };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        eng_linearize_opts o = {.map = kinds[k].map, .seed = 11, .force = 1};
        eng_linearize_report rep;
        eng_transformer_config cfg;
        eng_error err = {0};
        cr_assert_eq(eng_linearize(FIX "/softmax/transformer", at("out"), &o, &rep, &err), 0,
                     "%s: %s", kinds[k].map, err.msg);
        size_t n_src = check_inherited(FIX "/softmax/transformer", at("out"));
        cr_assert_eq(eng_config_load_transformer(at("out/config.json"), &cfg, &err), 0, "%s",
                     err.msg);
        char names[8][64];
        const char *mods[8];
        for (int i = 0; i < rep.num_modules; i++) {
            eng_linearize_module_name(&cfg, i, names[i], sizeof names[i], NULL, NULL);
            mods[i] = names[i];
        }
        check_new(at("out"), mods, rep.num_modules, ENG_DTYPE_F32, 11, n_src);
        same_names_as(at("out"), kinds[k].ref);
        /* The config: the reference's keys (as the helper wrote them) plus our map. */
        eng_transformer_config ref_cfg;
        char ref_path[256];
        snprintf(ref_path, sizeof ref_path, "%s/config.json", kinds[k].ref);
        cr_assert_eq(eng_config_load_transformer(ref_path, &ref_cfg, &err), 0, "%s", err.msg);
        cr_assert_arr_eq(cfg.ttt_attn, ref_cfg.ttt_attn, sizeof cfg.ttt_attn);
        cr_assert_arr_eq(cfg.ttt_attn2, ref_cfg.ttt_attn2, sizeof cfg.ttt_attn2);
    }
}

/* ---- the result loads, runs, and its untouched modules match the source's ---- */

static eng_tensor io_tensor(eng_safetensors *io, eng_backend *be, const char *name)
{
    eng_tensor t;
    const eng_st_tensor *s = eng_safetensors_find(io, name);
    cr_assert_not_null(s, "io tensor %s missing", name);
    cr_assert_eq(eng_tensor_init(&t, be, ENG_DTYPE_F32, s->ndim, s->shape, NULL), 0);
    cr_assert_eq(eng_st_tensor_to_f32(s, t.data, NULL), 0);
    return t;
}

static int same_tensor(const eng_tensor *a, const eng_tensor *b)
{
    return eng_tensor_same_shape(a, b) &&
           memcmp(a->data, b->data, eng_tensor_nbytes(a)) == 0;
}

Test(linearize, result_runs_and_untouched_modules_match_the_source)
{
    eng_error err = {0};
    eng_backend *cpu = eng_backend_cpu_create(&err);
    eng_safetensors *io;
    eng_mmdit *src, *lin;
    cr_assert_not_null(cpu, "%s", err.msg);
    cr_assert_eq(eng_safetensors_open(&io, FIX "/io.safetensors", &err), 0, "%s", err.msg);
    /* attn2 of block 0 and the joint attn of block 2 become TTT; block 1 is untouched, and so is
     * block 0's joint attn, the only attention its context stream goes through. */
    eng_linearize_opts o = {.map = "transformer_blocks.0.attn2,transformer_blocks.2.attn",
                            .seed = 1};
    cr_assert_eq(eng_linearize(FIX "/softmax/transformer", at("out"), &o, NULL, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(eng_mmdit_load(&src, FIX "/softmax/transformer", cpu, ENG_DTYPE_F32, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(eng_mmdit_load(&lin, at("out"), cpu, ENG_DTYPE_F32, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_mmdit_config(lin)->num_ttt_modules, 2);

    eng_tensor temb = io_tensor(io, cpu, "softmax.temb");
    for (int i = 0; i < 3; i++) {
        char name[64];
        eng_tensor h[2], c[2];
        for (int k = 0; k < 2; k++) {
            snprintf(name, sizeof name, "softmax.block%d.hidden_in", i);
            h[k] = io_tensor(io, cpu, name);
            snprintf(name, sizeof name, "softmax.block%d.context_in", i);
            c[k] = io_tensor(io, cpu, name);
        }
        cr_assert_eq(eng_mmdit_block(src, i, &h[0], &c[0], &temb, 4, 6, &err), 0, "%s", err.msg);
        cr_assert_eq(eng_mmdit_block(lin, i, &h[1], &c[1], &temb, 4, 6, &err), 0, "%s", err.msg);
        int same_h = same_tensor(&h[0], &h[1]), same_c = same_tensor(&c[0], &c[1]);
        if (i == 1)
            cr_assert(same_h && same_c, "block 1 is untouched, yet its output changed");
        else
            cr_assert(!same_h, "block %d has a TTT module, yet its image output is the same", i);
        if (i == 0)
            cr_assert(same_c, "block 0's context goes through its softmax attn only");
        for (int k = 0; k < 2; k++) {
            cr_assert_eq(tu_has_nan(h[k].data, eng_tensor_numel(&h[k])), 0);
            eng_tensor_free(&h[k]);
            eng_tensor_free(&c[k]);
        }
    }

    /* The whole linearized model: finite output of the right shape, not the softmax one. */
    eng_tensor x = io_tensor(io, cpu, "x"), ctx = io_tensor(io, cpu, "ctx");
    eng_tensor pooled = io_tensor(io, cpu, "pooled"), t = io_tensor(io, cpu, "t");
    eng_tensor out[2];
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(eng_tensor_init(&out[k], cpu, ENG_DTYPE_F32, ENG_SHAPE(2, 4, 8, 12), NULL), 0);
        tu_poison(out[k].data, eng_tensor_numel(&out[k]));
        cr_assert_eq(eng_mmdit_forward(k ? lin : src, &x, t.data, &ctx, &pooled, &out[k], &err), 0,
                     "%s", err.msg);
    }
    for (int64_t i = 0; i < eng_tensor_numel(&out[1]); i++)
        cr_assert(isfinite(((float *)out[1].data)[i]), "out[%lld] is not finite", (long long)i);
    cr_assert(!same_tensor(&out[0], &out[1]));
    eng_tensor ts[] = {temb, x, ctx, pooled, t, out[0], out[1]};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        eng_tensor_free(&ts[i]);
    eng_mmdit_free(src);
    eng_mmdit_free(lin);
    eng_safetensors_close(io);
    eng_backend_destroy(cpu);
}

/* Every map kind of a bigger map loads and runs too (all modules TTT, BF16 weights read as F32). */
Test(linearize, all_map_result_runs)
{
    eng_error err = {0};
    eng_backend *cpu = eng_backend_cpu_create(&err);
    eng_safetensors *io;
    eng_mmdit *lin;
    cr_assert_not_null(cpu, "%s", err.msg);
    cr_assert_eq(eng_safetensors_open(&io, FIX "/io.safetensors", &err), 0, "%s", err.msg);
    eng_linearize_opts o = {.map = "all", .seed = 2};
    cr_assert_eq(eng_linearize(FIX "/softmax/transformer", at("out"), &o, NULL, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(eng_mmdit_load(&lin, at("out"), cpu, ENG_DTYPE_F32, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_mmdit_config(lin)->num_ttt_modules, 4);
    eng_tensor x = io_tensor(io, cpu, "x"), ctx = io_tensor(io, cpu, "ctx");
    eng_tensor pooled = io_tensor(io, cpu, "pooled"), t = io_tensor(io, cpu, "t"), out;
    cr_assert_eq(eng_tensor_init(&out, cpu, ENG_DTYPE_F32, ENG_SHAPE(2, 4, 8, 12), NULL), 0);
    tu_poison(out.data, eng_tensor_numel(&out));
    cr_assert_eq(eng_mmdit_forward(lin, &x, t.data, &ctx, &pooled, &out, &err), 0, "%s", err.msg);
    for (int64_t i = 0; i < eng_tensor_numel(&out); i++)
        cr_assert(isfinite(((float *)out.data)[i]), "out[%lld] is not finite", (long long)i);
    eng_tensor ts[] = {x, ctx, pooled, t, out};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        eng_tensor_free(&ts[i]);
    eng_mmdit_free(lin);
    eng_safetensors_close(io);
    eng_backend_destroy(cpu);
}
