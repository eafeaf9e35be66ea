/* test_elementwise.c - broadcast add/mul, scale, modulate, gated add, token concat/split,
 * embedding and transpose against naive references. */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/k_cpu.h"
#include "tests/common/test_util.h"

#define TOL 1e-4

/* {n, nb}: nb divides n. Covers scalar, full-size, odd and large (past the threads) cases. */
static const int64_t bin_shapes[][2] = {
    {1, 1}, {7, 7}, {33, 1}, {35, 7}, {33 * 40, 33}, {201216, 1536}, {200003, 200003}, {70000, 1},
    {100000, 3},
};
#define N_BIN (sizeof bin_shapes / sizeof bin_shapes[0])

static void check_binary(int is_mul, int64_t n, int64_t nb, int in_place, uint64_t seed)
{
    uint64_t st = seed;
    float *a = tu_alloc(n), *b = tu_alloc(nb), *y = tu_alloc(n);
    double *ref = tu_alloc_d(n);
    tu_rand_fill(a, n, &st, -3.0f, 3.0f);
    tu_rand_fill(b, nb, &st, -2.0f, 2.0f);
    for (int64_t i = 0; i < n; i++)
        ref[i] = is_mul ? (double)a[i] * b[i % nb] : (double)a[i] + b[i % nb];
    if (in_place) {
        memcpy(y, a, (size_t)n * sizeof *y);
        (is_mul ? k_cpu_mul : k_cpu_add)(y, y, b, n, nb);
    } else {
        tu_poison(y, n);
        (is_mul ? k_cpu_mul : k_cpu_add)(y, a, b, n, nb);
    }
    cr_assert(!tu_has_nan(y, n), "%s n=%lld nb=%lld: output not fully written",
              is_mul ? "mul" : "add", (long long)n, (long long)nb);
    double err = tu_rel_err(y, ref, n);
    cr_assert(err <= TOL, "%s n=%lld nb=%lld in_place=%d: rel err %g", is_mul ? "mul" : "add",
              (long long)n, (long long)nb, in_place, err);
    free(a), free(b), free(y), free(ref);
}

Test(elementwise, add)
{
    for (size_t i = 0; i < N_BIN; i++) {
        check_binary(0, bin_shapes[i][0], bin_shapes[i][1], 0, 10 + i);
        check_binary(0, bin_shapes[i][0], bin_shapes[i][1], 1, 30 + i);
    }
}

Test(elementwise, mul)
{
    for (size_t i = 0; i < N_BIN; i++) {
        check_binary(1, bin_shapes[i][0], bin_shapes[i][1], 0, 50 + i);
        check_binary(1, bin_shapes[i][0], bin_shapes[i][1], 1, 70 + i);
    }
}

Test(elementwise, scale)
{
    static const int64_t ns[] = {1, 7, 33, 100003};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++)
        for (int in_place = 0; in_place < 2; in_place++) {
            int64_t n = ns[k];
            uint64_t st = 90 + k;
            float *x = tu_alloc(n), *y = tu_alloc(n);
            double *ref = tu_alloc_d(n);
            tu_rand_fill(x, n, &st, -4.0f, 4.0f);
            const float s = -0.37f;
            for (int64_t i = 0; i < n; i++)
                ref[i] = (double)x[i] * s;
            if (in_place) {
                memcpy(y, x, (size_t)n * sizeof *y);
                k_cpu_scale(y, y, s, n);
            } else {
                tu_poison(y, n);
                k_cpu_scale(y, x, s, n);
            }
            cr_assert(!tu_has_nan(y, n), "scale n=%lld: output not fully written", (long long)n);
            double err = tu_rel_err(y, ref, n);
            cr_assert(err <= TOL, "scale n=%lld in_place=%d: rel err %g", (long long)n, in_place,
                      err);
            free(x), free(y), free(ref);
        }
}

static const int64_t bnc_shapes[][3] = {{1, 1, 1}, {2, 7, 33}, {3, 33, 7}, {1, 1, 65}, {2, 300, 256}};
#define N_BNC (sizeof bnc_shapes / sizeof bnc_shapes[0])

Test(elementwise, modulate)
{
    for (size_t k = 0; k < N_BNC; k++)
        for (int in_place = 0; in_place < 2; in_place++) {
            const int64_t B = bnc_shapes[k][0], N = bnc_shapes[k][1], C = bnc_shapes[k][2];
            const int64_t n = B * N * C;
            uint64_t st = 110 + k;
            float *x = tu_alloc(n), *y = tu_alloc(n), *sc = tu_alloc(B * C), *sh = tu_alloc(B * C);
            double *ref = tu_alloc_d(n);
            tu_rand_fill(x, n, &st, -3.0f, 3.0f);
            tu_rand_fill(sc, B * C, &st, -1.5f, 1.5f);
            tu_rand_fill(sh, B * C, &st, -1.0f, 1.0f);
            for (int64_t b = 0; b < B; b++)
                for (int64_t t = 0; t < N; t++)
                    for (int64_t c = 0; c < C; c++) {
                        int64_t i = (b * N + t) * C + c;
                        ref[i] = (double)x[i] * (1.0 + sc[b * C + c]) + sh[b * C + c];
                    }
            if (in_place) {
                memcpy(y, x, (size_t)n * sizeof *y);
                k_cpu_modulate(y, y, sc, sh, B, N, C);
            } else {
                tu_poison(y, n);
                k_cpu_modulate(y, x, sc, sh, B, N, C);
            }
            cr_assert(!tu_has_nan(y, n), "modulate: output not fully written");
            double err = tu_rel_err(y, ref, n);
            cr_assert(err <= TOL, "modulate B=%lld N=%lld C=%lld in_place=%d: rel err %g",
                      (long long)B, (long long)N, (long long)C, in_place, err);
            free(x), free(y), free(sc), free(sh), free(ref);
        }
}

Test(elementwise, gated_add)
{
    for (size_t k = 0; k < N_BNC; k++) {
        const int64_t B = bnc_shapes[k][0], N = bnc_shapes[k][1], C = bnc_shapes[k][2];
        const int64_t n = B * N * C;
        uint64_t st = 130 + k;
        float *x = tu_alloc(n), *y = tu_alloc(n), *g = tu_alloc(B * C);
        double *ref = tu_alloc_d(n);
        tu_rand_fill(x, n, &st, -3.0f, 3.0f);
        tu_rand_fill(y, n, &st, -2.0f, 2.0f); /* y is read: the residual stream */
        tu_rand_fill(g, B * C, &st, -1.0f, 1.0f);
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < N; t++)
                for (int64_t c = 0; c < C; c++) {
                    int64_t i = (b * N + t) * C + c;
                    ref[i] = (double)y[i] + (double)g[b * C + c] * x[i];
                }
        k_cpu_gated_add(y, x, g, B, N, C);
        double err = tu_rel_err(y, ref, n);
        cr_assert(err <= TOL, "gated_add B=%lld N=%lld C=%lld: rel err %g", (long long)B,
                  (long long)N, (long long)C, err);
        free(x), free(y), free(g), free(ref);
    }
}

/* Pure data movement: results must be bit-exact. */
Test(elementwise, concat_split_tokens)
{
    static const int64_t shapes[][4] = {
        /* B, Na, Nb, C */
        {1, 1, 1, 1}, {2, 7, 33, 5}, {3, 33, 7, 1}, {2, 0, 5, 3}, {2, 5, 0, 3}, {2, 1024, 333, 64},
    };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const int64_t B = shapes[k][0], Na = shapes[k][1], Nb = shapes[k][2], C = shapes[k][3];
        const int64_t n = B * (Na + Nb) * C;
        uint64_t st = 150 + k;
        float *a = tu_alloc(B * Na * C), *b = tu_alloc(B * Nb * C), *y = tu_alloc(n);
        float *a2 = tu_alloc(B * Na * C), *b2 = tu_alloc(B * Nb * C);
        tu_rand_fill(a, B * Na * C, &st, -1.0f, 1.0f);
        tu_rand_fill(b, B * Nb * C, &st, -1.0f, 1.0f);
        tu_poison(y, n);
        k_cpu_concat_tokens(y, a, b, B, Na, Nb, C);
        for (int64_t bi = 0; bi < B; bi++)
            for (int64_t t = 0; t < Na + Nb; t++)
                for (int64_t c = 0; c < C; c++) {
                    float got = y[(bi * (Na + Nb) + t) * C + c];
                    float want = t < Na ? a[(bi * Na + t) * C + c] : b[(bi * Nb + t - Na) * C + c];
                    cr_assert(got == want, "concat B=%lld Na=%lld Nb=%lld C=%lld: [%lld,%lld,%lld]",
                              (long long)B, (long long)Na, (long long)Nb, (long long)C,
                              (long long)bi, (long long)t, (long long)c);
                }
        tu_poison(a2, B * Na * C);
        tu_poison(b2, B * Nb * C);
        k_cpu_split_tokens(a2, b2, y, B, Na, Nb, C);
        cr_assert(memcmp(a, a2, (size_t)(B * Na * C) * sizeof *a) == 0, "split: a differs");
        cr_assert(memcmp(b, b2, (size_t)(B * Nb * C) * sizeof *b) == 0, "split: b differs");
        free(a), free(b), free(y), free(a2), free(b2);
    }
}

Test(elementwise, embedding)
{
    static const int64_t shapes[][3] = {{1, 1, 1}, {7, 5, 33}, {33, 100, 7}, {300, 1000, 768}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const int64_t n = shapes[k][0], V = shapes[k][1], C = shapes[k][2];
        uint64_t st = 170 + k;
        float *table = tu_alloc(V * C), *y = tu_alloc(n * C);
        int32_t *ids = malloc((size_t)n * sizeof *ids);
        cr_assert_not_null(ids);
        tu_rand_fill(table, V * C, &st, -1.0f, 1.0f);
        for (int64_t i = 0; i < n; i++)
            ids[i] = (int32_t)(tu_rand_u64(&st) % (uint64_t)V);
        ids[n - 1] = (int32_t)(V - 1); /* the last row of the table is reachable */
        tu_poison(y, n * C);
        int64_t bad = k_cpu_embedding(y, table, ids, n, V, C);
        cr_assert(bad == -1, "embedding n=%lld V=%lld: returned %lld for valid ids", (long long)n,
                  (long long)V, (long long)bad);
        for (int64_t i = 0; i < n; i++)
            cr_assert(memcmp(y + i * C, table + (int64_t)ids[i] * C, (size_t)C * sizeof *y) == 0,
                      "embedding: row %lld is not table[%d]", (long long)i, ids[i]);
        free(table), free(y), free(ids);
    }
}

Test(elementwise, embedding_bad_id)
{
    float table[4 * 3], y[6 * 3];
    uint64_t st = 190;
    tu_rand_fill(table, 12, &st, -1.0f, 1.0f);
    int32_t ids[6] = {0, 3, 1, 2, 3, 0};
    ids[4] = 4; /* == V: out of range */
    cr_assert(k_cpu_embedding(y, table, ids, 6, 4, 3) == 4, "id == V not reported at index 4");
    ids[2] = -1; /* an earlier negative id is the first bad one */
    cr_assert(k_cpu_embedding(y, table, ids, 6, 4, 3) == 2, "first bad id is at index 2");
    ids[0] = INT32_MAX;
    cr_assert(k_cpu_embedding(y, table, ids, 6, 4, 3) == 0, "INT32_MAX not reported at index 0");
    ids[0] = INT32_MIN;
    cr_assert(k_cpu_embedding(y, table, ids, 6, 4, 3) == 0, "INT32_MIN not reported at index 0");
}

Test(elementwise, transpose)
{
    static const int64_t shapes[][3] = {
        /* B, X, Y */
        {1, 1, 1}, {2, 7, 33}, {3, 33, 7}, {1, 100, 1}, {1, 1, 100}, {2, 64, 64}, {2, 513, 257},
    };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const int64_t B = shapes[k][0], X = shapes[k][1], Y = shapes[k][2];
        const int64_t n = B * X * Y;
        uint64_t st = 210 + k;
        float *x = tu_alloc(n), *y = tu_alloc(n), *back = tu_alloc(n);
        tu_rand_fill(x, n, &st, -1.0f, 1.0f);
        tu_poison(y, n);
        k_cpu_transpose(y, x, B, X, Y);
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < X; i++)
                for (int64_t j = 0; j < Y; j++)
                    cr_assert(y[(b * Y + j) * X + i] == x[(b * X + i) * Y + j],
                              "transpose B=%lld X=%lld Y=%lld: y[%lld,%lld,%lld]", (long long)B,
                              (long long)X, (long long)Y, (long long)b, (long long)j,
                              (long long)i);
        /* Transposing back restores the input exactly. */
        tu_poison(back, n);
        k_cpu_transpose(back, y, B, Y, X);
        cr_assert(memcmp(back, x, (size_t)n * sizeof *x) == 0,
                  "transpose B=%lld X=%lld Y=%lld: round trip differs", (long long)B,
                  (long long)X, (long long)Y);
        free(x), free(y), free(back);
    }
}
