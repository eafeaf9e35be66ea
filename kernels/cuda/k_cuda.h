/*
 * k_cuda.h - the CUDA kernels: C-callable launchers over raw device pointers, the GPU
 * counterpart of kernels/cpu/k_cpu.h (same shapes, same meaning, checked against it by
 * tests/kernels/cuda/test_gpu_ops.c).
 *
 * This layer knows nothing of tensors or the engine: callers (engine/backend/backend_cuda.c) have
 * already checked shapes and dtypes. Shape letters: B = batch, N = tokens, C = channels,
 * M = rows, K = input features, O = output features, H/W = height/width, h = heads,
 * d = head dim. Arrays are contiguous, row-major, in device memory.
 *
 * Storage is F32 or BF16 (K_F16 only for k_cuda_convert); every kernel computes in fp32 and
 * rounds once on store. All arrays of one call share the dtype `dt`.
 *
 * Every launcher enqueues work on a stream (a cudaStream_t, or the stream of a k_cuda_ctx for
 * the ops that need cuBLAS or scratch memory), checks the launch with cudaGetLastError, and
 * returns 0 or -1; on -1, k_cuda_last_error() says which call failed and why. Launchers do not
 * synchronize. A k_cuda_ctx is used by one thread at a time; the stateless launchers are
 * thread-safe.
 */
#ifndef TTTD_KERNELS_CUDA_H
#define TTTD_KERNELS_CUDA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* cublasLt.h declares one function without a prototype, which C's -Wstrict-prototypes flags. */
#if !defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#endif
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#if !defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include "kernels/k_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- error checking ---------------------------------------------------------------------- */

/*
 * One macro makes all checks: evaluate `call` once, compare with `ok`, and on failure hand
 * the call's text and the status string to `on_fail`.
 */
#define K_CHECK_IMPL(type, ok, strfn, call, on_fail)                                              \
    do {                                                                                           \
        type k_status_ = (call);                                                                   \
        if (k_status_ != (ok)) {                                                                   \
            on_fail(#call, strfn(k_status_));                                                      \
        }                                                                                          \
    } while (0)

/* Fail fast: print file, line, call and error, then exit(1). For tests and tools only. */
#define K_FAIL_EXIT(what, msg)                                                                     \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, (what), (msg));             \
        exit(1);                                                                                   \
    } while (0)
#define CUDA_CHECK(call) K_CHECK_IMPL(cudaError_t, cudaSuccess, cudaGetErrorString, call, K_FAIL_EXIT)
#define CUBLAS_CHECK(call)                                                                         \
    K_CHECK_IMPL(cublasStatus_t, CUBLAS_STATUS_SUCCESS, cublasGetStatusString, call, K_FAIL_EXIT)

/* Library code: record the failure for k_cuda_last_error() and `return -1` from the caller. */
#define K_FAIL_RETURN(what, msg)                                                                   \
    do {                                                                                           \
        k_cuda_set_error(__FILE__, __LINE__, (what), (msg));                                      \
        return -1;                                                                                 \
    } while (0)
#define CUDA_TRY(call) K_CHECK_IMPL(cudaError_t, cudaSuccess, cudaGetErrorString, call, K_FAIL_RETURN)
#define CUBLAS_TRY(call)                                                                           \
    K_CHECK_IMPL(cublasStatus_t, CUBLAS_STATUS_SUCCESS, cublasGetStatusString, call, K_FAIL_RETURN)
/* After a kernel launch. */
#define K_LAUNCH_CHECK() CUDA_TRY(cudaGetLastError())

/* Records "file:line: what: msg" as this thread's last error. */
void k_cuda_set_error(const char *file, int line, const char *what, const char *msg);
/* This thread's last recorded error ("" when none); valid until the next failure. */
const char *k_cuda_last_error(void);

/* ---- dtypes and the per-stream context ------------------------------------------------------ */

typedef enum k_dtype {
    K_F32 = 0,
    K_F16 = 1, /* k_cuda_convert only */
    K_BF16 = 2,
} k_dtype;

/* Bytes per element: 4, 2, 2. */
size_t k_dtype_size(k_dtype dt);

struct k_lt_plan;
struct k_cudnn_attn;

/* The attention paths (k_cuda_attention); k_cuda_attention_kernel picks one per call. */
typedef enum k_attn_kernel {
    K_ATTN_AUTO = 0,      /* in k_cuda_tuning only: let k_cuda_attention_kernel decide */
    K_ATTN_FUSED_D32 = 1, /* online softmax, one thread per query, d = 32 */
    K_ATTN_FUSED_D64 = 2, /* the same at d = 64 */
    K_ATTN_GEMM = 3,      /* scores and P v through cuBLAS, any d */
    K_ATTN_CUDNN = 4,     /* cuDNN's fused flash attention: bf16, no bias (built with cuDNN only) */
} k_attn_kernel;

/*
 * Overrides of the kernel choice, for tests and benchmarks that must reach every path at small
 * sizes. Zero (the default after k_cuda_ctx_init) means: let the selection functions decide.
 */
typedef struct k_cuda_tuning {
    k_attn_kernel attn_kernel; /* not AUTO: attention takes this path where it can run the call */
    int ttt_max_heads;         /* > 0: TTT scratch chunks hold at most this many heads */
    int ttt_kernel;            /* a k_ttt_kernel: TTT takes that path where the shape allows it */
} k_cuda_tuning;

/*
 * What the GEMM-based ops need besides a stream: cuBLAS and cuBLASLt handles bound to the
 * stream, their workspace, a scratch buffer (attention scores, im2col columns) that grows on
 * demand, a small cache of cuBLASLt plans keyed by shape, and (built with cuDNN) a cuDNN handle
 * with its attention plans, made on first use. Made by k_cuda_ctx_init on the current device,
 * released by k_cuda_ctx_free. One thread at a time.
 */
typedef struct k_cuda_ctx {
    int device;
    int sm_count;
    cudaStream_t stream;
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    void *workspace; /* cuBLAS / cuBLASLt workspace */
    size_t workspace_size;
    void *scratch;   /* owned by the GEMM-based ops during one call */
    size_t scratch_size;
    uint64_t scratch_generation; /* counts the scratch's reallocations (recorded graphs go stale) */
    struct k_lt_plan *plans;
    int n_plans, next_plan;
    struct k_cudnn_attn *cudnn; /* cuDNN handle and attention plans, made by the first cuDNN call */
    int64_t attn_cudnn_runs;    /* attention calls cuDNN ran (tests check which path served them) */
    k_cuda_tuning tuning;
} k_cuda_ctx;

/* Sets the device, creates the stream, handles and workspace. 0 or -1 (all released on -1). */
int k_cuda_ctx_init(k_cuda_ctx *ctx, int device);
/* Releases everything; a zeroed or already-freed ctx is a no-op. */
void k_cuda_ctx_free(k_cuda_ctx *ctx);
/* Returns scratch of at least nbytes (growing it: waits for the stream first), or NULL. */
void *k_cuda_ctx_scratch(k_cuda_ctx *ctx, size_t nbytes);

/* The scratch an op aims to stay under; larger problems are processed in chunks. */
#define K_CUDA_SCRATCH_TARGET ((size_t)256 << 20)

/* ---- ops ---------------------------------------------------------------------------------- */

/* y = x converted from xt to yt (F32/F16/BF16, round to nearest even); same dtype copies. */
int k_cuda_convert(cudaStream_t s, void *y, k_dtype yt, const void *x, k_dtype xt, int64_t n);

/* y[M, O] = x[M, K] w[O, K]^T + b[O] (b may be NULL), cuBLASLt, fp32 accumulate (no TF32). */
int k_cuda_linear(k_cuda_ctx *ctx, k_dtype dt, void *y, const void *x, const void *w,
                  const void *b, int64_t M, int64_t K, int64_t O);
/* The same, then GELU (tanh form) on y: in cuBLASLt's GELU epilogue where it has an algorithm for
 * the shape, else as a separate pass. */
int k_cuda_linear_gelu(k_cuda_ctx *ctx, k_dtype dt, void *y, const void *x, const void *w,
                       const void *b, int64_t M, int64_t K, int64_t O);

/* Row-wise over C: (x - mean)/sqrt(var + eps) (biased var) * w + b; w, b may be NULL. */
int k_cuda_layer_norm(cudaStream_t s, k_dtype dt, void *y, const void *x, const void *w,
                      const void *b, int64_t M, int64_t C, float eps);
/* y[B, N, C] = LayerNorm(x) (no affine) * (1 + scale[B, C]) + shift[B, C]; y may equal x. */
int k_cuda_norm_modulate(cudaStream_t s, k_dtype dt, void *y, const void *x, const void *scale,
                         const void *shift, int64_t B, int64_t N, int64_t C, float eps);
/* Row-wise over C: x / sqrt(mean(x^2) + eps) * w; w may be NULL. */
int k_cuda_rms_norm(cudaStream_t s, k_dtype dt, void *y, const void *x, const void *w, int64_t M,
                    int64_t C, float eps);
/* x[B, C, S]: each group of C/G channels normalised over (C/G) * S values; then w[C], b[C]. */
int k_cuda_group_norm(cudaStream_t s, k_dtype dt, void *y, const void *x, const void *w,
                      const void *b, int64_t B, int64_t C, int64_t S, int64_t G, float eps);

/* Element-wise activations; y may equal x. */
typedef enum k_act {
    K_ACT_SILU = 0,
    K_ACT_GELU_TANH = 1,
    K_ACT_GELU_ERF = 2,
    K_ACT_QUICK_GELU = 3,
} k_act;
int k_cuda_act(cudaStream_t s, k_dtype dt, void *y, const void *x, int64_t n, k_act kind);
/* Row-wise softmax over N; y may equal x. */
int k_cuda_softmax(cudaStream_t s, k_dtype dt, void *y, const void *x, int64_t M, int64_t N);

/* y[i] = a[i] (op) b[i % nb] (nb divides n); y may equal a. op: 0 add, 1 mul. */
int k_cuda_binary(cudaStream_t s, k_dtype dt, void *y, const void *a, const void *b, int64_t n,
                  int64_t nb, int op);
/* y = x * sc; y may equal x. */
int k_cuda_scale(cudaStream_t s, k_dtype dt, void *y, const void *x, float sc, int64_t n);
/* y[B, N, C] = x * (1 + scale[B, C]) + shift[B, C]; y may equal x. */
int k_cuda_modulate(cudaStream_t s, k_dtype dt, void *y, const void *x, const void *scale,
                    const void *shift, int64_t B, int64_t N, int64_t C);
/* y[B, N, C] += gate[B, C] * x[B, N, C]. */
int k_cuda_gated_add(cudaStream_t s, k_dtype dt, void *y, const void *x, const void *gate,
                     int64_t B, int64_t N, int64_t C);
/* y[B, O, S] += b[O] (the bias of a convolution). */
int k_cuda_channel_bias(cudaStream_t s, k_dtype dt, void *y, const void *b, int64_t B, int64_t O,
                        int64_t S);

/* y[B, Na + Nb, C] = concat(a[B, Na, C], b[B, Nb, C]) along tokens; split is the inverse.
 * esize is the element size in bytes (dtype-agnostic copies). */
int k_cuda_concat_tokens(cudaStream_t s, size_t esize, void *y, const void *a, const void *b,
                         int64_t B, int64_t Na, int64_t Nb, int64_t C);
int k_cuda_split_tokens(cudaStream_t s, size_t esize, void *a, void *b, const void *y, int64_t B,
                        int64_t Na, int64_t Nb, int64_t C);

/* y[n, C] = table[ids[i], :]; rows whose id is outside [0, V) are written as zeros (a kernel
 * cannot report cheaply; callers validate ids where they can). */
int k_cuda_embedding(cudaStream_t s, k_dtype dt, void *y, const void *table, const int32_t *ids,
                     int64_t n, int64_t V, int64_t C);
/* y[B, Y, X] = x[B, X, Y]. */
int k_cuda_transpose(cudaStream_t s, k_dtype dt, void *y, const void *x, int64_t B, int64_t X,
                     int64_t Y);
/* y[BC, 2H, 2W] from x[BC, H, W]. */
int k_cuda_upsample_nearest2x(cudaStream_t s, k_dtype dt, void *y, const void *x, int64_t BC,
                              int64_t H, int64_t W);

/* y[B, C_out, H_out, W_out]; b may be NULL. Depthwise (groups == C_in == C_out): a direct
 * kernel; otherwise im2col (skipped for 1x1 stride-1 unpadded) + cuBLAS, in chunks. */
int k_cuda_conv2d(k_cuda_ctx *ctx, k_dtype dt, void *y, const void *x, const void *w,
                  const void *b, const k_conv2d_shape *s);

/*
 * o[B, Nq, h*d] = softmax(scale * q k^T + bias, masked) v per head; q[B, Nq, h*d],
 * k, v [B, Nk, h*d]; bias [h, Nq, Nk] F32 whatever dt is, or NULL; causal: key j > query i masked out.
 * A row with every key masked gives zeros. BF16 without bias: cuDNN's fused flash attention
 * where the build has cuDNN and cuDNN has a plan for the call; otherwise d = 32 or 64: a fused
 * online-softmax kernel; other d: scores through cuBLAS into scratch, query rows in chunks.
 */
/* Which path k_cuda_attention takes for this call on ctx's device: the one place that decides
 * (honouring ctx->tuning.attn_kernel where that path can run the call). K_ATTN_CUDNN may still
 * fall back, to the path this returns for has_bias = 1, when cuDNN builds no plan for the call. */
k_attn_kernel k_cuda_attention_kernel(const k_cuda_ctx *ctx, k_dtype dt, int has_bias, int causal,
                                      int64_t B, int64_t Nq, int64_t Nk, int64_t h, int64_t d);
int k_cuda_attention(k_cuda_ctx *ctx, k_dtype dt, void *o, const void *q, const void *k,
                     const void *v, const float *bias, int64_t B, int64_t Nq, int64_t Nk, int64_t h,
                     int64_t d, float scale, int causal);
/*
 * The same without bias through cuDNN's fused flash attention (attention_cudnn.cu), plans cached
 * in ctx. Returns 0 when done, 1 when cuDNN cannot run this call (a build without cuDNN, a dtype
 * other than BF16, or no plan for the shape and alignment: nothing was enqueued, another path must
 * run it; k_cuda_last_error() says why), -1 on an error.
 */
int k_cuda_attention_cudnn(k_cuda_ctx *ctx, k_dtype dt, void *o, const void *q, const void *k,
                           const void *v, int64_t B, int64_t Nq, int64_t Nk, int64_t h, int64_t d,
                           float scale, int causal);

/* y = x with dims reordered: y.shape[i] = shape[perm[i]] (perm a permutation of 0..ndim-1,
 * ndim <= 6); elements of esize bytes (1, 2, 4 or 8) are moved as raw bits. */
int k_cuda_permute(cudaStream_t s, size_t esize, void *y, const void *x, int ndim,
                   const int64_t *shape, const int *perm);

/*
 * The TTT inner model (engine/backend/backend.h, eng_op_ttt; kernels/cpu/ttt.c is the reference) per
 * sample and head: q, k, v, o [B, N, h*d], w1, w2 [h, d, d], all in dtype dt; scratch from ctx.
 * Two paths: the fused bf16 tensor-core kernels (kernels/cuda/ttt_fused.cu: BF16, d = 32 or 64,
 * every pointer 16-byte aligned; fp32 accumulation, S, E, P and W1', W2' rounded to bf16 as MMA
 * operands) and the cuBLAS path (kernels/cuda/ttt.cu: any shape, every step in fp32, no TF32).
 */
typedef enum k_ttt_kernel {
    K_TTT_CUBLAS = 1, /* fp32 cuBLAS GEMMs per sample over chunks of heads, any d, F32 or BF16 */
    K_TTT_FUSED = 2,  /* gradients, update, output: three bf16 mma.sync kernels, no host loop */
} k_ttt_kernel;
/* Which path k_cuda_ttt takes for this shape (aligned: q, k, v, o, w1, w2 all 16-byte aligned):
 * the one place that decides. ctx->tuning.ttt_kernel asks for a path; the fused one is taken
 * only where the shape allows it. */
k_ttt_kernel k_cuda_ttt_kernel(const k_cuda_ctx *ctx, k_dtype dt, int64_t B, int64_t N, int64_t h,
                               int64_t d, int aligned);
/* How many heads the cuBLAS path processes per scratch chunk for this shape: the one place that
 * decides (fits K_CUDA_SCRATCH_TARGET, capped by ctx->tuning.ttt_max_heads). */
int64_t k_cuda_ttt_heads_per_chunk(const k_cuda_ctx *ctx, k_dtype dt, int64_t N, int64_t h,
                                   int64_t d);
int k_cuda_ttt(k_cuda_ctx *ctx, k_dtype dt, void *o, const void *q, const void *k, const void *v,
               const void *w1, const void *w2, int64_t B, int64_t N, int64_t h, int64_t d);

/*
 * The input transform of a TTT module (engine/backend/backend.h, eng_op_ttt_local; the reference
 * is kernels/cpu/ttt_local.c): q, k, q2, k2 [B, N, C], the first gh * gw tokens image patches;
 * qw, kw [C, 1, 3, 3], qb, kb [C]; statistics in double, the rest in fp32; scratch from ctx.
 */
int k_cuda_ttt_local(k_cuda_ctx *ctx, k_dtype dt, void *q2, void *k2, const void *q,
                     const void *k, const void *qw, const void *qb, const void *kw, const void *kb,
                     int64_t B, int64_t N, int64_t C, int gh, int gw, float eps);

#ifdef __cplusplus
}
#endif

#endif
