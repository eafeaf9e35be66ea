/*
 * test_sampler.c - the flow-matching sampler (engine/sampler.h): sigma schedules against the
 * PyTorch reference (tests/fixtures/sampler/sigmas.safetensors) and hand-computed values, the
 * Euler step and guidance against naive loops, the batched loop against a naive per-sample loop
 * with an analytic stand-in model (batch layout, one forward per step, guidance <= 1 skipping the
 * unconditional pass, BF16 model dtype, cancellation, errors), the initial-latents file, and
 * the whole loop with the tiny TTT model against tests/fixtures/sampler/loop.safetensors.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/core/rng.h"
#include "engine/io/safetensors.h"
#include "engine/sampler.h"
#include "tests/common/test_util.h"

static eng_backend *cpu;
static uint64_t seed_state = 99;

static void setup(void)
{
    eng_error err = {0};
    cpu = eng_backend_cpu_create(&err);
    cr_assert_not_null(cpu, "%s", err.msg);
}

static void teardown(void)
{
    eng_backend_destroy(cpu);
}

TestSuite(sampler, .init = setup, .fini = teardown);

static eng_scheduler_config sched_cfg(double shift)
{
    eng_scheduler_config c;
    eng_error err = {0};
    cr_assert_eq(eng_config_parse_scheduler("{}", 2, "test", &c, &err), 0, "%s", err.msg);
    c.shift = shift;
    return c;
}

/* A fixture tensor as a malloc'd float array; n receives its element count. */
static float *fixture(eng_safetensors *st, const char *name, int64_t *n)
{
    eng_error err = {0};
    const eng_st_tensor *t = eng_safetensors_find(st, name);
    cr_assert_not_null(t, "fixture tensor %s missing", name);
    int64_t count = 1;
    for (int i = 0; i < t->ndim; i++)
        count *= t->shape[i];
    float *x = tu_alloc(count);
    cr_assert_eq(eng_st_tensor_to_f32(t, x, &err), 0, "%s", err.msg);
    if (n)
        *n = count;
    return x;
}

/* ---- schedules ---- */

Test(sampler, schedule_matches_reference)
{
    eng_safetensors *st = NULL;
    eng_error err = {0};
    cr_assert_eq(eng_safetensors_open(&st, "tests/fixtures/sampler/sigmas.safetensors", &err), 0,
                 "%s", err.msg);
    eng_scheduler_config cfg_file;
    cr_assert_eq(
        eng_config_load_scheduler("tests/fixtures/sampler/scheduler_config.json", &cfg_file, &err),
        0, "%s", err.msg);
    cr_assert_eq(cfg_file.shift, 3.0);
    const int steps[4] = {1, 4, 28, 40};
    for (int variant = 0; variant < 2; variant++) {
        eng_scheduler_config cfg = variant == 0 ? cfg_file : sched_cfg(1.0);
        const char *prefix = variant == 0 ? "" : "shift1_";
        for (int k = 0; k < 4; k++) {
            int n = steps[k];
            char name[64];
            int64_t count;
            float sig[41], ts[40];
            cr_assert_eq(eng_flow_schedule(&cfg, n, sig, ts, &err), 0, "%s", err.msg);
            snprintf(name, sizeof name, "%ssigmas_%d", prefix, n);
            float *want = fixture(st, name, &count);
            cr_assert_eq(count, n + 1, "%s", name);
            for (int i = 0; i <= n; i++)
                cr_assert(fabsf(sig[i] - want[i]) <= 1e-6f, "%s[%d]: %.9g, want %.9g", name, i,
                          sig[i], want[i]);
            /* Same float operations as diffusers: equal to the last bit. */
            cr_assert_eq(memcmp(sig, want, (size_t)(n + 1) * sizeof *sig), 0, "%s not bitwise",
                         name);
            free(want);
            snprintf(name, sizeof name, "%stimesteps_%d", prefix, n);
            want = fixture(st, name, &count);
            cr_assert_eq(count, n, "%s", name);
            for (int i = 0; i < n; i++)
                cr_assert_eq(ts[i], want[i], "%s[%d]: %.9g, want %.9g", name, i, ts[i], want[i]);
            free(want);
        }
    }
    eng_safetensors_close(st);
}

Test(sampler, schedule_hand_values)
{
    eng_error err = {0};
    float sig[41], ts[40];
    eng_scheduler_config c3 = sched_cfg(3.0), c1 = sched_cfg(1.0);

    cr_assert_eq(eng_flow_schedule(&c3, 1, sig, ts, &err), 0, "%s", err.msg);
    cr_assert_eq(sig[0], 1.0f);
    cr_assert_eq(sig[1], 0.0f);
    cr_assert_eq(ts[0], 1000.0f);

    /* Unshifted: linspace(1000, 1, 4) / 1000 = 1, 0.667, 0.334, 0.001. */
    cr_assert_eq(eng_flow_schedule(&c1, 4, sig, ts, &err), 0, "%s", err.msg);
    const float lin[5] = {1.0f, 0.667f, 0.334f, 0.001f, 0.0f};
    for (int i = 0; i < 5; i++)
        cr_assert_float_eq(sig[i], lin[i], 1e-7, "sigma %d = %.9g", i, sig[i]);
    cr_assert_float_eq(ts[1], 667.0f, 1e-4);

    /* diffusers shifts the already-shifted end points again: shift 3 twice is 9s / (1 + 8s), so
     * the last sigma is 0.009 / 1.008 = 1/112, and a midpoint is the double shift of the
     * unshifted linspace. */
    cr_assert_eq(eng_flow_schedule(&c3, 28, sig, ts, &err), 0, "%s", err.msg);
    cr_assert_float_eq(sig[27], 1.0 / 112.0, 2e-8, "last sigma %.9g", sig[27]);
    cr_assert_eq(sig[0], 1.0f);
    cr_assert_eq(sig[28], 0.0f);
    for (int i = 1; i < 28; i++) {
        cr_assert_lt(sig[i], sig[i - 1]);
        cr_assert_eq(ts[i], sig[i] * 1000.0f);
    }
    cr_assert_eq(eng_flow_schedule(&c3, 2, sig, ts, &err), 0, "%s", err.msg);
    cr_assert_float_eq(sig[1], 1.0 / 112.0, 2e-8);
}

Test(sampler, schedule_options)
{
    eng_error err = {0};
    float sig[11], ts[10], base[11], bts[10];
    eng_scheduler_config c = sched_cfg(3.0);
    cr_assert_eq(eng_flow_schedule(&c, 10, base, bts, &err), 0, "%s", err.msg);

    eng_scheduler_config inv = c;
    inv.invert_sigmas = 1;
    cr_assert_eq(eng_flow_schedule(&inv, 10, sig, ts, &err), 0, "%s", err.msg);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(sig[i], 1.0f - base[i]);
        cr_assert_eq(ts[i], sig[i] * 1000.0f);
    }
    cr_assert_eq(sig[10], 1.0f);

    eng_scheduler_config term = c;
    term.shift_terminal = 0.1;
    cr_assert_eq(eng_flow_schedule(&term, 10, sig, ts, &err), 0, "%s", err.msg);
    cr_assert_float_eq(sig[9], 0.1f, 1e-7, "terminal sigma %.9g", sig[9]);
    cr_assert_eq(sig[0], 1.0f); /* 1 - 0 / scale */
    double scale = (1.0 - (double)(1.0 / 112.0)) / 0.9;
    cr_assert_float_eq(sig[5], 1.0 - (1.0 - base[5]) / scale, 1e-6);

    /* Dynamic shifting: the unshifted linspace through exp(mu) / (exp(mu) + 1/s - 1). */
    eng_scheduler_config dyn = sched_cfg(1.0);
    dyn.use_dynamic_shifting = 1;
    cr_assert_eq(eng_flow_schedule(&dyn, 10, sig, ts, &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "mu"), "%s", err.msg);
    double mu = eng_flow_sd3_mu(&dyn, 1024);
    cr_assert_float_eq(mu, 0.5 + (1024.0 - 256.0) * 0.65 / 3840.0, 1e-12);
    cr_assert_float_eq(eng_flow_sd3_mu(&dyn, 256), 0.5, 1e-12);
    cr_assert_float_eq(eng_flow_sd3_mu(&dyn, 4096), 1.15, 1e-12);
    cr_assert_eq(eng_flow_schedule_mu(&dyn, 10, mu, sig, ts, &err), 0, "%s", err.msg);
    for (int i = 0; i < 10; i++) {
        double s = (1000.0 + i * ((double)0.001f * 1000.0 - 1000.0) / 9.0) / 1000.0;
        double want = exp(mu) / (exp(mu) + 1.0 / s - 1.0);
        cr_assert_float_eq(sig[i], want, 1e-6, "dynamic sigma %d %.9g want %.9g", i, sig[i], want);
    }
    dyn.time_shift_type = ENG_TIME_SHIFT_LINEAR;
    cr_assert_eq(eng_flow_schedule_mu(&dyn, 10, 2.0, sig, ts, &err), 0, "%s", err.msg);
    cr_assert_float_eq(sig[9], 2.0 / (2.0 + 1.0 / (double)0.001f - 1.0), 1e-7);

    cr_assert_eq(eng_flow_schedule(&c, 0, sig, ts, &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "steps = 0"), "%s", err.msg);
}

/* ---- one step ---- */

static eng_tensor rnd(int ndim, const int64_t *shape)
{
    eng_tensor t;
    eng_error err = {0};
    cr_assert_eq(eng_tensor_init(&t, cpu, ENG_DTYPE_F32, ndim, shape, &err), 0, "%s", err.msg);
    tu_rand_fill(t.data, eng_tensor_numel(&t), &seed_state, -2.0f, 2.0f);
    return t;
}

Test(sampler, euler_step_matches_naive)
{
    eng_error err = {0};
    eng_tensor x = rnd(ENG_SHAPE(2, 4, 3, 5)), v = rnd(ENG_SHAPE(2, 4, 3, 5));
    int64_t n = eng_tensor_numel(&x);
    float *x0 = tu_alloc(n), *v0 = tu_alloc(n);
    memcpy(x0, x.data, (size_t)n * 4), memcpy(v0, v.data, (size_t)n * 4);
    const float s = 0.8173f, s1 = 0.6019f;
    cr_assert_eq(eng_flow_euler_step(&x, &v, s, s1, &err), 0, "%s", err.msg);
    const float ds = s1 - s;
    for (int64_t i = 0; i < n; i++) {
        float want = x0[i] + ds * v0[i];
        cr_assert_eq(((float *)x.data)[i], want, "x[%lld]", (long long)i);
    }
    eng_tensor bad = rnd(ENG_SHAPE(2, 4, 3, 4));
    cr_assert_eq(eng_flow_euler_step(&x, &bad, s, s1, &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "[2, 4, 3, 4]"), "%s", err.msg);
    free(x0), free(v0);
    eng_tensor_free(&x), eng_tensor_free(&v), eng_tensor_free(&bad);
}

Test(sampler, cfg_combine_matches_naive)
{
    eng_error err = {0};
    eng_tensor c = rnd(ENG_SHAPE(3, 2, 4, 4)), u = rnd(ENG_SHAPE(3, 2, 4, 4));
    eng_tensor o = rnd(ENG_SHAPE(3, 2, 4, 4));
    const float g[3] = {1.0f, 4.5f, 7.25f};
    cr_assert_eq(eng_cfg_combine(&o, &c, &u, g, &err), 0, "%s", err.msg);
    const float *C = c.data, *U = u.data, *O = o.data;
    for (int64_t i = 0; i < eng_tensor_numel(&o); i++) {
        float want = U[i] + g[i / 32] * (C[i] - U[i]);
        cr_assert_eq(O[i], want, "out[%lld] %.9g want %.9g", (long long)i, O[i], want);
    }
    cr_assert_eq(eng_cfg_combine(&c, &c, &u, g, &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "overlaps"), "%s", err.msg);
    eng_tensor_free(&c), eng_tensor_free(&u), eng_tensor_free(&o);
}

/* ---- the loop with an analytic stand-in model ---- */

/*
 * v[r] = 0.5 x[r] + ctx[r, 0, 0] - pooled[r, 1] * t[r] / 1000, in float; records every call.
 * Works in F32 or BF16 (converting through host F32 buffers, as a real model's dtype would).
 */
typedef struct fake_model {
    int calls;
    int64_t rows[16];
    float t0[16];
    int fail_at; /* 1-based call that fails; 0: never */
} fake_model;

static float fake_v(float x, float c0, float p1, float t)
{
    return 0.5f * x + c0 - p1 * t / 1000.0f;
}

static float *to_host_f32(const eng_tensor *t)
{
    eng_error err = {0};
    float *h = tu_alloc(eng_tensor_numel(t));
    eng_tensor hv = eng_tensor_view(h, t->backend, ENG_DTYPE_F32, t->ndim, t->shape);
    cr_assert_eq(eng_op_convert(&hv, t, &err), 0, "%s", err.msg);
    return h;
}

static int fake_forward(void *self, const eng_tensor *x, const float *t, const eng_tensor *ctx,
                        const eng_tensor *pooled, eng_tensor *out, eng_error *err)
{
    fake_model *fm = self;
    int64_t R = x->shape[0], per = eng_tensor_numel(x) / R;
    if (fm->calls < 16)
        fm->rows[fm->calls] = R, fm->t0[fm->calls] = t[0];
    if (++fm->calls == fm->fail_at)
        return eng_error_set(err, ENG_EDEVICE, "fake: injected failure");
    cr_assert_eq(ctx->shape[0], R);
    cr_assert_eq(pooled->shape[0], R);
    float *X = to_host_f32(x), *Cx = to_host_f32(ctx), *P = to_host_f32(pooled);
    float *V = tu_alloc(eng_tensor_numel(out));
    int64_t cper = ctx->shape[1] * ctx->shape[2], pper = pooled->shape[1];
    for (int64_t r = 0; r < R; r++)
        for (int64_t j = 0; j < per; j++)
            V[r * per + j] = fake_v(X[r * per + j], Cx[r * cper], P[r * pper + 1], t[r]);
    eng_tensor vv = eng_tensor_view(V, out->backend, ENG_DTYPE_F32, out->ndim, out->shape);
    int rc = eng_op_convert(out, &vv, err);
    free(X), free(Cx), free(P), free(V);
    return rc;
}

/* bf16 rounding of a float (round to nearest even), as eng_op_convert does. */
static float bf16_round(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

/* The same loop written plainly: one sample at a time, as diffusers runs each alone. */
static void naive_loop(float *lat, int64_t B, int64_t per, const float *ctx, const float *nctx,
                       int64_t cper, const float *pooled, const float *npooled, int64_t pper,
                       const float *g, int steps, const eng_scheduler_config *cfg, int bf16)
{
    float sig[64], ts[64];
    eng_error err = {0};
    cr_assert_eq(eng_flow_schedule(cfg, steps, sig, ts, &err), 0, "%s", err.msg);
    for (int64_t b = 0; b < B; b++)
        for (int i = 0; i < steps; i++)
            for (int64_t j = 0; j < per; j++) {
                float x = lat[b * per + j];
                float xin = bf16 ? bf16_round(x) : x;
                float c0 = ctx[b * cper], p1 = pooled[b * pper + 1];
                float vc = fake_v(xin, c0, p1, ts[i]), v = vc;
                if (bf16)
                    vc = bf16_round(vc), v = vc;
                if (g[b] > 1.0f) {
                    float vu = fake_v(xin, nctx[b * cper], npooled[b * pper + 1], ts[i]);
                    if (bf16)
                        vu = bf16_round(vu);
                    v = vu + g[b] * (vc - vu);
                }
                lat[b * per + j] = x + (sig[i + 1] - sig[i]) * v;
            }
}

/* Inputs for the loop tests: B = 3 samples, 4 x 4 x 6 latents, 5 x 6 ctx, 7 pooled. */
typedef struct loop_case {
    eng_tensor lat, ctx, nctx, pooled, npooled;
    float g[3];
    eng_scheduler_config cfg;
} loop_case;

static loop_case make_case(void)
{
    loop_case lc;
    lc.lat = rnd(ENG_SHAPE(3, 4, 4, 6));
    eng_rng_latents(lc.lat.data, 3, 4, 4, 6, 7);
    lc.ctx = rnd(ENG_SHAPE(3, 5, 6)), lc.nctx = rnd(ENG_SHAPE(3, 5, 6));
    lc.pooled = rnd(ENG_SHAPE(3, 7)), lc.npooled = rnd(ENG_SHAPE(3, 7));
    lc.g[0] = 4.0f, lc.g[1] = 1.0f, lc.g[2] = 7.5f;
    lc.cfg = sched_cfg(3.0);
    return lc;
}

static void free_case(loop_case *lc)
{
    eng_tensor_free(&lc->lat), eng_tensor_free(&lc->ctx), eng_tensor_free(&lc->nctx);
    eng_tensor_free(&lc->pooled), eng_tensor_free(&lc->npooled);
}

static eng_denoise_params params_of(loop_case *lc, int steps)
{
    eng_denoise_params p = {
        .steps = steps,
        .scheduler = &lc->cfg,
        .guidance = lc->g,
        .ctx = &lc->ctx,
        .pooled = &lc->pooled,
        .neg_ctx = &lc->nctx,
        .neg_pooled = &lc->npooled,
    };
    return p;
}

static void check_against_naive(loop_case *lc, const float *lat0, int steps, int bf16)
{
    float *want = tu_alloc(eng_tensor_numel(&lc->lat));
    memcpy(want, lat0, eng_tensor_nbytes(&lc->lat));
    naive_loop(want, 3, 96, lc->ctx.data, lc->nctx.data, 30, lc->pooled.data, lc->npooled.data, 7,
               lc->g, steps, &lc->cfg, bf16);
    const float *got = lc->lat.data;
    for (int64_t i = 0; i < eng_tensor_numel(&lc->lat); i++)
        cr_assert_eq(got[i], want[i], "latent %lld: %.9g want %.9g", (long long)i, got[i], want[i]);
    free(want);
}

Test(sampler, loop_batches_cond_and_uncond_rows)
{
    eng_error err = {0};
    loop_case lc = make_case();
    float *lat0 = tu_alloc(eng_tensor_numel(&lc.lat));
    memcpy(lat0, lc.lat.data, eng_tensor_nbytes(&lc.lat));
    fake_model fm = {0};
    eng_denoiser d = {.forward = fake_forward, .self = &fm, .backend = cpu, .patch_size = 2};
    eng_denoise_params p = params_of(&lc, 5);
    cr_assert_eq(eng_denoise_run(&d, &lc.lat, &p, &err), 0, "%s", err.msg);

    float sig[6], ts[5];
    cr_assert_eq(eng_flow_schedule(&lc.cfg, 5, sig, ts, &err), 0, "%s", err.msg);
    cr_assert_eq(fm.calls, 5, "one forward per step");
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(fm.rows[i], 5, "3 cond rows + 2 uncond rows (g > 1), got %lld",
                     (long long)fm.rows[i]);
        cr_assert_eq(fm.t0[i], ts[i]);
    }
    check_against_naive(&lc, lat0, 5, 0);

    /* All guidance <= 1: only the cond rows, and no neg embeddings needed. */
    memcpy(lc.lat.data, lat0, eng_tensor_nbytes(&lc.lat));
    lc.g[0] = lc.g[2] = 0.5f;
    p.neg_ctx = p.neg_pooled = NULL;
    fm = (fake_model){0};
    cr_assert_eq(eng_denoise_run(&d, &lc.lat, &p, &err), 0, "%s", err.msg);
    cr_assert_eq(fm.rows[0], 3);
    check_against_naive(&lc, lat0, 5, 0);
    free(lat0);
    free_case(&lc);
}

Test(sampler, loop_with_bf16_model_dtype)
{
    eng_error err = {0};
    loop_case lc = make_case();
    float *lat0 = tu_alloc(eng_tensor_numel(&lc.lat));
    memcpy(lat0, lc.lat.data, eng_tensor_nbytes(&lc.lat));
    /* The prompt embeddings in BF16 (the model's dtype); the references see the same values. */
    eng_tensor *emb[4] = {&lc.ctx, &lc.nctx, &lc.pooled, &lc.npooled};
    eng_tensor bf[4];
    for (int k = 0; k < 4; k++) {
        float *h = emb[k]->data;
        for (int64_t i = 0; i < eng_tensor_numel(emb[k]); i++)
            h[i] = bf16_round(h[i]);
        cr_assert_eq(
            eng_tensor_init(&bf[k], cpu, ENG_DTYPE_BF16, emb[k]->ndim, emb[k]->shape, &err), 0,
            "%s", err.msg);
        cr_assert_eq(eng_op_convert(&bf[k], emb[k], &err), 0, "%s", err.msg);
    }
    fake_model fm = {0};
    eng_denoiser d = {.forward = fake_forward, .self = &fm, .backend = cpu};
    eng_denoise_params p = params_of(&lc, 3);
    p.ctx = &bf[0], p.neg_ctx = &bf[1], p.pooled = &bf[2], p.neg_pooled = &bf[3];
    cr_assert_eq(eng_denoise_run(&d, &lc.lat, &p, &err), 0, "%s", err.msg);
    check_against_naive(&lc, lat0, 3, 1);
    for (int k = 0; k < 4; k++)
        eng_tensor_free(&bf[k]);
    free(lat0);
    free_case(&lc);
}

typedef struct cancel_state {
    int seen[8];
    int n;
    int stop_at;
} cancel_state;

static int on_progress(int step, int steps, void *user)
{
    cancel_state *cs = user;
    cr_assert_eq(steps, 6);
    cs->seen[cs->n++] = step;
    return step == cs->stop_at;
}

Test(sampler, loop_progress_and_cancel)
{
    eng_error err = {0};
    loop_case lc = make_case();
    float *lat0 = tu_alloc(eng_tensor_numel(&lc.lat));
    memcpy(lat0, lc.lat.data, eng_tensor_nbytes(&lc.lat));
    fake_model fm = {0};
    cancel_state cs = {.stop_at = 2};
    eng_denoiser d = {.forward = fake_forward, .self = &fm, .backend = cpu};
    eng_denoise_params p = params_of(&lc, 6);
    p.progress = on_progress, p.progress_user = &cs;
    cr_assert_eq(eng_denoise_run(&d, &lc.lat, &p, &err), ENG_ECANCELED, "%s", err.msg);
    cr_assert(strstr(err.msg, "canceled after step 2 of 6"), "%s", err.msg);
    cr_assert_eq(fm.calls, 2, "no forward after the cancel");
    cr_assert_eq(cs.n, 2);
    cr_assert_eq(cs.seen[0], 1);
    cr_assert_eq(cs.seen[1], 2);

    /* The latents hold the state after step 2 of the 6-step schedule. */
    float sig[7], ts[6];
    cr_assert_eq(eng_flow_schedule(&lc.cfg, 6, sig, ts, &err), 0, "%s", err.msg);
    const float *X = lc.lat.data, *C = lc.ctx.data, *P = lc.pooled.data;
    const float *NC = lc.nctx.data, *NP = lc.npooled.data;
    for (int64_t b = 0; b < 3; b++)
        for (int64_t j = 0; j < 96; j++) {
            float x = lat0[b * 96 + j];
            for (int i = 0; i < 2; i++) {
                float v = fake_v(x, C[b * 30], P[b * 7 + 1], ts[i]);
                if (lc.g[b] > 1.0f) {
                    float vu = fake_v(x, NC[b * 30], NP[b * 7 + 1], ts[i]);
                    v = vu + lc.g[b] * (v - vu);
                }
                x = x + (sig[i + 1] - sig[i]) * v;
            }
            cr_assert_eq(X[b * 96 + j], x);
        }

    /* A progress callback that never cancels sees every step. */
    cs = (cancel_state){.stop_at = -1};
    fm = (fake_model){0};
    cr_assert_eq(eng_denoise_run(&d, &lc.lat, &p, &err), 0, "%s", err.msg);
    cr_assert_eq(cs.n, 6);
    cr_assert_eq(cs.seen[5], 6);
    free(lat0);
    free_case(&lc);
}

Test(sampler, loop_errors)
{
    eng_error err = {0};
    loop_case lc = make_case();
    fake_model fm = {.fail_at = 2};
    eng_denoiser d = {.forward = fake_forward, .self = &fm, .backend = cpu};
    eng_denoise_params p = params_of(&lc, 4);

    cr_assert_eq(eng_denoise_run(&d, &lc.lat, &p, &err), ENG_EDEVICE);
    cr_assert(strstr(err.msg, "denoise step 2 of 4: fake: injected failure"), "%s", err.msg);

    fm = (fake_model){0};
    p.neg_ctx = NULL;
    cr_assert_eq(eng_denoise_run(&d, &lc.lat, &p, &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "neg_ctx is NULL but a guidance scale is > 1"), "%s", err.msg);
    p.neg_ctx = &lc.ctx;
    p.neg_pooled = &lc.ctx;
    cr_assert_eq(eng_denoise_run(&d, &lc.lat, &p, &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "neg_pooled is F32 [3, 5, 6], expected pooled's F32 [3, 7]"), "%s",
              err.msg);
    p = params_of(&lc, 0);
    cr_assert_eq(eng_denoise_run(&d, &lc.lat, &p, &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "steps = 0"), "%s", err.msg);
    p = params_of(&lc, 2);
    eng_tensor short_ctx = rnd(ENG_SHAPE(2, 5, 6));
    p.ctx = &short_ctx;
    cr_assert_eq(eng_denoise_run(&d, &lc.lat, &p, &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "ctx has shape [2, 5, 6], expected 3 dims with 3 rows"), "%s",
              err.msg);
    p = params_of(&lc, 2);
    eng_tensor host_pooled = lc.pooled;
    host_pooled.backend = NULL; /* the same memory, but claimed as plain host memory */
    p.pooled = &host_pooled;
    cr_assert_eq(eng_denoise_run(&d, &lc.lat, &p, &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "pooled lives on the host, the model on cpu"), "%s", err.msg);
    p = params_of(&lc, 2);
    lc.g[1] = NAN;
    cr_assert_eq(eng_denoise_run(&d, &lc.lat, &p, &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "guidance[1]"), "%s", err.msg);
    cr_assert_eq(fm.calls, 0, "no forward after a rejected argument");
    eng_tensor_free(&short_ctx);
    free_case(&lc);
}

/* ---- the initial-latents file ---- */

static void write_st(const char *path, const char *name, eng_dtype dt, int ndim,
                     const int64_t *shape, const void *data)
{
    eng_st_writer *w = NULL;
    eng_error err = {0};
    cr_assert_eq(eng_st_writer_init(&w, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_st_writer_add(w, name, dt, ndim, shape, data, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_st_writer_write(w, path, &err), 0, "%s", err.msg);
    eng_st_writer_free(w);
}

Test(sampler, latents_file)
{
    char dir[] = "/tmp/tttd_latents_XXXXXX", path[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/l.safetensors", dir);
    eng_error err = {0};
    eng_tensor out;
    float data[2 * 4 * 3 * 5];
    eng_rng_latents(data, 2, 4, 3, 5, 11);
    const int64_t shape[4] = {2, 4, 3, 5};

    write_st(path, "latents", ENG_DTYPE_F32, 4, shape, data);
    const int64_t exact[4] = {2, 4, 3, 5}, wild[4] = {-1, 4, -1, -1};
    cr_assert_eq(eng_latents_load(path, cpu, exact, &out, &err), 0, "%s", err.msg);
    cr_assert_eq(out.backend, cpu);
    cr_assert_eq(memcmp(out.data, data, sizeof data), 0);
    eng_tensor_free(&out);
    cr_assert_eq(eng_latents_load(path, NULL, wild, &out, &err), 0, "%s", err.msg);
    cr_assert_eq(out.shape[0], 2);
    eng_tensor_free(&out);

    const int64_t other[4] = {1, 4, 3, 6};
    cr_assert_eq(eng_latents_load(path, cpu, other, &out, &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "has shape [2, 4, 3, 5], expected [1, 4, 3, 6]"), "%s", err.msg);
    const int64_t other_w[4] = {-1, 16, -1, -1};
    cr_assert_eq(eng_latents_load(path, cpu, other_w, &out, &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "expected [*, 16, *, *]"), "%s", err.msg);
    cr_assert_null(out.data);

    write_st(path, "noise", ENG_DTYPE_F32, 4, shape, data);
    cr_assert_eq(eng_latents_load(path, cpu, exact, &out, &err), ENG_ENOTFOUND);
    cr_assert(strstr(err.msg, "no tensor \"latents\""), "%s", err.msg);
    cr_assert(strstr(err.msg, path), "%s", err.msg);

    uint16_t half[120] = {0};
    write_st(path, "latents", ENG_DTYPE_F16, 4, shape, half);
    cr_assert_eq(eng_latents_load(path, cpu, exact, &out, &err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, "dtype F16, expected F32"), "%s", err.msg);

    write_st(path, "latents", ENG_DTYPE_F32, 3, shape + 1, data);
    cr_assert_eq(eng_latents_load(path, cpu, NULL, &out, &err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, "shape [4, 3, 5], expected 4 dims"), "%s", err.msg);

    data[17] = NAN;
    write_st(path, "latents", ENG_DTYPE_F32, 4, shape, data);
    cr_assert_eq(eng_latents_load(path, cpu, exact, &out, &err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, "NaN at element 17"), "%s", err.msg);

    unlink(path);
    cr_assert_neq(eng_latents_load(path, cpu, exact, &out, &err), 0);
    cr_assert(strstr(err.msg, path), "%s", err.msg);
    rmdir(dir);
}

/* ---- the whole loop with the tiny TTT model, against the PyTorch reference ---- */

Test(sampler, loop_matches_reference_ttt_mixed)
{
    eng_error err = {0};
    eng_mmdit *m = NULL;
    eng_safetensors *st = NULL;
    cr_assert_eq(
        eng_mmdit_load(&m, "tests/fixtures/mmdit/ttt_mixed/transformer", cpu, ENG_DTYPE_F32, &err),
        0, "%s", err.msg);
    cr_assert_eq(eng_safetensors_open(&st, "tests/fixtures/sampler/loop.safetensors", &err), 0,
                 "%s", err.msg);
    eng_scheduler_config cfg;
    cr_assert_eq(
        eng_config_load_scheduler("tests/fixtures/sampler/scheduler_config.json", &cfg, &err), 0,
        "%s", err.msg);

    const int64_t ls[4] = {2, 4, 8, 12};
    const int64_t expect[4] = {2, 4, 8, 12};
    eng_tensor lat, ctx, nctx, pooled, npooled;
    cr_assert_eq(
        eng_latents_load("tests/fixtures/sampler/loop.safetensors", cpu, expect, &lat, &err),
        ENG_ENOTFOUND, "the fixture names its input latents_in, not latents");
    float *lin = fixture(st, "latents_in", NULL), *lout = fixture(st, "latents_out", NULL);
    float *g = fixture(st, "guidance", NULL);
    float sig[5], tsteps[4];
    float *fsig = fixture(st, "sigmas", NULL), *fts = fixture(st, "timesteps", NULL);
    cr_assert_eq(eng_flow_schedule(&cfg, 4, sig, tsteps, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(sig, fsig, sizeof sig), 0);
    cr_assert_eq(memcmp(tsteps, fts, sizeof tsteps), 0);
    free(fsig), free(fts);
    cr_assert_eq(g[0], 1.0f);
    cr_assert_eq(g[1], 4.0f);
    /* The reference drew latents_in from the project's RNG, seeds 42 and 43. */
    float *mine = tu_alloc(2 * 4 * 8 * 12);
    eng_rng_latents(mine, 2, 4, 8, 12, 42);
    cr_assert_eq(memcmp(mine, lin, 2 * 4 * 8 * 12 * sizeof(float)), 0);
    free(mine);

    const char *names[4] = {"ctx", "neg_ctx", "pooled", "neg_pooled"};
    eng_tensor *ts[4] = {&ctx, &nctx, &pooled, &npooled};
    for (int k = 0; k < 4; k++) {
        const eng_st_tensor *t = eng_safetensors_find(st, names[k]);
        cr_assert_not_null(t, "%s", names[k]);
        cr_assert_eq(eng_tensor_init(ts[k], cpu, ENG_DTYPE_F32, t->ndim, t->shape, &err), 0);
        cr_assert_eq(eng_st_tensor_to_f32(t, ts[k]->data, &err), 0, "%s", err.msg);
    }
    cr_assert_eq(eng_tensor_init(&lat, cpu, ENG_DTYPE_F32, 4, ls, &err), 0, "%s", err.msg);
    memcpy(lat.data, lin, eng_tensor_nbytes(&lat));

    eng_denoise_params p = {
        .steps = 4,
        .scheduler = &cfg,
        .guidance = g,
        .ctx = &ctx,
        .pooled = &pooled,
        .neg_ctx = &nctx,
        .neg_pooled = &npooled,
    };
    cr_assert_eq(eng_denoise(m, &lat, &p, &err), 0, "%s", err.msg);
    double *ref = tu_alloc_d(eng_tensor_numel(&lat));
    for (int64_t i = 0; i < eng_tensor_numel(&lat); i++)
        ref[i] = lout[i];
    double e = tu_rel_err(lat.data, ref, eng_tensor_numel(&lat));
    cr_log_info("loop vs reference: relative error %g", e);
    cr_assert_lt(e, 1e-4, "final latents: relative error %g", e);

    free(ref), free(lin), free(lout), free(g);
    for (int k = 0; k < 4; k++)
        eng_tensor_free(ts[k]);
    eng_tensor_free(&lat);
    eng_safetensors_close(st);
    eng_mmdit_free(m);
}
