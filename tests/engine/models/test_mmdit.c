/*
 * test_mmdit.c - engine/mmdit*.c against the PyTorch reference's tiny SD3.5 models
 * (tests/fixtures/mmdit/, see its README): for the softmax, ttt_mixed and ttt_all variants every
 * stage (time + pooled embedding, patch embedding, context embedding, each joint block given its
 * reference inputs) and the whole forward pass; the SAI single-file checkpoint giving the softmax
 * output with its config derived from shapes; batch independence and arena reuse; and the
 * errors (a missing or misshapen tensor named, a bad latent size, a wrong text width).
 * Tolerance: max|out - ref| / max|ref| <= 1e-4.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/models/mmdit.h"
#include "engine/models/mmdit_internal.h"
#include "engine/io/safetensors.h"

#define FIX "tests/fixtures/mmdit"
#define TOL 1e-4

static eng_backend *cpu;
static eng_safetensors *io;

static void setup(void)
{
    eng_error err = {0};
    cpu = eng_backend_cpu_create(&err);
    cr_assert_not_null(cpu, "%s", err.msg);
    cr_assert_eq(eng_safetensors_open(&io, FIX "/io.safetensors", &err), 0, "%s", err.msg);
}

static void teardown(void)
{
    eng_safetensors_close(io);
    eng_backend_destroy(cpu);
}

TestSuite(mmdit, .init = setup, .fini = teardown);

/* ---- helpers ---- */

/* An owned CPU F32 copy of io's tensor "<prefix><name>". */
static eng_tensor fixture(const char *prefix, const char *name)
{
    char full[128];
    eng_error err = {0};
    eng_tensor t;
    snprintf(full, sizeof full, "%s%s", prefix, name);
    const eng_st_tensor *s = eng_safetensors_find(io, full);
    cr_assert_not_null(s, "fixture tensor %s missing", full);
    cr_assert_eq(eng_tensor_init(&t, cpu, ENG_DTYPE_F32, s->ndim, s->shape, &err), 0);
    cr_assert_eq(eng_st_tensor_to_f32(s, t.data, &err), 0, "%s", err.msg);
    return t;
}

static eng_tensor empty(int ndim, const int64_t *shape)
{
    eng_error err = {0};
    eng_tensor t;
    cr_assert_eq(eng_tensor_init(&t, cpu, ENG_DTYPE_F32, ndim, shape, &err), 0, "%s", err.msg);
    for (int64_t i = 0; i < eng_tensor_numel(&t); i++)
        ((float *)t.data)[i] = NAN; /* an element never written shows up */
    return t;
}

/* max|a - ref| / max|ref| over n values (inf with a NaN in a). */
static double rel_err(const float *a, const float *ref, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i]))
            return INFINITY;
        double d = fabs((double)a[i] - ref[i]);
        num = d > num ? d : num;
        den = fabs((double)ref[i]) > den ? fabs((double)ref[i]) : den;
    }
    return den > 0 ? num / den : num;
}

static void expect_close(const eng_tensor *a, const eng_tensor *ref, const char *what)
{
    cr_assert(eng_tensor_same_shape(a, ref), "%s: shapes differ", what);
    double e = rel_err(a->data, ref->data, eng_tensor_numel(ref));
    cr_assert(e <= TOL, "%s: relative error %.3g > %g", what, e, TOL);
}

static eng_mmdit *load(const char *path)
{
    eng_error err = {0};
    eng_mmdit *m = NULL;
    cr_assert_eq(eng_mmdit_load(&m, path, cpu, ENG_DTYPE_F32, &err), 0, "%s: %s", path, err.msg);
    return m;
}

/* io's "t" as host floats. */
static void timesteps(float t[2])
{
    eng_tensor tt = fixture("", "t");
    memcpy(t, tt.data, 2 * sizeof *t);
    eng_tensor_free(&tt);
}

static void free_all(eng_tensor *ts, int n)
{
    for (int i = 0; i < n; i++)
        eng_tensor_free(&ts[i]);
}

/* ---- every stage of one variant ---- */

static void check_stages(const char *variant)
{
    char path[128], pre[32], what[64];
    eng_error err = {0};
    float t[2];
    snprintf(path, sizeof path, FIX "/%s/transformer", variant);
    snprintf(pre, sizeof pre, "%s.", variant);
    eng_mmdit *m = load(path);
    timesteps(t);

    eng_tensor x = fixture("", "x"), ctx = fixture("", "ctx"), pooled = fixture("", "pooled");
    eng_tensor temb_ref = fixture(pre, "temb"), h0_ref = fixture(pre, "hidden0");
    eng_tensor c0_ref = fixture(pre, "context0");
    eng_tensor temb = empty(ENG_SHAPE(2, 32)), h0 = empty(ENG_SHAPE(2, 24, 32));
    eng_tensor c0 = empty(ENG_SHAPE(2, 5, 32));

    cr_assert_eq(eng_mmdit_time_embed(m, t, &pooled, &temb, &err), 0, "%s", err.msg);
    expect_close(&temb, &temb_ref, "temb");
    cr_assert_eq(eng_mmdit_patch_embed(m, &x, &h0, &err), 0, "%s", err.msg);
    expect_close(&h0, &h0_ref, "hidden0");
    cr_assert_eq(eng_mmdit_context_embed(m, &ctx, &c0, &err), 0, "%s", err.msg);
    expect_close(&c0, &c0_ref, "context0");

    for (int i = 0; i < 3; i++) {
        char blk[32];
        snprintf(blk, sizeof blk, "%s.block%d.", variant, i);
        eng_tensor h = fixture(blk, "hidden_in"), c = fixture(blk, "context_in");
        eng_tensor c_in = fixture(blk, "context_in"), h_ref = fixture(blk, "hidden_out");
        cr_assert_eq(eng_mmdit_block(m, i, &h, &c, &temb_ref, 4, 6, &err), 0, "%s", err.msg);
        snprintf(what, sizeof what, "%s block %d hidden", variant, i);
        expect_close(&h, &h_ref, what);
        snprintf(what, sizeof what, "%s block %d context", variant, i);
        if (i < 2) {
            eng_tensor c_ref = fixture(blk, "context_out");
            expect_close(&c, &c_ref, what);
            eng_tensor_free(&c_ref);
        } else { /* context_pre_only: the context is not touched */
            cr_assert_eq(memcmp(c.data, c_in.data, eng_tensor_nbytes(&c)), 0, "%s", what);
        }
        eng_tensor ts[] = {h, c, c_in, h_ref};
        free_all(ts, 4);
    }
    eng_tensor ts[] = {x, ctx, pooled, temb_ref, h0_ref, c0_ref, temb, h0, c0};
    free_all(ts, 9);
    eng_mmdit_free(m);
}

/* The whole forward; then again (now from the grown arena), and sample 0 alone. */
static void check_forward(eng_mmdit *m, const char *variant)
{
    char pre[32];
    eng_error err = {0};
    float t[2];
    snprintf(pre, sizeof pre, "%s.", variant);
    timesteps(t);
    eng_tensor x = fixture("", "x"), ctx = fixture("", "ctx"), pooled = fixture("", "pooled");
    eng_tensor ref = fixture(pre, "out"), out = empty(ENG_SHAPE(2, 4, 8, 12));

    cr_assert_eq(eng_mmdit_forward(m, &x, t, &ctx, &pooled, &out, &err), 0, "%s", err.msg);
    expect_close(&out, &ref, variant);
    /* Everything given back, and the arena grown to one block of the high-water size. */
    cr_assert(m->arena.used == 0 && m->arena.novf == 0 && m->arena.cap >= m->arena.peak);
    cr_assert_gt(m->arena.cap, 0);
    eng_tensor out2 = empty(ENG_SHAPE(2, 4, 8, 12));
    cr_assert_eq(eng_mmdit_forward(m, &x, t, &ctx, &pooled, &out2, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(out.data, out2.data, eng_tensor_nbytes(&out)), 0, "second run differs");
    cr_assert(m->arena.used == 0 && m->arena.novf == 0);

    /* Batch of one: views of sample 0 must give sample 0's output. */
    eng_tensor x1 = eng_tensor_view(x.data, cpu, ENG_DTYPE_F32, ENG_SHAPE(1, 4, 8, 12));
    eng_tensor c1 = eng_tensor_view(ctx.data, cpu, ENG_DTYPE_F32, ENG_SHAPE(1, 5, 24));
    eng_tensor p1 = eng_tensor_view(pooled.data, cpu, ENG_DTYPE_F32, ENG_SHAPE(1, 20));
    eng_tensor r1 = eng_tensor_view(ref.data, cpu, ENG_DTYPE_F32, ENG_SHAPE(1, 4, 8, 12));
    eng_tensor o1 = empty(ENG_SHAPE(1, 4, 8, 12));
    cr_assert_eq(eng_mmdit_forward(m, &x1, t, &c1, &p1, &o1, &err), 0, "%s", err.msg);
    expect_close(&o1, &r1, "sample 0 alone");

    eng_tensor ts[] = {x, ctx, pooled, ref, out, out2, o1};
    free_all(ts, 7);
}

Test(mmdit, softmax_stages)
{
    check_stages("softmax");
}

Test(mmdit, ttt_mixed_stages)
{
    check_stages("ttt_mixed");
}

Test(mmdit, ttt_all_stages)
{
    check_stages("ttt_all");
}

Test(mmdit, forward_all_variants)
{
    static const char *const variants[] = {"softmax", "ttt_mixed", "ttt_all"};
    for (int v = 0; v < 3; v++) {
        char path[128];
        snprintf(path, sizeof path, FIX "/%s/transformer", variants[v]);
        eng_mmdit *m = load(path);
        check_forward(m, variants[v]);
        eng_mmdit_free(m);
    }
}

Test(mmdit, config_and_ttt_map)
{
    eng_mmdit *m = load(FIX "/ttt_mixed/transformer");
    const eng_transformer_config *c = eng_mmdit_config(m);
    cr_assert_eq(eng_mmdit_backend(m), cpu);
    cr_assert_eq(c->num_layers, 3);
    cr_assert_eq(c->num_ttt_modules, 2);
    cr_assert(c->ttt_attn2[0] && c->ttt_attn[2] && !c->ttt_attn[0] && !c->ttt_attn[1]);
    /* The TTT modules got their parameters; the others did not. */
    cr_assert(m->blocks[0].attn2.ttt && m->blocks[0].attn2.w1 && m->blocks[2].attn.kconv_b);
    cr_assert(!m->blocks[0].attn.ttt && !m->blocks[0].attn.w1);
    cr_assert(m->blocks[2].pre_only && !m->blocks[2].attn.aout_w && !m->blocks[2].ffc1_w);
    cr_assert_eq(eng_weights_count(m->weights), 129); /* every tensor of the file */
    eng_mmdit_free(m);
    eng_mmdit_free(NULL);
}

Test(mmdit, sai_single_file)
{
    eng_mmdit *m = load(FIX "/sai/softmax.safetensors");
    const eng_transformer_config *c = eng_mmdit_config(m);
    cr_assert_eq(c->num_layers, 3);
    cr_assert_eq(c->num_attention_heads, 2);
    cr_assert_eq(c->attention_head_dim, 16);
    cr_assert_eq(c->inner_dim, 32);
    cr_assert_eq(c->patch_size, 2);
    cr_assert_eq(c->in_channels, 4);
    cr_assert_eq(c->out_channels, 4);
    cr_assert_eq(c->joint_attention_dim, 24);
    cr_assert_eq(c->pooled_projection_dim, 20);
    cr_assert_eq(c->pos_embed_max_size, 8);
    cr_assert_eq(c->qk_norm, ENG_QK_NORM_RMS);
    cr_assert_eq(c->num_dual_attention_layers, 1);
    cr_assert(c->dual_attention[0]);
    cr_assert_eq(c->num_ttt_modules, 0);
    cr_assert_eq(eng_weights_count(m->weights), 117); /* diffusers' tensor count */
    check_forward(m, "softmax");
    eng_mmdit_free(m);
}

/* ---- errors ---- */

#define EXPECT_ERR(call, code_, ...)                                                               \
    do {                                                                                           \
        eng_error e_ = {0};                                                                        \
        int rc_ = (call);                                                                          \
        cr_assert_eq(rc_, (code_), "rc %d msg '%s'", rc_, e_.msg);                                 \
        const char *needles_[] = {__VA_ARGS__};                                                    \
        for (size_t i_ = 0; i_ < sizeof needles_ / sizeof *needles_; i_++)                         \
            cr_assert(strstr(e_.msg, needles_[i_]), "message '%s' lacks '%s'", e_.msg,             \
                      needles_[i_]);                                                               \
    } while (0)

/*
 * A transformer folder in /tmp with config.json from cfg_variant and the softmax weights, less
 * the tensor `drop` and with `reshape` (when not NULL) written as [32, 25] instead.
 */
static char *make_model(const char *cfg_variant, const char *drop, const char *reshape)
{
    char tmpl[] = "/tmp/tttd-mmdit-XXXXXX", p[256], buf[4096];
    eng_error err = {0};
    eng_safetensors *st;
    eng_st_writer *w;
    char *dir = mkdtemp(tmpl);
    cr_assert_not_null(dir);
    dir = strdup(dir);

    snprintf(p, sizeof p, FIX "/%s/transformer/config.json", cfg_variant);
    FILE *in = fopen(p, "rb");
    cr_assert_not_null(in);
    size_t n = fread(buf, 1, sizeof buf, in);
    fclose(in);
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *out = fopen(p, "wb");
    cr_assert_not_null(out);
    cr_assert_eq(fwrite(buf, 1, n, out), n);
    fclose(out);

    cr_assert_eq(eng_safetensors_open_dir(&st, FIX "/softmax/transformer", &err), 0, "%s",
                 err.msg);
    cr_assert_eq(eng_st_writer_init(&w, &err), 0);
    for (size_t i = 0; i < eng_safetensors_count(st); i++) {
        const eng_st_tensor *t = eng_safetensors_at(st, i);
        if (drop && strcmp(t->name, drop) == 0)
            continue;
        if (reshape && strcmp(t->name, reshape) == 0) {
            float z[32 * 25] = {0};
            cr_assert_eq(eng_st_writer_add(w, t->name, ENG_DTYPE_F32, ENG_SHAPE(32, 25), z, &err),
                         0);
            continue;
        }
        cr_assert_eq(eng_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err), 0,
                     "%s", err.msg);
    }
    snprintf(p, sizeof p, "%s/diffusion_pytorch_model.safetensors", dir);
    cr_assert_eq(eng_st_writer_write(w, p, &err), 0, "%s", err.msg);
    eng_st_writer_free(w);
    eng_safetensors_close(st);
    return dir;
}

static void remove_model(char *dir)
{
    char p[256];
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/diffusion_pytorch_model.safetensors", dir);
    unlink(p);
    rmdir(dir);
    free(dir);
}

Test(mmdit, load_errors_name_the_tensor)
{
    eng_mmdit *m = NULL;
    char *dir = make_model("softmax", "transformer_blocks.1.attn.to_k.bias", NULL);
    EXPECT_ERR(eng_mmdit_load(&m, dir, cpu, ENG_DTYPE_F32, &e_), ENG_ENOTFOUND,
               "\"transformer_blocks.1.attn.to_k.bias\"", "missing", "[32]");
    cr_assert_null(m);
    remove_model(dir);

    dir = make_model("softmax", NULL, "context_embedder.weight");
    EXPECT_ERR(eng_mmdit_load(&m, dir, cpu, ENG_DTYPE_F32, &e_), ENG_EFORMAT,
               "\"context_embedder.weight\"", "[32, 25]", "expected [32, 24]");
    remove_model(dir);

    /* A TTT config over softmax weights: the first TTT parameter is missing. */
    dir = make_model("ttt_mixed", NULL, NULL);
    EXPECT_ERR(eng_mmdit_load(&m, dir, cpu, ENG_DTYPE_F32, &e_), ENG_ENOTFOUND,
               "\"transformer_blocks.0.attn2.w1\"", "[2, 16, 16]");
    remove_model(dir);

    EXPECT_ERR(eng_mmdit_load(&m, FIX "/nonexistent", cpu, ENG_DTYPE_F32, &e_), ENG_ENOTFOUND,
               "nonexistent");
    EXPECT_ERR(eng_mmdit_load(&m, FIX "/softmax/transformer", cpu, ENG_DTYPE_BF16, &e_),
               ENG_EUNSUPPORTED, "CPU", "BF16");
    /* A single file in the diffusers layout is not an SAI checkpoint. */
    EXPECT_ERR(eng_mmdit_load(&m, FIX "/softmax/transformer/diffusion_pytorch_model.safetensors",
                              cpu, ENG_DTYPE_F32, &e_),
               ENG_EFORMAT, "not an SAI", "x_embedder.proj.weight");
    cr_assert_null(m);
}

Test(mmdit, forward_errors)
{
    eng_mmdit *m = load(FIX "/softmax/transformer");
    float t[2] = {500.0f, 500.0f};
    eng_tensor x = empty(ENG_SHAPE(2, 4, 8, 12)), ctx = empty(ENG_SHAPE(2, 5, 24));
    eng_tensor pooled = empty(ENG_SHAPE(2, 20)), out = empty(ENG_SHAPE(2, 4, 8, 12));
    eng_tensor x_odd = empty(ENG_SHAPE(2, 4, 9, 12)), out_odd = empty(ENG_SHAPE(2, 4, 9, 12));
    eng_tensor x_big = empty(ENG_SHAPE(2, 4, 18, 4)), out_big = empty(ENG_SHAPE(2, 4, 18, 4));
    eng_tensor ctx_wide = empty(ENG_SHAPE(2, 5, 25)), x_ch = empty(ENG_SHAPE(2, 3, 8, 12));
    eng_tensor pooled_bad = empty(ENG_SHAPE(2, 21)), out_bad = empty(ENG_SHAPE(2, 4, 8, 10));

    EXPECT_ERR(eng_mmdit_forward(m, &x_odd, t, &ctx, &pooled, &out_odd, &e_), ENG_EINVAL,
               "x has shape [2, 4, 9, 12]", "patch_size 2");
    EXPECT_ERR(eng_mmdit_forward(m, &x_big, t, &ctx, &pooled, &out_big, &e_), ENG_EINVAL,
               "9 x 2 patch grid", "pos_embed_max_size 8");
    EXPECT_ERR(eng_mmdit_forward(m, &x, t, &ctx_wide, &pooled, &out, &e_), ENG_EINVAL,
               "ctx has shape [2, 5, 25]", "expected [2, Nt, 24]", "joint_attention_dim");
    EXPECT_ERR(eng_mmdit_forward(m, &x_ch, t, &ctx, &pooled, &out, &e_), ENG_EINVAL,
               "x has shape [2, 3, 8, 12]", "[B, 4, H, W]");
    EXPECT_ERR(eng_mmdit_forward(m, &x, t, &ctx, &pooled_bad, &out, &e_), ENG_EINVAL,
               "pooled has shape [2, 21]", "[2, 20]");
    EXPECT_ERR(eng_mmdit_forward(m, &x, t, &ctx, &pooled, &out_bad, &e_), ENG_EINVAL,
               "out has shape [2, 4, 8, 10]", "[2, 4, 8, 12]");
    EXPECT_ERR(eng_mmdit_forward(m, &x, NULL, &ctx, &pooled, &out, &e_), ENG_EINVAL, "t is NULL");
    EXPECT_ERR(eng_mmdit_block(m, 3, &out, &ctx, &pooled, 4, 6, &e_), ENG_EINVAL, "block 3");

    eng_tensor ts[] = {x, ctx, pooled, out, x_odd, out_odd, x_big, out_big, ctx_wide, x_ch,
                       pooled_bad, out_bad};
    free_all(ts, 12);
    eng_mmdit_free(m);
}

/* The SAI file rewritten: names without the "model.diffusion_model." prefix, less `drop`. */
static void write_sai_copy(const char *path, int strip, const char *drop)
{
    eng_error err = {0};
    eng_safetensors *st;
    eng_st_writer *w;
    cr_assert_eq(eng_safetensors_open(&st, FIX "/sai/softmax.safetensors", &err), 0, "%s",
                 err.msg);
    cr_assert_eq(eng_st_writer_init(&w, &err), 0);
    for (size_t i = 0; i < eng_safetensors_count(st); i++) {
        const eng_st_tensor *t = eng_safetensors_at(st, i);
        if (drop && strcmp(t->name, drop) == 0)
            continue;
        const char *name = strip ? t->name + strlen("model.diffusion_model.") : t->name;
        cr_assert_eq(eng_st_writer_add(w, name, t->dtype, t->ndim, t->shape, t->data, &err), 0,
                     "%s", err.msg);
    }
    cr_assert_eq(eng_st_writer_write(w, path, &err), 0, "%s", err.msg);
    eng_st_writer_free(w);
    eng_safetensors_close(st);
}

Test(mmdit, sai_without_prefix_and_missing_tensor)
{
    char path[64];
    eng_mmdit *m = NULL;
    snprintf(path, sizeof path, "/tmp/tttd-sai-%d.safetensors", (int)getpid());

    write_sai_copy(path, 1, NULL); /* the transformer alone, as some tools save it */
    m = load(path);
    check_forward(m, "softmax");
    eng_mmdit_free(m);
    m = NULL;

    write_sai_copy(path, 0, "model.diffusion_model.joint_blocks.1.context_block.attn.qkv.bias");
    EXPECT_ERR(eng_mmdit_load(&m, path, cpu, ENG_DTYPE_F32, &e_), ENG_ENOTFOUND,
               "\"model.diffusion_model.joint_blocks.1.context_block.attn.qkv.bias\"",
               "for transformer_blocks.1.attn.add_q_proj.bias", "[96]");
    cr_assert_null(m);

    write_sai_copy(path, 0, "model.diffusion_model.pos_embed");
    EXPECT_ERR(eng_mmdit_load(&m, path, cpu, ENG_DTYPE_F32, &e_), ENG_ENOTFOUND,
               "\"model.diffusion_model.pos_embed\"");
    unlink(path);
}
