/*
 * permute.cu - k_cuda_permute: y = x with its dims reordered, y.shape[i] = x.shape[perm[i]]
 * (unpatchify [B, h, w, p, q, C] -> perm {0, 5, 1, 3, 2, 4} -> [B, C, h, p, w, q]).
 *
 * The host simplifies the permutation as kernels/cpu/permute.c does (size-1 dims dropped,
 * output dims that are also contiguous in x merged), so an identity becomes one cudaMemcpy and
 * a permutation that keeps the last dim reads whole runs. The kernel then gives one thread per
 * output element in order: writes are coalesced, reads gather through the x strides (L2 absorbs
 * the reuse at the sizes the engine permutes, a few MiB). Elements are moved as raw bits of
 * esize bytes (1, 2, 4 or 8), so every dtype works; 32-bit index arithmetic when it fits.
 */
#include "kernels/cuda/k_cuda_common.cuh"

#define PERM_MAX_DIMS 6

struct perm_desc {
    int n;                         /* simplified dims */
    int64_t size[PERM_MAX_DIMS];   /* output order */
    int64_t xstride[PERM_MAX_DIMS]; /* elements of x stepped per unit of that dim */
};

/* Returns the number of simplified dims (0 when there is a single element). */
static int simplify(perm_desc *p, int ndim, const int64_t *shape, const int *perm)
{
    int64_t xs[PERM_MAX_DIMS], s = 1;
    int n = 0;
    for (int i = ndim - 1; i >= 0; i--) {
        xs[i] = s;
        s *= shape[i];
    }
    for (int k = 0; k < ndim; k++) {
        int64_t size = shape[perm[k]], stride = xs[perm[k]];
        if (size == 1)
            continue;
        if (n > 0 && p->xstride[n - 1] == size * stride) { /* contiguous with the previous dim */
            p->size[n - 1] *= size;
            p->xstride[n - 1] = stride;
            continue;
        }
        p->size[n] = size;
        p->xstride[n] = stride;
        n++;
    }
    p->n = n;
    return n;
}

template <typename E, typename I>
__global__ void permute_kernel(E *__restrict__ y, const E *__restrict__ x, I numel, perm_desc p)
{
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < numel;
         i += (I)gridDim.x * blockDim.x) {
        I rem = i, off = 0;
#pragma unroll
        for (int j = PERM_MAX_DIMS - 1; j >= 0; j--) {
            if (j >= p.n)
                continue;
            I sz = (I)p.size[j];
            off += (rem % sz) * (I)p.xstride[j];
            rem /= sz;
        }
        y[i] = x[off];
    }
}

template <typename E>
static int permute_launch(cudaStream_t s, void *y, const void *x, int64_t numel, const perm_desc &p)
{
    unsigned nblk = k_blocks(numel, K_THREADS);
    if (numel <= (int64_t)UINT32_MAX - (int64_t)nblk * K_THREADS)
        permute_kernel<E, uint32_t><<<nblk, K_THREADS, 0, s>>>((E *)y, (const E *)x,
                                                               (uint32_t)numel, p);
    else
        permute_kernel<E, int64_t><<<nblk, K_THREADS, 0, s>>>((E *)y, (const E *)x, numel, p);
    K_LAUNCH_CHECK();
    return 0;
}

extern "C" int k_cuda_permute(cudaStream_t s, size_t esize, void *y, const void *x, int ndim,
                              const int64_t *shape, const int *perm)
{
    perm_desc p;
    int64_t numel = 1;

    if (ndim < 0 || ndim > PERM_MAX_DIMS)
        K_FAIL_RETURN("k_cuda_permute", "rank must be 0 to 6");
    for (int i = 0; i < ndim; i++)
        numel *= shape[i];
    if (numel <= 0)
        return 0;
    int n = simplify(&p, ndim, shape, perm);
    if (n == 0 || (n == 1 && p.xstride[0] == 1)) { /* the order is unchanged: a copy */
        CUDA_TRY(cudaMemcpyAsync(y, x, (size_t)numel * esize, cudaMemcpyDeviceToDevice, s));
        return 0;
    }
    switch (esize) {
    case 1: return permute_launch<uint8_t>(s, y, x, numel, p);
    case 2: return permute_launch<uint16_t>(s, y, x, numel, p);
    case 4: return permute_launch<uint32_t>(s, y, x, numel, p);
    case 8: return permute_launch<uint64_t>(s, y, x, numel, p);
    default: K_FAIL_RETURN("k_cuda_permute", "element size must be 1, 2, 4 or 8 bytes");
    }
}
