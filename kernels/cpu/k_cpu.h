/*
 * k_cpu.h - the CPU kernels: portable C11 over raw float pointers, the readable
 * reference that the CUDA kernels are checked against.
 *
 * This layer knows nothing of tensors or the engine: callers (engine/backend/backend_cpu.c)
 * have already checked shapes. Shape letters: B = batch, N = tokens, C = channels,
 * M = rows, K = input features, O = output features, H/W = height/width,
 * h = heads, d = head dim. Arrays are contiguous, row-major.
 *
 * Matrix products go through OpenBLAS (cblas_sgemm), never a hand-written GEMM.
 * Loops over independent rows/channels are parallel with OpenMP where the work
 * is large enough to pay for it; results do not depend on the thread count.
 * All functions are thread-safe (no global state besides the BLAS/OpenMP runtimes).
 */
#ifndef TTTD_KERNELS_CPU_H
#define TTTD_KERNELS_CPU_H

#include <stdint.h>

#include "kernels/k_types.h"

/* Conversions. bf16/f16 are raw uint16_t bit patterns; float -> half rounds to nearest even,
 * keeps NaN a NaN and saturates nothing (overflow -> inf, as IEEE does). */
void k_cpu_f32_to_bf16(uint16_t *y, const float *x, int64_t n);
void k_cpu_bf16_to_f32(float *y, const uint16_t *x, int64_t n);
void k_cpu_f32_to_f16(uint16_t *y, const float *x, int64_t n);
void k_cpu_f16_to_f32(float *y, const uint16_t *x, int64_t n);

/* y[M, O] = x[M, K] w[O, K]^T + b[O] (b may be NULL). */
void k_cpu_linear(float *y, const float *x, const float *w, const float *b, int64_t M, int64_t K,
                  int64_t O);

/* Row-wise over C: (x - mean)/sqrt(var + eps) (biased var) * w + b; w, b may be NULL. */
void k_cpu_layer_norm(float *y, const float *x, const float *w, const float *b, int64_t M,
                      int64_t C, float eps);
/* Row-wise over C: x / sqrt(mean(x^2) + eps) * w; w may be NULL. */
void k_cpu_rms_norm(float *y, const float *x, const float *w, int64_t M, int64_t C, float eps);
/* x[B, C, S]: each group of C/G channels normalised over (C/G) * S values; then w[C], b[C]. */
void k_cpu_group_norm(float *y, const float *x, const float *w, const float *b, int64_t B,
                      int64_t C, int64_t S, int64_t G, float eps);

/* Element-wise activations; y may equal x. */
void k_cpu_silu(float *y, const float *x, int64_t n);
void k_cpu_gelu_tanh(float *y, const float *x, int64_t n);
void k_cpu_gelu_erf(float *y, const float *x, int64_t n);
void k_cpu_quick_gelu(float *y, const float *x, int64_t n);

/* Row-wise softmax over N; y may equal x. Stable (max subtracted). */
void k_cpu_softmax(float *y, const float *x, int64_t M, int64_t N);

/* y[i] = a[i] + b[i % nb] (nb divides n); y may equal a. Likewise mul. */
void k_cpu_add(float *y, const float *a, const float *b, int64_t n, int64_t nb);
void k_cpu_mul(float *y, const float *a, const float *b, int64_t n, int64_t nb);
/* y = x * s; y may equal x. */
void k_cpu_scale(float *y, const float *x, float s, int64_t n);

/* y[B, N, C] = x * (1 + scale[B, C]) + shift[B, C]; y may equal x. */
void k_cpu_modulate(float *y, const float *x, const float *scale, const float *shift, int64_t B,
                    int64_t N, int64_t C);
/* y[B, N, C] += gate[B, C] * x[B, N, C]. */
void k_cpu_gated_add(float *y, const float *x, const float *gate, int64_t B, int64_t N, int64_t C);

/* y[B, Na + Nb, C] = concat(a[B, Na, C], b[B, Nb, C]) along tokens; split is the inverse. */
void k_cpu_concat_tokens(float *y, const float *a, const float *b, int64_t B, int64_t Na,
                         int64_t Nb, int64_t C);
void k_cpu_split_tokens(float *a, float *b, const float *y, int64_t B, int64_t Na, int64_t Nb,
                        int64_t C);

/* y[B, C_out, H_out, W_out]; b may be NULL. Returns 0, or -1 when scratch memory
 * (im2col) cannot be allocated. */
int k_cpu_conv2d(float *y, const float *x, const float *w, const float *b, const k_conv2d_shape *s);

/* y[BC, 2H, 2W] from x[BC, H, W]. */
void k_cpu_upsample_nearest2x(float *y, const float *x, int64_t BC, int64_t H, int64_t W);

/*
 * o[B, Nq, h*d] = softmax(scale * q k^T + bias, masked) v per head; q[B, Nq, h*d],
 * k, v [B, Nk, h*d]; bias [h, Nq, Nk] or NULL; causal: key j > query i masked out.
 * Returns 0, or -1 when scratch memory cannot be allocated.
 */
int k_cpu_attention(float *o, const float *q, const float *k, const float *v, const float *bias,
                    int64_t B, int64_t Nq, int64_t Nk, int64_t h, int64_t d, float scale,
                    int causal);

/* y[n, C] = table[ids[i], :]. Returns the index of the first id outside [0, V), or -1 when all
 * are valid (then y is fully written). */
int64_t k_cpu_embedding(float *y, const float *table, const int32_t *ids, int64_t n, int64_t V,
                        int64_t C);

/* y[B, Y, X] = x[B, X, Y]. */
void k_cpu_transpose(float *y, const float *x, int64_t B, int64_t X, int64_t Y);

/* y = x with dims reordered: y.shape[i] = shape[perm[i]]; ndim <= 6; any elem_size (2 and 4
 * bytes are copied typed, others by memcpy): a permutation moves bits, whatever they encode. */
void k_cpu_permute(void *y, const void *x, int ndim, const int64_t *shape, const int *perm,
                   int elem_size);

/*
 * The TTT inner model (engine/backend/backend.h, eng_op_ttt) per sample and head: q, k, v, o [B, N, h*d];
 * w1, w2 [h, d, d]. Returns 0, or -1 when scratch memory cannot be allocated.
 */
int k_cpu_ttt(float *o, const float *q, const float *k, const float *v, const float *w1,
              const float *w2, int64_t B, int64_t N, int64_t h, int64_t d);

/*
 * The input transform of a TTT module (engine/backend/backend.h, eng_op_ttt_local): the key norm
 * of k over the N tokens of each sample, then q and the normalised k each plus their depthwise
 * 3x3 convolution on the first gh * gw (image) tokens. q, k, q2, k2 [B, N, C]; qw, kw [C, 1, 3, 3];
 * qb, kb [C]. Returns 0, or -1 when scratch memory cannot be allocated.
 */
int k_cpu_ttt_local(float *q2, float *k2, const float *q, const float *k, const float *qw,
                    const float *qb, const float *kw, const float *kb, int64_t B, int64_t N,
                    int64_t C, int gh, int gw, float eps);

#endif
