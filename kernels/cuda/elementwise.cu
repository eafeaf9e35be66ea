/*
 * elementwise.cu - memory-bound ops: add/mul with trailing broadcast, scale, AdaLN modulate and
 * gated residual add, conv channel bias, token concat/split, embedding gather, last-two-dims
 * transpose, nearest 2x upsample.
 *
 * Shapes: token tensors x[B, N, C] with per-sample vectors [B, C]; images x[B, C, H, W].
 * Ops whose broadcast period is a multiple of the vector width use 16-byte loads when every
 * pointer is 16-byte aligned; the rest are scalar grid-stride loops.
 */
#include "kernels/cuda/k_cuda_common.cuh"

/* ---- y = a (op) b[i % nb] ---- */

template <typename T, int OP>
__global__ void binary_kernel(T *y, const T *a, const T *b, int64_t n, int64_t nb, int vec)
{
    constexpr int V = k_vec<T>::N;
    int64_t nv = vec ? n / V : 0;
    K_GRID_STRIDE(i, nv) {
        float va[V], vb[V];
        k_ld16(a + i * V, va);
        k_ld16(b + (i * V) % nb, vb); /* nb % V == 0: the vector never wraps */
#pragma unroll
        for (int j = 0; j < V; j++)
            va[j] = OP == 0 ? va[j] + vb[j] : va[j] * vb[j];
        k_st16(y + i * V, va);
    }
    for (int64_t i = nv * V + (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float va = k_ld(a, i), vb = k_ld(b, i % nb);
        k_st(y, i, OP == 0 ? va + vb : va * vb);
    }
}

extern "C" int k_cuda_binary(cudaStream_t s, k_dtype dt, void *y, const void *a, const void *b,
                             int64_t n, int64_t nb, int op)
{
    if (n <= 0)
        return 0;
    if (nb <= 0 || n % nb)
        K_FAIL_RETURN("k_cuda_binary", "broadcast size must divide the element count");
    K_DISPATCH(dt, T, "k_cuda_binary", {
        int vec = k_aligned16(y) && k_aligned16(a) && k_aligned16(b) && nb % k_vec<T>::N == 0;
        unsigned nblk = k_blocks(vec ? n / k_vec<T>::N + 1 : n, K_THREADS);
        if (op == 0)
            binary_kernel<T, 0><<<nblk, K_THREADS, 0, s>>>((T *)y, (const T *)a, (const T *)b, n,
                                                          nb, vec);
        else
            binary_kernel<T, 1><<<nblk, K_THREADS, 0, s>>>((T *)y, (const T *)a, (const T *)b, n,
                                                          nb, vec);
        K_LAUNCH_CHECK();
    });
    return 0;
}

/* ---- y = x * s ---- */

struct scale_op {
    float s;
    __device__ float operator()(float x) const { return x * s; }
};

extern "C" int k_cuda_scale(cudaStream_t s, k_dtype dt, void *y, const void *x, float sc, int64_t n)
{
    K_DISPATCH(dt, T, "k_cuda_scale", return k_map_launch<T>(s, y, x, n, scale_op{sc}));
    return 0;
}

/* ---- per-(sample, channel) ops on [B, N, C]: modulate (MODE 0) and gated add (MODE 1) ---- */

/* MODE 0: y = x * (1 + p[b, c]) + q[b, c].  MODE 1: y = y + p[b, c] * x. */
template <typename T, int MODE>
__global__ void bnc_kernel(T *y, const T *x, const T *p, const T *q, int64_t n, int64_t NC,
                           int64_t C, int vec)
{
    constexpr int V = k_vec<T>::N;
    int64_t nv = vec ? n / V : 0;
    K_GRID_STRIDE(i, nv) {
        int64_t e = i * V, pc = (e / NC) * C + e % C; /* C % V == 0: one row segment */
        float vx[V], vp[V], vq[V];
        k_ld16(x + e, vx);
        k_ld16(p + pc, vp);
        if (MODE == 0)
            k_ld16(q + pc, vq);
        else
            k_ld16(y + e, vq);
#pragma unroll
        for (int j = 0; j < V; j++)
            vx[j] = MODE == 0 ? vx[j] * (1.0f + vp[j]) + vq[j] : vq[j] + vp[j] * vx[j];
        k_st16(y + e, vx);
    }
    for (int64_t e = nv * V + (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t pc = (e / NC) * C + e % C;
        float vx = k_ld(x, e), vp = k_ld(p, pc);
        k_st(y, e, MODE == 0 ? vx * (1.0f + vp) + k_ld(q, pc) : k_ld(y, e) + vp * vx);
    }
}

template <int MODE>
static int bnc_launch(cudaStream_t s, k_dtype dt, void *y, const void *x, const void *p,
                      const void *q, int64_t B, int64_t N, int64_t C, const char *what)
{
    int64_t n = B * N * C;
    if (n <= 0)
        return 0;
    K_DISPATCH(dt, T, what, {
        int vec = k_aligned16(y) && k_aligned16(x) && k_aligned16(p) &&
                  (MODE != 0 || k_aligned16(q)) && C % k_vec<T>::N == 0;
        bnc_kernel<T, MODE><<<k_blocks(vec ? n / k_vec<T>::N + 1 : n, K_THREADS), K_THREADS, 0, s>>>(
            (T *)y, (const T *)x, (const T *)p, (const T *)q, n, N * C, C, vec);
        K_LAUNCH_CHECK();
    });
    return 0;
}

extern "C" int k_cuda_modulate(cudaStream_t s, k_dtype dt, void *y, const void *x,
                               const void *scale, const void *shift, int64_t B, int64_t N,
                               int64_t C)
{
    return bnc_launch<0>(s, dt, y, x, scale, shift, B, N, C, "k_cuda_modulate");
}

extern "C" int k_cuda_gated_add(cudaStream_t s, k_dtype dt, void *y, const void *x,
                                const void *gate, int64_t B, int64_t N, int64_t C)
{
    return bnc_launch<1>(s, dt, y, x, gate, NULL, B, N, C, "k_cuda_gated_add");
}

/* ---- y[B, O, S] += b[O] ---- */

template <typename T>
__global__ void channel_bias_kernel(T *y, const T *b, int64_t n, int64_t O, int64_t S)
{
    K_GRID_STRIDE(i, n)
    k_st(y, i, k_ld(y, i) + k_ld(b, (i / S) % O));
}

extern "C" int k_cuda_channel_bias(cudaStream_t s, k_dtype dt, void *y, const void *b, int64_t B,
                                   int64_t O, int64_t S)
{
    int64_t n = B * O * S;
    if (n <= 0)
        return 0;
    K_DISPATCH(dt, T, "k_cuda_channel_bias", {
        channel_bias_kernel<T><<<k_blocks(n, K_THREADS), K_THREADS, 0, s>>>((T *)y, (const T *)b,
                                                                            n, O, S);
        K_LAUNCH_CHECK();
    });
    return 0;
}

/* ---- token concat / split: strided 2-D copies, no kernel ---- */

extern "C" int k_cuda_concat_tokens(cudaStream_t s, size_t esize, void *y, const void *a,
                                    const void *b, int64_t B, int64_t Na, int64_t Nb, int64_t C)
{
    size_t ra = (size_t)(Na * C) * esize, rb = (size_t)(Nb * C) * esize, ry = ra + rb;
    if (B <= 0)
        return 0;
    if (ra)
        CUDA_TRY(cudaMemcpy2DAsync(y, ry, a, ra, ra, (size_t)B, cudaMemcpyDeviceToDevice, s));
    if (rb)
        CUDA_TRY(cudaMemcpy2DAsync((char *)y + ra, ry, b, rb, rb, (size_t)B,
                                   cudaMemcpyDeviceToDevice, s));
    return 0;
}

extern "C" int k_cuda_split_tokens(cudaStream_t s, size_t esize, void *a, void *b, const void *y,
                                   int64_t B, int64_t Na, int64_t Nb, int64_t C)
{
    size_t ra = (size_t)(Na * C) * esize, rb = (size_t)(Nb * C) * esize, ry = ra + rb;
    if (B <= 0)
        return 0;
    if (ra)
        CUDA_TRY(cudaMemcpy2DAsync(a, ra, y, ry, ra, (size_t)B, cudaMemcpyDeviceToDevice, s));
    if (rb)
        CUDA_TRY(cudaMemcpy2DAsync(b, rb, (const char *)y + ra, ry, rb, (size_t)B,
                                   cudaMemcpyDeviceToDevice, s));
    return 0;
}

/* ---- embedding gather; ids outside [0, V) give zero rows ---- */

template <typename T>
__global__ void embedding_kernel(T *y, const T *table, const int32_t *ids, int64_t n, int64_t V,
                                 int64_t C)
{
    K_GRID_STRIDE(i, n * C) {
        int64_t r = i / C, c = i % C;
        int32_t id = ids[r];
        y[i] = (id >= 0 && id < V) ? table[(int64_t)id * C + c] : T(0.0f);
    }
}

extern "C" int k_cuda_embedding(cudaStream_t s, k_dtype dt, void *y, const void *table,
                                const int32_t *ids, int64_t n, int64_t V, int64_t C)
{
    if (n <= 0 || C <= 0)
        return 0;
    K_DISPATCH(dt, T, "k_cuda_embedding", {
        embedding_kernel<T><<<k_blocks(n * C, K_THREADS), K_THREADS, 0, s>>>(
            (T *)y, (const T *)table, ids, n, V, C);
        K_LAUNCH_CHECK();
    });
    return 0;
}

/* ---- y[B, Y, X] = x[B, X, Y]: 32x32 tiles through shared memory (padded: no bank conflicts) ---- */

#define TR_TILE 32
#define TR_ROWS 8

template <typename T>
__global__ void transpose_kernel(T *y, const T *x, int64_t X, int64_t Y)
{
    __shared__ T tile[TR_TILE][TR_TILE + 1];
    int64_t b = blockIdx.z;
    int64_t y0 = (int64_t)blockIdx.x * TR_TILE, x0 = (int64_t)blockIdx.y * TR_TILE;
    const T *xb = x + b * X * Y;
    T *yb = y + b * X * Y;

    /* Read rows x0.. of x (each of length Y), coalesced along Y. */
    for (int r = threadIdx.y; r < TR_TILE; r += TR_ROWS) {
        int64_t xi = x0 + r, yi = y0 + threadIdx.x;
        if (xi < X && yi < Y)
            tile[r][threadIdx.x] = xb[xi * Y + yi];
    }
    __syncthreads();
    /* Write rows y0.. of y (each of length X), coalesced along X. */
    for (int r = threadIdx.y; r < TR_TILE; r += TR_ROWS) {
        int64_t yi = y0 + r, xi = x0 + threadIdx.x;
        if (xi < X && yi < Y)
            yb[yi * X + xi] = tile[threadIdx.x][r];
    }
}

extern "C" int k_cuda_transpose(cudaStream_t s, k_dtype dt, void *y, const void *x, int64_t B,
                                int64_t X, int64_t Y)
{
    if (B <= 0 || X <= 0 || Y <= 0)
        return 0;
    if (B > 65535 || (Y + TR_TILE - 1) / TR_TILE > INT32_MAX || (X + TR_TILE - 1) / TR_TILE > 65535)
        K_FAIL_RETURN("k_cuda_transpose", "shape too large for the grid");
    dim3 grid((unsigned)((Y + TR_TILE - 1) / TR_TILE), (unsigned)((X + TR_TILE - 1) / TR_TILE),
              (unsigned)B);
    dim3 block(TR_TILE, TR_ROWS);
    K_DISPATCH(dt, T, "k_cuda_transpose", {
        transpose_kernel<T><<<grid, block, 0, s>>>((T *)y, (const T *)x, X, Y);
        K_LAUNCH_CHECK();
    });
    return 0;
}

/* ---- y[BC, 2H, 2W] = x[BC, H, W] repeated 2x2 ---- */

template <typename T>
__global__ void upsample2x_kernel(T *y, const T *x, int64_t BC, int64_t H, int64_t W)
{
    int64_t W2 = 2 * W, n = BC * 4 * H * W;
    K_GRID_STRIDE(i, n) {
        int64_t ox = i % W2, oy = (i / W2) % (2 * H), p = i / (W2 * 2 * H);
        y[i] = x[(p * H + oy / 2) * W + ox / 2];
    }
}

extern "C" int k_cuda_upsample_nearest2x(cudaStream_t s, k_dtype dt, void *y, const void *x,
                                         int64_t BC, int64_t H, int64_t W)
{
    int64_t n = BC * 4 * H * W;
    if (n <= 0)
        return 0;
    K_DISPATCH(dt, T, "k_cuda_upsample_nearest2x", {
        upsample2x_kernel<T><<<k_blocks(n, K_THREADS), K_THREADS, 0, s>>>((T *)y, (const T *)x,
                                                                          BC, H, W);
        K_LAUNCH_CHECK();
    });
    return 0;
}
