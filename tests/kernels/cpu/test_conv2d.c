/*
 * test_conv2d.c - k_cpu_conv2d against a naive double-precision convolution written here,
 * on random data: dense (3x3, strided, 1x1, patch embedding, non-square, banded im2col),
 * grouped and depthwise, with and without bias.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <cblas.h>

#include "kernels/cpu/k_cpu.h"
#include "tests/common/test_util.h"

#define CONV_TOL 1e-4

/* The six-tuple a case is written with; the rest of the shape is derived by conv_shape. */
typedef struct conv_case {
    int64_t B, C_in, H, W, C_out, kh, kw, stride, pad, groups;
    int64_t stride_w, pad_w; /* 0: same as stride / pad */
    int with_bias;
} conv_case;

static k_conv2d_shape conv_shape(const conv_case *c)
{
    k_conv2d_shape s = {
        .B = c->B, .C_in = c->C_in, .H = c->H, .W = c->W, .C_out = c->C_out, .kh = c->kh,
        .kw = c->kw, .stride_h = c->stride, .stride_w = c->stride_w ? c->stride_w : c->stride,
        .pad_h = c->pad, .pad_w = c->stride_w ? c->pad_w : c->pad, .groups = c->groups,
    };
    s.H_out = (s.H + 2 * s.pad_h - s.kh) / s.stride_h + 1;
    s.W_out = (s.W + 2 * s.pad_w - s.kw) / s.stride_w + 1;
    return s;
}

/* The textbook definition, one output at a time, with explicit bounds tests. */
static void conv_ref(double *y, const float *x, const float *w, const float *b,
                     const k_conv2d_shape *s)
{
    const int64_t cgi = s->C_in / s->groups, cgo = s->C_out / s->groups;
    for (int64_t n = 0; n < s->B; n++)
        for (int64_t co = 0; co < s->C_out; co++) {
            const int64_t g = co / cgo;
            for (int64_t oy = 0; oy < s->H_out; oy++)
                for (int64_t ox = 0; ox < s->W_out; ox++) {
                    double acc = b ? (double)b[co] : 0.0;
                    for (int64_t ci = 0; ci < cgi; ci++)
                        for (int64_t ky = 0; ky < s->kh; ky++)
                            for (int64_t kx = 0; kx < s->kw; kx++) {
                                int64_t iy = oy * s->stride_h + ky - s->pad_h;
                                int64_t ix = ox * s->stride_w + kx - s->pad_w;
                                if (iy < 0 || iy >= s->H || ix < 0 || ix >= s->W)
                                    continue;
                                double xv = x[((n * s->C_in + g * cgi + ci) * s->H + iy) * s->W + ix];
                                double wv = w[((co * cgi + ci) * s->kh + ky) * s->kw + kx];
                                acc += xv * wv;
                            }
                    y[((n * s->C_out + co) * s->H_out + oy) * s->W_out + ox] = acc;
                }
        }
}

static void run_case(conv_case c, uint64_t seed)
{
    k_conv2d_shape s = conv_shape(&c);
    cr_assert(s.H_out > 0 && s.W_out > 0, "bad case");
    const int64_t nx = s.B * s.C_in * s.H * s.W;
    const int64_t nw = s.C_out * (s.C_in / s.groups) * s.kh * s.kw;
    const int64_t ny = s.B * s.C_out * s.H_out * s.W_out;

    float *x = tu_alloc(nx), *w = tu_alloc(nw), *b = tu_alloc(s.C_out), *y = tu_alloc(ny);
    double *ref = tu_alloc_d(ny);
    uint64_t st = seed;
    tu_rand_fill(x, nx, &st, -1.0f, 1.0f);
    tu_rand_fill(w, nw, &st, -0.5f, 0.5f);
    tu_rand_fill(b, s.C_out, &st, -1.0f, 1.0f);
    const float *bp = c.with_bias ? b : NULL;

    tu_poison(y, ny);
    cr_assert_eq(k_cpu_conv2d(y, x, w, bp, &s), 0);
    cr_assert(!tu_has_nan(y, ny), "output not fully written");
    conv_ref(ref, x, w, bp, &s);
    double err = tu_rel_err(y, ref, ny);
    cr_assert(err <= CONV_TOL, "rel err %g > %g", err, CONV_TOL);

    free(x);
    free(w);
    free(b);
    free(y);
    free(ref);
}

Test(conv2d, k3_pad1_stride1)
{
    run_case((conv_case){.B = 1, .C_in = 4, .H = 8, .W = 8, .C_out = 6, .kh = 3, .kw = 3,
                         .stride = 1, .pad = 1, .groups = 1, .with_bias = 1}, 1);
}

Test(conv2d, k3_pad1_stride1_no_bias)
{
    run_case((conv_case){.B = 1, .C_in = 5, .H = 7, .W = 9, .C_out = 3, .kh = 3, .kw = 3,
                         .stride = 1, .pad = 1, .groups = 1}, 2);
}

Test(conv2d, k3_stride2_pad0)
{
    run_case((conv_case){.B = 1, .C_in = 3, .H = 16, .W = 16, .C_out = 4, .kh = 3, .kw = 3,
                         .stride = 2, .pad = 0, .groups = 1, .with_bias = 1}, 3);
}

Test(conv2d, k3_stride2_pad1)
{
    run_case((conv_case){.B = 1, .C_in = 3, .H = 15, .W = 17, .C_out = 5, .kh = 3, .kw = 3,
                         .stride = 2, .pad = 1, .groups = 1, .with_bias = 1}, 4);
}

Test(conv2d, k1_pointwise)
{
    run_case((conv_case){.B = 2, .C_in = 7, .H = 5, .W = 6, .C_out = 9, .kh = 1, .kw = 1,
                         .stride = 1, .pad = 0, .groups = 1, .with_bias = 1}, 5);
}

Test(conv2d, k1_pointwise_grouped_no_bias)
{
    run_case((conv_case){.B = 2, .C_in = 6, .H = 4, .W = 5, .C_out = 4, .kh = 1, .kw = 1,
                         .stride = 1, .pad = 0, .groups = 2}, 6);
}

Test(conv2d, k1_stride2)
{
    run_case((conv_case){.B = 1, .C_in = 4, .H = 9, .W = 8, .C_out = 3, .kh = 1, .kw = 1,
                         .stride = 2, .pad = 0, .groups = 1, .with_bias = 1}, 7);
}

Test(conv2d, patch_embed_k2_stride2)
{
    run_case((conv_case){.B = 2, .C_in = 16, .H = 8, .W = 12, .C_out = 24, .kh = 2, .kw = 2,
                         .stride = 2, .pad = 0, .groups = 1, .with_bias = 1}, 8);
}

Test(conv2d, k3_non_square)
{
    run_case((conv_case){.B = 1, .C_in = 4, .H = 5, .W = 13, .C_out = 4, .kh = 3, .kw = 3,
                         .stride = 1, .pad = 1, .groups = 1, .with_bias = 1}, 9);
}

Test(conv2d, non_square_kernel_and_stride)
{
    run_case((conv_case){.B = 1, .C_in = 3, .H = 11, .W = 10, .C_out = 4, .kh = 3, .kw = 2,
                         .stride = 2, .pad = 1, .stride_w = 1, .pad_w = 0, .groups = 1,
                         .with_bias = 1}, 10);
}

Test(conv2d, groups2)
{
    run_case((conv_case){.B = 2, .C_in = 6, .H = 7, .W = 5, .C_out = 8, .kh = 3, .kw = 3,
                         .stride = 1, .pad = 1, .groups = 2, .with_bias = 1}, 11);
}

Test(conv2d, depthwise_bias)
{
    run_case((conv_case){.B = 2, .C_in = 12, .H = 9, .W = 11, .C_out = 12, .kh = 3, .kw = 3,
                         .stride = 1, .pad = 1, .groups = 12, .with_bias = 1}, 12);
}

Test(conv2d, depthwise_no_bias)
{
    run_case((conv_case){.B = 1, .C_in = 5, .H = 6, .W = 4, .C_out = 5, .kh = 3, .kw = 3,
                         .stride = 1, .pad = 1, .groups = 5}, 13);
}

Test(conv2d, depthwise_stride2_large_pad)
{
    run_case((conv_case){.B = 1, .C_in = 3, .H = 8, .W = 7, .C_out = 3, .kh = 5, .kw = 5,
                         .stride = 2, .pad = 3, .groups = 3, .with_bias = 1}, 14);
}

Test(conv2d, depthwise_channel_multiplier)
{
    /* groups == C_in but C_out = 2 C_in is not depthwise in the strict sense: grouped GEMM path. */
    run_case((conv_case){.B = 1, .C_in = 3, .H = 6, .W = 6, .C_out = 6, .kh = 3, .kw = 3,
                         .stride = 1, .pad = 1, .groups = 3, .with_bias = 1}, 15);
}

Test(conv2d, batch2_odd_sizes)
{
    run_case((conv_case){.B = 2, .C_in = 3, .H = 13, .W = 7, .C_out = 5, .kh = 3, .kw = 3,
                         .stride = 1, .pad = 1, .groups = 1, .with_bias = 1}, 16);
}

Test(conv2d, kernel_larger_than_padded_width_edge)
{
    /* A 1-wide image with pad 1: every tap column except the centre is outside. */
    run_case((conv_case){.B = 1, .C_in = 2, .H = 4, .W = 1, .C_out = 3, .kh = 3, .kw = 3,
                         .stride = 1, .pad = 1, .groups = 1, .with_bias = 1}, 17);
}

Test(conv2d, banded_im2col)
{
    /* 64 ch x 3x3 x 128 x 130 unfolds to ~9.6 M floats: more than one band of output rows. */
    run_case((conv_case){.B = 1, .C_in = 64, .H = 128, .W = 130, .C_out = 3, .kh = 3, .kw = 3,
                         .stride = 1, .pad = 1, .groups = 1, .with_bias = 1}, 18);
}

/*
 * With a single-threaded (or an OpenMP) OpenBLAS the GEMMs are cut into column slices spread
 * over OpenMP threads; forcing OpenBLAS to one thread takes that path whichever OpenBLAS is
 * linked. The dense, pointwise, grouped and banded cases must pass on it too.
 */
Test(conv2d, column_slices_path)
{
    openblas_set_num_threads(1);
    run_case((conv_case){.B = 2, .C_in = 8, .H = 37, .W = 29, .C_out = 12, .kh = 3, .kw = 3,
                         .stride = 1, .pad = 1, .groups = 1, .with_bias = 1}, 31);
    run_case((conv_case){.B = 2, .C_in = 16, .H = 23, .W = 25, .C_out = 8, .kh = 1, .kw = 1,
                         .stride = 1, .pad = 0, .groups = 2, .with_bias = 1}, 32);
    run_case((conv_case){.B = 1, .C_in = 6, .H = 31, .W = 33, .C_out = 4, .kh = 3, .kw = 3,
                         .stride = 2, .pad = 1, .groups = 1}, 33);
    run_case((conv_case){.B = 1, .C_in = 64, .H = 128, .W = 130, .C_out = 3, .kh = 3, .kw = 3,
                         .stride = 1, .pad = 1, .groups = 1, .with_bias = 1}, 34);
}

#ifdef _OPENMP
/* The same depthwise and dense convolutions on 1 and 2 threads give identical bits. */
static void thread_count_invariant(int blas_threads)
{
    if (blas_threads > 0)
        openblas_set_num_threads(blas_threads);
    conv_case cases[2] = {
        {.B = 2, .C_in = 32, .H = 33, .W = 31, .C_out = 32, .kh = 3, .kw = 3, .stride = 1,
         .pad = 1, .groups = 32, .with_bias = 1},
        {.B = 1, .C_in = 16, .H = 33, .W = 31, .C_out = 8, .kh = 3, .kw = 3, .stride = 1,
         .pad = 1, .groups = 1, .with_bias = 1},
    };
    for (int i = 0; i < 2; i++) {
        k_conv2d_shape s = conv_shape(&cases[i]);
        const int64_t nx = s.B * s.C_in * s.H * s.W, nw = s.C_out * (s.C_in / s.groups) * 9;
        const int64_t ny = s.B * s.C_out * s.H_out * s.W_out;
        float *x = tu_alloc(nx), *w = tu_alloc(nw), *b = tu_alloc(s.C_out);
        float *y1 = tu_alloc(ny), *y2 = tu_alloc(ny);
        uint64_t st = 99 + (uint64_t)i;
        tu_rand_fill(x, nx, &st, -1.0f, 1.0f);
        tu_rand_fill(w, nw, &st, -1.0f, 1.0f);
        tu_rand_fill(b, s.C_out, &st, -1.0f, 1.0f);
        omp_set_num_threads(1);
        cr_assert_eq(k_cpu_conv2d(y1, x, w, b, &s), 0);
        omp_set_num_threads(2);
        cr_assert_eq(k_cpu_conv2d(y2, x, w, b, &s), 0);
        cr_assert(memcmp(y1, y2, (size_t)ny * sizeof *y1) == 0, "case %d differs", i);
        free(x);
        free(w);
        free(b);
        free(y1);
        free(y2);
    }
}

Test(conv2d, thread_count_invariant)
{
    thread_count_invariant(0);
}

Test(conv2d, thread_count_invariant_column_slices)
{
    thread_count_invariant(1);
}
#endif
