/*
 * upsample.c - nearest-neighbour 2x upsampling (k_cpu_upsample_nearest2x), as the VAE
 * decoder's up blocks use it: y[bc, 2i + di, 2j + dj] = x[bc, i, j].
 */
#include "kernels/cpu/k_cpu.h"

#include <string.h>

/* Below this many output values a parallel region costs more than it saves. */
#define UPSAMPLE_PAR_MIN ((int64_t)1 << 16)

void k_cpu_upsample_nearest2x(float *y, const float *x, int64_t BC, int64_t H, int64_t W)
{
    const int64_t rows = BC * H; /* input rows; each becomes two identical output rows */

#pragma omp parallel for schedule(static) if (rows * W * 4 > UPSAMPLE_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *src = x + r * W;
        float *d = y + r * 4 * W; /* input row r of plane bc starts output row 2r of the same plane */
        for (int64_t j = 0; j < W; j++) {
            d[2 * j] = src[j];
            d[2 * j + 1] = src[j];
        }
        memcpy(d + 2 * W, d, (size_t)(2 * W) * sizeof *d);
    }
}
