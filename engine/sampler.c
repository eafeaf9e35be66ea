/*
 * sampler.c - the flow-matching sigma schedule, the Euler step, classifier-free guidance, the
 * batched denoising loop and the initial-latents file (declared in engine/sampler.h).
 *
 * The schedule reproduces diffusers' arithmetic point by point (float32 where it holds float32
 * tensors, float64 where numpy works), so the sigmas match to the last bit rather than to a
 * tolerance. The step and guidance go through eng_op_* so that they run on the latents' backend.
 */
#include "engine/sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/io/safetensors.h"

/* ---- the sigma schedule ---- */

/*
 * __init__'s shifted sigma of training timestep t (1..N), in float32 as torch computes
 * shift * s / (1 + (shift - 1) * s) on a float32 tensor: each operation rounded to float, the
 * Python scalars converted to float first.
 */
static float init_sigma(const eng_scheduler_config *cfg, int t)
{
    float s = (float)t / (float)cfg->num_train_timesteps;
    if (cfg->use_dynamic_shifting)
        return s; /* diffusers shifts on the fly then */
    float num = (float)cfg->shift * s;
    float den = 1.0f + (float)(cfg->shift - 1.0) * s;
    return num / den;
}

/* The float64 shift of set_timesteps (static, or time_shift(mu, 1.0, s) when dynamic). */
static double shift_sigma(const eng_scheduler_config *cfg, double mu, double s)
{
    if (!cfg->use_dynamic_shifting)
        return cfg->shift * s / (1.0 + (cfg->shift - 1.0) * s);
    double r = 1.0 / s - 1.0; /* (1/t - 1) ** 1.0 is r itself */
    if (cfg->time_shift_type == ENG_TIME_SHIFT_LINEAR)
        return mu / (mu + r);
    double e = exp(mu);
    return e / (e + r);
}

/* numpy.linspace(start, stop, n)[i]: start + i * step, the last element exactly stop. */
static double linspace_at(double start, double stop, int n, int i)
{
    if (n == 1)
        return start;
    if (i == n - 1)
        return stop;
    double delta = stop - start;
    double step = delta / (double)(n - 1);
    if (step == 0.0) /* numpy's path for a zero (or underflowing) step */
        return (double)i / (double)(n - 1) * delta + start;
    return (double)i * step + start;
}

int eng_flow_schedule_mu(const eng_scheduler_config *cfg, int steps, double mu, float *sigmas,
                         float *timesteps, eng_error *err)
{
    if (!cfg || !sigmas || !timesteps)
        return eng_error_set(err, ENG_EINVAL, "flow schedule: NULL argument");
    if (steps < 1 || steps > ENG_SAMPLER_MAX_STEPS)
        return eng_error_set(err, ENG_EINVAL, "flow schedule: steps = %d is out of range [1, %d]",
                             steps, ENG_SAMPLER_MAX_STEPS);
    if (cfg->num_train_timesteps < 1)
        return eng_error_set(err, ENG_EINVAL,
                             "flow schedule: num_train_timesteps = %d, expected >= 1",
                             cfg->num_train_timesteps);
    if (cfg->use_dynamic_shifting && !isfinite(mu))
        return eng_error_set(err, ENG_EINVAL,
                             "flow schedule: use_dynamic_shifting needs a finite mu (see "
                             "eng_flow_sd3_mu)");
    if (!cfg->use_dynamic_shifting && !(cfg->shift > 0.0))
        return eng_error_set(err, ENG_EINVAL, "flow schedule: shift = %g, expected > 0",
                             cfg->shift);

    const int N = cfg->num_train_timesteps;
    /* sigma_max / sigma_min are float32 values (.item() of __init__'s table) times N in double. */
    double start = (double)init_sigma(cfg, N) * N;
    double stop = (double)init_sigma(cfg, 1) * N;

    /* shift_terminal's stretch needs the last shifted sigma before any other. */
    double scale_factor = 0.0;
    int terminal = cfg->shift_terminal != 0.0;
    if (terminal) {
        double last = shift_sigma(cfg, mu, linspace_at(start, stop, steps, steps - 1) / N);
        scale_factor = (1.0 - last) / (1.0 - cfg->shift_terminal);
    }
    for (int i = 0; i < steps; i++) {
        double s = shift_sigma(cfg, mu, linspace_at(start, stop, steps, i) / N);
        if (terminal)
            s = 1.0 - (1.0 - s) / scale_factor;
        float sf = (float)s;
        if (cfg->invert_sigmas)
            sf = 1.0f - sf;
        sigmas[i] = sf;
        timesteps[i] = sf * (float)N;
    }
    sigmas[steps] = cfg->invert_sigmas ? 1.0f : 0.0f;
    return 0;
}

int eng_flow_schedule(const eng_scheduler_config *cfg, int steps, float *sigmas, float *timesteps,
                      eng_error *err)
{
    return eng_flow_schedule_mu(cfg, steps, NAN, sigmas, timesteps, err);
}

double eng_flow_sd3_mu(const eng_scheduler_config *cfg, int64_t image_seq_len)
{
    double m = (cfg->max_shift - cfg->base_shift) /
               (double)(cfg->max_image_seq_len - cfg->base_image_seq_len);
    double b = cfg->base_shift - m * cfg->base_image_seq_len;
    return (double)image_seq_len * m + b;
}

/* ---- one step ---- */

/* A view of rows [first, first + count) of t's leading dim. */
static eng_tensor rows_of(const eng_tensor *t, int64_t first, int64_t count)
{
    eng_tensor v = *t;
    size_t row = eng_tensor_nbytes(t) / (size_t)t->shape[0];
    v.data = (char *)t->data + (size_t)first * row;
    v.shape[0] = count;
    v.owned = 0;
    return v;
}

static int overlaps(const eng_tensor *a, const eng_tensor *b)
{
    uintptr_t a0 = (uintptr_t)a->data, b0 = (uintptr_t)b->data;
    return a0 < b0 + eng_tensor_nbytes(b) && b0 < a0 + eng_tensor_nbytes(a);
}

int eng_flow_euler_step(eng_tensor *x, eng_tensor *v, float sigma, float sigma_next, eng_error *err)
{
    if (!x || !v)
        return eng_error_set(err, ENG_EINVAL, "euler step: NULL tensor");
    if (x->dtype != ENG_DTYPE_F32 || v->dtype != ENG_DTYPE_F32)
        return eng_error_set(err, ENG_EINVAL, "euler step: x is %s and v is %s, expected F32",
                             eng_dtype_name(x->dtype), eng_dtype_name(v->dtype));
    if (!eng_tensor_same_shape(x, v)) {
        char a[64], b[64];
        return eng_error_set(err, ENG_EINVAL, "euler step: x has shape %s, v has shape %s",
                             eng_shape_str(x, a, sizeof a), eng_shape_str(v, b, sizeof b));
    }
    /* diffusers: sample + (sigma_next - sigma) * model_output, in float32 throughout. */
    float ds = sigma_next - sigma;
    ENG_TRY(eng_op_scale(v, v, ds, err));
    return eng_op_add(x, x, v, err);
}

int eng_cfg_combine(eng_tensor *out, const eng_tensor *cond, const eng_tensor *uncond,
                    const float *g, eng_error *err)
{
    if (!out || !cond || !uncond || !g)
        return eng_error_set(err, ENG_EINVAL, "cfg combine: NULL argument");
    if (!eng_tensor_same_shape(out, cond) || !eng_tensor_same_shape(out, uncond) || out->ndim < 1) {
        char a[64], b[64], c[64];
        return eng_error_set(err, ENG_EINVAL,
                             "cfg combine: out %s, cond %s and uncond %s must share one shape",
                             eng_shape_str(out, a, sizeof a), eng_shape_str(cond, b, sizeof b),
                             eng_shape_str(uncond, c, sizeof c));
    }
    if (out->data && (overlaps(out, cond) || overlaps(out, uncond)))
        return eng_error_set(err, ENG_EINVAL, "cfg combine: out overlaps cond or uncond");
    for (int64_t b = 0; b < out->shape[0]; b++) {
        eng_tensor o = rows_of(out, b, 1), c = rows_of(cond, b, 1), u = rows_of(uncond, b, 1);
        /* cond - uncond is exactly cond + (-uncond); then g * that; then + uncond. */
        ENG_TRY(eng_op_scale(&o, &u, -1.0f, err));
        ENG_TRY(eng_op_add(&o, &o, &c, err));
        ENG_TRY(eng_op_scale(&o, &o, g[b], err));
        ENG_TRY(eng_op_add(&o, &o, &u, err));
    }
    return 0;
}

/* ---- the loop ---- */

/* Everything eng_denoise_run allocates; zeroed tensors are no-ops for eng_tensor_free. */
typedef struct loop_bufs {
    eng_tensor x_in, ctx_in, pooled_in, out, out_f32, v;
    float *sigmas, *timesteps, *t_rows;
    int64_t *uncond_row; /* [B]: the row of sample b's unconditional pass, or -1 */
} loop_bufs;

static void loop_bufs_free(loop_bufs *lb)
{
    eng_tensor_free(&lb->x_in), eng_tensor_free(&lb->ctx_in), eng_tensor_free(&lb->pooled_in);
    eng_tensor_free(&lb->out), eng_tensor_free(&lb->out_f32), eng_tensor_free(&lb->v);
    free(lb->sigmas), free(lb->timesteps), free(lb->t_rows), free(lb->uncond_row);
}

static int on_model_backend(const char *name, const eng_tensor *t, const eng_backend *be,
                            eng_error *err)
{
    if (t->backend != be)
        return eng_error_set(err, ENG_EINVAL, "denoise: %s lives on %s, the model on %s", name,
                             t->backend ? t->backend->name : "the host", be->name);
    return 0;
}

static int want_rows(const char *name, const eng_tensor *t, int ndim, int64_t B,
                     const eng_backend *be, eng_error *err)
{
    char s[96];
    if (!t || !t->data)
        return eng_error_set(err, ENG_EINVAL, "denoise: %s is NULL", name);
    ENG_TRY(on_model_backend(name, t, be, err));
    if (t->ndim != ndim || t->shape[0] != B)
        return eng_error_set(err, ENG_EINVAL,
                             "denoise: %s has shape %s, expected %d dims with %lld rows", name,
                             eng_shape_str(t, s, sizeof s), ndim, (long long)B);
    return 0;
}

static int same_as(const char *name, const eng_tensor *t, const char *ref_name,
                   const eng_tensor *ref, eng_error *err)
{
    char a[96], b[96];
    if (!t || !t->data)
        return eng_error_set(err, ENG_EINVAL, "denoise: %s is NULL but a guidance scale is > 1",
                             name);
    ENG_TRY(on_model_backend(name, t, ref->backend, err));
    if (!eng_tensor_same_shape(t, ref) || t->dtype != ref->dtype)
        return eng_error_set(err, ENG_EINVAL, "denoise: %s is %s %s, expected %s's %s %s", name,
                             eng_dtype_name(t->dtype), eng_shape_str(t, a, sizeof a), ref_name,
                             eng_dtype_name(ref->dtype), eng_shape_str(ref, b, sizeof b));
    return 0;
}

static int check_loop_args(const eng_denoiser *d, const eng_tensor *lat,
                           const eng_denoise_params *p, eng_error *err)
{
    char s[96];
    if (!d || !d->forward || !d->backend || !lat || !p || !p->scheduler || !p->guidance)
        return eng_error_set(err, ENG_EINVAL,
                             "denoise: NULL model, latents, params, scheduler or guidance");
    if (p->steps < 1 || p->steps > ENG_SAMPLER_MAX_STEPS)
        return eng_error_set(err, ENG_EINVAL, "denoise: steps = %d is out of range [1, %d]",
                             p->steps, ENG_SAMPLER_MAX_STEPS);
    if (!lat->data || lat->dtype != ENG_DTYPE_F32 || lat->ndim != 4 || lat->shape[0] < 1)
        return eng_error_set(err, ENG_EINVAL,
                             "denoise: latents are %s %s, expected F32 [B, C, H, W]",
                             eng_dtype_name(lat->dtype), eng_shape_str(lat, s, sizeof s));
    ENG_TRY(on_model_backend("latents", lat, d->backend, err));
    int64_t B = lat->shape[0];
    ENG_TRY(want_rows("ctx", p->ctx, 3, B, d->backend, err));
    ENG_TRY(want_rows("pooled", p->pooled, 2, B, d->backend, err));
    if (p->pooled->dtype != p->ctx->dtype)
        return eng_error_set(err, ENG_EINVAL, "denoise: pooled is %s but ctx is %s",
                             eng_dtype_name(p->pooled->dtype), eng_dtype_name(p->ctx->dtype));
    int any_cfg = 0;
    for (int64_t b = 0; b < B; b++) {
        if (!isfinite(p->guidance[b]))
            return eng_error_set(err, ENG_EINVAL, "denoise: guidance[%lld] is not finite",
                                 (long long)b);
        any_cfg |= p->guidance[b] > 1.0f;
    }
    if (any_cfg) {
        ENG_TRY(same_as("neg_ctx", p->neg_ctx, "ctx", p->ctx, err));
        ENG_TRY(same_as("neg_pooled", p->neg_pooled, "pooled", p->pooled, err));
    }
    return 0;
}

/* dst = src (a copy, or a dtype conversion), rows given by views. */
static int copy_rows(const eng_tensor *dst_all, int64_t dst_row, const eng_tensor *src_all,
                     int64_t src_row, int64_t count, eng_error *err)
{
    eng_tensor dst = rows_of(dst_all, dst_row, count), src = rows_of(src_all, src_row, count);
    return eng_op_convert(&dst, &src, err);
}

/* Allocates the batched buffers and fills the constant prompt rows. */
static int loop_setup(const eng_denoiser *d, const eng_tensor *lat, const eng_denoise_params *p,
                      loop_bufs *lb, int64_t *n_rows, eng_error *err)
{
    eng_backend *be = d->backend;
    const int64_t B = lat->shape[0];
    const eng_dtype mdt = p->ctx->dtype; /* the model's dtype */
    int64_t rows = B;

    lb->uncond_row = malloc((size_t)B * sizeof *lb->uncond_row);
    lb->sigmas = malloc(((size_t)p->steps + 1) * sizeof *lb->sigmas);
    lb->timesteps = malloc((size_t)p->steps * sizeof *lb->timesteps);
    if (!lb->uncond_row || !lb->sigmas || !lb->timesteps)
        return eng_error_set(err, ENG_ENOMEM, "denoise: out of host memory");
    for (int64_t b = 0; b < B; b++)
        lb->uncond_row[b] = p->guidance[b] > 1.0f ? rows++ : -1;
    lb->t_rows = malloc((size_t)rows * sizeof *lb->t_rows);
    if (!lb->t_rows)
        return eng_error_set(err, ENG_ENOMEM, "denoise: out of host memory");
    *n_rows = rows;

    const int64_t *ls = lat->shape;
    int64_t xs[4] = {rows, ls[1], ls[2], ls[3]};
    if (rows == B && mdt == ENG_DTYPE_F32) {
        lb->x_in = rows_of(lat, 0, B); /* the forward reads the latents themselves */
    } else {
        ENG_TRY(eng_tensor_init(&lb->x_in, be, mdt, 4, xs, err));
    }
    if (rows == B) {
        lb->ctx_in = rows_of(p->ctx, 0, B);
        lb->pooled_in = rows_of(p->pooled, 0, B);
    } else {
        int64_t cs[3] = {rows, p->ctx->shape[1], p->ctx->shape[2]};
        int64_t ps[2] = {rows, p->pooled->shape[1]};
        ENG_TRY(eng_tensor_init(&lb->ctx_in, be, mdt, 3, cs, err));
        ENG_TRY(eng_tensor_init(&lb->pooled_in, be, mdt, 2, ps, err));
        ENG_TRY(copy_rows(&lb->ctx_in, 0, p->ctx, 0, B, err));
        ENG_TRY(copy_rows(&lb->pooled_in, 0, p->pooled, 0, B, err));
        for (int64_t b = 0; b < B; b++) {
            if (lb->uncond_row[b] < 0)
                continue;
            ENG_TRY(copy_rows(&lb->ctx_in, lb->uncond_row[b], p->neg_ctx, b, 1, err));
            ENG_TRY(copy_rows(&lb->pooled_in, lb->uncond_row[b], p->neg_pooled, b, 1, err));
        }
    }
    ENG_TRY(eng_tensor_init(&lb->out, be, mdt, 4, xs, err));
    if (mdt == ENG_DTYPE_F32)
        lb->out_f32 = rows_of(&lb->out, 0, rows);
    else
        ENG_TRY(eng_tensor_init(&lb->out_f32, be, ENG_DTYPE_F32, 4, xs, err));
    if (rows == B)
        lb->v = rows_of(&lb->out_f32, 0, B); /* the velocity is the output itself */
    else
        ENG_TRY(eng_tensor_init(&lb->v, be, ENG_DTYPE_F32, 4, lat->shape, err));
    return 0;
}

/* One denoising step: batched forward, guidance, Euler update of lat. */
static int loop_step(const eng_denoiser *d, eng_tensor *lat, const eng_denoise_params *p,
                     loop_bufs *lb, int64_t rows, int i, eng_error *err)
{
    const int64_t B = lat->shape[0];
    if (lb->x_in.data != lat->data) {
        ENG_TRY(copy_rows(&lb->x_in, 0, lat, 0, B, err));
        for (int64_t b = 0; b < B; b++)
            if (lb->uncond_row[b] >= 0)
                ENG_TRY(copy_rows(&lb->x_in, lb->uncond_row[b], lat, b, 1, err));
    }
    for (int64_t r = 0; r < rows; r++)
        lb->t_rows[r] = lb->timesteps[i];
    int rc = d->forward(d->self, &lb->x_in, lb->t_rows, &lb->ctx_in, &lb->pooled_in, &lb->out, err);
    if (rc) {
        eng_error_prefix(err, "denoise step %d of %d", i + 1, p->steps);
        return rc;
    }
    if (lb->out_f32.data != lb->out.data)
        ENG_TRY(eng_op_convert(&lb->out_f32, &lb->out, err));
    if (lb->v.data != lb->out_f32.data) {
        for (int64_t b = 0; b < B; b++) {
            int64_t u = lb->uncond_row[b];
            if (u < 0) {
                ENG_TRY(copy_rows(&lb->v, b, &lb->out_f32, b, 1, err));
                continue;
            }
            eng_tensor vb = rows_of(&lb->v, b, 1), cb = rows_of(&lb->out_f32, b, 1);
            eng_tensor ub = rows_of(&lb->out_f32, u, 1);
            ENG_TRY(eng_cfg_combine(&vb, &cb, &ub, &p->guidance[b], err));
        }
    }
    return eng_flow_euler_step(lat, &lb->v, lb->sigmas[i], lb->sigmas[i + 1], err);
}

int eng_denoise_run(const eng_denoiser *d, eng_tensor *latents, const eng_denoise_params *p,
                    eng_error *err)
{
    loop_bufs lb;
    int64_t rows = 0;
    int rc = 0;

    memset(&lb, 0, sizeof lb);
    ENG_TRY(check_loop_args(d, latents, p, err));
    ENG_TRY_DONE(loop_setup(d, latents, p, &lb, &rows, err));
    double mu = NAN;
    if (p->scheduler->use_dynamic_shifting) {
        int64_t ps = d->patch_size > 0 ? d->patch_size : 1;
        mu = eng_flow_sd3_mu(p->scheduler, (latents->shape[2] / ps) * (latents->shape[3] / ps));
    }
    ENG_TRY_DONE(eng_flow_schedule_mu(p->scheduler, p->steps, mu, lb.sigmas, lb.timesteps, err));
    for (int i = 0; i < p->steps; i++) {
        ENG_TRY_DONE(loop_step(d, latents, p, &lb, rows, i, err));
        if (p->progress && p->progress(i + 1, p->steps, p->progress_user)) {
            rc = eng_error_set(err, ENG_ECANCELED, "denoise: canceled after step %d of %d", i + 1,
                               p->steps);
            goto done;
        }
    }
done:
    loop_bufs_free(&lb);
    return rc;
}

static int mmdit_forward_fn(void *self, const eng_tensor *x, const float *t, const eng_tensor *ctx,
                            const eng_tensor *pooled, eng_tensor *out, eng_error *err)
{
    return eng_mmdit_forward(self, x, t, ctx, pooled, out, err);
}

int eng_denoise(eng_mmdit *m, eng_tensor *latents, const eng_denoise_params *p, eng_error *err)
{
    if (!m)
        return eng_error_set(err, ENG_EINVAL, "denoise: NULL model");
    const eng_transformer_config *cfg = eng_mmdit_config(m);
    if (cfg->in_channels != cfg->out_channels)
        return eng_error_set(err, ENG_EINVAL,
                             "denoise: the model has in_channels %d but out_channels %d; the "
                             "Euler step needs them equal",
                             cfg->in_channels, cfg->out_channels);
    if (latents && latents->ndim == 4 && latents->shape[1] != cfg->in_channels)
        return eng_error_set(err, ENG_EINVAL, "denoise: latents have %lld channels, the model %d",
                             (long long)latents->shape[1], cfg->in_channels);
    eng_denoiser d = {
        .forward = mmdit_forward_fn,
        .self = m,
        .backend = eng_mmdit_backend(m),
        .patch_size = cfg->patch_size,
    };
    return eng_denoise_run(&d, latents, p, err);
}

/* ---- the initial-latents file ---- */

int eng_latents_load(const char *path, eng_backend *be, const int64_t expect[4], eng_tensor *out,
                     eng_error *err)
{
    eng_safetensors *st = NULL;
    float *host = NULL;
    int rc = 0;
    if (!path || !out)
        return eng_error_set(err, ENG_EINVAL, "latents: NULL argument");
    memset(out, 0, sizeof *out);
    ENG_TRY(eng_safetensors_open(&st, path, err));
    const eng_st_tensor *t = eng_safetensors_find(st, "latents");
    if (!t) {
        rc = eng_error_set(err, ENG_ENOTFOUND, "%s: no tensor \"latents\" (%zu other tensors)",
                           path, eng_safetensors_count(st));
        goto done;
    }
    if (t->dtype != ENG_DTYPE_F32) {
        rc = eng_error_set(err, ENG_EFORMAT, "%s: tensor \"latents\" has dtype %s, expected F32",
                           path, eng_dtype_name(t->dtype));
        goto done;
    }
    eng_tensor shape_only = eng_tensor_view(NULL, NULL, t->dtype, t->ndim, t->shape);
    char got[96];
    eng_shape_str(&shape_only, got, sizeof got);
    if (t->ndim != 4) {
        rc = eng_error_set(err, ENG_EFORMAT,
                           "%s: tensor \"latents\" has shape %s, expected 4 dims [N, C, H/8, W/8]",
                           path, got);
        goto done;
    }
    for (int i = 0; expect && i < 4; i++) {
        if (expect[i] >= 0 && t->shape[i] != expect[i]) {
            char want[96];
            int n = snprintf(want, sizeof want, "[");
            for (int j = 0; j < 4; j++)
                n += expect[j] >= 0
                         ? snprintf(want + n, sizeof want - (size_t)n, "%s%lld", j ? ", " : "",
                                    (long long)expect[j])
                         : snprintf(want + n, sizeof want - (size_t)n, "%s*", j ? ", " : "");
            snprintf(want + n, sizeof want - (size_t)n, "]");
            rc = eng_error_set(err, ENG_EINVAL,
                               "%s: tensor \"latents\" has shape %s, expected %s "
                               "(images, latent channels, height/8, width/8)",
                               path, got, want);
            goto done;
        }
    }
    int64_t n = t->shape[0] * t->shape[1] * t->shape[2] * t->shape[3];
    host = malloc((size_t)(n ? n : 1) * sizeof *host);
    if (!host) {
        rc = eng_error_set(err, ENG_ENOMEM, "%s: out of memory for \"latents\"", path);
        goto done;
    }
    ENG_TRY_DONE(eng_st_tensor_to_f32(t, host, err));
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(host[i])) {
            rc = eng_error_set(err, ENG_EFORMAT, "%s: tensor \"latents\" holds %s at element %lld",
                               path, isnan(host[i]) ? "NaN" : "an infinity", (long long)i);
            goto done;
        }
    ENG_TRY_DONE(eng_tensor_init(out, be, ENG_DTYPE_F32, 4, t->shape, err));
    rc = eng_tensor_upload(out, host, err);
    if (rc)
        eng_tensor_free(out);
done:
    free(host);
    eng_safetensors_close(st);
    return rc;
}
