/*
 * ttt.c - k_cpu_ttt: the TTT inner model (DESIGN.md section 4, steps 4-5) per sample and head.
 *
 * Shapes: q, k, v, o [B, N, C] with C = h*d; head j is the channel slice [j*d, (j+1)*d) of
 * every token, so a head's Q, K, V are strided N x d matrices (leading dimension C) that
 * cblas_sgemm reads in place, and O is written straight into o's slice. w1, w2 [h, d, d].
 * With s = d^-1/2, for one (sample, head):
 *   Z = K W1          S = SiLU(Z)       E = (S W2 - V) * s / N
 *   W2' = W2 - S^T E                    P = (E W2^T) * sig(Z) * (1 + Z (1 - sig(Z)))
 *   W1' = W1 - K^T P                    O = SiLU(Q W1') W2'
 * (P is dL/dZ: SiLU'(z) = sig(z) (1 + z (1 - sig(z))).)
 *
 * Scratch per (sample, head): three N x d buffers, reused as the steps free them
 * (Z -> Q W1'; S -> E W2^T -> P), and W1', W2' (d x d each): 3.3 MiB at N = 4429, d = 64.
 *
 * Threading follows attention.c: when GEMMs may be issued from several OpenMP threads
 * (k_blas_nests_in_openmp), the (sample, head) tasks are spread over threads, each with its
 * own scratch; otherwise they run in order and OpenBLAS threads each GEMM. Either way a task is
 * computed by the same calls, so the result does not depend on the thread count.
 */
#include "kernels/cpu/k_cpu.h"
#include "kernels/cpu/k_cpu_internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Below this many multiply-adds per task a parallel region costs more than it saves. */
#define TTT_PAR_MIN ((int64_t)1 << 16)

static inline float sigmoidf(float z)
{
    return 1.0f / (1.0f + expf(-z));
}

/* x = SiLU(x) over n values. */
static void silu_inplace(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = x[i] * sigmoidf(x[i]);
}

/* Row-major C[m, n] = alpha op(A) op(B) + beta C; the dims fit in int (checked by the caller). */
static void gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, float *Cm, int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, alpha, A, (int)lda, B, (int)ldb, beta, Cm, (int)ldc);
}

/*
 * One (sample, head): q, k, v, o point at the head's first element (row stride C); w1, w2 at its
 * d x d weights. scratch holds 3 N d + 2 d d floats.
 */
static void ttt_head(float *o, const float *q, const float *k, const float *v, const float *w1,
                     const float *w2, int64_t N, int64_t C, int64_t d, float *scratch)
{
    float *Z = scratch, *S = Z + N * d, *E = S + N * d, *W1n = E + N * d, *W2n = W1n + d * d;
    /* s / N in double, rounded once. */
    const float es = (float)(1.0 / (sqrt((double)d) * (double)N));

    gemm(0, 0, N, d, d, 1.0f, k, C, w1, d, 0.0f, Z, d); /* Z = K W1 */
    for (int64_t i = 0; i < N * d; i++)
        S[i] = Z[i] * sigmoidf(Z[i]);
    gemm(0, 0, N, d, d, 1.0f, S, d, w2, d, 0.0f, E, d); /* E = S W2 */
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < d; c++)
            E[n * d + c] = (E[n * d + c] - v[n * C + c]) * es;

    memcpy(W2n, w2, (size_t)(d * d) * sizeof *W2n);
    gemm(1, 0, d, d, N, -1.0f, S, d, E, d, 1.0f, W2n, d); /* W2' = W2 - S^T E; S is free */
    gemm(0, 1, N, d, d, 1.0f, E, d, w2, d, 0.0f, S, d);   /* S = E W2^T (the old W2) */
    for (int64_t i = 0; i < N * d; i++) {
        const float sg = sigmoidf(Z[i]);
        S[i] *= sg * (1.0f + Z[i] * (1.0f - sg)); /* P */
    }
    memcpy(W1n, w1, (size_t)(d * d) * sizeof *W1n);
    gemm(1, 0, d, d, N, -1.0f, k, C, S, d, 1.0f, W1n, d); /* W1' = W1 - K^T P */

    gemm(0, 0, N, d, d, 1.0f, q, C, W1n, d, 0.0f, Z, d); /* Z = Q W1' */
    silu_inplace(Z, N * d);
    gemm(0, 0, N, d, d, 1.0f, Z, d, W2n, d, 0.0f, o, C); /* O = SiLU(Q W1') W2' */
}

/* Task t = (sample t / h, head t % h). */
static void ttt_task(float *o, const float *q, const float *k, const float *v, const float *w1,
                     const float *w2, int64_t N, int64_t h, int64_t d, int64_t t, float *scratch)
{
    const int64_t C = h * d, bi = t / h, j = t % h;
    const int64_t off = bi * N * C + j * d;
    ttt_head(o + off, q + off, k + off, v + off, w1 + j * d * d, w2 + j * d * d, N, C, d,
             scratch);
}

int k_cpu_ttt(float *o, const float *q, const float *k, const float *v, const float *w1,
              const float *w2, int64_t B, int64_t N, int64_t h, int64_t d)
{
    const int64_t ntask = B * h;
    if (ntask <= 0 || N <= 0 || d <= 0)
        return 0;
    /* cblas takes int dims; past them the N x d scratch could not be allocated anyway. */
    if (N > INT32_MAX || h * d > INT32_MAX)
        return -1;
    const size_t scratch = (size_t)(3 * N * d + 2 * d * d) * sizeof(float);

    if (!k_blas_nests_in_openmp()) {
        float *S = malloc(scratch);
        if (!S)
            return -1;
        for (int64_t t = 0; t < ntask; t++)
            ttt_task(o, q, k, v, w1, w2, N, h, d, t, S);
        free(S);
        return 0;
    }

    int failed = 0;
#pragma omp parallel if (ntask > 1 && N * d * d > TTT_PAR_MIN)
    {
        float *S = malloc(scratch);
        if (!S) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < ntask; t++)
            if (S)
                ttt_task(o, q, k, v, w1, w2, N, h, d, t, S);
        free(S);
    }
    return failed ? -1 : 0;
}
