/*
 * safetensors.h - read and write safetensors files, including sharded
 * checkpoints described by a *.safetensors.index.json.
 *
 * The file format: 8 bytes little-endian header length L, L bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 * "__metadata__": {"k": "v"}}, then the data; offsets are relative to the
 * first byte after the header. Everything is validated on open (header length,
 * JSON shape, dtype names, offsets inside the file, end - begin =
 * numel x dtype size, no two tensors overlapping); a failure names the file
 * and the tensor. Dtypes read: F32, F16, BF16 (and I32).
 *
 * Ownership: an eng_safetensors owns a copy of each file it opened (read whole
 * at open, not mapped, so that a file changed on disk afterwards cannot fault
 * or alter it); the eng_st_tensor records and their data pointers stay valid
 * until eng_safetensors_close. Read-only after open, so one instance may be
 * shared by threads.
 */
#ifndef TTTD_ENGINE_SAFETENSORS_H
#define TTTD_ENGINE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/core/error.h"
#include "engine/backend/tensor.h"

typedef struct eng_st_tensor {
    const char *name;
    eng_dtype dtype;
    int ndim;
    int64_t shape[ENG_MAX_DIMS];
    const void *data; /* inside the file's copy; may be unaligned for its dtype */
    size_t nbytes;
    const char *file; /* the file that holds it */
} eng_st_tensor;

typedef struct eng_safetensors eng_safetensors;

/*
 * Opens one .safetensors file, or a *.safetensors.index.json (every shard it
 * names, each validated; every tensor of the weight_map must be found in the
 * shard it names). Returns 0 or a negative code.
 */
int eng_safetensors_open(eng_safetensors **out, const char *path, eng_error *err);
/*
 * Opens the weights of a component folder: its *.safetensors.index.json when
 * there is one, else every *.safetensors file in it (in name order). A name
 * found in two files is an error.
 */
int eng_safetensors_open_dir(eng_safetensors **out, const char *dir, eng_error *err);
/*
 * Validates and indexes a whole file image held in memory (no copy: buf must
 * outlive the result). label names it in messages. Used by tests and the fuzzer.
 */
int eng_safetensors_open_memory(eng_safetensors **out, const void *buf, size_t len,
                                const char *label, eng_error *err);
/* NULL is a no-op. */
void eng_safetensors_close(eng_safetensors *st);

size_t eng_safetensors_count(const eng_safetensors *st);
/* Tensors in name order; NULL when i is out of range. */
const eng_st_tensor *eng_safetensors_at(const eng_safetensors *st, size_t i);
/* NULL when absent. */
const eng_st_tensor *eng_safetensors_find(const eng_safetensors *st, const char *name);
/* A string value of __metadata__ (of the first file that has the key), or NULL. */
const char *eng_safetensors_metadata(const eng_safetensors *st, const char *key);

/*
 * Converts a stored tensor to float32 into dst (numel floats). Returns 0 or
 * ENG_EUNSUPPORTED for a non-float dtype.
 */
int eng_st_tensor_to_f32(const eng_st_tensor *t, float *dst, eng_error *err);

/*
 * Writer (for tests and tools). Header keys in name order, with an optional
 * __metadata__; the data tiles the data section without gaps (the reference
 * reader rejects gaps), 4-byte dtypes first, so each tensor is aligned to its
 * element size. The writer copies names and data on add.
 */
typedef struct eng_st_writer eng_st_writer;

int eng_st_writer_init(eng_st_writer **out, eng_error *err);
int eng_st_writer_add(eng_st_writer *w, const char *name, eng_dtype dtype, int ndim,
                      const int64_t *shape, const void *data, eng_error *err);
int eng_st_writer_set_metadata(eng_st_writer *w, const char *key, const char *value,
                               eng_error *err);
/* Writes atomically (temporary file then rename). */
int eng_st_writer_write(eng_st_writer *w, const char *path, eng_error *err);
void eng_st_writer_free(eng_st_writer *w);

#endif
