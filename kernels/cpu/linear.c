/* linear.c - the fully connected layer y = x w^T + b, one OpenBLAS sgemm per call. */
#include "kernels/cpu/k_cpu.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

/*
 * The bias is written into y first and the product accumulated onto it (beta = 1), so the
 * bias costs one pass over y instead of a second GEMM-sized pass after it. Without a bias,
 * beta = 0: BLAS then never reads y, so stale or NaN contents cannot leak into the result.
 *
 * OpenBLAS threads the GEMM itself. Its sgemm splits the output, not the K sum, so the
 * result does not depend on the thread count.
 */
void k_cpu_linear(float *y, const float *x, const float *w, const float *b, int64_t M, int64_t K,
                  int64_t O)
{
    if (M <= 0 || O <= 0)
        return;
    if (K <= 0) { /* an empty sum: BLAS may not touch y at all, so write the answer here */
        for (int64_t m = 0; m < M; m++) {
            if (b)
                memcpy(y + m * O, b, (size_t)O * sizeof *y);
            else
                memset(y + m * O, 0, (size_t)O * sizeof *y);
        }
        return;
    }
    /* The CBLAS interface takes int dimensions. K and O are weight dimensions (a row past
     * INT_MAX floats would be 8 GiB); only M, the token count, could conceivably be larger,
     * so it is cut into slices that fit. */
    const int64_t m_step = INT_MAX;
    for (int64_t m0 = 0; m0 < M; m0 += m_step) {
        int64_t rows = M - m0 < m_step ? M - m0 : m_step;
        float *ys = y + m0 * O;
        float beta = 0.0f;
        if (b) {
            for (int64_t m = 0; m < rows; m++)
                memcpy(ys + m * O, b, (size_t)O * sizeof *ys);
            beta = 1.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)O, (int)K, 1.0f,
                    x + m0 * K, (int)K, w, (int)K, beta, ys, (int)O);
    }
}
