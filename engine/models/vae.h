/*
 * vae.h - the AutoencoderKL decoder (diffusers semantics): SD3-family latents -> images.
 *
 * decode = the SD3 pipeline's latent scaling (z = latents / scaling_factor + shift_factor), the
 * optional post_quant_conv, diffusers' Decoder (conv_in, mid block of resnet / attention / resnet,
 * up blocks over reversed(block_out_channels) with layers_per_block + 1 resnets and a nearest 2x
 * upsampler each but the last, GroupNorm, SiLU, conv_out), then diffusers' VaeImageProcessor
 * postprocess: image = (x * 0.5 + 0.5).clamp(0, 1) and 8-bit RGB = round-half-to-even(image * 255).
 * The image is 2^(num_blocks - 1) times the latent size (8x for SD3.5's four blocks).
 *
 * Weights: decoder.* (and post_quant_conv.* when the config says use_post_quant_conv) from the
 * folder's safetensors, converted to the model dtype in one backend allocation; encoder.* and
 * quant_conv.* are ignored. Samples are decoded one at a time, each intermediate freed as soon as
 * it is consumed, so memory is bounded by one image (about 3 activations of the largest level:
 * ~2.5 GB in F32 for SD3.5 at 1024x1024).
 *
 * An eng_vae is used by one thread at a time (decode allocates on its backend).
 */
#ifndef TTTD_ENGINE_VAE_H
#define TTTD_ENGINE_VAE_H

#include <stdint.h>

#include "engine/backend/backend.h"
#include "engine/io/config.h"
#include "engine/io/safetensors.h"

typedef struct eng_vae eng_vae;

/*
 * dir: a diffusers vae/ folder (config.json + *.safetensors or a sharded index). dtype: the model
 * and compute dtype (F32 on the CPU backend). Every tensor the config needs must be present with
 * its expected shape; a missing or misshapen one is an error naming it and the expected shape.
 * Returns 0 or a negative code; *out is NULL on failure.
 */
int eng_vae_load(eng_vae **out, const char *dir, eng_backend *be, eng_dtype dtype, eng_error *err);
/* The same from a config already read and an open safetensors set (label names it in messages);
 * st may be closed once this returns. */
int eng_vae_init(eng_vae **out, const eng_vae_config *cfg, const eng_safetensors *st,
                 const char *label, eng_backend *be, eng_dtype dtype, eng_error *err);
/* NULL is a no-op. */
void eng_vae_free(eng_vae *v);

const eng_vae_config *eng_vae_get_config(const eng_vae *v);
/* Image pixels per latent pixel along each axis: 2^(num_blocks - 1). */
int eng_vae_scale_factor(const eng_vae *v);

/*
 * Decodes latents [B, latent_channels, h, w] (raw, as the sampler leaves them: the scaling is done
 * here), F32/F16/BF16, on v's backend or in host memory (backend NULL). With f = the scale factor
 * and C = out_channels (3):
 *   image  host float [B, C, f*h, f*w] in [0, 1] (NCHW), or NULL;
 *   rgb    host bytes [B, f*h, f*w, C] (HWC, rows top to bottom), or NULL.
 * Returns 0 or a negative code; a wrong latent channel count is ENG_EINVAL.
 */
int eng_vae_decode(eng_vae *v, const eng_tensor *latents, float *image, uint8_t *rgb,
                   eng_error *err);

/*
 * diffusers' postprocess of decoder outputs x [B, C, H, W] (host float): image = clamp(x * 0.5 +
 * 0.5, 0, 1) (NCHW, may alias x) and rgb[b, y, x, c] = the float32 product image * 255 rounded
 * half to even (numpy's round), as HWC bytes. A NaN stays NaN in image and becomes 0 in rgb.
 * image or rgb may be NULL.
 */
void eng_vae_postprocess(const float *x, int64_t B, int64_t C, int64_t H, int64_t W, float *image,
                         uint8_t *rgb);

#endif
