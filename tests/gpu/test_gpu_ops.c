/*
 * test_gpu_ops.c - the CUDA backend against the CPU backend, op by op (`make test-gpu`).
 *
 * A table of op cases (every op of engine/backend/backend.h, several shapes each: tiny, odd and
 * SD3.5-sized). Each case runs in F32 and in BF16 on the CUDA backend, through the same
 * eng_op_* front end as the engine, against an F32 reference from the CPU backend. Inputs are
 * fresh seeded random values per case and mode, never zeros; in BF16 mode they are rounded to
 * bf16 on the host first, so both backends see the same values. Checks per run:
 *   - normalised MSE  sum((gpu - ref)^2) / sum(ref^2)  under the mode's bound;
 *   - no NaN/Inf in the output (outputs are poisoned with NaN before the op, so an unwritten
 *     element fails here too);
 *   - the guard bytes after every CUDA buffer are unchanged, and so are the inputs;
 *   - attention forced onto cuDNN (F_CUDNN) in BF16 without bias really ran there (the ctx's
 *     count of cuDNN calls grew; misaligned buffers may fall back), and with a bias did not.
 * convert is checked bit for bit against the CPU conversion instead. Then the op profiler
 * (engine/backend/profile.h) on this backend: exact counts per kind, positive times within the
 * wall time, more ops than its first pool of events, and nothing counted while it is off.
 *
 * Usage: gpu_ops [--bench] [--filter SUBSTR] [--device N] [--cpu-as-gpu]
 *   --bench       times the larger cases on the GPU (median of cudaEvent-timed runs after
 *                 warm-up; attention also through each forced path, ttt also through the
 *                 cuBLAS path) and skips the parity checks.
 *   --filter S    only the ops whose name contains S.
 *   --cpu-as-gpu  checks this harness without a GPU: a second CPU backend stands in for the
 *                 CUDA one (F32 only).
 * The last line is "N passed, N failed"; the exit status is non-zero on any failure.
 * Standalone on purpose (no test framework: the GPU machine has none).
 */
#include "engine/backend/backend.h"
#include "engine/backend/backend_cuda.h"
#include "engine/backend/profile.h"
#include "kernels/cpu/k_cpu.h"
#include "kernels/cuda/k_cuda.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Bounds on the normalised MSE. F32 is tight enough to catch a TF32 GEMM (~1e-7). */
#define NMSE_F32 1e-8
#define NMSE_BF16 1e-4

#define GUARD_BYTES 256
#define GUARD_BYTE 0xA5

/* ---- PRNG (splitmix64), uniform floats ---- */

static uint64_t rng_state;

static uint64_t rng_u64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float rng_uniform(float lo, float hi)
{
    return lo + (hi - lo) * (float)((double)(rng_u64() >> 11) * (1.0 / 9007199254740992.0));
}

/* ---- the case table ---- */

enum {
    OP_CONVERT, OP_LINEAR, OP_LAYER_NORM, OP_RMS_NORM, OP_GROUP_NORM, OP_ACT, OP_SOFTMAX,
    OP_BINARY, OP_SCALE, OP_MODULATE, OP_GATED_ADD, OP_CONCAT, OP_SPLIT, OP_CONV2D, OP_UPSAMPLE,
    OP_ATTENTION, OP_EMBEDDING, OP_TRANSPOSE, OP_PERMUTE, OP_TTT, OP_TTT_LOCAL, OP_LINEAR_GELU, OP_NORM_MOD, OP_COUNT
};

static const char *op_names[OP_COUNT] = {
    "convert", "linear", "layer_norm", "rms_norm", "group_norm", "act", "softmax", "binary",
    "scale", "modulate", "gated_add", "concat_tokens", "split_tokens", "conv2d",
    "upsample_nearest2x", "attention", "embedding", "transpose", "permute", "ttt", "ttt_local", "linear_gelu", "norm_modulate",
};

/* Flags. */
#define F_BIAS 1     /* linear/conv/layer_norm: with bias */
#define F_WEIGHT 2   /* norms: with weight */
#define F_CAUSAL 4   /* attention */
#define F_ABIAS 8    /* attention: additive bias */
#define F_MASKED 16  /* attention: bias with -inf entries and a fully masked row */
#define F_INPLACE 32 /* output aliases the first input */
#define F_MISALIGN 64 /* every CUDA buffer starts one element past a 256-byte boundary */
#define F_GEMM 128   /* attention, ttt: force the GEMM (cuBLAS) path */
#define F_CHUNK 256  /* ttt: at most 2 heads per chunk (k_cuda_tuning.ttt_max_heads) */
#define F_CUDNN 512  /* attention: force the cuDNN path (BF16 without bias must then run it) */
#define F_FUSED 1024 /* attention: force the fused online-softmax kernel (d = 32 or 64) */

/*
 * p[] by op:
 *   convert n, src dtype, dst dtype     linear M1, M2, K, O (x [M1, M2, K])
 *   layer/rms_norm M, C                 group_norm B, C, H, W, G
 *   act n1, n2, kind                    softmax M, N
 *   binary A0, A1, A2, nbdims, op       scale n
 *   modulate/gated_add B, N, C          concat/split B, Na, Nb, C
 *   conv2d B, Cin, H, W, Cout, kh, kw, stride, pad, groups
 *   upsample B, C, H, W                 attention B, Nq, Nk, h, d
 *   embedding V, C, n                   transpose B, X, Y
 *   permute ndim, shape[0..ndim-1], perm (one hex digit per entry, perm[0] first: 0x051324)
 *   ttt B, N, h, d                      ttt_local B, gh, gw, Nt, C (eps in f)
 */
typedef struct tcase {
    int op;
    int64_t p[10];
    int flags;
    float f; /* eps, scale factor, attention scale (0: 1/sqrt(d)) */
    int bench;
} tcase;

#define CASE(op, fl, f, bench, ...) {op, {__VA_ARGS__}, fl, f, bench}

static const tcase cases[] = {
    /* convert: n, from, to (bit-exact) */
    CASE(OP_CONVERT, 0, 0, 0, 1037, ENG_DTYPE_F32, ENG_DTYPE_BF16),
    CASE(OP_CONVERT, 0, 0, 0, 1037, ENG_DTYPE_BF16, ENG_DTYPE_F32),
    CASE(OP_CONVERT, 0, 0, 0, 1037, ENG_DTYPE_F32, ENG_DTYPE_F16),
    CASE(OP_CONVERT, 0, 0, 0, 1037, ENG_DTYPE_F16, ENG_DTYPE_F32),
    CASE(OP_CONVERT, 0, 0, 0, 1037, ENG_DTYPE_BF16, ENG_DTYPE_F16),
    CASE(OP_CONVERT, 0, 0, 0, 1037, ENG_DTYPE_F16, ENG_DTYPE_BF16),
    CASE(OP_CONVERT, 0, 0, 0, 77, ENG_DTYPE_F32, ENG_DTYPE_F32),
    CASE(OP_CONVERT, 0, 0, 1, 1 << 24, ENG_DTYPE_F32, ENG_DTYPE_BF16),

    /* linear: x [M1, M2, K] w [O, K] */
    CASE(OP_LINEAR, F_BIAS, 0, 0, 1, 1, 1, 1),
    CASE(OP_LINEAR, F_BIAS, 0, 0, 1, 7, 13, 5),
    CASE(OP_LINEAR, 0, 0, 0, 3, 11, 77, 65),
    CASE(OP_LINEAR, F_BIAS | F_MISALIGN, 0, 0, 2, 33, 64, 96),
    CASE(OP_LINEAR, F_BIAS, 0, 1, 1, 4096, 1536, 1536),   /* SD3.5-M image qkv slice */
    CASE(OP_LINEAR, F_BIAS, 0, 1, 2, 1357, 1536, 6144),   /* feed-forward up, joint tokens */
    CASE(OP_LINEAR, F_BIAS, 0, 1, 2, 333, 4096, 1536),    /* context_embedder */
    CASE(OP_LINEAR, F_BIAS, 0, 0, 2, 1, 1536, 9216),      /* AdaLN-Zero (MMDiT-X) */

    /* layer_norm: M, C */
    CASE(OP_LAYER_NORM, F_WEIGHT | F_BIAS, 1e-6f, 0, 1, 1),
    CASE(OP_LAYER_NORM, F_WEIGHT | F_BIAS, 1e-5f, 0, 5, 1000),
    CASE(OP_LAYER_NORM, 0, 1e-6f, 1, 2714, 1536),         /* AdaLN pre-norm, no affine */
    CASE(OP_LAYER_NORM, F_WEIGHT | F_BIAS, 1e-5f, 0, 17, 4097),
    CASE(OP_LAYER_NORM, F_WEIGHT, 1e-5f, 0, 3, 33),

    /* rms_norm: M, C */
    CASE(OP_RMS_NORM, F_WEIGHT, 1e-6f, 1, 2 * 1357 * 24, 64), /* per-head q/k norm */
    CASE(OP_RMS_NORM, 0, 1e-6f, 0, 7, 33),
    CASE(OP_RMS_NORM, F_WEIGHT, 1e-6f, 0, 4, 4096),
    CASE(OP_RMS_NORM, F_WEIGHT | F_MISALIGN, 1e-6f, 0, 9, 31),
    /* short rows: G lanes a row (16-byte vectors; G 1 to 32), and the fallbacks */
    CASE(OP_RMS_NORM, F_WEIGHT, 1e-6f, 0, 333, 64),
    CASE(OP_RMS_NORM, 0, 1e-6f, 0, 77, 32),
    CASE(OP_RMS_NORM, F_WEIGHT, 1e-6f, 0, 5, 8),
    CASE(OP_RMS_NORM, F_WEIGHT, 1e-6f, 0, 9, 256),
    CASE(OP_RMS_NORM, F_WEIGHT | F_MISALIGN, 1e-6f, 0, 41, 64),

    /* group_norm: B, C, H, W, G */
    CASE(OP_GROUP_NORM, F_WEIGHT | F_BIAS, 1e-6f, 1, 1, 512, 64, 64, 32), /* VAE mid block */
    CASE(OP_GROUP_NORM, F_WEIGHT | F_BIAS, 1e-6f, 0, 2, 64, 7, 9, 8),
    CASE(OP_GROUP_NORM, 0, 1e-5f, 0, 2, 128, 16, 16, 32),
    CASE(OP_GROUP_NORM, F_WEIGHT | F_BIAS, 1e-6f, 0, 1, 32, 1, 1, 32),

    /* act: n1 x n2, kind */
    CASE(OP_ACT, 0, 0, 0, 1, 1, ENG_ACT_SILU),
    CASE(OP_ACT, 0, 0, 0, 7, 1001, ENG_ACT_SILU),
    CASE(OP_ACT, 0, 0, 0, 7, 1001, ENG_ACT_GELU_TANH),
    CASE(OP_ACT, 0, 0, 0, 7, 1001, ENG_ACT_GELU_ERF),
    CASE(OP_ACT, 0, 0, 0, 7, 1001, ENG_ACT_QUICK_GELU),
    CASE(OP_ACT, F_INPLACE, 0, 0, 3, 333, ENG_ACT_GELU_TANH),
    CASE(OP_ACT, F_MISALIGN, 0, 0, 5, 99, ENG_ACT_SILU),
    CASE(OP_ACT, 0, 0, 1, 2714, 6144, ENG_ACT_GELU_TANH), /* FF hidden */

    /* softmax: M, N */
    CASE(OP_SOFTMAX, 0, 0, 0, 3, 1),
    CASE(OP_SOFTMAX, 0, 0, 0, 5, 1000),
    CASE(OP_SOFTMAX, F_INPLACE, 0, 0, 7, 77),
    CASE(OP_SOFTMAX, 0, 0, 0, 3, 5000),
    CASE(OP_SOFTMAX, 0, 0, 1, 24 * 1357, 1357),

    /* binary: a [A0, A1, A2], b = a's last nbdims dims, op */
    CASE(OP_BINARY, 0, 0, 0, 1, 1, 1, 1, ENG_BIN_ADD),
    CASE(OP_BINARY, 0, 0, 0, 2, 7, 33, 1, ENG_BIN_ADD),
    CASE(OP_BINARY, 0, 0, 0, 2, 7, 33, 3, ENG_BIN_MUL),
    CASE(OP_BINARY, F_INPLACE, 0, 0, 3, 5, 64, 1, ENG_BIN_MUL),
    CASE(OP_BINARY, F_MISALIGN, 0, 0, 3, 5, 64, 2, ENG_BIN_ADD),
    CASE(OP_BINARY, 0, 0, 1, 2, 4096, 1536, 3, ENG_BIN_ADD), /* residual */
    CASE(OP_BINARY, 0, 0, 0, 2, 1024, 1536, 1, ENG_BIN_ADD), /* bias broadcast */

    /* scale: n */
    CASE(OP_SCALE, 0, 0.125f, 0, 1),
    CASE(OP_SCALE, 0, -3.0f, 0, 1001),
    CASE(OP_SCALE, F_INPLACE, 1.5f, 0, 4099),

    /* modulate / gated_add: B, N, C */
    CASE(OP_MODULATE, 0, 0, 0, 1, 1, 1),
    CASE(OP_MODULATE, 0, 0, 0, 3, 17, 33),
    CASE(OP_MODULATE, F_INPLACE, 0, 0, 2, 9, 64),
    CASE(OP_MODULATE, 0, 0, 1, 2, 4096, 1536),
    CASE(OP_GATED_ADD, 0, 0, 0, 1, 1, 1),
    CASE(OP_GATED_ADD, 0, 0, 0, 3, 17, 33),
    CASE(OP_GATED_ADD, F_MISALIGN, 0, 0, 2, 9, 64),
    CASE(OP_GATED_ADD, 0, 0, 1, 2, 4096, 1536),

    /* concat / split tokens: B, Na, Nb, C */
    CASE(OP_CONCAT, 0, 0, 0, 1, 1, 1, 1),
    CASE(OP_CONCAT, 0, 0, 0, 3, 5, 2, 7),
    CASE(OP_CONCAT, 0, 0, 1, 2, 4096, 333, 1536),
    CASE(OP_SPLIT, 0, 0, 0, 1, 1, 1, 1),
    CASE(OP_SPLIT, 0, 0, 0, 3, 5, 2, 7),
    CASE(OP_SPLIT, 0, 0, 1, 2, 4096, 333, 1536),

    /* conv2d: B, Cin, H, W, Cout, kh, kw, stride, pad, groups */
    CASE(OP_CONV2D, F_BIAS, 0, 1, 1, 512, 64, 64, 512, 3, 3, 1, 1, 1),   /* VAE conv */
    CASE(OP_CONV2D, F_BIAS, 0, 0, 2, 3, 17, 13, 8, 3, 3, 2, 1, 1),
    CASE(OP_CONV2D, 0, 0, 0, 1, 16, 9, 9, 24, 1, 1, 1, 0, 1),           /* 1x1: no im2col */
    CASE(OP_CONV2D, F_BIAS, 0, 0, 2, 16, 32, 32, 64, 2, 2, 2, 0, 1),      /* patch embed */
    CASE(OP_CONV2D, F_BIAS, 0, 0, 1, 8, 10, 10, 4, 3, 3, 1, 1, 2),        /* grouped */
    CASE(OP_CONV2D, F_BIAS, 0, 1, 1, 1536, 64, 64, 1536, 3, 3, 1, 1, 1536), /* TTT dwconv */
    CASE(OP_CONV2D, F_BIAS, 0, 0, 2, 5, 7, 6, 5, 3, 3, 2, 1, 5),          /* depthwise s2 */
    CASE(OP_CONV2D, F_BIAS | F_MISALIGN, 0, 0, 1, 4, 5, 7, 3, 3, 3, 1, 1, 1),

    /* upsample: B, C, H, W */
    CASE(OP_UPSAMPLE, 0, 0, 0, 2, 3, 5, 7),
    CASE(OP_UPSAMPLE, 0, 0, 1, 1, 512, 64, 64),

    /* attention: B, Nq, Nk, h, d */
    CASE(OP_ATTENTION, 0, 0, 1, 2, 1357, 1357, 24, 64),        /* SD3.5-M joint attention */
    CASE(OP_ATTENTION, F_CAUSAL, 0, 0, 1, 77, 77, 12, 64),     /* CLIP-L text encoder */
    CASE(OP_ATTENTION, 0, 0, 0, 2, 13, 29, 2, 32),
    CASE(OP_ATTENTION, F_ABIAS, 1.0f, 0, 2, 50, 50, 4, 64),     /* T5: bias, scale 1 */
    CASE(OP_ATTENTION, F_ABIAS | F_MASKED, 0, 0, 1, 40, 40, 2, 64),
    CASE(OP_ATTENTION, F_CAUSAL | F_ABIAS, 0, 0, 1, 70, 70, 2, 80), /* GEMM path (d = 80) */
    CASE(OP_ATTENTION, 0, 0, 0, 1, 100, 100, 2, 128),
    CASE(OP_ATTENTION, 0, 0, 0, 1, 257, 257, 1, 512),            /* VAE mid-block attention */
    CASE(OP_ATTENTION, F_GEMM | F_ABIAS | F_MASKED, 0, 0, 2, 40, 40, 2, 64),
    CASE(OP_ATTENTION, F_GEMM, 0, 0, 2, 1357, 1357, 24, 64),
    CASE(OP_ATTENTION, F_CAUSAL | F_MISALIGN, 0, 0, 2, 130, 130, 3, 32),
    /* cuDNN's flash attention, forced (BF16 runs it; F32 falls back to the paths above) */
    CASE(OP_ATTENTION, F_CUDNN, 0, 1, 2, 1357, 1357, 24, 64),   /* SD3.5-M joint attention */
    CASE(OP_ATTENTION, F_CUDNN, 0, 0, 1, 77, 77, 12, 64),       /* odd N, batch 1 */
    CASE(OP_ATTENTION, F_CUDNN, 0, 0, 3, 333, 333, 4, 64),      /* odd N, batch 3 */
    CASE(OP_ATTENTION, F_CUDNN, 0, 0, 2, 1001, 1001, 3, 64),    /* N not a multiple of a tile */
    CASE(OP_ATTENTION, F_CUDNN, 0, 0, 1, 100, 100, 2, 128),     /* d = 128 */
    CASE(OP_ATTENTION, F_CUDNN, 0, 0, 3, 257, 130, 2, 128),     /* Nq != Nk */
    CASE(OP_ATTENTION, F_CUDNN, 0, 0, 2, 13, 29, 2, 32),        /* d = 32 */
    CASE(OP_ATTENTION, F_CUDNN, 1.0f, 0, 1, 50, 50, 4, 64),     /* scale 1 */
    CASE(OP_ATTENTION, F_CUDNN | F_CAUSAL, 0, 0, 1, 77, 77, 12, 64), /* CLIP-L, causal */
    CASE(OP_ATTENTION, F_CUDNN | F_CAUSAL, 0, 0, 3, 333, 333, 2, 128),
    CASE(OP_ATTENTION, F_CUDNN | F_CAUSAL, 0, 0, 2, 130, 130, 3, 64), /* causal (the CPU reference needs Nq == Nk) */
    CASE(OP_ATTENTION, F_CUDNN, 0, 1, 2, 4429, 4429, 24, 64),   /* SD3.5 at 1024x1024 */
    /* ... and its fallbacks: a bias, misaligned buffers, a head dim cuDNN does not take */
    CASE(OP_ATTENTION, F_CUDNN | F_ABIAS, 1.0f, 0, 2, 50, 50, 4, 64),
    CASE(OP_ATTENTION, F_CUDNN | F_ABIAS | F_MASKED | F_CAUSAL, 0, 0, 1, 40, 40, 2, 64),
    CASE(OP_ATTENTION, F_CUDNN | F_MISALIGN, 0, 0, 2, 77, 77, 3, 64),
    CASE(OP_ATTENTION, F_CUDNN, 0, 0, 1, 257, 257, 1, 512),
    /* the fused kernel in BF16 too (the selection gives BF16 to cuDNN when it can) */
    CASE(OP_ATTENTION, F_FUSED, 0, 0, 2, 1357, 1357, 24, 64),
    CASE(OP_ATTENTION, F_FUSED | F_CAUSAL, 0, 0, 3, 130, 130, 3, 32),

    /* embedding: V, C, n */
    CASE(OP_EMBEDDING, 0, 0, 0, 5, 3, 7),
    CASE(OP_EMBEDDING, 0, 0, 0, 49408, 768, 77),  /* CLIP-L tokens */
    CASE(OP_EMBEDDING, 0, 0, 0, 1000, 4096, 256), /* T5-sized rows */

    /* transpose: B, X, Y */
    CASE(OP_TRANSPOSE, 0, 0, 0, 1, 1, 1),
    CASE(OP_TRANSPOSE, 0, 0, 0, 2, 3, 5),
    CASE(OP_TRANSPOSE, 0, 0, 0, 3, 33, 65),
    CASE(OP_TRANSPOSE, 0, 0, 1, 1, 1536, 4096), /* NCHW <-> NHWC */

    /* permute: ndim, shape..., perm as hex digits */
    CASE(OP_PERMUTE, 0, 0, 0, 6, 2, 4, 6, 2, 2, 16, 0x051324),  /* unpatchify, tiny */
    CASE(OP_PERMUTE, 0, 0, 1, 6, 2, 64, 64, 2, 2, 16, 0x051324), /* unpatchify, 1024 px */
    CASE(OP_PERMUTE, 0, 0, 0, 6, 2, 16, 4, 2, 6, 2, 0x024351),  /* patchify */
    CASE(OP_PERMUTE, 0, 0, 0, 6, 2, 3, 4, 5, 6, 7, 0x543210),   /* reversal */
    CASE(OP_PERMUTE, 0, 0, 0, 3, 3, 5, 7, 0x012),               /* identity: a copy */
    CASE(OP_PERMUTE, 0, 0, 0, 4, 4, 3, 5, 8, 0x2013),           /* last dim kept */
    CASE(OP_PERMUTE, 0, 0, 0, 4, 1, 5, 1, 3, 0x3210),           /* size-1 dims */
    CASE(OP_PERMUTE, F_MISALIGN, 0, 0, 3, 2, 33, 65, 0x021),

    /* ttt: B, N, h, d */
    CASE(OP_TTT, 0, 0, 0, 1, 1, 1, 16),
    CASE(OP_TTT, 0, 0, 0, 2, 29, 2, 16),          /* the tiny test model: 24 + 5 tokens */
    CASE(OP_TTT, 0, 0, 0, 2, 7, 3, 5),            /* odd d: unaligned rows */
    CASE(OP_TTT, 0, 0, 0, 2, 200, 2, 64),
    CASE(OP_TTT, F_MISALIGN, 0, 0, 1, 33, 2, 32),
    CASE(OP_TTT, F_CHUNK, 0, 0, 2, 50, 5, 16),    /* heads in chunks of 2, 2, 1 */
    CASE(OP_TTT, 0, 0, 1, 2, 4096 + 333, 24, 64), /* SD3.5-M joint module at 1024 px */
    /* BF16 at d 32 / 64 takes the fused kernels (kernels/cuda/ttt_fused.cu): N not a multiple of
     * the 64-token tile, shorter than one tile, batch 1 and 3, one split per head (B*h beyond
     * the resident CTAs), and the cuBLAS path forced at the same shapes. */
    CASE(OP_TTT, 0, 0, 0, 1, 333, 3, 64),
    CASE(OP_TTT, 0, 0, 0, 3, 1001, 24, 64),
    CASE(OP_TTT, 0, 0, 0, 1, 64, 2, 64),
    CASE(OP_TTT, 0, 0, 0, 2, 29, 2, 32),
    CASE(OP_TTT, 0, 0, 0, 3, 129, 5, 32),
    CASE(OP_TTT, 0, 0, 0, 3, 70, 200, 32),
    CASE(OP_TTT, 0, 0, 0, 1, 2000, 1, 32),
    CASE(OP_TTT, F_GEMM, 0, 0, 3, 1001, 4, 64),
    CASE(OP_TTT, F_GEMM, 0, 0, 2, 333, 3, 32),
    CASE(OP_TTT, 0, 0, 1, 2, 16384 + 333, 24, 64), /* SD3.5-M at 2048 px */

    /* norm_modulate: B, N, C (eps in f) */
    CASE(OP_NORM_MOD, 0, 1e-6f, 0, 1, 1, 1),
    CASE(OP_NORM_MOD, 0, 1e-6f, 0, 2, 37, 128),               /* a warp per row */
    CASE(OP_NORM_MOD, F_MISALIGN, 1e-5f, 0, 3, 5, 1001),      /* a block per row, odd C */
    CASE(OP_NORM_MOD, 0, 1e-6f, 1, 2, 4096, 1536),            /* SD3.5-M norm1 at 1024 px */
    CASE(OP_NORM_MOD, 0, 1e-6f, 0, 3, 7, 4096),               /* 2 vectors a thread (BF16) */
    CASE(OP_NORM_MOD, 0, 1e-6f, 0, 1, 3, 8192),               /* too long: the scalar kernel */
    CASE(OP_NORM_MOD, 0, 1e-6f, 0, 2, 9, 8),

    /* linear_gelu: as linear (the GELU in cuBLASLt's epilogue, or a separate pass) */
    CASE(OP_LINEAR_GELU, F_BIAS, 0, 0, 1, 7, 13, 5),
    CASE(OP_LINEAR_GELU, 0, 0, 0, 3, 11, 64, 96),
    CASE(OP_LINEAR_GELU, F_BIAS | F_MISALIGN, 0, 0, 2, 33, 64, 96),
    CASE(OP_LINEAR_GELU, F_BIAS, 0, 1, 2, 4096, 1536, 6144), /* SD3.5-M feed-forward up */

    /* ttt_local: B, gh, gw, Nt, C; key-norm eps 1 */
    CASE(OP_TTT_LOCAL, 0, 1.0f, 0, 1, 1, 1, 0, 3),
    CASE(OP_TTT_LOCAL, 0, 1.0f, 0, 2, 4, 6, 5, 32),        /* the tiny test model's shape */
    CASE(OP_TTT_LOCAL, 0, 1.0f, 0, 3, 7, 5, 3, 65),        /* odd grid and channels */
    CASE(OP_TTT_LOCAL, 0, 1e-6f, 0, 1, 9, 1, 0, 7),        /* a one-column grid, image only */
    CASE(OP_TTT_LOCAL, F_MISALIGN, 1.0f, 0, 2, 5, 8, 11, 24),
    CASE(OP_TTT_LOCAL, 0, 1.0f, 1, 2, 64, 64, 333, 1536),  /* SD3.5-M joint module at 1024 px */
    CASE(OP_TTT_LOCAL, 0, 1.0f, 1, 2, 128, 128, 0, 1536),  /* attn2 at 2048 px */
};

#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* ---- the tensors of a case ---- */

enum { K_FLOAT, K_FLOAT32_ONLY, K_IDS };

typedef struct tspec {
    int ndim;
    int64_t shape[ENG_MAX_DIMS];
    int kind;       /* K_FLOAT: the run's dtype; K_FLOAT32_ONLY: always F32; K_IDS: I32 */
    float lo, hi;   /* value range */
    int64_t vocab;  /* K_IDS: ids in [0, vocab) */
    int masked;     /* -inf entries (attention bias) */
} tspec;

#define MAX_IN 6
#define MAX_OUT 2

typedef struct layout {
    int nin, nout;
    tspec in[MAX_IN]; /* absent optional inputs have ndim < 0 */
    tspec out[MAX_OUT];
    int out_init;     /* outputs are read too (gated_add): initialise with random values */
    double flops;     /* for --bench */
} layout;

static tspec spec(int ndim, const int64_t *shape, float lo, float hi)
{
    tspec s;
    memset(&s, 0, sizeof s);
    s.ndim = ndim;
    memcpy(s.shape, shape, (size_t)ndim * sizeof *shape);
    s.kind = K_FLOAT;
    s.lo = lo;
    s.hi = hi;
    return s;
}

#define SPEC(lo, hi, ...) spec(ENG_SHAPE(__VA_ARGS__), lo, hi)

static tspec absent(void)
{
    tspec s;
    memset(&s, 0, sizeof s);
    s.ndim = -1;
    return s;
}

/* A permute case's perm: p[0] hex digits of p[1 + ndim], perm[0] the most significant. */
static void perm_of(const tcase *c, int *perm)
{
    int nd = (int)c->p[0];
    int64_t code = c->p[1 + nd];
    for (int i = nd - 1; i >= 0; i--, code >>= 4)
        perm[i] = (int)(code & 0xf);
}

static void build(const tcase *c, layout *L)
{
    const int64_t *p = c->p;
    int fl = c->flags;
    memset(L, 0, sizeof *L);
    switch (c->op) {
    case OP_LINEAR:
    case OP_LINEAR_GELU: {
        float ws = 1.0f / sqrtf((float)p[2]);
        L->nin = 3;
        L->in[0] = SPEC(-1, 1, p[0], p[1], p[2]);
        L->in[1] = SPEC(-ws, ws, p[3], p[2]);
        L->in[2] = fl & F_BIAS ? SPEC(-1, 1, p[3]) : absent();
        L->nout = 1;
        L->out[0] = SPEC(0, 0, p[0], p[1], p[3]);
        L->flops = 2.0 * p[0] * p[1] * p[2] * p[3];
        break;
    }
    case OP_LAYER_NORM:
    case OP_RMS_NORM:
        L->nin = 3;
        L->in[0] = SPEC(-2, 3, p[0], p[1]);
        L->in[1] = fl & F_WEIGHT ? SPEC(0.5f, 1.5f, p[1]) : absent();
        L->in[2] = fl & F_BIAS ? SPEC(-1, 1, p[1]) : absent();
        L->nout = 1;
        L->out[0] = SPEC(0, 0, p[0], p[1]);
        break;
    case OP_GROUP_NORM:
        L->nin = 3;
        L->in[0] = SPEC(-2, 3, p[0], p[1], p[2], p[3]);
        L->in[1] = fl & F_WEIGHT ? SPEC(0.5f, 1.5f, p[1]) : absent();
        L->in[2] = fl & F_BIAS ? SPEC(-1, 1, p[1]) : absent();
        L->nout = 1;
        L->out[0] = SPEC(0, 0, p[0], p[1], p[2], p[3]);
        break;
    case OP_ACT:
        L->nin = 1;
        L->in[0] = SPEC(-6, 6, p[0], p[1]);
        L->nout = 1;
        L->out[0] = SPEC(0, 0, p[0], p[1]);
        break;
    case OP_SOFTMAX:
        L->nin = 1;
        L->in[0] = SPEC(-8, 8, p[0], p[1]);
        L->nout = 1;
        L->out[0] = SPEC(0, 0, p[0], p[1]);
        break;
    case OP_BINARY: {
        int nb = (int)p[3];
        L->nin = 2;
        L->in[0] = SPEC(-2, 2, p[0], p[1], p[2]);
        L->in[1] = spec(nb, p + 3 - nb, -2, 2);
        L->nout = 1;
        L->out[0] = SPEC(0, 0, p[0], p[1], p[2]);
        break;
    }
    case OP_SCALE:
        L->nin = 1;
        L->in[0] = SPEC(-4, 4, p[0]);
        L->nout = 1;
        L->out[0] = SPEC(0, 0, p[0]);
        break;
    case OP_MODULATE:
        L->nin = 3;
        L->in[0] = SPEC(-2, 2, p[0], p[1], p[2]);
        L->in[1] = SPEC(-1, 1, p[0], p[2]);
        L->in[2] = SPEC(-1, 1, p[0], p[2]);
        L->nout = 1;
        L->out[0] = SPEC(0, 0, p[0], p[1], p[2]);
        break;
    case OP_GATED_ADD:
        L->nin = 2;
        L->in[0] = SPEC(-2, 2, p[0], p[1], p[2]);
        L->in[1] = SPEC(-1, 1, p[0], p[2]);
        L->nout = 1;
        L->out[0] = SPEC(-2, 2, p[0], p[1], p[2]);
        L->out_init = 1;
        break;
    case OP_CONCAT:
        L->nin = 2;
        L->in[0] = SPEC(-2, 2, p[0], p[1], p[3]);
        L->in[1] = SPEC(-2, 2, p[0], p[2], p[3]);
        L->nout = 1;
        L->out[0] = SPEC(0, 0, p[0], p[1] + p[2], p[3]);
        break;
    case OP_SPLIT:
        L->nin = 1;
        L->in[0] = SPEC(-2, 2, p[0], p[1] + p[2], p[3]);
        L->nout = 2;
        L->out[0] = SPEC(0, 0, p[0], p[1], p[3]);
        L->out[1] = SPEC(0, 0, p[0], p[2], p[3]);
        break;
    case OP_CONV2D: {
        int64_t B = p[0], Ci = p[1], H = p[2], W = p[3], Co = p[4], kh = p[5], kw = p[6];
        int64_t st = p[7], pad = p[8], g = p[9];
        int64_t Ho = (H + 2 * pad - kh) / st + 1, Wo = (W + 2 * pad - kw) / st + 1;
        float ws = 1.0f / sqrtf((float)(Ci / g * kh * kw));
        L->nin = 3;
        L->in[0] = SPEC(-1, 1, B, Ci, H, W);
        L->in[1] = SPEC(-ws, ws, Co, Ci / g, kh, kw);
        L->in[2] = fl & F_BIAS ? SPEC(-1, 1, Co) : absent();
        L->nout = 1;
        L->out[0] = SPEC(0, 0, B, Co, Ho, Wo);
        L->flops = 2.0 * B * Co * Ho * Wo * (Ci / g) * kh * kw;
        break;
    }
    case OP_UPSAMPLE:
        L->nin = 1;
        L->in[0] = SPEC(-2, 2, p[0], p[1], p[2], p[3]);
        L->nout = 1;
        L->out[0] = SPEC(0, 0, p[0], p[1], 2 * p[2], 2 * p[3]);
        break;
    case OP_ATTENTION: {
        int64_t B = p[0], Nq = p[1], Nk = p[2], h = p[3], d = p[4];
        L->nin = 4;
        L->in[0] = SPEC(-2, 2, B, Nq, h * d);
        L->in[1] = SPEC(-2, 2, B, Nk, h * d);
        L->in[2] = SPEC(-2, 2, B, Nk, h * d);
        if (fl & F_ABIAS) {
            L->in[3] = SPEC(-2, 2, h, Nq, Nk);
            L->in[3].kind = K_FLOAT32_ONLY;
            L->in[3].masked = !!(fl & F_MASKED);
        } else {
            L->in[3] = absent();
        }
        L->nout = 1;
        L->out[0] = SPEC(0, 0, B, Nq, h * d);
        L->flops = 4.0 * B * h * Nq * Nk * d;
        break;
    }
    case OP_EMBEDDING:
        L->nin = 2;
        L->in[0] = SPEC(-2, 2, p[0], p[1]);
        L->in[1] = SPEC(0, 0, p[2]);
        L->in[1].kind = K_IDS;
        L->in[1].vocab = p[0];
        L->nout = 1;
        L->out[0] = SPEC(0, 0, p[2], p[1]);
        break;
    case OP_TRANSPOSE:
        L->nin = 1;
        L->in[0] = SPEC(-2, 2, p[0], p[1], p[2]);
        L->nout = 1;
        L->out[0] = SPEC(0, 0, p[0], p[2], p[1]);
        break;
    case OP_PERMUTE: {
        int nd = (int)p[0], perm[ENG_MAX_DIMS];
        int64_t ys[ENG_MAX_DIMS];
        perm_of(c, perm);
        for (int i = 0; i < nd; i++)
            ys[i] = p[1 + perm[i]];
        L->nin = 1;
        L->in[0] = spec(nd, p + 1, -2, 2);
        L->nout = 1;
        L->out[0] = spec(nd, ys, 0, 0);
        break;
    }
    case OP_TTT: {
        /* The scales the model feeds: unit-variance q and k (k instance-normalised), fast
         * weights of std 0.2 (the test fixtures' initialisation). */
        int64_t B = p[0], N = p[1], h = p[2], d = p[3];
        L->nin = 5;
        L->in[0] = SPEC(-1.7f, 1.7f, B, N, h * d);
        L->in[1] = SPEC(-1.7f, 1.7f, B, N, h * d);
        L->in[2] = SPEC(-1, 1, B, N, h * d);
        L->in[3] = SPEC(-0.35f, 0.35f, h, d, d);
        L->in[4] = SPEC(-0.35f, 0.35f, h, d, d);
        L->nout = 1;
        L->out[0] = SPEC(0, 0, B, N, h * d);
        L->flops = 14.0 * B * h * N * d * d; /* seven N x d x d GEMMs per head */
        break;
    }
    case OP_NORM_MOD:
        L->nin = 3;
        L->in[0] = SPEC(-2, 3, p[0], p[1], p[2]);
        L->in[1] = SPEC(-0.5f, 0.5f, p[0], p[2]);
        L->in[2] = SPEC(-1, 1, p[0], p[2]);
        L->nout = 1;
        L->out[0] = SPEC(0, 0, p[0], p[1], p[2]);
        break;
    case OP_TTT_LOCAL: {
        /* k off-centre (the key norm must remove a mean), conv weights of a 3x3 init's scale. */
        int64_t B = p[0], N = p[1] * p[2] + p[3], C = p[4];
        L->nin = 6;
        L->in[0] = SPEC(-1.7f, 1.7f, B, N, C);
        L->in[1] = SPEC(-1.0f, 2.5f, B, N, C);
        L->in[2] = SPEC(-0.33f, 0.33f, C, 1, 3, 3);
        L->in[3] = SPEC(-0.33f, 0.33f, C);
        L->in[4] = SPEC(-0.33f, 0.33f, C, 1, 3, 3);
        L->in[5] = SPEC(-0.33f, 0.33f, C);
        L->nout = 2;
        L->out[0] = SPEC(0, 0, B, N, C);
        L->out[1] = SPEC(0, 0, B, N, C);
        break;
    }
    }
}

/* Runs the case's op on tensors already made (out[], in[]; absent inputs passed as NULL). */
static int call(const tcase *c, eng_tensor *out, eng_tensor **in, eng_error *err)
{
    const int64_t *p = c->p;
    switch (c->op) {
    case OP_LINEAR: return eng_op_linear(&out[0], in[0], in[1], in[2], err);
    case OP_LINEAR_GELU: return eng_op_linear_gelu(&out[0], in[0], in[1], in[2], err);
    case OP_NORM_MOD: return eng_op_norm_modulate(&out[0], in[0], in[1], in[2], c->f, err);
    case OP_LAYER_NORM: return eng_op_layer_norm(&out[0], in[0], in[1], in[2], c->f, err);
    case OP_RMS_NORM: return eng_op_rms_norm(&out[0], in[0], in[1], c->f, err);
    case OP_GROUP_NORM:
        return eng_op_group_norm(&out[0], in[0], in[1], in[2], (int)p[4], c->f, err);
    case OP_ACT: return eng_op_act(&out[0], in[0], (eng_act)p[2], err);
    case OP_SOFTMAX: return eng_op_softmax(&out[0], in[0], err);
    case OP_BINARY: return eng_op_binary(&out[0], in[0], in[1], (eng_binop)p[4], err);
    case OP_SCALE: return eng_op_scale(&out[0], in[0], c->f, err);
    case OP_MODULATE: return eng_op_modulate(&out[0], in[0], in[1], in[2], err);
    case OP_GATED_ADD: return eng_op_gated_add(&out[0], in[0], in[1], err);
    case OP_CONCAT: return eng_op_concat_tokens(&out[0], in[0], in[1], err);
    case OP_SPLIT: return eng_op_split_tokens(&out[0], &out[1], in[0], err);
    case OP_CONV2D: {
        eng_conv2d_params cp = {(int)p[7], (int)p[7], (int)p[8], (int)p[8], (int)p[9]};
        return eng_op_conv2d(&out[0], in[0], in[1], in[2], &cp, err);
    }
    case OP_UPSAMPLE: return eng_op_upsample_nearest2x(&out[0], in[0], err);
    case OP_ATTENTION: {
        eng_attention_params ap = {(int)p[3], c->f != 0 ? c->f : 1.0f / sqrtf((float)p[4]),
                                   !!(c->flags & F_CAUSAL)};
        return eng_op_attention(&out[0], in[0], in[1], in[2], in[3], &ap, err);
    }
    case OP_EMBEDDING: return eng_op_embedding(&out[0], in[0], in[1], err);
    case OP_TRANSPOSE: return eng_op_transpose(&out[0], in[0], err);
    case OP_PERMUTE: {
        int perm[ENG_MAX_DIMS];
        perm_of(c, perm);
        return eng_op_permute(&out[0], in[0], perm, err);
    }
    case OP_TTT: return eng_op_ttt(&out[0], in[0], in[1], in[2], in[3], in[4], (int)p[2], err);
    case OP_TTT_LOCAL:
        return eng_op_ttt_local(&out[0], &out[1], in[0], in[1], in[2], in[3], in[4], in[5],
                                (int)p[1], (int)p[2], c->f, err);
    }
    return eng_error_set(err, ENG_EINVAL, "unknown op %d", c->op);
}

static void describe(const tcase *c, char *buf, size_t len)
{
    const int64_t *p = c->p;
    int fl = c->flags;
    int n = 0;
    switch (c->op) {
    case OP_LINEAR:
    case OP_LINEAR_GELU:
        n = snprintf(buf, len, "[%lld,%lld,%lld]x[%lld,%lld]^T", (long long)p[0], (long long)p[1],
                     (long long)p[2], (long long)p[3], (long long)p[2]);
        break;
    case OP_CONV2D:
        n = snprintf(buf, len, "[%lld,%lld,%lld,%lld] %lld->%lld k%lldx%lld s%lld p%lld g%lld",
                     (long long)p[0], (long long)p[1], (long long)p[2], (long long)p[3],
                     (long long)p[1], (long long)p[4], (long long)p[5], (long long)p[6],
                     (long long)p[7], (long long)p[8], (long long)p[9]);
        break;
    case OP_ATTENTION:
        n = snprintf(buf, len, "B%lld Nq%lld Nk%lld h%lld d%lld", (long long)p[0],
                     (long long)p[1], (long long)p[2], (long long)p[3], (long long)p[4]);
        break;
    case OP_ACT:
        n = snprintf(buf, len, "[%lld,%lld] %s", (long long)p[0], (long long)p[1],
                     (const char *[]){"silu", "gelu_tanh", "gelu_erf", "quick_gelu"}[p[2]]);
        break;
    case OP_CONVERT:
        n = snprintf(buf, len, "%lld %s->%s", (long long)p[0], eng_dtype_name((eng_dtype)p[1]),
                     eng_dtype_name((eng_dtype)p[2]));
        break;
    case OP_PERMUTE: {
        char s[96];
        eng_tensor t = eng_tensor_view(NULL, NULL, ENG_DTYPE_F32, (int)p[0], p + 1);
        n = snprintf(buf, len, "%s perm %0*llx", eng_shape_str(&t, s, sizeof s), (int)p[0],
                     (unsigned long long)p[1 + p[0]]);
        break;
    }
    case OP_TTT:
        n = snprintf(buf, len, "B%lld N%lld h%lld d%lld", (long long)p[0], (long long)p[1],
                     (long long)p[2], (long long)p[3]);
        break;
    case OP_TTT_LOCAL:
        n = snprintf(buf, len, "B%lld %lldx%lld+%lld C%lld eps%g", (long long)p[0],
                     (long long)p[1], (long long)p[2], (long long)p[3], (long long)p[4],
                     (double)c->f);
        break;
    default: {
        layout L;
        char s[96];
        build(c, &L);
        eng_tensor t = eng_tensor_view(NULL, NULL, ENG_DTYPE_F32, L.in[0].ndim, L.in[0].shape);
        n = snprintf(buf, len, "%s", eng_shape_str(&t, s, sizeof s));
        if (c->op == OP_BINARY && (size_t)n < len)
            n += snprintf(buf + n, len - (size_t)n, " %s b%lldd", p[4] ? "mul" : "add",
                          (long long)p[3]);
        if (c->op == OP_EMBEDDING && (size_t)n < len)
            n += snprintf(buf + n, len - (size_t)n, " %lld ids", (long long)p[2]);
        if (c->op == OP_GROUP_NORM && (size_t)n < len)
            n += snprintf(buf + n, len - (size_t)n, " G%lld", (long long)p[4]);
        break;
    }
    }
    const char *tags[] = {"+b", "+w", " causal", " bias", " masked", " inplace", " misaligned",
                          " gemm", " chunked", " cudnn", " fused"};
    for (int i = 0; i < 11 && n >= 0 && (size_t)n < len; i++)
        if (fl & (1 << i))
            n += snprintf(buf + n, len - (size_t)n, "%s", tags[i]);
}

/* ---- host data ---- */

static void fill(float *x, int64_t n, const tspec *s, int round_bf16)
{
    for (int64_t i = 0; i < n; i++) {
        float v = rng_uniform(s->lo, s->hi);
        if (fabsf(v) < 1e-3f) /* never zeros: nudge away from 0 */
            v = v < 0 ? -1e-3f : 1e-3f;
        x[i] = v;
    }
    if (s->masked) {
        /* Every 7th entry masked, and the whole first row of the first head. */
        for (int64_t i = 0; i < n; i += 7)
            x[i] = -INFINITY;
        for (int64_t j = 0; j < s->shape[s->ndim - 1]; j++)
            x[j] = -INFINITY;
    }
    if (round_bf16) {
        uint16_t *tmp = malloc((size_t)n * sizeof *tmp);
        if (!tmp) {
            fprintf(stderr, "out of host memory\n");
            exit(1);
        }
        k_cpu_f32_to_bf16(tmp, x, n);
        k_cpu_bf16_to_f32(x, tmp, n);
        free(tmp);
    }
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of host memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static int64_t numel_of(const tspec *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++)
        n *= s->shape[i];
    return n;
}

/* ---- CUDA buffers with guard bytes ---- */

typedef struct gbuf {
    void *base;   /* what alloc returned */
    size_t off;   /* misalignment offset */
    size_t bytes; /* payload */
    eng_tensor t; /* view of the payload */
} gbuf;

/* The kernel-choice overrides of a CUDA backend; NULL for the CPU stand-in (--cpu-as-gpu). */
static k_cuda_tuning *gpu_tuning(eng_backend *gpu)
{
    k_cuda_ctx *ctx = eng_backend_cuda_kernels(gpu);
    return ctx ? &ctx->tuning : NULL;
}

/* The attention path a case's flags force (K_ATTN_AUTO: none). */
static k_attn_kernel forced_attn(const tcase *c)
{
    if (c->op != OP_ATTENTION)
        return K_ATTN_AUTO;
    if (c->flags & F_GEMM)
        return K_ATTN_GEMM;
    if (c->flags & F_CUDNN)
        return K_ATTN_CUDNN;
    if (c->flags & F_FUSED)
        return c->p[4] == 32 ? K_ATTN_FUSED_D32 : K_ATTN_FUSED_D64;
    return K_ATTN_AUTO;
}

static void gbuf_init(gbuf *g, eng_backend *be, eng_dtype dt, const tspec *s, int misalign)
{
    unsigned char guard[GUARD_BYTES];
    g->t = eng_tensor_view(NULL, be, dt, s->ndim, s->shape);
    g->bytes = eng_tensor_nbytes(&g->t);
    g->off = misalign ? eng_dtype_size(dt) : 0;
    g->base = be->alloc(be, g->off + g->bytes + GUARD_BYTES);
    if (!g->base) {
        fprintf(stderr, "cuda alloc of %zu bytes failed\n", g->bytes);
        exit(1);
    }
    g->t.data = (char *)g->base + g->off;
    memset(guard, GUARD_BYTE, sizeof guard);
    if (be->copy_in(be, (char *)g->t.data + g->bytes, guard, GUARD_BYTES)) {
        fprintf(stderr, "cuda copy_in of a guard failed\n");
        exit(1);
    }
}

static int gbuf_guard_ok(gbuf *g, eng_backend *be)
{
    unsigned char guard[GUARD_BYTES];
    if (be->copy_out(be, guard, (char *)g->t.data + g->bytes, GUARD_BYTES)) {
        fprintf(stderr, "cuda copy_out failed\n");
        exit(1);
    }
    for (int i = 0; i < GUARD_BYTES; i++)
        if (guard[i] != GUARD_BYTE)
            return 0;
    return 1;
}

static void gbuf_free(gbuf *g, eng_backend *be)
{
    if (g->base)
        be->free(be, g->base);
    memset(g, 0, sizeof *g);
}

/* Host f32 values -> bytes of dtype dt (F32, BF16, or I32 ids passed through). */
static void *to_dtype(const float *x, const int32_t *ids, int64_t n, eng_dtype dt)
{
    if (ids) {
        void *b = xmalloc((size_t)n * 4);
        memcpy(b, ids, (size_t)n * 4);
        return b;
    }
    if (dt == ENG_DTYPE_BF16) {
        uint16_t *b = xmalloc((size_t)n * 2);
        k_cpu_f32_to_bf16(b, x, n);
        return b;
    }
    float *b = xmalloc((size_t)n * 4);
    memcpy(b, x, (size_t)n * 4);
    return b;
}

static void from_dtype(float *y, const void *bytes, int64_t n, eng_dtype dt)
{
    if (dt == ENG_DTYPE_BF16)
        k_cpu_bf16_to_f32(y, bytes, n);
    else
        memcpy(y, bytes, (size_t)n * 4);
}

/* ---- one parity run ---- */

static eng_backend *cpu, *gpu;
static int n_pass, n_fail;

/* Worst nMSE per op and mode (0 F32, 1 BF16), for the summary table. */
static double worst_nmse[OP_COUNT][2];

static void report(const tcase *c, const char *mode, int ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void report(const tcase *c, const char *mode, int ok, const char *fmt, ...)
{
    char desc[160], msg[256];
    va_list ap;
    describe(c, desc, sizeof desc);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    printf("%-4s %-18s %-44s %-4s %s\n", ok ? "ok" : "FAIL", op_names[c->op], desc, mode, msg);
    fflush(stdout);
    if (ok)
        n_pass++;
    else
        n_fail++;
}

static void die_on(int rc, const eng_error *err, const char *what)
{
    if (rc) {
        fprintf(stderr, "%s: %s\n", what, err->msg);
        exit(1);
    }
}

static void run_case(const tcase *c, eng_dtype dt)
{
    const char *mode = dt == ENG_DTYPE_BF16 ? "BF16" : "F32";
    const int bf = dt == ENG_DTYPE_BF16, inplace = !!(c->flags & F_INPLACE);
    layout L;
    eng_error err = {0};
    float *hin[MAX_IN] = {0}, *hout[MAX_OUT] = {0};
    int32_t *hids[MAX_IN] = {0};
    void *upl[MAX_IN] = {0};
    eng_tensor cin[MAX_IN], cout[MAX_OUT];
    eng_tensor *cin_p[MAX_IN] = {0}, *gin_p[MAX_IN] = {0};
    gbuf gin[MAX_IN], gout[MAX_OUT];
    eng_tensor gout_t[MAX_OUT];
    int rc;

    build(c, &L);
    memset(gin, 0, sizeof gin);
    memset(gout, 0, sizeof gout);

    /* Host inputs (and initial outputs when the op reads them). */
    for (int i = 0; i < L.nin; i++) {
        const tspec *s = &L.in[i];
        int64_t n;
        if (s->ndim < 0)
            continue;
        n = numel_of(s);
        if (s->kind == K_IDS) {
            hids[i] = xmalloc((size_t)n * sizeof(int32_t));
            for (int64_t j = 0; j < n; j++)
                hids[i][j] = (int32_t)(rng_u64() % (uint64_t)s->vocab);
            if (n > 1) /* the ends of the table too */
                hids[i][0] = 0, hids[i][n - 1] = (int32_t)(s->vocab - 1);
        } else {
            hin[i] = xmalloc((size_t)n * sizeof(float));
            fill(hin[i], n, s, bf && s->kind == K_FLOAT);
        }
    }
    for (int o = 0; o < L.nout; o++) {
        int64_t n = numel_of(&L.out[o]);
        hout[o] = xmalloc((size_t)n * sizeof(float));
        if (L.out_init)
            fill(hout[o], n, &L.out[o], bf);
    }

    /* CPU reference, F32. */
    for (int i = 0; i < L.nin; i++) {
        const tspec *s = &L.in[i];
        if (s->ndim < 0)
            continue;
        rc = eng_tensor_init(&cin[i], cpu, s->kind == K_IDS ? ENG_DTYPE_I32 : ENG_DTYPE_F32,
                             s->ndim, s->shape, &err);
        die_on(rc, &err, "cpu tensor");
        rc = eng_tensor_upload(&cin[i], hids[i] ? (const void *)hids[i] : (const void *)hin[i], &err);
        die_on(rc, &err, "cpu upload");
        cin_p[i] = &cin[i];
    }
    for (int o = 0; o < L.nout; o++) {
        if (inplace && o == 0) {
            cout[0] = cin[0];
            cout[0].owned = 0;
            continue;
        }
        rc = eng_tensor_init(&cout[o], cpu, ENG_DTYPE_F32, L.out[o].ndim, L.out[o].shape, &err);
        die_on(rc, &err, "cpu tensor");
        if (L.out_init) {
            rc = eng_tensor_upload(&cout[o], hout[o], &err);
            die_on(rc, &err, "cpu upload");
        }
    }
    rc = call(c, cout, cin_p, &err);
    if (rc) {
        report(c, mode, 0, "cpu reference failed: %s", err.msg);
        goto done_cpu;
    }

    /* CUDA. */
    for (int i = 0; i < L.nin; i++) {
        const tspec *s = &L.in[i];
        eng_dtype idt = s->kind == K_IDS ? ENG_DTYPE_I32 : s->kind == K_FLOAT32_ONLY ? ENG_DTYPE_F32 : dt;
        if (s->ndim < 0)
            continue;
        gbuf_init(&gin[i], gpu, idt, s, !!(c->flags & F_MISALIGN));
        upl[i] = to_dtype(hin[i], hids[i], numel_of(s), idt);
        rc = gpu->copy_in(gpu, gin[i].t.data, upl[i], gin[i].bytes);
        die_on(rc ? eng_error_set(&err, rc, "copy_in") : 0, &err, "cuda upload");
        gin_p[i] = &gin[i].t;
    }
    for (int o = 0; o < L.nout; o++) {
        if (inplace && o == 0) {
            gout_t[0] = gin[0].t;
            continue;
        }
        gbuf_init(&gout[o], gpu, dt, &L.out[o], !!(c->flags & F_MISALIGN));
        gout_t[o] = gout[o].t;
        if (L.out_init) {
            void *b = to_dtype(hout[o], NULL, numel_of(&L.out[o]), dt);
            rc = gpu->copy_in(gpu, gout[o].t.data, b, gout[o].bytes);
            free(b);
        } else {
            void *poison = xmalloc(gout[o].bytes); /* all-ones bytes: NaN in F32 and BF16 */
            memset(poison, 0xff, gout[o].bytes);
            rc = gpu->copy_in(gpu, gout[o].t.data, poison, gout[o].bytes);
            free(poison);
        }
        die_on(rc ? eng_error_set(&err, rc, "copy_in") : 0, &err, "cuda upload");
    }
    k_cuda_ctx *kc = eng_backend_cuda_kernels(gpu);
    k_cuda_tuning *tune = gpu_tuning(gpu);
    int64_t cudnn_before = kc ? kc->attn_cudnn_runs : 0;
    int want_cudnn = 0, no_cudnn = 0; /* the path check: cuDNN must / must not serve the call */
    if (tune) {
        tune->attn_kernel = forced_attn(c);
        if (c->op == OP_TTT && (c->flags & F_GEMM))
            tune->ttt_kernel = K_TTT_CUBLAS;
        if (c->flags & F_CHUNK)
            tune->ttt_max_heads = 2;
    }
    if (kc && (c->flags & F_CUDNN)) {
        const int64_t *p = c->p;
        k_attn_kernel path =
            k_cuda_attention_kernel(kc, bf ? K_BF16 : K_F32, !!(c->flags & F_ABIAS),
                                    !!(c->flags & F_CAUSAL), p[0], p[1], p[2], p[3], p[4]);
        want_cudnn = path == K_ATTN_CUDNN && !(c->flags & F_MISALIGN) &&
                     (p[4] == 64 || p[4] == 128);
        no_cudnn = (c->flags & F_ABIAS) || !bf;
    }
    rc = call(c, gout_t, gin_p, &err);
    if (!rc)
        rc = gpu->synchronize(gpu) ? eng_error_set(&err, ENG_EDEVICE, "synchronize failed") : 0;
    const int cudnn_ran = kc && kc->attn_cudnn_runs > cudnn_before;
    const char *path_msg = cudnn_ran ? " [cudnn]" : "";
    char why[300] = "";
    if (want_cudnn && !cudnn_ran) {
        snprintf(why, sizeof why, " CUDNN DID NOT RUN (%s)", k_cuda_last_error());
        path_msg = why;
    } else if (no_cudnn && cudnn_ran) {
        path_msg = " CUDNN RAN WHERE IT MUST NOT!";
    }
    const int path_ok = !(want_cudnn && !cudnn_ran) && !(no_cudnn && cudnn_ran);
    if (tune)
        *tune = (k_cuda_tuning){0};
    if (rc) {
        report(c, mode, 0, "cuda op failed: %s", err.msg);
        goto done;
    }

    /* Compare every output; check guards and untouched inputs. */
    {
        double num = 0, den = 0, maxd = 0;
        int64_t bad = 0;
        int guards = 1, inputs = 1;
        for (int o = 0; o < L.nout; o++) {
            eng_tensor *gt = &gout_t[o];
            int64_t n = eng_tensor_numel(gt);
            size_t nb = eng_tensor_nbytes(gt);
            void *raw = xmalloc(nb);
            float *g = xmalloc((size_t)n * sizeof(float));
            const float *r = (const float *)cout[o].data;
            if (gpu->copy_out(gpu, raw, gt->data, nb)) {
                fprintf(stderr, "cuda copy_out failed\n");
                exit(1);
            }
            from_dtype(g, raw, n, dt);
            for (int64_t j = 0; j < n; j++) {
                double d = (double)g[j] - (double)r[j];
                if (!isfinite(g[j]) || !isfinite(r[j])) {
                    bad++;
                    continue;
                }
                num += d * d;
                den += (double)r[j] * r[j];
                if (fabs(d) > maxd)
                    maxd = fabs(d);
            }
            free(raw);
            free(g);
        }
        for (int i = 0; i < L.nin; i++) {
            if (!gin[i].base)
                continue;
            guards &= gbuf_guard_ok(&gin[i], gpu);
            if (!(inplace && i == 0)) {
                void *now = xmalloc(gin[i].bytes);
                if (gpu->copy_out(gpu, now, gin[i].t.data, gin[i].bytes)) {
                    fprintf(stderr, "cuda copy_out failed\n");
                    exit(1);
                }
                inputs &= memcmp(now, upl[i], gin[i].bytes) == 0;
                free(now);
            }
        }
        for (int o = 0; o < L.nout; o++)
            if (gout[o].base)
                guards &= gbuf_guard_ok(&gout[o], gpu);
        double nmse = den > 0 ? num / den : num;
        double bound = bf ? NMSE_BF16 : NMSE_F32;
        int ok = bad == 0 && nmse <= bound && guards && inputs && path_ok;
        if (nmse > worst_nmse[c->op][bf])
            worst_nmse[c->op][bf] = nmse;
        report(c, mode, ok, "nmse %.2e (<= %.0e) max|d| %.2e%s%s%s%s", nmse, bound, maxd,
               bad ? " NaN/Inf!" : "", guards ? "" : " GUARD OVERWRITTEN!",
               inputs ? "" : " INPUT MODIFIED!", path_msg);
        if (bad)
            worst_nmse[c->op][bf] = INFINITY;
    }

done:
    for (int i = 0; i < MAX_IN; i++) {
        gbuf_free(&gin[i], gpu);
        free(upl[i]);
    }
    for (int o = 0; o < MAX_OUT; o++)
        gbuf_free(&gout[o], gpu);
done_cpu:
    for (int i = 0; i < L.nin; i++) {
        if (cin_p[i])
            eng_tensor_free(&cin[i]);
        free(hin[i]);
        free(hids[i]);
    }
    for (int o = 0; o < L.nout; o++) {
        if (!(inplace && o == 0))
            eng_tensor_free(&cout[o]);
        free(hout[o]);
    }
}

/* convert: bit-exact against the CPU conversion, specials included. */
static void run_convert(const tcase *c)
{
    int64_t n = c->p[0];
    eng_dtype xt = (eng_dtype)c->p[1], yt = (eng_dtype)c->p[2];
    size_t xs = eng_dtype_size(xt), ys = eng_dtype_size(yt);
    float *f = xmalloc((size_t)n * sizeof(float));
    void *xb = xmalloc((size_t)n * xs), *ycpu = xmalloc((size_t)n * ys), *ygpu = xmalloc((size_t)n * ys);
    eng_tensor cx, cy;
    gbuf gx, gy;
    eng_error err = {0};
    int rc, guards;
    int64_t diff = 0;
    static const uint32_t specials[] = {
        0x7f800000u, 0xff800000u, 0x00000000u, 0x80000000u, /* +-inf, +-0 */
        0x3f808000u, 0x3f818000u, 0x3f80c000u,              /* bf16 ties: to even, up; above */
        0x477ff000u, 0x477fe000u, 0xc77ff000u,              /* f16: 65520 -> inf, 65504 */
        0x33000000u, 0x33800000u, 0x38800000u, 0x387fc000u, /* f16 subnormal edges */
        0x00000001u, 0x007fffffu, 0x7f7fffffu, 0x3f801000u, /* f32 denormals, max, f16 tie */
    };

    memset(&gx, 0, sizeof gx);
    memset(&gy, 0, sizeof gy);
    for (int64_t i = 0; i < n; i++) {
        /* Sign, an exponent over most of the range, random mantissa bits. */
        uint64_t r = rng_u64();
        uint32_t e = (uint32_t)(127 - 40 + (r >> 32) % 60);
        uint32_t bits = ((uint32_t)(r & 1) << 31) | (e << 23) | ((uint32_t)(r >> 8) & 0x7fffffu);
        memcpy(&f[i], &bits, 4);
    }
    for (size_t i = 0; i < sizeof specials / sizeof specials[0] && (int64_t)i < n; i++)
        memcpy(&f[i], &specials[i], 4);
    if (xt == ENG_DTYPE_F32)
        memcpy(xb, f, (size_t)n * 4);
    else if (xt == ENG_DTYPE_BF16)
        k_cpu_f32_to_bf16(xb, f, n);
    else
        k_cpu_f32_to_f16(xb, f, n);

    tspec s = SPEC(0, 0, n);
    rc = eng_tensor_init(&cx, cpu, xt, 1, s.shape, &err);
    die_on(rc, &err, "cpu tensor");
    rc = eng_tensor_init(&cy, cpu, yt, 1, s.shape, &err);
    die_on(rc, &err, "cpu tensor");
    die_on(eng_tensor_upload(&cx, xb, &err), &err, "cpu upload");
    rc = eng_op_convert(&cy, &cx, &err);
    if (rc) {
        report(c, "-", 0, "cpu reference failed: %s", err.msg);
        goto out;
    }
    memcpy(ycpu, cy.data, (size_t)n * ys);

    gbuf_init(&gx, gpu, xt, &s, 0);
    gbuf_init(&gy, gpu, yt, &s, 0);
    if (gpu->copy_in(gpu, gx.t.data, xb, gx.bytes)) {
        fprintf(stderr, "cuda copy_in failed\n");
        exit(1);
    }
    rc = eng_op_convert(&gy.t, &gx.t, &err);
    if (!rc && gpu->synchronize(gpu))
        rc = eng_error_set(&err, ENG_EDEVICE, "synchronize failed");
    if (rc) {
        report(c, "-", 0, "cuda op failed: %s", err.msg);
        goto out;
    }
    if (gpu->copy_out(gpu, ygpu, gy.t.data, gy.bytes)) {
        fprintf(stderr, "cuda copy_out failed\n");
        exit(1);
    }
    for (int64_t i = 0; i < n; i++)
        diff += memcmp((char *)ygpu + i * ys, (char *)ycpu + i * ys, ys) != 0;
    guards = gbuf_guard_ok(&gx, gpu) && gbuf_guard_ok(&gy, gpu);
    report(c, "-", diff == 0 && guards, "%lld of %lld elements differ bitwise%s", (long long)diff,
           (long long)n, guards ? "" : " GUARD OVERWRITTEN!");
out:
    gbuf_free(&gx, gpu);
    gbuf_free(&gy, gpu);
    eng_tensor_free(&cx);
    eng_tensor_free(&cy);
    free(f);
    free(xb);
    free(ycpu);
    free(ygpu);
}

/* ---- behaviour beyond parity ---- */

/* The CUDA embedding writes zero rows for ids outside [0, V) (documented in backend_cuda.c). */
static void check_embedding_oob(void)
{
    const int64_t V = 10, C = 5, n = 4;
    const int32_t ids[4] = {3, -1, 10, 9};
    float table[50], y[20];
    eng_tensor tt, ti, ty;
    eng_error err = {0};
    int rc, ok = 1;

    for (int i = 0; i < V * C; i++)
        table[i] = (float)(i + 1);
    die_on(eng_tensor_init(&tt, gpu, ENG_DTYPE_F32, ENG_SHAPE(10, 5), &err), &err, "tensor");
    die_on(eng_tensor_init(&ti, gpu, ENG_DTYPE_I32, ENG_SHAPE(4), &err), &err, "tensor");
    die_on(eng_tensor_init(&ty, gpu, ENG_DTYPE_F32, ENG_SHAPE(4, 5), &err), &err, "tensor");
    die_on(eng_tensor_upload(&tt, table, &err), &err, "upload");
    die_on(eng_tensor_upload(&ti, ids, &err), &err, "upload");
    rc = eng_op_embedding(&ty, &tt, &ti, &err);
    if (!rc)
        rc = eng_tensor_download(&ty, y, &err);
    for (int64_t r = 0; !rc && r < n; r++)
        for (int64_t c = 0; c < C; c++) {
            int valid = ids[r] >= 0 && ids[r] < V;
            ok &= y[r * C + c] == (valid ? table[ids[r] * C + c] : 0.0f);
        }
    printf("%-4s %-18s %-44s %-4s %s\n", !rc && ok ? "ok" : "FAIL", "embedding",
           "ids outside [0, V) give zero rows", "F32", rc ? err.msg : "");
    if (!rc && ok)
        n_pass++;
    else
        n_fail++;
    eng_tensor_free(&tt);
    eng_tensor_free(&ti);
    eng_tensor_free(&ty);
}

/* A dtype the CUDA ops do not take (F16 outside convert) is ENG_EUNSUPPORTED, not a crash. */
static void check_unsupported_dtype(void)
{
    eng_tensor x, y;
    eng_error err = {0};
    die_on(eng_tensor_init(&x, gpu, ENG_DTYPE_F16, ENG_SHAPE(3, 8), &err), &err, "tensor");
    die_on(eng_tensor_init(&y, gpu, ENG_DTYPE_F16, ENG_SHAPE(3, 8), &err), &err, "tensor");
    int rc = eng_op_act(&y, &x, ENG_ACT_SILU, &err);
    int ok = rc == ENG_EUNSUPPORTED;
    printf("%-4s %-18s %-44s %-4s rc %d: %s\n", ok ? "ok" : "FAIL", "act", "F16 is unsupported",
           "F16", rc, err.msg);
    if (ok)
        n_pass++;
    else
        n_fail++;
    eng_tensor_free(&x);
    eng_tensor_free(&y);
}

/* The op profiler on the backend under test: the CUDA events around each op. */
static double host_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* 3 linear, 1 attention and n_act act (on the weight: a small tensor): the ops a profile of
 * it must count. */
static int profiled_sequence(eng_tensor *t, int n_act, eng_error *err)
{
    eng_attention_params ap = {.heads = 8, .scale = 0.125f, .causal = 0};
    for (int i = 0; i < 3; i++)
        ENG_TRY(eng_op_linear(&t[1], &t[0], &t[2], NULL, err));
    ENG_TRY(eng_op_attention(&t[3], &t[0], &t[0], &t[0], NULL, &ap, err));
    for (int i = 0; i < n_act; i++)
        ENG_TRY(eng_op_act(&t[2], &t[2], ENG_ACT_SILU, err));
    return 0;
}

static void check_profiler(void)
{
    /* More act calls than the CUDA backend's first pool of 2048 events holds (2 per op). */
    const int n_act = 1500;
    eng_tensor t[4];
    eng_error err = {0};
    eng_profile p;
    char what[96] = "";
    float *host = xmalloc(2 * 512 * 512 * sizeof *host);
    int ok = 1;
    for (int i = 0; i < 4; i++)
        die_on(i == 2 ? eng_tensor_init(&t[i], gpu, ENG_DTYPE_F32, ENG_SHAPE(512, 512), &err)
                      : eng_tensor_init(&t[i], gpu, ENG_DTYPE_F32, ENG_SHAPE(2, 512, 512), &err),
               &err, "tensor");
    for (int64_t i = 0; i < 2 * 512 * 512; i++)
        host[i] = rng_uniform(-0.05f, 0.05f);
    die_on(eng_tensor_upload(&t[0], host, &err), &err, "upload");
    die_on(eng_tensor_upload(&t[2], host, &err), &err, "upload");
    die_on(profiled_sequence(t, 1, &err), &err, "warm-up"); /* off: counted nowhere */
    for (int round = 0; ok && round < 2; round++) { /* the second reuses the events */
        die_on(gpu->synchronize(gpu), &err, "synchronize");
        die_on(eng_backend_profile_start(gpu, &err), &err, "profile start");
        double t0 = host_ms();
        die_on(profiled_sequence(t, n_act, &err), &err, "profiled ops");
        die_on(gpu->synchronize(gpu), &err, "synchronize");
        double wall = host_ms() - t0;
        die_on(eng_backend_profile_stop(gpu, &p, &err), &err, "profile stop");
        int64_t want[ENG_OP_KINDS] = {0};
        want[ENG_OP_LINEAR] = 3, want[ENG_OP_ATTENTION] = 1, want[ENG_OP_ACT] = n_act;
        for (int k = 0; ok && k < ENG_OP_KINDS; k++) {
            ok = p.calls[k] == want[k] && (want[k] ? p.ms[k] > 0.0 : p.ms[k] == 0.0);
            if (!ok)
                snprintf(what, sizeof what, "round %d: %s: %lld calls (%lld expected), %g ms",
                         round, eng_op_kind_name((eng_op_kind)k), (long long)p.calls[k],
                         (long long)want[k], p.ms[k]);
        }
        if (ok && !(p.total_ms > 0.0 && p.total_ms <= wall + 0.01)) {
            ok = 0;
            snprintf(what, sizeof what, "round %d: ops %.3f ms, wall %.3f ms", round, p.total_ms,
                     wall);
        }
    }
    /* Off again: a profile started after ops run without one has nothing in it. */
    die_on(profiled_sequence(t, 1, &err), &err, "ops");
    die_on(eng_backend_profile_start(gpu, &err), &err, "profile start");
    die_on(eng_backend_profile_stop(gpu, &p, &err), &err, "profile stop");
    if (ok && p.total_calls != 0) {
        ok = 0;
        snprintf(what, sizeof what, "%lld ops counted while off", (long long)p.total_calls);
    }
    printf("%-4s %-18s %-44s %-4s %s\n", ok ? "ok" : "FAIL", "profile",
           "exact counts, times within the wall time", "F32", what);
    if (ok)
        n_pass++;
    else
        n_fail++;
    for (int i = 0; i < 4; i++)
        eng_tensor_free(&t[i]);
    free(host);
}

/* ---- --bench ---- */

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static const char *attn_path_name(k_attn_kernel k)
{
    switch (k) {
    case K_ATTN_FUSED_D32:
    case K_ATTN_FUSED_D64:
        return " fused-path";
    case K_ATTN_GEMM:
        return " gemm-path";
    case K_ATTN_CUDNN:
        return " cudnn-path";
    default:
        return "";
    }
}

/* force: the attention path to time (K_ATTN_AUTO: whatever the selection takes). */
static void bench_case(const tcase *c, eng_dtype dt, k_attn_kernel force)
{
    enum { WARMUP = 3, REPS = 20 };
    layout L;
    gbuf gin[MAX_IN], gout[MAX_OUT];
    eng_tensor *gin_p[MAX_IN] = {0}, gout_t[MAX_OUT];
    eng_error err = {0};
    cudaStream_t st = (cudaStream_t)eng_backend_cuda_stream(gpu);
    cudaEvent_t ev[2 * REPS];
    float ms[REPS];
    double bytes = 0;
    char desc[160];
    int rc = 0;

    memset(gin, 0, sizeof gin);
    memset(gout, 0, sizeof gout);
    memset(&L, 0, sizeof L);
    if (c->op == OP_CONVERT) {
        /* x F32 -> y in the case's dtype. */
        tspec s = SPEC(-2, 2, c->p[0]);
        L.nin = 1;
        L.nout = 1;
        L.in[0] = s;
        L.out[0] = s;
        L.flops = 0;
    } else {
        build(c, &L);
    }
    for (int i = 0; i < L.nin; i++) {
        const tspec *s = &L.in[i];
        eng_dtype idt = s->kind == K_IDS ? ENG_DTYPE_I32 : s->kind == K_FLOAT32_ONLY ? ENG_DTYPE_F32 : dt;
        if (c->op == OP_CONVERT)
            idt = (eng_dtype)c->p[1];
        if (s->ndim < 0)
            continue;
        int64_t n = numel_of(s);
        float *h = xmalloc((size_t)n * sizeof(float));
        int32_t *ids = NULL;
        if (s->kind == K_IDS) {
            ids = xmalloc((size_t)n * sizeof(int32_t));
            for (int64_t j = 0; j < n; j++)
                ids[j] = (int32_t)(rng_u64() % (uint64_t)s->vocab);
        } else {
            fill(h, n, s, 0);
        }
        gbuf_init(&gin[i], gpu, idt, s, 0);
        void *b = to_dtype(h, ids, n, idt);
        if (gpu->copy_in(gpu, gin[i].t.data, b, gin[i].bytes)) {
            fprintf(stderr, "cuda copy_in failed\n");
            exit(1);
        }
        bytes += (double)gin[i].bytes;
        free(b);
        free(h);
        free(ids);
        gin_p[i] = &gin[i].t;
    }
    for (int o = 0; o < L.nout; o++) {
        eng_dtype odt = c->op == OP_CONVERT ? (eng_dtype)c->p[2] : dt;
        gbuf_init(&gout[o], gpu, odt, &L.out[o], 0);
        gout_t[o] = gout[o].t;
        bytes += (double)gout[o].bytes;
    }
    k_cuda_tuning *tune = gpu_tuning(gpu);
    if (force == K_ATTN_AUTO)
        force = forced_attn(c);
    if (tune) {
        tune->attn_kernel = force;
        if (c->op == OP_TTT && force == K_ATTN_GEMM) /* the TTT's cuBLAS path */
            tune->ttt_kernel = K_TTT_CUBLAS;
    }
    for (int r = 0; r < 2 * REPS; r++)
        CUDA_CHECK(cudaEventCreate(&ev[r]));
    for (int r = 0; r < WARMUP + REPS && !rc; r++) {
        if (r >= WARMUP)
            CUDA_CHECK(cudaEventRecord(ev[2 * (r - WARMUP)], st));
        rc = c->op == OP_CONVERT ? eng_op_convert(&gout_t[0], gin_p[0], &err)
                                 : call(c, gout_t, gin_p, &err);
        if (r >= WARMUP)
            CUDA_CHECK(cudaEventRecord(ev[2 * (r - WARMUP) + 1], st));
    }
    if (tune)
        *tune = (k_cuda_tuning){0};
    describe(c, desc, sizeof desc);
    if (rc) {
        printf("bench %-18s %-44s %-4s failed: %s\n", op_names[c->op], desc,
               dt == ENG_DTYPE_BF16 ? "BF16" : "F32", err.msg);
        n_fail++;
    } else {
        CUDA_CHECK(cudaStreamSynchronize(st));
        for (int r = 0; r < REPS; r++)
            CUDA_CHECK(cudaEventElapsedTime(&ms[r], ev[2 * r], ev[2 * r + 1]));
        qsort(ms, REPS, sizeof ms[0], cmp_float);
        double med = ms[REPS / 2];
        printf("bench %-18s %-44s %-4s%s median %9.4f ms  %8.1f GB/s", op_names[c->op], desc,
               c->op == OP_CONVERT ? "-" : dt == ENG_DTYPE_BF16 ? "BF16" : "F32",
               attn_path_name(force), med, bytes / (med * 1e-3) / 1e9);
        if (L.flops > 0)
            printf("  %7.1f TFLOP/s", L.flops / (med * 1e-3) / 1e12);
        printf("\n");
        n_pass++;
    }
    fflush(stdout);
    for (int r = 0; r < 2 * REPS; r++)
        CUDA_CHECK(cudaEventDestroy(ev[r]));
    for (int i = 0; i < MAX_IN; i++)
        gbuf_free(&gin[i], gpu);
    for (int o = 0; o < MAX_OUT; o++)
        gbuf_free(&gout[o], gpu);
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    int bench = 0, device = 0, cpu_as_gpu = 0;
    const char *filter = NULL;
    eng_error err = {0};
    struct cudaDeviceProp prop;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--bench") == 0)
            bench = 1;
        else if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
            filter = argv[++i];
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc)
            device = atoi(argv[++i]);
        else if (strcmp(argv[i], "--cpu-as-gpu") == 0)
            cpu_as_gpu = 1;
        else {
            fprintf(stderr, "usage: %s [--bench] [--filter SUBSTR] [--device N] [--cpu-as-gpu]\n",
                    argv[0]);
            return 2;
        }
    }
    cpu = eng_backend_cpu_create(&err);
    if (!cpu) {
        fprintf(stderr, "cpu backend: %s\n", err.msg);
        return 1;
    }
    gpu = cpu_as_gpu ? eng_backend_cpu_create(&err) : eng_backend_cuda_create(device, &err);
    if (!gpu) {
        fprintf(stderr, "cuda backend: %s\n", err.msg);
        printf("0 passed, 1 failed\n");
        return 1;
    }
    if (cpu_as_gpu) {
        bench = 0;
        printf("harness check: the CPU backend stands in for CUDA (F32 only)\n");
    } else {
        CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
        printf("device %d: %s, sm_%d%d, %d SMs, %.1f GiB\n", device, prop.name, prop.major,
               prop.minor, prop.multiProcessorCount, (double)prop.totalGlobalMem / (1 << 30));
    }

    for (int i = 0; i < NCASES; i++) {
        const tcase *c = &cases[i];
        if (filter && !strstr(op_names[c->op], filter))
            continue;
        rng_state = 0x5eedull * 1000003ull + (uint64_t)i * 7919ull;
        if (bench) {
            if (!c->bench)
                continue;
            if (c->op == OP_CONVERT) {
                bench_case(c, ENG_DTYPE_F32, K_ATTN_AUTO);
                continue;
            }
            bench_case(c, ENG_DTYPE_F32, K_ATTN_AUTO);
            bench_case(c, ENG_DTYPE_BF16, K_ATTN_AUTO);
            if (c->op == OP_TTT && !(c->flags & F_GEMM)) {
                bench_case(c, ENG_DTYPE_F32, K_ATTN_GEMM);
                bench_case(c, ENG_DTYPE_BF16, K_ATTN_GEMM);
            }
            if (c->op == OP_ATTENTION && forced_attn(c) == K_ATTN_AUTO) {
                bench_case(c, ENG_DTYPE_F32, K_ATTN_GEMM);
                bench_case(c, ENG_DTYPE_BF16, K_ATTN_GEMM);
                if (c->p[4] == 32)
                    bench_case(c, ENG_DTYPE_BF16, K_ATTN_FUSED_D32);
                if (c->p[4] == 64)
                    bench_case(c, ENG_DTYPE_BF16, K_ATTN_FUSED_D64);
                bench_case(c, ENG_DTYPE_BF16, K_ATTN_CUDNN);
            }
            continue;
        }
        if (c->op == OP_CONVERT) {
            run_convert(c);
            continue;
        }
        run_case(c, ENG_DTYPE_F32);
        rng_state ^= 0xb16b00b5ull;
        if (!cpu_as_gpu)
            run_case(c, ENG_DTYPE_BF16);
    }

    if (!bench && !cpu_as_gpu && (!filter || strstr("embedding act", filter))) {
        check_embedding_oob();
        check_unsupported_dtype();
    }
    if (!bench && (!filter || strstr("profile", filter)))
        check_profiler();
    if (!bench) {
        printf("\nworst nmse per op:          F32         BF16\n");
        for (int op = 1; op < OP_COUNT; op++)
            if (!filter || strstr(op_names[op], filter))
                printf("  %-22s %10.2e  %10.2e\n", op_names[op], worst_nmse[op][0],
                       worst_nmse[op][1]);
    }
    eng_backend_destroy(gpu);
    eng_backend_destroy(cpu);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
