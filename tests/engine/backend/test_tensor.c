/* test_tensor.c - dtype table, shapes, allocation, views and reshape. */
#include <criterion/criterion.h>
#include <string.h>

#include "engine/backend/backend.h"
#include "engine/backend/tensor.h"

Test(tensor, dtype_table)
{
    eng_dtype dt;
    cr_assert_eq(eng_dtype_size(ENG_DTYPE_F32), 4);
    cr_assert_eq(eng_dtype_size(ENG_DTYPE_BF16), 2);
    cr_assert_eq(eng_dtype_size(ENG_DTYPE_F16), 2);
    cr_assert_eq(eng_dtype_size(ENG_DTYPE_I32), 4);
    cr_assert_eq(eng_dtype_parse("BF16", &dt), 0);
    cr_assert_eq(dt, ENG_DTYPE_BF16);
    cr_assert_str_eq(eng_dtype_name(ENG_DTYPE_F16), "F16");
    cr_assert_eq(eng_dtype_parse("F64", &dt), ENG_EUNSUPPORTED);
    cr_assert_eq(eng_dtype_parse(NULL, &dt), ENG_EUNSUPPORTED);
}

Test(tensor, init_host_and_backend)
{
    eng_error err = {0};
    eng_backend *cpu = eng_backend_cpu_create(&err);
    eng_tensor t, u;
    char s[64];

    cr_assert_not_null(cpu);
    cr_assert_eq(eng_tensor_init(&t, NULL, ENG_DTYPE_F32, ENG_SHAPE(2, 3, 4), &err), 0);
    cr_assert_eq(eng_tensor_numel(&t), 24);
    cr_assert_eq(eng_tensor_nbytes(&t), 96);
    cr_assert_str_eq(eng_shape_str(&t, s, sizeof s), "[2, 3, 4]");
    memset(t.data, 0x5a, eng_tensor_nbytes(&t));

    cr_assert_eq(eng_tensor_init(&u, cpu, ENG_DTYPE_BF16, ENG_SHAPE(7, 0), &err), 0);
    cr_assert_eq(eng_tensor_numel(&u), 0);
    cr_assert_not_null(u.data, "an empty tensor still gets a valid pointer");
    cr_assert_eq(u.backend, cpu);

    eng_tensor_free(&t);
    eng_tensor_free(&u);
    cr_assert_null(t.data);
    eng_tensor_free(&t); /* twice is harmless */
    eng_tensor_free(NULL);
    eng_backend_destroy(cpu);
}

Test(tensor, init_rejects_bad_shapes)
{
    eng_error err = {0};
    eng_tensor t;
    int64_t seven[7] = {1, 1, 1, 1, 1, 1, 1};
    cr_assert_eq(eng_tensor_init(&t, NULL, ENG_DTYPE_F32, ENG_SHAPE(2, -3), &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "negative"), "%s", err.msg);
    cr_assert_eq(eng_tensor_init(&t, NULL, ENG_DTYPE_F32, 7, seven, &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "rank 7"), "%s", err.msg);
}

Test(tensor, reshape_and_views)
{
    eng_error err = {0};
    float data[24];
    eng_tensor t = eng_tensor_view(data, NULL, ENG_DTYPE_F32, ENG_SHAPE(2, 3, 4));
    eng_tensor r;

    cr_assert_eq(eng_tensor_reshape(&t, ENG_SHAPE(6, -1), &r, &err), 0);
    cr_assert_eq(r.ndim, 2);
    cr_assert_eq(r.shape[1], 4);
    cr_assert_eq(r.data, data);
    cr_assert_eq(r.owned, 0);
    eng_tensor_free(&r); /* a view: must not free the stack array */

    cr_assert_eq(eng_tensor_reshape(&t, ENG_SHAPE(5, -1), &r, &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "cannot infer"), "%s", err.msg);
    cr_assert_eq(eng_tensor_reshape(&t, ENG_SHAPE(-1, -1), &r, &err), ENG_EINVAL);
    cr_assert_eq(eng_tensor_reshape(&t, ENG_SHAPE(5, 5), &r, &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "[2, 3, 4]"), "%s", err.msg);
}

Test(error, prefix_keeps_message)
{
    eng_error err = {0};
    cr_assert_eq(eng_error_set(&err, ENG_ENOTFOUND, "tensor %s", "w"), ENG_ENOTFOUND);
    eng_error_prefix(&err, "file %s", "a.safetensors");
    cr_assert_str_eq(err.msg, "file a.safetensors: tensor w");
    cr_assert_eq(err.code, ENG_ENOTFOUND);
    cr_assert_eq(eng_error_set(NULL, ENG_EIO, "x"), ENG_EIO);
    cr_assert_str_eq(eng_strerror(ENG_EFORMAT), "malformed file");
}
