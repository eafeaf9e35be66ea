/*
 * attention.c - multi-head softmax attention (k_cpu_attention).
 *
 * Shapes: q[B, Nq, h*d], k and v[B, Nk, h*d], o[B, Nq, h*d]; head t is the channel slice
 * [t*d, (t+1)*d) of every token, so a head's q/k/v are strided matrices with leading
 * dimension h*d and need no copy. bias[h, Nq, Nk] (or NULL) is shared by the batch.
 *
 * Work is split into blocks of ATTN_QBLK queries of one (batch, head): S = scale * Q K^T
 * (+ bias, causal mask) in a QBLK x Nk scratch, a stable softmax over each row, then
 * O = P V straight into o. Scratch is QBLK * Nk floats per thread whatever Nq is
 * (2 MiB at Nk = 4096).
 *
 * Threading depends on how OpenBLAS threads, because its pthreads pool does not know
 * about OpenMP: GEMMs issued from several OpenMP threads at once each try to use the
 * whole pool and run several times slower than serially (measured, OpenBLAS 0.3.21).
 *  - OpenBLAS single-threaded, or built on OpenMP (it then runs single-threaded inside
 *    a parallel region): the blocks themselves are spread over OpenMP threads.
 *  - Otherwise: blocks run one after the other and OpenBLAS threads each GEMM. The
 *    softmax stays serial there: alternating an OpenMP region with the OpenBLAS pool,
 *    both spin-waiting for the same cores, measured no faster when the machine is idle
 *    and up to 3x slower when it is busy.
 * Either way every block is computed by the same calls in the same order, so the result
 * does not depend on the thread count.
 */
#include "kernels/cpu/k_cpu.h"
#include "kernels/cpu/k_cpu_internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>

/* Query rows per block: enough for efficient GEMMs, small enough for cache-resident scores. */
#define ATTN_QBLK 128

/* Below this many q.k multiply-adds per block a parallel region costs more than it saves. */
#define ATTN_PAR_MIN ((int64_t)1 << 14)

/*
 * Softmax of one row of n scores in place; the scores beyond n (masked keys) are not
 * touched and must be ignored by the caller. A row whose scores are all -inf (every key
 * masked by the bias) becomes all zeros rather than NaN.
 */
static void softmax_row(float *s, int64_t n)
{
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++)
        mx = s[j] > mx ? s[j] : mx;
    if (mx == -INFINITY) {
        for (int64_t j = 0; j < n; j++)
            s[j] = 0.0f;
        return;
    }
    float sum = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        s[j] = expf(s[j] - mx);
        sum += s[j];
    }
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < n; j++)
        s[j] *= inv;
}

/* One block: queries [i0, i0 + m) of batch bi, head t. S has room for m * Nk floats. */
static void attn_block(float *o, const float *q, const float *k, const float *v,
                       const float *bias, int64_t Nq, int64_t Nk, int64_t h, int64_t d,
                       float scale, int causal, int64_t bi, int64_t t, int64_t i0, int64_t m,
                       float *S)
{
    const int64_t C = h * d;
    const float *qh = q + (bi * Nq + i0) * C + t * d;
    const float *kh = k + bi * Nk * C + t * d;
    const float *vh = v + bi * Nk * C + t * d;
    float *oh = o + (bi * Nq + i0) * C + t * d;
    /*
     * Under the causal mask no query of this block sees a key at or past i0 + m, so those
     * columns are neither computed nor multiplied; the rows of S are then nk wide.
     */
    const int64_t nk = causal && i0 + m < Nk ? i0 + m : Nk;
    if (nk == 0) { /* no keys at all: the weighted sum is empty */
        for (int64_t i = 0; i < m; i++)
            for (int64_t c = 0; c < d; c++)
                oh[i * C + c] = 0.0f;
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nk, (int)d, scale, qh,
                (int)C, kh, (int)C, 0.0f, S, (int)nk);

    for (int64_t i = 0; i < m; i++) {
        float *si = S + i * nk;
        const int64_t qi = i0 + i;
        if (bias) {
            const float *brow = bias + (t * Nq + qi) * Nk;
            for (int64_t j = 0; j < nk; j++)
                si[j] += brow[j];
        }
        /* Keys j > qi are masked: softmax over the first qi + 1, zeros after. */
        const int64_t n = causal && qi + 1 < nk ? qi + 1 : nk;
        softmax_row(si, n);
        for (int64_t j = n; j < nk; j++)
            si[j] = 0.0f;
    }

    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)d, (int)nk, 1.0f, S,
                (int)nk, vh, (int)C, 0.0f, oh, (int)C);
}


int k_cpu_attention(float *o, const float *q, const float *k, const float *v, const float *bias,
                    int64_t B, int64_t Nq, int64_t Nk, int64_t h, int64_t d, float scale,
                    int causal)
{
    const int64_t qblk = Nq < ATTN_QBLK ? Nq : ATTN_QBLK;
    const int64_t nblk = qblk > 0 ? (Nq + qblk - 1) / qblk : 0;
    const int64_t ntask = B * h * nblk;
    const size_t scratch = (size_t)(qblk * Nk) * sizeof(float) + 1;

    if (!k_blas_nests_in_openmp()) {
        float *S = malloc(scratch);
        if (!S)
            return -1;
        for (int64_t task = 0; task < ntask; task++) {
            const int64_t bi = task / (h * nblk), t = task / nblk % h, i0 = task % nblk * qblk;
            const int64_t m = Nq - i0 < qblk ? Nq - i0 : qblk;
            attn_block(o, q, k, v, bias, Nq, Nk, h, d, scale, causal, bi, t, i0, m, S);
        }
        free(S);
        return 0;
    }

    int failed = 0;
#pragma omp parallel if (ntask > 1 && qblk * Nk * d > ATTN_PAR_MIN)
    {
        float *S = malloc(scratch);
        if (!S) {
#pragma omp atomic write
            failed = 1;
        }
        /* Dynamic: under the causal mask later blocks have more keys. */
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < ntask; task++) {
            if (!S)
                continue;
            const int64_t bi = task / (h * nblk), t = task / nblk % h, i0 = task % nblk * qblk;
            const int64_t m = Nq - i0 < qblk ? Nq - i0 : qblk;
            attn_block(o, q, k, v, bias, Nq, Nk, h, d, scale, causal, bi, t, i0, m, S);
        }
        free(S);
    }
    return failed ? -1 : 0;
}
