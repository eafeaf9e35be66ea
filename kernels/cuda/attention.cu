/*
 * attention.cu - multi-head softmax attention. q[B, Nq, h*d], k and v [B, Nk, h*d] ->
 * o[B, Nq, h*d]; heads are contiguous d-wide slices of the channel dim; optional additive
 * fp32 bias[h, Nq, Nk] shared by the batch (F32 whatever the storage dtype); causal masks key j > query i.
 *
 * Three paths, all fp32 inside:
 *  - cudnn (BF16, no bias, built with cuDNN): cuDNN's fused flash attention on tensor cores,
 *    attention_cudnn.cu; where cuDNN builds no plan for a call, one of the two below runs it.
 *  - fused (d = 32 or 64): one thread per query, a block of AT_BQ queries of one (b, head)
 *    walks K/V tiles staged in shared memory with an online softmax (running max and sum),
 *    so no score matrix is stored. Plain CUDA cores: correct and compact, not the fastest.
 *  - gemm (any d): per sample and chunk of query rows, scores = scale * q k^T through a cuBLAS
 *    strided-batched GEMM over heads into fp32 scratch, a masked softmax kernel writes P in
 *    the storage dtype, and a second batched GEMM computes P v straight into o.
 * k_cuda_attention_kernel picks the path for a call; ctx->tuning.attn_kernel forces one where it
 * can run the call (for tests and benches).
 */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/k_cuda_common.cuh"
#include "kernels/cuda/k_cuda_internal.h"

#define AT_BQ 128 /* queries (threads) per block */
#define AT_BK 64  /* keys per shared-memory tile */
#define AT_CH 16  /* keys scored together before one softmax rescale */

template <typename T, int D>
__global__ void __launch_bounds__(AT_BQ)
    attn_fused_kernel(T *o, const T *q, const T *k, const T *v, const float *bias, int64_t Nq,
                      int64_t Nk, int64_t h, float scale, int causal)
{
    __shared__ __align__(16) float Ks[AT_BK][D];
    __shared__ __align__(16) float Vs[AT_BK][D];
    const int64_t ld = h * D, b = blockIdx.y / h, hh = blockIdx.y % h;
    const int64_t i = (int64_t)blockIdx.x * AT_BQ + threadIdx.x;
    const bool active = i < Nq;
    const T *kb = k + b * Nk * ld + hh * D, *vb = v + b * Nk * ld + hh * D;
    const float *brow = (bias && active) ? bias + (hh * Nq + i) * Nk : NULL;
    float qr[D], acc[D], m = -INFINITY, l = 0.0f;

    if (active) {
        const T *qp = q + (b * Nq + i) * ld + hh * D;
#pragma unroll
        for (int c = 0; c < D; c++)
            qr[c] = k_ld(qp, c) * scale;
    } else {
#pragma unroll
        for (int c = 0; c < D; c++)
            qr[c] = 0.0f;
    }
#pragma unroll
    for (int c = 0; c < D; c++)
        acc[c] = 0.0f;

    /* With a causal mask no query of this block sees keys past its last query. */
    int64_t kend = Nk;
    if (causal) {
        int64_t last = (int64_t)blockIdx.x * AT_BQ + AT_BQ;
        kend = last < Nk ? last : Nk;
    }
    for (int64_t j0 = 0; j0 < kend; j0 += AT_BK) {
        __syncthreads(); /* the previous tile is consumed */
        for (int t = threadIdx.x; t < AT_BK * D; t += AT_BQ) {
            int r = t / D, c = t % D;
            int64_t j = j0 + r;
            Ks[r][c] = j < Nk ? k_ld(kb, j * ld + c) : 0.0f;
            Vs[r][c] = j < Nk ? k_ld(vb, j * ld + c) : 0.0f;
        }
        __syncthreads();
        if (!active)
            continue;
        int64_t jn = kend - j0 < AT_BK ? kend - j0 : AT_BK;
        for (int jj = 0; jj < jn; jj += AT_CH) {
            float sc[AT_CH], mx = -INFINITY;
#pragma unroll
            for (int t = 0; t < AT_CH; t++) {
                int64_t j = j0 + jj + t;
                const float4 *kr = reinterpret_cast<const float4 *>(Ks[jj + t]);
                float dot = 0.0f;
#pragma unroll
                for (int c = 0; c < D / 4; c++) {
                    float4 kv = kr[c];
                    dot += qr[4 * c] * kv.x + qr[4 * c + 1] * kv.y + qr[4 * c + 2] * kv.z +
                           qr[4 * c + 3] * kv.w;
                }
                if (j >= Nk || (causal && j > i))
                    dot = -INFINITY;
                else if (brow)
                    dot += brow[j];
                sc[t] = dot;
                mx = fmaxf(mx, dot);
            }
            float mn = fmaxf(m, mx);
            if (mn == -INFINITY)
                continue; /* everything so far is masked */
            float corr = expf(m - mn); /* 0 when m is still -inf */
            l *= corr;
#pragma unroll
            for (int c = 0; c < D; c++)
                acc[c] *= corr;
#pragma unroll
            for (int t = 0; t < AT_CH; t++) {
                float p = expf(sc[t] - mn);
                const float4 *vr = reinterpret_cast<const float4 *>(Vs[jj + t]);
                l += p;
#pragma unroll
                for (int c = 0; c < D / 4; c++) {
                    float4 vv = vr[c];
                    acc[4 * c] += p * vv.x;
                    acc[4 * c + 1] += p * vv.y;
                    acc[4 * c + 2] += p * vv.z;
                    acc[4 * c + 3] += p * vv.w;
                }
            }
            m = mn;
        }
    }
    if (active) {
        float inv = l > 0.0f ? 1.0f / l : 0.0f;
        T *op = o + (b * Nq + i) * ld + hh * D;
#pragma unroll
        for (int c = 0; c < D; c++)
            k_st(op, c, acc[c] * inv);
    }
}

template <typename T, int D>
static int attn_fused(cudaStream_t s, T *o, const T *q, const T *k, const T *v, const float *bias,
                      int64_t B, int64_t Nq, int64_t Nk, int64_t h, float scale, int causal)
{
    dim3 grid((unsigned)((Nq + AT_BQ - 1) / AT_BQ), (unsigned)(B * h));
    attn_fused_kernel<T, D><<<grid, AT_BQ, 0, s>>>(o, q, k, v, bias, Nq, Nk, h, scale, causal);
    K_LAUNCH_CHECK();
    return 0;
}

/* Rows r of S[h * nc, Nk] (fp32 scores, already scaled) -> P in T: + bias, mask, softmax.
 * Row r is head r / nc, query i0 + r % nc. A fully masked row becomes zeros. P may equal S
 * when T is float (each element is read before its own write by the same thread). */
template <typename T, bool BLOCK>
__global__ void attn_softmax_kernel(T *P, const float *S, const float *bias, int64_t rows, int64_t nc,
                                    int64_t Nq, int64_t Nk, int64_t i0, int causal)
{
    __shared__ float shm[32];
    int tid, nt;
    int64_t r = k_row_setup<BLOCK>(&tid, &nt);
    if (r >= rows)
        return;
    int64_t hh = r / nc, i = i0 + r % nc;
    int64_t jend = causal ? (i + 1 < Nk ? i + 1 : Nk) : Nk;
    const float *sr = S + r * Nk;
    const float *br = bias ? bias + (hh * Nq + i) * Nk : NULL;
    T *pr = P + r * Nk;

    float mx = -INFINITY;
    for (int64_t j = tid; j < jend; j += nt)
        mx = fmaxf(mx, sr[j] + (br ? br[j] : 0.0f));
    mx = k_row_max<BLOCK>(mx, shm);
    float sum = 0.0f;
    if (mx != -INFINITY)
        for (int64_t j = tid; j < jend; j += nt)
            sum += expf(sr[j] + (br ? br[j] : 0.0f) - mx);
    sum = k_row_sum<BLOCK>(sum, shm);
    float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int64_t j = tid; j < Nk; j += nt) {
        float p = 0.0f;
        if (j < jend && mx != -INFINITY)
            p = expf(sr[j] + (br ? br[j] : 0.0f) - mx) * inv;
        k_st(pr, j, p);
    }
}

template <typename T>
static int attn_gemm(k_cuda_ctx *ctx, k_dtype dt, T *o, const T *q, const T *k, const T *v,
                     const float *bias, int64_t B, int64_t Nq, int64_t Nk, int64_t h, int64_t d,
                     float scale, int causal)
{
    const int64_t ld = h * d;
    const bool sep = sizeof(T) != sizeof(float); /* P needs its own buffer */
    int64_t per_row = h * Nk * (4 + (sep ? (int64_t)sizeof(T) : 0));
    int64_t fit = (int64_t)K_CUDA_SCRATCH_TARGET / per_row;
    int64_t nc = fit < 1 ? 1 : fit < Nq ? fit : Nq;
    size_t s_bytes = ((size_t)(h * nc * Nk) * 4 + 255) & ~(size_t)255;
    char *scratch = (char *)k_cuda_ctx_scratch(ctx, s_bytes + (sep ? (size_t)(h * nc * Nk) * sizeof(T) : 0));
    if (!scratch)
        return -1;
    float *S = (float *)scratch;
    T *P = sep ? (T *)(scratch + s_bytes) : (T *)scratch;

    for (int64_t b = 0; b < B; b++) {
        const T *qb = q + b * Nq * ld, *kb = k + b * Nk * ld, *vb = v + b * Nk * ld;
        T *ob = o + b * Nq * ld;
        for (int64_t i0 = 0; i0 < Nq; i0 += nc) {
            int64_t n = Nq - i0 < nc ? Nq - i0 : nc, rows = h * n;
            if (k_gemm(ctx, 1, 0, Nk, n, d, scale, kb, dt, ld, d, qb + i0 * ld, ld, d, 0.0f, S,
                       K_F32, Nk, n * Nk, h))
                return -1;
            if (Nk > K_WARP_ROW_MAX)
                attn_softmax_kernel<T, true><<<k_row_blocks(rows, 1), K_ROW_THREADS, 0,
                                               ctx->stream>>>(P, S, bias, rows, n, Nq, Nk, i0,
                                                              causal);
            else
                attn_softmax_kernel<T, false><<<k_row_blocks(rows, 0), K_ROW_THREADS, 0,
                                                ctx->stream>>>(P, S, bias, rows, n, Nq, Nk, i0,
                                                               causal);
            K_LAUNCH_CHECK();
            if (k_gemm(ctx, 0, 0, d, n, Nk, 1.0f, vb, dt, ld, d, P, Nk, n * Nk, 0.0f,
                       ob + i0 * ld, dt, ld, d, h))
                return -1;
        }
    }
    return 0;
}

/* Whether cuDNN's path may take a call: built with cuDNN, BF16, no bias, and a head dim its
 * flash-attention engine covers (multiple of 8, at most 256; the plan build has the last word). */
static bool attn_cudnn_may_run(k_dtype dt, int has_bias, int64_t d)
{
#ifdef TTTD_CUDNN
    return dt == K_BF16 && !has_bias && d % 8 == 0 && d <= 256;
#else
    (void)dt, (void)has_bias, (void)d;
    return false;
#endif
}

extern "C" k_attn_kernel k_cuda_attention_kernel(const k_cuda_ctx *ctx, k_dtype dt, int has_bias,
                                                 int causal, int64_t B, int64_t Nq, int64_t Nk,
                                                 int64_t h, int64_t d)
{
    (void)causal, (void)Nq, (void)Nk; /* every path masks and takes any length */
    const bool cudnn = attn_cudnn_may_run(dt, has_bias, d);
    const bool fused = B * h <= 65535; /* the fused grid's y dimension */
    switch (ctx->tuning.attn_kernel) {
    case K_ATTN_CUDNN:
        if (cudnn)
            return K_ATTN_CUDNN;
        break;
    case K_ATTN_GEMM:
        return K_ATTN_GEMM;
    case K_ATTN_FUSED_D64:
        if (fused && d == 64)
            return K_ATTN_FUSED_D64;
        break;
    case K_ATTN_FUSED_D32:
        if (fused && d == 32)
            return K_ATTN_FUSED_D32;
        break;
    case K_ATTN_AUTO:
        if (cudnn)
            return K_ATTN_CUDNN;
        break;
    }
    if (!fused)
        return K_ATTN_GEMM;
    return d == 64 ? K_ATTN_FUSED_D64 : d == 32 ? K_ATTN_FUSED_D32 : K_ATTN_GEMM;
}

extern "C" int k_cuda_attention(k_cuda_ctx *ctx, k_dtype dt, void *o, const void *q,
                                const void *k, const void *v, const float *bias, int64_t B,
                                int64_t Nq, int64_t Nk, int64_t h, int64_t d, float scale,
                                int causal)
{
    if (B <= 0 || Nq <= 0 || h <= 0 || d <= 0)
        return 0;
    if (Nk <= 0) { /* nothing to attend to: zeros, as a fully masked row */
        CUDA_TRY(cudaMemsetAsync(o, 0, (size_t)(B * Nq * h * d) * k_dtype_size(dt), ctx->stream));
        return 0;
    }
    k_attn_kernel kernel = k_cuda_attention_kernel(ctx, dt, bias != NULL, causal, B, Nq, Nk, h, d);
    if (kernel == K_ATTN_CUDNN) {
        int rc = k_cuda_attention_cudnn(ctx, dt, o, q, k, v, B, Nq, Nk, h, d, scale, causal);
        if (rc <= 0)
            return rc;
        /* No cuDNN plan for this call (remembered, so this costs nothing next time): the
         * path the selection takes where cuDNN cannot. */
        kernel = k_cuda_attention_kernel(ctx, dt, 1, causal, B, Nq, Nk, h, d);
    }
    K_DISPATCH(dt, T, "k_cuda_attention", {
        if (kernel == K_ATTN_FUSED_D64)
            return attn_fused<T, 64>(ctx->stream, (T *)o, (const T *)q, (const T *)k, (const T *)v,
                                     bias, B, Nq, Nk, h, scale, causal);
        if (kernel == K_ATTN_FUSED_D32)
            return attn_fused<T, 32>(ctx->stream, (T *)o, (const T *)q, (const T *)k, (const T *)v,
                                     bias, B, Nq, Nk, h, scale, causal);
        return attn_gemm<T>(ctx, dt, (T *)o, (const T *)q, (const T *)k, (const T *)v,
                            bias, B, Nq, Nk, h, d, scale, causal);
    });
    return 0;
}
