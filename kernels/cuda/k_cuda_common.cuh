/*
 * k_cuda_common.cuh - device helpers shared by the kernels/cuda .cu files (private to them):
 * fp32 load/store of F32/BF16 storage, 16-byte vector loads, warp and block sums, launch sizes,
 * and the dtype dispatch that turns a k_dtype into a template argument.
 */
#ifndef TTTD_KERNELS_CUDA_COMMON_CUH
#define TTTD_KERNELS_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/k_cuda.h"

typedef __nv_bfloat16 bf16;

/* ---- scalar load/store in fp32 ---- */

__device__ __forceinline__ float k_ld(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float k_ld(const bf16 *p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void k_st(float *p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void k_st(bf16 *p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }

/* ---- 16-byte vectors: 4 floats or 8 bf16, converted to/from fp32 registers ---- */

template <typename T> struct k_vec {
    static constexpr int N = 16 / (int)sizeof(T);
};

__device__ __forceinline__ void k_ld16(const float *p, float *out)
{
    float4 v = *reinterpret_cast<const float4 *>(p);
    out[0] = v.x;
    out[1] = v.y;
    out[2] = v.z;
    out[3] = v.w;
}

__device__ __forceinline__ void k_ld16(const bf16 *p, float *out)
{
    uint4 v = *reinterpret_cast<const uint4 *>(p);
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&v);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 f = __bfloat1622float2(h[i]);
        out[2 * i] = f.x;
        out[2 * i + 1] = f.y;
    }
}

__device__ __forceinline__ void k_st16(float *p, const float *in)
{
    *reinterpret_cast<float4 *>(p) = make_float4(in[0], in[1], in[2], in[3]);
}

__device__ __forceinline__ void k_st16(bf16 *p, const float *in)
{
    uint4 v;
    __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&v);
#pragma unroll
    for (int i = 0; i < 4; i++)
        h[i] = __floats2bfloat162_rn(in[2 * i], in[2 * i + 1]);
    *reinterpret_cast<uint4 *>(p) = v;
}

static inline int k_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* ---- reductions ---- */

__device__ __forceinline__ float k_warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float k_warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
 * shm holds 32 floats; the function may be called repeatedly with the same shm. */
__device__ __forceinline__ float k_block_sum(float v, float *shm)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = k_warp_sum(v);
    __syncthreads(); /* shm may still be read from a previous call */
    if (lane == 0)
        shm[warp] = v;
    __syncthreads();
    v = lane < nwarps ? shm[lane] : 0.0f;
    return k_warp_sum(v);
}

__device__ __forceinline__ float k_block_max(float v, float *shm)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = k_warp_max(v);
    __syncthreads();
    if (lane == 0)
        shm[warp] = v;
    __syncthreads();
    v = lane < nwarps ? shm[lane] : -INFINITY;
    return k_warp_max(v);
}

/* Sum over a row handled by a whole block (BLOCK) or by one warp. */
template <bool BLOCK> __device__ __forceinline__ float k_row_sum(float v, float *shm)
{
    if constexpr (BLOCK)
        return k_block_sum(v, shm);
    else
        return k_warp_sum(v);
}

template <bool BLOCK> __device__ __forceinline__ float k_row_max(float v, float *shm)
{
    if constexpr (BLOCK)
        return k_block_max(v, shm);
    else
        return k_warp_max(v);
}

/*
 * Row kernels run in one of two shapes: a block of K_ROW_THREADS per row (long rows), or one
 * warp per row with K_ROW_THREADS / 32 rows per block (rows of at most K_WARP_ROW_MAX).
 * k_row_setup gives this thread's row, its first column and the column stride.
 */
#define K_ROW_THREADS 256
#define K_WARP_ROW_MAX 1024

template <bool BLOCK> __device__ __forceinline__ int64_t k_row_setup(int *tid, int *nt)
{
    if constexpr (BLOCK) {
        *tid = threadIdx.x;
        *nt = blockDim.x;
        return blockIdx.x;
    } else {
        *tid = threadIdx.x & 31;
        *nt = 32;
        return (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    }
}

static inline unsigned k_row_blocks(int64_t M, int block)
{
    return block ? (unsigned)M : (unsigned)((M + K_ROW_THREADS / 32 - 1) / (K_ROW_THREADS / 32));
}

/* ---- launch sizes ---- */

#define K_THREADS 256

/* Blocks for a grid-stride loop over n items: enough to fill the GPU, never zero. */
static inline unsigned k_blocks(int64_t n, int threads)
{
    int64_t b = (n + threads - 1) / threads;
    if (b < 1)
        b = 1;
    if (b > 8192)
        b = 8192;
    return (unsigned)b;
}

#define K_GRID_STRIDE(i, n)                                                                        \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                      \
         i += (int64_t)gridDim.x * blockDim.x)

/* ---- element-wise map: y[i] = f(x[i]), 16-byte vectors when both pointers allow ---- */

template <typename T, typename F>
__global__ void k_map_kernel(T *y, const T *x, int64_t n, int vec, F f)
{
    constexpr int V = k_vec<T>::N;
    int64_t nv = vec ? n / V : 0;
    K_GRID_STRIDE(i, nv) {
        float v[V];
        k_ld16(x + i * V, v);
#pragma unroll
        for (int j = 0; j < V; j++)
            v[j] = f(v[j]);
        k_st16(y + i * V, v);
    }
    for (int64_t i = nv * V + (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        k_st(y, i, f(k_ld(x, i)));
}

template <typename T, typename F>
static int k_map_launch(cudaStream_t s, void *y, const void *x, int64_t n, F f)
{
    int vec = k_aligned16(y) && k_aligned16(x);
    int64_t work = vec ? n / k_vec<T>::N + 1 : n;
    if (n <= 0)
        return 0;
    k_map_kernel<T, F><<<k_blocks(work, K_THREADS), K_THREADS, 0, s>>>((T *)y, (const T *)x, n,
                                                                        vec, f);
    K_LAUNCH_CHECK();
    return 0;
}

/* ---- dtype dispatch: runs the statement with T bound to float or bf16 ---- */

#define K_DISPATCH(dt, T, what, ...)                                                               \
    do {                                                                                           \
        switch (dt) {                                                                              \
        case K_F32: {                                                                              \
            typedef float T;                                                                       \
            __VA_ARGS__;                                                                           \
            break;                                                                                 \
        }                                                                                          \
        case K_BF16: {                                                                             \
            typedef bf16 T;                                                                        \
            __VA_ARGS__;                                                                           \
            break;                                                                                 \
        }                                                                                          \
        default:                                                                                   \
            k_cuda_set_error(__FILE__, __LINE__, (what), "dtype not supported (F32 or BF16)");    \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

#endif
