/*
 * safetensors.c - the safetensors reader and writer declared in safetensors.h.
 *
 * The reader: each file is read whole into memory the eng_safetensors owns (or
 * taken from the caller's memory), its header parsed with jansson and checked
 * completely before anything is handed out: header length, JSON shape, dtypes,
 * shapes, offsets, sizes and overlaps. Every resource an open acquires hangs
 * off the eng_safetensors being built, so every failure path is one
 * eng_safetensors_close.
 * The writer is in safetensors_write.c.
 */
#include "engine/io/safetensors.h"
#include "engine/core/fsutil.h"
#include "engine/io/safetensors_internal.h"

#include "kernels/cpu/k_cpu.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


typedef struct st_file {
    char *label; /* path, or the caller's label for a memory image */
    void *data;  /* the file's bytes, owned; NULL for a memory image */
    st_kv *meta; /* __metadata__, in header order */
    size_t nmeta;
} st_file;

struct eng_safetensors {
    st_file *files;
    size_t nfiles, files_cap;
    eng_st_tensor *tensors; /* sorted by name once the open completes */
    size_t count, cap;
};

/* One tensor's byte range in its file's data section, for the overlap check. */
typedef struct st_span {
    uint64_t begin, end;
    size_t tensor; /* index into eng_safetensors.tensors */
} st_span;

/* ---- small helpers ---- */




/* dir + "/" + name, without doubling a trailing slash; NULL when out of memory. */
static char *st_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir), m = strlen(name);
    int slash = n > 0 && dir[n - 1] != '/';
    char *p = malloc(n + (size_t)slash + m + 1);
    if (!p)
        return NULL;
    memcpy(p, dir, n);
    if (slash)
        p[n] = '/';
    memcpy(p + n + (size_t)slash, name, m + 1);
    return p;
}

/* The folder part of path ("." when there is none); NULL when out of memory. */
static char *st_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

static int st_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int st_cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const eng_st_tensor *)a)->name, ((const eng_st_tensor *)b)->name);
}

static int st_cmp_span(const void *a, const void *b)
{
    const st_span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

/* Safetensors dtypes that are valid in the format but that tttd does not read. */
static int st_known_dtype(const char *name)
{
    static const char *const other[] = {
        "F64",     "I64",      "U64",      "U32",     "I16",     "U16",      "I8",
        "U8",      "BOOL",     "F8_E4M3",  "F8_E5M2", "F8_E8M0", "F6_E2M3",  "F6_E3M2",
        "F4",      "C64",      "F8_E4M3FNUZ", "F8_E5M2FNUZ",
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        if (strcmp(name, other[i]) == 0)
            return 1;
    return 0;
}

/* A JSON integer >= 0 into *out; 0, or -1 when v is not one. */
static int st_json_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* ---- reader: building an eng_safetensors ---- */

/*
 * Appends a file record; takes ownership of data (freed here on failure, else
 * by eng_safetensors_close). Returns the file's index in *fi.
 */
static int st_push_file(eng_safetensors *st, const char *label, void *data, size_t *fi,
                        eng_error *err)
{
    char *copy = strdup(label);
    if (!copy || st_reserve((void **)&st->files, &st->files_cap, st->nfiles + 1,
                            sizeof *st->files)) {
        free(copy);
        free(data);
        return eng_error_set(err, ENG_ENOMEM, "%s: out of memory", label);
    }
    st_file *f = &st->files[st->nfiles];
    memset(f, 0, sizeof *f);
    f->label = copy;
    f->data = data;
    *fi = st->nfiles++;
    return 0;
}

static int st_parse_metadata(st_file *f, const json_t *obj, eng_error *err)
{
    const char *key;
    json_t *val;

    if (!json_is_object(obj))
        return eng_error_set(err, ENG_EFORMAT, "%s: __metadata__ is not a JSON object", f->label);
    f->meta = calloc(json_object_size(obj) + 1, sizeof *f->meta);
    if (!f->meta)
        return eng_error_set(err, ENG_ENOMEM, "%s: out of memory", f->label);
    json_object_foreach((json_t *)obj, key, val) {
        if (!json_is_string(val))
            return eng_error_set(err, ENG_EFORMAT,
                                 "%s: __metadata__ value of \"%s\" is not a string", f->label, key);
        st_kv *kv = &f->meta[f->nmeta];
        kv->key = strdup(key);
        kv->value = strdup(json_string_value(val));
        f->nmeta++; /* counted before the check so that close frees a half-made pair */
        if (!kv->key || !kv->value)
            return eng_error_set(err, ENG_ENOMEM, "%s: out of memory", f->label);
    }
    return 0;
}

/*
 * Checks one header entry and fills t (all but name and file) and span.
 * data/data_len: the file's data section.
 */
static int st_parse_entry(const char *label, const char *name, const json_t *val,
                          const uint8_t *data, size_t data_len, eng_st_tensor *t, st_span *span,
                          eng_error *err)
{
    const json_t *jd, *js, *jo;
    eng_dtype dt;
    uint64_t numel = 1, nbytes, begin, end;
    int zero = 0;

    if (!json_is_object(val))
        return eng_error_set(err, ENG_EFORMAT, "%s: tensor '%s': entry is not a JSON object", label,
                             name);

    jd = json_object_get(val, "dtype");
    if (!json_is_string(jd))
        return eng_error_set(err, ENG_EFORMAT, "%s: tensor '%s': \"dtype\" is %s", label, name,
                             jd ? "not a string" : "missing");
    if (eng_dtype_parse(json_string_value(jd), &dt) != 0) {
        const char *s = json_string_value(jd);
        if (st_known_dtype(s))
            return eng_error_set(err, ENG_EUNSUPPORTED,
                                 "%s: tensor '%s' has dtype %s; tttd reads F32, F16, BF16, I32",
                                 label, name, s);
        return eng_error_set(err, ENG_EFORMAT, "%s: tensor '%s': unknown dtype \"%s\"", label, name,
                             s);
    }

    js = json_object_get(val, "shape");
    if (!json_is_array(js))
        return eng_error_set(err, ENG_EFORMAT, "%s: tensor '%s': \"shape\" is %s", label, name,
                             js ? "not an array" : "missing");
    size_t rank = json_array_size(js);
    for (size_t i = 0; i < rank; i++) {
        uint64_t d;
        if (st_json_u64(json_array_get(js, i), &d))
            return eng_error_set(err, ENG_EFORMAT,
                                 "%s: tensor '%s': shape[%zu] is not a non-negative integer", label,
                                 name, i);
        if (d == 0)
            zero = 1;
    }
    if (rank > ENG_MAX_DIMS)
        return eng_error_set(err, ENG_EUNSUPPORTED, "%s: tensor '%s' has rank %zu; at most %d",
                             label, name, rank, ENG_MAX_DIMS);
    t->ndim = (int)rank;
    for (size_t i = 0; i < rank; i++) {
        t->shape[i] = (int64_t)json_integer_value(json_array_get(js, i));
        /* A zero dim makes the product 0 whatever the others are. */
        if (!zero && st_mul_u64(numel, (uint64_t)t->shape[i], &numel))
            return eng_error_set(err, ENG_EFORMAT,
                                 "%s: tensor '%s': element count overflows 64 bits", label, name);
    }
    if (zero)
        numel = 0;
    if (st_mul_u64(numel, eng_dtype_size(dt), &nbytes))
        return eng_error_set(err, ENG_EFORMAT, "%s: tensor '%s': byte size overflows 64 bits",
                             label, name);

    jo = json_object_get(val, "data_offsets");
    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        st_json_u64(json_array_get(jo, 0), &begin) || st_json_u64(json_array_get(jo, 1), &end))
        return eng_error_set(err, ENG_EFORMAT,
                             "%s: tensor '%s': \"data_offsets\" is %s, expected [begin, end] of "
                             "non-negative integers",
                             label, name, jo ? "malformed" : "missing");
    if (begin > end)
        return eng_error_set(err, ENG_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu]: end is "
                             "before begin", label, name, (unsigned long long)begin,
                             (unsigned long long)end);
    if (end > data_len)
        return eng_error_set(err, ENG_EFORMAT,
                             "%s: tensor '%s': data_offsets end %llu is beyond the data section "
                             "(%zu bytes); is the file truncated?",
                             label, name, (unsigned long long)end, data_len);
    if (end - begin != nbytes)
        return eng_error_set(err, ENG_EFORMAT,
                             "%s: tensor '%s': data_offsets span %llu bytes, but %s x %llu "
                             "elements need %llu",
                             label, name, (unsigned long long)(end - begin), eng_dtype_name(dt),
                             (unsigned long long)numel, (unsigned long long)nbytes);

    t->dtype = dt;
    t->data = data + begin;
    t->nbytes = (size_t)nbytes;
    span->begin = begin;
    span->end = end;
    return 0;
}

/* Parses and checks the image (base, len) of file fi; appends its tensors. */
static int st_parse_file(eng_safetensors *st, size_t fi, const uint8_t *base, size_t len,
                         eng_error *err)
{
    const char *label = st->files[fi].label;
    json_t *root = NULL, *val;
    json_error_t jerr;
    st_span *spans = NULL;
    size_t nspans = 0;
    const char *key;
    uint64_t hlen = 0;
    int rc = 0;

    if (len < 8)
        return eng_error_set(err, ENG_EFORMAT,
                             "%s: %zu bytes, too short for the 8-byte header length", label, len);
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)base[i] << (8 * i);
    if (hlen == 0)
        return eng_error_set(err, ENG_EFORMAT, "%s: header length is 0", label);
    if (hlen > ST_MAX_HEADER)
        return eng_error_set(err, ENG_EFORMAT, "%s: header length %llu is over the %llu-byte limit",
                             label, (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > len - 8)
        return eng_error_set(err, ENG_EFORMAT,
                             "%s: header length %llu is beyond the file (%zu bytes after the "
                             "length); is the file truncated?",
                             label, (unsigned long long)hlen, len - 8);
    const uint8_t *data = base + 8 + hlen;
    size_t data_len = len - 8 - (size_t)hlen;

    /* Duplicate keys would make a tensor ambiguous; jansson also rejects bad UTF-8 and NULs. */
    root = json_loadb((const char *)base + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return eng_error_set(err, ENG_EFORMAT, "%s: header is not valid JSON: %s (at byte %d)",
                             label, jerr.text, jerr.position);
    if (!json_is_object(root)) {
        rc = eng_error_set(err, ENG_EFORMAT, "%s: header is not a JSON object", label);
        goto done;
    }
    size_t n = json_object_size(root);
    spans = calloc(n + 1, sizeof *spans);
    if (!spans || st_reserve((void **)&st->tensors, &st->cap, st->count + n, sizeof *st->tensors)) {
        rc = eng_error_set(err, ENG_ENOMEM, "%s: out of memory for %zu tensors", label, n);
        goto done;
    }
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (st->files[fi].meta) /* unreachable with JSON_REJECT_DUPLICATES; kept as a guard */
                continue;
            ENG_TRY_DONE(st_parse_metadata(&st->files[fi], val, err));
            continue;
        }
        eng_st_tensor *t = &st->tensors[st->count];
        memset(t, 0, sizeof *t);
        ENG_TRY_DONE(st_parse_entry(label, key, val, data, data_len, t, &spans[nspans], err));
        t->name = strdup(key);
        if (!t->name) {
            rc = eng_error_set(err, ENG_ENOMEM, "%s: out of memory", label);
            goto done;
        }
        t->file = label;
        spans[nspans++].tensor = st->count++;
    }

    /* Overlaps: sorted by offset, each tensor must start at or after the furthest end so far.
     * Empty tensors hold no bytes and cannot overlap anything. */
    qsort(spans, nspans, sizeof *spans, st_cmp_span);
    const st_span *last = NULL;
    for (size_t i = 0; i < nspans; i++) {
        if (spans[i].begin == spans[i].end)
            continue;
        if (last && spans[i].begin < last->end) {
            rc = eng_error_set(err, ENG_EFORMAT,
                               "%s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap",
                               label, st->tensors[last->tensor].name,
                               (unsigned long long)last->begin, (unsigned long long)last->end,
                               st->tensors[spans[i].tensor].name,
                               (unsigned long long)spans[i].begin,
                               (unsigned long long)spans[i].end);
            goto done;
        }
        if (!last || spans[i].end > last->end)
            last = &spans[i];
    }
done:
    free(spans);
    json_decref(root);
    return rc;
}

/* Sorts all tensors by name and rejects a name found twice (in two files). */
static int st_finish(eng_safetensors *st, eng_error *err)
{
    if (st->count > 1)
        qsort(st->tensors, st->count, sizeof *st->tensors, st_cmp_tensor);
    for (size_t i = 1; i < st->count; i++)
        if (strcmp(st->tensors[i - 1].name, st->tensors[i].name) == 0)
            return eng_error_set(err, ENG_EFORMAT, "tensor '%s' is in both %s and %s",
                                 st->tensors[i].name, st->tensors[i - 1].file,
                                 st->tensors[i].file);
    return 0;
}

/*
 * Reads len bytes of fd into a new buffer (*out, malloc'ed). The whole file is read at open,
 * not mapped: the weights are then ours, so a file truncated or rewritten in place while the
 * model loads or serves (a deploy copying over it) can neither kill the process with SIGBUS
 * nor change weights under it. One read per file (a loop only for the kernel's 2 GiB cap per
 * call); the buffer lives until eng_safetensors_close, which loaders call once the weights are
 * copied to their backend.
 */
static int st_read_all(int fd, const char *path, size_t len, void **out, eng_error *err)
{
    /* One byte more than expected, so that a file grown since fstat is noticed. */
    unsigned char *buf = malloc(len + 1);
    if (!buf)
        return eng_error_set(err, ENG_ENOMEM, "%s: cannot allocate %zu bytes to read it", path,
                             len);
    size_t got = 0;
    while (got <= len) {
        ssize_t n = read(fd, buf + got, len + 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            free(buf);
            return eng_error_set(err, ENG_EIO, "%s: read failed after %zu of %zu bytes: %s",
                                 path, got, len, strerror(e));
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    if (got != len) {
        free(buf);
        return eng_error_set(err, ENG_EIO, "%s: the file changed while it was read (%zu bytes "
                             "read, %zu expected)", path, got, len);
    }
    *out = buf;
    return 0;
}

/* Reads one .safetensors file into memory and appends its tensors. */
static int st_add_file(eng_safetensors *st, const char *path, eng_error *err)
{
    struct stat sb;
    void *data = NULL;
    size_t fi;
    int fd, rc;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return eng_error_set(err, errno == ENOENT ? ENG_ENOTFOUND : ENG_EIO, "%s: cannot open: %s",
                             path, strerror(errno));
    if (fstat(fd, &sb) != 0) {
        rc = eng_error_set(err, ENG_EIO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return eng_error_set(err, ENG_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size >= SIZE_MAX) {
        close(fd);
        return eng_error_set(err, ENG_EIO, "%s: too large to read", path);
    }
    rc = st_read_all(fd, path, (size_t)sb.st_size, &data, err);
    close(fd);
    if (rc)
        return rc;
    ENG_TRY(st_push_file(st, path, data, &fi, err));
    /* An empty file still has a buffer (of one byte); st_parse_file reports it. */
    return st_parse_file(st, fi, data, (size_t)sb.st_size, err);
}

/* Opens every shard an index names and checks the weight_map against them. */
static int st_add_index(eng_safetensors *st, const char *path, eng_error *err)
{
    json_t *root = NULL, *map, *val;
    json_error_t jerr;
    const char **shards = NULL;
    char *dir = NULL, *full = NULL;
    const char *key;
    size_t nshards = 0, first_file = st->nfiles;
    int rc = 0;

    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return eng_error_set(err, ENG_EFORMAT, "%s: not a valid index: %s (line %d)", path,
                             jerr.text, jerr.line);
    map = json_object_get(root, "weight_map");
    if (!json_is_object(root) || !json_is_object(map)) {
        rc = eng_error_set(err, ENG_EFORMAT, "%s: no \"weight_map\" object", path);
        goto done;
    }
    shards = calloc(json_object_size(map) + 1, sizeof *shards);
    dir = st_dirname(path);
    if (!shards || !dir) {
        rc = eng_error_set(err, ENG_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    json_object_foreach(map, key, val) {
        const char *s = json_string_value(val);
        /* Shards live beside the index; refuse paths that leave its folder. */
        if (!s || !*s || s[0] == '/' || strstr(s, "..")) {
            rc = eng_error_set(err, ENG_EFORMAT,
                               "%s: weight_map entry of tensor '%s' is not a shard file name", path,
                               key);
            goto done;
        }
        shards[nshards++] = s;
    }
    qsort(shards, nshards, sizeof *shards, st_cmp_str);
    size_t nuniq = 0;
    for (size_t i = 0; i < nshards; i++)
        if (nuniq == 0 || strcmp(shards[nuniq - 1], shards[i]) != 0)
            shards[nuniq++] = shards[i];

    for (size_t i = 0; i < nuniq; i++) {
        full = st_path_join(dir, shards[i]);
        if (!full) {
            rc = eng_error_set(err, ENG_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        rc = st_add_file(st, full, err);
        free(full);
        full = NULL;
        if (rc) {
            eng_error_prefix(err, "shard of %s", path);
            goto done;
        }
    }
    rc = st_finish(st, err);
    if (rc) {
        eng_error_prefix(err, "%s", path);
        goto done;
    }
    /* Shard i of the sorted unique list is file first_file + i. */
    json_object_foreach(map, key, val) {
        const char *s = json_string_value(val);
        const char **hit = bsearch(&s, shards, nuniq, sizeof *shards, st_cmp_str);
        const char *want = st->files[first_file + (size_t)(hit - shards)].label;
        const eng_st_tensor *t = eng_safetensors_find(st, key);
        if (!t) {
            rc = eng_error_set(err, ENG_EFORMAT, "%s: tensor '%s' of the weight_map is not in %s",
                               path, key, want);
            goto done;
        }
        if (t->file != want) {
            rc = eng_error_set(err, ENG_EFORMAT,
                               "%s: weight_map puts tensor '%s' in %s, but it is in %s", path, key,
                               want, t->file);
            goto done;
        }
    }
done:
    free(dir);
    free(shards);
    json_decref(root);
    return rc;
}

/* ---- reader: public functions ---- */

int eng_safetensors_open(eng_safetensors **out, const char *path, eng_error *err)
{
    eng_safetensors *st;
    int rc = 0;

    *out = NULL;
    if (!path)
        return eng_error_set(err, ENG_EINVAL, "safetensors path is NULL");
    st = calloc(1, sizeof *st);
    if (!st)
        return eng_error_set(err, ENG_ENOMEM, "%s: out of memory", path);
    if (eng_str_ends_with(path, ".json")) {
        ENG_TRY_DONE(st_add_index(st, path, err));
    } else {
        ENG_TRY_DONE(st_add_file(st, path, err));
        ENG_TRY_DONE(st_finish(st, err));
    }
done:
    if (rc)
        eng_safetensors_close(st);
    else
        *out = st;
    return rc;
}

int eng_safetensors_open_memory(eng_safetensors **out, const void *buf, size_t len,
                                const char *label, eng_error *err)
{
    eng_safetensors *st;
    size_t fi;
    int rc = 0;

    *out = NULL;
    if (!label)
        label = "<memory>";
    if (!buf && len)
        return eng_error_set(err, ENG_EINVAL, "%s: buffer is NULL", label);
    st = calloc(1, sizeof *st);
    if (!st)
        return eng_error_set(err, ENG_ENOMEM, "%s: out of memory", label);
    static const uint8_t empty[1];
    ENG_TRY_DONE(st_push_file(st, label, NULL, &fi, err));
    ENG_TRY_DONE(st_parse_file(st, fi, buf ? buf : empty, len, err));
    ENG_TRY_DONE(st_finish(st, err));
done:
    if (rc)
        eng_safetensors_close(st);
    else
        *out = st;
    return rc;
}

/* The names in dir that end in suffix and are regular files (links followed), sorted. */
static int st_list_dir(const char *dir, const char *suffix, char ***names, size_t *count,
                       eng_error *err)
{
    DIR *d;
    struct dirent *e;
    char **v = NULL, *full = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;

    *names = NULL;
    *count = 0;
    d = opendir(dir);
    if (!d)
        return eng_error_set(err, errno == ENOENT ? ENG_ENOTFOUND : ENG_EIO,
                             "%s: cannot open folder: %s", dir, strerror(errno));
    while ((e = readdir(d)) != NULL) {
        struct stat sb;
        if (!eng_str_ends_with(e->d_name, suffix))
            continue;
        full = st_path_join(dir, e->d_name);
        if (!full || st_reserve((void **)&v, &cap, n + 1, sizeof *v)) {
            rc = eng_error_set(err, ENG_ENOMEM, "%s: out of memory", dir);
            goto fail;
        }
        if (stat(full, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            free(full);
            full = NULL;
            continue;
        }
        v[n++] = full;
        full = NULL;
    }
    closedir(d);
    if (n > 1)
        qsort(v, n, sizeof *v, st_cmp_str);
    *names = v;
    *count = n;
    return 0;
fail:
    free(full);
    while (n)
        free(v[--n]);
    free(v);
    closedir(d);
    return rc;
}

int eng_safetensors_open_dir(eng_safetensors **out, const char *dir, eng_error *err)
{
    eng_safetensors *st = NULL;
    char **idx = NULL, **files = NULL;
    size_t nidx = 0, nfiles = 0;
    int rc = 0;

    *out = NULL;
    if (!dir)
        return eng_error_set(err, ENG_EINVAL, "safetensors folder is NULL");
    ENG_TRY_DONE(st_list_dir(dir, ".safetensors.index.json", &idx, &nidx, err));
    if (nidx > 1) {
        rc = eng_error_set(err, ENG_EFORMAT, "%s: several index files (%s, %s, ...); which one?",
                           dir, idx[0], idx[1]);
        goto done;
    }
    if (nidx == 1) {
        rc = eng_safetensors_open(&st, idx[0], err);
        goto done;
    }
    ENG_TRY_DONE(st_list_dir(dir, ".safetensors", &files, &nfiles, err));
    if (nfiles == 0) {
        rc = eng_error_set(err, ENG_ENOTFOUND, "%s: no *.safetensors file", dir);
        goto done;
    }
    st = calloc(1, sizeof *st);
    if (!st) {
        rc = eng_error_set(err, ENG_ENOMEM, "%s: out of memory", dir);
        goto done;
    }
    for (size_t i = 0; i < nfiles; i++)
        ENG_TRY_DONE(st_add_file(st, files[i], err));
    ENG_TRY_DONE(st_finish(st, err));
done:
    for (size_t i = 0; i < nidx; i++)
        free(idx[i]);
    free(idx);
    for (size_t i = 0; i < nfiles; i++)
        free(files[i]);
    free(files);
    if (rc) {
        eng_safetensors_close(st);
        return rc;
    }
    *out = st;
    return 0;
}

void eng_safetensors_close(eng_safetensors *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->count; i++)
        free((char *)st->tensors[i].name);
    free(st->tensors);
    for (size_t i = 0; i < st->nfiles; i++) {
        st_file *f = &st->files[i];
        for (size_t j = 0; j < f->nmeta; j++) {
            free(f->meta[j].key);
            free(f->meta[j].value);
        }
        free(f->meta);
        free(f->data);
        free(f->label);
    }
    free(st->files);
    free(st);
}

size_t eng_safetensors_count(const eng_safetensors *st)
{
    return st ? st->count : 0;
}

const eng_st_tensor *eng_safetensors_at(const eng_safetensors *st, size_t i)
{
    return st && i < st->count ? &st->tensors[i] : NULL;
}

const eng_st_tensor *eng_safetensors_find(const eng_safetensors *st, const char *name)
{
    size_t lo = 0, hi;

    if (!st || !name)
        return NULL;
    hi = st->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->tensors[mid].name);
        if (c == 0)
            return &st->tensors[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *eng_safetensors_metadata(const eng_safetensors *st, const char *key)
{
    if (!st || !key)
        return NULL;
    for (size_t i = 0; i < st->nfiles; i++)
        for (size_t j = 0; j < st->files[i].nmeta; j++)
            if (strcmp(st->files[i].meta[j].key, key) == 0)
                return st->files[i].meta[j].value;
    return NULL;
}

int eng_st_tensor_to_f32(const eng_st_tensor *t, float *dst, eng_error *err)
{
    if (!t)
        return eng_error_set(err, ENG_EINVAL, "tensor is NULL");
    size_t es = eng_dtype_size(t->dtype);
    size_t n = es ? t->nbytes / es : 0;
    const uint8_t *src = t->data;

    switch (t->dtype) {
    case ENG_DTYPE_F32:
        if (n)
            memcpy(dst, src, n * sizeof(float));
        return 0;
    case ENG_DTYPE_F16:
    case ENG_DTYPE_BF16: {
        void (*cvt)(float *, const uint16_t *, int64_t) =
            t->dtype == ENG_DTYPE_F16 ? k_cpu_f16_to_f32 : k_cpu_bf16_to_f32;
        if (((uintptr_t)src & 1u) == 0) {
            if (n)
                cvt(dst, (const uint16_t *)(const void *)src, (int64_t)n);
            return 0;
        }
        /* Unaligned data (a gap of odd size before it): convert through an aligned copy. */
        uint16_t buf[2048];
        for (size_t i = 0; i < n; i += 2048) {
            size_t k = n - i < 2048 ? n - i : 2048;
            memcpy(buf, src + 2 * i, 2 * k);
            cvt(dst + i, buf, (int64_t)k);
        }
        return 0;
    }
    default:
        return eng_error_set(err, ENG_EUNSUPPORTED,
                             "%s: tensor '%s' has dtype %s, which is not a float type",
                             t->file ? t->file : "?", t->name ? t->name : "?",
                             eng_dtype_name(t->dtype));
    }
}
