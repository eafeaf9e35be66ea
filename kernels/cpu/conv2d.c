/*
 * conv2d.c - 2-D convolution on NCHW float arrays (k_cpu_conv2d).
 *
 * Dense and grouped convolutions unfold the input (im2col) and multiply by the
 * weight with OpenBLAS; a 1x1 stride-1 unpadded convolution is already a GEMM and
 * skips the unfolding. Depthwise convolutions (the 3x3 locality conv of the TTT
 * layers) have no reduction over channels, so a GEMM would be mostly padding: they
 * run as a direct loop, parallel over (batch, channel).
 *
 * Shapes: x[B, C_in, H, W], w[C_out, C_in / groups, kh, kw], b[C_out] or NULL,
 * y[B, C_out, H_out, W_out].
 */
#include "kernels/cpu/k_cpu.h"
#include "kernels/cpu/k_cpu_internal.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/*
 * Upper bound on the im2col buffer, in floats (32 MiB). A VAE decoder conv at
 * 1024x1024 with 128 input channels would otherwise unfold to ~4.8 GB, so the
 * output is produced in bands of rows whose unfolded input fits in this bound.
 */
#define CONV_COL_MAX_FLOATS ((int64_t)8 << 20)

/* Columns per OpenMP-parallel GEMM slice: wide enough that repacking the weight per slice
 * is noise next to the multiply. */
#define CONV_GEMM_COLS 256

/* Below this many multiply-adds a parallel region costs more than it saves. */
#define CONV_PAR_MIN_WORK ((int64_t)1 << 16)


/*
 * y[M, n] (leading dimension ldy) = w[M, K] a[K, n] (leading dimension lda). When OpenBLAS
 * runs single-threaded (nested), the columns are cut into fixed CONV_GEMM_COLS-wide slices
 * spread over OpenMP threads; otherwise one call, threaded by OpenBLAS. Each output is
 * still reduced over the whole K by one call, and the cut is fixed, so the result does not
 * depend on the thread count.
 */
static void gemm_cols(float *y, int64_t ldy, const float *w, const float *a, int64_t lda,
                      int64_t M, int64_t K, int64_t n, int nested)
{
    const int64_t nslice = nested ? (n + CONV_GEMM_COLS - 1) / CONV_GEMM_COLS : 1;
    const int64_t width = nested ? CONV_GEMM_COLS : n;

#pragma omp parallel for schedule(dynamic, 1) if (nslice > 1 && M * K * n > CONV_PAR_MIN_WORK)
    for (int64_t sl = 0; sl < nslice; sl++) {
        const int64_t c0 = sl * width;
        const int64_t nc = n - c0 < width ? n - c0 : width;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)nc, (int)K, 1.0f, w,
                    (int)K, a + c0, (int)lda, 0.0f, y + c0, (int)ldy);
    }
}

/* Smallest ox >= 0 with ox * stride - pad + k >= 0 (the first output column that reads inside). */
static int64_t first_inside(int64_t pad, int64_t k, int64_t stride)
{
    int64_t need = pad - k; /* ox * stride >= need */
    return need <= 0 ? 0 : (need + stride - 1) / stride;
}

/* One past the last ox with ox * stride - pad + k <= n - 1, clamped to [0, n_out]. */
static int64_t last_inside(int64_t n, int64_t pad, int64_t k, int64_t stride, int64_t n_out)
{
    int64_t lim = n - 1 + pad - k; /* ox * stride <= lim */
    if (lim < 0)
        return 0;
    int64_t end = lim / stride + 1;
    return end < n_out ? end : n_out;
}

/*
 * Unfolds output rows [r0, r1) of one group: col[(c, ky, kx), (oy - r0) * W_out + ox] =
 * x[c, oy * sh - ph + ky, ox * sw - pw + kx], zero outside the image. x points at the
 * group's first channel of one image; cg is the group's channel count; par allows OpenMP.
 */
static void im2col_band(float *col, const float *x, int64_t cg, const k_conv2d_shape *s,
                        int64_t r0, int64_t r1, int par)
{
    const int64_t H = s->H, W = s->W, kh = s->kh, kw = s->kw, Wo = s->W_out;
    const int64_t ncol = (r1 - r0) * Wo;
    const int64_t rows = cg * kh * kw;
    (void)par; /* read only by the OpenMP pragma */

#pragma omp parallel for schedule(static) if (par && rows * ncol > CONV_PAR_MIN_WORK)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t c = r / (kh * kw), ky = (r / kw) % kh, kx = r % kw;
        const float *xc = x + c * H * W;
        float *dst = col + r * ncol;
        const int64_t ox0 = first_inside(s->pad_w, kx, s->stride_w);
        const int64_t ox1 = last_inside(W, s->pad_w, kx, s->stride_w, Wo);
        for (int64_t oy = r0; oy < r1; oy++) {
            float *d = dst + (oy - r0) * Wo;
            const int64_t iy = oy * s->stride_h - s->pad_h + ky;
            if (iy < 0 || iy >= H || ox0 >= ox1) {
                memset(d, 0, (size_t)Wo * sizeof *d);
                continue;
            }
            const float *src = xc + iy * W - s->pad_w + kx;
            for (int64_t ox = 0; ox < ox0; ox++)
                d[ox] = 0.0f;
            if (s->stride_w == 1) {
                memcpy(d + ox0, src + ox0, (size_t)(ox1 - ox0) * sizeof *d);
            } else {
                for (int64_t ox = ox0; ox < ox1; ox++)
                    d[ox] = src[ox * s->stride_w];
            }
            for (int64_t ox = ox1; ox < Wo; ox++)
                d[ox] = 0.0f;
        }
    }
}

/* y[c, :] += b[c] for one image's C_out x S outputs; par allows OpenMP. */
static void add_bias(float *y, const float *b, int64_t C, int64_t S, int par)
{
    (void)par; /* read only by the OpenMP pragma */
#pragma omp parallel for schedule(static) if (par && C * S > CONV_PAR_MIN_WORK)
    for (int64_t c = 0; c < C; c++) {
        float *yc = y + c * S;
        for (int64_t i = 0; i < S; i++)
            yc[i] += b[c];
    }
}

/*
 * Depthwise: every output channel reads one input channel. For each kernel tap the
 * output columns that read inside the image form one contiguous range, so the inner
 * loop carries no bounds test. Taps are accumulated in a fixed (ky, kx) order, which
 * keeps each output independent of how channels are split among threads.
 */
static void conv2d_depthwise(float *y, const float *x, const float *w, const float *b,
                             const k_conv2d_shape *s)
{
    const int64_t H = s->H, W = s->W, kh = s->kh, kw = s->kw;
    const int64_t Ho = s->H_out, Wo = s->W_out, sw = s->stride_w;
    const int64_t BC = s->B * s->C_out;

#pragma omp parallel for schedule(static) if (BC * Ho * Wo * kh * kw > CONV_PAR_MIN_WORK)
    for (int64_t bc = 0; bc < BC; bc++) {
        const int64_t c = bc % s->C_out;
        const float *xc = x + bc * H * W;
        const float *wc = w + c * kh * kw;
        const float bias = b ? b[c] : 0.0f;
        float *yc = y + bc * Ho * Wo;
        for (int64_t oy = 0; oy < Ho; oy++) {
            float *d = yc + oy * Wo;
            for (int64_t ox = 0; ox < Wo; ox++)
                d[ox] = bias;
            for (int64_t ky = 0; ky < kh; ky++) {
                const int64_t iy = oy * s->stride_h - s->pad_h + ky;
                if (iy < 0 || iy >= H)
                    continue;
                for (int64_t kx = 0; kx < kw; kx++) {
                    const float wv = wc[ky * kw + kx];
                    const float *src = xc + iy * W - s->pad_w + kx;
                    const int64_t ox0 = first_inside(s->pad_w, kx, sw);
                    const int64_t ox1 = last_inside(W, s->pad_w, kx, sw, Wo);
                    if (sw == 1) {
                        /* d and src never overlap; simd says so, as -O2 will not vectorise. */
#pragma omp simd
                        for (int64_t ox = ox0; ox < ox1; ox++)
                            d[ox] += wv * src[ox];
                    } else {
                        for (int64_t ox = ox0; ox < ox1; ox++)
                            d[ox] += wv * src[ox * sw];
                    }
                }
            }
        }
    }
}

int k_cpu_conv2d(float *y, const float *x, const float *w, const float *b, const k_conv2d_shape *s)
{
    const int64_t G = s->groups;
    const int64_t cg_in = s->C_in / G, cg_out = s->C_out / G;
    const int64_t HW = s->H * s->W, So = s->H_out * s->W_out;
    const int64_t K = cg_in * s->kh * s->kw; /* reduction length of one group's GEMM */

    if (G == s->C_in && G == s->C_out) {
        conv2d_depthwise(y, x, w, b, s);
        return 0;
    }

    const int nested = k_blas_nests_in_openmp();
    const int pointwise = s->kh == 1 && s->kw == 1 && s->stride_h == 1 && s->stride_w == 1 &&
                          s->pad_h == 0 && s->pad_w == 0;

    /* Output rows per band: as many as keep the unfolded input under the bound, at least one. */
    int64_t band = s->H_out;
    float *col = NULL;
    if (!pointwise) {
        const int64_t per_row = K * s->W_out;
        if (per_row * band > CONV_COL_MAX_FLOATS)
            band = per_row > 0 ? CONV_COL_MAX_FLOATS / per_row : band;
        if (band < 1)
            band = 1;
        col = malloc((size_t)(per_row * band) * sizeof *col + 1);
        if (!col)
            return -1;
    }

    for (int64_t bi = 0; bi < s->B; bi++) {
        const float *xb = x + bi * s->C_in * HW;
        float *yb = y + bi * s->C_out * So;
        for (int64_t g = 0; g < G; g++) {
            const float *xg = xb + g * cg_in * HW;
            const float *wg = w + g * cg_out * K;
            float *yg = yb + g * cg_out * So;
            if (pointwise) {
                /* y_g[cg_out, HW] = w_g[cg_out, cg_in] x_g[cg_in, HW]. */
                gemm_cols(yg, So, wg, xg, HW, cg_out, cg_in, HW, nested);
                continue;
            }
            for (int64_t r0 = 0; r0 < s->H_out; r0 += band) {
                const int64_t r1 = r0 + band < s->H_out ? r0 + band : s->H_out;
                const int64_t n = (r1 - r0) * s->W_out;
                im2col_band(col, xg, cg_in, s, r0, r1, nested);
                /* The band is a column range of y_g[cg_out, So], hence ldc = So. */
                gemm_cols(yg + r0 * s->W_out, So, wg, col, n, cg_out, K, n, nested);
            }
        }
        if (b)
            add_bias(yb, b, s->C_out, So, nested);
    }
    free(col);
    return 0;
}
