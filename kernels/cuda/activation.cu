/*
 * activation.cu - element-wise activations (SiLU, GELU tanh/erf, quick GELU) and the row-wise
 * softmax. Shapes: activations over n elements; softmax over rows x[M, N] (N the last dim).
 * Arithmetic is fp32 with the accurate expf/erfcf (no fast-math intrinsics), in the same
 * overflow- and cancellation-safe forms as kernels/cpu/activation.c.
 */
#include "kernels/cuda/k_cuda_common.cuh"

struct act_silu {
    __device__ float operator()(float x) const { return x / (1.0f + expf(-x)); }
};
/* 0.5 x (1 + tanh(u)) == x sigmoid(2u): the sigmoid form avoids the cancellation of 1 + tanh(u)
 * for negative x (as kernels/cpu/activation.c does). */
struct act_gelu_tanh {
    __device__ float operator()(float x) const
    {
        const float k0 = 2.0f * 0.7978845608028654f; /* 2 sqrt(2/pi) */
        return x / (1.0f + expf(-k0 * (x + 0.044715f * x * x * x)));
    }
};
/* 0.5 x (1 + erf(x / sqrt 2)) as 0.5 x erfc(-x / sqrt 2): accurate in the negative tail. */
struct act_gelu_erf {
    __device__ float operator()(float x) const
    {
        return 0.5f * x * erfcf(-x * 0.7071067811865476f);
    }
};
struct act_quick_gelu {
    __device__ float operator()(float x) const { return x / (1.0f + expf(-1.702f * x)); }
};

extern "C" int k_cuda_act(cudaStream_t s, k_dtype dt, void *y, const void *x, int64_t n,
                          k_act kind)
{
    K_DISPATCH(dt, T, "k_cuda_act", {
        switch (kind) {
        case K_ACT_SILU: return k_map_launch<T>(s, y, x, n, act_silu());
        case K_ACT_GELU_TANH: return k_map_launch<T>(s, y, x, n, act_gelu_tanh());
        case K_ACT_GELU_ERF: return k_map_launch<T>(s, y, x, n, act_gelu_erf());
        case K_ACT_QUICK_GELU: return k_map_launch<T>(s, y, x, n, act_quick_gelu());
        default: K_FAIL_RETURN("k_cuda_act", "unknown activation");
        }
    });
    return 0;
}

/* Three passes over the row (max, sum of exp, write); the re-reads mostly hit L1/L2.
 * y may equal x: each element is read before its own write and by the same thread only
 * in the last pass. */
template <typename T, bool BLOCK>
__global__ void softmax_kernel(T *y, const T *x, int64_t M, int64_t N)
{
    __shared__ float shm[32];
    int tid, nt;
    int64_t row = k_row_setup<BLOCK>(&tid, &nt);
    if (row >= M)
        return; /* warp rows only: a whole warp leaves together */
    const T *xr = x + row * N;
    T *yr = y + row * N;

    float mx = -INFINITY;
    for (int64_t j = tid; j < N; j += nt)
        mx = fmaxf(mx, k_ld(xr, j));
    mx = k_row_max<BLOCK>(mx, shm);
    float sum = 0.0f;
    for (int64_t j = tid; j < N; j += nt)
        sum += expf(k_ld(xr, j) - mx);
    sum = k_row_sum<BLOCK>(sum, shm);
    float inv = 1.0f / sum;
    for (int64_t j = tid; j < N; j += nt)
        k_st(yr, j, expf(k_ld(xr, j) - mx) * inv);
}

extern "C" int k_cuda_softmax(cudaStream_t s, k_dtype dt, void *y, const void *x, int64_t M,
                              int64_t N)
{
    if (M <= 0 || N <= 0)
        return 0;
    int block = N > K_WARP_ROW_MAX;
    K_DISPATCH(dt, T, "k_cuda_softmax", {
        if (block)
            softmax_kernel<T, true><<<k_row_blocks(M, 1), K_ROW_THREADS, 0, s>>>((T *)y,
                                                                                (const T *)x, M, N);
        else
            softmax_kernel<T, false><<<k_row_blocks(M, 0), K_ROW_THREADS, 0, s>>>((T *)y,
                                                                                 (const T *)x, M, N);
        K_LAUNCH_CHECK();
    });
    return 0;
}
