/*
 * safetensors_internal.h - small helpers shared by the safetensors reader
 * (safetensors.c) and writer (safetensors_write.c). Private to the engine.
 */
#ifndef TTTD_ENGINE_SAFETENSORS_INTERNAL_H
#define TTTD_ENGINE_SAFETENSORS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The reference implementation refuses headers above this size; so do we. */
#define ST_MAX_HEADER 100000000ull

typedef struct st_kv {
    char *key;
    char *value;
} st_kv;

static inline int st_reserve(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 8;
    while (ncap < need)
        ncap *= 2;
    if (ncap > SIZE_MAX / elem)
        return -1;
    void *p = realloc(*arr, ncap * elem);
    if (!p)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

/* a * b into *out; 0, or -1 on overflow. */
static inline int st_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a != 0 && b > UINT64_MAX / a)
        return -1;
    *out = a * b;
    return 0;
}

#endif
