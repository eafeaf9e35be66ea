/*
 * sampler.h - the flow-matching Euler sampler of SD3 (diffusers' FlowMatchEulerDiscreteScheduler
 * and the denoising loop of its StableDiffusion3Pipeline), classifier-free guidance, and initial
 * latents read from a file.
 *
 * Shapes: B = samples in the batch, C = latent channels, H, W = latent height and width,
 * Nt = text tokens, Dctx = joint_attention_dim, P = pooled_projection_dim.
 *
 * The loop (eng_denoise) runs ONE batched transformer forward per step holding the conditional
 * rows of every sample plus the unconditional rows of the samples whose guidance scale is above
 * 1 (a scale <= 1 skips the unconditional pass for that sample, as diffusers does), so samples
 * with different guidance share a batch. Every sample's result equals what diffusers computes
 * for it alone: noise = uncond + g * (cond - uncond) and x += (sigma_next - sigma) * noise, both
 * in fp32 on the model's backend (through eng_op_*, so the same code runs on CUDA).
 *
 * Thread-safety: the functions keep no state; a call uses its tensors' backend, which belongs to
 * one thread at a time (engine/backend/backend.h).
 */
#ifndef TTTD_ENGINE_SAMPLER_H
#define TTTD_ENGINE_SAMPLER_H

#include <stdint.h>

#include "engine/backend/backend.h"
#include "engine/io/config.h"
#include "engine/core/error.h"
#include "engine/models/mmdit.h"
#include "engine/backend/tensor.h"

/* Most steps a schedule may have. */
#define ENG_SAMPLER_MAX_STEPS 10000

/* ---- the sigma schedule ---- */

/*
 * FlowMatchEulerDiscreteScheduler.set_timesteps(steps) for a config without dynamic shifting
 * (SD3 / SD3.5): sigmas [steps + 1] (the last is 0, or 1 with invert_sigmas) and timesteps
 * [steps] (sigma * num_train_timesteps), both as diffusers' float32 tensors hold them.
 * Computed as diffusers computes them: sigma_max / sigma_min come from __init__'s shifted float32
 * table; set_timesteps takes a float64 linspace between sigma_max * N and sigma_min * N
 * (numpy's formula: start + i * step, last = stop), divides by N, applies the static shift
 * shift * s / (1 + (shift - 1) * s) (or the dynamic one, below), then shift_terminal's stretch
 * when set, all in double; rounds to float; timesteps = sigma * N in float; invert_sigmas last.
 * steps in [1, ENG_SAMPLER_MAX_STEPS]. A config with use_dynamic_shifting is ENG_EINVAL here
 * (it needs mu: use eng_flow_schedule_mu). Returns 0 or a negative code.
 */
int eng_flow_schedule(const eng_scheduler_config *cfg, int steps, float *sigmas, float *timesteps,
                      eng_error *err);

/*
 * As eng_flow_schedule; with use_dynamic_shifting the shift is diffusers' time_shift(mu, 1, s):
 * exp(mu) / (exp(mu) + (1/s - 1)) ("exponential") or mu / (mu + (1/s - 1)) ("linear").
 * mu is ignored without dynamic shifting, and must be finite with it.
 */
int eng_flow_schedule_mu(const eng_scheduler_config *cfg, int steps, double mu, float *sigmas,
                         float *timesteps, eng_error *err);

/*
 * The SD3 pipeline's mu for dynamic shifting (its calculate_shift): a line through
 * (base_image_seq_len, base_shift) and (max_image_seq_len, max_shift) evaluated at
 * image_seq_len = (latent H / patch) * (latent W / patch).
 */
double eng_flow_sd3_mu(const eng_scheduler_config *cfg, int64_t image_seq_len);

/* ---- one step ---- */

/*
 * Euler update in fp32: x += (sigma_next - sigma) * v, the difference rounded to float first.
 * x and v: F32, same shape, same backend. v is used as scratch: on return it holds
 * (sigma_next - sigma) * v. Returns 0 or a negative code.
 */
int eng_flow_euler_step(eng_tensor *x, eng_tensor *v, float sigma, float sigma_next,
                        eng_error *err);

/*
 * Classifier-free guidance per sample: out[b] = uncond[b] + g[b] * (cond[b] - uncond[b]) with
 * each operation rounded to the tensors' dtype, as PyTorch evaluates diffusers' expression.
 * out, cond, uncond: same shape [B, ...] and dtype, one backend; out must not overlap cond or
 * uncond. g: host array of B scales. Returns 0 or a negative code.
 */
int eng_cfg_combine(eng_tensor *out, const eng_tensor *cond, const eng_tensor *uncond,
                    const float *g, eng_error *err);

/* ---- the loop ---- */

/*
 * Called after each completed step with step = 1 .. steps (on the thread running the loop).
 * A nonzero return stops the loop: eng_denoise then returns ENG_ECANCELED (even after the last
 * step), leaving latents as they are after that step.
 */
typedef int (*eng_denoise_progress_fn)(int step, int steps, void *user);

typedef struct eng_denoise_params {
    int steps;                             /* [1, ENG_SAMPLER_MAX_STEPS] */
    const eng_scheduler_config *scheduler; /* the sigma schedule (eng_flow_schedule) */
    const float *guidance;                 /* host [B]; g <= 1: no unconditional pass */
    /* Conditional prompt embeddings, on the model's backend in the model's dtype. */
    const eng_tensor *ctx;    /* [B, Nt, Dctx] */
    const eng_tensor *pooled; /* [B, P] */
    /* Unconditional (negative prompt) embeddings, same shapes and dtype as ctx / pooled. Rows of
     * samples with g <= 1 are not read; both may be NULL when no sample has g > 1. */
    const eng_tensor *neg_ctx;
    const eng_tensor *neg_pooled;
    eng_denoise_progress_fn progress; /* NULL: none */
    void *progress_user;
} eng_denoise_params;

/*
 * Any denoiser the loop can drive: forward(self, x, t, ctx, pooled, out, err) with
 * eng_mmdit_forward's contract (x, out [Bf, C, H, W] in the model's dtype; t host [Bf]).
 * eng_denoise wraps an eng_mmdit in one; tests plug in analytic models.
 */
typedef struct eng_denoiser {
    int (*forward)(void *self, const eng_tensor *x, const float *t, const eng_tensor *ctx,
                   const eng_tensor *pooled, eng_tensor *out, eng_error *err);
    void *self;
    eng_backend *backend; /* where the model computes */
    int patch_size;       /* for dynamic shifting's image_seq_len; 0 reads as 1 */
} eng_denoiser;

/*
 * Runs the whole denoising loop on latents [B, C, H, W] (F32, on the model's backend; read as
 * the initial noise, overwritten with the final latents). Batch row layout of each forward:
 * rows 0..B-1 are the samples' conditional rows, then one unconditional row per sample with
 * g > 1, in sample order; every row gets the step's timestep. With use_dynamic_shifting, mu is
 * eng_flow_sd3_mu at (H / patch) * (W / patch). Buffers for the batched inputs and outputs are
 * allocated on the backend for the call and released before it returns. On failure latents
 * hold the last completed step. Returns 0, ENG_ECANCELED, or another negative code.
 */
int eng_denoise_run(const eng_denoiser *d, eng_tensor *latents, const eng_denoise_params *p,
                    eng_error *err);

/* eng_denoise_run with an eng_mmdit (its in_channels must equal out_channels and C). */
int eng_denoise(eng_mmdit *m, eng_tensor *latents, const eng_denoise_params *p, eng_error *err);

/* ---- initial latents from a file ---- */

/*
 * Reads the F32 tensor "latents" [N, C, H/8, W/8] of the safetensors file at path into a new
 * owned F32 tensor *out on backend be (NULL: host memory), so that tests and users can inject
 * the initial noise. expect: the shape the request needs; an entry < 0 accepts any size, and
 * expect NULL any 4-D shape.
 * Errors name the file: ENG_ENOTFOUND (no file, no "latents" tensor), ENG_EFORMAT (not F32,
 * not 4-D, a NaN or infinity), ENG_EINVAL (a shape other than expect), or the reader's own.
 */
int eng_latents_load(const char *path, eng_backend *be, const int64_t expect[4], eng_tensor *out,
                     eng_error *err);

#endif
