/*
 * test_weights.c - engine/io/weights.c: declared tensors read from small safetensors files written
 * here, carved from one aligned allocation, converted between F32/F16/BF16 (round to nearest
 * even), sliced and half-swapped as the SAI layout needs, and every failure naming the tensor
 * and the expected shape.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/io/safetensors.h"
#include "engine/io/weights.h"

static eng_backend *cpu;
static char path[64];

static void setup(void)
{
    eng_error err = {0};
    cpu = eng_backend_cpu_create(&err);
    cr_assert_not_null(cpu, "%s", err.msg);
    snprintf(path, sizeof path, "/tmp/tttd-weights-%d.safetensors", (int)getpid());
}

static void teardown(void)
{
    unlink(path);
    eng_backend_destroy(cpu);
}

TestSuite(weights, .init = setup, .fini = teardown);

/* a [2, 3] = 0..5, b [4] = 10..13, qkv [6, 2] = 100..111, i [2] (I32). */
static void write_file(eng_dtype dt)
{
    eng_error err = {0};
    eng_st_writer *w;
    float a[6], b[4], qkv[12];
    uint16_t h[12];
    int32_t ids[2] = {1, 2};
    for (int i = 0; i < 6; i++)
        a[i] = (float)i;
    for (int i = 0; i < 4; i++)
        b[i] = 10.0f + (float)i;
    for (int i = 0; i < 12; i++)
        qkv[i] = 100.0f + (float)i;
    cr_assert_eq(eng_st_writer_init(&w, &err), 0, "%s", err.msg);
#define ADD(name, arr, n, ...)                                                                     \
    do {                                                                                           \
        const void *data = arr;                                                                    \
        if (dt != ENG_DTYPE_F32) {                                                                 \
            /* Small integers are exact in both half formats: build the bits by hand. */           \
            for (int i_ = 0; i_ < (n); i_++) {                                                     \
                float v_ = arr[i_];                                                                \
                uint32_t u_;                                                                       \
                memcpy(&u_, &v_, 4);                                                               \
                if (dt == ENG_DTYPE_BF16)                                                          \
                    h[i_] = (uint16_t)(u_ >> 16);                                                  \
                else { /* f16: sign 0, exponent rebias 127 -> 15, 10-bit mantissa */               \
                    int e_ = (int)((u_ >> 23) & 0xff);                                             \
                    h[i_] = v_ == 0.0f ? 0                                                         \
                                       : (uint16_t)(((e_ - 112) << 10) | ((u_ >> 13) & 0x3ff));    \
                }                                                                                  \
            }                                                                                      \
            data = h;                                                                              \
        }                                                                                          \
        cr_assert_eq(eng_st_writer_add(w, name, dt, ENG_SHAPE(__VA_ARGS__), data, &err), 0, "%s", \
                     err.msg);                                                                     \
    } while (0)
    ADD("a", a, 6, 2, 3);
    ADD("b", b, 4, 4);
    ADD("qkv", qkv, 12, 6, 2);
#undef ADD
    cr_assert_eq(eng_st_writer_add(w, "i", ENG_DTYPE_I32, ENG_SHAPE(2), ids, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(eng_st_writer_write(w, path, &err), 0, "%s", err.msg);
    eng_st_writer_free(w);
}

static eng_safetensors *open_file(void)
{
    eng_error err = {0};
    eng_safetensors *st;
    cr_assert_eq(eng_safetensors_open(&st, path, &err), 0, "%s", err.msg);
    return st;
}

static void expect_values(const eng_weights *w, const char *name, const float *want, int n)
{
    const eng_tensor *t = eng_weights_find(w, name);
    cr_assert_not_null(t, "%s not found", name);
    cr_assert_eq(t->dtype, ENG_DTYPE_F32);
    cr_assert_eq(eng_tensor_numel(t), n);
    for (int i = 0; i < n; i++)
        cr_assert_eq(((const float *)t->data)[i], want[i], "%s[%d] = %g, expected %g", name, i,
                     (double)((const float *)t->data)[i], (double)want[i]);
}

static void load_all_and_check(eng_dtype file_dt)
{
    eng_error err = {0};
    eng_weights *w;
    write_file(file_dt);
    eng_safetensors *st = open_file();
    cr_assert_eq(eng_weights_init(&w, st, path, cpu, ENG_DTYPE_F32, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_weights_add(w, "a", ENG_SHAPE(2, 3), NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_weights_add(w, "b", ENG_SHAPE(4), NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_weights_load(w, &err), 0, "%s", err.msg);
    eng_safetensors_close(st); /* the store no longer needs the file */

    const float a[6] = {0, 1, 2, 3, 4, 5}, b[4] = {10, 11, 12, 13};
    expect_values(w, "a", a, 6);
    expect_values(w, "b", b, 4);
    const eng_tensor *ta = eng_weights_find(w, "a"), *tb = eng_weights_find(w, "b");
    /* The backend aligns the allocation (64 bytes on the CPU); the store, each tensor in it. */
    cr_assert_eq((uintptr_t)ta->data % 64, 0);
    cr_assert_eq(ta->backend, cpu);
    /* One allocation: b right after a's 256-byte slot. */
    cr_assert_eq((char *)tb->data - (char *)ta->data, 256);
    cr_assert_eq(eng_weights_nbytes(w), 512);
    cr_assert_eq(eng_weights_count(w), 2);
    cr_assert_eq(eng_weights_numel(w), 10);
    eng_weights_free(w);
}

Test(weights, load_f32_one_allocation)
{
    load_all_and_check(ENG_DTYPE_F32);
}

Test(weights, convert_bf16_and_f16_to_f32)
{
    load_all_and_check(ENG_DTYPE_BF16);
    load_all_and_check(ENG_DTYPE_F16);
}

Test(weights, convert_f32_to_bf16_round_to_nearest_even)
{
    eng_error err = {0};
    eng_st_writer *wr;
    eng_weights *w;
    /* 1 + 2^-8 is halfway between bf16 1.0 (even) and 1 + 2^-7: rounds down to 1.0;
     * 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: rounds up; -2 is exact. */
    const float v[3] = {1.00390625f, 1.01171875f, -2.0f};
    const uint16_t want[3] = {0x3F80, 0x3F82, 0xC000};
    cr_assert_eq(eng_st_writer_init(&wr, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_st_writer_add(wr, "v", ENG_DTYPE_F32, ENG_SHAPE(3), v, &err), 0);
    cr_assert_eq(eng_st_writer_write(wr, path, &err), 0, "%s", err.msg);
    eng_st_writer_free(wr);
    eng_safetensors *st = open_file();
    cr_assert_eq(eng_weights_init(&w, st, path, cpu, ENG_DTYPE_BF16, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_weights_add(w, "v", ENG_SHAPE(3), NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_weights_load(w, &err), 0, "%s", err.msg);
    const eng_tensor *t = eng_weights_find(w, "v");
    cr_assert_eq(t->dtype, ENG_DTYPE_BF16);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(((const uint16_t *)t->data)[i], want[i], "v[%d] = 0x%04x", i,
                     ((const uint16_t *)t->data)[i]);
    eng_weights_free(w);
    eng_safetensors_close(st);
}

/* Fused qkv row blocks and swapped halves, as the SAI layout is read; also from BF16. */
static void slices(eng_dtype file_dt)
{
    eng_error err = {0};
    eng_weights *w;
    write_file(file_dt);
    eng_safetensors *st = open_file();
    cr_assert_eq(eng_weights_init(&w, st, path, cpu, ENG_DTYPE_F32, &err), 0, "%s", err.msg);
    eng_weight_src q = {"qkv", 2, {6, 2}, 0, 0}, k = q, v = q, sw = q, bias = {"b", 1, {4}, 0, 1};
    k.offset = 4;
    v.offset = 8;
    sw.offset = 4;
    sw.swap_halves = 1;
    cr_assert_eq(eng_weights_add(w, "to_q", ENG_SHAPE(2, 2), &q, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_weights_add(w, "to_k", ENG_SHAPE(2, 2), &k, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_weights_add(w, "to_v", ENG_SHAPE(2, 2), &v, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_weights_add(w, "k_swapped", ENG_SHAPE(2, 2), &sw, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_weights_add(w, "b_swapped", ENG_SHAPE(4), &bias, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_weights_load(w, &err), 0, "%s", err.msg);
    const float wq[4] = {100, 101, 102, 103}, wk[4] = {104, 105, 106, 107};
    const float wv[4] = {108, 109, 110, 111}, wsw[4] = {106, 107, 104, 105};
    const float wb[4] = {12, 13, 10, 11};
    expect_values(w, "to_q", wq, 4);
    expect_values(w, "to_k", wk, 4);
    expect_values(w, "to_v", wv, 4);
    expect_values(w, "k_swapped", wsw, 4);
    expect_values(w, "b_swapped", wb, 4);
    eng_weights_free(w);
    eng_safetensors_close(st);
}

Test(weights, fused_slices_and_swapped_halves)
{
    slices(ENG_DTYPE_F32);
    slices(ENG_DTYPE_BF16);
}

#define EXPECT_ERR(call, code_, ...)                                                               \
    do {                                                                                           \
        eng_error e_ = {0};                                                                        \
        int rc_ = (call);                                                                          \
        cr_assert_eq(rc_, (code_), "rc %d msg '%s'", rc_, e_.msg);                                 \
        const char *needles_[] = {__VA_ARGS__};                                                    \
        for (size_t i_ = 0; i_ < sizeof needles_ / sizeof *needles_; i_++)                         \
            cr_assert(strstr(e_.msg, needles_[i_]), "message '%s' lacks '%s'", e_.msg,             \
                      needles_[i_]);                                                               \
    } while (0)

Test(weights, errors_name_the_tensor_and_shape)
{
    eng_error err = {0};
    eng_weights *w;
    const eng_tensor *t;
    write_file(ENG_DTYPE_F32);
    eng_safetensors *st = open_file();
    cr_assert_eq(eng_weights_init(&w, st, "ckpt.safetensors", cpu, ENG_DTYPE_F32, &err), 0);

    EXPECT_ERR(eng_weights_add(w, "missing.weight", ENG_SHAPE(8, 3), NULL, &e_), ENG_ENOTFOUND,
               "ckpt.safetensors", "\"missing.weight\"", "[8, 3]");
    EXPECT_ERR(eng_weights_add(w, "a", ENG_SHAPE(3, 2), NULL, &e_), ENG_EFORMAT, "\"a\"",
               "has shape [2, 3]", "expected [3, 2]");
    EXPECT_ERR(eng_weights_add(w, "i", ENG_SHAPE(2), NULL, &e_), ENG_EFORMAT, "\"i\"", "I32");
    eng_weight_src bad = {"qkv", 2, {6, 2}, 10, 0}, wrong = {"qkv", 2, {3, 4}, 0, 0};
    EXPECT_ERR(eng_weights_add(w, "to_v", ENG_SHAPE(2, 2), &bad, &e_), ENG_EINVAL, "\"to_v\"",
               "\"qkv\"");
    EXPECT_ERR(eng_weights_add(w, "to_q", ENG_SHAPE(2, 2), &wrong, &e_), ENG_EFORMAT, "\"qkv\"",
               "(for to_q)", "expected [3, 4]");
    cr_assert_eq(eng_weights_add(w, "a", ENG_SHAPE(2, 3), NULL, &err), 0, "%s", err.msg);
    EXPECT_ERR(eng_weights_add(w, "a", ENG_SHAPE(2, 3), NULL, &e_), ENG_EINVAL, "\"a\"", "twice");
    /* Nothing is bound before load. */
    cr_assert_null(eng_weights_find(w, "a"));
    cr_assert_eq(eng_weights_load(w, &err), 0, "%s", err.msg);
    EXPECT_ERR(eng_weights_add(w, "b", ENG_SHAPE(4), NULL, &e_), ENG_EINVAL, "after load");

    cr_assert_eq(eng_weights_get(w, "a", ENG_SHAPE(2, 3), &t, &err), 0, "%s", err.msg);
    cr_assert_eq(t, eng_weights_find(w, "a"));
    cr_assert_eq(eng_weights_get(w, "a", -1, NULL, &t, &err), 0, "%s", err.msg);
    EXPECT_ERR(eng_weights_get(w, "a", ENG_SHAPE(6), &t, &e_), ENG_EINVAL, "\"a\"",
               "has shape [2, 3]", "expected [6]");
    cr_assert_null(t);
    EXPECT_ERR(eng_weights_get(w, "b", ENG_SHAPE(4), &t, &e_), ENG_ENOTFOUND, "\"b\"", "[4]");
    eng_weights_free(w);
    eng_safetensors_close(st);
    eng_weights_free(NULL);
}

Test(weights, many_names_through_the_hash)
{
    eng_error err = {0};
    eng_st_writer *wr;
    eng_weights *w;
    char name[32];
    cr_assert_eq(eng_st_writer_init(&wr, &err), 0);
    for (int i = 0; i < 300; i++) {
        float v = (float)i;
        snprintf(name, sizeof name, "t.%d", i);
        cr_assert_eq(eng_st_writer_add(wr, name, ENG_DTYPE_F32, ENG_SHAPE(1), &v, &err), 0);
    }
    cr_assert_eq(eng_st_writer_write(wr, path, &err), 0, "%s", err.msg);
    eng_st_writer_free(wr);
    eng_safetensors *st = open_file();
    cr_assert_eq(eng_weights_init(&w, st, path, cpu, ENG_DTYPE_F32, &err), 0);
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "t.%d", i);
        cr_assert_eq(eng_weights_add(w, name, ENG_SHAPE(1), NULL, &err), 0, "%s", err.msg);
    }
    cr_assert_eq(eng_weights_load(w, &err), 0, "%s", err.msg);
    eng_safetensors_close(st);
    for (int i = 299; i >= 0; i--) {
        snprintf(name, sizeof name, "t.%d", i);
        const eng_tensor *t = eng_weights_find(w, name);
        cr_assert_not_null(t, "%s", name);
        cr_assert_eq(*(const float *)t->data, (float)i);
    }
    cr_assert_null(eng_weights_find(w, "t.300"));
    eng_weights_free(w);
}
