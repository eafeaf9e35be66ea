/*
 * ttt_fused.cu - k_cuda_ttt_fused: the TTT inner model (engine/backend/backend.h, eng_op_ttt; the
 * CPU reference is kernels/cpu/ttt.c) for BF16 storage at d = 32 or 64 as three kernels on
 * bf16 tensor cores (mma.sync m16n8k16, fp32 accumulate), with no per-sample host loop.
 * k_cuda_ttt_kernel (ttt.cu) sends a shape here; every other shape takes ttt.cu's cuBLAS path.
 *
 * Shapes: q, k, v, o [B, N, C], C = h*d, head j the channel slice [j*d, (j+1)*d); w1, w2
 * [h, d, d] shared by the batch. Per (sample b, head j), with s = d^-1/2:
 *   Z = K W1    S = SiLU(Z)    E = (S W2 - V) * s / N
 *   G2 = S^T E  G1 = K^T P,  P = (E W2^T) * sig(Z) * (1 + Z (1 - sig(Z)))
 *   W1' = W1 - G1    W2' = W2 - G2    O = SiLU(Q W1') W2'
 *
 * 1. ttt_grad_kernel, grid (B*h, S): CTA (bh, split) walks a contiguous range of 64-token tiles
 *    of its (sample, head), K and V tiles double-buffered in shared memory by cp.async (16-byte
 *    copies, zero-filled past N), W1 and W2 resident. Each of the 4 warps takes 16 tokens of a
 *    tile: Z = K W1 in fp32 registers, S = SiLU(Z) rounded to bf16 stays in registers as the A
 *    operand of S W2 (the m16n8 accumulator layout of two n-tiles is the m16k16 A layout), then
 *    E, then P = (E W2^T) * SiLU'(Z) with Z still in registers. S, E, P go to shared memory as
 *    bf16; after a barrier each warp accumulates its own rows of G2 += S^T E and G1 += K^T P
 *    over the tile's 64 tokens (ldmatrix.trans gives the transposed operands). At the end the
 *    CTA's partial G1, G2 (fp32) go to scratch [B*h, S, 2, d, d]: no atomics, so the result
 *    does not depend on scheduling.
 * 2. ttt_update_kernel: W1' = W1 - sum_s G1[s], W2' = W2 - sum_s G2[s] per (b, head), summed in
 *    a fixed order in fp32 and rounded to bf16 into scratch [B*h, 2, d, d].
 * 3. ttt_output_kernel, grid (B*h, S'): the same tile walk over Q; per warp Z = Q W1',
 *    SiLU(Z) in registers as the A operand of the product with W2', the output rounded to bf16,
 *    staged in the warp's own rows of the Q tile and written with 16-byte stores.
 * S and S' are the splits that fill the GPU once (occupancy x SMs / (B*h), at most the tiles).
 *
 * Precision (bf16 result within nMSE 1e-4 of the fp32 reference): the MMAs take bf16 operands,
 * so S, E, P, SiLU(Q W1') and W1', W2' are rounded to bf16 once each (relative rms error about
 * 2e-3, nMSE about 4e-6 per rounding). G1, G2 are ~25% of W at the test scales and enter W'
 * only through W - G, so the rounding of S, E, P costs well under one bf16 rounding of W'; the
 * output sees about five roundings (W1', SiLU, W2', the store, the sigmoid's tanh.approx at
 * ~5e-4 relative): ~2-3e-5 expected. Every sum is fp32.
 *
 * Shared memory rows are d + 8 bf16 (144 bytes at d = 64): the eight row addresses of an
 * ldmatrix phase fall in distinct banks.
 */
#include "kernels/cuda/k_cuda_common.cuh"
#include "kernels/cuda/k_cuda_internal.h"

#define TTT_TOK 64 /* tokens per tile */
#define TTT_WARPS 4
#define TTT_THREADS (TTT_WARPS * 32)

/* ---- PTX wrappers ---- */

__device__ __forceinline__ uint32_t ttt_smem_addr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16 bytes global -> shared; src_bytes 0 writes zeros (the address is then not read). */
__device__ __forceinline__ void ttt_cp16(void *dst, const void *src, int src_bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(ttt_smem_addr(dst)),
                 "l"(src), "r"(src_bytes)
                 : "memory");
}

__device__ __forceinline__ void ttt_cp_commit(void)
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

/* Waits until at most n groups of this thread are still in flight. */
template <int n> __device__ __forceinline__ void ttt_cp_wait(void)
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(n) : "memory");
}

__device__ __forceinline__ void ttt_ldm_x4(uint32_t r[4], const bf16 *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(ttt_smem_addr(p)));
}

__device__ __forceinline__ void ttt_ldm_x4_t(uint32_t r[4], const bf16 *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(ttt_smem_addr(p)));
}

/* c[16x8] += a[16x16] b[16x8], bf16 operands, fp32 accumulators. */
__device__ __forceinline__ void ttt_mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Two floats as a bf16 pair; lo is the element with the lower index. */
__device__ __forceinline__ uint32_t ttt_pack(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

__device__ __forceinline__ float2 ttt_unpack(uint32_t v)
{
    return __bfloat1622float2(*reinterpret_cast<__nv_bfloat162 *>(&v));
}

/* sig(z) = (1 + tanh(z / 2)) / 2: one MUFU op, relative error ~5e-4 (below bf16's 4e-3). */
__device__ __forceinline__ float ttt_sig(float z)
{
    float t;
    asm("tanh.approx.f32 %0, %1;\n" : "=f"(t) : "f"(0.5f * z));
    return fmaf(0.5f, t, 0.5f);
}

/* ---- tiles ---- */

/*
 * rows x D bf16 from global (row stride ld elements) into shared memory (row stride D + 8);
 * rows at or past `valid` are zero-filled. All threads of the CTA take part.
 */
template <int D, int ROWS>
__device__ __forceinline__ void ttt_load_tile(bf16 *dst, const bf16 *src, int64_t ld, int valid)
{
    constexpr int LD = D + 8, CPR = D / 8; /* 16-byte chunks per row */
#pragma unroll
    for (int c = threadIdx.x; c < ROWS * CPR; c += TTT_THREADS) {
        const int r = c / CPR, x = (c % CPR) * 8;
        const int ok = r < valid;
        ttt_cp16(dst + r * LD + x, src + (ok ? (int64_t)r * ld : 0) + x, ok ? 16 : 0);
    }
}

/*
 * Fragment addresses for ldmatrix.x4 (lane = this thread's lane), over shared memory rows of
 * LD elements:
 *   A (m16 x k16) stored [m][k]: ttt_a_rowmajor;   A stored [k][m] (.trans): ttt_a_colmajor;
 *   B for two n8 tiles stored [k][n] (.trans): ttt_b_kn;   stored [n][k]: ttt_b_nk.
 * With B, registers 0-1 are the first n-tile's b0, b1 and registers 2-3 the second's.
 */
template <int LD> __device__ __forceinline__ const bf16 *ttt_a_rowmajor(const bf16 *s, int m0, int k0, int lane)
{
    return s + (m0 + (lane & 15)) * LD + k0 + (lane >> 4) * 8;
}
template <int LD> __device__ __forceinline__ const bf16 *ttt_a_colmajor(const bf16 *s, int m0, int k0, int lane)
{
    return s + (k0 + (lane & 7) + (lane >> 4) * 8) * LD + m0 + ((lane >> 3) & 1) * 8;
}
template <int LD> __device__ __forceinline__ const bf16 *ttt_b_kn(const bf16 *s, int k0, int n0, int lane)
{
    return s + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + n0 + (lane >> 4) * 8;
}
template <int LD> __device__ __forceinline__ const bf16 *ttt_b_nk(const bf16 *s, int k0, int n0, int lane)
{
    return s + (n0 + (lane & 7) + (lane >> 4) * 8) * LD + k0 + ((lane >> 3) & 1) * 8;
}

/*
 * acc[16 x D] (fp32 m16n8 fragments, one per n-tile) = A[16 x D] Bm[D x D], A given as
 * m16k16 fragments in registers, Bm stored [k][n] in shared memory.
 */
template <int D>
__device__ __forceinline__ void ttt_mm_regs(float acc[D / 8][4], const uint32_t a[D / 16][4],
                                            const bf16 *Bm, int lane)
{
#pragma unroll
    for (int n = 0; n < D / 8; n++)
        acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
        for (int np = 0; np < D / 16; np++) {
            uint32_t b[4];
            ttt_ldm_x4_t(b, ttt_b_kn<D + 8>(Bm, kk * 16, np * 16, lane));
            ttt_mma(acc[2 * np], a[kk], b[0], b[1]);
            ttt_mma(acc[2 * np + 1], a[kk], b[2], b[3]);
        }
}

/* A rows [m0, m0 + 16) of a [tokens][D] tile as m16k16 fragments. */
template <int D>
__device__ __forceinline__ void ttt_load_a(uint32_t a[D / 16][4], const bf16 *tile, int m0, int lane)
{
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
        ttt_ldm_x4(a[kk], ttt_a_rowmajor<D + 8>(tile, m0, kk * 16, lane));
}

/* The m16n8 accumulators of n-tiles 2kk, 2kk+1, through f, as the m16k16 A fragment kk. */
template <int D, typename F>
__device__ __forceinline__ void ttt_acc_to_a(uint32_t a[D / 16][4], const float acc[D / 8][4], F f)
{
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        a[kk][0] = ttt_pack(f(acc[2 * kk][0]), f(acc[2 * kk][1]));
        a[kk][1] = ttt_pack(f(acc[2 * kk][2]), f(acc[2 * kk][3]));
        a[kk][2] = ttt_pack(f(acc[2 * kk + 1][0]), f(acc[2 * kk + 1][1]));
        a[kk][3] = ttt_pack(f(acc[2 * kk + 1][2]), f(acc[2 * kk + 1][3]));
    }
}

/* Stores A fragments (rows m0.., all D columns) into a [tokens][D + 8] shared tile. */
template <int D>
__device__ __forceinline__ void ttt_store_a(bf16 *tile, const uint32_t a[D / 16][4], int m0, int lane)
{
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        uint32_t *r0 = reinterpret_cast<uint32_t *>(tile + (m0 + g) * (D + 8) + kk * 16 + 2 * t);
        uint32_t *r8 = reinterpret_cast<uint32_t *>(tile + (m0 + g + 8) * (D + 8) + kk * 16 + 2 * t);
        r0[0] = a[kk][0];
        r8[0] = a[kk][1];
        r0[4] = a[kk][2]; /* 8 columns on */
        r8[4] = a[kk][3];
    }
}

/* The token range [t0, t1) (in tiles) of split `split` of S over T tiles. */
__device__ __forceinline__ void ttt_split_range(int T, int S, int split, int *t0, int *t1)
{
    *t0 = (int)((int64_t)split * T / S);
    *t1 = (int)((int64_t)(split + 1) * T / S);
}

template <int D> struct ttt_smem {
    static constexpr int LD = D + 8;
    static constexpr int W = D * LD;          /* one d x d weight */
    static constexpr int TILE = TTT_TOK * LD; /* one token tile */
    static constexpr size_t GRAD = (size_t)(2 * W + 7 * TILE) * sizeof(bf16);
    static constexpr size_t OUT = (size_t)(2 * W + 2 * TILE) * sizeof(bf16);
};

/* ---- kernel 1: partial gradients ---- */

template <int D>
__global__ void __launch_bounds__(TTT_THREADS, 2)
ttt_grad_kernel(float *part, const bf16 *k, const bf16 *v, const bf16 *w1, const bf16 *w2,
                int N, int h, float es)
{
    constexpr int LD = D + 8, NT = D / 8, KS = D / 16;
    /* The D/16 x D/8 m16n8 tiles of a gradient, shared among the warps (8 at D = 64). */
    constexpr int TPW = (D / 16) * (D / 8) / TTT_WARPS;
    static_assert(TPW >= 2 && TPW % 2 == 0 && TPW <= D / 8, "gradient tiles per warp");
    extern __shared__ __align__(16) unsigned char ttt_smem_raw[];
    bf16 *W1s = reinterpret_cast<bf16 *>(ttt_smem_raw), *W2s = W1s + ttt_smem<D>::W;
    bf16 *Ks = W2s + ttt_smem<D>::W, *Vs = Ks + 2 * ttt_smem<D>::TILE;
    bf16 *Ss = Vs + 2 * ttt_smem<D>::TILE, *Es = Ss + ttt_smem<D>::TILE, *Ps = Es + ttt_smem<D>::TILE;

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t4 = lane & 3;
    const int bh = blockIdx.x, split = blockIdx.y, S = gridDim.y;
    const int j = bh % h;
    const int64_t C = (int64_t)h * D;
    const bf16 *kb = k + (int64_t)(bh / h) * N * C + (int64_t)j * D;
    const bf16 *vb = v + (int64_t)(bh / h) * N * C + (int64_t)j * D;
    const int T = (N + TTT_TOK - 1) / TTT_TOK;
    int t0, t1;
    ttt_split_range(T, S, split, &t0, &t1);

    ttt_load_tile<D, D>(W1s, w1 + (int64_t)j * D * D, D, D);
    ttt_load_tile<D, D>(W2s, w2 + (int64_t)j * D * D, D, D);
    if (t0 < t1) {
        ttt_load_tile<D, TTT_TOK>(Ks, kb + (int64_t)t0 * TTT_TOK * C, C, N - t0 * TTT_TOK);
        ttt_load_tile<D, TTT_TOK>(Vs, vb + (int64_t)t0 * TTT_TOK * C, C, N - t0 * TTT_TOK);
    }
    ttt_cp_commit();

    /* This warp's gradient tiles: rows [gm, gm + 16), n-tiles [gn, gn + TPW). */
    const int gm = (warp * TPW) / NT * 16, gn = (warp * TPW) % NT;
    float g1[TPW][4], g2[TPW][4];
#pragma unroll
    for (int i = 0; i < TPW; i++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            g1[i][e] = g2[i][e] = 0.0f;

    const int m0 = warp * 16; /* this warp's tokens within a tile */
    for (int t = t0; t < t1; t++) {
        const int buf = (t - t0) & 1;
        if (t + 1 < t1) {
            const int64_t off = (int64_t)(t + 1) * TTT_TOK * C;
            ttt_load_tile<D, TTT_TOK>(Ks + (buf ^ 1) * ttt_smem<D>::TILE, kb + off, C, N - (t + 1) * TTT_TOK);
            ttt_load_tile<D, TTT_TOK>(Vs + (buf ^ 1) * ttt_smem<D>::TILE, vb + off, C, N - (t + 1) * TTT_TOK);
        }
        ttt_cp_commit();
        ttt_cp_wait<1>();
        __syncthreads();
        const bf16 *Kt = Ks + buf * ttt_smem<D>::TILE, *Vt = Vs + buf * ttt_smem<D>::TILE;

        /* Z = K W1 (fp32), S = SiLU(Z) as A fragments, Y = S W2. */
        uint32_t a[KS][4];
        float z[NT][4], y[NT][4];
        ttt_load_a<D>(a, Kt, m0, lane);
        ttt_mm_regs<D>(z, a, W1s, lane);
        ttt_acc_to_a<D>(a, z, [](float x) { return x * ttt_sig(x); });
        ttt_store_a<D>(Ss, a, m0, lane);
        ttt_mm_regs<D>(y, a, W2s, lane);

        /* E = (Y - V) s / N; zero on the rows past N (their K rows are zero, so S is too). */
        const int r_lo = t * TTT_TOK + m0 + g;
        const float e_lo = r_lo < N ? es : 0.0f, e_hi = r_lo + 8 < N ? es : 0.0f;
#pragma unroll
        for (int n = 0; n < NT; n++) {
            const int col = n * 8 + 2 * t4;
            const float2 v0 = ttt_unpack(*reinterpret_cast<const uint32_t *>(Vt + (m0 + g) * LD + col));
            const float2 v8 = ttt_unpack(*reinterpret_cast<const uint32_t *>(Vt + (m0 + g + 8) * LD + col));
            y[n][0] = (y[n][0] - v0.x) * e_lo;
            y[n][1] = (y[n][1] - v0.y) * e_lo;
            y[n][2] = (y[n][2] - v8.x) * e_hi;
            y[n][3] = (y[n][3] - v8.y) * e_hi;
        }
        ttt_acc_to_a<D>(a, y, [](float x) { return x; });
        ttt_store_a<D>(Es, a, m0, lane);

        /* P = (E W2^T) * SiLU'(Z): W2 stored [i][c] is W2^T's [n][k]. */
        float p[NT][4];
#pragma unroll
        for (int n = 0; n < NT; n++)
            p[n][0] = p[n][1] = p[n][2] = p[n][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KS; kk++)
#pragma unroll
            for (int np = 0; np < NT / 2; np++) {
                uint32_t b[4];
                ttt_ldm_x4(b, ttt_b_nk<LD>(W2s, kk * 16, np * 16, lane));
                ttt_mma(p[2 * np], a[kk], b[0], b[1]);
                ttt_mma(p[2 * np + 1], a[kk], b[2], b[3]);
            }
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float zz = z[n][e], sg = ttt_sig(zz);
                p[n][e] *= sg * fmaf(zz, 1.0f - sg, 1.0f);
            }
        ttt_acc_to_a<D>(a, p, [](float x) { return x; });
        ttt_store_a<D>(Ps, a, m0, lane);
        __syncthreads();

        /* G2 += S^T E, G1 += K^T P over the tile's tokens (k = token). */
#pragma unroll
        for (int kk = 0; kk < TTT_TOK / 16; kk++) {
            uint32_t as[4], ak[4];
            ttt_ldm_x4_t(as, ttt_a_colmajor<LD>(Ss, gm, kk * 16, lane));
            ttt_ldm_x4_t(ak, ttt_a_colmajor<LD>(Kt, gm, kk * 16, lane));
#pragma unroll
            for (int np = 0; np < TPW / 2; np++) {
                uint32_t be[4], bp[4];
                ttt_ldm_x4_t(be, ttt_b_kn<LD>(Es, kk * 16, (gn + 2 * np) * 8, lane));
                ttt_ldm_x4_t(bp, ttt_b_kn<LD>(Ps, kk * 16, (gn + 2 * np) * 8, lane));
                ttt_mma(g2[2 * np], as, be[0], be[1]);
                ttt_mma(g2[2 * np + 1], as, be[2], be[3]);
                ttt_mma(g1[2 * np], ak, bp[0], bp[1]);
                ttt_mma(g1[2 * np + 1], ak, bp[2], bp[3]);
            }
        }
        __syncthreads(); /* S, E, P and this K, V buffer are rewritten next */
    }

    float *G1 = part + ((int64_t)bh * S + split) * 2 * D * D, *G2 = G1 + D * D;
#pragma unroll
    for (int i = 0; i < TPW; i++) {
        const int col = (gn + i) * 8 + 2 * t4;
        *reinterpret_cast<float2 *>(G1 + (gm + g) * D + col) = make_float2(g1[i][0], g1[i][1]);
        *reinterpret_cast<float2 *>(G1 + (gm + g + 8) * D + col) = make_float2(g1[i][2], g1[i][3]);
        *reinterpret_cast<float2 *>(G2 + (gm + g) * D + col) = make_float2(g2[i][0], g2[i][1]);
        *reinterpret_cast<float2 *>(G2 + (gm + g + 8) * D + col) = make_float2(g2[i][2], g2[i][3]);
    }
}

/* ---- kernel 2: the updated weights ---- */

/* wn[bh, 2, d, d] = (w1[j], w2[j]) - sum over the S splits of part[bh, s, 2, d, d]. */
__global__ void ttt_update_kernel(bf16 *wn, const float *part, const bf16 *w1, const bf16 *w2,
                                  int h, int S, int dd, int64_t total)
{
    K_GRID_STRIDE(i, total) {
        const int64_t bh = i / (2 * dd);
        const int r = (int)(i % (2 * dd)), e = r % dd;
        const int64_t j = bh % h;
        const float *p = part + bh * S * 2 * dd + r;
        float sum = 0.0f;
        for (int s = 0; s < S; s++)
            sum += p[(int64_t)s * 2 * dd];
        const float w = __bfloat162float(r < dd ? w1[j * dd + e] : w2[j * dd + e]);
        wn[i] = __float2bfloat16_rn(w - sum);
    }
}

/* ---- kernel 3: the output ---- */

template <int D>
__global__ void __launch_bounds__(TTT_THREADS)
ttt_output_kernel(bf16 *o, const bf16 *q, const bf16 *wn, int N, int h)
{
    constexpr int LD = D + 8, NT = D / 8, KS = D / 16, CPR = D / 8;
    extern __shared__ __align__(16) unsigned char ttt_smem_raw[];
    bf16 *W1s = reinterpret_cast<bf16 *>(ttt_smem_raw), *W2s = W1s + ttt_smem<D>::W;
    bf16 *Qs = W2s + ttt_smem<D>::W;

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int bh = blockIdx.x, split = blockIdx.y, S = gridDim.y;
    const int64_t C = (int64_t)h * D;
    const int64_t head = (int64_t)(bh / h) * N * C + (int64_t)(bh % h) * D;
    const bf16 *qb = q + head;
    bf16 *ob = o + head;
    const int T = (N + TTT_TOK - 1) / TTT_TOK;
    int t0, t1;
    ttt_split_range(T, S, split, &t0, &t1);

    ttt_load_tile<D, D>(W1s, wn + (int64_t)bh * 2 * D * D, D, D);
    ttt_load_tile<D, D>(W2s, wn + (int64_t)bh * 2 * D * D + D * D, D, D);
    if (t0 < t1)
        ttt_load_tile<D, TTT_TOK>(Qs, qb + (int64_t)t0 * TTT_TOK * C, C, N - t0 * TTT_TOK);
    ttt_cp_commit();

    const int m0 = warp * 16;
    for (int t = t0; t < t1; t++) {
        const int buf = (t - t0) & 1;
        if (t + 1 < t1)
            ttt_load_tile<D, TTT_TOK>(Qs + (buf ^ 1) * ttt_smem<D>::TILE,
                                      qb + (int64_t)(t + 1) * TTT_TOK * C, C, N - (t + 1) * TTT_TOK);
        ttt_cp_commit();
        ttt_cp_wait<1>();
        __syncthreads();
        bf16 *Qt = Qs + buf * ttt_smem<D>::TILE;

        uint32_t a[KS][4];
        float acc[NT][4];
        ttt_load_a<D>(a, Qt, m0, lane);
        ttt_mm_regs<D>(acc, a, W1s, lane);
        ttt_acc_to_a<D>(a, acc, [](float x) { return x * ttt_sig(x); });
        ttt_mm_regs<D>(acc, a, W2s, lane);
        ttt_acc_to_a<D>(a, acc, [](float x) { return x; });
        /* The warp's own 16 rows of the Q tile, read only by it, now hold its output. */
        ttt_store_a<D>(Qt, a, m0, lane);
        __syncwarp();
#pragma unroll
        for (int c = lane; c < 16 * CPR; c += 32) {
            const int r = c / CPR, x = (c % CPR) * 8, tok = t * TTT_TOK + m0 + r;
            if (tok < N)
                *reinterpret_cast<uint4 *>(ob + (int64_t)tok * C + x) =
                    *reinterpret_cast<const uint4 *>(Qt + (m0 + r) * LD + x);
        }
        __syncthreads(); /* this buffer is refilled next */
    }
}

/* ---- the launcher ---- */

/* Splits of the token tiles per (sample, head) so that the grid fills the GPU about once. */
template <typename K>
static int ttt_splits(const k_cuda_ctx *ctx, K kernel, size_t smem, int64_t BH, int T, int *splits)
{
    int per_sm = 0;
    CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, TTT_THREADS, smem));
    int64_t s = (int64_t)(per_sm > 0 ? per_sm : 1) * ctx->sm_count / BH;
    if (s > T)
        s = T;
    if (s > 65535)
        s = 65535;
    *splits = s < 1 ? 1 : (int)s;
    return 0;
}

template <int D>
static int ttt_fused_run(k_cuda_ctx *ctx, bf16 *o, const bf16 *q, const bf16 *k, const bf16 *v,
                         const bf16 *w1, const bf16 *w2, int64_t B, int64_t N, int64_t h)
{
    const int64_t BH = B * h, dd = (int64_t)D * D;
    const int T = (int)((N + TTT_TOK - 1) / TTT_TOK);
    const size_t gsm = ttt_smem<D>::GRAD, osm = ttt_smem<D>::OUT;
    cudaStream_t st = ctx->stream;
    int sg, so;

    CUDA_TRY(cudaFuncSetAttribute(ttt_grad_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)gsm));
    CUDA_TRY(cudaFuncSetAttribute(ttt_output_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)osm));
    if (ttt_splits(ctx, ttt_grad_kernel<D>, gsm, BH, T, &sg) ||
        ttt_splits(ctx, ttt_output_kernel<D>, osm, BH, T, &so))
        return -1;

    /* Scratch: partial gradients fp32 [BH, sg, 2, d, d], then W1', W2' bf16 [BH, 2, d, d]. */
    const size_t part_bytes = (size_t)BH * sg * 2 * dd * sizeof(float);
    char *base = (char *)k_cuda_ctx_scratch(ctx, part_bytes + (size_t)BH * 2 * dd * sizeof(bf16));
    if (!base)
        return -1;
    float *part = (float *)base;
    bf16 *wn = (bf16 *)(base + part_bytes);
    /* s / N in double, rounded once (as the CPU kernel does). */
    const float es = (float)(1.0 / (sqrt((double)D) * (double)N));

    ttt_grad_kernel<D><<<dim3((unsigned)BH, (unsigned)sg), TTT_THREADS, gsm, st>>>(
        part, k, v, w1, w2, (int)N, (int)h, es);
    K_LAUNCH_CHECK();
    const int64_t total = BH * 2 * dd;
    ttt_update_kernel<<<k_blocks(total, K_THREADS), K_THREADS, 0, st>>>(wn, part, w1, w2, (int)h,
                                                                         sg, (int)dd, total);
    K_LAUNCH_CHECK();
    ttt_output_kernel<D><<<dim3((unsigned)BH, (unsigned)so), TTT_THREADS, osm, st>>>(
        o, q, wn, (int)N, (int)h);
    K_LAUNCH_CHECK();
    return 0;
}

int k_cuda_ttt_fused(k_cuda_ctx *ctx, void *o, const void *q, const void *k, const void *v,
                     const void *w1, const void *w2, int64_t B, int64_t N, int64_t h, int64_t d)
{
    if (d == 64)
        return ttt_fused_run<64>(ctx, (bf16 *)o, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v,
                                 (const bf16 *)w1, (const bf16 *)w2, B, N, h);
    if (d == 32)
        return ttt_fused_run<32>(ctx, (bf16 *)o, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v,
                                 (const bf16 *)w1, (const bf16 *)w2, B, N, h);
    k_cuda_set_error(__FILE__, __LINE__, "k_cuda_ttt_fused", "head dim not supported (32 or 64)");
    return -1;
}
