/*
 * ttt_local.cu - k_cuda_ttt_local: the input transform of a TTT module (DESIGN.md section 4,
 * steps 2-3; the CPU reference is kernels/cpu/ttt_local.c) in three small kernels instead of
 * the transposes, layer norm, split, convolution, add and join it took op by op:
 *   1. partial sums and sums of squares of k per (sample, channel, token split), in double;
 *   2. their reduction to mean and 1/sqrt(var + eps) per (sample, channel);
 *   3. per token (a block) and channel (a thread): the (normalised) value plus, on image tokens,
 *      its 3x3 depthwise neighbourhood and the bias - for q and for k in one launch (blockIdx.y
 *      picks which).
 * Layout [B, N, C] with channels fastest, so a warp reads 32 consecutive channels of one token
 * and the 3x3 neighbours of a token come from L1/L2. Memory traffic: k read twice (stats, then
 * apply), q once, q2 and k2 written once. Scratch: B * splits * C double2 + B * C float2.
 */
#include "kernels/cuda/k_cuda_common.cuh"
#include "kernels/cuda/k_cuda_internal.h"

#define TL_CH 64  /* channels per stats block (threadIdx.x) */
#define TL_ROWS 4 /* token rows per stats block (threadIdx.y) */

/* part[(b * S + s) * C + c] = (sum, sum of squares) of k[b, n, c] over split s's tokens. */
template <typename T>
__global__ void __launch_bounds__(TL_CH *TL_ROWS)
    ttt_local_stats_kernel(double2 *part, const T *k, int64_t N, int64_t C, int64_t S)
{
    __shared__ double2 red[TL_ROWS][TL_CH];
    const int64_t c = (int64_t)blockIdx.x * TL_CH + threadIdx.x, s = blockIdx.y, b = blockIdx.z;
    const int64_t per = (N + S - 1) / S, n0 = s * per, n1 = n0 + per < N ? n0 + per : N;
    double sum = 0.0, sq = 0.0;
    if (c < C) {
        const T *kb = k + b * N * C + c;
        for (int64_t n = n0 + threadIdx.y; n < n1; n += TL_ROWS) {
            double x = (double)k_ld(kb, n * C);
            sum += x;
            sq += x * x;
        }
    }
    red[threadIdx.y][threadIdx.x] = make_double2(sum, sq);
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        for (int r = 1; r < TL_ROWS; r++) {
            sum += red[r][threadIdx.x].x;
            sq += red[r][threadIdx.x].y;
        }
        part[(b * S + s) * C + c] = make_double2(sum, sq);
    }
}

/* stats[b * C + c] = (mean, 1 / sqrt(biased var + eps)). */
__global__ void ttt_local_finish_kernel(float2 *stats, const double2 *part, int64_t B, int64_t N,
                                        int64_t C, int64_t S, float eps)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= B * C)
        return;
    int64_t b = i / C, c = i % C;
    double sum = 0.0, sq = 0.0;
    for (int64_t s = 0; s < S; s++) {
        double2 p = part[(b * S + s) * C + c];
        sum += p.x;
        sq += p.y;
    }
    double mean = sum / (double)N, var = sq / (double)N - mean * mean;
    if (var < 0.0)
        var = 0.0;
    stats[i] = make_float2((float)mean, (float)(1.0 / sqrt(var + (double)eps)));
}

struct ttt_local_io {
    void *y;          /* q2 or k2 */
    const void *x;    /* q or k */
    const void *w;    /* [C, 1, 3, 3] */
    const void *bias; /* [C] */
    const float2 *stats; /* NULL: no normalisation (q) */
};

/* One token per block (blockIdx.x = b * N + n), its channels over the threads; blockIdx.y 0 is q,
 * 1 is k. The sample, the token and its grid position are computed once per block, so the
 * per-element work is the loads and the multiply-adds (a first version with an element per thread
 * spent most of its time in 64-bit divisions: 350 us at SD3.5's 1024 px shape on an H100). */
template <typename T>
__global__ void __launch_bounds__(256)
    ttt_local_apply_kernel(ttt_local_io q, ttt_local_io k, int64_t N, int64_t C, int gh, int gw)
{
    const ttt_local_io io = blockIdx.y ? k : q;
    const T *x = (const T *)io.x, *w = (const T *)io.w, *bias = (const T *)io.bias;
    T *y = (T *)io.y;
    const int64_t b = blockIdx.x / N, n = blockIdx.x % N, Ni = (int64_t)gh * gw;
    const T *xs = x + b * N * C;
    T *yr = y + (b * N + n) * C;
    const float2 *st = io.stats ? io.stats + b * C : NULL;
    const bool img = n < Ni;
    const int r = img ? (int)(n / gw) : 0, col = img ? (int)(n % gw) : 0;
    /* The in-grid neighbours' token offsets (rows of C), -1 where the padding is. */
    int64_t nb[9];
#pragma unroll
    for (int t = 0; t < 9; t++) {
        const int rr = r + t / 3 - 1, cc = col + t % 3 - 1;
        nb[t] = img && rr >= 0 && rr < gh && cc >= 0 && cc < gw ? ((int64_t)rr * gw + cc) * C : -1;
    }
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float mean = 0.0f, rstd = 1.0f;
        if (st) {
            float2 s2 = st[c];
            mean = s2.x;
            rstd = s2.y;
        }
        float acc = (k_ld(xs, n * C + c) - mean) * rstd;
        if (img) {
            acc += k_ld(bias, c);
#pragma unroll
            for (int t = 0; t < 9; t++)
                if (nb[t] >= 0)
                    acc += k_ld(w, c * 9 + t) * ((k_ld(xs, nb[t] + c) - mean) * rstd);
        }
        k_st(yr, c, acc);
    }
}

template <typename T>
static int ttt_local(k_cuda_ctx *ctx, T *q2, T *k2, const T *q, const T *k, const T *qw,
                     const T *qb, const T *kw, const T *kb, int64_t B, int64_t N, int64_t C,
                     int gh, int gw, float eps)
{
    const int64_t cblocks = (C + TL_CH - 1) / TL_CH;
    int64_t S = (4 * (int64_t)ctx->sm_count + cblocks * B - 1) / (cblocks * B);
    S = S < 1 ? 1 : S > N ? N : S > 65535 ? 65535 : S;
    size_t part_bytes = ((size_t)(B * S * C) * sizeof(double2) + 255) & ~(size_t)255;
    char *scratch = (char *)k_cuda_ctx_scratch(ctx, part_bytes + (size_t)(B * C) * sizeof(float2));
    if (!scratch)
        return -1;
    double2 *part = (double2 *)scratch;
    float2 *stats = (float2 *)(scratch + part_bytes);
    if (cblocks > 65535 || B > 65535)
        K_FAIL_RETURN("k_cuda_ttt_local", "too many channels or samples for the grid");

    ttt_local_stats_kernel<T><<<dim3((unsigned)cblocks, (unsigned)S, (unsigned)B),
                                dim3(TL_CH, TL_ROWS), 0, ctx->stream>>>(part, k, N, C, S);
    K_LAUNCH_CHECK();
    ttt_local_finish_kernel<<<(unsigned)((B * C + 255) / 256), 256, 0, ctx->stream>>>(
        stats, part, B, N, C, S, eps);
    K_LAUNCH_CHECK();
    ttt_local_io qi = {q2, q, qw, qb, NULL}, ki = {k2, k, kw, kb, stats};
    if (B * N > 0x7fffffff)
        K_FAIL_RETURN("k_cuda_ttt_local", "too many tokens for the grid");
    const int threads = C >= 256 ? 256 : (int)((C + 31) / 32 * 32);
    ttt_local_apply_kernel<T><<<dim3((unsigned)(B * N), 2), threads, 0, ctx->stream>>>(
        qi, ki, N, C, gh, gw);
    K_LAUNCH_CHECK();
    return 0;
}

extern "C" int k_cuda_ttt_local(k_cuda_ctx *ctx, k_dtype dt, void *q2, void *k2, const void *q,
                                const void *k, const void *qw, const void *qb, const void *kw,
                                const void *kb, int64_t B, int64_t N, int64_t C, int gh, int gw,
                                float eps)
{
    if (B <= 0 || N <= 0 || C <= 0)
        return 0;
    K_DISPATCH(dt, T, "k_cuda_ttt_local", {
        return ttt_local<T>(ctx, (T *)q2, (T *)k2, (const T *)q, (const T *)k, (const T *)qw,
                            (const T *)qb, (const T *)kw, (const T *)kb, B, N, C, gh, gw, eps);
    });
    return 0;
}
