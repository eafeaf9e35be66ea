/*
 * prompt.h - internal to the pipeline: the SD3 prompt encoder (CLIP-L, CLIP-G, T5 and their
 * tokenizers), as diffusers' StableDiffusion3Pipeline.encode_prompt computes it with its defaults
 * (clip_skip None, max_sequence_length 256, num_images_per_prompt 1).
 *
 * For n prompts, with L = the CLIP sequence length (tokenizer/'s model_max_length, 77), T = the
 * T5 sequence length (256), D = the transformer's joint_attention_dim and P = its
 * pooled_projection_dim:
 *   clip   = [hidden_states[-2] of CLIP-L | hidden_states[-2] of CLIP-G] along channels, then
 *            zero-padded to D (CLIP widths above D, which diffusers' negative pad would cut, are
 *            refused at load: no SD3 model has them);
 *   ctx    = [clip ; T5 last_hidden_state] along tokens: [n, L + T, D];
 *   pooled = [text_embeds of CLIP-L | text_embeds of CLIP-G]: [n, P].
 *
 * Missing encoders (listed as null in model_index.json, or their folder absent) give zeros:
 *   - T5: zeros [n, T, D], as diffusers' _get_t5_prompt_embeds does when text_encoder_3 is None
 *     (since diffusers PR #12531, October 2025; before it the zeros had tokenizer_max_length = 77
 *     rows, giving 154 context tokens instead of 333);
 *   - a CLIP (diffusers cannot run without both; this is tttd's own rule, by analogy): zeros in
 *     its place in both the hidden and the pooled concatenations. Its pooled width is
 *     P - the other CLIP's projection_dim. Its hidden width only matters for a missing CLIP-L next
 *     to a present CLIP-G (it fixes where CLIP-G's channels start); it is then taken equal to its
 *     pooled width, as in every SD3 release (CLIP-L: hidden_size = projection_dim = 768).
 *     With both CLIPs missing every CLIP channel and the pooled vector are zeros.
 *
 * Not thread-safe: an encoder belongs to one thread at a time (its models own arenas).
 */
#ifndef TTTD_ENGINE_PROMPT_H
#define TTTD_ENGINE_PROMPT_H

#include "engine/backend/backend.h"
#include "engine/io/config.h"
#include "engine/core/error.h"
#include "engine/backend/tensor.h"

/* diffusers' default max_sequence_length, and the most its check_inputs accepts. */
#define ENG_PROMPT_T5_LEN 256
#define ENG_PROMPT_T5_MAX_LEN 512
/* diffusers' tokenizer_max_length when there is no CLIP-L tokenizer (and transformers' CLIP). */
#define ENG_PROMPT_CLIP_LEN 77

typedef struct eng_prompt_encoder eng_prompt_encoder;

/*
 * Loads the text encoders and tokenizers of the pipeline folder model_dir that idx lists and that
 * are present on disk, for a transformer with joint_attention_dim D and pooled_projection_dim P.
 * Checks that the widths join up: CLIP-L projection_dim + CLIP-G projection_dim = P, T5 d_model
 * = D, L within both CLIPs' max_position_embeddings; a present encoder needs its tokenizer.
 * Errors name the folder. *out is NULL on failure.
 */
int eng_prompt_encoder_load(eng_prompt_encoder **out, const char *model_dir,
                            const eng_model_index *idx, int joint_dim, int pooled_dim,
                            eng_backend *be, eng_dtype dtype, eng_error *err);
/* NULL is a no-op. */
void eng_prompt_encoder_free(eng_prompt_encoder *e);

/* Which encoders are loaded (the others give zeros). */
int eng_prompt_has_clip_l(const eng_prompt_encoder *e);
int eng_prompt_has_clip_g(const eng_prompt_encoder *e);
int eng_prompt_has_t5(const eng_prompt_encoder *e);

/* L, T (the T5 length, also of T5's zeros) and the context length L + T. */
int eng_prompt_clip_len(const eng_prompt_encoder *e);
int eng_prompt_t5_len(const eng_prompt_encoder *e);
int eng_prompt_ctx_len(const eng_prompt_encoder *e);

/*
 * The context length L + T that eng_prompt_encoder_load and then eng_prompt_set_t5_len(T) would
 * give for model_dir, without loading any encoder: L from tokenizer/ (its model_max_length, 77
 * without one), T = t5_len. Returns it, or a negative ENG_E* code with err naming the folder.
 */
int eng_prompt_ctx_len_of(const char *model_dir, const eng_model_index *idx, int t5_len,
                          eng_error *err);

/* diffusers' max_sequence_length: T in [1, ENG_PROMPT_T5_MAX_LEN], or 0 when the pipeline has no
 * T5 (its zero rows left out: the context is the CLIP tokens alone); ENG_EINVAL otherwise. */
int eng_prompt_set_t5_len(eng_prompt_encoder *e, int t5_len, eng_error *err);

/*
 * Encodes prompts[0..n) (UTF-8, none NULL) into ctx [n, ctx_len, D] and pooled [n, P], owned
 * tensors allocated here on the encoder's backend in its dtype (the caller frees them; on
 * failure neither holds memory). Every prompt goes through each encoder in one batch.
 */
int eng_prompt_encode(eng_prompt_encoder *e, const char *const *prompts, int n, eng_tensor *ctx,
                      eng_tensor *pooled, eng_error *err);

/* The token ids of one prompt as the encoder feeds them (for tests and debugging): CLIP-L,
 * CLIP-G (L each) and T5 (T); a NULL buffer or a missing tokenizer skips that one. */
int eng_prompt_tokenize(const eng_prompt_encoder *e, const char *prompt, int32_t *ids_l,
                        int32_t *ids_g, int32_t *ids_t5, eng_error *err);

#endif
