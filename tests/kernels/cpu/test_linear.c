/* test_linear.c - k_cpu_linear against a naive double-precision y = x w^T + b. */
#include <criterion/criterion.h>

#include <stdlib.h>

#include "kernels/cpu/k_cpu.h"
#include "tests/common/test_util.h"

#define TOL 1e-4

static void ref_linear(double *y, const float *x, const float *w, const float *b, int64_t M,
                       int64_t K, int64_t O)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t o = 0; o < O; o++) {
            double s = b ? b[o] : 0.0;
            for (int64_t k = 0; k < K; k++)
                s += (double)x[m * K + k] * w[o * K + k];
            y[m * O + o] = s;
        }
}

static void check_linear(int64_t M, int64_t K, int64_t O, int with_bias, uint64_t seed)
{
    uint64_t st = seed;
    float *x = tu_alloc(M * K), *w = tu_alloc(O * K), *b = tu_alloc(O), *y = tu_alloc(M * O);
    double *ref = tu_alloc_d(M * O);
    tu_rand_fill(x, M * K, &st, -1.0f, 1.0f);
    tu_rand_fill(w, O * K, &st, -0.5f, 0.5f);
    tu_rand_fill(b, O, &st, -2.0f, 2.0f);
    tu_poison(y, M * O);
    const float *bp = with_bias ? b : NULL;
    k_cpu_linear(y, x, w, bp, M, K, O);
    ref_linear(ref, x, w, bp, M, K, O);
    cr_assert(!tu_has_nan(y, M * O), "linear M=%lld K=%lld O=%lld bias=%d: output not fully written",
              (long long)M, (long long)K, (long long)O, with_bias);
    double err = tu_rel_err(y, ref, M * O);
    cr_assert(err <= TOL, "linear M=%lld K=%lld O=%lld bias=%d: rel err %g", (long long)M,
              (long long)K, (long long)O, with_bias, err);
    free(x), free(w), free(b), free(y), free(ref);
}

static const int64_t shapes[][3] = {
    {1, 1, 1}, {1, 7, 33}, {7, 33, 1}, {33, 7, 7}, {5, 1, 9}, {64, 256, 96}, {300, 513, 129},
};

Test(linear, with_bias)
{
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_linear(shapes[i][0], shapes[i][1], shapes[i][2], 1, 0x1234 + i);
}

Test(linear, without_bias)
{
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_linear(shapes[i][0], shapes[i][1], shapes[i][2], 0, 0x5678 + i);
}

/* K = 0 is an empty sum: y must be exactly b (or zero), with BLAS never consulted. */
Test(linear, empty_inner_dim)
{
    uint64_t st = 99;
    float b[5], y[3 * 5];
    tu_rand_fill(b, 5, &st, -1.0f, 1.0f);
    tu_poison(y, 15);
    k_cpu_linear(y, NULL, NULL, b, 3, 0, 5);
    for (int i = 0; i < 15; i++)
        cr_assert(y[i] == b[i % 5], "K=0 with bias: y[%d] = %g, want %g", i, y[i], b[i % 5]);
    tu_poison(y, 15);
    k_cpu_linear(y, NULL, NULL, NULL, 3, 0, 5);
    for (int i = 0; i < 15; i++)
        cr_assert(y[i] == 0.0f, "K=0 without bias: y[%d] = %g, want 0", i, y[i]);
}

/* Stale contents of y must not leak into the result without a bias (beta = 0 never reads y). */
Test(linear, ignores_previous_output)
{
    uint64_t st = 7;
    const int64_t M = 9, K = 17, O = 11;
    float *x = tu_alloc(M * K), *w = tu_alloc(O * K), *y = tu_alloc(M * O);
    double *ref = tu_alloc_d(M * O);
    tu_rand_fill(x, M * K, &st, -1.0f, 1.0f);
    tu_rand_fill(w, O * K, &st, -1.0f, 1.0f);
    tu_rand_fill(y, M * O, &st, 1e6f, 2e6f);
    k_cpu_linear(y, x, w, NULL, M, K, O);
    ref_linear(ref, x, w, NULL, M, K, O);
    double err = tu_rel_err(y, ref, M * O);
    cr_assert(err <= TOL, "rel err %g with garbage in y beforehand", err);
    free(x), free(w), free(y), free(ref);
}
