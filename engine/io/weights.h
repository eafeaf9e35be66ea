/*
 * weights.h - a model's weight store: every tensor of one model on one backend, carved from ONE
 * allocation, converted from the file's dtype to the model's dtype at load, looked up by name.
 *
 * Use in three steps:
 *   1. eng_weights_init over an open eng_safetensors;
 *   2. eng_weights_add for every tensor the model needs, with the shape it expects. The file
 *      tensor is checked at once: a missing tensor is ENG_ENOTFOUND and a misshapen one
 *      ENG_EFORMAT, with a message naming the tensor and the expected shape. A tensor may come
 *      from a slice of a file tensor, with its two halves swapped (eng_weight_src), which is how
 *      the SAI single-file layout's fused qkv and (shift, scale) pairs are read;
 *   3. eng_weights_load: one backend allocation (each tensor 256-byte aligned), every tensor
 *      converted (F32/F16/BF16 -> the model dtype, round to nearest even) and copied in. The
 *      safetensors may be closed after this.
 * Then eng_weights_get returns a tensor by name, again checking the shape the caller expects.
 *
 * Ownership: the store owns its allocation and its tensor records; a returned tensor stays valid
 * until eng_weights_free. Not thread-safe while loading; read-only (so shareable) afterwards.
 */
#ifndef TTTD_ENGINE_WEIGHTS_H
#define TTTD_ENGINE_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/backend/backend.h"
#include "engine/io/safetensors.h"

typedef struct eng_weights eng_weights;

/*
 * Where a model tensor comes from when the file stores it under another name or fused with
 * others. The model tensor (numel n) takes the n elements of the file tensor `name` starting at
 * element `offset` (row-major), and with swap_halves the second half of those n first.
 */
typedef struct eng_weight_src {
    const char *name;              /* the file's tensor */
    int ndim;                      /* its expected shape */
    int64_t shape[ENG_MAX_DIMS];
    int64_t offset;                /* first element taken */
    int swap_halves;               /* model = taken[n/2:] ++ taken[:n/2] (n even) */
} eng_weight_src;

/*
 * label names the checkpoint in messages (its path). st must stay open until eng_weights_load
 * returns. dtype: the model dtype every tensor is converted to (F32, F16 or BF16).
 */
int eng_weights_init(eng_weights **out, const eng_safetensors *st, const char *label,
                     eng_backend *be, eng_dtype dtype, eng_error *err);
/* NULL is a no-op. Releases the allocation and every record. */
void eng_weights_free(eng_weights *w);

/*
 * Declares a model tensor `name` of the given shape, read from the file tensor of the same name
 * and shape (src NULL) or as src says. Checks the file now (see the top of this file); a name
 * declared twice is ENG_EINVAL. Only before eng_weights_load.
 */
int eng_weights_add(eng_weights *w, const char *name, int ndim, const int64_t *shape,
                    const eng_weight_src *src, eng_error *err);

/* Allocates, converts and copies every declared tensor. Once only. */
int eng_weights_load(eng_weights *w, eng_error *err);

/*
 * After eng_weights_load: the tensor `name`, which must have the given shape (ndim < 0 skips the
 * shape check). A name never declared is ENG_ENOTFOUND, another shape ENG_EINVAL; both messages
 * name the tensor and the expected shape.
 */
int eng_weights_get(const eng_weights *w, const char *name, int ndim, const int64_t *shape,
                    const eng_tensor **out, eng_error *err);
/* The tensor `name`, or NULL (no shape check). */
const eng_tensor *eng_weights_find(const eng_weights *w, const char *name);

size_t eng_weights_count(const eng_weights *w);
/* Bytes of the one allocation (0 before eng_weights_load). */
size_t eng_weights_nbytes(const eng_weights *w);
/* Elements over all tensors (the parameter count). */
int64_t eng_weights_numel(const eng_weights *w);

#endif
