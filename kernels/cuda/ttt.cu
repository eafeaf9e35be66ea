/*
 * ttt.cu - k_cuda_ttt: the TTT inner model (DESIGN.md section 4, steps 4-5; the CPU reference is
 * kernels/cpu/ttt.c). k_cuda_ttt_kernel picks the path: BF16 at d = 32 or 64 goes to the fused
 * tensor-core kernels of ttt_fused.cu; everything else (F32, other d, unaligned pointers, or
 * ctx->tuning.ttt_kernel = K_TTT_CUBLAS) takes the path of this file: strided-batched cuBLAS
 * GEMMs over the heads of a sample plus small element-wise kernels, fp32 throughout (inputs in
 * BF16 are widened, every GEMM computes in true fp32, never TF32), the output rounded once on
 * store.
 *
 * Shapes: q, k, v, o [B, N, C], C = h*d, head j the channel slice [j*d, (j+1)*d); w1, w2
 * [h, d, d]. Per (sample, head), with s = d^-1/2:
 *   Z = K W1        S = SiLU(Z)        E = (S W2 - V) * s / N
 *   W2' = W2 - S^T E                   P = (E W2^T) * sig(Z) * (1 + Z (1 - sig(Z)))
 *   W1' = W1 - K^T P                   O = SiLU(Q W1') W2'
 *
 * For each sample, heads go in chunks of hc (all h unless scratch would pass
 * K_CUDA_SCRATCH_TARGET); a chunk is one batched GEMM per product, batch index = head, so a
 * head's K / Q / O are read and written in place with leading dimension C (batch stride d).
 * BF16 K and Q are first widened into an fp32 [hc, N, d] buffer (cuBLAS wants A and B of one
 * type) and the output goes through fp32 scratch, then is rounded into o. V is only read by an
 * element-wise kernel, in its own dtype.
 *
 * Scratch (fp32): [W1, W2 as fp32: 2 h d d, BF16 only] then per head of a chunk W1', W2'
 * (2 d d) and the N x d buffers Z, S, E (+ X for widened K/Q in BF16), reused as steps free
 * them: S -> E W2^T -> P, Z -> Q W1', E -> fp32 O. 3.3 MiB (BF16: 4.4 MiB) per head at
 * N = 4429, d = 64, so SD3.5's 24 heads of a sample fit in one chunk. k_cuda_ttt_heads_per_chunk
 * decides the chunk; ctx->tuning.ttt_max_heads caps it (for tests: the chunked path at small
 * sizes).
 */
#include "kernels/cuda/k_cuda_common.cuh"
#include "kernels/cuda/k_cuda_internal.h"

__device__ __forceinline__ float ttt_sigmoid(float z)
{
    return 1.0f / (1.0f + expf(-z));
}

/*
 * The element-wise kernels run over i in [0, hc N d): head j = i / (N d), r = i % (N d) the
 * element within the head's N x d matrix, which sits at j * hs + r in a scratch buffer (hs, the
 * head stride, is N d padded for alignment) and at (r / d) C + j d + r % d in a head-sliced
 * [N, C] array. The index type I is uint32_t whenever every index fits (64-bit division costs
 * several times more).
 */
template <typename I> struct ttt_geom {
    I n;  /* hc N d */
    I Nd; /* N d */
    I hs; /* head stride of the scratch buffers */
    I d, C;
};

template <typename I> __device__ __forceinline__ I ttt_buf(const ttt_geom<I> &g, I i)
{
    return i / g.Nd * g.hs + i % g.Nd;
}

template <typename I> __device__ __forceinline__ I ttt_slice(const ttt_geom<I> &g, I i)
{
    I j = i / g.Nd, r = i % g.Nd;
    return r / g.d * g.C + j * g.d + r % g.d;
}

/* A grid-stride loop over the g.n elements in index type I. */
#define TTT_LOOP(i, g)                                                                             \
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < (g).n; i += (I)gridDim.x * blockDim.x)

/* dst (fp32 scratch) = the head slices of src[N, C]. */
template <typename T, typename I>
__global__ void ttt_gather_kernel(float *dst, const T *src, ttt_geom<I> g)
{
    TTT_LOOP(i, g) dst[ttt_buf(g, i)] = k_ld(src, ttt_slice(g, i));
}

/* The head slices of dst[N, C] = src (fp32 scratch), rounded to T. */
template <typename T, typename I>
__global__ void ttt_scatter_kernel(T *dst, const float *src, ttt_geom<I> g)
{
    TTT_LOOP(i, g) k_st(dst, ttt_slice(g, i), src[ttt_buf(g, i)]);
}

/* S = SiLU(Z); S may equal Z. */
template <typename I> __global__ void ttt_silu_kernel(float *S, const float *Z, ttt_geom<I> g)
{
    TTT_LOOP(i, g) {
        I b = ttt_buf(g, i);
        float z = Z[b];
        S[b] = z * ttt_sigmoid(z);
    }
}

/* E = (E - V) * c, with V the head slices of v[N, C]. */
template <typename T, typename I>
__global__ void ttt_residual_kernel(float *E, const T *v, float c, ttt_geom<I> g)
{
    TTT_LOOP(i, g) {
        I b = ttt_buf(g, i);
        E[b] = (E[b] - k_ld(v, ttt_slice(g, i))) * c;
    }
}

/* P *= SiLU'(Z) = sig(Z) (1 + Z (1 - sig(Z))). */
template <typename I> __global__ void ttt_dsilu_kernel(float *P, const float *Z, ttt_geom<I> g)
{
    TTT_LOOP(i, g) {
        I b = ttt_buf(g, i);
        float z = Z[b], s = ttt_sigmoid(z);
        P[b] *= s * (1.0f + z * (1.0f - s));
    }
}

/* Row-major C[m, n] = alpha op(A) op(B) + beta C, fp32, batched: column-major C^T = op(B)^T
 * op(A)^T, i.e. k_gemm with the operands swapped. */
static int rm_gemm(k_cuda_ctx *ctx, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                   const float *A, int64_t lda, int64_t sa, const float *B, int64_t ldb,
                   int64_t sb, float beta, float *Cm, int64_t ldc, int64_t sc, int64_t batch)
{
    return k_gemm(ctx, tb, ta, n, m, k, alpha, B, K_F32, ldb, sb, A, lda, sa, beta, Cm, K_F32,
                  ldc, sc, batch);
}

/* Floats rounded up to a multiple of 64 (256 bytes), so that every sub-buffer stays aligned. */
static int64_t ttt_pad(int64_t n)
{
    return (n + 63) & ~(int64_t)63;
}

/* The scratch layout of one call. */
struct ttt_plan {
    int64_t hc;    /* heads per chunk */
    int64_t wcopy; /* floats of the fp32 copy of w1 (and of w2); 0 for F32 */
    int64_t wd, nd; /* padded d*d and N*d: the head strides of the scratch buffers */
    int nbuf;      /* N x d buffers per head: Z, S, E (+ X) */
};

static ttt_plan ttt_plan_make(const k_cuda_ctx *ctx, int f32, int64_t N, int64_t h, int64_t d)
{
    ttt_plan p;
    p.wcopy = f32 ? 0 : ttt_pad(h * d * d);
    p.wd = ttt_pad(d * d);
    p.nd = ttt_pad(N * d);
    p.nbuf = f32 ? 3 : 4;
    int64_t fixed = 2 * p.wcopy * (int64_t)sizeof(float);
    int64_t per_head = (2 * p.wd + p.nbuf * p.nd) * (int64_t)sizeof(float);
    int64_t fit = ((int64_t)K_CUDA_SCRATCH_TARGET - fixed) / per_head;
    const int64_t cap = ctx->tuning.ttt_max_heads;
    if (cap > 0 && cap < fit)
        fit = cap;
    p.hc = fit < 1 ? 1 : fit < h ? fit : h;
    return p;
}

extern "C" int64_t k_cuda_ttt_heads_per_chunk(const k_cuda_ctx *ctx, k_dtype dt, int64_t N,
                                              int64_t h, int64_t d)
{
    return ttt_plan_make(ctx, dt == K_F32, N, h, d).hc;
}

static size_t ttt_plan_bytes(const ttt_plan &p)
{
    return (size_t)(2 * p.wcopy + p.hc * (2 * p.wd + p.nbuf * p.nd)) * sizeof(float);
}

template <typename T, typename I>
static int ttt_run(k_cuda_ctx *ctx, const ttt_plan &p, T *o, const T *q, const T *k, const T *v,
                   const T *w1, const T *w2, int64_t B, int64_t N, int64_t h, int64_t d)
{
    constexpr bool F32 = sizeof(T) == sizeof(float);
    const int64_t C = h * d, dd = d * d;
    cudaStream_t st = ctx->stream;
    float *base = (float *)k_cuda_ctx_scratch(ctx, ttt_plan_bytes(p));
    if (!base)
        return -1;
    float *W1c = base, *W2c = W1c + p.wcopy;
    float *W1n = W2c + p.wcopy, *W2n = W1n + p.hc * p.wd;
    float *Z = W2n + p.hc * p.wd, *S = Z + p.hc * p.nd, *E = S + p.hc * p.nd;
    float *X = E + p.hc * p.nd; /* BF16 only */
    const float *W1f, *W2f;
    /* s / N in double, rounded once (as the CPU kernel does). */
    const float es = (float)(1.0 / (sqrt((double)d) * (double)N));

    if constexpr (F32) {
        W1f = (const float *)w1;
        W2f = (const float *)w2;
    } else {
        if (k_cuda_convert(st, W1c, K_F32, w1, K_BF16, h * dd) ||
            k_cuda_convert(st, W2c, K_F32, w2, K_BF16, h * dd))
            return -1;
        W1f = W1c;
        W2f = W2c;
    }

    for (int64_t b = 0; b < B; b++) {
        for (int64_t j0 = 0; j0 < h; j0 += p.hc) {
            const int64_t hc = h - j0 < p.hc ? h - j0 : p.hc, n = hc * N * d;
            const int64_t off = b * N * C + j0 * d; /* the chunk's first head in q, k, v, o */
            const unsigned nblk = k_blocks(n, K_THREADS);
            const ttt_geom<I> g = {(I)n, (I)(N * d), (I)p.nd, (I)d, (I)C};
            const float *w1j = W1f + j0 * dd, *w2j = W2f + j0 * dd;
            const float *Kp, *Qp;
            int64_t ldx, sx; /* leading dimension and head stride of K and Q */

            /* With F32 the GEMMs read K and Q in place; BF16 is widened into X first. */
            if constexpr (F32) {
                Kp = (const float *)(k + off);
                ldx = C;
                sx = d;
            } else {
                ttt_gather_kernel<T, I><<<nblk, K_THREADS, 0, st>>>(X, k + off, g);
                K_LAUNCH_CHECK();
                Kp = X;
                ldx = d;
                sx = p.nd;
            }

            /* Z = K W1; S = SiLU(Z); E = (S W2 - V) * s / N. */
            if (rm_gemm(ctx, 0, 0, N, d, d, 1.0f, Kp, ldx, sx, w1j, d, dd, 0.0f, Z, d, p.nd, hc))
                return -1;
            ttt_silu_kernel<I><<<nblk, K_THREADS, 0, st>>>(S, Z, g);
            K_LAUNCH_CHECK();
            if (rm_gemm(ctx, 0, 0, N, d, d, 1.0f, S, d, p.nd, w2j, d, dd, 0.0f, E, d, p.nd, hc))
                return -1;
            ttt_residual_kernel<T, I><<<nblk, K_THREADS, 0, st>>>(E, v + off, es, g);
            K_LAUNCH_CHECK();

            /* W2' = W2 - S^T E; then S is free for P = (E W2^T) * SiLU'(Z). */
            CUDA_TRY(cudaMemcpy2DAsync(W2n, (size_t)p.wd * sizeof(float), w2j,
                                       (size_t)dd * sizeof(float), (size_t)dd * sizeof(float),
                                       (size_t)hc, cudaMemcpyDeviceToDevice, st));
            if (rm_gemm(ctx, 1, 0, d, d, N, -1.0f, S, d, p.nd, E, d, p.nd, 1.0f, W2n, d, p.wd, hc))
                return -1;
            if (rm_gemm(ctx, 0, 1, N, d, d, 1.0f, E, d, p.nd, w2j, d, dd, 0.0f, S, d, p.nd, hc))
                return -1;
            ttt_dsilu_kernel<I><<<nblk, K_THREADS, 0, st>>>(S, Z, g);
            K_LAUNCH_CHECK();

            /* W1' = W1 - K^T P. */
            CUDA_TRY(cudaMemcpy2DAsync(W1n, (size_t)p.wd * sizeof(float), w1j,
                                       (size_t)dd * sizeof(float), (size_t)dd * sizeof(float),
                                       (size_t)hc, cudaMemcpyDeviceToDevice, st));
            if (rm_gemm(ctx, 1, 0, d, d, N, -1.0f, Kp, ldx, sx, S, d, p.nd, 1.0f, W1n, d, p.wd, hc))
                return -1;

            /* O = SiLU(Q W1') W2'. */
            if constexpr (F32) {
                Qp = (const float *)(q + off);
            } else {
                ttt_gather_kernel<T, I><<<nblk, K_THREADS, 0, st>>>(X, q + off, g);
                K_LAUNCH_CHECK();
                Qp = X;
            }
            if (rm_gemm(ctx, 0, 0, N, d, d, 1.0f, Qp, ldx, sx, W1n, d, p.wd, 0.0f, Z, d, p.nd, hc))
                return -1;
            ttt_silu_kernel<I><<<nblk, K_THREADS, 0, st>>>(Z, Z, g);
            K_LAUNCH_CHECK();
            if constexpr (F32) {
                if (rm_gemm(ctx, 0, 0, N, d, d, 1.0f, Z, d, p.nd, W2n, d, p.wd, 0.0f,
                            (float *)(o + off), C, d, hc))
                    return -1;
            } else {
                if (rm_gemm(ctx, 0, 0, N, d, d, 1.0f, Z, d, p.nd, W2n, d, p.wd, 0.0f, E, d, p.nd,
                            hc))
                    return -1;
                ttt_scatter_kernel<T, I><<<nblk, K_THREADS, 0, st>>>(o + off, E, g);
                K_LAUNCH_CHECK();
            }
        }
    }
    return 0;
}

extern "C" k_ttt_kernel k_cuda_ttt_kernel(const k_cuda_ctx *ctx, k_dtype dt, int64_t B, int64_t N,
                                          int64_t h, int64_t d, int aligned)
{
    /* The fused kernels index tokens and (sample, head) pairs in int, and their grid's x
     * dimension is B*h. */
    const int64_t lim = INT32_MAX - 1024;
    const int fits = dt == K_BF16 && (d == 32 || d == 64) && aligned && N < lim && B * h < lim;
    if (ctx->tuning.ttt_kernel == K_TTT_CUBLAS || !fits)
        return K_TTT_CUBLAS;
    return K_TTT_FUSED;
}

extern "C" int k_cuda_ttt(k_cuda_ctx *ctx, k_dtype dt, void *o, const void *q, const void *k,
                          const void *v, const void *w1, const void *w2, int64_t B, int64_t N,
                          int64_t h, int64_t d)
{
    if (B <= 0 || N <= 0 || h <= 0 || d <= 0)
        return 0;
    const int aligned = k_aligned16(o) && k_aligned16(q) && k_aligned16(k) && k_aligned16(v) &&
                        k_aligned16(w1) && k_aligned16(w2);
    if (k_cuda_ttt_kernel(ctx, dt, B, N, h, d, aligned) == K_TTT_FUSED)
        return k_cuda_ttt_fused(ctx, o, q, k, v, w1, w2, B, N, h, d);
    const ttt_plan p = ttt_plan_make(ctx, dt == K_F32, N, h, d);
    /* The largest index a kernel forms: a chunk's elements (plus one grid stride past them), a
     * scratch offset, a token-slice offset. */
    const int64_t top = (int64_t)1 << 31;
    const int small = p.hc * p.nd + ((int64_t)8192 * K_THREADS) < top && N * h * d < top;
    K_DISPATCH(dt, T, "k_cuda_ttt", {
        if (small)
            return ttt_run<T, uint32_t>(ctx, p, (T *)o, (const T *)q, (const T *)k, (const T *)v,
                                        (const T *)w1, (const T *)w2, B, N, h, d);
        return ttt_run<T, int64_t>(ctx, p, (T *)o, (const T *)q, (const T *)k, (const T *)v,
                                   (const T *)w1, (const T *)w2, B, N, h, d);
    });
    return 0;
}
