/* test_util.c - shared test helpers (see test_util.h). */
#include "tests/common/test_util.h"

#include <criterion/criterion.h>
#include <spng.h>
#include <string.h>

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

char *tu_png_text(const void *buf, size_t len, const char *keyword, int *type)
{
    spng_ctx *ctx = spng_ctx_new(0);
    cr_assert(ctx);
    cr_assert_eq(spng_set_png_buffer(ctx, buf, len), 0);
    size_t n = 0;
    cr_assert_eq(spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &n), 0);
    uint8_t *img = malloc(n);
    cr_assert_eq(spng_decode_image(ctx, img, n, SPNG_FMT_RGB8, 0), 0);
    free(img);
    uint32_t nt = 0;
    char *found = NULL;
    if (spng_get_text(ctx, NULL, &nt) == 0 && nt > 0) {
        struct spng_text *t = calloc(nt, sizeof *t);
        cr_assert_eq(spng_get_text(ctx, t, &nt), 0);
        for (uint32_t k = 0; k < nt; k++)
            if (strcmp(t[k].keyword, keyword) == 0) {
                free(found);
                found = strndup(t[k].text, t[k].length);
                if (type)
                    *type = t[k].type;
            }
        free(t);
    }
    spng_ctx_free(ctx);
    return found;
}
