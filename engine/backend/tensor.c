/* tensor.c - dtype table, shape helpers, tensor allocation on a backend. */
#include "engine/backend/tensor.h"
#include "engine/backend/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {
    [ENG_DTYPE_F32] = {"F32", 4},
    [ENG_DTYPE_F16] = {"F16", 2},
    [ENG_DTYPE_BF16] = {"BF16", 2},
    [ENG_DTYPE_I32] = {"I32", 4},
};

size_t eng_dtype_size(eng_dtype dt)
{
    return (unsigned)dt < sizeof dtype_info / sizeof dtype_info[0] ? dtype_info[dt].size : 0;
}

const char *eng_dtype_name(eng_dtype dt)
{
    return (unsigned)dt < sizeof dtype_info / sizeof dtype_info[0] ? dtype_info[dt].name : "?";
}

int eng_dtype_parse(const char *name, eng_dtype *out)
{
    for (size_t i = 0; i < sizeof dtype_info / sizeof dtype_info[0]; i++) {
        if (name && strcmp(name, dtype_info[i].name) == 0) {
            *out = (eng_dtype)i;
            return 0;
        }
    }
    return ENG_EUNSUPPORTED;
}

int64_t eng_tensor_numel(const eng_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

size_t eng_tensor_nbytes(const eng_tensor *t)
{
    return (size_t)eng_tensor_numel(t) * eng_dtype_size(t->dtype);
}

int eng_tensor_same_shape(const eng_tensor *a, const eng_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

char *eng_shape_str(const eng_tensor *t, char *buf, size_t len)
{
    size_t n = 0;
    if (len == 0)
        return buf;
    buf[0] = '\0';
    n += (size_t)snprintf(buf + n, len - n, "[");
    for (int i = 0; i < t->ndim && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (n < len)
        snprintf(buf + n, len - n, "]");
    return buf;
}

static int check_shape(int ndim, const int64_t *shape, eng_error *err)
{
    if (ndim < 0 || ndim > ENG_MAX_DIMS)
        return eng_error_set(err, ENG_EINVAL, "tensor rank %d outside 0..%d", ndim, ENG_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return eng_error_set(err, ENG_EINVAL, "tensor dim %d is negative (%lld)", i,
                                 (long long)shape[i]);
    return 0;
}

int eng_tensor_init(eng_tensor *t, eng_backend *be, eng_dtype dt, int ndim, const int64_t *shape,
                    eng_error *err)
{
    int rc = check_shape(ndim, shape, err);
    size_t nbytes;

    memset(t, 0, sizeof *t);
    if (rc)
        return rc;
    if (eng_dtype_size(dt) == 0)
        return eng_error_set(err, ENG_EINVAL, "unknown dtype %d", (int)dt);
    t->dtype = dt;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    nbytes = eng_tensor_nbytes(t);
    /* Allocate at least one byte so that an empty tensor still has a valid pointer. */
    t->data = be ? be->alloc(be, nbytes ? nbytes : 1) : malloc(nbytes ? nbytes : 1);
    if (!t->data) {
        char s[128];
        return eng_error_set(err, ENG_ENOMEM, "cannot allocate %zu bytes for a %s tensor %s on %s",
                             nbytes, eng_dtype_name(dt), eng_shape_str(t, s, sizeof s),
                             be ? be->name : "host");
    }
    t->backend = be;
    t->owned = 1;
    return 0;
}

void eng_tensor_free(eng_tensor *t)
{
    if (!t)
        return;
    if (t->owned && t->data) {
        if (t->backend)
            t->backend->free(t->backend, t->data);
        else
            free(t->data);
    }
    t->data = NULL;
    t->owned = 0;
}

eng_tensor eng_tensor_view(void *data, eng_backend *be, eng_dtype dt, int ndim, const int64_t *shape)
{
    eng_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dt;
    t.ndim = ndim < 0 ? 0 : ndim > ENG_MAX_DIMS ? ENG_MAX_DIMS : ndim;
    memcpy(t.shape, shape, (size_t)t.ndim * sizeof *shape);
    t.data = data;
    t.backend = be;
    return t;
}

int eng_tensor_reshape(const eng_tensor *t, int ndim, const int64_t *shape, eng_tensor *out,
                       eng_error *err)
{
    int64_t known = 1, total = eng_tensor_numel(t);
    int infer = -1;
    int64_t dims[ENG_MAX_DIMS];

    if (ndim < 0 || ndim > ENG_MAX_DIMS)
        return eng_error_set(err, ENG_EINVAL, "reshape to rank %d outside 0..%d", ndim, ENG_MAX_DIMS);
    for (int i = 0; i < ndim; i++) {
        dims[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0)
                return eng_error_set(err, ENG_EINVAL, "reshape with more than one -1 dim");
            infer = i;
        } else if (shape[i] < 0) {
            return eng_error_set(err, ENG_EINVAL, "reshape with negative dim %lld",
                                 (long long)shape[i]);
        } else {
            known *= shape[i];
        }
    }
    if (infer >= 0) {
        if (known == 0 || total % known != 0)
            return eng_error_set(err, ENG_EINVAL, "cannot infer dim %d: %lld elements over %lld",
                                 infer, (long long)total, (long long)known);
        dims[infer] = total / known;
        known *= dims[infer];
    }
    if (known != total) {
        char s[128];
        return eng_error_set(err, ENG_EINVAL, "cannot reshape %s (%lld elements) to %lld elements",
                             eng_shape_str(t, s, sizeof s), (long long)total, (long long)known);
    }
    *out = eng_tensor_view(t->data, t->backend, t->dtype, ndim, dims);
    return 0;
}
