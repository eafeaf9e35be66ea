/*
 * pipeline.h - text to image: prompt encoding (CLIP-L, CLIP-G, T5), the denoising loop and the VAE
 * decoder, as diffusers' StableDiffusion3Pipeline does it.
 *
 * A pipeline is loaded once from a diffusers pipeline folder (model_index.json, transformer/,
 * text_encoder/, text_encoder_2/, text_encoder_3/, tokenizer/, tokenizer_2/, tokenizer_3/, vae/,
 * scheduler/) onto one backend. A text encoder listed as null in model_index.json, or absent, is
 * replaced by zeros, as diffusers does for T5 (and tttd for the CLIPs). An eng_pipeline is used by
 * one thread at a time (one per worker).
 *
 * Prompt encoding (DESIGN.md section 3): CLIP-L and CLIP-G on 77 tokens each, their penultimate
 * hidden states concatenated along channels and zero-padded to T5's width; T5 on 256 tokens;
 * the two sequences concatenated along tokens (77 + 256 = 333 for SD3.5); pooled = CLIP-L's
 * projected pooled output ++ CLIP-G's.
 */
#ifndef TTTD_ENGINE_PIPELINE_H
#define TTTD_ENGINE_PIPELINE_H

#include <stdint.h>

#include "engine/backend/backend.h"
#include "engine/io/config.h"

typedef struct eng_pipeline eng_pipeline;

/*
 * What a request that does not say gets: the defaults of diffusers' StableDiffusion3Pipeline's
 * num_inference_steps and guidance_scale. (The size is the model's: eng_config_default_side,
 * the transformer's sample_size latent cells of eng_pipeline_vae_scale pixels a side.) The one
 * place these are stated: the daemon's API defaults and `tttd generate` read them. Plain
 * literals, so that cmd/ can show them as text.
 */
#define ENG_PIPELINE_DEFAULT_STEPS 28
#define ENG_PIPELINE_DEFAULT_GUIDANCE 7.0

/* dtype: the transformer's and the encoders' dtype (F32 on the CPU backend). */
int eng_pipeline_load(eng_pipeline **out, const char *model_dir, eng_backend *be, eng_dtype dtype,
                      eng_error *err);
void eng_pipeline_free(eng_pipeline *p);

const eng_transformer_config *eng_pipeline_transformer_config(const eng_pipeline *p);
/* Pixels per latent cell (8 for SD3) and the latent channel count (16 for SD3). */
int eng_pipeline_vae_scale(const eng_pipeline *p);
int eng_pipeline_latent_channels(const eng_pipeline *p);
/* scheduler/scheduler_config.json as loaded. */
const eng_scheduler_config *eng_pipeline_scheduler_config(const eng_pipeline *p);

typedef enum eng_text_encoder {
    ENG_TEXT_ENCODER_CLIP_L = 0, /* text_encoder/ */
    ENG_TEXT_ENCODER_CLIP_G = 1, /* text_encoder_2/ */
    ENG_TEXT_ENCODER_T5 = 2,     /* text_encoder_3/ */
} eng_text_encoder;

/* 1 when the encoder was loaded, 0 when the pipeline stands in zeros for it. */
int eng_pipeline_has_encoder(const eng_pipeline *p, eng_text_encoder which);

/*
 * Context tokens per prompt: 77 + max_sequence_length (77 + 256 = 333 for SD3.5), with or without
 * T5 (its zeros have max_sequence_length rows, as in diffusers since PR #12531).
 */
int eng_pipeline_text_tokens(const eng_pipeline *p);

/*
 * eng_pipeline_text_tokens of the pipeline folder model_dir as eng_pipeline_load would load it,
 * read from model_index.json and tokenizer/ alone (no weights): 24 for the embedded model, 333
 * for SD3.5. Returns the count, or a negative ENG_E* code with err naming the file.
 */
int eng_pipeline_text_tokens_of(const char *model_dir, eng_error *err);

/* diffusers' max_sequence_length, the T5 token count: 256 by default, at most 512. */
int eng_pipeline_set_max_sequence_length(eng_pipeline *p, int n, eng_error *err);

/*
 * The ids one prompt is encoded from: CLIP-L and CLIP-G (77 each), T5 (max_sequence_length).
 * A NULL buffer, or an encoder the pipeline lacks, is skipped. For tests and debugging.
 */
int eng_pipeline_tokenize(const eng_pipeline *p, const char *prompt, int32_t *ids_l,
                          int32_t *ids_g, int32_t *ids_t5, eng_error *err);

/*
 * Encodes n prompts: ctx [n, Nt, joint_attention_dim] and pooled [n, pooled_projection_dim], both
 * allocated here on the pipeline's backend in its dtype (the caller frees them). Nt = 77 + 256 for
 * SD3 (77 + max_sequence_length: see eng_pipeline_text_tokens).
 */
int eng_pipeline_encode_prompts(eng_pipeline *p, const char *const *prompts, int n,
                                eng_tensor *ctx, eng_tensor *pooled, eng_error *err);

/* One image of a batch. */
typedef struct eng_gen_item {
    const char *prompt;          /* UTF-8, required */
    const char *negative_prompt; /* NULL means "" (still encoded, as diffusers does) */
    float guidance;              /* <= 1: no unconditional pass for this image */
    uint64_t seed;               /* initial latents from the project RNG (engine/core/rng.h) */
    const float *latents;        /* optional host [C, H/8, W/8]: used instead of the seed */
} eng_gen_item;

/* Called after each denoising step; a nonzero return cancels (ENG_ECANCELED). */
typedef int (*eng_gen_progress_fn)(void *user, int step, int steps);

/*
 * Called after step `step` (1 .. steps) when step % preview_every == 0, after `progress` of that
 * step (not when progress canceled), on the thread running the generation: latents are the batch's current latents, host F32
 * [n, C, h, w] (h, w: the latent grid, height and width / 8), valid only during the call.
 */
typedef void (*eng_gen_preview_fn)(void *user, int step, int steps, const float *latents, int n,
                                   int C, int h, int w);

typedef struct eng_gen_request {
    const eng_gen_item *items; /* n images, denoised together in one batch */
    int n;
    int width, height; /* pixels, multiples of 8 * patch_size */
    int steps;
    eng_gen_progress_fn progress; /* may be NULL */
    void *progress_user;
    /* Optional previews: every preview_every steps (0: none, at no cost; < 0 is EINVAL). */
    int preview_every;
    eng_gen_preview_fn preview; /* may be NULL: no previews */
    void *preview_user;
} eng_gen_request;

typedef struct eng_gen_timings {
    double text_encode_ms, denoise_ms, vae_ms;
} eng_gen_timings;

/*
 * Generates the request's images into rgb: host bytes [n, height, width, 3], row-major, 8-bit
 * sRGB as diffusers' VaeImageProcessor rounds them. timings may be NULL.
 */
int eng_pipeline_generate(eng_pipeline *p, const eng_gen_request *req, uint8_t *rgb,
                          eng_gen_timings *timings, eng_error *err);

/* What eng_pipeline_generate_ex writes; any may be NULL, not all. Host memory. */
typedef struct eng_gen_outputs {
    uint8_t *rgb;   /* [n, height, width, 3] as eng_pipeline_generate */
    float *image;   /* [n, 3, height, width] in [0, 1], before the 8-bit rounding */
    float *latents; /* [n, C, height/8, width/8], the final latents before the VAE */
} eng_gen_outputs;

/*
 * eng_pipeline_generate with more outputs. On failure (ENG_ECANCELED included) the outputs are
 * not written; timings hold the phases that completed. Errors: ENG_EINVAL for a bad request
 * (n < 1, NULL prompt, a non-finite guidance or latent, steps outside [1, 10000], a width or height
 * that is not a positive multiple of 8 * patch_size or exceeds pos_embed_max_size patches).
 */
int eng_pipeline_generate_ex(eng_pipeline *p, const eng_gen_request *req,
                             const eng_gen_outputs *out, eng_gen_timings *timings,
                             eng_error *err);

#endif
