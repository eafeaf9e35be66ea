/*
 * ttt_local.cu - k_cuda_ttt_local: the input transform of a TTT module (DESIGN.md section 4,
 * steps 2-3; the CPU reference is kernels/cpu/ttt_local.c) in three small kernels instead of
 * the transposes, layer norm, split, convolution, add and join it took op by op:
 *   1. partial sums and sums of squares of k per (sample, channel, token split), in double;
 *   2. their reduction to mean and 1/sqrt(var + eps) per (sample, channel);
 *   3. per output element: the (normalised) value plus, on image tokens, its 3x3 depthwise
 *      neighbourhood and the bias - for q and for k in one launch (blockIdx.y picks which).
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

/* One output element per thread (grid-stride): blockIdx.y 0 is q, 1 is k. */
template <typename T>
__global__ void ttt_local_apply_kernel(ttt_local_io q, ttt_local_io k, int64_t B, int64_t N,
                                       int64_t C, int gh, int gw)
{
    const ttt_local_io io = blockIdx.y ? k : q;
    const T *x = (const T *)io.x, *w = (const T *)io.w, *bias = (const T *)io.bias;
    T *y = (T *)io.y;
    const int64_t total = B * N * C, Ni = (int64_t)gh * gw;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t c = i % C, bn = i / C, n = bn % N, b = bn / N;
        float mean = 0.0f, rstd = 1.0f;
        if (io.stats) {
            float2 st = io.stats[b * C + c];
            mean = st.x;
            rstd = st.y;
        }
        float acc = (k_ld(x, i) - mean) * rstd;
        if (n < Ni) {
            const int r = (int)(n / gw), col = (int)(n % gw);
            const T *xs = x + b * N * C + c;
            acc += k_ld(bias, c);
#pragma unroll
            for (int ky = 0; ky < 3; ky++) {
                const int rr = r + ky - 1;
                if (rr < 0 || rr >= gh)
                    continue;
#pragma unroll
                for (int kx = 0; kx < 3; kx++) {
                    const int cc = col + kx - 1;
                    if (cc < 0 || cc >= gw)
                        continue;
                    float v = (k_ld(xs, ((int64_t)rr * gw + cc) * C) - mean) * rstd;
                    acc += k_ld(w, c * 9 + ky * 3 + kx) * v;
                }
            }
        }
        k_st(y, i, acc);
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
    int64_t total = B * N * C, blocks = (total + 255) / 256;
    int64_t cap = 16 * (int64_t)ctx->sm_count;
    ttt_local_apply_kernel<T><<<dim3((unsigned)(blocks < cap ? blocks : cap), 2), 256, 0,
                                ctx->stream>>>(qi, ki, B, N, C, gh, gw);
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
