/*
 * conv2d.cu - 2-D convolution, NCHW: y[B, C_out, H_out, W_out] = conv(x[B, C_in, H, W],
 * w[C_out, C_in/groups, kh, kw]) + b[C_out].
 *
 * Depthwise (groups == C_in == C_out, the TTT locality conv): a direct kernel, one thread per
 * output. Everything else: im2col into scratch, then one strided-batched GEMM over the groups
 * per sample and column chunk (the chunk keeps the columns under K_CUDA_SCRATCH_TARGET); a 1x1
 * stride-1 unpadded conv reads x as the column matrix directly. The bias is added afterwards.
 *
 * GEMM layout, per group: row-major y_g[Og, P] = w_g[Og, CK] col[CK, P] (CK = C_in/groups*kh*kw),
 * i.e. column-major y_g^T (P x Og, ld H_out*W_out) = col^T (P x CK, ld P) w_g^T (CK x Og, ld CK).
 */
#include "kernels/cuda/k_cuda_common.cuh"
#include "kernels/cuda/k_cuda_internal.h"

template <typename T>
__global__ void depthwise_kernel(T *y, const T *x, const T *w, const T *b,
                                 k_conv2d_shape s)
{
    int64_t n = s.B * s.C_out * s.H_out * s.W_out;
    K_GRID_STRIDE(i, n) {
        int64_t ox = i % s.W_out, oy = (i / s.W_out) % s.H_out, bc = i / (s.W_out * s.H_out);
        int64_t c = bc % s.C_out;
        const T *xp = x + bc * s.H * s.W;
        const T *wp = w + c * s.kh * s.kw;
        float acc = b ? k_ld(b, c) : 0.0f;
        for (int64_t ky = 0; ky < s.kh; ky++) {
            int64_t iy = oy * s.stride_h - s.pad_h + ky;
            if (iy < 0 || iy >= s.H)
                continue;
            for (int64_t kx = 0; kx < s.kw; kx++) {
                int64_t ix = ox * s.stride_w - s.pad_w + kx;
                if (ix >= 0 && ix < s.W)
                    acc += k_ld(xp, iy * s.W + ix) * k_ld(wp, ky * s.kw + kx);
            }
        }
        k_st(y, i, acc);
    }
}

/* col[r, p] for r over C_in*kh*kw rows and p over the pc output positions from p0. */
template <typename T>
__global__ void im2col_kernel(T *col, const T *x, k_conv2d_shape s, int64_t p0, int64_t pc)
{
    int64_t kk = s.kh * s.kw, n = s.C_in * kk * pc;
    K_GRID_STRIDE(i, n) {
        int64_t r = i / pc, q = p0 + i % pc;
        int64_t ci = r / kk, ky = (r % kk) / s.kw, kx = r % s.kw;
        int64_t oy = q / s.W_out, ox = q % s.W_out;
        int64_t iy = oy * s.stride_h - s.pad_h + ky, ix = ox * s.stride_w - s.pad_w + kx;
        col[i] = (iy >= 0 && iy < s.H && ix >= 0 && ix < s.W) ? x[(ci * s.H + iy) * s.W + ix]
                                                              : T(0.0f);
    }
}

template <typename T>
static int conv_gemm(k_cuda_ctx *ctx, k_dtype dt, T *y, const T *x, const T *w,
                     const k_conv2d_shape *s)
{
    int64_t G = s->groups, Cg = s->C_in / G, Og = s->C_out / G, CK = Cg * s->kh * s->kw;
    int64_t HW = s->H * s->W, HWo = s->H_out * s->W_out;
    int direct = s->kh == 1 && s->kw == 1 && s->stride_h == 1 && s->stride_w == 1 &&
                 s->pad_h == 0 && s->pad_w == 0;
    int64_t pc = HWo;
    T *col = NULL;

    if (!direct) {
        int64_t per_col = s->C_in * s->kh * s->kw * (int64_t)sizeof(T);
        int64_t fit = (int64_t)K_CUDA_SCRATCH_TARGET / per_col;
        pc = fit < 1 ? 1 : fit < HWo ? fit : HWo;
        col = (T *)k_cuda_ctx_scratch(ctx, (size_t)(per_col * pc));
        if (!col)
            return -1;
    }
    for (int64_t bi = 0; bi < s->B; bi++) {
        const T *xb = x + bi * s->C_in * HW;
        T *yb = y + bi * s->C_out * HWo;
        for (int64_t p0 = 0; p0 < HWo; p0 += pc) {
            int64_t n = HWo - p0 < pc ? HWo - p0 : pc;
            const T *A;
            int64_t lda, sa;
            if (direct) {
                A = xb + p0;
                lda = HW;
                sa = Cg * HW;
            } else {
                im2col_kernel<T><<<k_blocks(s->C_in * s->kh * s->kw * n, K_THREADS), K_THREADS, 0,
                                   ctx->stream>>>(col, xb, *s, p0, n);
                K_LAUNCH_CHECK();
                A = col;
                lda = n;
                sa = CK * n;
            }
            if (k_gemm(ctx, 0, 0, n, Og, CK, 1.0f, A, dt, lda, sa, w, CK, Og * CK, 0.0f, yb + p0,
                       dt, HWo, Og * HWo, G))
                return -1;
        }
    }
    return 0;
}

extern "C" int k_cuda_conv2d(k_cuda_ctx *ctx, k_dtype dt, void *y, const void *x, const void *w,
                             const void *b, const k_conv2d_shape *s)
{
    int64_t n = s->B * s->C_out * s->H_out * s->W_out;
    if (n <= 0)
        return 0;
    if (s->groups <= 0 || s->C_in % s->groups || s->C_out % s->groups)
        K_FAIL_RETURN("k_cuda_conv2d", "groups must divide both channel counts");
    K_DISPATCH(dt, T, "k_cuda_conv2d", {
        if (s->groups == s->C_in && s->C_out == s->C_in) {
            depthwise_kernel<T><<<k_blocks(n, K_THREADS), K_THREADS, 0, ctx->stream>>>(
                (T *)y, (const T *)x, (const T *)w, (const T *)b, *s);
            K_LAUNCH_CHECK();
            return 0;
        }
        if (conv_gemm<T>(ctx, dt, (T *)y, (const T *)x, (const T *)w, s))
            return -1;
    });
    return b ? k_cuda_channel_bias(ctx->stream, dt, y, b, s->B, s->C_out, s->H_out * s->W_out) : 0;
}
