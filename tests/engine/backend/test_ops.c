/*
 * test_ops.c - the checked op front end (engine/backend/ops.c) and its wiring to the CPU backend:
 * every op rejects wrong shapes/dtypes/backends with a message naming the argument, and a
 * valid call reaches the kernel (checked against small hand-computed or naive results).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "engine/backend/backend.h"
#include "tests/common/test_util.h"

static eng_backend *cpu;
static uint64_t rng = 1234;

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

/* A CPU F32 tensor of random values in [-1, 1). */
static eng_tensor rnd(int ndim, const int64_t *shape)
{
    eng_tensor t;
    eng_error err = {0};
    cr_assert_eq(eng_tensor_init(&t, cpu, ENG_DTYPE_F32, ndim, shape, &err), 0, "%s", err.msg);
    tu_rand_fill(t.data, eng_tensor_numel(&t), &rng, -1.0f, 1.0f);
    return t;
}

#define EXPECT_ERR(call, code_, needle)                                                            \
    do {                                                                                           \
        eng_error e_ = {0};                                                                        \
        int rc_ = call(&e_);                                                                       \
        cr_assert_eq(rc_, (code_), "rc %d msg '%s'", rc_, e_.msg);                                 \
        cr_assert(strstr(e_.msg, (needle)), "message '%s' lacks '%s'", e_.msg, (needle));          \
    } while (0)

TestSuite(ops, .init = setup, .fini = teardown);

Test(ops, linear_validates_and_computes)
{
    eng_tensor x = rnd(ENG_SHAPE(2, 3, 5)), w = rnd(ENG_SHAPE(4, 5)), b = rnd(ENG_SHAPE(4));
    eng_tensor y = rnd(ENG_SHAPE(2, 3, 4)), wbad = rnd(ENG_SHAPE(4, 6)), bbad = rnd(ENG_SHAPE(3));
    eng_tensor ybad = rnd(ENG_SHAPE(6, 4));
    eng_error err = {0};

#define CALL(e) eng_op_linear(&y, &x, &wbad, NULL, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "linear: w has shape [4, 6]");
#undef CALL
#define CALL(e) eng_op_linear(&y, &x, &w, &bbad, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "linear: b has shape [3], expected [4]");
#undef CALL
#define CALL(e) eng_op_linear(&ybad, &x, &w, &b, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "linear: y has shape [6, 4]");
#undef CALL

    cr_assert_eq(eng_op_linear(&y, &x, &w, &b, &err), 0, "%s", err.msg);
    const float *X = x.data, *W = w.data, *Bv = b.data, *Y = y.data;
    for (int m = 0; m < 6; m++)
        for (int o = 0; o < 4; o++) {
            double acc = Bv[o];
            for (int k = 0; k < 5; k++)
                acc += (double)X[m * 5 + k] * W[o * 5 + k];
            cr_assert_float_eq(Y[m * 4 + o], acc, 1e-5);
        }
    eng_tensor_free(&x), eng_tensor_free(&w), eng_tensor_free(&b), eng_tensor_free(&y);
    eng_tensor_free(&wbad), eng_tensor_free(&bbad), eng_tensor_free(&ybad);
}

Test(ops, dtype_and_backend_mismatches)
{
    eng_tensor x = rnd(ENG_SHAPE(4, 8)), y = rnd(ENG_SHAPE(4, 8)), h;
    eng_error err = {0};
    eng_backend *other = eng_backend_cpu_create(&err);
    eng_tensor z;

    cr_assert_eq(eng_tensor_init(&h, cpu, ENG_DTYPE_BF16, ENG_SHAPE(4, 8), &err), 0);
#define CALL(e) eng_op_act(&y, &h, ENG_ACT_SILU, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "act: x has dtype BF16, expected F32");
#undef CALL
    /* Same dtype on both sides but BF16: the CPU backend refuses to compute it. */
#define CALL(e) eng_op_act(&h, &h, ENG_ACT_SILU, e)
    EXPECT_ERR(CALL, ENG_EUNSUPPORTED, "computes in F32");
#undef CALL
    cr_assert_eq(eng_tensor_init(&z, other, ENG_DTYPE_F32, ENG_SHAPE(4, 8), &err), 0);
    other->name = "cpu-other";
#define CALL(e) eng_op_add(&y, &x, &z, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "add: b lives on cpu-other");
#undef CALL
    /* Plain host memory is fine for the CPU backend. */
    float host[32];
    tu_rand_fill(host, 32, &rng, -1, 1);
    eng_tensor hv = eng_tensor_view(host, NULL, ENG_DTYPE_F32, ENG_SHAPE(4, 8));
    cr_assert_eq(eng_op_add(&y, &x, &hv, &err), 0, "%s", err.msg);
    for (int i = 0; i < 32; i++)
        cr_assert_float_eq(((float *)y.data)[i], ((float *)x.data)[i] + host[i], 1e-6);
#define CALL(e) eng_op_act(NULL, &x, ENG_ACT_SILU, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "act: y is NULL");
#undef CALL
    eng_tensor_free(&z);
    eng_backend_destroy(other);
    eng_tensor_free(&x), eng_tensor_free(&y), eng_tensor_free(&h);
}

Test(ops, convert_round_trip_all_dtypes)
{
    eng_tensor x = rnd(ENG_SHAPE(3, 1000)), b, f, back;
    eng_error err = {0};
    cr_assert_eq(eng_tensor_init(&b, cpu, ENG_DTYPE_BF16, ENG_SHAPE(3000), &err), 0);
    cr_assert_eq(eng_tensor_init(&f, cpu, ENG_DTYPE_F16, ENG_SHAPE(3000), &err), 0);
    cr_assert_eq(eng_tensor_init(&back, cpu, ENG_DTYPE_F32, ENG_SHAPE(3, 1000), &err), 0);
    cr_assert_eq(eng_op_convert(&b, &x, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_op_convert(&f, &b, &err), 0, "%s", err.msg); /* bf16 -> f16 through f32 */
    cr_assert_eq(eng_op_convert(&back, &f, &err), 0, "%s", err.msg);
    const float *X = x.data, *Bk = back.data;
    for (int i = 0; i < 3000; i++)
        cr_assert(fabsf(X[i] - Bk[i]) <= 0.0079f * fabsf(X[i]) + 1e-6f, "%d: %g vs %g", i,
                  (double)X[i], (double)Bk[i]);
    eng_tensor ids;
    cr_assert_eq(eng_tensor_init(&ids, cpu, ENG_DTYPE_I32, ENG_SHAPE(3000), &err), 0);
#define CALL(e) eng_op_convert(&ids, &x, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "cannot convert F32 to I32");
#undef CALL
    eng_tensor_free(&ids);
    eng_tensor_free(&x), eng_tensor_free(&b), eng_tensor_free(&f), eng_tensor_free(&back);
}

Test(ops, norms_validate)
{
    eng_tensor x = rnd(ENG_SHAPE(2, 6, 4, 4)), y = rnd(ENG_SHAPE(2, 6, 4, 4));
    eng_tensor w5 = rnd(ENG_SHAPE(5)), w6 = rnd(ENG_SHAPE(6)), w4 = rnd(ENG_SHAPE(4));
    eng_error err = {0};
#define CALL(e) eng_op_group_norm(&y, &x, &w6, &w6, 4, 1e-6f, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "4 groups do not divide 6 channels");
#undef CALL
#define CALL(e) eng_op_group_norm(&y, &x, &w5, NULL, 3, 1e-6f, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "group_norm: w has shape [5], expected [6]");
#undef CALL
#define CALL(e) eng_op_layer_norm(&y, &x, &w6, NULL, 1e-6f, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "layer_norm: w has shape [6], expected [4]");
#undef CALL
#define CALL(e) eng_op_rms_norm(&y, &x, &w4, -1.0f, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "eps");
#undef CALL
    cr_assert_eq(eng_op_group_norm(&y, &x, &w6, &w6, 3, 1e-6f, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_op_rms_norm(&y, &x, &w4, 1e-6f, &err), 0, "%s", err.msg);
    /* rms_norm over the last dim, checked by hand on row 0. */
    const float *X = x.data, *Y = y.data, *W = w4.data;
    double ms = 0;
    for (int i = 0; i < 4; i++)
        ms += (double)X[i] * X[i];
    ms = 1.0 / sqrt(ms / 4 + 1e-6);
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(Y[i], X[i] * ms * W[i], 1e-5);
    eng_tensor_free(&x), eng_tensor_free(&y), eng_tensor_free(&w5), eng_tensor_free(&w6);
    eng_tensor_free(&w4);
}

Test(ops, token_ops_validate_and_round_trip)
{
    eng_tensor a = rnd(ENG_SHAPE(2, 3, 8)), b = rnd(ENG_SHAPE(2, 5, 8)), y = rnd(ENG_SHAPE(2, 8, 8));
    eng_tensor a2 = rnd(ENG_SHAPE(2, 3, 8)), b2 = rnd(ENG_SHAPE(2, 5, 8)), bad = rnd(ENG_SHAPE(2, 5, 7));
    eng_tensor sc = rnd(ENG_SHAPE(2, 8)), sh = rnd(ENG_SHAPE(2, 8)), scbad = rnd(ENG_SHAPE(1, 8));
    eng_error err = {0};
#define CALL(e) eng_op_concat_tokens(&y, &a, &bad, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "concat_tokens: b has shape [2, 5, 7]");
#undef CALL
#define CALL(e) eng_op_modulate(&y, &y, &scbad, &sh, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "modulate: scale has shape [1, 8], expected [2, 8]");
#undef CALL
    cr_assert_eq(eng_op_concat_tokens(&y, &a, &b, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_op_split_tokens(&a2, &b2, &y, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(a.data, a2.data, eng_tensor_nbytes(&a)), 0);
    cr_assert_eq(memcmp(b.data, b2.data, eng_tensor_nbytes(&b)), 0);
    cr_assert_eq(eng_op_modulate(&y, &y, &sc, &sh, &err), 0, "%s", err.msg);
    eng_tensor_free(&a), eng_tensor_free(&b), eng_tensor_free(&y), eng_tensor_free(&a2);
    eng_tensor_free(&b2), eng_tensor_free(&bad), eng_tensor_free(&sc), eng_tensor_free(&sh);
    eng_tensor_free(&scbad);
}

Test(ops, binary_broadcast_rules)
{
    eng_tensor a = rnd(ENG_SHAPE(2, 3, 4)), y = rnd(ENG_SHAPE(2, 3, 4));
    eng_tensor row = rnd(ENG_SHAPE(4)), mat = rnd(ENG_SHAPE(3, 4)), bad = rnd(ENG_SHAPE(3));
    eng_error err = {0};
#define CALL(e) eng_op_mul(&y, &a, &bad, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "mul: b has shape [3], expected the trailing dims");
#undef CALL
    cr_assert_eq(eng_op_mul(&y, &a, &mat, &err), 0, "%s", err.msg);
    const float *A = a.data, *M = mat.data, *Y = y.data;
    for (int i = 0; i < 24; i++)
        cr_assert_float_eq(Y[i], A[i] * M[i % 12], 1e-6);
    cr_assert_eq(eng_op_add(&y, &a, &row, &err), 0, "%s", err.msg);
    for (int i = 0; i < 24; i++)
        cr_assert_float_eq(Y[i], A[i] + ((float *)row.data)[i % 4], 1e-6);
    eng_tensor_free(&a), eng_tensor_free(&y), eng_tensor_free(&row), eng_tensor_free(&mat);
    eng_tensor_free(&bad);
}

Test(ops, conv_attention_embedding_validate)
{
    eng_tensor x = rnd(ENG_SHAPE(1, 4, 8, 8)), w = rnd(ENG_SHAPE(6, 2, 3, 3));
    eng_tensor y = rnd(ENG_SHAPE(1, 6, 8, 8)), ybad = rnd(ENG_SHAPE(1, 6, 6, 6));
    eng_conv2d_params p = {.stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1, .groups = 2};
    eng_conv2d_params p3 = p;
    eng_error err = {0};
    p3.groups = 3;
#define CALL(e) eng_op_conv2d(&y, &x, &w, NULL, &p3, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "3 groups must divide 4 input");
#undef CALL
#define CALL(e) eng_op_conv2d(&ybad, &x, &w, NULL, &p, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "conv2d: y has shape [1, 6, 6, 6], expected [1, 6, 8, 8]");
#undef CALL
    cr_assert_eq(eng_op_conv2d(&y, &x, &w, NULL, &p, &err), 0, "%s", err.msg);

    eng_tensor q = rnd(ENG_SHAPE(2, 5, 12)), k = rnd(ENG_SHAPE(2, 7, 12)), o = rnd(ENG_SHAPE(2, 5, 12));
    eng_tensor bias = rnd(ENG_SHAPE(3, 5, 6));
    eng_attention_params ap = {.heads = 3, .scale = 0.5f, .causal = 0};
#define CALL(e) eng_op_attention(&o, &q, &k, &k, &bias, &ap, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "attention: bias has shape [3, 5, 6], expected [3, 5, 7]");
#undef CALL
    ap.heads = 5;
#define CALL(e) eng_op_attention(&o, &q, &k, &k, NULL, &ap, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "5 heads do not divide 12 channels");
#undef CALL
    ap.heads = 3;
    ap.causal = 1;
#define CALL(e) eng_op_attention(&o, &q, &k, &k, NULL, &ap, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "causal masking needs Nq == Nk");
#undef CALL
    ap.causal = 0;
    cr_assert_eq(eng_op_attention(&o, &q, &k, &k, NULL, &ap, &err), 0, "%s", err.msg);

    eng_tensor table = rnd(ENG_SHAPE(10, 4)), ids, e;
    cr_assert_eq(eng_tensor_init(&ids, cpu, ENG_DTYPE_I32, ENG_SHAPE(2, 3), &err), 0);
    cr_assert_eq(eng_tensor_init(&e, cpu, ENG_DTYPE_F32, ENG_SHAPE(2, 3, 4), &err), 0);
    int32_t *I = ids.data;
    for (int i = 0; i < 6; i++)
        I[i] = i + 2;
    cr_assert_eq(eng_op_embedding(&e, &table, &ids, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(e.data, (float *)table.data + 8, 6 * 4 * sizeof(float)), 0);
    I[4] = 10;
#define CALL(er) eng_op_embedding(&e, &table, &ids, er)
    EXPECT_ERR(CALL, ENG_EINVAL, "ids[4] = 10 outside [0, 10)");
#undef CALL
    eng_tensor_free(&x), eng_tensor_free(&w), eng_tensor_free(&y), eng_tensor_free(&ybad);
    eng_tensor_free(&q), eng_tensor_free(&k), eng_tensor_free(&o), eng_tensor_free(&bias);
    eng_tensor_free(&table), eng_tensor_free(&ids), eng_tensor_free(&e);
}

Test(ops, transpose_upsample_validate)
{
    eng_tensor x = rnd(ENG_SHAPE(2, 3, 5)), y = rnd(ENG_SHAPE(2, 5, 3)), ybad = rnd(ENG_SHAPE(2, 3, 5));
    eng_tensor im = rnd(ENG_SHAPE(1, 2, 3, 4)), up = rnd(ENG_SHAPE(1, 2, 6, 8));
    eng_error err = {0};
#define CALL(e) eng_op_transpose(&ybad, &x, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "transpose: y has shape [2, 3, 5], expected [2, 5, 3]");
#undef CALL
#define CALL(e) eng_op_upsample_nearest2x(&ybad, &im, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "upsample_nearest2x: y has shape");
#undef CALL
    cr_assert_eq(eng_op_transpose(&y, &x, &err), 0, "%s", err.msg);
    cr_assert_float_eq(((float *)y.data)[1 * 15 + 4 * 3 + 2], ((float *)x.data)[1 * 15 + 2 * 5 + 4], 0);
    cr_assert_eq(eng_op_upsample_nearest2x(&up, &im, &err), 0, "%s", err.msg);
    cr_assert_float_eq(((float *)up.data)[1 * 48 + 5 * 8 + 7], ((float *)im.data)[1 * 12 + 2 * 4 + 3], 0);
    eng_tensor_free(&x), eng_tensor_free(&y), eng_tensor_free(&ybad), eng_tensor_free(&im);
    eng_tensor_free(&up);
}

Test(ops, missing_op_is_unsupported)
{
    eng_error err = {0};
    eng_tensor x = rnd(ENG_SHAPE(4)), y = rnd(ENG_SHAPE(4));
    int (*saved)(eng_backend *, eng_tensor *, const eng_tensor *, float, eng_error *) = cpu->scale;
    cpu->scale = NULL;
    cr_assert_eq(eng_op_scale(&y, &x, 2.0f, &err), ENG_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "scale: not implemented on backend cpu"), "%s", err.msg);
    cpu->scale = saved;
    cr_assert_eq(eng_op_scale(&y, &x, 2.0f, &err), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(((float *)y.data)[i], 2.0f * ((float *)x.data)[i], 0);
    eng_tensor_free(&x), eng_tensor_free(&y);
}

Test(ops, upload_download)
{
    eng_error err = {0};
    eng_tensor t;
    float in[6] = {1, 2, 3, 4, 5, 6}, out[6] = {0};
    cr_assert_eq(eng_tensor_init(&t, cpu, ENG_DTYPE_F32, ENG_SHAPE(2, 3), &err), 0);
    cr_assert_eq(eng_tensor_upload(&t, in, &err), 0);
    cr_assert_eq(eng_tensor_download(&t, out, &err), 0);
    cr_assert_eq(memcmp(in, out, sizeof in), 0);
    eng_tensor_free(&t);
}

/* The fused ops equal the ops they stand for, and name their arguments when rejecting them. */
Test(ops, fused_ops_validate_and_match_their_parts)
{
    eng_tensor x = rnd(ENG_SHAPE(2, 5, 8)), sc = rnd(ENG_SHAPE(2, 8)), sh = rnd(ENG_SHAPE(2, 8));
    eng_tensor y = rnd(ENG_SHAPE(2, 5, 8)), r = rnd(ENG_SHAPE(2, 5, 8)), bad = rnd(ENG_SHAPE(3, 8));
    eng_tensor w = rnd(ENG_SHAPE(6, 8)), b = rnd(ENG_SHAPE(6));
    eng_tensor g = rnd(ENG_SHAPE(2, 5, 6)), gr = rnd(ENG_SHAPE(2, 5, 6)), wbad = rnd(ENG_SHAPE(6, 7));
    eng_error err = {0};

#define CALL(e) eng_op_norm_modulate(&y, &x, &bad, &sh, 1e-6f, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "norm_modulate: scale");
#undef CALL
#define CALL(e) eng_op_norm_modulate(&y, &x, &sc, &sh, 0.0f, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "norm_modulate: eps");
#undef CALL
    cr_assert_eq(eng_op_norm_modulate(&y, &x, &sc, &sh, 1e-6f, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_op_layer_norm(&r, &x, NULL, NULL, 1e-6f, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_op_modulate(&r, &r, &sc, &sh, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(y.data, r.data, eng_tensor_nbytes(&y)), 0);

#define CALL(e) eng_op_linear_gelu(&g, &x, &wbad, NULL, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "linear_gelu: w has shape [6, 7]");
#undef CALL
    cr_assert_eq(eng_op_linear_gelu(&g, &x, &w, &b, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_op_linear(&gr, &x, &w, &b, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_op_act(&gr, &gr, ENG_ACT_GELU_TANH, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(g.data, gr.data, eng_tensor_nbytes(&g)), 0);

    eng_tensor_free(&x), eng_tensor_free(&sc), eng_tensor_free(&sh), eng_tensor_free(&y);
    eng_tensor_free(&r), eng_tensor_free(&bad), eng_tensor_free(&w), eng_tensor_free(&b);
    eng_tensor_free(&g), eng_tensor_free(&gr), eng_tensor_free(&wbad);
}

/* ttt_local against a direct evaluation of its formula (double precision), and its checks. */
Test(ops, ttt_local_validates_and_computes)
{
    const int64_t B = 2, gh = 3, gw = 4, Nt = 2, N = gh * gw + Nt, C = 5;
    eng_tensor q = rnd(ENG_SHAPE(B, N, C)), k = rnd(ENG_SHAPE(B, N, C));
    eng_tensor qw = rnd(ENG_SHAPE(C, 1, 3, 3)), qb = rnd(ENG_SHAPE(C));
    eng_tensor kw = rnd(ENG_SHAPE(C, 1, 3, 3)), kb = rnd(ENG_SHAPE(C));
    eng_tensor q2 = rnd(ENG_SHAPE(B, N, C)), k2 = rnd(ENG_SHAPE(B, N, C));
    eng_tensor wbad = rnd(ENG_SHAPE(C, 1, 2, 2));
    eng_error err = {0};
    const float eps = 1.0f;

#define CALL(e) eng_op_ttt_local(&q2, &k2, &q, &k, &wbad, &qb, &kw, &kb, gh, gw, eps, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "ttt_local: qw has shape [5, 1, 2, 2]");
#undef CALL
#define CALL(e) eng_op_ttt_local(&q2, &k2, &q, &k, &qw, &qb, &kw, &kb, 4, 4, eps, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "does not fit 14 tokens");
#undef CALL
#define CALL(e) eng_op_ttt_local(&q, &k2, &q, &k, &qw, &qb, &kw, &kb, gh, gw, eps, e)
    EXPECT_ERR(CALL, ENG_EINVAL, "must not alias");
#undef CALL
    cr_assert_eq(eng_op_ttt_local(&q2, &k2, &q, &k, &qw, &qb, &kw, &kb, gh, gw, eps, &err), 0,
                 "%s", err.msg);

    const float *Q = q.data, *K = k.data, *QW = qw.data, *QB = qb.data, *KW = kw.data,
                *KB = kb.data, *Q2 = q2.data, *K2 = k2.data;
    double maxerr = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++) {
            double mean = 0, var = 0;
            for (int64_t n = 0; n < N; n++)
                mean += K[(b * N + n) * C + c];
            mean /= N;
            for (int64_t n = 0; n < N; n++) {
                double d = K[(b * N + n) * C + c] - mean;
                var += d * d;
            }
            double rstd = 1.0 / sqrt(var / N + eps);
            for (int64_t n = 0; n < N; n++) {
                double eq = Q[(b * N + n) * C + c];
                double ek = (K[(b * N + n) * C + c] - mean) * rstd;
                if (n < gh * gw) {
                    int64_t r0 = n / gw, c0 = n % gw;
                    eq += QB[c];
                    ek += KB[c];
                    for (int dy = -1; dy <= 1; dy++)
                        for (int dx = -1; dx <= 1; dx++) {
                            int64_t rr = r0 + dy, cc = c0 + dx;
                            if (rr < 0 || rr >= gh || cc < 0 || cc >= gw)
                                continue;
                            int64_t m = rr * gw + cc, t = (dy + 1) * 3 + (dx + 1);
                            eq += QW[c * 9 + t] * Q[(b * N + m) * C + c];
                            ek += KW[c * 9 + t] * (K[(b * N + m) * C + c] - mean) * rstd;
                        }
                }
                maxerr = fmax(maxerr, fabs(eq - Q2[(b * N + n) * C + c]));
                maxerr = fmax(maxerr, fabs(ek - K2[(b * N + n) * C + c]));
            }
        }
    cr_assert_lt(maxerr, 1e-5, "max error %g", maxerr);
    eng_tensor_free(&q), eng_tensor_free(&k), eng_tensor_free(&qw), eng_tensor_free(&qb);
    eng_tensor_free(&kw), eng_tensor_free(&kb), eng_tensor_free(&q2), eng_tensor_free(&k2);
    eng_tensor_free(&wbad);
}
