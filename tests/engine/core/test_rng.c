/*
 * test_rng.c - the project's RNG (engine/core/rng.h): Philox4x32-10 against Random123's published
 * known-answer vectors, the key/counter wiring and offsets, the latent helpers, the first normals
 * of three seeds against the Python reference (tests/fixtures/rng.safetensors), and the
 * distribution's moments and a chi-square goodness-of-fit over 1e5 values.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/core/rng.h"
#include "engine/io/safetensors.h"
#include "tests/common/test_util.h"

/*
 * Random123's tests/kat_vectors, the three "philox4x32 10" lines (counter[4], key[2] ->
 * output[4]), as quoted verbatim by D. E. Shaw Research's own fs123 (core123/ut/ut_philox.cpp).
 */
static const uint32_t kat[3][10] = {
    {0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x6627e8d5, 0xe169c58d,
     0xbc57ac4c, 0x9b00dbd8},
    {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e,
     0xa20bc7c6, 0x6d5451fd},
    {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb,
     0x5001e420, 0x24126ea1},
};

Test(rng, philox_known_answers)
{
    for (int c = 0; c < 3; c++) {
        uint32_t out[4];
        eng_philox4x32_10(&kat[c][0], &kat[c][4], out);
        for (int j = 0; j < 4; j++)
            cr_assert_eq(out[j], kat[c][6 + j], "vector %d word %d: %08x, want %08x", c, j, out[j],
                         kat[c][6 + j]);
    }
}

/* Box-Muller of rng.h, spelled out independently of rng.c's loop. */
static void box_muller(uint32_t a, uint32_t b, float *n0, float *n1)
{
    double u1 = ((double)a + 1.0) / 4294967296.0, u2 = (double)b / 4294967296.0;
    double rad = sqrt(-2.0 * log(u1));
    *n0 = (float)(rad * cos(2.0 * M_PI * u2));
    *n1 = (float)(rad * sin(2.0 * M_PI * u2));
}

Test(rng, key_and_counter_wiring)
{
    /* seed 2^40 + 7: key (7, 256); block 2^32 + 5: counter (5, 1, 0, 0). */
    const uint64_t seed = 1099511627783ull, blk = (1ull << 32) + 5;
    const uint32_t ctr[4] = {5, 1, 0, 0}, key[2] = {7, 256};
    uint32_t r[4];
    float want[4], got[4];
    eng_philox4x32_10(ctr, key, r);
    box_muller(r[0], r[1], &want[0], &want[1]);
    box_muller(r[2], r[3], &want[2], &want[3]);
    eng_rng_normal(seed, blk * 4, got, 4);
    for (int j = 0; j < 4; j++)
        cr_assert_eq(got[j], want[j], "normal %d: %.9g, want %.9g", j, got[j], want[j]);
}

Test(rng, offsets_are_slices_of_one_stream)
{
    float all[64], part[64];
    eng_rng_normal(42, 0, all, 64);
    for (int off = 0; off < 12; off++)
        for (int n = 0; n <= 64 - off && n < 23; n++) {
            tu_poison(part, 64);
            eng_rng_normal(42, (uint64_t)off, part, n);
            for (int j = 0; j < n; j++)
                cr_assert_eq(part[j], all[off + j], "offset %d n %d j %d", off, n, j);
            cr_assert(isnan(part[n]), "offset %d n %d wrote past the end", off, n);
        }
    /* Seeds give different streams. */
    eng_rng_normal(43, 0, part, 64);
    int same = 0;
    for (int j = 0; j < 64; j++)
        same += part[j] == all[j];
    cr_assert_lt(same, 2);
}

Test(rng, latent_helpers)
{
    const int64_t B = 3, C = 2, H = 3, W = 5, per = C * H * W;
    float lat[3 * 30], ref[30];
    eng_rng_latents(lat, B, C, H, W, UINT64_MAX - 1); /* seeds wrap: MAX-1, MAX, 0 */
    const uint64_t seeds[3] = {UINT64_MAX - 1, UINT64_MAX, 0};
    for (int64_t b = 0; b < B; b++) {
        eng_rng_normal(seeds[b], 0, ref, per);
        for (int64_t j = 0; j < per; j++)
            cr_assert_eq(lat[b * per + j], ref[j], "sample %lld element %lld", (long long)b,
                         (long long)j);
    }
    const uint64_t mixed[3] = {9, 1000, 9};
    eng_rng_latents_seeds(lat, B, C, H, W, mixed);
    eng_rng_normal(1000, 0, ref, per);
    for (int64_t j = 0; j < per; j++) {
        cr_assert_eq(lat[per + j], ref[j]);
        cr_assert_eq(lat[j], lat[2 * per + j]);
    }
}

Test(rng, matches_python_reference)
{
    eng_safetensors *st = NULL;
    eng_error err = {0};
    const char *path = "tests/fixtures/rng.safetensors";
    cr_assert_eq(eng_safetensors_open(&st, path, &err), 0, "%s", err.msg);
    const uint64_t seeds[3] = {0, 42, 1099511627783ull};
    for (int s = 0; s < 3; s++) {
        char name[64];
        snprintf(name, sizeof name, "seed%llu", (unsigned long long)seeds[s]);
        const eng_st_tensor *t = eng_safetensors_find(st, name);
        cr_assert_not_null(t, "%s: no tensor %s", path, name);
        cr_assert_eq(t->ndim, 1);
        cr_assert_eq(t->shape[0], 64);
        float want[64], got[64];
        cr_assert_eq(eng_st_tensor_to_f32(t, want, &err), 0, "%s", err.msg);
        eng_rng_normal(seeds[s], 0, got, 64);
        for (int j = 0; j < 64; j++)
            cr_assert_eq(got[j], want[j], "%s[%d]: %.9g, want %.9g", name, j, got[j], want[j]);
    }
    eng_safetensors_close(st);
}

/* P(Z < x) for a standard normal. */
static double phi(double x)
{
    return 0.5 * erfc(-x / M_SQRT2);
}

Test(rng, moments_and_chi_square)
{
    enum { N = 100000, BINS = 14 };
    float *x = tu_alloc(N);
    eng_rng_normal(20240601, 3, x, N);
    double m1 = 0, m2 = 0, m3 = 0, m4 = 0;
    for (int i = 0; i < N; i++)
        m1 += x[i];
    m1 /= N;
    for (int i = 0; i < N; i++) {
        double d = x[i] - m1;
        m2 += d * d, m3 += d * d * d, m4 += d * d * d * d;
    }
    m2 /= N, m3 /= N, m4 /= N;
    double skew = m3 / pow(m2, 1.5), kurt = m4 / (m2 * m2);
    /* Standard errors: mean 0.0032, var 0.0045, skew 0.0077, kurtosis 0.015; allow ~5 of them. */
    cr_assert_lt(fabs(m1), 0.016, "mean %g", m1);
    cr_assert_lt(fabs(m2 - 1.0), 0.023, "variance %g", m2);
    cr_assert_lt(fabs(skew), 0.04, "skewness %g", skew);
    cr_assert_lt(fabs(kurt - 3.0), 0.08, "kurtosis %g", kurt);

    /* Bins of width 0.5 over [-3, 3] plus the two tails. */
    long count[BINS] = {0};
    for (int i = 0; i < N; i++) {
        int b = (int)floor((x[i] + 3.0) / 0.5) + 1;
        count[b < 0 ? 0 : b >= BINS ? BINS - 1 : b]++;
    }
    double chi2 = 0;
    for (int b = 0; b < BINS; b++) {
        double lo = b == 0 ? -INFINITY : -3.0 + 0.5 * (b - 1);
        double hi = b == BINS - 1 ? INFINITY : -3.0 + 0.5 * b;
        double expect = N * (phi(hi) - phi(lo));
        chi2 += (count[b] - expect) * (count[b] - expect) / expect;
    }
    /* 13 degrees of freedom: P(chi2 > 40) is about 1e-4. */
    cr_assert_lt(chi2, 40.0, "chi-square %g over %d bins", chi2, BINS);
    free(x);
}
