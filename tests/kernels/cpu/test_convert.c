/*
 * test_convert.c - float32 <-> bfloat16 / float16 against independent references:
 * the compiler's _Float16 for half, and a nearest-value search in double for bfloat16.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "kernels/cpu/k_cpu.h"
#include "tests/common/test_util.h"

static float bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The bfloat16 nearest to x (ties to even), found by comparing the two neighbours in double. */
static uint16_t ref_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
    double dl = fabs((double)bits_to_f32((uint32_t)lo << 16) - x);
    double dh = fabs((double)bits_to_f32((uint32_t)hi << 16) - x);
    if (isinf(bits_to_f32((uint32_t)hi << 16)) && !isinf(x)) {
        /* Past the largest finite bf16, the rounding boundary is half an ulp above it. */
        double ulp = fabs((double)bits_to_f32((uint32_t)lo << 16) -
                          (double)bits_to_f32((uint32_t)(lo - 1) << 16));
        dh = fabs(fabs((double)x) - (fabs((double)bits_to_f32((uint32_t)lo << 16)) + ulp));
    }
    if (dl < dh || (dl == dh && !(lo & 1)))
        return lo;
    return hi;
}

Test(convert, bf16_matches_reference)
{
    uint64_t st = 11;
    enum { N = 20000 };
    float *x = tu_alloc(N), *back = tu_alloc(N);
    uint16_t y[N];

    for (int i = 0; i < N; i++) {
        /* Random bit patterns cover every exponent; keep NaNs out of this case. */
        uint32_t u = (uint32_t)tu_rand_u64(&st);
        x[i] = bits_to_f32(u);
        if (isnan(x[i]))
            x[i] = 1.0f + (float)i;
    }
    x[0] = 1.00390625f;  /* exactly half an ulp above 1: ties to even -> 1.0 */
    x[1] = 1.01171875f;  /* half an ulp above an odd mantissa: rounds up */
    x[2] = -0.0f;
    k_cpu_f32_to_bf16(y, x, N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(y[i], ref_bf16(x[i]), "x=%a got %04x want %04x", (double)x[i], y[i],
                     ref_bf16(x[i]));
    cr_assert_eq(y[0], 0x3f80);
    cr_assert_eq(y[1], 0x3f82);
    cr_assert_eq(y[2], 0x8000);

    k_cpu_bf16_to_f32(back, y, N);
    for (int i = 0; i < N; i++) {
        uint32_t u;
        memcpy(&u, &back[i], sizeof u);
        cr_assert_eq(u, (uint32_t)y[i] << 16);
    }
    free(x);
    free(back);
}

Test(convert, bf16_nan_and_inf)
{
    float x[3] = {NAN, INFINITY, -INFINITY};
    uint16_t y[3];
    float z[3];
    k_cpu_f32_to_bf16(y, x, 3);
    k_cpu_bf16_to_f32(z, y, 3);
    cr_assert(isnan(z[0]));
    cr_assert(isinf(z[1]) && z[1] > 0);
    cr_assert(isinf(z[2]) && z[2] < 0);
}

Test(convert, f16_matches_compiler)
{
    uint64_t st = 5;
    enum { N = 40000 };
    float *x = tu_alloc(N), *back = tu_alloc(N);
    uint16_t y[N];

    for (int i = 0; i < N; i++) {
        /* Magnitudes from 2^-30 to 2^20: subnormal halves, normal ones, and overflow. */
        double m = tu_rand_unit(&st) * 50.0 - 30.0;
        x[i] = (float)((tu_rand_unit(&st) < 0.5 ? -1 : 1) * pow(2.0, m));
    }
    x[0] = 65520.0f;            /* rounds to inf */
    x[1] = 65504.0f;            /* the largest half */
    x[2] = 5.9604644775390625e-8f; /* the smallest subnormal half */
    x[3] = 2.98023223876953125e-8f; /* half of it: ties to even -> 0 */
    k_cpu_f32_to_f16(y, x, N);
    for (int i = 0; i < N; i++) {
        _Float16 h = (_Float16)x[i];
        uint16_t want;
        memcpy(&want, &h, sizeof want);
        cr_assert_eq(y[i], want, "x=%a got %04x want %04x", (double)x[i], y[i], want);
    }
    k_cpu_f16_to_f32(back, y, N);
    for (int i = 0; i < N; i++) {
        _Float16 h;
        memcpy(&h, &y[i], sizeof h);
        cr_assert_eq(back[i], (float)h, "bits %04x", y[i]);
    }
    free(x);
    free(back);
}

Test(convert, f16_nan_stays_nan)
{
    float x[2] = {NAN, -NAN};
    uint16_t y[2];
    float z[2];
    k_cpu_f32_to_f16(y, x, 2);
    k_cpu_f16_to_f32(z, y, 2);
    cr_assert(isnan(z[0]) && isnan(z[1]));
}
