/*
 * context.cu - the per-stream state of the GEMM-based ops (k_cuda_ctx: stream, cuBLAS and
 * cuBLASLt handles, workspace, the kernel-choice overrides) made and released; the scratch
 * grows in scratch.cu, the cuDNN state is made by its first use in attention_cudnn.cu.
 */
#include <string.h>

#include "kernels/cuda/k_cuda.h"
#include "kernels/cuda/k_cuda_internal.h"

/* cuBLASLt asks for 32 MiB on Hopper; cuBLAS shares the same buffer (never concurrently:
 * both run in order on the one stream). */
#define K_WORKSPACE_BYTES ((size_t)32 << 20)

extern "C" int k_cuda_ctx_init(k_cuda_ctx *ctx, int device)
{
    cudaError_t e;
    const char *what = "cudaSetDevice";

    memset(ctx, 0, sizeof *ctx);
    ctx->device = device;
    if ((e = cudaSetDevice(device)) != cudaSuccess)
        goto fail_cuda;
    what = "cudaDeviceGetAttribute";
    if ((e = cudaDeviceGetAttribute(&ctx->sm_count, cudaDevAttrMultiProcessorCount, device)) !=
        cudaSuccess)
        goto fail_cuda;
    what = "cudaStreamCreateWithFlags";
    if ((e = cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking)) != cudaSuccess)
        goto fail_cuda;
    what = "cudaMalloc(workspace)";
    if ((e = cudaMalloc(&ctx->workspace, K_WORKSPACE_BYTES)) != cudaSuccess)
        goto fail_cuda;
    ctx->workspace_size = K_WORKSPACE_BYTES;
    if (cublasCreate(&ctx->blas) != CUBLAS_STATUS_SUCCESS ||
        cublasSetStream(ctx->blas, ctx->stream) != CUBLAS_STATUS_SUCCESS ||
        cublasSetWorkspace(ctx->blas, ctx->workspace, ctx->workspace_size) !=
            CUBLAS_STATUS_SUCCESS ||
        cublasSetMathMode(ctx->blas, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS)
        goto fail_blas;
    if (cublasLtCreate(&ctx->lt) != CUBLAS_STATUS_SUCCESS)
        goto fail_blas;
    return 0;

fail_cuda:
    k_cuda_set_error(__FILE__, __LINE__, what, cudaGetErrorString(e));
    k_cuda_ctx_free(ctx);
    return -1;
fail_blas:
    k_cuda_set_error(__FILE__, __LINE__, "k_cuda_ctx_init", "cuBLAS/cuBLASLt handle setup failed");
    k_cuda_ctx_free(ctx);
    return -1;
}

extern "C" void k_cuda_ctx_free(k_cuda_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->stream)
        cudaStreamSynchronize(ctx->stream);
    k_lt_plans_free(ctx);
    k_cudnn_attn_free(ctx);
    if (ctx->lt)
        cublasLtDestroy(ctx->lt);
    if (ctx->blas)
        cublasDestroy(ctx->blas);
    cudaFree(ctx->scratch);
    cudaFree(ctx->workspace);
    if (ctx->stream)
        cudaStreamDestroy(ctx->stream);
    memset(ctx, 0, sizeof *ctx);
}
