/*
 * safetensors_write.c - the safetensors writer declared in safetensors.h.
 *
 * Header keys in name order, data laid out contiguously (as the reference
 * implementation requires, see st_data_order) after a header padded with
 * spaces to a multiple of 8 bytes; written to a temporary file that is
 * renamed over the target.
 */
#include "engine/io/safetensors.h"
#include "engine/io/safetensors_internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct st_wtensor {
    char *name;
    eng_dtype dtype;
    int ndim;
    int64_t shape[ENG_MAX_DIMS];
    void *data;
    size_t nbytes;
    uint64_t offset; /* set by eng_st_writer_write */
} st_wtensor;

struct eng_st_writer {
    st_wtensor *t;
    size_t n, cap;
    st_kv *meta;
    size_t nmeta, meta_cap;
};

int eng_st_writer_init(eng_st_writer **out, eng_error *err)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : eng_error_set(err, ENG_ENOMEM, "safetensors writer: out of memory");
}

void eng_st_writer_free(eng_st_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->t);
    for (size_t i = 0; i < w->nmeta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->meta);
    free(w);
}

/* 1 when s is valid UTF-8 without NULs, which is what a JSON key or string must be here. */
static int st_utf8_ok(const char *s)
{
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

int eng_st_writer_add(eng_st_writer *w, const char *name, eng_dtype dtype, int ndim,
                      const int64_t *shape, const void *data, eng_error *err)
{
    uint64_t numel = 1, nbytes;
    int zero = 0;

    if (!w || !name)
        return eng_error_set(err, ENG_EINVAL, "safetensors writer: NULL writer or tensor name");
    if (!st_utf8_ok(name) || strcmp(name, "__metadata__") == 0)
        return eng_error_set(err, ENG_EINVAL, "safetensors writer: '%s' cannot be a tensor name",
                             name);
    if (eng_dtype_size(dtype) == 0)
        return eng_error_set(err, ENG_EINVAL, "safetensors writer: tensor '%s': unknown dtype %d",
                             name, (int)dtype);
    if (ndim < 0 || ndim > ENG_MAX_DIMS || (ndim > 0 && !shape))
        return eng_error_set(err, ENG_EINVAL, "safetensors writer: tensor '%s': rank %d outside "
                             "0..%d", name, ndim, ENG_MAX_DIMS);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return eng_error_set(err, ENG_EINVAL, "safetensors writer: tensor '%s': dim %d is "
                                 "negative", name, i);
        if (shape[i] == 0)
            zero = 1;
        else if (!zero && st_mul_u64(numel, (uint64_t)shape[i], &numel))
            return eng_error_set(err, ENG_EINVAL, "safetensors writer: tensor '%s' is too large",
                                 name);
    }
    if (zero)
        numel = 0;
    if (st_mul_u64(numel, eng_dtype_size(dtype), &nbytes) || nbytes > SIZE_MAX / 2)
        return eng_error_set(err, ENG_EINVAL, "safetensors writer: tensor '%s' is too large", name);
    if (nbytes && !data)
        return eng_error_set(err, ENG_EINVAL, "safetensors writer: tensor '%s': data is NULL",
                             name);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return eng_error_set(err, ENG_EINVAL, "safetensors writer: tensor '%s' added twice",
                                 name);
    if (st_reserve((void **)&w->t, &w->cap, w->n + 1, sizeof *w->t))
        return eng_error_set(err, ENG_ENOMEM, "safetensors writer: out of memory");

    st_wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->data = malloc(nbytes ? (size_t)nbytes : 1);
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        return eng_error_set(err, ENG_ENOMEM, "safetensors writer: tensor '%s': out of memory "
                             "for %llu bytes", name, (unsigned long long)nbytes);
    }
    if (nbytes)
        memcpy(t->data, data, (size_t)nbytes);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->nbytes = (size_t)nbytes;
    w->n++;
    return 0;
}

int eng_st_writer_set_metadata(eng_st_writer *w, const char *key, const char *value,
                               eng_error *err)
{
    if (!w || !key || !value)
        return eng_error_set(err, ENG_EINVAL, "safetensors writer: NULL metadata key or value");
    if (!st_utf8_ok(key) || !st_utf8_ok(value))
        return eng_error_set(err, ENG_EINVAL,
                             "safetensors writer: metadata \"%s\" is not valid UTF-8", key);
    char *v = strdup(value);
    if (!v)
        return eng_error_set(err, ENG_ENOMEM, "safetensors writer: out of memory");
    for (size_t i = 0; i < w->nmeta; i++) {
        if (strcmp(w->meta[i].key, key) == 0) { /* a second set replaces the value */
            free(w->meta[i].value);
            w->meta[i].value = v;
            return 0;
        }
    }
    char *k = strdup(key);
    if (!k || st_reserve((void **)&w->meta, &w->meta_cap, w->nmeta + 1, sizeof *w->meta)) {
        free(k);
        free(v);
        return eng_error_set(err, ENG_ENOMEM, "safetensors writer: out of memory");
    }
    w->meta[w->nmeta].key = k;
    w->meta[w->nmeta].value = v;
    w->nmeta++;
    return 0;
}

static int st_cmp_wtensor(const void *a, const void *b)
{
    return strcmp(((const st_wtensor *)a)->name, ((const st_wtensor *)b)->name);
}

/* Larger elements first, then by name (see st_data_order). */
static int st_cmp_wdata(const void *a, const void *b)
{
    const st_wtensor *x = *(const st_wtensor *const *)a, *y = *(const st_wtensor *const *)b;
    size_t sx = eng_dtype_size(x->dtype), sy = eng_dtype_size(y->dtype);
    if (sx != sy)
        return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

/*
 * The order of the data section. The reference implementation rejects a file
 * whose tensors do not tile the data section exactly (no gaps), so padding
 * between tensors is not an option. Laying out 4-byte dtypes before 2-byte
 * ones (as the reference writer does), after a header padded to a multiple of
 * 8, gives every tensor the natural alignment of its dtype.
 */
static st_wtensor **st_data_order(eng_st_writer *w)
{
    st_wtensor **order = malloc((w->n + 1) * sizeof *order);
    if (!order)
        return NULL;
    for (size_t i = 0; i < w->n; i++)
        order[i] = &w->t[i];
    qsort(order, w->n, sizeof *order, st_cmp_wdata);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        order[i]->offset = off;
        off += order[i]->nbytes;
    }
    return order;
}

/* The header JSON: __metadata__ first, then tensors in name order (w->t sorted by name). */
static char *st_header_json(const eng_st_writer *w)
{
    json_t *root = json_object(), *meta = NULL;
    char *s = NULL;

    if (!root)
        return NULL;
    if (w->nmeta) {
        meta = json_object();
        if (!meta || json_object_set_new(root, "__metadata__", meta))
            goto done;
        for (size_t i = 0; i < w->nmeta; i++)
            if (json_object_set_new(meta, w->meta[i].key, json_string(w->meta[i].value)))
                goto done;
    }
    for (size_t i = 0; i < w->n; i++) {
        const st_wtensor *t = &w->t[i];
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        /* json_object_set_new takes its value even on failure; each value is handed over
         * once, so nothing leaks and nothing is released twice. */
        int bad = json_object_set_new(root, t->name, e);
        bad |= json_object_set_new(bad ? NULL : e, "dtype", json_string(eng_dtype_name(t->dtype)));
        bad |= json_object_set_new(bad ? NULL : e, "shape", shape);
        bad |= json_object_set_new(bad ? NULL : e, "data_offsets", offs);
        if (bad)
            goto done;
        if (json_array_append_new(offs, json_integer((json_int_t)t->offset)) ||
            json_array_append_new(offs, json_integer((json_int_t)(t->offset + t->nbytes))))
            goto done;
        for (int d = 0; d < t->ndim; d++)
            if (json_array_append_new(shape, json_integer((json_int_t)t->shape[d])))
                goto done;
    }
    s = json_dumps(root, JSON_COMPACT);
done:
    json_decref(root);
    return s;
}

static int st_write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t k = write(fd, p, n < (1u << 30) ? n : (1u << 30));
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

int eng_st_writer_write(eng_st_writer *w, const char *path, eng_error *err)
{
    st_wtensor **order = NULL;
    char *json = NULL, *tmp = NULL;
    uint8_t lenbuf[8];
    int fd = -1, rc = 0;

    if (!w || !path)
        return eng_error_set(err, ENG_EINVAL, "safetensors writer: NULL writer or path");
    if (w->n > 1)
        qsort(w->t, w->n, sizeof *w->t, st_cmp_wtensor);
    order = st_data_order(w);
    json = order ? st_header_json(w) : NULL;
    tmp = malloc(strlen(path) + sizeof ".tmp.XXXXXX");
    if (!json || !tmp) {
        rc = eng_error_set(err, ENG_ENOMEM, "%s: out of memory for the header", path);
        goto done;
    }
    size_t hlen = strlen(json), padded = (hlen + 7) / 8 * 8;
    if (padded > ST_MAX_HEADER) {
        rc = eng_error_set(err, ENG_EINVAL, "%s: header of %zu bytes is over the limit", path,
                           padded);
        goto done;
    }
    for (int i = 0; i < 8; i++)
        lenbuf[i] = (uint8_t)((uint64_t)padded >> (8 * i));

    strcpy(tmp, path);
    strcat(tmp, ".tmp.XXXXXX");
    fd = mkstemp(tmp);
    if (fd < 0) {
        rc = eng_error_set(err, ENG_EIO, "%s: cannot create a temporary file: %s", path,
                           strerror(errno));
        goto done;
    }
    static const char spaces[8] = "        ";
    if (fchmod(fd, 0644) != 0 || st_write_all(fd, lenbuf, 8) || st_write_all(fd, json, hlen) ||
        st_write_all(fd, spaces, padded - hlen))
        goto io_error;
    for (size_t i = 0; i < w->n; i++)
        if (st_write_all(fd, order[i]->data, order[i]->nbytes))
            goto io_error;
    if (fsync(fd) != 0)
        goto io_error;
    rc = close(fd);
    fd = -1;
    if (rc != 0 || rename(tmp, path) != 0)
        goto io_error;
    goto done;

io_error:
    rc = eng_error_set(err, ENG_EIO, "%s: write failed: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    fd = -1;
    unlink(tmp);
done:
    free(tmp);
    free(json);
    free(order);
    return rc;
}
