/*
 * backend.h - the compute backend interface and the checked op front end.
 *
 * A backend is a struct of function pointers filled by one implementation
 * (engine/backend/backend_cpu.c over kernels/cpu, engine/backend/backend_cuda.c over
 * kernels/cuda). The engine never calls a backend's op pointer directly: it
 * calls the eng_op_* front-end functions below (engine/backend/ops.c), which check
 * shapes, dtypes and that every tensor lives on the backend, report mistakes
 * by name through eng_error, and only then call the pointer. An op pointer
 * left NULL means "not implemented on this backend" (ENG_EUNSUPPORTED).
 *
 * Shape letters: B = batch, N/M = tokens, C = channels, H/W = height/width,
 * h = heads, d = head dim, K = input features, O = output features.
 * All tensors are contiguous, row-major. "[..., C]" means any leading dims,
 * flattened to rows. Outputs are written, never read, unless the op says so.
 * Unless an op says otherwise, y may alias x (in place) for element-wise ops,
 * and must not alias inputs for the others.
 *
 * Dtypes: the CPU backend computes in F32 (F16/BF16 are storage formats there,
 * converted with eng_op_convert). The CUDA backend accepts F32 and BF16 where
 * its table says so. Every op requires all float tensors of one call to share a
 * dtype, except eng_op_convert and the weight of eng_op_linear (which may be
 * BF16/F16 under an F32 activation where a backend supports it).
 *
 * Thread-safety: a backend instance is used by one thread at a time (one per
 * worker); distinct instances may run concurrently.
 */
#ifndef TTTD_ENGINE_BACKEND_H
#define TTTD_ENGINE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "engine/core/error.h"
#include "engine/backend/tensor.h"

typedef enum eng_device_kind {
    ENG_DEVICE_CPU = 0,
    ENG_DEVICE_CUDA = 1,
} eng_device_kind;

typedef enum eng_act {
    ENG_ACT_SILU = 0,       /* x * sigmoid(x) */
    ENG_ACT_GELU_TANH = 1,  /* 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))) */
    ENG_ACT_GELU_ERF = 2,   /* 0.5x(1 + erf(x / sqrt 2)) */
    ENG_ACT_QUICK_GELU = 3, /* x * sigmoid(1.702x) */
} eng_act;

typedef enum eng_binop {
    ENG_BIN_ADD = 0,
    ENG_BIN_MUL = 1,
} eng_binop;

typedef struct eng_conv2d_params {
    int stride_h, stride_w;
    int pad_h, pad_w; /* zero padding on each side */
    int groups;       /* 1: dense; C_in: depthwise */
} eng_conv2d_params;

typedef struct eng_attention_params {
    int heads;   /* h; the channel dim of q/k/v is h * d */
    float scale; /* multiplies q.k; 1/sqrt(d) for most models, 1 for T5 */
    int causal;  /* 1: query i sees keys j <= i (CLIP) */
} eng_attention_params;

struct eng_backend {
    const char *name; /* "cpu", "cuda:0" */
    eng_device_kind kind;
    int device; /* device ordinal; 0 for CPU */
    void *ctx;  /* implementation state */

    /* Memory. alloc returns NULL on failure; free(NULL) is a no-op. */
    void *(*alloc)(eng_backend *be, size_t nbytes);
    void (*free)(eng_backend *be, void *ptr);
    /* Host <-> backend copies of nbytes; return 0 or ENG_EDEVICE. */
    int (*copy_in)(eng_backend *be, void *dst, const void *host_src, size_t nbytes);
    int (*copy_out)(eng_backend *be, void *host_dst, const void *src, size_t nbytes);
    /* Waits for all queued work; returns 0 or ENG_EDEVICE. */
    int (*synchronize)(eng_backend *be);
    /* Releases ctx and the struct itself. */
    void (*destroy)(eng_backend *be);

    /*
     * Device timing for the op profiler (engine/backend/profile.h). NULL on a backend whose ops
     * have finished when they return (the CPU), where the profiler reads the host clock instead;
     * a backend sets all three or none. timer_reserve makes the backend's pool of events hold at
     * least n (called when a profile starts, so that the profiled work rarely pays for it);
     * timer_record queues timing event i (0, 1, 2, ...: two per op, in order) on the backend's
     * queue, growing the pool when i reaches its size; timer_elapsed, called after synchronize,
     * gives the milliseconds from event a to event b. Each returns 0 or ENG_EDEVICE / ENG_ENOMEM
     * and fills err. The pool is the backend's, kept between profiles, released by destroy.
     */
    int (*timer_reserve)(eng_backend *be, int64_t n, eng_error *err);
    int (*timer_record)(eng_backend *be, int64_t i, eng_error *err);
    int (*timer_elapsed)(eng_backend *be, int64_t a, int64_t b, float *ms, eng_error *err);
    /* The running profile (engine/backend/profile.c); NULL while profiling is off. */
    struct eng_profiler *prof;

    /*
     * Graph capture, to replay a fixed sequence of ops with one launch (NULL on a backend without
     * it, the CPU; a backend sets all four or none). capture_begin starts recording: the ops
     * queued after it are recorded, not run, until capture_end, which returns the recording as an
     * opaque graph (or fails, e.g. when an op synchronized or copied to the host meanwhile:
     * then nothing stays recorded and capturing has ended). graph_launch queues one replay of
     * the recorded ops on the same memory; graph_free releases a graph (NULL is a no-op).
     * Between begin and end the caller must not allocate, copy to or from the host, or wait.
     */
    int (*capture_begin)(eng_backend *be, eng_error *err);
    /* A number that changes whenever memory the backend's ops use internally (scratch) moves: a
     * graph recorded under another number must be recorded again. */
    uint64_t (*memory_generation)(eng_backend *be);
    int (*capture_end)(eng_backend *be, void **graph, eng_error *err);
    int (*graph_launch)(eng_backend *be, void *graph, eng_error *err);
    void (*graph_free)(eng_backend *be, void *graph);

    /*
     * The op set. Each returns 0 or a negative code and may fill err (a device
     * error, an out-of-range token id). Arguments have been checked by ops.c.
     */
    int (*convert)(eng_backend *be, eng_tensor *y, const eng_tensor *x, eng_error *err);
    int (*linear)(eng_backend *be, eng_tensor *y, const eng_tensor *x, const eng_tensor *w,
                  const eng_tensor *b, eng_error *err);
    /* NULL: eng_op_linear_gelu runs linear, then act. */
    int (*linear_gelu)(eng_backend *be, eng_tensor *y, const eng_tensor *x, const eng_tensor *w,
                       const eng_tensor *b, eng_error *err);
    int (*layer_norm)(eng_backend *be, eng_tensor *y, const eng_tensor *x, const eng_tensor *w,
                      const eng_tensor *b, float eps, eng_error *err);
    int (*rms_norm)(eng_backend *be, eng_tensor *y, const eng_tensor *x, const eng_tensor *w,
                    float eps, eng_error *err);
    int (*group_norm)(eng_backend *be, eng_tensor *y, const eng_tensor *x, const eng_tensor *w,
                      const eng_tensor *b, int groups, float eps, eng_error *err);
    int (*act)(eng_backend *be, eng_tensor *y, const eng_tensor *x, eng_act kind, eng_error *err);
    int (*softmax)(eng_backend *be, eng_tensor *y, const eng_tensor *x, eng_error *err);
    int (*binary)(eng_backend *be, eng_tensor *y, const eng_tensor *a, const eng_tensor *b,
                  eng_binop op, eng_error *err);
    int (*scale)(eng_backend *be, eng_tensor *y, const eng_tensor *x, float s, eng_error *err);
    int (*modulate)(eng_backend *be, eng_tensor *y, const eng_tensor *x, const eng_tensor *scale,
                    const eng_tensor *shift, eng_error *err);
    /* NULL: eng_op_norm_modulate runs layer_norm, then modulate. */
    int (*norm_modulate)(eng_backend *be, eng_tensor *y, const eng_tensor *x,
                         const eng_tensor *scale, const eng_tensor *shift, float eps,
                         eng_error *err);
    int (*gated_add)(eng_backend *be, eng_tensor *y, const eng_tensor *x, const eng_tensor *gate,
                     eng_error *err);
    int (*concat_tokens)(eng_backend *be, eng_tensor *y, const eng_tensor *a, const eng_tensor *b,
                         eng_error *err);
    int (*split_tokens)(eng_backend *be, eng_tensor *a, eng_tensor *b, const eng_tensor *y,
                        eng_error *err);
    int (*conv2d)(eng_backend *be, eng_tensor *y, const eng_tensor *x, const eng_tensor *w,
                  const eng_tensor *b, const eng_conv2d_params *p, eng_error *err);
    int (*upsample_nearest2x)(eng_backend *be, eng_tensor *y, const eng_tensor *x, eng_error *err);
    int (*attention)(eng_backend *be, eng_tensor *o, const eng_tensor *q, const eng_tensor *k,
                     const eng_tensor *v, const eng_tensor *bias, const eng_attention_params *p,
                     eng_error *err);
    int (*embedding)(eng_backend *be, eng_tensor *y, const eng_tensor *table, const eng_tensor *ids,
                     eng_error *err);
    int (*transpose)(eng_backend *be, eng_tensor *y, const eng_tensor *x, eng_error *err);
    int (*permute)(eng_backend *be, eng_tensor *y, const eng_tensor *x, const int *perm,
                   eng_error *err);
    int (*ttt)(eng_backend *be, eng_tensor *o, const eng_tensor *q, const eng_tensor *k,
               const eng_tensor *v, const eng_tensor *w1, const eng_tensor *w2, int heads,
               eng_error *err);
    int (*ttt_local)(eng_backend *be, eng_tensor *q2, eng_tensor *k2, const eng_tensor *q,
                     const eng_tensor *k, const eng_tensor *qw, const eng_tensor *qb,
                     const eng_tensor *kw, const eng_tensor *kb, int gh, int gw, float eps,
                     eng_error *err);
};

/* Backends. Each returns NULL on failure and fills err. */
eng_backend *eng_backend_cpu_create(eng_error *err);
/* Compiled only with CUDA; without it this returns NULL with ENG_EUNSUPPORTED. */
eng_backend *eng_backend_cuda_create(int device, eng_error *err);
/* 1 when this binary was built with the CUDA backend. */
int eng_backend_cuda_available(void);
/* Calls be->destroy; NULL is a no-op. */
void eng_backend_destroy(eng_backend *be);

/* Copies a whole tensor between host memory and a tensor (same dtype and numel). */
int eng_tensor_upload(eng_tensor *dst, const void *host_src, eng_error *err);
int eng_tensor_download(const eng_tensor *src, void *host_dst, eng_error *err);

/*
 * The checked front end (engine/backend/ops.c). The backend is taken from y (the
 * first output). All tensors must live on that backend.
 */

/* y = x in y's dtype (F32 <-> F16/BF16 round-to-nearest-even; same dtype = copy). Same numel. */
int eng_op_convert(eng_tensor *y, const eng_tensor *x, eng_error *err);
/* y[..., O] = x[..., K] . w[O, K]^T + b[O]; b may be NULL. */
int eng_op_linear(eng_tensor *y, const eng_tensor *x, const eng_tensor *w, const eng_tensor *b,
                  eng_error *err);
/* GELU-tanh(x . w^T + b): eng_op_linear then eng_op_act, fused where the backend can (CUDA: in
 * the GEMM's epilogue). */
int eng_op_linear_gelu(eng_tensor *y, const eng_tensor *x, const eng_tensor *w,
                       const eng_tensor *b, eng_error *err);
/* Over the last dim C of x[..., C]: (x - mean) / sqrt(var + eps) * w + b; w, b may be NULL. */
int eng_op_layer_norm(eng_tensor *y, const eng_tensor *x, const eng_tensor *w, const eng_tensor *b,
                      float eps, eng_error *err);
/* Over the last dim C: x / sqrt(mean(x^2) + eps) * w; w may be NULL. */
int eng_op_rms_norm(eng_tensor *y, const eng_tensor *x, const eng_tensor *w, float eps,
                    eng_error *err);
/* x[B, C, ...spatial]: normalise each of `groups` channel groups over (C/groups x spatial); then
 * per-channel w[C], b[C] (may be NULL). */
int eng_op_group_norm(eng_tensor *y, const eng_tensor *x, const eng_tensor *w, const eng_tensor *b,
                      int groups, float eps, eng_error *err);
/* Element-wise activation; y may alias x. */
int eng_op_act(eng_tensor *y, const eng_tensor *x, eng_act kind, eng_error *err);
/* Softmax over the last dim; y may alias x. */
int eng_op_softmax(eng_tensor *y, const eng_tensor *x, eng_error *err);
/* y = a (op) b. b has a's shape, or a's trailing dims (repeated over a's leading dims). y may alias a. */
int eng_op_binary(eng_tensor *y, const eng_tensor *a, const eng_tensor *b, eng_binop op,
                  eng_error *err);
int eng_op_add(eng_tensor *y, const eng_tensor *a, const eng_tensor *b, eng_error *err);
int eng_op_mul(eng_tensor *y, const eng_tensor *a, const eng_tensor *b, eng_error *err);
/* y = x * s; y may alias x. */
int eng_op_scale(eng_tensor *y, const eng_tensor *x, float s, eng_error *err);
/* y[B, N, C] = x * (1 + scale[B, C]) + shift[B, C]; y may alias x. */
int eng_op_modulate(eng_tensor *y, const eng_tensor *x, const eng_tensor *scale,
                    const eng_tensor *shift, eng_error *err);
/* y[B, N, C] = LayerNorm(x) * (1 + scale[B, C]) + shift[B, C], the norm over C without affine
 * parameters: eng_op_layer_norm then eng_op_modulate, in one pass where the backend can (CUDA).
 * y may alias x. */
int eng_op_norm_modulate(eng_tensor *y, const eng_tensor *x, const eng_tensor *scale,
                         const eng_tensor *shift, float eps, eng_error *err);
/* y[B, N, C] += gate[B, C] * x[B, N, C] (reads and writes y). */
int eng_op_gated_add(eng_tensor *y, const eng_tensor *x, const eng_tensor *gate, eng_error *err);
/* y[B, Na + Nb, C] = [a[B, Na, C]; b[B, Nb, C]] along tokens. */
int eng_op_concat_tokens(eng_tensor *y, const eng_tensor *a, const eng_tensor *b, eng_error *err);
/* The inverse: a = y[:, :Na], b = y[:, Na:]. */
int eng_op_split_tokens(eng_tensor *a, eng_tensor *b, const eng_tensor *y, eng_error *err);
/* y[B, O, Ho, Wo] = conv(x[B, Cin, H, W], w[O, Cin/groups, kh, kw]) + b[O]; b may be NULL.
 * Ho = (H + 2 pad_h - kh) / stride_h + 1, likewise Wo. */
int eng_op_conv2d(eng_tensor *y, const eng_tensor *x, const eng_tensor *w, const eng_tensor *b,
                  const eng_conv2d_params *p, eng_error *err);
/* y[B, C, 2H, 2W] = nearest-neighbour 2x upsample of x[B, C, H, W]. */
int eng_op_upsample_nearest2x(eng_tensor *y, const eng_tensor *x, eng_error *err);
/*
 * Multi-head softmax attention. q[B, Nq, h*d], k and v [B, Nk, h*d] -> o[B, Nq, h*d];
 * scores = scale * q.k (+ bias[h, Nq, Nk] when bias is not NULL, shared by the batch;
 * causal masks j > i). Heads are contiguous d-wide slices of the channel dim.
 */
int eng_op_attention(eng_tensor *o, const eng_tensor *q, const eng_tensor *k, const eng_tensor *v,
                     const eng_tensor *bias, const eng_attention_params *p, eng_error *err);
/* y[..., C] = table[ids[...], :]; ids is I32; an id outside [0, V) is an error. */
int eng_op_embedding(eng_tensor *y, const eng_tensor *table, const eng_tensor *ids, eng_error *err);
/* y[B, Y, X] = x[B, X, Y] (last two dims swapped; NCHW <-> NHWC with X = C, Y = H*W). */
int eng_op_transpose(eng_tensor *y, const eng_tensor *x, eng_error *err);
/* y = x with its dims reordered: y.shape[i] = x.shape[perm[i]] (perm a permutation of 0..ndim-1).
 * Unpatchify is [B, h, w, p, q, C] -> perm {0, 5, 1, 3, 2, 4} -> [B, C, h, p, w, q]. */
int eng_op_permute(eng_tensor *y, const eng_tensor *x, const int *perm, eng_error *err);
/*
 * The TTT inner model of DESIGN.md section 4, steps 4 and 5, for every sample b and head j:
 * Q, K, V are the d-wide head slices of q, k, v [B, N, h*d] (K already instance-normalised and
 * convolved, Q convolved); W1, W2 = w1[j], w2[j] with w1, w2 [h, d, d] shared by the batch;
 * s = d^-1/2:
 *   Z = K W1;  S = SiLU(Z);  E = (S W2 - V) * s / N
 *   G2 = S^T E;  G1 = K^T [(E W2^T) * sig(Z) * (1 + Z (1 - sig(Z)))]
 *   W1' = W1 - G1;  W2' = W2 - G2;  O = SiLU(Q W1') W2'  -> o [B, N, h*d] (heads merged).
 * Every one of the N tokens takes part in the update and gets an output.
 */
int eng_op_ttt(eng_tensor *o, const eng_tensor *q, const eng_tensor *k, const eng_tensor *v,
               const eng_tensor *w1, const eng_tensor *w2, int heads, eng_error *err);
/*
 * The input transform of a TTT module, DESIGN.md section 4 steps 2 and 3, in one op: q, k
 * [B, N, C] whose first gh * gw tokens are the image patches (row-major on the gh x gw grid) and
 * the rest text. For every sample and channel:
 *   k' = (k - mean) / sqrt(var + eps)    mean and biased var over all N tokens (the key norm)
 *   k2 = k' + DWConv3x3(k') + kb         on the image tokens; k2 = k' on the text tokens
 *   q2 = q + DWConv3x3(q) + qb           on the image tokens; q2 = q on the text tokens
 * DWConv3x3 is depthwise with zero padding 1, qw and kw [C, 1, 3, 3], qb and kb [C].
 * q2, k2 are new tensors of q's shape (no aliasing).
 */
int eng_op_ttt_local(eng_tensor *q2, eng_tensor *k2, const eng_tensor *q, const eng_tensor *k,
                     const eng_tensor *qw, const eng_tensor *qb, const eng_tensor *kw,
                     const eng_tensor *kb, int gh, int gw, float eps, eng_error *err);

#endif
