/*
 * clip.h - the CLIP text encoder with projection (transformers' CLIPTextModelWithProjection),
 * as SD3 uses it for its text_encoder/ (CLIP-L) and text_encoder_2/ (CLIP-G).
 *
 * The model: token embedding + position embedding (positions 0..N-1); num_hidden_layers pre-LN
 * encoder layers (layer_norm1 -> causal multi-head self-attention with biased q/k/v/out
 * projections, scale head_dim^-1/2 -> residual; layer_norm2 -> fc1 -> hidden_act -> fc2 ->
 * residual); final_layer_norm; the pooled token; text_projection (no bias).
 *
 * transformers' hidden_states (output_hidden_states=True) are num_hidden_layers + 1 tensors: the
 * embeddings, then every layer's output, none of them passed through final_layer_norm.
 * hidden_states[-k] is "k from the end": SD3 takes hidden_states[-2] (k = 2), the output of the
 * second-to-last layer; diffusers' clip_skip c takes k = c + 2.
 *
 * Weights are read under transformers' names (text_model.embeddings.token_embedding.weight,
 * text_model.encoder.layers.<i>.self_attn.q_proj.weight, ..., text_projection.weight) into one
 * allocation on the chosen backend, in the chosen dtype (F32 on the CPU backend).
 *
 * An eng_clip is used by one thread at a time (it owns an activation arena).
 */
#ifndef TTTD_ENGINE_CLIP_H
#define TTTD_ENGINE_CLIP_H

#include <stdint.h>

#include "engine/backend/backend.h"
#include "engine/io/config.h"

typedef struct eng_clip eng_clip;

/*
 * dir: a text encoder folder (config.json + model.safetensors, or shards with an index).
 * Every tensor the config calls for must be present with its expected shape; a missing or
 * misshapen one is an error naming it (ENG_ENOTFOUND / ENG_EFORMAT). Returns 0 or a negative
 * code; *out is NULL on failure.
 */
int eng_clip_load(eng_clip **out, const char *dir, eng_backend *be, eng_dtype dtype,
                  eng_error *err);
/* NULL is a no-op. */
void eng_clip_free(eng_clip *m);

const eng_clip_text_config *eng_clip_get_config(const eng_clip *m);
eng_backend *eng_clip_backend(const eng_clip *m);

/*
 * The token of row ids[0..n) whose final hidden state is pooled, as transformers picks it. With
 * the eos_token_id 2 of OpenAI's and SD3's configs (the marker of configs older than
 * transformers PR #24773), the position of the largest id (the tokenizer's EOS 49407 is the
 * largest id of its vocabulary); otherwise the first position holding eos_token_id, or 0 when
 * the row has none. Ties go to the first position.
 */
int eng_clip_pool_position(const eng_clip_text_config *cfg, const int32_t *ids, int n);

/*
 * What eng_clip_encode_ex computes; any output pointer may be NULL (not wanted). Outputs are
 * tensors on the model's backend, of any float dtype (converted from the model dtype).
 */
typedef struct eng_clip_outputs {
    int hidden_layer_from_end; /* k in 1 .. num_hidden_layers + 1: hidden_states[-k] */
    eng_tensor *hidden;        /* [B, N, hidden_size]: hidden_states[-k] */
    eng_tensor *last_hidden;   /* [B, N, hidden_size]: final_layer_norm(last layer) */
    eng_tensor *pooled;        /* [B, hidden_size]: last_hidden at the pooled token */
    eng_tensor *text_embeds;   /* [B, projection_dim]: text_projection(pooled) */
} eng_clip_outputs;

/*
 * Encodes ids [B, N] (I32, 1 <= N <= max_position_embeddings), held in host memory (backend
 * NULL) or on the model's backend. An id outside [0, vocab_size) is an error. Only the layers the
 * wanted outputs need are run. Returns 0 or a negative code.
 */
int eng_clip_encode_ex(eng_clip *m, const eng_tensor *ids, const eng_clip_outputs *out,
                       eng_error *err);

/*
 * The SD3 call: hidden = hidden_states[-hidden_layer_from_end] [B, N, hidden_size] (SD3: 2) and
 * text_embeds [B, projection_dim] (the projected pooled output diffusers calls
 * pooled_prompt_embeds). Either may be NULL.
 */
int eng_clip_encode(eng_clip *m, const eng_tensor *ids, int hidden_layer_from_end,
                    eng_tensor *hidden, eng_tensor *text_embeds, eng_error *err);

#endif
