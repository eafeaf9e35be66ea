/*
 * convert.cu - element-wise dtype conversion between F32, F16 and BF16 storage. Every
 * conversion goes through fp32 (exact for F16/BF16 -> F32) and rounds once to nearest even,
 * which matches kernels/cpu/convert.c bit for bit (NaN stays NaN, overflow goes to inf).
 */
#include "kernels/cuda/k_cuda_common.cuh"

__device__ __forceinline__ float cv_ld(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float cv_ld(const bf16 *p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float cv_ld(const __half *p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void cv_st(float *p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void cv_st(bf16 *p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }
__device__ __forceinline__ void cv_st(__half *p, int64_t i, float v) { p[i] = __float2half_rn(v); }

template <typename TY, typename TX>
__global__ void convert_kernel(TY *__restrict__ y, const TX *__restrict__ x, int64_t n)
{
    K_GRID_STRIDE(i, n)
    cv_st(y, i, cv_ld(x, i));
}

template <typename TY, typename TX>
static int convert_launch(cudaStream_t s, void *y, const void *x, int64_t n)
{
    convert_kernel<TY, TX><<<k_blocks(n, K_THREADS), K_THREADS, 0, s>>>((TY *)y, (const TX *)x, n);
    K_LAUNCH_CHECK();
    return 0;
}

extern "C" int k_cuda_convert(cudaStream_t s, void *y, k_dtype yt, const void *x, k_dtype xt,
                              int64_t n)
{
    if (n <= 0)
        return 0;
    if (yt == xt) {
        CUDA_TRY(cudaMemcpyAsync(y, x, (size_t)n * k_dtype_size(xt), cudaMemcpyDeviceToDevice, s));
        return 0;
    }
    switch (xt * 3 + yt) {
    case K_F32 * 3 + K_BF16: return convert_launch<bf16, float>(s, y, x, n);
    case K_F32 * 3 + K_F16: return convert_launch<__half, float>(s, y, x, n);
    case K_BF16 * 3 + K_F32: return convert_launch<float, bf16>(s, y, x, n);
    case K_BF16 * 3 + K_F16: return convert_launch<__half, bf16>(s, y, x, n);
    case K_F16 * 3 + K_F32: return convert_launch<float, __half>(s, y, x, n);
    case K_F16 * 3 + K_BF16: return convert_launch<bf16, __half>(s, y, x, n);
    default: K_FAIL_RETURN("k_cuda_convert", "unknown dtype pair");
    }
}
