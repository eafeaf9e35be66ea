/*
 * test_attention.c - k_cpu_attention against a naive double-precision multi-head softmax
 * attention written here: batches, several heads, Nq != Nk, causal masking, an additive
 * bias, both scales in use (1/sqrt(d) and 1), and query counts that span several blocks.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <cblas.h>

#include "kernels/cpu/k_cpu.h"
#include "tests/common/test_util.h"

#define ATTN_TOL 1e-4

typedef struct attn_case {
    int64_t B, Nq, Nk, h, d;
    int causal, with_bias;
    int unit_scale; /* 1: scale 1.0; 0: 1/sqrt(d) */
} attn_case;

/* One (batch, head, query) at a time: scores, mask, softmax and the weighted sum in double. */
static void attn_ref(double *o, const float *q, const float *k, const float *v, const float *bias,
                     const attn_case *c, double scale)
{
    const int64_t C = c->h * c->d;
    double *p = malloc((size_t)c->Nk * sizeof *p);
    cr_assert(p);
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t t = 0; t < c->h; t++)
            for (int64_t i = 0; i < c->Nq; i++) {
                const float *qi = q + (b * c->Nq + i) * C + t * c->d;
                double mx = -INFINITY;
                for (int64_t j = 0; j < c->Nk; j++) {
                    if (c->causal && j > i) {
                        p[j] = -INFINITY;
                        continue;
                    }
                    const float *kj = k + (b * c->Nk + j) * C + t * c->d;
                    double dot = 0.0;
                    for (int64_t e = 0; e < c->d; e++)
                        dot += (double)qi[e] * kj[e];
                    p[j] = scale * dot + (bias ? bias[(t * c->Nq + i) * c->Nk + j] : 0.0);
                    if (p[j] > mx)
                        mx = p[j];
                }
                double sum = 0.0;
                for (int64_t j = 0; j < c->Nk; j++) {
                    p[j] = p[j] == -INFINITY ? 0.0 : exp(p[j] - mx);
                    sum += p[j];
                }
                double *oi = o + (b * c->Nq + i) * C + t * c->d;
                for (int64_t e = 0; e < c->d; e++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < c->Nk; j++)
                        acc += p[j] * v[(b * c->Nk + j) * C + t * c->d + e];
                    oi[e] = acc / sum;
                }
            }
    free(p);
}

static void run_case(attn_case c, uint64_t seed)
{
    const int64_t C = c.h * c.d;
    const int64_t nq = c.B * c.Nq * C, nk = c.B * c.Nk * C, nb = c.h * c.Nq * c.Nk;
    float *q = tu_alloc(nq), *k = tu_alloc(nk), *v = tu_alloc(nk), *bias = tu_alloc(nb);
    float *o = tu_alloc(nq);
    double *ref = tu_alloc_d(nq);
    uint64_t st = seed;
    /* Spread wide enough that the softmax is far from uniform at scale 1. */
    tu_rand_fill(q, nq, &st, -1.0f, 1.0f);
    tu_rand_fill(k, nk, &st, -1.0f, 1.0f);
    tu_rand_fill(v, nk, &st, -1.0f, 1.0f);
    tu_rand_fill(bias, nb, &st, -2.0f, 2.0f);
    const float *bp = c.with_bias ? bias : NULL;
    const float scale = c.unit_scale ? 1.0f : 1.0f / sqrtf((float)c.d);

    tu_poison(o, nq);
    cr_assert_eq(k_cpu_attention(o, q, k, v, bp, c.B, c.Nq, c.Nk, c.h, c.d, scale, c.causal), 0);
    cr_assert(!tu_has_nan(o, nq), "output not fully written");
    attn_ref(ref, q, k, v, bp, &c, (double)scale);
    double err = tu_rel_err(o, ref, nq);
    cr_assert(err <= ATTN_TOL, "rel err %g > %g", err, ATTN_TOL);

    free(q);
    free(k);
    free(v);
    free(bias);
    free(o);
    free(ref);
}

Test(attention, plain)
{
    run_case((attn_case){.B = 2, .Nq = 37, .Nk = 53, .h = 3, .d = 16}, 1);
}

Test(attention, unit_scale)
{
    run_case((attn_case){.B = 2, .Nq = 37, .Nk = 53, .h = 3, .d = 16, .unit_scale = 1}, 2);
}

Test(attention, bias)
{
    run_case((attn_case){.B = 2, .Nq = 41, .Nk = 29, .h = 3, .d = 16, .with_bias = 1}, 3);
}

Test(attention, bias_unit_scale)
{
    run_case((attn_case){.B = 2, .Nq = 20, .Nk = 31, .h = 3, .d = 16, .with_bias = 1,
                         .unit_scale = 1}, 4);
}

Test(attention, causal_square)
{
    run_case((attn_case){.B = 2, .Nq = 45, .Nk = 45, .h = 3, .d = 16, .causal = 1}, 5);
}

Test(attention, causal_more_keys)
{
    run_case((attn_case){.B = 2, .Nq = 30, .Nk = 50, .h = 3, .d = 16, .causal = 1}, 6);
}

Test(attention, causal_more_queries)
{
    /* Queries past Nk see every key. */
    run_case((attn_case){.B = 2, .Nq = 50, .Nk = 30, .h = 3, .d = 16, .causal = 1}, 7);
}

Test(attention, causal_bias)
{
    run_case((attn_case){.B = 2, .Nq = 33, .Nk = 40, .h = 3, .d = 16, .causal = 1,
                         .with_bias = 1, .unit_scale = 1}, 8);
}

Test(attention, many_query_blocks)
{
    run_case((attn_case){.B = 2, .Nq = 300, .Nk = 211, .h = 3, .d = 16, .with_bias = 1}, 9);
}

Test(attention, many_query_blocks_causal)
{
    run_case((attn_case){.B = 1, .Nq = 300, .Nk = 300, .h = 2, .d = 16, .causal = 1}, 10);
}

Test(attention, many_query_blocks_causal_more_queries)
{
    /* Blocks that start past Nk: the causal key limit is clamped to Nk. */
    run_case((attn_case){.B = 1, .Nq = 300, .Nk = 140, .h = 2, .d = 16, .causal = 1,
                         .with_bias = 1}, 11);
}

Test(attention, head_dim_64)
{
    run_case((attn_case){.B = 2, .Nq = 77, .Nk = 90, .h = 3, .d = 64}, 12);
}

Test(attention, head_dim_64_causal)
{
    run_case((attn_case){.B = 1, .Nq = 77, .Nk = 77, .h = 4, .d = 64, .causal = 1}, 13);
}

Test(attention, single_key_and_query)
{
    run_case((attn_case){.B = 2, .Nq = 1, .Nk = 1, .h = 3, .d = 16, .with_bias = 1}, 14);
}

/* A query whose every key is masked by the bias gets zeros (documented in attention.c), not NaN. */
Test(attention, fully_masked_row_is_zero)
{
    const int64_t Nq = 3, Nk = 4, h = 1, d = 8, C = h * d;
    float q[3 * 8], k[4 * 8], v[4 * 8], bias[3 * 4], o[3 * 8];
    uint64_t st = 77;
    tu_rand_fill(q, Nq * C, &st, -1.0f, 1.0f);
    tu_rand_fill(k, Nk * C, &st, -1.0f, 1.0f);
    tu_rand_fill(v, Nk * C, &st, -1.0f, 1.0f);
    tu_rand_fill(bias, Nq * Nk, &st, -1.0f, 1.0f);
    for (int64_t j = 0; j < Nk; j++)
        bias[1 * Nk + j] = -INFINITY;
    tu_poison(o, Nq * C);
    cr_assert_eq(k_cpu_attention(o, q, k, v, bias, 1, Nq, Nk, h, d, 1.0f, 0), 0);
    cr_assert(!tu_has_nan(o, Nq * C));
    for (int64_t e = 0; e < d; e++)
        cr_assert(o[1 * C + e] == 0.0f);
}

/*
 * With a single-threaded (or an OpenMP) OpenBLAS the kernel spreads whole query blocks over
 * OpenMP threads; with a multi-threaded pthreads OpenBLAS it lets OpenBLAS thread each GEMM.
 * Forcing OpenBLAS to one thread takes the first path whichever OpenBLAS is linked.
 */
Test(attention, blocks_parallel_path)
{
    openblas_set_num_threads(1);
    run_case((attn_case){.B = 2, .Nq = 300, .Nk = 211, .h = 3, .d = 16, .with_bias = 1}, 21);
    run_case((attn_case){.B = 1, .Nq = 300, .Nk = 140, .h = 2, .d = 16, .causal = 1,
                         .with_bias = 1}, 22);
    run_case((attn_case){.B = 2, .Nq = 77, .Nk = 77, .h = 3, .d = 64, .causal = 1}, 23);
    run_case((attn_case){.B = 1, .Nq = 5, .Nk = 9, .h = 1, .d = 16, .unit_scale = 1}, 24);
}

#ifdef _OPENMP
static void thread_count_invariant(int blas_threads)
{
    const int64_t B = 1, Nq = 200, Nk = 180, h = 2, d = 32, C = h * d;
    float *q = tu_alloc(B * Nq * C), *k = tu_alloc(B * Nk * C), *v = tu_alloc(B * Nk * C);
    float *o1 = tu_alloc(B * Nq * C), *o2 = tu_alloc(B * Nq * C);
    uint64_t st = 5;
    if (blas_threads > 0)
        openblas_set_num_threads(blas_threads);
    tu_rand_fill(q, B * Nq * C, &st, -1.0f, 1.0f);
    tu_rand_fill(k, B * Nk * C, &st, -1.0f, 1.0f);
    tu_rand_fill(v, B * Nk * C, &st, -1.0f, 1.0f);
    omp_set_num_threads(1);
    cr_assert_eq(k_cpu_attention(o1, q, k, v, NULL, B, Nq, Nk, h, d, 0.125f, 1), 0);
    omp_set_num_threads(2);
    cr_assert_eq(k_cpu_attention(o2, q, k, v, NULL, B, Nq, Nk, h, d, 0.125f, 1), 0);
    cr_assert(memcmp(o1, o2, (size_t)(B * Nq * C) * sizeof *o1) == 0);
    free(q);
    free(k);
    free(v);
    free(o1);
    free(o2);
}

Test(attention, thread_count_invariant)
{
    thread_count_invariant(0);
}

Test(attention, thread_count_invariant_blocks_parallel)
{
    thread_count_invariant(1);
}
#endif
