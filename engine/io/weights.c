/*
 * weights.c - the weight store of engine/io/weights.h: declared tensors checked against the file,
 * one backend allocation carved into 256-byte aligned tensors, dtype conversion on the host,
 * lookup through an open-addressing hash of the names.
 */
#include "engine/io/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/k_cpu.h"

/* Device allocations and vector loads like 256-byte aligned tensors. */
#define WEIGHTS_ALIGN 256
/* Elements converted per step through the host staging buffers. */
#define CHUNK 65536

typedef struct entry {
    char *name;
    eng_tensor t;              /* dtype and shape set by add, data by load */
    const eng_st_tensor *src;  /* the file tensor */
    int64_t src_offset;        /* first element taken */
    int swap;                  /* halves swapped */
    size_t offset;             /* bytes into the allocation */
} entry;

struct eng_weights {
    const eng_safetensors *st;
    char *label;
    eng_backend *be;
    eng_dtype dtype;
    entry *e;
    size_t n, cap;
    size_t *slots; /* entry index + 1; 0 = empty */
    size_t nslots; /* a power of two, at least 2n */
    void *base;
    size_t nbytes;
    int loaded;
};

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The slot holding name, or the empty slot where it would go. */
static size_t *slot_of(const eng_weights *w, const char *name)
{
    size_t mask = w->nslots - 1, i = (size_t)hash_name(name) & mask;
    while (w->slots[i] && strcmp(w->e[w->slots[i] - 1].name, name) != 0)
        i = (i + 1) & mask;
    return &w->slots[i];
}

/* Grows the slot table to nslots; 0 or ENG_ENOMEM (the caller says whose memory ran out). */
static int rehash(eng_weights *w, size_t nslots)
{
    size_t *old = w->slots, old_n = w->nslots;
    size_t *s = calloc(nslots, sizeof *s);
    if (!s)
        return ENG_ENOMEM;
    w->slots = s;
    w->nslots = nslots;
    for (size_t i = 0; i < old_n; i++)
        if (old[i])
            *slot_of(w, w->e[old[i] - 1].name) = old[i];
    free(old);
    return 0;
}

static char *shape_str(int ndim, const int64_t *shape, char *buf, size_t len)
{
    eng_tensor v = eng_tensor_view(NULL, NULL, ENG_DTYPE_F32, ndim, shape);
    return eng_shape_str(&v, buf, len);
}

int eng_weights_init(eng_weights **out, const eng_safetensors *st, const char *label,
                     eng_backend *be, eng_dtype dtype, eng_error *err)
{
    *out = NULL;
    if (!st || !be)
        return eng_error_set(err, ENG_EINVAL, "weights: NULL safetensors or backend");
    if (dtype != ENG_DTYPE_F32 && dtype != ENG_DTYPE_F16 && dtype != ENG_DTYPE_BF16)
        return eng_error_set(err, ENG_EINVAL, "weights: model dtype %s is not a float dtype",
                             eng_dtype_name(dtype));
    eng_weights *w = calloc(1, sizeof *w);
    if (!w || !(w->label = strdup(label ? label : "checkpoint")) || rehash(w, 64)) {
        eng_weights_free(w);
        return eng_error_set(err, ENG_ENOMEM, "weights: out of memory");
    }
    w->st = st;
    w->be = be;
    w->dtype = dtype;
    *out = w;
    return 0;
}

void eng_weights_free(eng_weights *w)
{
    if (!w)
        return;
    if (w->base)
        w->be->free(w->be, w->base);
    for (size_t i = 0; i < w->n; i++)
        free(w->e[i].name);
    free(w->e);
    free(w->slots);
    free(w->label);
    free(w);
}

/* The file tensor exists, is a float tensor and has the expected shape. */
static int check_src(const eng_weights *w, const char *fname, int ndim, const int64_t *shape,
                     const char *for_name, const eng_st_tensor **out, eng_error *err)
{
    char want[128], got[128], forwhat[320] = "";
    const eng_st_tensor *s = eng_safetensors_find(w->st, fname);

    if (for_name && strcmp(for_name, fname) != 0)
        snprintf(forwhat, sizeof forwhat, " (for %s)", for_name);
    shape_str(ndim, shape, want, sizeof want);
    if (!s)
        return eng_error_set(err, ENG_ENOTFOUND, "%s: tensor \"%s\"%s is missing (expected shape %s)",
                             w->label, fname, forwhat, want);
    int ok = s->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = s->shape[i] == shape[i];
    if (!ok)
        return eng_error_set(err, ENG_EFORMAT, "%s: tensor \"%s\"%s has shape %s, expected %s",
                             w->label, fname, forwhat, shape_str(s->ndim, s->shape, got, sizeof got),
                             want);
    if (s->dtype != ENG_DTYPE_F32 && s->dtype != ENG_DTYPE_F16 && s->dtype != ENG_DTYPE_BF16)
        return eng_error_set(err, ENG_EFORMAT, "%s: tensor \"%s\" has dtype %s, expected a float dtype",
                             w->label, fname, eng_dtype_name(s->dtype));
    *out = s;
    return 0;
}

int eng_weights_add(eng_weights *w, const char *name, int ndim, const int64_t *shape,
                    const eng_weight_src *src, eng_error *err)
{
    const eng_st_tensor *s = NULL;
    entry e;

    if (w->loaded)
        return eng_error_set(err, ENG_EINVAL, "weights: \"%s\" added after load", name);
    if (ndim < 0 || ndim > ENG_MAX_DIMS)
        return eng_error_set(err, ENG_EINVAL, "weights: \"%s\" has rank %d", name, ndim);
    if (*slot_of(w, name))
        return eng_error_set(err, ENG_EINVAL, "weights: \"%s\" declared twice", name);

    memset(&e, 0, sizeof e);
    e.t = eng_tensor_view(NULL, w->be, w->dtype, ndim, shape);
    int64_t n = eng_tensor_numel(&e.t);
    if (!src) {
        ENG_TRY(check_src(w, name, ndim, shape, NULL, &s, err));
    } else {
        ENG_TRY(check_src(w, src->name, src->ndim, src->shape, name, &s, err));
        int64_t avail = (int64_t)(s->nbytes / eng_dtype_size(s->dtype));
        if (src->offset < 0 || src->offset > avail || n > avail - src->offset ||
            (src->swap_halves && n % 2))
            return eng_error_set(err, ENG_EINVAL,
                                 "weights: \"%s\" takes %lld elements at %lld of \"%s\" (%lld)%s",
                                 name, (long long)n, (long long)src->offset, src->name,
                                 (long long)avail, src->swap_halves ? " in two halves" : "");
        e.src_offset = src->offset;
        e.swap = src->swap_halves;
    }
    e.src = s;

    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        entry *grown = realloc(w->e, cap * sizeof *grown);
        if (!grown)
            return eng_error_set(err, ENG_ENOMEM, "weights: out of memory");
        w->e = grown;
        w->cap = cap;
    }
    if (2 * (w->n + 1) > w->nslots && rehash(w, 2 * w->nslots))
        return eng_error_set(err, ENG_ENOMEM, "weights: out of memory");
    if (!(e.name = strdup(name)))
        return eng_error_set(err, ENG_ENOMEM, "weights: out of memory");
    w->e[w->n] = e;
    *slot_of(w, name) = ++w->n;
    return 0;
}

/* dst[0..n) = file tensor s elements [off, off + n) as float. */
static void to_f32(const eng_st_tensor *s, int64_t off, int64_t n, float *dst)
{
    const unsigned char *p = s->data;
    if (s->dtype == ENG_DTYPE_F32) {
        memcpy(dst, p + off * 4, (size_t)n * 4);
        return;
    }
    /* The file data may be only byte-aligned: copy into an aligned buffer first. */
    uint16_t buf[4096];
    for (int64_t i = 0; i < n; i += 4096) {
        int64_t k = n - i < 4096 ? n - i : 4096;
        memcpy(buf, p + (off + i) * 2, (size_t)k * 2);
        if (s->dtype == ENG_DTYPE_F16)
            k_cpu_f16_to_f32(dst + i, buf, k);
        else
            k_cpu_bf16_to_f32(dst + i, buf, k);
    }
}

/*
 * Copies the n elements [off, off + n) of e's file tensor, converted, to dst on the backend;
 * 0 or ENG_EDEVICE.
 */
static int copy_piece(eng_weights *w, const entry *e, int64_t off, int64_t n, char *dst, float *f32,
                      uint16_t *u16, eng_error *err)
{
    size_t es = eng_dtype_size(w->dtype);
    int bad = 0;
    if (e->src->dtype == w->dtype) { /* no conversion: straight from the file data */
        bad = w->be->copy_in(w->be, dst, (const char *)e->src->data + off * (int64_t)es,
                             (size_t)n * es);
    } else {
        for (int64_t i = 0; i < n && !bad; i += CHUNK) {
            int64_t k = n - i < CHUNK ? n - i : CHUNK;
            const void *host = f32;
            to_f32(e->src, off + i, k, f32);
            if (w->dtype == ENG_DTYPE_BF16)
                k_cpu_f32_to_bf16(u16, f32, k), host = u16;
            else if (w->dtype == ENG_DTYPE_F16)
                k_cpu_f32_to_f16(u16, f32, k), host = u16;
            bad = w->be->copy_in(w->be, dst + i * (int64_t)es, host, (size_t)k * es);
        }
    }
    if (bad)
        return eng_error_set(err, ENG_EDEVICE, "%s: copying \"%s\" to %s failed", w->label, e->name,
                             w->be->name);
    return 0;
}

int eng_weights_load(eng_weights *w, eng_error *err)
{
    size_t total = 0;
    if (w->loaded)
        return eng_error_set(err, ENG_EINVAL, "weights: loaded twice");
    for (size_t i = 0; i < w->n; i++) {
        w->e[i].offset = total;
        total += (eng_tensor_nbytes(&w->e[i].t) + WEIGHTS_ALIGN - 1) & ~(size_t)(WEIGHTS_ALIGN - 1);
    }
    w->base = w->be->alloc(w->be, total ? total : WEIGHTS_ALIGN);
    if (!w->base)
        return eng_error_set(err, ENG_ENOMEM, "%s: cannot allocate %zu bytes of weights on %s",
                             w->label, total, w->be->name);
    w->nbytes = total;

    float *f32 = malloc(CHUNK * sizeof *f32);
    uint16_t *u16 = malloc(CHUNK * sizeof *u16);
    int rc = 0;
    if (!f32 || !u16) {
        rc = eng_error_set(err, ENG_ENOMEM, "weights: out of memory");
        goto done;
    }
    for (size_t i = 0; i < w->n; i++) {
        entry *e = &w->e[i];
        char *dst = (char *)w->base + e->offset;
        int64_t n = eng_tensor_numel(&e->t), h = n / 2;
        size_t es = eng_dtype_size(w->dtype);
        if (e->swap) { /* model = taken[n/2:] ++ taken[:n/2] */
            ENG_TRY_DONE(copy_piece(w, e, e->src_offset + h, h, dst, f32, u16, err));
            ENG_TRY_DONE(copy_piece(w, e, e->src_offset, h, dst + h * (int64_t)es, f32, u16, err));
        } else {
            ENG_TRY_DONE(copy_piece(w, e, e->src_offset, n, dst, f32, u16, err));
        }
        e->t.data = dst;
        e->src = NULL; /* the file data may go away now */
    }
    w->st = NULL;
    w->loaded = 1;
done:
    free(f32);
    free(u16);
    return rc;
}

const eng_tensor *eng_weights_find(const eng_weights *w, const char *name)
{
    size_t s = w && name ? *slot_of(w, name) : 0;
    return s && w->loaded ? &w->e[s - 1].t : NULL;
}

int eng_weights_get(const eng_weights *w, const char *name, int ndim, const int64_t *shape,
                    const eng_tensor **out, eng_error *err)
{
    char want[128] = "any", got[128];
    const eng_tensor *t = eng_weights_find(w, name);

    *out = NULL;
    if (ndim >= 0)
        shape_str(ndim, shape, want, sizeof want);
    if (!t)
        return eng_error_set(err, ENG_ENOTFOUND, "weights: no tensor \"%s\" (expected shape %s)%s",
                             name, want, w && !w->loaded ? " before load" : "");
    int ok = ndim < 0 || t->ndim == ndim;
    for (int i = 0; ok && ndim >= 0 && i < ndim; i++)
        ok = t->shape[i] == shape[i];
    if (!ok)
        return eng_error_set(err, ENG_EINVAL, "weights: tensor \"%s\" has shape %s, expected %s",
                             name, eng_shape_str(t, got, sizeof got), want);
    *out = t;
    return 0;
}

size_t eng_weights_count(const eng_weights *w)
{
    return w ? w->n : 0;
}

size_t eng_weights_nbytes(const eng_weights *w)
{
    return w ? w->nbytes : 0;
}

int64_t eng_weights_numel(const eng_weights *w)
{
    int64_t n = 0;
    for (size_t i = 0; w && i < w->n; i++)
        n += eng_tensor_numel(&w->e[i].t);
    return n;
}
