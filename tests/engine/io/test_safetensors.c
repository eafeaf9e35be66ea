/*
 * test_safetensors.c - engine/io/safetensors.c: writer -> reader round trips, float conversion,
 * sharded checkpoints and folders, and one test per validation rule of the reader (hand-built
 * file images through eng_safetensors_open_memory, broken files on disk through
 * eng_safetensors_open). Every failure must name the file and, where there is one, the tensor.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/io/safetensors.h"

/* ---- helpers ---- */

/* A fresh folder under /tmp; remove it with rm_dir. */
static char *make_dir(void)
{
    char tmpl[] = "/tmp/tttd-st-XXXXXX";
    char *d = mkdtemp(tmpl);
    cr_assert_not_null(d, "mkdtemp failed");
    return strdup(d);
}

/* Removes a flat folder made by make_dir and everything in it. */
static void rm_dir(char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[4096];

    if (d) {
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
    free(dir);
}

static char *join(const char *dir, const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    cr_assert_not_null(p);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static void write_file(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    cr_assert_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/*
 * A file image: 8-byte little-endian hlen (the JSON's length when hlen is (uint64_t)-1),
 * the JSON, then data_len bytes 0, 1, 2, ...
 */
static uint8_t *image(const char *json, uint64_t hlen, size_t data_len, size_t *len)
{
    size_t j = strlen(json);
    if (hlen == (uint64_t)-1)
        hlen = j;
    uint8_t *buf = malloc(8 + j + data_len + 1);
    cr_assert_not_null(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(buf + 8, json, j);
    for (size_t i = 0; i < data_len; i++)
        buf[8 + j + i] = (uint8_t)i;
    *len = 8 + j + data_len;
    return buf;
}

/* Opens a hand-built image labelled "mem.st"; asserts failure with code and that the message
 * names the label and each non-NULL needle. */
static void expect_fail_hlen(const char *json, uint64_t hlen, size_t data_len, int code,
                             const char *needle1, const char *needle2)
{
    size_t len;
    uint8_t *buf = image(json, hlen, data_len, &len);
    eng_safetensors *st = (eng_safetensors *)buf; /* must be reset to NULL on failure */
    eng_error err = {0};

    int rc = eng_safetensors_open_memory(&st, buf, len, "mem.st", &err);
    cr_assert_eq(rc, code, "rc %d, want %d; json %s; msg: %s", rc, code, json, err.msg);
    cr_assert_null(st);
    cr_assert_eq(err.code, code);
    cr_assert(strstr(err.msg, "mem.st"), "msg lacks the label: %s", err.msg);
    if (needle1)
        cr_assert(strstr(err.msg, needle1), "msg lacks '%s': %s", needle1, err.msg);
    if (needle2)
        cr_assert(strstr(err.msg, needle2), "msg lacks '%s': %s", needle2, err.msg);
    free(buf);
}

static void expect_fail(const char *json, size_t data_len, int code, const char *needle1,
                        const char *needle2)
{
    expect_fail_hlen(json, (uint64_t)-1, data_len, code, needle1, needle2);
}

static eng_safetensors *open_ok(const char *json, size_t data_len, uint8_t **keep)
{
    size_t len;
    eng_safetensors *st = NULL;
    eng_error err = {0};

    *keep = image(json, (uint64_t)-1, data_len, &len);
    int rc = eng_safetensors_open_memory(&st, *keep, len, "mem.st", &err);
    cr_assert_eq(rc, 0, "open failed: %s", err.msg);
    cr_assert_not_null(st);
    return st;
}

static const int64_t no_shape[1] = {0};

/* A writer with tensors a (F32 [2, 3]) and b (BF16 [4]), plus extra when not NULL. */
static void write_simple(const char *path, const char *extra_name, float extra_value)
{
    eng_st_writer *w = NULL;
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[4] = {0x3f80, 0x4000, 0xbf80, 0x0000}; /* 1, 2, -1, 0 in bf16 */

    cr_assert_eq(eng_st_writer_init(&w, NULL), 0);
    cr_assert_eq(eng_st_writer_add(w, "a", ENG_DTYPE_F32, ENG_SHAPE(2, 3), a, NULL), 0);
    cr_assert_eq(eng_st_writer_add(w, "b", ENG_DTYPE_BF16, ENG_SHAPE(4), b, NULL), 0);
    if (extra_name)
        cr_assert_eq(eng_st_writer_add(w, extra_name, ENG_DTYPE_F32, 0, no_shape, &extra_value,
                                       NULL), 0);
    eng_error err = {0};
    cr_assert_eq(eng_st_writer_write(w, path, &err), 0, "%s", err.msg);
    eng_st_writer_free(w);
}

/* ---- round trips ---- */

Test(safetensors, roundtrip_dtypes_and_shapes)
{
    char *dir = make_dir(), *path = join(dir, "rt.safetensors");
    eng_st_writer *w = NULL;
    eng_safetensors *st = NULL;
    eng_error err = {0};
    float f32[6] = {1.5f, -2, 3, 4, 5, 6}, scalar = 42.0f;
    uint16_t f16[3] = {0x3c00, 0xc000, 0x7bff}; /* 1, -2, 65504 */
    uint16_t bf16[6] = {0x3f80, 0x4000, 0x4040, 0x4080, 0x40a0, 0x40c0};
    int32_t i32[5] = {0, -1, 7, 2147483647, -2147483647 - 1};
    float six[64];
    for (int i = 0; i < 64; i++)
        six[i] = (float)i;

    cr_assert_eq(eng_st_writer_init(&w, &err), 0);
    cr_assert_eq(eng_st_writer_add(w, "w.f32", ENG_DTYPE_F32, ENG_SHAPE(2, 3), f32, &err), 0);
    cr_assert_eq(eng_st_writer_add(w, "h.f16", ENG_DTYPE_F16, ENG_SHAPE(3), f16, &err), 0);
    cr_assert_eq(eng_st_writer_add(w, "b.bf16", ENG_DTYPE_BF16, ENG_SHAPE(3, 1, 2), bf16, &err), 0);
    cr_assert_eq(eng_st_writer_add(w, "ids", ENG_DTYPE_I32, ENG_SHAPE(5), i32, &err), 0);
    cr_assert_eq(eng_st_writer_add(w, "scalar", ENG_DTYPE_F32, 0, no_shape, &scalar, &err), 0);
    cr_assert_eq(eng_st_writer_add(w, "empty", ENG_DTYPE_BF16, ENG_SHAPE(0, 3), NULL, &err), 0);
    cr_assert_eq(eng_st_writer_add(w, "rank6", ENG_DTYPE_F32, ENG_SHAPE(2, 2, 2, 2, 2, 2), six,
                                   &err), 0);
    cr_assert_eq(eng_st_writer_write(w, path, &err), 0, "%s", err.msg);
    eng_st_writer_free(w);

    cr_assert_eq(eng_safetensors_open(&st, path, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_safetensors_count(st), 7);
    const char *order[] = {"b.bf16", "empty", "h.f16", "ids", "rank6", "scalar", "w.f32"};
    for (size_t i = 0; i < 7; i++) {
        const eng_st_tensor *t = eng_safetensors_at(st, i);
        cr_assert_str_eq(t->name, order[i]);
        cr_assert_str_eq(t->file, path);
        cr_assert_eq(eng_safetensors_find(st, order[i]), t);
    }

    const eng_st_tensor *t = eng_safetensors_find(st, "w.f32");
    cr_assert_eq(t->dtype, ENG_DTYPE_F32);
    cr_assert_eq(t->ndim, 2);
    cr_assert_eq(t->shape[0], 2);
    cr_assert_eq(t->shape[1], 3);
    cr_assert_eq(t->nbytes, sizeof f32);
    cr_assert_eq(memcmp(t->data, f32, sizeof f32), 0);

    t = eng_safetensors_find(st, "h.f16");
    cr_assert_eq(t->dtype, ENG_DTYPE_F16);
    cr_assert_eq(t->ndim, 1);
    cr_assert_eq(memcmp(t->data, f16, sizeof f16), 0);

    t = eng_safetensors_find(st, "b.bf16");
    cr_assert_eq(t->dtype, ENG_DTYPE_BF16);
    cr_assert_eq(t->ndim, 3);
    cr_assert_eq(t->shape[2], 2);
    cr_assert_eq(memcmp(t->data, bf16, sizeof bf16), 0);

    t = eng_safetensors_find(st, "ids");
    cr_assert_eq(t->dtype, ENG_DTYPE_I32);
    cr_assert_eq(memcmp(t->data, i32, sizeof i32), 0);

    t = eng_safetensors_find(st, "scalar");
    cr_assert_eq(t->ndim, 0);
    cr_assert_eq(t->nbytes, 4);
    cr_assert_eq(memcmp(t->data, &scalar, 4), 0);

    t = eng_safetensors_find(st, "empty");
    cr_assert_eq(t->ndim, 2);
    cr_assert_eq(t->shape[0], 0);
    cr_assert_eq(t->shape[1], 3);
    cr_assert_eq(t->nbytes, 0);

    t = eng_safetensors_find(st, "rank6");
    cr_assert_eq(t->ndim, 6);
    cr_assert_eq(memcmp(t->data, six, sizeof six), 0);

    eng_safetensors_close(st);
    free(path);
    rm_dir(dir);
}

/* The bytes on disk: header padded with spaces to 8, keys in name order after __metadata__,
 * data tiling the data section (no gaps, as the reference reader requires), each tensor at a
 * multiple of its element size. */
Test(safetensors, writer_layout)
{
    char *dir = make_dir(), *path = join(dir, "layout.safetensors");
    eng_st_writer *w = NULL;
    eng_safetensors *st = NULL;
    uint16_t h[3] = {1, 2, 3};
    float f[2] = {1, 2};
    int32_t i[1] = {5};
    size_t len;

    cr_assert_eq(eng_st_writer_init(&w, NULL), 0);
    cr_assert_eq(eng_st_writer_add(w, "z", ENG_DTYPE_BF16, ENG_SHAPE(3), h, NULL), 0);
    cr_assert_eq(eng_st_writer_add(w, "y", ENG_DTYPE_F32, ENG_SHAPE(2), f, NULL), 0);
    cr_assert_eq(eng_st_writer_add(w, "a", ENG_DTYPE_F16, ENG_SHAPE(3), h, NULL), 0);
    cr_assert_eq(eng_st_writer_add(w, "m", ENG_DTYPE_I32, ENG_SHAPE(1), i, NULL), 0);
    cr_assert_eq(eng_st_writer_set_metadata(w, "format", "pt", NULL), 0);
    cr_assert_eq(eng_st_writer_write(w, path, NULL), 0);
    eng_st_writer_free(w);

    uint8_t *buf = read_file(path, &len);
    uint64_t hlen = 0;
    for (int k = 0; k < 8; k++)
        hlen |= (uint64_t)buf[k] << (8 * k);
    cr_assert_eq(hlen % 8, 0);
    cr_assert_eq(len, 8 + hlen + 6 + 8 + 6 + 4, "file is %zu bytes", len);
    char *json = strndup((const char *)buf + 8, (size_t)hlen);
    const char *p_meta = strstr(json, "\"__metadata__\""), *p_a = strstr(json, "\"a\"");
    const char *p_m = strstr(json, "\"m\""), *p_y = strstr(json, "\"y\"");
    const char *p_z = strstr(json, "\"z\"");
    cr_assert(p_meta && p_a && p_m && p_y && p_z, "header: %s", json);
    cr_assert(p_meta < p_a && p_a < p_m && p_m < p_y && p_y < p_z, "key order: %s", json);
    cr_assert_eq(json[0], '{');

    cr_assert_eq(eng_safetensors_open(&st, path, NULL), 0);
    const uint8_t *data = NULL;
    size_t total = 0;
    for (size_t k = 0; k < eng_safetensors_count(st); k++) {
        const eng_st_tensor *t = eng_safetensors_at(st, k);
        if (!data || (const uint8_t *)t->data < data)
            data = t->data;
        total += t->nbytes;
    }
    cr_assert_eq(total, 24);
    for (size_t k = 0; k < eng_safetensors_count(st); k++) {
        const eng_st_tensor *t = eng_safetensors_at(st, k);
        size_t off = (size_t)((const uint8_t *)t->data - data);
        cr_assert_eq(off % eng_dtype_size(t->dtype), 0, "%s at %zu", t->name, off);
    }
    /* 4-byte dtypes first, in name order: m (I32) at 0, y (F32) at 4, right after the header. */
    cr_assert_eq(memcmp(buf + 8 + hlen + 4, f, sizeof f), 0);
    cr_assert_eq(memcmp(eng_safetensors_find(st, "y")->data, f, sizeof f), 0);
    cr_assert_str_eq(eng_safetensors_metadata(st, "format"), "pt");

    eng_safetensors_close(st);
    free(json);
    free(buf);
    free(path);
    rm_dir(dir);
}

Test(safetensors, empty_writer_makes_a_valid_file)
{
    char *dir = make_dir(), *path = join(dir, "none.safetensors");
    eng_st_writer *w = NULL;
    eng_safetensors *st = NULL;

    cr_assert_eq(eng_st_writer_init(&w, NULL), 0);
    cr_assert_eq(eng_st_writer_write(w, path, NULL), 0);
    eng_st_writer_free(w);
    cr_assert_eq(eng_safetensors_open(&st, path, NULL), 0);
    cr_assert_eq(eng_safetensors_count(st), 0);
    cr_assert_null(eng_safetensors_at(st, 0));
    cr_assert_null(eng_safetensors_find(st, "x"));
    eng_safetensors_close(st);
    free(path);
    rm_dir(dir);
}

Test(safetensors, metadata)
{
    char *dir = make_dir(), *path = join(dir, "meta.safetensors");
    eng_st_writer *w = NULL;
    eng_safetensors *st = NULL;
    float x = 1;

    cr_assert_eq(eng_st_writer_init(&w, NULL), 0);
    cr_assert_eq(eng_st_writer_add(w, "x", ENG_DTYPE_F32, 0, no_shape, &x, NULL), 0);
    cr_assert_eq(eng_st_writer_set_metadata(w, "format", "np", NULL), 0);
    cr_assert_eq(eng_st_writer_set_metadata(w, "format", "pt", NULL), 0); /* replaces */
    cr_assert_eq(eng_st_writer_set_metadata(w, "note", "h\u00e9llo \"quoted\"", NULL), 0);
    cr_assert_eq(eng_st_writer_set_metadata(w, "empty", "", NULL), 0);
    cr_assert_eq(eng_st_writer_write(w, path, NULL), 0);
    eng_st_writer_free(w);

    cr_assert_eq(eng_safetensors_open(&st, path, NULL), 0);
    cr_assert_str_eq(eng_safetensors_metadata(st, "format"), "pt");
    cr_assert_str_eq(eng_safetensors_metadata(st, "note"), "h\u00e9llo \"quoted\"");
    cr_assert_str_eq(eng_safetensors_metadata(st, "empty"), "");
    cr_assert_null(eng_safetensors_metadata(st, "absent"));
    cr_assert_null(eng_safetensors_metadata(st, NULL));
    cr_assert_eq(eng_safetensors_count(st), 1); /* __metadata__ is not a tensor */
    eng_safetensors_close(st);

    uint8_t *keep;
    st = open_ok("{\"t\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, &keep);
    cr_assert_null(eng_safetensors_metadata(st, "format"));
    eng_safetensors_close(st);
    free(keep);
    free(path);
    rm_dir(dir);
}

Test(safetensors, find_and_at_bounds)
{
    uint8_t *keep;
    const char *json = "{\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
    eng_safetensors *st = open_ok(json, 12, &keep);

    cr_assert_eq(eng_safetensors_count(st), 3);
    cr_assert_str_eq(eng_safetensors_at(st, 0)->name, "a");
    cr_assert_str_eq(eng_safetensors_at(st, 2)->name, "c");
    cr_assert_null(eng_safetensors_at(st, 3));
    cr_assert_null(eng_safetensors_find(st, "d"));
    cr_assert_null(eng_safetensors_find(st, ""));
    cr_assert_null(eng_safetensors_find(st, NULL));
    cr_assert_eq(eng_safetensors_find(st, "b")->data, keep + 8 + strlen(json) + 4);
    cr_assert_str_eq(eng_safetensors_find(st, "b")->file, "mem.st");
    cr_assert_eq(eng_safetensors_count(NULL), 0);
    cr_assert_null(eng_safetensors_at(NULL, 0));
    cr_assert_null(eng_safetensors_find(NULL, "a"));
    eng_safetensors_close(st);
    eng_safetensors_close(NULL);
    free(keep);
}

/* ---- float conversion ---- */

Test(safetensors, to_f32_bf16_f16_f32)
{
    char *dir = make_dir(), *path = join(dir, "conv.safetensors");
    eng_st_writer *w = NULL;
    eng_safetensors *st = NULL;
    eng_error err = {0};
    /* bf16: 1, -2.5, 0.5, 3.140625, -0, +inf, 1e-38-ish subnormal-free tiny */
    uint16_t bf[6] = {0x3f80, 0xc020, 0x3f00, 0x4049, 0x8000, 0x7f80};
    const float bf_want[6] = {1.0f, -2.5f, 0.5f, 3.140625f, -0.0f, __builtin_inff()};
    /* f16: 1, -2, 65504, 2^-24 (smallest subnormal), 0.333251953125 */
    uint16_t h[5] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x3555};
    const float h_want[5] = {1.0f, -2.0f, 65504.0f, 5.9604644775390625e-8f, 0.333251953125f};
    float f[3] = {0.25f, -7, 1e30f};
    float out[8];

    cr_assert_eq(eng_st_writer_init(&w, NULL), 0);
    cr_assert_eq(eng_st_writer_add(w, "bf", ENG_DTYPE_BF16, ENG_SHAPE(2, 3), bf, NULL), 0);
    cr_assert_eq(eng_st_writer_add(w, "h", ENG_DTYPE_F16, ENG_SHAPE(5), h, NULL), 0);
    cr_assert_eq(eng_st_writer_add(w, "f", ENG_DTYPE_F32, ENG_SHAPE(3), f, NULL), 0);
    cr_assert_eq(eng_st_writer_write(w, path, NULL), 0);
    eng_st_writer_free(w);
    cr_assert_eq(eng_safetensors_open(&st, path, NULL), 0);

    cr_assert_eq(eng_st_tensor_to_f32(eng_safetensors_find(st, "bf"), out, &err), 0);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(memcmp(&out[i], &bf_want[i], 4), 0, "bf16[%d] = %g", i, (double)out[i]);
    cr_assert_eq(eng_st_tensor_to_f32(eng_safetensors_find(st, "h"), out, &err), 0);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(out[i], h_want[i], "f16[%d] = %g", i, (double)out[i]);
    cr_assert_eq(eng_st_tensor_to_f32(eng_safetensors_find(st, "f"), out, &err), 0);
    cr_assert_eq(memcmp(out, f, sizeof f), 0);

    eng_safetensors_close(st);
    free(path);
    rm_dir(dir);
}

/* Data at an odd address (a 1-byte gap before the tensor and an odd buffer start). */
Test(safetensors, to_f32_unaligned)
{
    const char *json = "{\"pad\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                       "\"x\":{\"dtype\":\"BF16\",\"shape\":[3000],\"data_offsets\":[1,6001]},"
                       "\"y\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[6001,6005]},"
                       "\"z\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[6005,6009]}}";
    size_t j = strlen(json), len = 8 + j + 6009;
    uint8_t *raw = calloc(1, len + 16);
    uint8_t *buf = raw;
    if (((uintptr_t)(buf + 8 + j + 1) & 1) == 0) /* make x's data odd */
        buf++;
    cr_assert_not_null(raw);
    buf[0] = (uint8_t)j;
    buf[1] = (uint8_t)(j >> 8);
    memcpy(buf + 8, json, j);
    uint8_t *data = buf + 8 + j;
    for (int i = 0; i < 3000; i++) { /* bf16 of i (exact for i < 256, then rounded bits) */
        float v = (float)(i % 200);
        uint32_t u;
        memcpy(&u, &v, 4);
        data[1 + 2 * i] = (uint8_t)(u >> 16);
        data[2 + 2 * i] = (uint8_t)(u >> 24);
    }
    const uint8_t h[4] = {0x00, 0x3c, 0x00, 0xc0}; /* 1, -2 */
    memcpy(data + 6001, h, 4);
    float z = -3.5f;
    memcpy(data + 6005, &z, 4);

    eng_safetensors *st = NULL;
    eng_error err = {0};
    cr_assert_eq(eng_safetensors_open_memory(&st, buf, len, "odd.st", &err), 0, "%s", err.msg);
    const eng_st_tensor *x = eng_safetensors_find(st, "x");
    cr_assert_eq((uintptr_t)x->data & 1, 1, "test setup: data should be odd");
    float *out = malloc(3000 * sizeof *out);
    cr_assert_eq(eng_st_tensor_to_f32(x, out, &err), 0);
    for (int i = 0; i < 3000; i++)
        cr_assert_eq(out[i], (float)(i % 200), "x[%d] = %g", i, (double)out[i]);
    cr_assert_eq(eng_st_tensor_to_f32(eng_safetensors_find(st, "y"), out, &err), 0);
    cr_assert_eq(out[0], 1.0f);
    cr_assert_eq(out[1], -2.0f);
    cr_assert_eq(eng_st_tensor_to_f32(eng_safetensors_find(st, "z"), out, &err), 0);
    cr_assert_eq(out[0], -3.5f);
    /* An empty tensor converts to nothing. */
    cr_assert_eq(eng_st_tensor_to_f32(eng_safetensors_find(st, "pad"), NULL, &err), 0);

    eng_safetensors_close(st);
    free(out);
    free(raw);
}

Test(safetensors, to_f32_rejects_i32)
{
    uint8_t *keep;
    eng_error err = {0};
    float out[2];
    eng_safetensors *st =
        open_ok("{\"tok\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, &keep);
    int rc = eng_st_tensor_to_f32(eng_safetensors_find(st, "tok"), out, &err);
    cr_assert_eq(rc, ENG_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "tok") && strstr(err.msg, "I32") && strstr(err.msg, "mem.st"),
              "%s", err.msg);
    eng_safetensors_close(st);
    free(keep);
}

/* ---- sharded checkpoints and folders ---- */

static void write_shard(const char *path, const char *n1, const char *n2, const char *meta)
{
    eng_st_writer *w = NULL;
    float v1[2] = {1, 2}, v2[3] = {3, 4, 5};
    cr_assert_eq(eng_st_writer_init(&w, NULL), 0);
    cr_assert_eq(eng_st_writer_add(w, n1, ENG_DTYPE_F32, ENG_SHAPE(2), v1, NULL), 0);
    if (n2)
        cr_assert_eq(eng_st_writer_add(w, n2, ENG_DTYPE_F32, ENG_SHAPE(3), v2, NULL), 0);
    if (meta)
        cr_assert_eq(eng_st_writer_set_metadata(w, "format", meta, NULL), 0);
    cr_assert_eq(eng_st_writer_write(w, path, NULL), 0);
    eng_st_writer_free(w);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char *p = join(dir, name);
    write_file(p, text, strlen(text));
    free(p);
}

/* Two shards: model-1 holds a, b; model-2 holds c. */
static char *make_sharded(int with_index)
{
    char *dir = make_dir();
    char *s1 = join(dir, "model-00001-of-00002.safetensors");
    char *s2 = join(dir, "model-00002-of-00002.safetensors");
    write_shard(s1, "a", "b", "pt");
    write_shard(s2, "c", NULL, NULL);
    if (with_index)
        write_text(dir, "model.safetensors.index.json",
                   "{\"metadata\": {\"total_size\": 28},\n \"weight_map\": {"
                   "\"a\": \"model-00001-of-00002.safetensors\","
                   "\"c\": \"model-00002-of-00002.safetensors\","
                   "\"b\": \"model-00001-of-00002.safetensors\"}}");
    free(s1);
    free(s2);
    return dir;
}

static void check_sharded(const eng_safetensors *st, const char *dir)
{
    cr_assert_eq(eng_safetensors_count(st), 3);
    const eng_st_tensor *a = eng_safetensors_find(st, "a"), *b = eng_safetensors_find(st, "b");
    const eng_st_tensor *c = eng_safetensors_find(st, "c");
    cr_assert(a && b && c);
    cr_assert(strstr(a->file, dir) && strstr(a->file, "model-00001-of-00002.safetensors"), "%s",
              a->file);
    cr_assert_eq(a->file, b->file); /* one shard opened once */
    cr_assert(strstr(c->file, "model-00002-of-00002.safetensors"), "%s", c->file);
    cr_assert_eq(((const float *)c->data)[0], 1.0f);
    cr_assert_eq(b->shape[0], 3);
    cr_assert_str_eq(eng_safetensors_metadata(st, "format"), "pt");
}

Test(safetensors, sharded_index)
{
    char *dir = make_sharded(1), *idx = join(dir, "model.safetensors.index.json");
    eng_safetensors *st = NULL;
    eng_error err = {0};

    cr_assert_eq(eng_safetensors_open(&st, idx, &err), 0, "%s", err.msg);
    check_sharded(st, dir);
    eng_safetensors_close(st);

    st = NULL;
    cr_assert_eq(eng_safetensors_open_dir(&st, dir, &err), 0, "%s", err.msg);
    check_sharded(st, dir);
    eng_safetensors_close(st);
    free(idx);
    rm_dir(dir);
}

Test(safetensors, open_dir_without_index)
{
    char *dir = make_sharded(0);
    eng_safetensors *st = NULL;
    eng_error err = {0};

    write_text(dir, "notes.txt", "not a weight file");
    cr_assert_eq(eng_safetensors_open_dir(&st, dir, &err), 0, "%s", err.msg);
    check_sharded(st, dir);
    eng_safetensors_close(st);
    rm_dir(dir);
}

/* With an index, files it does not name are ignored (here one that would clash). */
Test(safetensors, open_dir_index_wins)
{
    char *dir = make_sharded(1), *extra = join(dir, "zzz.safetensors");
    eng_safetensors *st = NULL;
    write_shard(extra, "a", NULL, NULL);
    cr_assert_eq(eng_safetensors_open_dir(&st, dir, NULL), 0);
    check_sharded(st, dir);
    eng_safetensors_close(st);
    free(extra);
    rm_dir(dir);
}

Test(safetensors, open_dir_duplicate_name)
{
    char *dir = make_sharded(0), *extra = join(dir, "zzz.safetensors");
    eng_safetensors *st = NULL;
    eng_error err = {0};

    write_shard(extra, "b", NULL, NULL);
    cr_assert_eq(eng_safetensors_open_dir(&st, dir, &err), ENG_EFORMAT);
    cr_assert_null(st);
    cr_assert(strstr(err.msg, "'b'") && strstr(err.msg, "zzz.safetensors") &&
                  strstr(err.msg, "model-00001-of-00002.safetensors"),
              "%s", err.msg);
    free(extra);
    rm_dir(dir);
}

Test(safetensors, open_dir_empty_or_missing)
{
    char *dir = make_dir();
    eng_safetensors *st = NULL;
    eng_error err = {0};

    cr_assert_eq(eng_safetensors_open_dir(&st, dir, &err), ENG_ENOTFOUND);
    cr_assert(strstr(err.msg, dir), "%s", err.msg);
    char *gone = join(dir, "nope");
    cr_assert_eq(eng_safetensors_open_dir(&st, gone, &err), ENG_ENOTFOUND);
    cr_assert(strstr(err.msg, gone), "%s", err.msg);
    cr_assert_null(st);
    free(gone);
    rm_dir(dir);
}

Test(safetensors, open_dir_two_indexes)
{
    char *dir = make_sharded(1);
    eng_safetensors *st = NULL;
    eng_error err = {0};
    write_text(dir, "other.safetensors.index.json", "{\"weight_map\": {}}");
    cr_assert_eq(eng_safetensors_open_dir(&st, dir, &err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, "other.safetensors.index.json"), "%s", err.msg);
    rm_dir(dir);
}

/* Opens dir/idx.json after writing text into it; asserts the code and the message. */
static void expect_index_fail(const char *text, int code, const char *needle1, const char *needle2)
{
    char *dir = make_sharded(0), *idx = join(dir, "idx.safetensors.index.json");
    eng_safetensors *st = NULL;
    eng_error err = {0};

    write_text(dir, "idx.safetensors.index.json", text);
    int rc = eng_safetensors_open(&st, idx, &err);
    cr_assert_eq(rc, code, "rc %d; %s", rc, err.msg);
    cr_assert_null(st);
    cr_assert(strstr(err.msg, "idx.safetensors.index.json"), "msg lacks the index: %s", err.msg);
    if (needle1)
        cr_assert(strstr(err.msg, needle1), "msg lacks '%s': %s", needle1, err.msg);
    if (needle2)
        cr_assert(strstr(err.msg, needle2), "msg lacks '%s': %s", needle2, err.msg);
    free(idx);
    rm_dir(dir);
}

Test(safetensors, index_wrong_shard)
{
    expect_index_fail("{\"weight_map\": {\"a\": \"model-00002-of-00002.safetensors\","
                      "\"b\": \"model-00001-of-00002.safetensors\"}}",
                      ENG_EFORMAT, "'a'", "model-00001-of-00002.safetensors");
}

Test(safetensors, index_tensor_missing)
{
    expect_index_fail("{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\","
                      "\"q\": \"model-00002-of-00002.safetensors\"}}",
                      ENG_EFORMAT, "'q'", "model-00002-of-00002.safetensors");
}

Test(safetensors, index_name_in_two_shards)
{
    char *dir = make_dir(), *s1 = join(dir, "s1.safetensors"), *s2 = join(dir, "s2.safetensors");
    char *idx = join(dir, "m.safetensors.index.json");
    eng_safetensors *st = NULL;
    eng_error err = {0};

    write_shard(s1, "a", "dup", NULL);
    write_shard(s2, "dup", NULL, NULL);
    write_text(dir, "m.safetensors.index.json",
               "{\"weight_map\": {\"a\": \"s1.safetensors\", \"dup\": \"s2.safetensors\"}}");
    cr_assert_eq(eng_safetensors_open(&st, idx, &err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, "'dup'") && strstr(err.msg, "s1.safetensors") &&
                  strstr(err.msg, "s2.safetensors") && strstr(err.msg, "m.safetensors.index.json"),
              "%s", err.msg);
    free(s1);
    free(s2);
    free(idx);
    rm_dir(dir);
}

Test(safetensors, index_missing_shard)
{
    expect_index_fail("{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\","
                      "\"x\": \"gone.safetensors\"}}",
                      ENG_ENOTFOUND, "gone.safetensors", NULL);
}

Test(safetensors, index_malformed)
{
    expect_index_fail("{\"weight_map\": ", ENG_EFORMAT, "not a valid index", NULL);
    expect_index_fail("[1, 2]", ENG_EFORMAT, "weight_map", NULL);
    expect_index_fail("{\"metadata\": {}}", ENG_EFORMAT, "weight_map", NULL);
    expect_index_fail("{\"weight_map\": []}", ENG_EFORMAT, "weight_map", NULL);
    expect_index_fail("{\"weight_map\": {\"a\": 3}}", ENG_EFORMAT, "'a'", NULL);
    expect_index_fail("{\"weight_map\": {\"a\": \"../x.safetensors\"}}", ENG_EFORMAT, "'a'", NULL);
    expect_index_fail("{\"weight_map\": {\"a\": \"/etc/x.safetensors\"}}", ENG_EFORMAT, "'a'",
                      NULL);
    expect_index_fail("{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\","
                      "\"a\": \"model-00001-of-00002.safetensors\"}}",
                      ENG_EFORMAT, "duplicate", NULL);
}

/* A shard that fails validation: the message names the shard and the index. */
Test(safetensors, index_bad_shard)
{
    char *dir = make_dir(), *idx = join(dir, "m.safetensors.index.json");
    eng_safetensors *st = NULL;
    eng_error err = {0};

    char *bad = join(dir, "bad.safetensors");
    write_file(bad, "\x04\0\0\0\0\0\0\0[1] ", 12);
    free(bad);
    write_text(dir, "m.safetensors.index.json", "{\"weight_map\": {\"a\": \"bad.safetensors\"}}");
    cr_assert_eq(eng_safetensors_open(&st, idx, &err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, "bad.safetensors") && strstr(err.msg, "m.safetensors.index.json"),
              "%s", err.msg);
    free(idx);
    rm_dir(dir);
}

/* ---- validation rules, on hand-built images ---- */

#define T1(dt, shape, offs)                                                                        \
    "{\"t\":{\"dtype\":" dt ",\"shape\":" shape ",\"data_offsets\":" offs "}}"

Test(safetensors, valid_hand_built)
{
    uint8_t *keep;
    /* Extra keys inside an entry are ignored (as the reference reader does); gaps are allowed;
     * trailing spaces after the JSON are padding. */
    eng_safetensors *st = open_ok("{\"t\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8],"
                                  "\"note\":1},\"__metadata__\":{\"k\":\"v\"}}   ",
                                  8, &keep);
    const eng_st_tensor *t = eng_safetensors_find(st, "t");
    cr_assert_eq(t->nbytes, 4);
    cr_assert_eq(((const uint8_t *)t->data)[0], 4);
    cr_assert_str_eq(eng_safetensors_metadata(st, "k"), "v");
    eng_safetensors_close(st);
    free(keep);
}

Test(safetensors, rule_file_too_short)
{
    eng_safetensors *st = NULL;
    eng_error err = {0};
    const uint8_t buf[7] = {1, 0, 0, 0, 0, 0, 0};
    cr_assert_eq(eng_safetensors_open_memory(&st, buf, sizeof buf, "short.st", &err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, "short.st") && strstr(err.msg, "too short"), "%s", err.msg);
    cr_assert_eq(eng_safetensors_open_memory(&st, NULL, 0, "nil.st", &err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, "nil.st"), "%s", err.msg);
    cr_assert_eq(eng_safetensors_open_memory(&st, NULL, 5, "nil.st", &err), ENG_EINVAL);
    cr_assert_null(st);
}

Test(safetensors, rule_header_length)
{
    expect_fail_hlen("{}", 0, 0, ENG_EFORMAT, "header length is 0", NULL);
    expect_fail_hlen("{}", 3, 0, ENG_EFORMAT, "beyond the file", NULL);
    expect_fail_hlen("{}", 100000001, 0, ENG_EFORMAT, "limit", NULL);
    expect_fail_hlen("{}", UINT64_MAX - 1, 0, ENG_EFORMAT, "limit", NULL);
    /* Shorter than the JSON: the JSON is cut. */
    expect_fail_hlen(T1("\"F32\"", "[1]", "[0,4]"), 10, 0, ENG_EFORMAT, "not valid JSON", NULL);
}

Test(safetensors, rule_not_json_or_not_object)
{
    expect_fail("{\"t\": ", 0, ENG_EFORMAT, "not valid JSON", NULL);
    expect_fail("\xff\xfe{}", 0, ENG_EFORMAT, "not valid JSON", NULL);
    expect_fail("{\"t\\u0000x\": 1}", 0, ENG_EFORMAT, "not valid JSON", NULL);
    expect_fail("{}x", 0, ENG_EFORMAT, "not valid JSON", NULL);
    expect_fail("[]", 0, ENG_EFORMAT, "not a JSON object", NULL);
    expect_fail("\"str\"", 0, ENG_EFORMAT, NULL, NULL);
    expect_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                "\"t\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4,8]}}",
                8, ENG_EFORMAT, "duplicate", NULL);
    /* Invalid UTF-8 in a key. */
    expect_fail("{\"t\xc3\x28\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4,
                ENG_EFORMAT, "not valid JSON", NULL);
}

Test(safetensors, rule_entry_not_object)
{
    expect_fail("{\"w1\": [1, 2]}", 0, ENG_EFORMAT, "'w1'", "not a JSON object");
    expect_fail("{\"w1\": \"F32\"}", 0, ENG_EFORMAT, "'w1'", NULL);
}

Test(safetensors, rule_dtype)
{
    expect_fail("{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, ENG_EFORMAT, "'t'", "dtype");
    expect_fail(T1("32", "[1]", "[0,4]"), 4, ENG_EFORMAT, "'t'", "dtype");
    expect_fail(T1("\"F33\"", "[1]", "[0,4]"), 4, ENG_EFORMAT, "'t'", "F33");
    expect_fail(T1("\"f32\"", "[1]", "[0,4]"), 4, ENG_EFORMAT, "'t'", "f32");
    /* Real safetensors dtypes that tttd does not read. */
    const char *other[] = {"F64", "I64", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2", "I16", "U16"};
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        char json[128];
        snprintf(json, sizeof json, T1("\"%s\"", "[1]", "[0,1]"), other[i]);
        expect_fail(json, 8, ENG_EUNSUPPORTED, "'t'", other[i]);
    }
}

Test(safetensors, rule_shape)
{
    expect_fail("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, ENG_EFORMAT, "'t'",
                "shape");
    expect_fail(T1("\"F32\"", "4", "[0,16]"), 16, ENG_EFORMAT, "'t'", "shape");
    expect_fail(T1("\"F32\"", "{}", "[0,4]"), 4, ENG_EFORMAT, "'t'", "shape");
    expect_fail(T1("\"F32\"", "[2,-1]", "[0,8]"), 8, ENG_EFORMAT, "'t'", "shape[1]");
    expect_fail(T1("\"F32\"", "[2.0]", "[0,8]"), 8, ENG_EFORMAT, "'t'", "shape[0]");
    expect_fail(T1("\"F32\"", "[\"2\"]", "[0,8]"), 8, ENG_EFORMAT, "'t'", "shape[0]");
    expect_fail(T1("\"F32\"", "[null]", "[0,8]"), 8, ENG_EFORMAT, "'t'", "shape[0]");
    /* Beyond 64-bit integers: jansson refuses to parse it. */
    expect_fail(T1("\"F32\"", "[99999999999999999999]", "[0,8]"), 8, ENG_EFORMAT, NULL, NULL);
}

Test(safetensors, rule_rank)
{
    expect_fail(T1("\"F32\"", "[1,1,1,1,1,1,1]", "[0,4]"), 4, ENG_EUNSUPPORTED, "'t'", "rank 7");
}

Test(safetensors, rule_numel_overflow)
{
    /* 2^40 cubed overflows; so does 2^62 x 4 bytes. Neither may wrap into a small size. */
    expect_fail(T1("\"F32\"", "[1099511627776,1099511627776,1099511627776]", "[0,0]"), 0,
                ENG_EFORMAT, "'t'", "overflow");
    expect_fail(T1("\"F32\"", "[4611686018427387904]", "[0,0]"), 0, ENG_EFORMAT, "'t'",
                "overflow");
    /* 2^62 x 2^2 x F32 would wrap to 0 in 64 bits: must not match data_offsets [0,0]. */
    expect_fail(T1("\"BF16\"", "[4611686018427387904,4]", "[0,0]"), 0, ENG_EFORMAT, "'t'",
                "overflow");
    /* A zero dim makes the count 0 whatever the other dims are. */
    uint8_t *keep;
    eng_safetensors *st = open_ok(T1("\"F32\"", "[1099511627776,1099511627776,1099511627776,0]",
                                     "[0,0]"), 0, &keep);
    cr_assert_eq(eng_safetensors_find(st, "t")->nbytes, 0);
    eng_safetensors_close(st);
    free(keep);
}

Test(safetensors, rule_data_offsets_shape)
{
    expect_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, ENG_EFORMAT, "'t'", "data_offsets");
    expect_fail(T1("\"F32\"", "[1]", "[0]"), 4, ENG_EFORMAT, "'t'", "data_offsets");
    expect_fail(T1("\"F32\"", "[1]", "[0,4,8]"), 8, ENG_EFORMAT, "'t'", "data_offsets");
    expect_fail(T1("\"F32\"", "[1]", "[-4,0]"), 4, ENG_EFORMAT, "'t'", "data_offsets");
    expect_fail(T1("\"F32\"", "[1]", "[0,4.0]"), 4, ENG_EFORMAT, "'t'", "data_offsets");
    expect_fail(T1("\"F32\"", "[1]", "{\"begin\":0}"), 4, ENG_EFORMAT, "'t'", "data_offsets");
}

Test(safetensors, rule_begin_after_end)
{
    expect_fail(T1("\"F32\"", "[0]", "[8,4]"), 8, ENG_EFORMAT, "'t'", "[8, 4]");
}

Test(safetensors, rule_end_beyond_data)
{
    expect_fail(T1("\"F32\"", "[2]", "[0,8]"), 7, ENG_EFORMAT, "'t'", "beyond the data section");
    expect_fail(T1("\"F32\"", "[0]", "[9,9]"), 8, ENG_EFORMAT, "'t'", "beyond the data section");
}

Test(safetensors, rule_size_mismatch)
{
    expect_fail(T1("\"F32\"", "[3]", "[0,8]"), 8, ENG_EFORMAT, "'t'", "need 12");
    expect_fail(T1("\"BF16\"", "[2,2]", "[0,12]"), 12, ENG_EFORMAT, "'t'", "need 8");
    expect_fail(T1("\"F16\"", "[]", "[0,0]"), 4, ENG_EFORMAT, "'t'", "need 2");
}

Test(safetensors, rule_overlap)
{
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                8, ENG_EFORMAT, "'a'", "'b'");
    /* Same range twice. */
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                4, ENG_EFORMAT, "overlap", NULL);
    /* One inside a long one, listed after a third that does not overlap. */
    expect_fail("{\"long\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]},"
                "\"in\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[8,10]}}",
                20, ENG_EFORMAT, "'long'", "'in'");
    /* Empty tensors hold no bytes: one inside another is fine. */
    uint8_t *keep;
    eng_safetensors *st = open_ok("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                  "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
                                  8, &keep);
    eng_safetensors_close(st);
    free(keep);
}

Test(safetensors, rule_metadata)
{
    expect_fail("{\"__metadata__\": [\"a\"]}", 0, ENG_EFORMAT, "__metadata__", NULL);
    expect_fail("{\"__metadata__\": {\"format\": \"pt\", \"n\": 3}}", 0, ENG_EFORMAT,
                "__metadata__", "\"n\"");
    expect_fail("{\"__metadata__\": {\"o\": {}}}", 0, ENG_EFORMAT, "\"o\"", NULL);
}

/* ---- broken files on disk ---- */

Test(safetensors, disk_truncated)
{
    char *dir = make_dir(), *path = join(dir, "trunc.safetensors");
    eng_safetensors *st = NULL;
    eng_error err = {0};
    size_t len;

    write_simple(path, NULL, 0);
    uint8_t *buf = read_file(path, &len);
    cr_assert_eq(truncate(path, (off_t)len - 1), 0);
    cr_assert_eq(eng_safetensors_open(&st, path, &err), ENG_EFORMAT);
    cr_assert_null(st);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "truncated"), "%s", err.msg);
    /* Into the header. */
    cr_assert_eq(truncate(path, 20), 0);
    cr_assert_eq(eng_safetensors_open(&st, path, &err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "header length"), "%s", err.msg);
    /* Into the length. */
    cr_assert_eq(truncate(path, 5), 0);
    cr_assert_eq(eng_safetensors_open(&st, path, &err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, path), "%s", err.msg);
    /* Empty. */
    cr_assert_eq(truncate(path, 0), 0);
    cr_assert_eq(eng_safetensors_open(&st, path, &err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "0 bytes"), "%s", err.msg);
    free(buf);
    free(path);
    rm_dir(dir);
}

Test(safetensors, disk_corrupt_header)
{
    char *dir = make_dir(), *path = join(dir, "corrupt.safetensors");
    eng_safetensors *st = NULL;
    eng_error err = {0};
    size_t len;

    write_simple(path, NULL, 0);
    uint8_t *buf = read_file(path, &len);
    /* A wrong byte count for tensor b: "[4]" -> "[5]". */
    char *p = strstr((char *)buf + 8, "[4]");
    cr_assert_not_null(p);
    p[1] = '5';
    write_file(path, buf, len);
    cr_assert_eq(eng_safetensors_open(&st, path, &err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "'b'"), "%s", err.msg);
    /* Broken JSON. */
    buf[8] = '!';
    write_file(path, buf, len);
    cr_assert_eq(eng_safetensors_open(&st, path, &err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "JSON"), "%s", err.msg);
    /* Header length past the end. */
    buf[8] = '{';
    buf[3] = 0x7f;
    write_file(path, buf, len);
    cr_assert_eq(eng_safetensors_open(&st, path, &err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "header length"), "%s", err.msg);
    cr_assert_null(st);
    free(buf);
    free(path);
    rm_dir(dir);
}

Test(safetensors, disk_missing_or_not_a_file)
{
    char *dir = make_dir(), *path = join(dir, "absent.safetensors");
    eng_safetensors *st = NULL;
    eng_error err = {0};

    cr_assert_eq(eng_safetensors_open(&st, path, &err), ENG_ENOTFOUND);
    cr_assert(strstr(err.msg, path), "%s", err.msg);
    cr_assert_eq(eng_safetensors_open(&st, dir, &err), ENG_EIO);
    cr_assert(strstr(err.msg, dir) && strstr(err.msg, "regular file"), "%s", err.msg);
    cr_assert_eq(eng_safetensors_open(&st, NULL, &err), ENG_EINVAL);
    cr_assert_null(st);
    free(path);
    rm_dir(dir);
}

/* ---- writer errors ---- */

Test(safetensors, writer_rejects_bad_input)
{
    eng_st_writer *w = NULL;
    eng_error err = {0};
    float x[4] = {0};

    cr_assert_eq(eng_st_writer_init(&w, &err), 0);
    cr_assert_eq(eng_st_writer_add(w, "x", ENG_DTYPE_F32, ENG_SHAPE(4), x, &err), 0);
    cr_assert_eq(eng_st_writer_add(w, "x", ENG_DTYPE_F32, ENG_SHAPE(4), x, &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "'x'") && strstr(err.msg, "twice"), "%s", err.msg);
    cr_assert_eq(eng_st_writer_add(w, "__metadata__", ENG_DTYPE_F32, ENG_SHAPE(4), x, &err),
                 ENG_EINVAL);
    cr_assert_eq(eng_st_writer_add(w, "bad\xff", ENG_DTYPE_F32, ENG_SHAPE(4), x, &err), ENG_EINVAL);
    cr_assert_eq(eng_st_writer_add(w, NULL, ENG_DTYPE_F32, ENG_SHAPE(4), x, &err), ENG_EINVAL);
    cr_assert_eq(eng_st_writer_add(w, "r", ENG_DTYPE_F32, ENG_SHAPE(1, 1, 1, 1, 1, 1, 1), x, &err),
                 ENG_EINVAL);
    cr_assert(strstr(err.msg, "'r'"), "%s", err.msg);
    cr_assert_eq(eng_st_writer_add(w, "n", ENG_DTYPE_F32, ENG_SHAPE(2, -1), x, &err), ENG_EINVAL);
    cr_assert_eq(eng_st_writer_add(w, "d", (eng_dtype)9, ENG_SHAPE(2), x, &err), ENG_EINVAL);
    cr_assert_eq(eng_st_writer_add(w, "nil", ENG_DTYPE_F32, ENG_SHAPE(2), NULL, &err), ENG_EINVAL);
    cr_assert_eq(eng_st_writer_add(w, "big", ENG_DTYPE_F32,
                                   ENG_SHAPE(INT64_MAX, INT64_MAX), x, &err), ENG_EINVAL);
    cr_assert_eq(eng_st_writer_set_metadata(w, "k", NULL, &err), ENG_EINVAL);
    cr_assert_eq(eng_st_writer_set_metadata(w, "k", "\xc3", &err), ENG_EINVAL);

    /* A folder that does not exist: EIO, and no temporary file is left behind. */
    char *dir = make_dir(), *path = join(dir, "sub/x.safetensors");
    cr_assert_eq(eng_st_writer_write(w, path, &err), ENG_EIO);
    cr_assert(strstr(err.msg, path), "%s", err.msg);
    eng_st_writer_free(w);
    eng_st_writer_free(NULL);
    free(path);
    rm_dir(dir);
}

/* Writing over an existing file replaces it whole, and leaves no temporary file. */
Test(safetensors, writer_replaces_atomically)
{
    char *dir = make_dir(), *path = join(dir, "w.safetensors");
    eng_safetensors *st = NULL;

    write_simple(path, "extra", 9.0f);
    write_simple(path, NULL, 0);
    cr_assert_eq(eng_safetensors_open(&st, path, NULL), 0);
    cr_assert_eq(eng_safetensors_count(st), 2);
    cr_assert_null(eng_safetensors_find(st, "extra"));
    eng_safetensors_close(st);

    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    cr_assert_eq(n, 1, "stray files in %s", dir);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0644);
    free(path);
    rm_dir(dir);
}
