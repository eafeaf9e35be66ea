/*
 * mmdit.h - the SD3-family MMDiT denoiser (diffusers' SD3Transformer2DModel semantics), with
 * softmax or TTT attention per module as the config's TTT map says (engine/io/config.h).
 *
 * Loads the diffusers layout (a transformer/ folder: config.json + *.safetensors) or the SAI
 * single-file layout (model.diffusion_model.*); weights live in one allocation on the chosen
 * backend, in the chosen dtype. An eng_mmdit is used by one thread at a time; forward calls
 * may vary the batch size and latent size between calls.
 */
#ifndef TTTD_ENGINE_MMDIT_H
#define TTTD_ENGINE_MMDIT_H

#include "engine/backend/backend.h"
#include "engine/io/config.h"

typedef struct eng_mmdit eng_mmdit;

/*
 * path: a diffusers transformer folder (config.json + weights), or a single .safetensors file
 * in the SAI layout (the config is then derived from the tensor shapes). dtype: F32 on the CPU
 * backend. Every tensor the config needs must be present with its expected shape; a missing or
 * misshapen tensor is an error naming it. Returns 0 or a negative code.
 * SAI files hold no TTT parameters (the SAI layout predates TTT): a derived config has no TTT
 * module, and a TTT model is loaded from the diffusers layout.
 */
int eng_mmdit_load(eng_mmdit **out, const char *path, eng_backend *be, eng_dtype dtype,
                   eng_error *err);
void eng_mmdit_free(eng_mmdit *m);

const eng_transformer_config *eng_mmdit_config(const eng_mmdit *m);
eng_backend *eng_mmdit_backend(const eng_mmdit *m);
/* The dtype the weights and activations are in (the forward's tensors must have it). */
eng_dtype eng_mmdit_dtype(const eng_mmdit *m);

/*
 * One denoiser evaluation for a batch of B samples, each with its own timestep:
 *   x       [B, in_channels, H, W] latents (H, W multiples of patch_size, and H/p, W/p at most
 *           pos_embed_max_size)
 *   t       host array of B timesteps (sigma * 1000, as diffusers passes them)
 *   ctx     [B, Nt, joint_attention_dim] text tokens
 *   pooled  [B, pooled_projection_dim]
 *   out     [B, out_channels, H, W], the predicted velocity
 * All tensors live on m's backend in m's dtype. Returns 0 or a negative code.
 */
int eng_mmdit_forward(eng_mmdit *m, const eng_tensor *x, const float *t, const eng_tensor *ctx,
                      const eng_tensor *pooled, eng_tensor *out, eng_error *err);

/*
 * Graphs (on by default): on a backend that records op sequences (CUDA graphs), the forward of
 * each input shape runs eagerly once, is recorded the second time and replayed from then on, so
 * that a small model is not bound by kernel launches. The inputs are copied into buffers the graph
 * owns and the output out of them (a few device copies), and up to MMDIT_GRAPHS shapes are kept.
 * Results equal the eager forward's. Off, or while a profile runs, every forward runs eagerly.
 * Turning them off releases the recorded graphs.
 */
void eng_mmdit_set_graphs(eng_mmdit *m, int on);

#endif
