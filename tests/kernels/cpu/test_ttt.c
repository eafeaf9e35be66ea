/*
 * test_ttt.c - k_cpu_ttt against a naive double-precision TTT inner model written here (plain
 * loops, one (sample, head) at a time, following engine/backend/backend.h's formulas), on fresh random
 * data: batches of 1 and 2, 1 to 3 heads, d = 16 and 64, N = 1, 7 and 200 tokens; outputs are
 * NaN-poisoned first. The reference's fast-weight update is itself checked against a finite-
 * difference gradient of the inner loss it claims to descend. Then eng_op_ttt on the CPU
 * backend: a valid call, and the rejected ones (weight shapes, heads, token shapes, dtypes).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend/backend.h"
#include "kernels/cpu/k_cpu.h"
#include "tests/common/test_util.h"

#define TTT_TOL 1e-4

static double sig(double z)
{
    return 1.0 / (1.0 + exp(-z));
}

/* R[n, e] = sum_c A[n, c] Wm[c, e] (A, R: N x d; Wm: d x d). */
static void mm(double *R, const double *A, const double *Wm, int64_t N, int64_t d)
{
    for (int64_t n = 0; n < N; n++)
        for (int64_t e = 0; e < d; e++) {
            double acc = 0.0;
            for (int64_t c = 0; c < d; c++)
                acc += A[n * d + c] * Wm[c * d + e];
            R[n * d + e] = acc;
        }
}

/*
 * One head in double: K, V, Q are N x d, W1, W2 d x d. Writes the updated weights into W1n, W2n
 * and, when O is not NULL, the output O (N x d).
 */
static void ttt_head_ref(const double *K, const double *V, const double *Q, const double *W1,
                         const double *W2, int64_t N, int64_t d, double *W1n, double *W2n,
                         double *O)
{
    const int64_t nd = N * d;
    double *Z = tu_alloc_d(nd), *S = tu_alloc_d(nd), *E = tu_alloc_d(nd), *P = tu_alloc_d(nd);
    const double scale = 1.0 / sqrt((double)d) / (double)N;

    mm(Z, K, W1, N, d);
    for (int64_t i = 0; i < nd; i++)
        S[i] = Z[i] * sig(Z[i]);
    mm(E, S, W2, N, d);
    for (int64_t i = 0; i < nd; i++)
        E[i] = (E[i] - V[i]) * scale;
    for (int64_t n = 0; n < N; n++) /* P = (E W2^T) * SiLU'(Z) */
        for (int64_t c = 0; c < d; c++) {
            double acc = 0.0;
            for (int64_t e = 0; e < d; e++)
                acc += E[n * d + e] * W2[c * d + e];
            const double z = Z[n * d + c], g = sig(z);
            P[n * d + c] = acc * g * (1.0 + z * (1.0 - g));
        }
    for (int64_t a = 0; a < d; a++) /* W1' = W1 - K^T P, W2' = W2 - S^T E */
        for (int64_t b = 0; b < d; b++) {
            double g1 = 0.0, g2 = 0.0;
            for (int64_t n = 0; n < N; n++) {
                g1 += K[n * d + a] * P[n * d + b];
                g2 += S[n * d + a] * E[n * d + b];
            }
            W1n[a * d + b] = W1[a * d + b] - g1;
            W2n[a * d + b] = W2[a * d + b] - g2;
        }
    if (O) {
        mm(Z, Q, W1n, N, d);
        for (int64_t i = 0; i < nd; i++)
            S[i] = Z[i] * sig(Z[i]);
        mm(O, S, W2n, N, d);
    }
    free(Z);
    free(S);
    free(E);
    free(P);
}

/* The whole op in double over the strided layout: o[B, N, h*d]. */
static void ttt_ref(double *o, const float *q, const float *k, const float *v, const float *w1,
                    const float *w2, int64_t B, int64_t N, int64_t h, int64_t d)
{
    const int64_t C = h * d, nd = N * d;
    double *K = tu_alloc_d(nd), *V = tu_alloc_d(nd), *Q = tu_alloc_d(nd), *O = tu_alloc_d(nd);
    double *W1 = tu_alloc_d(d * d), *W2 = tu_alloc_d(d * d);
    double *W1n = tu_alloc_d(d * d), *W2n = tu_alloc_d(d * d);
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < h; j++) {
            for (int64_t n = 0; n < N; n++)
                for (int64_t c = 0; c < d; c++) {
                    const int64_t src = (b * N + n) * C + j * d + c;
                    K[n * d + c] = k[src];
                    V[n * d + c] = v[src];
                    Q[n * d + c] = q[src];
                }
            for (int64_t i = 0; i < d * d; i++) {
                W1[i] = w1[j * d * d + i];
                W2[i] = w2[j * d * d + i];
            }
            ttt_head_ref(K, V, Q, W1, W2, N, d, W1n, W2n, O);
            for (int64_t n = 0; n < N; n++)
                for (int64_t c = 0; c < d; c++)
                    o[(b * N + n) * C + j * d + c] = O[n * d + c];
        }
    free(K), free(V), free(Q), free(O), free(W1), free(W2), free(W1n), free(W2n);
}

typedef struct ttt_data {
    int64_t B, N, h, d;
    float *q, *k, *v, *w1, *w2;
} ttt_data;

/* Inputs at the scales the model sees: q, k of unit variance (k is instance-normalised),
 * v in [-1, 1), fast weights of std 0.2 (the test fixtures' initialisation). */
static ttt_data make_data(int64_t B, int64_t N, int64_t h, int64_t d, uint64_t seed)
{
    ttt_data t = {B, N, h, d, NULL, NULL, NULL, NULL, NULL};
    const int64_t n = B * N * h * d, nw = h * d * d;
    uint64_t st = seed;
    t.q = tu_alloc(n), t.k = tu_alloc(n), t.v = tu_alloc(n);
    t.w1 = tu_alloc(nw), t.w2 = tu_alloc(nw);
    tu_rand_fill(t.q, n, &st, -1.7f, 1.7f);
    tu_rand_fill(t.k, n, &st, -1.7f, 1.7f);
    tu_rand_fill(t.v, n, &st, -1.0f, 1.0f);
    tu_rand_fill(t.w1, nw, &st, -0.35f, 0.35f);
    tu_rand_fill(t.w2, nw, &st, -0.35f, 0.35f);
    return t;
}

static void free_data(ttt_data *t)
{
    free(t->q), free(t->k), free(t->v), free(t->w1), free(t->w2);
}

static void run_case(int64_t B, int64_t N, int64_t h, int64_t d, uint64_t seed)
{
    ttt_data t = make_data(B, N, h, d, seed);
    const int64_t n = B * N * h * d;
    float *o = tu_alloc(n);
    double *ref = tu_alloc_d(n);

    tu_poison(o, n);
    cr_assert_eq(k_cpu_ttt(o, t.q, t.k, t.v, t.w1, t.w2, B, N, h, d), 0);
    cr_assert(!tu_has_nan(o, n), "output not fully written");
    ttt_ref(ref, t.q, t.k, t.v, t.w1, t.w2, B, N, h, d);
    const double err = tu_rel_err(o, ref, n);
    cr_assert(err <= TTT_TOL, "B%lld N%lld h%lld d%lld: rel err %g > %g", (long long)B,
              (long long)N, (long long)h, (long long)d, err, TTT_TOL);
    free_data(&t);
    free(o);
    free(ref);
}

Test(ttt, one_token_one_head)
{
    run_case(1, 1, 1, 16, 1);
}

Test(ttt, one_token_batch)
{
    run_case(2, 1, 2, 64, 2);
}

Test(ttt, few_tokens)
{
    run_case(2, 7, 3, 16, 3);
    run_case(1, 7, 1, 64, 4);
}

Test(ttt, many_tokens_d16)
{
    run_case(2, 200, 3, 16, 5);
}

Test(ttt, many_tokens_d64)
{
    run_case(2, 200, 2, 64, 6);
    run_case(1, 200, 3, 64, 7);
}

/*
 * The update the reference applies is one gradient step on the inner loss
 *   L(W1, W2) = s / (2N) * sum_n || SiLU(K W1) W2 - V ||^2   (s = d^-1/2),
 * i.e. G1 = dL/dW1 and G2 = dL/dW2: checked by central differences on a small head.
 */
static double inner_loss(const double *K, const double *V, const double *W1, const double *W2,
                         int64_t N, int64_t d)
{
    double *Z = tu_alloc_d(N * d), *Y = tu_alloc_d(N * d), L = 0.0;
    mm(Z, K, W1, N, d);
    for (int64_t i = 0; i < N * d; i++)
        Z[i] *= sig(Z[i]);
    mm(Y, Z, W2, N, d);
    for (int64_t i = 0; i < N * d; i++)
        L += (Y[i] - V[i]) * (Y[i] - V[i]);
    free(Z);
    free(Y);
    return L / (2.0 * sqrt((double)d) * (double)N);
}

Test(ttt, reference_update_is_the_gradient)
{
    const int64_t N = 7, d = 5;
    double K[35], V[35], W1[25], W2[25], W1n[25], W2n[25], Wp[25], Wm[25];
    uint64_t st = 42;
    for (int i = 0; i < 35; i++) {
        K[i] = 3.4 * tu_rand_unit(&st) - 1.7;
        V[i] = 2.0 * tu_rand_unit(&st) - 1.0;
    }
    for (int i = 0; i < 25; i++) {
        W1[i] = 1.2 * tu_rand_unit(&st) - 0.6;
        W2[i] = 1.2 * tu_rand_unit(&st) - 0.6;
    }
    ttt_head_ref(K, V, K, W1, W2, N, d, W1n, W2n, NULL);
    const double h = 1e-6;
    for (int i = 0; i < 25; i++) {
        memcpy(Wp, W1, sizeof Wp), memcpy(Wm, W1, sizeof Wm);
        Wp[i] += h, Wm[i] -= h;
        double g = (inner_loss(K, V, Wp, W2, N, d) - inner_loss(K, V, Wm, W2, N, d)) / (2 * h);
        cr_assert(fabs((W1[i] - W1n[i]) - g) <= 1e-7 + 1e-5 * fabs(g), "dL/dW1[%d]: %g vs %g",
                  i, W1[i] - W1n[i], g);
        memcpy(Wp, W2, sizeof Wp), memcpy(Wm, W2, sizeof Wm);
        Wp[i] += h, Wm[i] -= h;
        g = (inner_loss(K, V, W1, Wp, N, d) - inner_loss(K, V, W1, Wm, N, d)) / (2 * h);
        cr_assert(fabs((W2[i] - W2n[i]) - g) <= 1e-7 + 1e-5 * fabs(g), "dL/dW2[%d]: %g vs %g",
                  i, W2[i] - W2n[i], g);
    }
}

/* ---- the front end on the CPU backend ---- */

#define EXPECT_ERR(rc_expr, code_, needle)                                                         \
    do {                                                                                           \
        int rc_ = (rc_expr);                                                                       \
        cr_assert_eq(rc_, (code_), "rc %d msg '%s'", rc_, err.msg);                                \
        cr_assert(strstr(err.msg, (needle)), "message '%s' lacks '%s'", err.msg, (needle));        \
    } while (0)

static eng_tensor cpu_tensor(eng_backend *cpu, eng_dtype dt, int ndim, const int64_t *shape,
                             const float *src)
{
    eng_tensor t;
    eng_error err = {0};
    cr_assert_eq(eng_tensor_init(&t, cpu, dt, ndim, shape, &err), 0, "%s", err.msg);
    if (src)
        memcpy(t.data, src, eng_tensor_nbytes(&t));
    else
        memset(t.data, 0, eng_tensor_nbytes(&t));
    return t;
}

Test(ttt, front_end)
{
    eng_error err = {0};
    eng_backend *cpu = eng_backend_cpu_create(&err);
    cr_assert_not_null(cpu, "%s", err.msg);
    const int64_t B = 2, N = 9, h = 2, d = 16, C = h * d, n = B * N * C;
    ttt_data t = make_data(B, N, h, d, 99);

    eng_tensor q = cpu_tensor(cpu, ENG_DTYPE_F32, ENG_SHAPE(2, 9, 32), t.q);
    eng_tensor k = cpu_tensor(cpu, ENG_DTYPE_F32, ENG_SHAPE(2, 9, 32), t.k);
    eng_tensor v = cpu_tensor(cpu, ENG_DTYPE_F32, ENG_SHAPE(2, 9, 32), t.v);
    eng_tensor w1 = cpu_tensor(cpu, ENG_DTYPE_F32, ENG_SHAPE(2, 16, 16), t.w1);
    eng_tensor w2 = cpu_tensor(cpu, ENG_DTYPE_F32, ENG_SHAPE(2, 16, 16), t.w2);
    eng_tensor o = cpu_tensor(cpu, ENG_DTYPE_F32, ENG_SHAPE(2, 9, 32), NULL);
    eng_tensor w1bad = cpu_tensor(cpu, ENG_DTYPE_F32, ENG_SHAPE(2, 16, 8), NULL);
    eng_tensor w2bad = cpu_tensor(cpu, ENG_DTYPE_F32, ENG_SHAPE(1, 16, 16), NULL);
    eng_tensor vbad = cpu_tensor(cpu, ENG_DTYPE_F32, ENG_SHAPE(2, 8, 32), NULL);
    eng_tensor q2d = cpu_tensor(cpu, ENG_DTYPE_F32, ENG_SHAPE(18, 32), NULL);
    eng_tensor kbf = cpu_tensor(cpu, ENG_DTYPE_BF16, ENG_SHAPE(2, 9, 32), NULL);
    eng_tensor obf = cpu_tensor(cpu, ENG_DTYPE_BF16, ENG_SHAPE(2, 9, 32), NULL);
    eng_tensor qbf = cpu_tensor(cpu, ENG_DTYPE_BF16, ENG_SHAPE(2, 9, 32), NULL);
    eng_tensor vbf = cpu_tensor(cpu, ENG_DTYPE_BF16, ENG_SHAPE(2, 9, 32), NULL);
    eng_tensor w1bf = cpu_tensor(cpu, ENG_DTYPE_BF16, ENG_SHAPE(2, 16, 16), NULL);
    eng_tensor w2bf = cpu_tensor(cpu, ENG_DTYPE_BF16, ENG_SHAPE(2, 16, 16), NULL);

    /* Valid: the same numbers as the reference. */
    double *ref = tu_alloc_d(n);
    tu_poison(o.data, n);
    cr_assert_eq(eng_op_ttt(&o, &q, &k, &v, &w1, &w2, 2, &err), 0, "%s", err.msg);
    ttt_ref(ref, t.q, t.k, t.v, t.w1, t.w2, B, N, h, d);
    const double e = tu_rel_err(o.data, ref, n);
    cr_assert(e <= TTT_TOL, "rel err %g", e);

    /* Rejected. */
    EXPECT_ERR(eng_op_ttt(&o, &q, &k, &v, &w1bad, &w2, 2, &err), ENG_EINVAL,
               "ttt: w1 has shape [2, 16, 8], expected [2, 16, 16]");
    EXPECT_ERR(eng_op_ttt(&o, &q, &k, &v, &w1, &w2bad, 2, &err), ENG_EINVAL,
               "ttt: w2 has shape [1, 16, 16]");
    EXPECT_ERR(eng_op_ttt(&o, &q, &k, &v, &w1, &w2, 3, &err), ENG_EINVAL,
               "3 heads do not divide 32 channels");
    EXPECT_ERR(eng_op_ttt(&o, &q, &k, &v, &w1, &w2, 0, &err), ENG_EINVAL, "0 heads");
    /* w1 [2, 16, 16] does not fit 4 heads of 8. */
    EXPECT_ERR(eng_op_ttt(&o, &q, &k, &v, &w1, &w2, 4, &err), ENG_EINVAL,
               "expected [4, 8, 8]");
    EXPECT_ERR(eng_op_ttt(&o, &q, &k, &vbad, &w1, &w2, 2, &err), ENG_EINVAL,
               "ttt: v has shape [2, 8, 32]");
    EXPECT_ERR(eng_op_ttt(&o, &q2d, &k, &v, &w1, &w2, 2, &err), ENG_EINVAL,
               "ttt: q has shape [18, 32], expected rank 3");
    EXPECT_ERR(eng_op_ttt(&o, &q, &kbf, &v, &w1, &w2, 2, &err), ENG_EINVAL,
               "k has dtype BF16, expected F32");
    /* All-BF16 passes the front end; the CPU backend computes in F32 only. */
    EXPECT_ERR(eng_op_ttt(&obf, &qbf, &kbf, &vbf, &w1bf, &w2bf, 2, &err), ENG_EUNSUPPORTED,
               "F32");

    free(ref);
    free_data(&t);
    eng_tensor *all[] = {&q, &k, &v, &w1, &w2, &o, &w1bad, &w2bad, &vbad, &q2d, &kbf, &obf,
                         &qbf, &vbf, &w1bf, &w2bf};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        eng_tensor_free(all[i]);
    eng_backend_destroy(cpu);
}
