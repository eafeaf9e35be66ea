/* test_norm.c - layer, RMS and group norm against naive double-precision references. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>

#include "kernels/cpu/k_cpu.h"
#include "tests/common/test_util.h"

#define TOL 1e-4

/* Mean and biased variance of x[0..n). */
static void ref_stats(const float *x, int64_t n, double *mean, double *var)
{
    double s = 0.0, v = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += x[i];
    s /= (double)n;
    for (int64_t i = 0; i < n; i++)
        v += ((double)x[i] - s) * ((double)x[i] - s);
    *mean = s;
    *var = v / (double)n;
}

static void ref_layer_norm(double *y, const float *x, const float *w, const float *b, int64_t M,
                           int64_t C, double eps)
{
    for (int64_t m = 0; m < M; m++) {
        double mu, var;
        ref_stats(x + m * C, C, &mu, &var);
        for (int64_t c = 0; c < C; c++) {
            double v = ((double)x[m * C + c] - mu) / sqrt(var + eps);
            y[m * C + c] = v * (w ? w[c] : 1.0) + (b ? b[c] : 0.0);
        }
    }
}

static void ref_rms_norm(double *y, const float *x, const float *w, int64_t M, int64_t C,
                         double eps)
{
    for (int64_t m = 0; m < M; m++) {
        double ss = 0.0;
        for (int64_t c = 0; c < C; c++)
            ss += (double)x[m * C + c] * x[m * C + c];
        double r = sqrt(ss / (double)C + eps);
        for (int64_t c = 0; c < C; c++)
            y[m * C + c] = x[m * C + c] / r * (w ? w[c] : 1.0);
    }
}

/* Gathers each group value by value from its (channel, position) rather than as one row, so
 * the reference does not share the kernel's "a group is contiguous" shortcut. */
static void ref_group_norm(double *y, const float *x, const float *w, const float *b, int64_t B,
                           int64_t C, int64_t S, int64_t G, double eps)
{
    const int64_t Cg = C / G;
    for (int64_t bi = 0; bi < B; bi++)
        for (int64_t g = 0; g < G; g++) {
            double s = 0.0, v = 0.0;
            for (int64_t c = g * Cg; c < (g + 1) * Cg; c++)
                for (int64_t p = 0; p < S; p++)
                    s += x[(bi * C + c) * S + p];
            double mu = s / (double)(Cg * S);
            for (int64_t c = g * Cg; c < (g + 1) * Cg; c++)
                for (int64_t p = 0; p < S; p++) {
                    double d = x[(bi * C + c) * S + p] - mu;
                    v += d * d;
                }
            double r = sqrt(v / (double)(Cg * S) + eps);
            for (int64_t c = g * Cg; c < (g + 1) * Cg; c++)
                for (int64_t p = 0; p < S; p++) {
                    int64_t i = (bi * C + c) * S + p;
                    y[i] = (x[i] - mu) / r * (w ? w[c] : 1.0) + (b ? b[c] : 0.0);
                }
        }
}

/* affine: bit 0 = use w, bit 1 = use b. offset shifts every input (cancellation stress). */
static void check_layer_norm(int64_t M, int64_t C, int affine, float offset, uint64_t seed)
{
    uint64_t st = seed;
    const float eps = 1e-6f;
    float *x = tu_alloc(M * C), *w = tu_alloc(C), *b = tu_alloc(C), *y = tu_alloc(M * C);
    double *ref = tu_alloc_d(M * C);
    tu_rand_fill(x, M * C, &st, offset - 3.0f, offset + 3.0f);
    tu_rand_fill(w, C, &st, -2.0f, 2.0f);
    tu_rand_fill(b, C, &st, -1.0f, 1.0f);
    const float *wp = (affine & 1) ? w : NULL, *bp = (affine & 2) ? b : NULL;
    tu_poison(y, M * C);
    k_cpu_layer_norm(y, x, wp, bp, M, C, eps);
    ref_layer_norm(ref, x, wp, bp, M, C, eps);
    cr_assert(!tu_has_nan(y, M * C), "layer_norm M=%lld C=%lld: output not fully written",
              (long long)M, (long long)C);
    double err = tu_rel_err(y, ref, M * C);
    cr_assert(err <= TOL, "layer_norm M=%lld C=%lld affine=%d offset=%g: rel err %g",
              (long long)M, (long long)C, affine, offset, err);
    free(x), free(w), free(b), free(y), free(ref);
}

static void check_rms_norm(int64_t M, int64_t C, int with_w, uint64_t seed)
{
    uint64_t st = seed;
    const float eps = 1e-6f;
    float *x = tu_alloc(M * C), *w = tu_alloc(C), *y = tu_alloc(M * C);
    double *ref = tu_alloc_d(M * C);
    tu_rand_fill(x, M * C, &st, -4.0f, 4.0f);
    tu_rand_fill(w, C, &st, -2.0f, 2.0f);
    const float *wp = with_w ? w : NULL;
    tu_poison(y, M * C);
    k_cpu_rms_norm(y, x, wp, M, C, eps);
    ref_rms_norm(ref, x, wp, M, C, eps);
    cr_assert(!tu_has_nan(y, M * C), "rms_norm M=%lld C=%lld: output not fully written",
              (long long)M, (long long)C);
    double err = tu_rel_err(y, ref, M * C);
    cr_assert(err <= TOL, "rms_norm M=%lld C=%lld w=%d: rel err %g", (long long)M, (long long)C,
              with_w, err);
    free(x), free(w), free(y), free(ref);
}

static void check_group_norm(int64_t B, int64_t C, int64_t S, int64_t G, int affine,
                             uint64_t seed)
{
    uint64_t st = seed;
    const float eps = 1e-6f;
    const int64_t n = B * C * S;
    float *x = tu_alloc(n), *w = tu_alloc(C), *b = tu_alloc(C), *y = tu_alloc(n);
    double *ref = tu_alloc_d(n);
    tu_rand_fill(x, n, &st, -5.0f, 3.0f);
    tu_rand_fill(w, C, &st, -2.0f, 2.0f);
    tu_rand_fill(b, C, &st, -1.0f, 1.0f);
    const float *wp = (affine & 1) ? w : NULL, *bp = (affine & 2) ? b : NULL;
    tu_poison(y, n);
    k_cpu_group_norm(y, x, wp, bp, B, C, S, G, eps);
    ref_group_norm(ref, x, wp, bp, B, C, S, G, eps);
    cr_assert(!tu_has_nan(y, n), "group_norm B=%lld C=%lld S=%lld G=%lld: output not fully written",
              (long long)B, (long long)C, (long long)S, (long long)G);
    double err = tu_rel_err(y, ref, n);
    cr_assert(err <= TOL, "group_norm B=%lld C=%lld S=%lld G=%lld affine=%d: rel err %g",
              (long long)B, (long long)C, (long long)S, (long long)G, affine, err);
    free(x), free(w), free(b), free(y), free(ref);
}

Test(layer_norm, shapes_and_affine)
{
    static const int64_t shapes[][2] = {{1, 1}, {1, 7}, {7, 33}, {33, 7}, {3, 1}, {256, 384}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int affine = 0; affine < 4; affine++)
            check_layer_norm(shapes[i][0], shapes[i][1], affine, 0.0f, 100 + 4 * i + affine);
}

/* Rows of 1000 + small noise: a one-pass float variance would lose most digits here. */
Test(layer_norm, large_offset)
{
    check_layer_norm(4, 4096, 3, 1000.0f, 42);
    check_layer_norm(2, 33, 0, -500.0f, 43);
}

Test(rms_norm, shapes_and_weight)
{
    static const int64_t shapes[][2] = {{1, 1}, {1, 7}, {7, 33}, {33, 7}, {5, 64}, {256, 384}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int with_w = 0; with_w < 2; with_w++)
            check_rms_norm(shapes[i][0], shapes[i][1], with_w, 200 + 2 * i + with_w);
}

Test(group_norm, shapes)
{
    static const int64_t shapes[][4] = {
        {1, 1, 1, 1}, {2, 6, 7, 3}, {1, 4, 33, 2}, {3, 33, 1, 11}, {2, 64, 1024, 32},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int affine = 0; affine < 4; affine++)
            check_group_norm(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], affine,
                             300 + 4 * i + affine);
}

/* G = 1: one group is the whole sample (layer norm over C x S with a per-channel affine). */
Test(group_norm, one_group)
{
    check_group_norm(1, 7, 33, 1, 3, 400);
    check_group_norm(3, 16, 64, 1, 3, 401);
}

/* G = C: every channel is its own group (instance norm). */
Test(group_norm, group_per_channel)
{
    check_group_norm(2, 7, 33, 7, 3, 500);
    check_group_norm(1, 32, 1, 32, 3, 501); /* one value per group: var 0, y = b */
    check_group_norm(2, 128, 256, 128, 1, 502);
}
