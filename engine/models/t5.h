/*
 * t5.h - the T5 v1.1 encoder (transformers' T5EncoderModel), as SD3 uses it for its
 * text_encoder_3/ (T5-XXL): called with no attention mask, so every token, padding included,
 * attends to every other.
 *
 * The model: the shared token embedding; num_layers blocks of
 *   x += o(attention(q(n), k(n), v(n)) with NO score scaling and the relative position bias),
 *        n = T5LayerNorm(x) (RMS: no mean subtraction, no bias);
 *   x += wo(act(wi_0(n)) * wi_1(n)) ("gated-ACT"; wo(act(wi(n))) for plain "ACT"),
 *        n = T5LayerNorm(x);
 * then final_layer_norm. The relative position bias [h, N, N] comes from the FIRST block's
 * relative_attention_bias table [num_buckets, h] and is shared by every block; it is computed on
 * the host once per sequence length N and kept on the backend.
 *
 * Weights are read under transformers' names (encoder.block.<i>.layer.0.SelfAttention.q.weight,
 * ...). The embedding is "shared.weight", the name transformers saves the tied table under, or
 * else "encoder.embed_tokens.weight". One allocation on the chosen backend, in the chosen dtype.
 *
 * dtype: F32 or BF16. F16 is accepted but ill-advised: T5-XXL's activations overflow fp16, which
 * transformers papers over by clamping each block's output to the fp16 range; tttd does not clamp.
 *
 * An eng_t5 is used by one thread at a time (it owns an activation arena and the bias cache).
 */
#ifndef TTTD_ENGINE_T5_H
#define TTTD_ENGINE_T5_H

#include <stdint.h>

#include "engine/backend/backend.h"
#include "engine/io/config.h"

typedef struct eng_t5 eng_t5;

/*
 * dir: a text encoder folder (config.json + model.safetensors, or shards with an index).
 * A missing or misshapen tensor is an error naming it. Returns 0 or a negative code; *out is
 * NULL on failure.
 */
int eng_t5_load(eng_t5 **out, const char *dir, eng_backend *be, eng_dtype dtype, eng_error *err);
/* NULL is a no-op. */
void eng_t5_free(eng_t5 *m);

const eng_t5_config *eng_t5_get_config(const eng_t5 *m);
eng_backend *eng_t5_backend(const eng_t5 *m);

/*
 * T5Attention._relative_position_bucket, bidirectional (the encoder's): the bucket of
 * rel = key position - query position. Of num_buckets, the upper half is for rel > 0; within a
 * half, distances below a quarter of num_buckets are exact and the rest are log-spaced up to
 * max_distance (farther ones share the last bucket). The log is taken in float32, as
 * transformers does, so the bucket edges match it exactly.
 * Needs num_buckets >= 4 and max_distance > num_buckets / 4 (eng_t5_load checks both).
 */
int eng_t5_relative_bucket(int64_t rel, int num_buckets, int max_distance);

/*
 * The position bias for n tokens: bias[j][q][k] = table[bucket(k - q)][j] for table
 * [num_buckets, heads] (row-major floats), into bias (heads * n * n floats).
 */
void eng_t5_position_bias(const float *table, int num_buckets, int max_distance, int heads, int n,
                          float *bias);

/*
 * Encodes ids [B, N] (I32, N >= 1), held in host memory (backend NULL) or on the model's backend,
 * into out [B, N, d_model] (last_hidden_state) on the model's backend, of any float dtype.
 * An id outside [0, vocab_size) is an error. Returns 0 or a negative code.
 */
int eng_t5_encode(eng_t5 *m, const eng_tensor *ids, eng_tensor *out, eng_error *err);

#endif
