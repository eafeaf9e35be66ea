/*
 * ttt_local.c - k_cpu_ttt_local: the input transform of a TTT module (DESIGN.md section 4,
 * steps 2-3) in one pass per tensor, the reference of kernels/cuda/ttt_local.cu.
 *
 * Shapes: q, k, q2, k2 [B, N, C]; the first Ni = gh * gw tokens of a sample are its image patches
 * (row-major over the gh x gw grid), the other N - Ni its text tokens. Per sample b and channel c:
 *   k' = (k - mean) / sqrt(var + eps)      mean, biased var over all N tokens (the key norm)
 *   k2 = k' + DWConv3x3(k') + kb[c]        on image tokens; k2 = k' on text tokens
 *   q2 = q + DWConv3x3(q) + qb[c]          on image tokens; q2 = q on text tokens
 * DWConv3x3: depthwise, zero padding 1, weights w[C, 1, 3, 3] (tap ky * 3 + kx). The statistics
 * are accumulated in double (two passes: mean, then the centred squares), the rest in float;
 * normalised neighbours are recomputed, so no normalised copy of k is stored.
 */
#include "kernels/cpu/k_cpu.h"

#include <math.h>
#include <stdlib.h>

/* y[n, :] for the tokens of one sample; x is that sample's [N, C] (normalised through mean and
 * rstd when they are not NULL). */
static void local_sample(float *y, const float *x, const float *w, const float *bias,
                         const double *mean, const float *rstd, int64_t N, int64_t C, int gh,
                         int gw)
{
    const int64_t Ni = (int64_t)gh * gw;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C;
        float *yr = y + n * C;
        for (int64_t c = 0; c < C; c++)
            yr[c] = mean ? (float)((xr[c] - mean[c]) * rstd[c]) : xr[c];
        if (n >= Ni)
            continue;
        const int64_t r = n / gw, col = n % gw;
        for (int64_t c = 0; c < C; c++)
            yr[c] += bias[c];
        for (int ky = 0; ky < 3; ky++) {
            int64_t rr = r + ky - 1;
            if (rr < 0 || rr >= gh)
                continue;
            for (int kx = 0; kx < 3; kx++) {
                int64_t cc = col + kx - 1;
                if (cc < 0 || cc >= gw)
                    continue;
                const float *nr = x + (rr * gw + cc) * C;
                const int t = ky * 3 + kx;
                for (int64_t c = 0; c < C; c++) {
                    float v = mean ? (float)((nr[c] - mean[c]) * rstd[c]) : nr[c];
                    yr[c] += w[c * 9 + t] * v;
                }
            }
        }
    }
}

int k_cpu_ttt_local(float *q2, float *k2, const float *q, const float *k, const float *qw,
                    const float *qb, const float *kw, const float *kb, int64_t B, int64_t N,
                    int64_t C, int gh, int gw, float eps)
{
    double *mean = malloc((size_t)C * sizeof *mean), *acc = malloc((size_t)C * sizeof *acc);
    float *rstd = malloc((size_t)C * sizeof *rstd);
    if (!mean || !acc || !rstd) {
        free(mean), free(acc), free(rstd);
        return -1;
    }
    for (int64_t b = 0; b < B; b++) {
        const float *kb_ = k + b * N * C;
        for (int64_t c = 0; c < C; c++)
            acc[c] = 0.0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t c = 0; c < C; c++)
                acc[c] += kb_[n * C + c];
        for (int64_t c = 0; c < C; c++) {
            mean[c] = acc[c] / (double)N;
            acc[c] = 0.0;
        }
        for (int64_t n = 0; n < N; n++)
            for (int64_t c = 0; c < C; c++) {
                double dv = kb_[n * C + c] - mean[c];
                acc[c] += dv * dv;
            }
        for (int64_t c = 0; c < C; c++)
            rstd[c] = (float)(1.0 / sqrt(acc[c] / (double)N + (double)eps));
        local_sample(k2 + b * N * C, kb_, kw, kb, mean, rstd, N, C, gh, gw);
        local_sample(q2 + b * N * C, q + b * N * C, qw, qb, NULL, NULL, N, C, gh, gw);
    }
    free(mean), free(acc), free(rstd);
    return 0;
}
