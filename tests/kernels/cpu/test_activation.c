/* test_activation.c - SiLU, GELU (tanh and erf), quick GELU and softmax against double
 * references, plus known values, in-place calls and extreme inputs. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/k_cpu.h"
#include "tests/common/test_util.h"

#define TOL 1e-4

typedef void (*act_fn)(float *y, const float *x, int64_t n);

static double ref_silu(double x)
{
    return x / (1.0 + exp(-x));
}

/* The GELU references are written as the textbook formulas, except that 0.5 (1 + tanh(u)) and
 * 1 + erf(z) cancel to nothing in the negative tail even in double; there they switch to the
 * identical sigmoid(2u) and erfc(-z), so that a tiny negative output still has a true value to
 * be compared with. */
static double ref_gelu_tanh(double x)
{
    double u = sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
    return u >= 0.0 ? 0.5 * x * (1.0 + tanh(u)) : x / (1.0 + exp(-2.0 * u));
}

static double ref_gelu_erf(double x)
{
    return x >= 0.0 ? 0.5 * x * (1.0 + erf(x / sqrt(2.0))) : 0.5 * x * erfc(-x / sqrt(2.0));
}

static double ref_quick_gelu(double x)
{
    return x / (1.0 + exp(-1.702 * x));
}

static const struct {
    const char *name;
    act_fn fn;
    double (*ref)(double);
} acts[] = {
    {"silu", k_cpu_silu, ref_silu},
    {"gelu_tanh", k_cpu_gelu_tanh, ref_gelu_tanh},
    {"gelu_erf", k_cpu_gelu_erf, ref_gelu_erf},
    {"quick_gelu", k_cpu_quick_gelu, ref_quick_gelu},
};
#define N_ACTS (sizeof acts / sizeof acts[0])

/* 100003 crosses the OpenMP threshold with an odd tail. */
static const int64_t sizes[] = {1, 7, 33, 1000, 100003};
#define N_SIZES (sizeof sizes / sizeof sizes[0])

static void check_act(size_t a, int64_t n, int in_place, uint64_t seed)
{
    uint64_t st = seed;
    float *x = tu_alloc(n), *y = tu_alloc(n);
    double *ref = tu_alloc_d(n);
    tu_rand_fill(x, n, &st, -8.0f, 8.0f);
    for (int64_t i = 0; i < n; i++)
        ref[i] = acts[a].ref(x[i]);
    if (in_place) {
        memcpy(y, x, (size_t)n * sizeof *y);
        acts[a].fn(y, y, n);
    } else {
        tu_poison(y, n);
        acts[a].fn(y, x, n);
    }
    cr_assert(!tu_has_nan(y, n), "%s n=%lld in_place=%d: NaN in output", acts[a].name,
              (long long)n, in_place);
    double err = tu_rel_err(y, ref, n);
    cr_assert(err <= TOL, "%s n=%lld in_place=%d: rel err %g", acts[a].name, (long long)n,
              in_place, err);
    free(x), free(y), free(ref);
}

Test(activation, random)
{
    for (size_t a = 0; a < N_ACTS; a++)
        for (size_t s = 0; s < N_SIZES; s++)
            check_act(a, sizes[s], 0, 1000 + 10 * a + s);
}

Test(activation, in_place)
{
    for (size_t a = 0; a < N_ACTS; a++)
        for (size_t s = 0; s < N_SIZES; s++)
            check_act(a, sizes[s], 1, 2000 + 10 * a + s);
}

/* Values of the textbook formulas at a few points (to 1e-6 absolute). */
Test(activation, known_values)
{
    static const float xs[] = {1.0f, -2.0f, 0.5f, 0.0f};
    static const double want[][4] = {
        /* silu */ {0.7310585786300049, -0.2384058440442351, 0.3112296656009273, 0.0},
        /* gelu_tanh */ {0.8411919906082768, -0.04540230591222494, 0.34571400982514394, 0.0},
        /* gelu_erf */ {0.8413447460685429, -0.04550026389635842, 0.34573123063700656, 0.0},
        /* quick_gelu */ {0.8457957659328212, -0.06434137685579186, 0.35038843660638014, 0.0},
    };
    float y[4];
    for (size_t a = 0; a < N_ACTS; a++) {
        acts[a].fn(y, xs, 4);
        for (int i = 0; i < 4; i++)
            cr_assert(fabs(y[i] - want[a][i]) <= 1e-6, "%s(%g) = %.9g, want %.9g", acts[a].name,
                      xs[i], y[i], want[a][i]);
    }
}

/* The tanh approximation and the erf GELU differ by up to ~4.7e-4 near |x| = 2.7: each kernel
 * must match its own formula far more closely than that, so neither is the other in disguise. */
Test(activation, gelu_tanh_is_not_erf)
{
    const float xs[] = {-2.7f, 2.7f, -1.5f, 3.5f};
    float yt[4], ye[4];
    k_cpu_gelu_tanh(yt, xs, 4);
    k_cpu_gelu_erf(ye, xs, 4);
    cr_assert(fabs(yt[0] - ref_gelu_erf(xs[0])) > 3e-4, "gelu_tanh(-2.7) matches the erf form");
    cr_assert(fabs(ye[0] - ref_gelu_tanh(xs[0])) > 3e-4, "gelu_erf(-2.7) matches the tanh form");
    for (int i = 0; i < 4; i++) {
        cr_assert(fabs(yt[i] - ref_gelu_tanh(xs[i])) <= 2e-6, "gelu_tanh(%g) = %.9g, want %.9g",
                  xs[i], yt[i], ref_gelu_tanh(xs[i]));
        cr_assert(fabs(ye[i] - ref_gelu_erf(xs[i])) <= 2e-6, "gelu_erf(%g) = %.9g, want %.9g",
                  xs[i], ye[i], ref_gelu_erf(xs[i]));
    }
}

/* Huge inputs saturate to x (positive) or -0 (negative), never NaN or inf from exp overflow. */
Test(activation, extremes)
{
    const float xs[] = {-1e30f, -200.0f, -90.0f, 90.0f, 200.0f, 1e30f};
    const int n = 6;
    float y[6];
    for (size_t a = 0; a < N_ACTS; a++) {
        acts[a].fn(y, xs, n);
        for (int i = 0; i < n; i++) {
            cr_assert(isfinite(y[i]), "%s(%g) = %g is not finite", acts[a].name, xs[i], y[i]);
            float want = xs[i] > 0 ? xs[i] : 0.0f;
            cr_assert(fabsf(y[i] - want) <= 1e-6f * fabsf(xs[i]), "%s(%g) = %g, want %g",
                      acts[a].name, xs[i], y[i], want);
        }
    }
}

static void ref_softmax(double *y, const float *x, int64_t M, int64_t N)
{
    for (int64_t m = 0; m < M; m++) {
        double mx = -INFINITY, s = 0.0;
        for (int64_t j = 0; j < N; j++)
            mx = fmax(mx, x[m * N + j]);
        for (int64_t j = 0; j < N; j++)
            s += exp(x[m * N + j] - mx);
        for (int64_t j = 0; j < N; j++)
            y[m * N + j] = exp(x[m * N + j] - mx) / s;
    }
}

static void check_softmax(int64_t M, int64_t N, float lo, float hi, int in_place, uint64_t seed)
{
    uint64_t st = seed;
    float *x = tu_alloc(M * N), *y = tu_alloc(M * N);
    double *ref = tu_alloc_d(M * N);
    tu_rand_fill(x, M * N, &st, lo, hi);
    ref_softmax(ref, x, M, N);
    if (in_place) {
        memcpy(y, x, (size_t)(M * N) * sizeof *y);
        k_cpu_softmax(y, y, M, N);
    } else {
        tu_poison(y, M * N);
        k_cpu_softmax(y, x, M, N);
    }
    cr_assert(!tu_has_nan(y, M * N), "softmax M=%lld N=%lld: NaN in output", (long long)M,
              (long long)N);
    double err = tu_rel_err(y, ref, M * N);
    cr_assert(err <= TOL, "softmax M=%lld N=%lld in [%g, %g] in_place=%d: rel err %g",
              (long long)M, (long long)N, lo, hi, in_place, err);
    for (int64_t m = 0; m < M; m++) {
        double s = 0.0;
        for (int64_t j = 0; j < N; j++) {
            cr_assert(y[m * N + j] >= 0.0f, "softmax: negative probability");
            s += y[m * N + j];
        }
        cr_assert(fabs(s - 1.0) <= 1e-5, "softmax M=%lld N=%lld: row %lld sums to %.9g",
                  (long long)M, (long long)N, (long long)m, s);
    }
    free(x), free(y), free(ref);
}

Test(softmax, shapes)
{
    static const int64_t shapes[][2] = {{1, 1}, {1, 7}, {7, 33}, {33, 7}, {2, 4429}, {128, 1024}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_softmax(shapes[i][0], shapes[i][1], -6.0f, 6.0f, 0, 3000 + i);
}

Test(softmax, in_place)
{
    check_softmax(7, 33, -6.0f, 6.0f, 1, 3100);
    check_softmax(128, 1024, -6.0f, 6.0f, 1, 3101);
}

/* exp(1000) overflows a float: only the max subtraction keeps these rows finite. */
Test(softmax, large_logits)
{
    check_softmax(5, 33, 1000.0f, 1030.0f, 0, 3200);
    check_softmax(5, 33, -1030.0f, -1000.0f, 0, 3201);
}

Test(softmax, one_column_is_one)
{
    float x[3] = {-5.0f, 0.0f, 123.0f}, y[3];
    k_cpu_softmax(y, x, 3, 1);
    for (int i = 0; i < 3; i++)
        cr_assert(y[i] == 1.0f, "softmax of a 1-wide row: %g, want 1", y[i]);
}
