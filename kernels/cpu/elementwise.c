/*
 * elementwise.c - memory-bound float ops: broadcast add/mul, scale, adaLN modulate and gated
 * residual add, token concat/split, embedding lookup and the batched 2-D transpose.
 *
 * None of these reduce, so each output element is computed the same way whatever the thread
 * count; the threads only split the index range.
 */
#include "kernels/cpu/k_cpu.h"
#include "kernels/cpu/k_cpu_internal.h"

#include <string.h>


/* One memory pass per element: threads only pay once there are ~256 KiB to stream. */
#define K_EW_PAR_MIN (1 << 16)
/* Elements per task in add/mul: large enough to amortise the b-offset bookkeeping. */
#define K_EW_CHUNK (1 << 14)

typedef enum { EW_ADD, EW_MUL } ew_op;

/*
 * y[i] = a[i] (op) b[i % nb]. The range is cut into fixed chunks (so the work split does not
 * depend on nb) and each chunk walks b in runs that do not wrap, keeping the inner loop a plain
 * vectorisable a[k] op b[k] rather than a modulo per element.
 */
static void binary_bcast(float *y, const float *a, const float *b, int64_t n, int64_t nb, ew_op op)
{
    if (n <= 0 || nb <= 0)
        return;
    if (nb == 1) { /* a scalar b: runs of one would make the chunked walk crawl */
        const float s = b[0];
        K_OMP_PARALLEL_FOR_SIMD(n > K_EW_PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            y[i] = op == EW_ADD ? a[i] + s : a[i] * s;
        return;
    }
    const int64_t chunks = (n + K_EW_CHUNK - 1) / K_EW_CHUNK;
    K_OMP_PARALLEL_FOR(n > K_EW_PAR_MIN)
    for (int64_t ch = 0; ch < chunks; ch++) {
        int64_t i = ch * K_EW_CHUNK;
        const int64_t end = i + K_EW_CHUNK < n ? i + K_EW_CHUNK : n;
        int64_t j = i % nb;
        while (i < end) {
            int64_t len = end - i < nb - j ? end - i : nb - j;
            float *yr = y + i;
            const float *ar = a + i, *br = b + j;
            if (op == EW_ADD) {
                K_OMP_SIMD
                for (int64_t k = 0; k < len; k++)
                    yr[k] = ar[k] + br[k];
            } else {
                K_OMP_SIMD
                for (int64_t k = 0; k < len; k++)
                    yr[k] = ar[k] * br[k];
            }
            i += len;
            j = 0;
        }
    }
}

void k_cpu_add(float *y, const float *a, const float *b, int64_t n, int64_t nb)
{
    binary_bcast(y, a, b, n, nb, EW_ADD);
}

void k_cpu_mul(float *y, const float *a, const float *b, int64_t n, int64_t nb)
{
    binary_bcast(y, a, b, n, nb, EW_MUL);
}

void k_cpu_scale(float *y, const float *x, float s, int64_t n)
{
    K_OMP_PARALLEL_FOR_SIMD(n > K_EW_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * s;
}

/* (1 + scale) is rounded to float before the multiply, as PyTorch's x * (1 + scale) + shift
 * does, so the two agree to the last bit where the compiler does not fuse the multiply-add. */
void k_cpu_modulate(float *y, const float *x, const float *scale, const float *shift, int64_t B,
                    int64_t N, int64_t C)
{
    K_OMP_PARALLEL_FOR(B * N * C > K_EW_PAR_MIN)
    for (int64_t r = 0; r < B * N; r++) {
        const float *sc = scale + (r / N) * C, *sh = shift + (r / N) * C;
        const float *xr = x + r * C;
        float *yr = y + r * C;
        K_OMP_SIMD
        for (int64_t c = 0; c < C; c++)
            yr[c] = xr[c] * (1.0f + sc[c]) + sh[c];
    }
}

void k_cpu_gated_add(float *y, const float *x, const float *gate, int64_t B, int64_t N, int64_t C)
{
    K_OMP_PARALLEL_FOR(B * N * C > K_EW_PAR_MIN)
    for (int64_t r = 0; r < B * N; r++) {
        const float *g = gate + (r / N) * C;
        const float *xr = x + r * C;
        float *yr = y + r * C;
        K_OMP_SIMD
        for (int64_t c = 0; c < C; c++)
            yr[c] += g[c] * xr[c];
    }
}

/* Per batch item the two halves are contiguous blocks, so concat and split are two memcpys. */
void k_cpu_concat_tokens(float *y, const float *a, const float *b, int64_t B, int64_t Na,
                         int64_t Nb, int64_t C)
{
    const int64_t sa = Na * C, sb = Nb * C;
    K_OMP_PARALLEL_FOR(B * (sa + sb) > K_EW_PAR_MIN)
    for (int64_t i = 0; i < B; i++) {
        float *yi = y + i * (sa + sb);
        if (sa > 0)
            memcpy(yi, a + i * sa, (size_t)sa * sizeof *y);
        if (sb > 0)
            memcpy(yi + sa, b + i * sb, (size_t)sb * sizeof *y);
    }
}

void k_cpu_split_tokens(float *a, float *b, const float *y, int64_t B, int64_t Na, int64_t Nb,
                        int64_t C)
{
    const int64_t sa = Na * C, sb = Nb * C;
    K_OMP_PARALLEL_FOR(B * (sa + sb) > K_EW_PAR_MIN)
    for (int64_t i = 0; i < B; i++) {
        const float *yi = y + i * (sa + sb);
        if (sa > 0)
            memcpy(a + i * sa, yi, (size_t)sa * sizeof *a);
        if (sb > 0)
            memcpy(b + i * sb, yi + sa, (size_t)sb * sizeof *b);
    }
}

/* All ids are checked before anything is copied, so a bad id costs no partial write and the
 * answer (the first bad index) does not depend on how the copy is split among threads. */
int64_t k_cpu_embedding(float *y, const float *table, const int32_t *ids, int64_t n, int64_t V,
                        int64_t C)
{
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || (int64_t)ids[i] >= V)
            return i;
    if (C <= 0)
        return -1;
    K_OMP_PARALLEL_FOR(n * C > K_EW_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        memcpy(y + i * C, table + (int64_t)ids[i] * C, (size_t)C * sizeof *y);
    return -1;
}

/*
 * A naive transpose strides through one side by a whole row per element, missing the cache on
 * every access for large X and Y. Tiles of T x T (4 KiB each side at T = 32) keep both the
 * source rows and the destination rows of a tile resident while it is copied.
 */
#define K_TR_TILE 32

void k_cpu_transpose(float *y, const float *x, int64_t B, int64_t X, int64_t Y)
{
    if (B <= 0 || X <= 0 || Y <= 0)
        return;
    const int64_t tx = (X + K_TR_TILE - 1) / K_TR_TILE, ty = (Y + K_TR_TILE - 1) / K_TR_TILE;
    const int64_t tiles = B * tx * ty;
    K_OMP_PARALLEL_FOR(B * X * Y > K_EW_PAR_MIN)
    for (int64_t t = 0; t < tiles; t++) {
        const int64_t bi = t / (tx * ty), rem = t % (tx * ty);
        const int64_t x0 = (rem / ty) * K_TR_TILE, y0 = (rem % ty) * K_TR_TILE;
        const int64_t x1 = x0 + K_TR_TILE < X ? x0 + K_TR_TILE : X;
        const int64_t y1 = y0 + K_TR_TILE < Y ? y0 + K_TR_TILE : Y;
        const float *xb = x + bi * X * Y;
        float *yb = y + bi * X * Y;
        for (int64_t i = x0; i < x1; i++)
            for (int64_t j = y0; j < y1; j++)
                yb[j * X + i] = xb[i * Y + j];
    }
}
