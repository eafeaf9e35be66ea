/*
 * arena.h - activation memory for a model's forward pass: a bump allocator over one backend
 * allocation, with stack-like marks.
 *
 * A forward takes tensors from the arena and gives them back by releasing to a mark. When the
 * block is too small, a tensor gets its own backend allocation instead (an overflow), freed on
 * release; when the arena is next empty and the high-water mark of the last use was above its
 * size, the block is reallocated to that size. So the first forward of a new, larger shape pays
 * for separate allocations, and every later one of that shape or smaller runs from one block:
 * the arena ends up sized by the largest batch seen.
 *
 * Tensors from the arena are views (eng_tensor_free leaves them alone); they stay valid until a
 * release to a mark taken before them. An arena belongs to one thread.
 */
#ifndef TTTD_ENGINE_ARENA_H
#define TTTD_ENGINE_ARENA_H

#include <stddef.h>

#include "engine/backend/backend.h"

typedef struct eng_arena_block {
    void *ptr;
    size_t nbytes;
} eng_arena_block;

typedef struct eng_arena {
    eng_backend *be;
    char *base;            /* the block, cap bytes */
    size_t cap, used;
    size_t peak;           /* most bytes live at once (block + overflows) since the last resize */
    eng_arena_block *ovf;  /* live overflow allocations, in allocation order */
    size_t novf, ovf_cap;
    size_t ovf_bytes;
} eng_arena;

typedef struct eng_arena_mark {
    size_t used, novf;
} eng_arena_mark;

/* An empty arena on be (no memory taken until first use). */
void eng_arena_init(eng_arena *a, eng_backend *be);
/* Frees everything; the arena may be initialised again. NULL is a no-op. */
void eng_arena_free(eng_arena *a);

/* An uninitialised tensor of the given dtype and shape. Returns 0 or ENG_ENOMEM. */
int eng_arena_tensor(eng_arena *a, eng_tensor *t, eng_dtype dt, int ndim, const int64_t *shape,
                     eng_error *err);
eng_arena_mark eng_arena_get_mark(const eng_arena *a);
/* Gives back every tensor taken after mark m. */
void eng_arena_release(eng_arena *a, eng_arena_mark m);

#endif
