/* test_util.c - shared test helpers (see test_util.h). */
#include "tests/common/test_util.h"

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

uint64_t tu_rand_u64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double tu_rand_unit(uint64_t *state)
{
    /* The top 53 bits give every double in [0, 1) with a 2^-53 step. */
    return (double)(tu_rand_u64(state) >> 11) * (1.0 / 9007199254740992.0);
}

void tu_rand_fill(float *x, int64_t n, uint64_t *state, float lo, float hi)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(lo + (hi - (double)lo) * tu_rand_unit(state));
}

double tu_rel_err(const float *out, const double *ref, int64_t n)
{
    double max_err = 0.0, max_ref = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(out[i]))
            return INFINITY;
        double e = fabs((double)out[i] - ref[i]);
        if (e > max_err)
            max_err = e;
        if (fabs(ref[i]) > max_ref)
            max_ref = fabs(ref[i]);
    }
    return max_ref > 0.0 ? max_err / max_ref : max_err;
}

void tu_poison(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = NAN;
}

int tu_has_nan(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (isnan(x[i]))
            return 1;
    return 0;
}

static void *tu_malloc(int64_t n, size_t elem)
{
    if (n < 0) {
        fprintf(stderr, "tu_alloc: negative count %lld\n", (long long)n);
        abort();
    }
    void *p = malloc(n > 0 ? (size_t)n * elem : 1);
    if (!p) {
        fprintf(stderr, "tu_alloc: out of memory for %lld elements\n", (long long)n);
        abort();
    }
    return p;
}

float *tu_alloc(int64_t n)
{
    return tu_malloc(n, sizeof(float));
}

double *tu_alloc_d(int64_t n)
{
    return tu_malloc(n, sizeof(double));
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

void tu_rmtree(const char *dir)
{
    if (dir && dir[0])
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
