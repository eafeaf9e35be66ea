/*
 * test_permute.c - k_cpu_permute against a naive index-by-index permutation written here, bit
 * for bit: unpatchify's perm, identity, full reversal, the last dim kept last (the memcpy path),
 * size-1 dims, a size large enough for threads, 2- and 4-byte elements (and one odd size through
 * the generic path); then eng_op_permute on the CPU backend, valid calls and rejected ones.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend/backend.h"
#include "kernels/cpu/k_cpu.h"
#include "tests/common/test_util.h"

/* y[j] for every flat output index j: decode j over y's shape, map back through perm. */
static void permute_ref(unsigned char *y, const unsigned char *x, int ndim, const int64_t *shape,
                        const int *perm, int es)
{
    int64_t xs[6], n = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        xs[i] = n;
        n *= shape[i];
    }
    for (int64_t j = 0; j < n; j++) {
        int64_t rem = j, xi = 0;
        for (int i = ndim - 1; i >= 0; i--) {
            const int64_t sz = shape[perm[i]];
            xi += (rem % sz) * xs[perm[i]];
            rem /= sz;
        }
        memcpy(y + j * es, x + xi * es, (size_t)es);
    }
}

static void run_perm(int ndim, const int64_t *shape, const int *perm, int es, uint64_t seed)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    const size_t bytes = (size_t)(n * es);
    unsigned char *x = malloc(bytes + 1), *y = malloc(bytes + 1), *ref = malloc(bytes + 1);
    cr_assert(x && y && ref);
    uint64_t st = seed;
    for (size_t i = 0; i < bytes; i++)
        x[i] = (unsigned char)tu_rand_u64(&st);
    /* All-ones bytes: a NaN in F32 and BF16, and a value the random input hardly repeats. */
    memset(y, 0xff, bytes);
    permute_ref(ref, x, ndim, shape, perm, es);
    k_cpu_permute(y, x, ndim, shape, perm, es);
    for (int64_t j = 0; j < n; j++)
        cr_assert(memcmp(y + j * es, ref + j * es, (size_t)es) == 0,
                  "element %lld of %lld differs (es %d)", (long long)j, (long long)n, es);
    free(x);
    free(y);
    free(ref);
}

#define PERM(...) (const int[]){__VA_ARGS__}

Test(permute, unpatchify)
{
    /* [B, h, w, p, q, C] -> [B, C, h, p, w, q] on a non-square grid. */
    run_perm(ENG_SHAPE(2, 4, 6, 2, 2, 16), PERM(0, 5, 1, 3, 2, 4), 4, 1);
    run_perm(ENG_SHAPE(2, 4, 6, 2, 2, 16), PERM(0, 5, 1, 3, 2, 4), 2, 2);
}

Test(permute, unpatchify_large_threaded)
{
    run_perm(ENG_SHAPE(2, 64, 64, 2, 2, 16), PERM(0, 5, 1, 3, 2, 4), 4, 3);
    run_perm(ENG_SHAPE(2, 64, 64, 2, 2, 16), PERM(0, 5, 1, 3, 2, 4), 2, 4);
}

Test(permute, patchify_inverse)
{
    /* [B, C, h, p, w, q] -> [B, h, w, p, q, C]: the inverse perm {0, 2, 4, 3, 5, 1}. */
    run_perm(ENG_SHAPE(2, 16, 4, 2, 6, 2), PERM(0, 2, 4, 3, 5, 1), 4, 5);
}

Test(permute, identity)
{
    run_perm(ENG_SHAPE(3, 5, 7), PERM(0, 1, 2), 4, 6);
    run_perm(ENG_SHAPE(3, 5, 7, 2, 3, 2), PERM(0, 1, 2, 3, 4, 5), 2, 7);
    run_perm(ENG_SHAPE(11), PERM(0), 4, 8);
}

Test(permute, reversal)
{
    run_perm(ENG_SHAPE(2, 3, 4, 5, 6, 7), PERM(5, 4, 3, 2, 1, 0), 4, 9);
    run_perm(ENG_SHAPE(2, 3, 4, 5, 6, 7), PERM(5, 4, 3, 2, 1, 0), 2, 10);
    run_perm(ENG_SHAPE(33, 65), PERM(1, 0), 4, 11);
}

Test(permute, last_dim_kept)
{
    /* Rows stay contiguous: the memcpy path, with and without merged dims. */
    run_perm(ENG_SHAPE(4, 3, 5, 8), PERM(1, 0, 2, 3), 4, 12);
    run_perm(ENG_SHAPE(4, 3, 5, 8), PERM(2, 0, 1, 3), 2, 13);
    run_perm(ENG_SHAPE(2, 300, 7, 40), PERM(0, 2, 1, 3), 4, 14);
}

Test(permute, size_one_dims)
{
    run_perm(ENG_SHAPE(1, 5, 1, 3), PERM(3, 2, 1, 0), 4, 15);
    run_perm(ENG_SHAPE(1, 1, 1), PERM(2, 0, 1), 4, 16);
    run_perm(ENG_SHAPE(3, 1, 4, 1, 5), PERM(4, 3, 0, 1, 2), 2, 17);
}

Test(permute, other_element_size)
{
    /* The kernel moves bits, so any size works through its generic path. */
    run_perm(ENG_SHAPE(3, 4, 5), PERM(2, 0, 1), 8, 18);
    run_perm(ENG_SHAPE(3, 4, 5), PERM(1, 2, 0), 1, 19);
}

Test(permute, empty_is_a_no_op)
{
    unsigned char y = 0x5a, x = 0;
    k_cpu_permute(&y, &x, ENG_SHAPE(2, 0, 3), PERM(2, 1, 0), 4);
    cr_assert_eq(y, 0x5a);
}

/* ---- the front end on the CPU backend ---- */

#define EXPECT_ERR(rc_expr, code_, needle)                                                         \
    do {                                                                                           \
        int rc_ = (rc_expr);                                                                       \
        cr_assert_eq(rc_, (code_), "rc %d msg '%s'", rc_, err.msg);                                \
        cr_assert(strstr(err.msg, (needle)), "message '%s' lacks '%s'", err.msg, (needle));        \
    } while (0)

Test(permute, front_end)
{
    eng_error err = {0};
    eng_backend *cpu = eng_backend_cpu_create(&err);
    cr_assert_not_null(cpu, "%s", err.msg);
    eng_tensor x, y, ybad, xb, yb;
    uint64_t st = 77;

    cr_assert_eq(eng_tensor_init(&x, cpu, ENG_DTYPE_F32, ENG_SHAPE(2, 3, 4, 2, 2, 5), &err), 0);
    cr_assert_eq(eng_tensor_init(&y, cpu, ENG_DTYPE_F32, ENG_SHAPE(2, 5, 3, 2, 4, 2), &err), 0);
    cr_assert_eq(eng_tensor_init(&ybad, cpu, ENG_DTYPE_F32, ENG_SHAPE(2, 5, 4, 2, 3, 2), &err), 0);
    cr_assert_eq(eng_tensor_init(&xb, cpu, ENG_DTYPE_BF16, ENG_SHAPE(2, 3, 4, 2, 2, 5), &err), 0);
    cr_assert_eq(eng_tensor_init(&yb, cpu, ENG_DTYPE_BF16, ENG_SHAPE(2, 5, 3, 2, 4, 2), &err), 0);
    const int64_t n = eng_tensor_numel(&x);
    tu_rand_fill(x.data, n, &st, -1.0f, 1.0f);
    for (int64_t i = 0; i < n; i++)
        ((uint16_t *)xb.data)[i] = (uint16_t)tu_rand_u64(&st);
    const int unpatch[6] = {0, 5, 1, 3, 2, 4};

    /* Valid: F32 and BF16 give the reference permutation. */
    float *ref = tu_alloc(n);
    uint16_t *refb = malloc((size_t)n * 2);
    cr_assert(refb);
    permute_ref((unsigned char *)ref, x.data, 6, x.shape, unpatch, 4);
    permute_ref((unsigned char *)refb, xb.data, 6, xb.shape, unpatch, 2);
    tu_poison(y.data, n);
    cr_assert_eq(eng_op_permute(&y, &x, unpatch, &err), 0, "%s", err.msg);
    cr_assert(memcmp(y.data, ref, (size_t)n * 4) == 0);
    cr_assert_eq(eng_op_permute(&yb, &xb, unpatch, &err), 0, "%s", err.msg);
    cr_assert(memcmp(yb.data, refb, (size_t)n * 2) == 0);

    /* Rejected: not a permutation, a wrong output shape, mixed dtypes, NULL perm. */
    EXPECT_ERR(eng_op_permute(&y, &x, PERM(0, 5, 1, 3, 2, 2), &err), ENG_EINVAL,
               "perm is not a permutation of 0..5");
    EXPECT_ERR(eng_op_permute(&y, &x, PERM(0, 5, 1, 3, 2, 6), &err), ENG_EINVAL,
               "perm[5] = 6");
    EXPECT_ERR(eng_op_permute(&y, &x, PERM(0, 5, -1, 3, 2, 4), &err), ENG_EINVAL,
               "perm[2] = -1");
    EXPECT_ERR(eng_op_permute(&ybad, &x, unpatch, &err), ENG_EINVAL,
               "permute: y has shape [2, 5, 4, 2, 3, 2], expected [2, 5, 3, 2, 4, 2]");
    EXPECT_ERR(eng_op_permute(&yb, &x, unpatch, &err), ENG_EINVAL, "dtype");
    EXPECT_ERR(eng_op_permute(&y, &x, NULL, &err), ENG_EINVAL, "perm is NULL");

    free(ref);
    free(refb);
    eng_tensor_free(&x);
    eng_tensor_free(&y);
    eng_tensor_free(&ybad);
    eng_tensor_free(&xb);
    eng_tensor_free(&yb);
    eng_backend_destroy(cpu);
}
