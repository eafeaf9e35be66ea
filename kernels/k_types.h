/*
 * k_types.h - the parameter structs that the CPU kernels (kernels/cpu/k_cpu.h) and the CUDA
 * kernels (kernels/cuda/k_cuda.h) both take, declared once. Plain C, no functions; included by
 * both backends' headers and by nothing above the kernels that does not include one of those.
 */
#ifndef TTTD_KERNELS_K_TYPES_H
#define TTTD_KERNELS_K_TYPES_H

#include <stdint.h>

/* A 2-D convolution: x [B, C_in, H, W], weight [C_out, C_in / groups, kh, kw],
 * y [B, C_out, H_out, W_out]. */
typedef struct k_conv2d_shape {
    int64_t B, C_in, H, W;     /* input */
    int64_t C_out, kh, kw;     /* weight [C_out, C_in / groups, kh, kw] */
    int64_t stride_h, stride_w;
    int64_t pad_h, pad_w;
    int64_t groups;
    int64_t H_out, W_out;      /* (H + 2 pad_h - kh) / stride_h + 1, likewise W */
} k_conv2d_shape;

#endif
