/*
 * tensor.h - dense tensors: dtype, shape, and the backend whose memory holds them.
 *
 * Shapes are row-major and contiguous (the last dimension varies fastest); there
 * are no strides. A tensor is a plain struct the caller allocates; its data is
 * either owned (made by eng_tensor_init on a backend, released by
 * eng_tensor_free) or borrowed (a view made by eng_tensor_view/eng_tensor_reshape,
 * which eng_tensor_free leaves alone).
 *
 * Layout conventions used across the engine:
 *   B = batch, N = tokens, C = channels, H/W = height/width, h = heads, d = head dim.
 *   token tensors are [B, N, C]; images and latents are [B, C, H, W] (NCHW).
 *
 * Not thread-safe: a tensor belongs to one thread at a time.
 */
#ifndef TTTD_ENGINE_TENSOR_H
#define TTTD_ENGINE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "engine/core/error.h"

#define ENG_MAX_DIMS 6

typedef enum eng_dtype {
    ENG_DTYPE_F32 = 0,
    ENG_DTYPE_F16 = 1,
    ENG_DTYPE_BF16 = 2,
    ENG_DTYPE_I32 = 3, /* token ids */
} eng_dtype;

typedef struct eng_backend eng_backend;

typedef struct eng_tensor {
    eng_dtype dtype;
    int ndim;
    int64_t shape[ENG_MAX_DIMS];
    void *data;
    eng_backend *backend; /* whose memory data lives in; NULL means plain host memory */
    int owned;            /* 1 when eng_tensor_free must release data */
} eng_tensor;

/* Bytes per element (4, 2, 2, 4). */
size_t eng_dtype_size(eng_dtype dt);
/* Canonical name: "F32", "F16", "BF16", "I32" (the safetensors spelling). */
const char *eng_dtype_name(eng_dtype dt);
/* Parses a safetensors dtype name; returns 0 or ENG_EUNSUPPORTED. */
int eng_dtype_parse(const char *name, eng_dtype *out);

int64_t eng_tensor_numel(const eng_tensor *t);
size_t eng_tensor_nbytes(const eng_tensor *t);
/* 1 when a and b have the same ndim and dims (dtype not compared). */
int eng_tensor_same_shape(const eng_tensor *a, const eng_tensor *b);
/* Writes "[2, 3, 4]" into buf; returns buf. */
char *eng_shape_str(const eng_tensor *t, char *buf, size_t len);

/*
 * Allocates an owned tensor of the given dtype and shape on backend be (NULL:
 * host memory via malloc). Data is uninitialised. Returns 0 or a negative code.
 */
int eng_tensor_init(eng_tensor *t, eng_backend *be, eng_dtype dt, int ndim, const int64_t *shape,
                    eng_error *err);
/* Releases owned data; a no-op for views and for t == NULL. Resets t->data to NULL. */
void eng_tensor_free(eng_tensor *t);

/* A borrowed view of existing memory. */
eng_tensor eng_tensor_view(void *data, eng_backend *be, eng_dtype dt, int ndim, const int64_t *shape);
/*
 * A borrowed view of t with another shape of the same element count; one dim
 * may be -1 (inferred). Returns 0 or ENG_EINVAL.
 */
int eng_tensor_reshape(const eng_tensor *t, int ndim, const int64_t *shape, eng_tensor *out,
                       eng_error *err);

/* Convenience for literal shapes: ENG_SHAPE(2, 3) -> 2, (const int64_t[]){2, 3}. */
#define ENG_SHAPE(...)                                                                             \
    (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[])             \
    {                                                                                              \
        __VA_ARGS__                                                                                \
    }

#endif
