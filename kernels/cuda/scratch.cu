/*
 * scratch.cu - the growing scratch buffer of a k_cuda_ctx (k_cuda_ctx_scratch). Apart from
 * context.cu because ops whose cached state the context releases (the cuDNN attention plans of
 * attention_cudnn.cu) take their workspace here: one file each way, no circle.
 */
#include "kernels/cuda/k_cuda.h"

extern "C" void *k_cuda_ctx_scratch(k_cuda_ctx *ctx, size_t nbytes)
{
    cudaError_t e;

    if (nbytes <= ctx->scratch_size)
        return ctx->scratch;
    /* Work already queued may still read the old buffer. */
    e = cudaStreamSynchronize(ctx->stream);
    if (e != cudaSuccess) {
        k_cuda_set_error(__FILE__, __LINE__, "cudaStreamSynchronize", cudaGetErrorString(e));
        return NULL;
    }
    cudaFree(ctx->scratch);
    ctx->scratch = NULL;
    ctx->scratch_size = 0;
    ctx->scratch_generation++; /* graphs recorded on the old buffer must be recorded again */
    /* Round up to 16 MiB so that slowly growing shapes do not reallocate every call. */
    nbytes = (nbytes + ((size_t)16 << 20) - 1) & ~(((size_t)16 << 20) - 1);
    e = cudaMalloc(&ctx->scratch, nbytes);
    if (e != cudaSuccess) {
        ctx->scratch = NULL;
        k_cuda_set_error(__FILE__, __LINE__, "cudaMalloc(scratch)", cudaGetErrorString(e));
        return NULL;
    }
    ctx->scratch_size = nbytes;
    return ctx->scratch;
}
