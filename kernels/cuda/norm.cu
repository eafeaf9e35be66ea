/*
 * norm.cu - layer norm and RMS norm over the last dim of x[M, C], group norm over x[B, C, S]
 * (S = spatial size). Statistics are fp32 and two-pass (mean, then the mean of squared
 * deviations), matching the CPU reference closely. Rows up to K_WARP_ROW_MAX go one warp per row,
 * longer rows one block per row; group norm takes one block per (batch, group).
 */
#include "kernels/cuda/k_cuda_common.cuh"

template <typename T, bool BLOCK>
__global__ void layer_norm_kernel(T *y, const T *x, const T *w, const T *b, int64_t M, int64_t C,
                                  float eps)
{
    __shared__ float shm[32];
    int tid, nt;
    int64_t row = k_row_setup<BLOCK>(&tid, &nt);
    if (row >= M)
        return;
    const T *xr = x + row * C;
    T *yr = y + row * C;

    float sum = 0.0f;
    for (int64_t j = tid; j < C; j += nt)
        sum += k_ld(xr, j);
    float mean = k_row_sum<BLOCK>(sum, shm) / (float)C;
    float sq = 0.0f;
    for (int64_t j = tid; j < C; j += nt) {
        float d = k_ld(xr, j) - mean;
        sq += d * d;
    }
    float var = k_row_sum<BLOCK>(sq, shm) / (float)C;
    float inv = 1.0f / sqrtf(var + eps);
    for (int64_t j = tid; j < C; j += nt) {
        float v = (k_ld(xr, j) - mean) * inv;
        if (w)
            v *= k_ld(w, j);
        if (b)
            v += k_ld(b, j);
        k_st(yr, j, v);
    }
}

/* y = LayerNorm(x) * (1 + scale[b]) + shift[b] per row of x[B * N, C], row r of sample r / N. */
template <typename T, bool BLOCK>
__global__ void layer_norm_mod_kernel(T *y, const T *x, const T *scale, const T *shift, int64_t M,
                                      int64_t N, int64_t C, float eps)
{
    __shared__ float shm[32];
    int tid, nt;
    int64_t row = k_row_setup<BLOCK>(&tid, &nt);
    if (row >= M)
        return;
    const T *xr = x + row * C, *sc = scale + (row / N) * C, *sh = shift + (row / N) * C;
    T *yr = y + row * C;

    float sum = 0.0f;
    for (int64_t j = tid; j < C; j += nt)
        sum += k_ld(xr, j);
    float mean = k_row_sum<BLOCK>(sum, shm) / (float)C;
    float sq = 0.0f;
    for (int64_t j = tid; j < C; j += nt) {
        float d = k_ld(xr, j) - mean;
        sq += d * d;
    }
    float inv = 1.0f / sqrtf(k_row_sum<BLOCK>(sq, shm) / (float)C + eps);
    for (int64_t j = tid; j < C; j += nt)
        k_st(yr, j, (k_ld(xr, j) - mean) * inv * (1.0f + k_ld(sc, j)) + k_ld(sh, j));
}

extern "C" int k_cuda_norm_modulate(cudaStream_t s, k_dtype dt, void *y, const void *x,
                                    const void *scale, const void *shift, int64_t B, int64_t N,
                                    int64_t C, float eps)
{
    const int64_t M = B * N;
    if (M <= 0 || C <= 0)
        return 0;
    int block = C > K_WARP_ROW_MAX;
    K_DISPATCH(dt, T, "k_cuda_norm_modulate", {
        if (block)
            layer_norm_mod_kernel<T, true><<<k_row_blocks(M, 1), K_ROW_THREADS, 0, s>>>(
                (T *)y, (const T *)x, (const T *)scale, (const T *)shift, M, N, C, eps);
        else
            layer_norm_mod_kernel<T, false><<<k_row_blocks(M, 0), K_ROW_THREADS, 0, s>>>(
                (T *)y, (const T *)x, (const T *)scale, (const T *)shift, M, N, C, eps);
        K_LAUNCH_CHECK();
    });
    return 0;
}

template <typename T, bool BLOCK>
__global__ void rms_norm_kernel(T *y, const T *x, const T *w, int64_t M, int64_t C, float eps)
{
    __shared__ float shm[32];
    int tid, nt;
    int64_t row = k_row_setup<BLOCK>(&tid, &nt);
    if (row >= M)
        return;
    const T *xr = x + row * C;
    T *yr = y + row * C;

    float sq = 0.0f;
    for (int64_t j = tid; j < C; j += nt) {
        float v = k_ld(xr, j);
        sq += v * v;
    }
    float inv = 1.0f / sqrtf(k_row_sum<BLOCK>(sq, shm) / (float)C + eps);
    for (int64_t j = tid; j < C; j += nt) {
        float v = k_ld(xr, j) * inv;
        if (w)
            v *= k_ld(w, j);
        k_st(yr, j, v);
    }
}

extern "C" int k_cuda_layer_norm(cudaStream_t s, k_dtype dt, void *y, const void *x,
                                 const void *w, const void *b, int64_t M, int64_t C, float eps)
{
    if (M <= 0 || C <= 0)
        return 0;
    int block = C > K_WARP_ROW_MAX;
    K_DISPATCH(dt, T, "k_cuda_layer_norm", {
        if (block)
            layer_norm_kernel<T, true><<<k_row_blocks(M, 1), K_ROW_THREADS, 0, s>>>(
                (T *)y, (const T *)x, (const T *)w, (const T *)b, M, C, eps);
        else
            layer_norm_kernel<T, false><<<k_row_blocks(M, 0), K_ROW_THREADS, 0, s>>>(
                (T *)y, (const T *)x, (const T *)w, (const T *)b, M, C, eps);
        K_LAUNCH_CHECK();
    });
    return 0;
}

extern "C" int k_cuda_rms_norm(cudaStream_t s, k_dtype dt, void *y, const void *x, const void *w,
                               int64_t M, int64_t C, float eps)
{
    if (M <= 0 || C <= 0)
        return 0;
    int block = C > K_WARP_ROW_MAX;
    K_DISPATCH(dt, T, "k_cuda_rms_norm", {
        if (block)
            rms_norm_kernel<T, true><<<k_row_blocks(M, 1), K_ROW_THREADS, 0, s>>>(
                (T *)y, (const T *)x, (const T *)w, M, C, eps);
        else
            rms_norm_kernel<T, false><<<k_row_blocks(M, 0), K_ROW_THREADS, 0, s>>>(
                (T *)y, (const T *)x, (const T *)w, M, C, eps);
        K_LAUNCH_CHECK();
    });
    return 0;
}

/* One block per (b, g); the group is the contiguous run x[b, g*Cg : (g+1)*Cg, :]. */
#define GN_THREADS 1024

template <typename T>
__global__ void __launch_bounds__(GN_THREADS)
    group_norm_kernel(T *y, const T *x, const T *w, const T *b, int64_t C, int64_t S, int64_t G,
                      float eps)
{
    __shared__ float shm[32];
    int64_t bg = blockIdx.x, g = bg % G, Cg = C / G, n = Cg * S;
    const T *xg = x + bg * n;
    T *yg = y + bg * n;

    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
        sum += k_ld(xg, j);
    float mean = k_block_sum(sum, shm) / (float)n;
    float sq = 0.0f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        float d = k_ld(xg, j) - mean;
        sq += d * d;
    }
    float inv = 1.0f / sqrtf(k_block_sum(sq, shm) / (float)n + eps);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        int64_t c = g * Cg + j / S;
        float v = (k_ld(xg, j) - mean) * inv;
        if (w)
            v *= k_ld(w, c);
        if (b)
            v += k_ld(b, c);
        k_st(yg, j, v);
    }
}

extern "C" int k_cuda_group_norm(cudaStream_t s, k_dtype dt, void *y, const void *x,
                                 const void *w, const void *b, int64_t B, int64_t C, int64_t S,
                                 int64_t G, float eps)
{
    if (B <= 0 || C <= 0 || S <= 0)
        return 0;
    if (G <= 0 || C % G)
        K_FAIL_RETURN("k_cuda_group_norm", "groups must divide channels");
    K_DISPATCH(dt, T, "k_cuda_group_norm", {
        group_norm_kernel<T><<<(unsigned)(B * G), GN_THREADS, 0, s>>>(
            (T *)y, (const T *)x, (const T *)w, (const T *)b, C, S, G, eps);
        K_LAUNCH_CHECK();
    });
    return 0;
}
