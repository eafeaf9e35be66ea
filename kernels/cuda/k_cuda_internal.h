/*
 * k_cuda_internal.h - host-side helpers shared by the kernels/cuda .cu files (private to them):
 * the release of the cuBLASLt and cuDNN plan caches, one column-major strided-batched GEMM
 * through cuBLAS with fp32 accumulation (never TF32) used by conv2d and the general attention path,
 * and the fused TTT launcher that k_cuda_ttt hands its shapes to.
 */
#ifndef TTTD_KERNELS_CUDA_INTERNAL_H
#define TTTD_KERNELS_CUDA_INTERNAL_H

#include "kernels/cuda/k_cuda.h"

/* Frees the cached cuBLASLt plans of ctx (linear.cu). */
void k_lt_plans_free(k_cuda_ctx *ctx);
/* Frees ctx's cuDNN handle and attention plans (attention_cudnn.cu); a no-op when none. */
void k_cudnn_attn_free(k_cuda_ctx *ctx);

/*
 * Column-major C[m, n] (ldc) = alpha * op(A) op(B) + beta * C, batch of `batch` with element
 * strides sa, sb, sc; A and B in dtype ab, C in dtype cdt (F32 or BF16), fp32 compute.
 * Returns 0 or -1 (error recorded).
 */
int k_gemm(k_cuda_ctx *ctx, int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha,
           const void *A, k_dtype ab, int64_t lda, int64_t sa, const void *B, int64_t ldb,
           int64_t sb, float beta, void *C, k_dtype cdt, int64_t ldc, int64_t sc, int64_t batch);

/*
 * The TTT op on the fused kernels (ttt_fused.cu): BF16 storage, d = 32 or 64, every pointer
 * 16-byte aligned, B*h and N below 2^31 (k_cuda_ttt_kernel checks all of this). 0 or -1.
 */
int k_cuda_ttt_fused(k_cuda_ctx *ctx, void *o, const void *q, const void *k, const void *v,
                     const void *w1, const void *w2, int64_t B, int64_t N, int64_t h, int64_t d);

#endif
