/* arena.c - the activation arena of engine/arena.h. */
#include "engine/backend/arena.h"

#include <stdlib.h>
#include <string.h>

/* Keeps every tensor aligned for vector loads and device transactions. */
#define ARENA_ALIGN 256

void eng_arena_init(eng_arena *a, eng_backend *be)
{
    memset(a, 0, sizeof *a);
    a->be = be;
}

void eng_arena_free(eng_arena *a)
{
    if (!a)
        return;
    eng_arena_release(a, (eng_arena_mark){0, 0});
    if (a->base)
        a->be->free(a->be, a->base);
    free(a->ovf);
    eng_backend *be = a->be;
    eng_arena_init(a, be);
}

int eng_arena_tensor(eng_arena *a, eng_tensor *t, eng_dtype dt, int ndim, const int64_t *shape,
                     eng_error *err)
{
    *t = eng_tensor_view(NULL, a->be, dt, ndim, shape);
    size_t n = (eng_tensor_nbytes(t) + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (n == 0)
        n = ARENA_ALIGN;

    if (a->used + n <= a->cap) {
        t->data = a->base + a->used;
        a->used += n;
    } else {
        if (a->novf == a->ovf_cap) {
            size_t cap = a->ovf_cap ? 2 * a->ovf_cap : 32;
            eng_arena_block *grown = realloc(a->ovf, cap * sizeof *grown);
            if (!grown)
                return eng_error_set(err, ENG_ENOMEM, "arena: out of host memory");
            a->ovf = grown;
            a->ovf_cap = cap;
        }
        t->data = a->be->alloc(a->be, n);
        if (!t->data) {
            char s[128];
            return eng_error_set(err, ENG_ENOMEM, "arena: cannot allocate %zu bytes for %s on %s",
                                 n, eng_shape_str(t, s, sizeof s), a->be->name);
        }
        a->ovf[a->novf++] = (eng_arena_block){t->data, n};
        a->ovf_bytes += n;
    }
    if (a->used + a->ovf_bytes > a->peak)
        a->peak = a->used + a->ovf_bytes;
    return 0;
}

eng_arena_mark eng_arena_get_mark(const eng_arena *a)
{
    return (eng_arena_mark){a->used, a->novf};
}

void eng_arena_release(eng_arena *a, eng_arena_mark m)
{
    while (a->novf > m.novf) {
        eng_arena_block *b = &a->ovf[--a->novf];
        a->be->free(a->be, b->ptr);
        a->ovf_bytes -= b->nbytes;
    }
    if (m.used < a->used)
        a->used = m.used;
    /* Empty and outgrown: one block of the high-water size serves the next use. */
    if (a->used == 0 && a->novf == 0 && a->peak > a->cap) {
        if (a->base)
            a->be->free(a->be, a->base);
        a->base = a->be->alloc(a->be, a->peak);
        a->cap = a->base ? a->peak : 0;
        if (!a->base)
            a->peak = 0; /* try again, through overflows, next time */
    }
}
