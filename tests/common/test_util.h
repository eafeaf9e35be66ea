/*
 * test_util.h - small helpers shared by the unit tests: a seeded PRNG fill, the relative error
 * of a float result against a double reference, NaN poisoning to check that outputs are fully
 * written, allocators that abort on failure (a test has nothing better to do), and the text
 * chunks of a PNG.
 */
#ifndef TTTD_TESTS_TEST_UTIL_H
#define TTTD_TESTS_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* splitmix64 step: advances *state and returns 64 random bits. */
uint64_t tu_rand_u64(uint64_t *state);
/* Uniform double in [0, 1). */
double tu_rand_unit(uint64_t *state);
/* x[i] uniform in [lo, hi). */
void tu_rand_fill(float *x, int64_t n, uint64_t *state, float lo, float hi);

/* max |out - ref| / max |ref| (absolute error when ref is all zero); +inf if out has a NaN/inf. */
double tu_rel_err(const float *out, const double *ref, int64_t n);

/* Fill x with quiet NaN, so that an element the kernel forgot to write shows up. */
void tu_poison(float *x, int64_t n);
/* 1 if any x[i] is NaN, else 0. */
int tu_has_nan(const float *x, int64_t n);

/* Removes dir and everything below it (symlinks removed, never followed); a missing dir is fine. */
void tu_rmtree(const char *dir);

/* The text chunk (tEXt, zTXt or iTXt) named keyword of the PNG in buf, as libspng decodes it
 * (malloc'd), or NULL when there is none; *type (when not NULL) gets its SPNG_TEXT / SPNG_ITXT /
 * SPNG_ZTXT type. The image itself must decode (a failed Criterion assertion otherwise). */
char *tu_png_text(const void *buf, size_t len, const char *keyword, int *type);

/* malloc that aborts on failure; n may be 0. Free with free(). */
float *tu_alloc(int64_t n);
double *tu_alloc_d(int64_t n);

#endif
