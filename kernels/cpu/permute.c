/*
 * permute.c - k_cpu_permute: y = x with its dims reordered, y.shape[i] = x.shape[perm[i]]
 * (unpatchify [B, h, w, p, q, C] -> perm {0, 5, 1, 3, 2, 4} -> [B, C, h, p, w, q]).
 *
 * The permutation is simplified first: size-1 dims are dropped, and neighbouring output dims
 * whose elements are also contiguous in x are merged into one (an identity permutation thus
 * becomes one dim, a copy). y is then written in order, one row (its last simplified dim) at a
 * time: when that row is contiguous in x too, it is one memcpy; otherwise a strided gather.
 * Rows are cut into fixed chunks that threads share; a chunk decodes the x offset of its first
 * row once and then steps an odometer. The element size only decides how bits are moved
 * (2 or 4 bytes typed; other sizes by memcpy), so F32, BF16, F16 and I32 all work.
 */
#include "kernels/cpu/k_cpu.h"
#include "kernels/cpu/k_cpu_internal.h"

#include <string.h>

/* A pure copy pass: threads pay once there are ~256 KiB to move. */
#define PERM_PAR_MIN ((int64_t)1 << 16)
/* Elements per chunk: long enough that the per-chunk index decoding is noise. */
#define PERM_CHUNK ((int64_t)1 << 14)
#define PERM_MAX_DIMS 6

/* One output dim after simplification: its size and the stride (in elements) it walks in x. */
typedef struct perm_dim {
    int64_t size, xstride;
} perm_dim;

/* Returns the number of simplified dims (0 when y is a single element). */
static int simplify(perm_dim *out, int ndim, const int64_t *shape, const int *perm)
{
    int64_t xs[PERM_MAX_DIMS];
    int n = 0;
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        xs[i] = s;
        s *= shape[i];
    }
    for (int k = 0; k < ndim; k++) {
        const perm_dim d = {shape[perm[k]], xs[perm[k]]};
        if (d.size == 1)
            continue;
        /* The previous dim steps over exactly one run of this one: they form one dim. */
        if (n > 0 && out[n - 1].xstride == d.size * d.xstride) {
            out[n - 1].size *= d.size;
            out[n - 1].xstride = d.xstride;
            continue;
        }
        out[n++] = d;
    }
    return n;
}

/* Copies `len` elements x[off + i * stride] to y[i]. */
static void gather_row(char *y, const char *x, int64_t off, int64_t stride, int64_t len, int es)
{
    if (es == 4) {
        uint32_t *yy = (uint32_t *)y;
        const uint32_t *xx = (const uint32_t *)x + off;
        for (int64_t i = 0; i < len; i++)
            yy[i] = xx[i * stride];
    } else if (es == 2) {
        uint16_t *yy = (uint16_t *)y;
        const uint16_t *xx = (const uint16_t *)x + off;
        for (int64_t i = 0; i < len; i++)
            yy[i] = xx[i * stride];
    } else {
        for (int64_t i = 0; i < len; i++)
            memcpy(y + i * es, x + (off + i * stride) * es, (size_t)es);
    }
}

void k_cpu_permute(void *y, const void *x, int ndim, const int64_t *shape, const int *perm,
                   int elem_size)
{
    perm_dim dims[PERM_MAX_DIMS];
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++)
        numel *= shape[i];
    if (numel <= 0)
        return;
    const int n = simplify(dims, ndim, shape, perm);
    const int es = elem_size;
    if (n <= 1 && (n == 0 || dims[0].xstride == 1)) { /* the order is unchanged: a copy */
        memcpy(y, x, (size_t)(numel * es));
        return;
    }

    /* Rows: the last dim; the outer dims 0..n-2 are walked by the odometer. */
    const int64_t len = dims[n - 1].size, rstride = dims[n - 1].xstride;
    const int64_t rows = numel / len;
    const int no = n - 1;
    /* At least one row per chunk, and whole rows. */
    const int64_t rpc = len >= PERM_CHUNK ? 1 : PERM_CHUNK / len;
    const int64_t nchunks = (rows + rpc - 1) / rpc;
    char *yb = y;
    const char *xb = x;

    K_OMP_PARALLEL_FOR(numel > PERM_PAR_MIN && nchunks > 1)
    for (int64_t ch = 0; ch < nchunks; ch++) {
        const int64_t r0 = ch * rpc, r1 = r0 + rpc < rows ? r0 + rpc : rows;
        int64_t idx[PERM_MAX_DIMS] = {0}, off = 0, rem = r0;
        for (int j = no - 1; j >= 0; j--) {
            idx[j] = rem % dims[j].size;
            rem /= dims[j].size;
            off += idx[j] * dims[j].xstride;
        }
        for (int64_t r = r0; r < r1; r++) {
            char *yr = yb + r * len * es;
            if (rstride == 1)
                memcpy(yr, xb + off * es, (size_t)(len * es));
            else
                gather_row(yr, xb, off, rstride, len, es);
            /* Next row: bump the innermost outer dim, carrying into the ones before it. */
            for (int j = no - 1; j >= 0; j--) {
                off += dims[j].xstride;
                if (++idx[j] < dims[j].size)
                    break;
                off -= dims[j].size * dims[j].xstride;
                idx[j] = 0;
            }
        }
    }
}
