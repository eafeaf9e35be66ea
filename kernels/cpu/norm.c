/*
 * norm.c - layer norm, RMS norm and group norm over contiguous float rows.
 *
 * Statistics are two-pass and accumulated in double: a row of thousands of activations with a
 * large common offset loses most of its variance to cancellation in a one-pass float sum. For
 * the same reason x - mean is formed in double (mean rounded to float could be off by more than
 * the spread's last digits when the offset is large).
 * Each row (or group) is reduced by exactly one thread in a fixed order, so results do not
 * depend on the thread count. Every row is read in full before any of it is written, which
 * also makes these safe in place.
 */
#include "kernels/cpu/k_cpu.h"
#include "kernels/cpu/k_cpu_internal.h"

#include <math.h>


/* Below this many elements the threads cost more than they save. */
#define K_NORM_PAR_MIN (1 << 15)

/* Mean and 1/sqrt(biased var + eps) of x[0..n). */
static void mean_rstd(const float *x, int64_t n, float eps, double *mean, double *rstd)
{
    double s = 0.0;
    K_OMP_SIMD_SUM(s)
    for (int64_t i = 0; i < n; i++)
        s += x[i];
    double mu = s / (double)n;
    double v = 0.0;
    K_OMP_SIMD_SUM(v)
    for (int64_t i = 0; i < n; i++) {
        double d = x[i] - mu;
        v += d * d;
    }
    *mean = mu;
    *rstd = 1.0 / sqrt(v / (double)n + (double)eps);
}

void k_cpu_layer_norm(float *y, const float *x, const float *w, const float *b, int64_t M,
                      int64_t C, float eps)
{
    if (C <= 0)
        return;
    K_OMP_PARALLEL_FOR(M * C > K_NORM_PAR_MIN)
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * C;
        float *yr = y + m * C;
        double mu, rs;
        mean_rstd(xr, C, eps, &mu, &rs);
        /* Separate passes keep each loop branch-free (and vectorised); the row is still in
         * cache for the second and third. */
        K_OMP_SIMD
        for (int64_t c = 0; c < C; c++)
            yr[c] = (float)((xr[c] - mu) * rs);
        if (w) {
            K_OMP_SIMD
            for (int64_t c = 0; c < C; c++)
                yr[c] *= w[c];
        }
        if (b) {
            K_OMP_SIMD
            for (int64_t c = 0; c < C; c++)
                yr[c] += b[c];
        }
    }
}

void k_cpu_rms_norm(float *y, const float *x, const float *w, int64_t M, int64_t C, float eps)
{
    if (C <= 0)
        return;
    K_OMP_PARALLEL_FOR(M * C > K_NORM_PAR_MIN)
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * C;
        float *yr = y + m * C;
        double ss = 0.0;
        K_OMP_SIMD_SUM(ss)
        for (int64_t c = 0; c < C; c++)
            ss += (double)xr[c] * xr[c];
        float rs = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
        K_OMP_SIMD
        for (int64_t c = 0; c < C; c++)
            yr[c] = w ? xr[c] * rs * w[c] : xr[c] * rs;
    }
}

void k_cpu_group_norm(float *y, const float *x, const float *w, const float *b, int64_t B,
                      int64_t C, int64_t S, int64_t G, float eps)
{
    if (C <= 0 || S <= 0 || G <= 0)
        return;
    /* A group is Cg consecutive channels of S values each, i.e. one contiguous run of Cg * S
     * floats, so the statistics are those of a plain row. */
    const int64_t Cg = C / G, n = Cg * S;
    K_OMP_PARALLEL_FOR(B * C * S > K_NORM_PAR_MIN)
    for (int64_t bg = 0; bg < B * G; bg++) {
        const float *xg = x + bg * n;
        float *yg = y + bg * n;
        const int64_t c0 = (bg % G) * Cg;
        double mu, rs;
        mean_rstd(xg, n, eps, &mu, &rs);
        for (int64_t c = 0; c < Cg; c++) {
            /* The channel's scale is folded into rstd, but the mean is still subtracted
             * first: folding it into the offset too (x * a - mean * a) would cancel badly
             * when the mean is large against the spread. */
            double a = rs * (w ? w[c0 + c] : 1.0f);
            float off = b ? b[c0 + c] : 0.0f;
            const float *xc = xg + c * S;
            float *yc = yg + c * S;
            K_OMP_SIMD
            for (int64_t s = 0; s < S; s++)
                yc[s] = (float)((xc[s] - mu) * a) + off;
        }
    }
}
