/*
 * test_arena.c - engine/backend/arena.c: tensors carved from the block, overflow allocations when it is
 * too small, release to marks (stack order), and the block regrown to the high-water mark once
 * the arena is empty.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>

#include "engine/backend/arena.h"

static eng_backend *cpu;

static void setup(void)
{
    eng_error err = {0};
    cpu = eng_backend_cpu_create(&err);
    cr_assert_not_null(cpu, "%s", err.msg);
}

static void teardown(void)
{
    eng_backend_destroy(cpu);
}

TestSuite(arena, .init = setup, .fini = teardown);

static eng_tensor take(eng_arena *a, int64_t n)
{
    eng_error err = {0};
    eng_tensor t;
    cr_assert_eq(eng_arena_tensor(a, &t, ENG_DTYPE_F32, ENG_SHAPE(n), &err), 0, "%s", err.msg);
    cr_assert_not_null(t.data);
    cr_assert_eq(t.backend, cpu);
    cr_assert_eq(t.owned, 0);
    cr_assert_eq(t.ndim, 1);
    cr_assert_eq(t.shape[0], n);
    memset(t.data, 0xab, (size_t)n * 4); /* writable (ASan checks the bounds) */
    return t;
}

Test(arena, overflow_then_one_block)
{
    eng_arena a;
    eng_arena_init(&a, cpu);
    eng_arena_mark m0 = eng_arena_get_mark(&a);

    /* First use: no block yet, every tensor is an overflow allocation. */
    take(&a, 100);                 /* 400 bytes -> 512 */
    eng_arena_mark m1 = eng_arena_get_mark(&a);
    take(&a, 1000);                /* 4000 -> 4096 */
    cr_assert_eq(a.novf, 2);
    cr_assert_eq(a.peak, 512 + 4096);
    eng_arena_release(&a, m1);
    cr_assert_eq(a.novf, 1);
    eng_arena_release(&a, m0);
    cr_assert_eq(a.novf, 0);
    cr_assert_eq(a.cap, 512 + 4096, "regrown to the high-water mark");

    /* Second use of the same sizes: all from the block, contiguous and 256-aligned offsets. */
    eng_tensor t1 = take(&a, 100);
    eng_tensor t2 = take(&a, 1000);
    cr_assert_eq(a.novf, 0);
    cr_assert_eq((char *)t1.data, a.base);
    cr_assert_eq((char *)t2.data - (char *)t1.data, 512);
    /* A third tensor does not fit: overflow again, freed on release; the block then grows. */
    take(&a, 10);
    cr_assert_eq(a.novf, 1);
    eng_arena_release(&a, m0);
    cr_assert_eq(a.novf, 0);
    cr_assert_eq(a.used, 0);
    cr_assert_eq(a.cap, 512 + 4096 + 256);
    eng_arena_free(&a);
    cr_assert_null(a.base);
    eng_arena_free(NULL);
}

Test(arena, release_keeps_earlier_tensors)
{
    eng_arena a;
    eng_arena_init(&a, cpu);
    eng_tensor keep = take(&a, 64);
    ((float *)keep.data)[0] = 42.0f;
    eng_arena_release(&a, (eng_arena_mark){0, 0});
    /* Now one block; take, mark, take more, release to the mark: the first stays. */
    keep = take(&a, 64);
    ((float *)keep.data)[0] = 7.0f;
    eng_arena_mark m = eng_arena_get_mark(&a);
    take(&a, 64);
    take(&a, 4096);
    eng_arena_release(&a, m);
    cr_assert_eq(((float *)keep.data)[0], 7.0f);
    cr_assert_eq(a.used, 256);
    eng_arena_free(&a);
}
