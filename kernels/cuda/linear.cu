/*
 * linear.cu - y[M, O] = x[M, K] w[O, K]^T + b[O] through cuBLASLt, and the plain cuBLAS GEMM
 * helper (k_gemm) that conv2d and attention use.
 *
 * Row-major y[M, O] is column-major y^T (O x M, ld O), so cuBLASLt computes
 * y^T = op(w) x^T with w seen column-major as K x O (ld K) and transposed, and x^T as K x M
 * (ld K). Both dtypes accumulate in fp32 (CUBLAS_COMPUTE_32F: F32 stays true fp32, no TF32).
 * The bias goes in through the BIAS epilogue when it is 16-byte aligned, otherwise through a
 * separate broadcast add. Heuristic results are cached per (dtype, shape, alignment, epilogue)
 * in a small round-robin table owned by the ctx. Where cuBLASLt offers no algorithm (odd
 * alignments), plain cuBLAS (cublasGemmStridedBatchedEx, batch 1) takes over.
 */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/k_cuda.h"
#include "kernels/cuda/k_cuda_internal.h"

#define K_LT_PLANS 64

/* Epilogue bits of a plan. */
#define LT_EPI_BIAS 1
#define LT_EPI_GELU 2

struct k_lt_plan {
    int used;
    k_dtype dt;
    int64_t M, K, O;
    int epilogue;
    uint32_t ax, aw, ay, ab; /* pointer alignments the algorithm was chosen for */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t lw, lx, ly;
    cublasLtMatmulAlgo_t algo;
};

static void plan_release(struct k_lt_plan *p)
{
    if (p->desc)
        cublasLtMatmulDescDestroy(p->desc);
    if (p->lw)
        cublasLtMatrixLayoutDestroy(p->lw);
    if (p->lx)
        cublasLtMatrixLayoutDestroy(p->lx);
    if (p->ly)
        cublasLtMatrixLayoutDestroy(p->ly);
    memset(p, 0, sizeof *p);
}

void k_lt_plans_free(k_cuda_ctx *ctx)
{
    if (!ctx->plans)
        return;
    for (int i = 0; i < ctx->n_plans; i++)
        plan_release(&ctx->plans[i]);
    free(ctx->plans);
    ctx->plans = NULL;
    ctx->n_plans = ctx->next_plan = 0;
}

/* Largest power of two (up to 256) dividing the address; cuBLASLt's alignment preference. */
static uint32_t align_of(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    uint32_t al = 256;
    while (al > 1 && (a & (al - 1)))
        al >>= 1;
    return al;
}

static cudaDataType_t cuda_type(k_dtype dt)
{
    return dt == K_BF16 ? CUDA_R_16BF : dt == K_F16 ? CUDA_R_16F : CUDA_R_32F;
}

/* Builds descriptors and asks the heuristic for one algorithm. */
static int plan_make(k_cuda_ctx *ctx, struct k_lt_plan *p)
{
    cudaDataType_t t = cuda_type(p->dt);
    cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res;
    uint64_t ws = ctx->workspace_size;
    int nres = 0;

    CUBLAS_TRY(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof opT));
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof opN));
    if (p->epilogue) {
        /* Bit 0: the bias; bit 1: GELU after it. */
        cublasLtEpilogue_t epi = p->epilogue == LT_EPI_BIAS   ? CUBLASLT_EPILOGUE_BIAS
                                 : p->epilogue == LT_EPI_GELU ? CUBLASLT_EPILOGUE_GELU
                                                              : CUBLASLT_EPILOGUE_GELU_BIAS;
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                  sizeof epi));
    }
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&p->lw, t, (uint64_t)p->K, (uint64_t)p->O, p->K));
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&p->lx, t, (uint64_t)p->K, (uint64_t)p->M, p->K));
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&p->ly, t, (uint64_t)p->O, (uint64_t)p->M, p->O));

    CUBLAS_TRY(cublasLtMatmulPreferenceCreate(&pref));
    if (cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                             sizeof ws) != CUBLAS_STATUS_SUCCESS ||
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                             &p->aw, sizeof p->aw) != CUBLAS_STATUS_SUCCESS ||
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                             &p->ax, sizeof p->ax) != CUBLAS_STATUS_SUCCESS ||
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                             &p->ay, sizeof p->ay) != CUBLAS_STATUS_SUCCESS ||
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                             &p->ay, sizeof p->ay) != CUBLAS_STATUS_SUCCESS) {
        cublasLtMatmulPreferenceDestroy(pref);
        K_FAIL_RETURN("cublasLtMatmulPreferenceSetAttribute", "failed");
    }
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(ctx->lt, p->desc, p->lw, p->lx, p->ly,
                                                       p->ly, pref, 1, &res, &nres);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS)
        K_FAIL_RETURN("cublasLtMatmulAlgoGetHeuristic", cublasGetStatusString(st));
    if (nres < 1)
        K_FAIL_RETURN("cublasLtMatmulAlgoGetHeuristic", "no algorithm for this shape");
    p->algo = res.algo;
    p->used = 1;
    return 0;
}

static struct k_lt_plan *plan_get(k_cuda_ctx *ctx, k_dtype dt, int64_t M, int64_t K, int64_t O,
                                  int epilogue, uint32_t ax, uint32_t aw, uint32_t ay, uint32_t ab)
{
    struct k_lt_plan *p;

    if (!ctx->plans) {
        ctx->plans = (struct k_lt_plan *)calloc(K_LT_PLANS, sizeof *ctx->plans);
        if (!ctx->plans) {
            k_cuda_set_error(__FILE__, __LINE__, "calloc(plans)", "out of host memory");
            return NULL;
        }
        ctx->n_plans = K_LT_PLANS;
    }
    for (int i = 0; i < ctx->n_plans; i++) {
        p = &ctx->plans[i];
        if (p->used && p->dt == dt && p->M == M && p->K == K && p->O == O &&
            p->epilogue == epilogue && p->ax == ax && p->aw == aw && p->ay == ay && p->ab == ab)
            return p;
    }
    p = &ctx->plans[ctx->next_plan];
    ctx->next_plan = (ctx->next_plan + 1) % ctx->n_plans;
    plan_release(p);
    p->dt = dt;
    p->M = M;
    p->K = K;
    p->O = O;
    p->epilogue = epilogue;
    p->ax = ax;
    p->aw = aw;
    p->ay = ay;
    p->ab = ab;
    if (plan_make(ctx, p)) {
        plan_release(p);
        return NULL;
    }
    return p;
}

/* y = x w^T (+ b) (then GELU when gelu): the bias and GELU in the cuBLASLt epilogue where an
 * algorithm offers them, else as separate passes. */
static int linear_impl(k_cuda_ctx *ctx, k_dtype dt, void *y, const void *x, const void *w,
                       const void *b, int64_t M, int64_t K, int64_t O, int gelu)
{
    const float one = 1.0f, zero = 0.0f;
    int epilogue;
    struct k_lt_plan *p = NULL;

    if (dt != K_F32 && dt != K_BF16)
        K_FAIL_RETURN("k_cuda_linear", "dtype not supported (F32 or BF16)");
    if (M == 0 || O == 0)
        return 0;
    if (K == 0) { /* an empty sum: y = b */
        CUDA_TRY(cudaMemsetAsync(y, 0, (size_t)(M * O) * k_dtype_size(dt), ctx->stream));
        if (b && k_cuda_binary(ctx->stream, dt, y, y, b, M * O, O, 0))
            return -1;
        return gelu ? k_cuda_act(ctx->stream, dt, y, y, M * O, K_ACT_GELU_TANH) : 0;
    }
    /* Wanted epilogue first, then without GELU, then without the bias. GELU goes in the epilogue
     * only together with the bias (or without one): it must come after it. */
    const int bias_epi = b && align_of(b) >= 16;
    const int want = (bias_epi ? LT_EPI_BIAS : 0) | (gelu && (bias_epi || !b) ? LT_EPI_GELU : 0);
    const int tries[3] = {want, want & LT_EPI_BIAS, 0};
    for (int t = 0; t < 3 && !p; t++) {
        if (t && tries[t] == tries[t - 1])
            continue;
        epilogue = tries[t];
        p = plan_get(ctx, dt, M, K, O, epilogue, align_of(x), align_of(w), align_of(y),
                     (epilogue & LT_EPI_BIAS) ? 16 : 0);
    }
    if (!p) {
        /* cuBLASLt found nothing for this shape/alignment (not cached, so asked again next
         * time): plain cuBLAS, y^T (O x M) = w^T x^T. */
        epilogue = 0;
        if (k_gemm(ctx, 1, 0, O, M, K, 1.0f, w, dt, K, 0, x, K, 0, 0.0f, y, dt, O, 0, 1))
            return -1;
    } else {
        if (epilogue & LT_EPI_BIAS)
            CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                      &b, sizeof b));
        CUBLAS_TRY(cublasLtMatmul(ctx->lt, p->desc, &one, w, p->lw, x, p->lx, &zero, y, p->ly, y,
                                  p->ly, &p->algo, ctx->workspace, ctx->workspace_size,
                                  ctx->stream));
    }
    if (b && !(epilogue & LT_EPI_BIAS) && k_cuda_binary(ctx->stream, dt, y, y, b, M * O, O, 0))
        return -1;
    if (gelu && !(epilogue & LT_EPI_GELU))
        return k_cuda_act(ctx->stream, dt, y, y, M * O, K_ACT_GELU_TANH);
    return 0;
}

extern "C" int k_cuda_linear(k_cuda_ctx *ctx, k_dtype dt, void *y, const void *x, const void *w,
                             const void *b, int64_t M, int64_t K, int64_t O)
{
    return linear_impl(ctx, dt, y, x, w, b, M, K, O, 0);
}

extern "C" int k_cuda_linear_gelu(k_cuda_ctx *ctx, k_dtype dt, void *y, const void *x,
                                  const void *w, const void *b, int64_t M, int64_t K, int64_t O)
{
    return linear_impl(ctx, dt, y, x, w, b, M, K, O, 1);
}

int k_gemm(k_cuda_ctx *ctx, int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha,
           const void *A, k_dtype ab, int64_t lda, int64_t sa, const void *B, int64_t ldb,
           int64_t sb, float beta, void *C, k_dtype cdt, int64_t ldc, int64_t sc, int64_t batch)
{
    const int64_t lim = INT32_MAX;

    if (m > lim || n > lim || k > lim || lda > lim || ldb > lim || ldc > lim || batch > lim)
        K_FAIL_RETURN("k_gemm", "dimension over 2^31");
    CUBLAS_TRY(cublasGemmStridedBatchedEx(
        ctx->blas, transa ? CUBLAS_OP_T : CUBLAS_OP_N, transb ? CUBLAS_OP_T : CUBLAS_OP_N, (int)m,
        (int)n, (int)k, &alpha, A, cuda_type(ab), (int)lda, (long long)sa, B, cuda_type(ab),
        (int)ldb, (long long)sb, &beta, C, cuda_type(cdt), (int)ldc, (long long)sc, (int)batch,
        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return 0;
}
