/*
 * test_upsample.c - k_cpu_upsample_nearest2x against a naive reference written here
 * (every output reads x[oy / 2, ox / 2]), on random non-square planes.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "kernels/cpu/k_cpu.h"
#include "tests/common/test_util.h"

static void run_case(int64_t BC, int64_t H, int64_t W, uint64_t seed)
{
    const int64_t nx = BC * H * W, ny = BC * 4 * H * W;
    float *x = tu_alloc(nx), *y = tu_alloc(ny);
    double *ref = tu_alloc_d(ny);
    uint64_t st = seed;
    tu_rand_fill(x, nx, &st, -2.0f, 2.0f);

    for (int64_t p = 0; p < BC; p++)
        for (int64_t oy = 0; oy < 2 * H; oy++)
            for (int64_t ox = 0; ox < 2 * W; ox++)
                ref[(p * 2 * H + oy) * 2 * W + ox] = x[(p * H + oy / 2) * W + ox / 2];

    tu_poison(y, ny);
    k_cpu_upsample_nearest2x(y, x, BC, H, W);
    cr_assert(!tu_has_nan(y, ny), "output not fully written");
    /* A copy: exact. */
    cr_assert(tu_rel_err(y, ref, ny) == 0.0, "upsample is not an exact copy");

    free(x);
    free(y);
    free(ref);
}

Test(upsample, non_square_small)
{
    run_case(3, 5, 7, 1);
}

Test(upsample, single_pixel_planes)
{
    run_case(4, 1, 1, 2);
}

Test(upsample, non_square_parallel_size)
{
    /* Large enough to take the OpenMP path. */
    run_case(6, 33, 64, 3);
}
