/*
 * test_threads.c - what threads share, run under ThreadSanitizer (`make tsan`).
 *
 * Criterion cannot start under TSan (its shared arena fails to map: Snaipe/Criterion#274), so
 * this is a plain program that ends with "N passed, N failed". It covers the code the daemon's
 * threads will share: the logger (one lock, whole lines) and CPU backends used by several
 * workers at once (each worker owns its backend; kernels keep no global state).
 */
#include "engine/backend/backend.h"
#include "engine/core/log.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4

static int passed, failed;

static void check(int ok, const char *what)
{
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (ok)
        passed++;
    else
        failed++;
}

static void *log_worker(void *arg)
{
    for (int i = 0; i < 200; i++)
        eng_log(ENG_LOG_INFO, "req-1", "thread %d line %d", (int)(intptr_t)arg, i);
    return NULL;
}

static void test_log_lines_whole(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    pthread_t t[THREADS];

    eng_log_set_file(f);
    for (intptr_t i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, log_worker, (void *)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    eng_log_set_file(NULL);
    fclose(f);

    int lines = 0, whole = 1;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        lines++;
        whole &= strstr(line, " info  [req-1] thread ") != NULL;
    }
    free(buf);
    check(lines == THREADS * 200 && whole, "concurrent log lines arrive whole");
}

typedef struct worker {
    int seed;
    double result;
    int rc;
} worker;

/* One worker: its own backend, a small linear + attention + softmax chain. */
static void *op_worker(void *arg)
{
    worker *w = arg;
    eng_error err = {0};
    eng_backend *be = eng_backend_cpu_create(&err);
    eng_tensor x, wt, y, o;
    eng_attention_params ap = {.heads = 2, .scale = 0.25f, .causal = 0};

    w->rc = -1;
    if (!be)
        return NULL;
    if (eng_tensor_init(&x, be, ENG_DTYPE_F32, ENG_SHAPE(2, 16, 32), &err) ||
        eng_tensor_init(&wt, be, ENG_DTYPE_F32, ENG_SHAPE(32, 32), &err) ||
        eng_tensor_init(&y, be, ENG_DTYPE_F32, ENG_SHAPE(2, 16, 32), &err) ||
        eng_tensor_init(&o, be, ENG_DTYPE_F32, ENG_SHAPE(2, 16, 32), &err))
        return NULL;
    float *xs = x.data, *ws = wt.data;
    for (int i = 0; i < 2 * 16 * 32; i++)
        xs[i] = sinf((float)(i * (w->seed + 1)));
    for (int i = 0; i < 32 * 32; i++)
        ws[i] = cosf((float)i) * 0.1f;
    for (int rep = 0; rep < 20; rep++) {
        if (eng_op_linear(&y, &x, &wt, NULL, &err) ||
            eng_op_attention(&o, &y, &y, &y, NULL, &ap, &err) || eng_op_softmax(&x, &o, &err))
            return NULL;
    }
    double sum = 0;
    for (int i = 0; i < 2 * 16 * 32; i++)
        sum += xs[i];
    w->result = sum;
    w->rc = 0;
    eng_tensor_free(&x), eng_tensor_free(&wt), eng_tensor_free(&y), eng_tensor_free(&o);
    eng_backend_destroy(be);
    return NULL;
}

static void test_backends_in_parallel(void)
{
    worker ws[THREADS], alone;
    pthread_t t[THREADS];
    int ok = 1;

    for (int i = 0; i < THREADS; i++) {
        ws[i].seed = i % 2;
        pthread_create(&t[i], NULL, op_worker, &ws[i]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (int s = 0; s < 2; s++) {
        alone.seed = s;
        op_worker(&alone);
        for (int i = s; i < THREADS; i += 2)
            ok &= ws[i].rc == 0 && alone.rc == 0 && ws[i].result == alone.result;
    }
    check(ok, "CPU backends on parallel threads give the single-thread results");
}

int main(void)
{
    test_log_lines_whole();
    test_backends_in_parallel();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
