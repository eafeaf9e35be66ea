/*
 * test_security_jobs.c - `tttd serve` against clients that should not reach each other's work and
 * against a host that changes files under it (issue 11, items 4, 8 and 12):
 *   - job ids: a server id must not predict the next one (the old splitmix64 could be inverted
 *     from one id: the test does that inversion and requires its prediction to miss);
 *   - job ownership: with several API keys, a job is seen and canceled only with the key that
 *     created it, another key gets the 404 of an unknown id, and its own job under the same
 *     X-Request-Id shadows nothing;
 *   - the exit status after a drain timeout that canceled work (3, with the count in the log);
 *   - a weights file truncated or rewritten while the model loads: the server must neither die
 *     (SIGBUS from a mapping) nor serve other weights than those it read. A file lease (F_WRLCK)
 *     on a second shard holds the loader between opening the first shard and copying its
 *     tensors, so that the change lands exactly in that window on every run. The safetensors
 *     reader is also checked alone (its tensors after the file is truncated), and a server whose
 *     files are truncated after the load keeps answering.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/io/safetensors.h"
#include "tests/server/integration_util.h"

static it_server srv;

static void stop_server(void)
{
    if (srv.pid > 0)
        it_server_stop(&srv, 5000);
}

TestSuite(security_jobs, .fini = stop_server, .timeout = 90);

#define SMALL "\"width\":32,\"height\":48,\"steps\":2,\"guidance\":1"

/* ---- ids: the splitmix64 inversion ---- */

static uint64_t mul_inverse(uint64_t a) /* a odd: a * result == 1 mod 2^64 (Newton) */
{
    uint64_t x = a;
    for (int i = 0; i < 6; i++)
        x *= 2 - a * x;
    return x;
}

static uint64_t unxorshift(uint64_t y, int s) /* x from y = x ^ (x >> s) */
{
    uint64_t x = y;
    for (int i = 0; i < 64 / s + 1; i++)
        x = y ^ (x >> s);
    return x;
}

static uint64_t splitmix_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t splitmix_unmix(uint64_t z)
{
    z = unxorshift(z, 31);
    z *= mul_inverse(0x94d049bb133111ebull);
    z = unxorshift(z, 27);
    z *= mul_inverse(0xbf58476d1ce4e5b9ull);
    return unxorshift(z, 30);
}

/* The 20-digit id a splitmix64 whose last state was `state` writes next (16 digits of one
 * output, low nibble first, then 4 of the next): what main's srv_random_hex did. */
static void splitmix_id(uint64_t *state, char out[21])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t bits = 0;
    for (int i = 0; i < 20; i++) {
        if (i % 16 == 0)
            bits = splitmix_mix(*state += 0x9e3779b97f4a7c15ull);
        out[i] = hex[bits & 15];
        bits >>= 4;
    }
    out[20] = '\0';
}

/* The state after the id was written, if a splitmix64 wrote it. */
static uint64_t splitmix_state_of(const char *id)
{
    uint64_t z = 0;
    for (int i = 15; i >= 0; i--) {
        int c = id[i];
        z = z << 4 | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    return splitmix_unmix(z) + 0x9e3779b97f4a7c15ull; /* the second output's state */
}

static void healthz_id(char out[64])
{
    it_response r = it_http(&srv, "GET", "/healthz", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert(it_header(&r, "X-Request-Id", out, 64), "no X-Request-Id");
    cr_assert_eq(strlen(out), 20, "id %s", out);
    it_response_free(&r);
}

Test(security_jobs, request_ids_do_not_predict_the_next)
{
    it_server_start(&srv, NULL);
    int predicted = 0;
    char prev[64], next[64], guess[21];
    healthz_id(prev);
    for (int k = 0; k < 8; k++) {
        healthz_id(next);
        uint64_t state = splitmix_state_of(prev);
        splitmix_id(&state, guess);
        predicted += strcmp(guess, next) == 0;
        cr_assert_str_neq(prev, next);
        memcpy(prev, next, sizeof prev);
    }
    cr_assert_eq(predicted, 0, "%d of 8 ids were predicted from the one before (splitmix64)",
                 predicted);
}

/* ---- ownership ---- */

#define KEY_A "key-a-0123456789"
#define KEY_B "key-b-9876543210"
#define AUTH_A "Authorization: Bearer " KEY_A
#define AUTH_B "Authorization: Bearer " KEY_B

static it_response job_call(const char *method, const char *id, const char *auth)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    return it_http(&srv, method, path, NULL, auth, NULL);
}

/* r is exactly the answer an unknown id gets (the same status and body). */
static void expect_like_unknown(it_response *r, const it_response *unknown, const char *what)
{
    it_expect_error(r, 404, "not_found_error.job");
    cr_assert_eq(r->len, unknown->len, "%s: %s vs %s", what, r->body, unknown->body);
    cr_assert(memcmp(r->body, unknown->body, r->len) == 0, "%s: %s vs %s", what, r->body,
              unknown->body);
    it_response_free(r);
}

Test(security_jobs, another_key_cannot_see_or_cancel_a_job)
{
    it_server_start(&srv, "--api-key", KEY_A, "--api-key", KEY_B, "--workers", "1",
                    "--max-steps", "1000", NULL);
    it_request slow = {"POST", "/v1/generate",
                       "{\"prompt\":\"mine\",\"width\":32,\"height\":48,\"steps\":150,"
                       "\"guidance\":1,\"stream\":true}",
                       {AUTH_A, NULL}, 0};
    it_async *a = it_http_async(&srv, &slow);
    char *id = it_stream_job_id(a);

    it_response unknown = job_call("GET", "no-such-job-0000", AUTH_B);
    it_expect_error(&unknown, 404, "not_found_error.job");

    /* Key B: the job does not exist, for reading and for canceling. */
    it_response r = job_call("GET", id, AUTH_B);
    expect_like_unknown(&r, &unknown, "GET with another key");
    r = job_call("DELETE", id, AUTH_B);
    expect_like_unknown(&r, &unknown, "DELETE with another key");

    /* Key B's own request under the same X-Request-Id is its own job: it keeps that id (a new
     * one would tell B the id is taken) and A's job stays A's. */
    char hdr[128], got[64];
    snprintf(hdr, sizeof hdr, "X-Request-Id: %s", id);
    r = it_http(&srv, "POST", "/v1/generate", "{\"prompt\":\"theirs\"," SMALL "}", AUTH_B, hdr,
                NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(it_header(&r, "X-Request-Id", got, sizeof got));
    cr_assert_str_eq(got, id, "B's request was given another id: the id was confirmed taken");
    it_response_free(&r);
    r = job_call("GET", id, AUTH_B);
    cr_assert_eq(r.status, 200, "B reads its own job: %ld %s", r.status, r.body);
    json_t *j = it_json(&r);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "progress"), "steps")), 2,
                 "B sees its job, not A's: %s", r.body);
    json_decref(j);
    it_response_free(&r);

    /* Key A still reads its job, which finishes normally. */
    r = job_call("GET", id, AUTH_A);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    j = it_json(&r);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "progress"), "steps")), 150,
                 "%s", r.body);
    json_decref(j);
    it_response_free(&r);

    it_response ra = it_async_wait(a);
    cr_assert_eq(ra.status, 200);
    cr_assert(strstr(ra.body, "event: done"), "A's job finished: %s", ra.body);
    it_response_free(&ra);
    r = job_call("GET", id, AUTH_A);
    cr_assert_eq(r.status, 200);
    j = it_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "done");
    json_decref(j);
    it_response_free(&r);
    it_response_free(&unknown);
    free(id);
}

/* ---- the exit status after a drain timeout ---- */

Test(security_jobs, drain_timeout_exits_3_with_the_count)
{
    it_server_start(&srv, "--workers", "1", "--max-batch", "1", "--drain-timeout", "100ms",
                    "--max-steps", "10000", NULL);
    it_request slow = {"POST", "/v1/generate",
                       "{\"prompt\":\"slow\",\"width\":32,\"height\":48,\"steps\":5000,"
                       "\"guidance\":1,\"timeout_ms\":30000,\"stream\":true}",
                       {NULL}, 0};
    it_async *a = it_http_async(&srv, &slow), *b = it_http_async(&srv, &slow);
    free(it_stream_job_id(a));
    free(it_stream_job_id(b)); /* one running, one queued behind it */
    it_server_signal(&srv, SIGTERM);
    it_response ra = it_async_wait(a), rb = it_async_wait(b);
    cr_assert(strstr(ra.body, "event: error") && strstr(rb.body, "event: error"));
    it_response_free(&ra);
    it_response_free(&rb);
    /* The log goes with the server (it_server_wait removes it): read it before. */
    char *log = NULL;
    for (double t0 = it_now_ms(); it_now_ms() - t0 < 5000; it_sleep_ms(10)) {
        free(log);
        log = it_server_log(&srv);
        if (strstr(log, "stopped"))
            break;
    }
    cr_assert(strstr(log, "drain timeout: canceling 2 unfinished job(s)"), "log:\n%s", log);
    int status = it_server_wait(&srv, 10000);
    cr_assert_eq(status, 3, "exit status %d after a drain timeout that canceled work:\n%s",
                 status, log);
    free(log);
}

/* ---- weights changed on disk while the model loads ---- */

enum { CHANGE_TRUNCATE, CHANGE_OVERWRITE };

typedef struct lease_job {
    char a[512];  /* the first shard: read (or mapped) when the lease holds the loader */
    int fd;       /* the second shard, with our write lease */
    int mode;
    int broke;    /* the loader came to the second shard while we held it */
} lease_job;

/* A copy of the tiny model in a new temporary folder, its transformer split into two shards
 * (a.safetensors: every tensor but the last, b.safetensors: the last), which the loader opens in
 * name order and copies from only once both are open. */
static void model_copy_split(char dir[256], lease_job *L, char b[512])
{
    snprintf(dir, 256, "/tmp/tttd-sec-XXXXXX");
    cr_assert(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
    char cmd[800], whole[512];
    snprintf(cmd, sizeof cmd, "cp -r %s %s/m", IT_MODEL_DIR, dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    snprintf(whole, sizeof whole, "%s/m/transformer/diffusion_pytorch_model.safetensors", dir);
    snprintf(L->a, sizeof L->a, "%s/m/transformer/a.safetensors", dir);
    snprintf(b, 512, "%s/m/transformer/b.safetensors", dir);

    eng_error err = {0};
    eng_safetensors *st;
    cr_assert_eq(eng_safetensors_open(&st, whole, &err), 0, "%s", err.msg);
    size_t n = eng_safetensors_count(st);
    cr_assert_gt(n, 1);
    for (int part = 0; part < 2; part++) {
        eng_st_writer *w;
        cr_assert_eq(eng_st_writer_init(&w, &err), 0);
        for (size_t i = part ? n - 1 : 0; i < (part ? n : n - 1); i++) {
            const eng_st_tensor *t = eng_safetensors_at(st, i);
            cr_assert_eq(eng_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err),
                         0, "%s", err.msg);
        }
        cr_assert_eq(eng_st_writer_write(w, part ? b : L->a, &err), 0, "%s", err.msg);
        eng_st_writer_free(w);
    }
    eng_safetensors_close(st);
    cr_assert_eq(unlink(whole), 0);
}

/* Waits for the loader to open the leased shard, changes the first shard, lets the loader go. */
static void *lease_thread(void *arg)
{
    lease_job *L = arg;
    double deadline = it_now_ms() + 60000;
    /* While a break is pending, F_GETLEASE says what the lease must become (F_UNLCK). */
    while (fcntl(L->fd, F_GETLEASE) == F_WRLCK && it_now_ms() < deadline)
        it_sleep_ms(2);
    L->broke = fcntl(L->fd, F_GETLEASE) != F_WRLCK;
    if (L->mode == CHANGE_TRUNCATE) {
        if (truncate(L->a, 5) != 0)
            L->broke = -errno;
    } else {
        /* Rewritten in place at the same size, as `cp` over it would leave it. */
        struct stat sb;
        int fd = open(L->a, O_WRONLY);
        if (fd < 0 || fstat(fd, &sb) != 0) {
            L->broke = -errno;
        } else {
            char *junk = malloc((size_t)sb.st_size);
            memset(junk, 0x7f, (size_t)sb.st_size);
            if (pwrite(fd, junk, (size_t)sb.st_size, 0) != sb.st_size)
                L->broke = -errno;
            free(junk);
        }
        if (fd >= 0)
            close(fd);
    }
    fcntl(L->fd, F_SETLEASE, F_UNLCK);
    close(L->fd);
    return NULL;
}

/* The PNG that the tiny model makes of one prompt and seed on srv. */
static it_response reference_png(void)
{
    return it_http(&srv, "POST", "/v1/generate", "{\"prompt\":\"a cat\",\"seed\":7," SMALL "}",
                   "Accept: image/png", NULL);
}

static void weights_changed_while_loading(int mode)
{
    /* What the untouched model answers. */
    it_server_start(&srv, "--workers", "1", NULL);
    it_response want = reference_png();
    cr_assert_eq(want.status, 200);
    cr_assert_eq(it_server_stop(&srv, 5000), 0);

    char dir[256], b[512], spec[400];
    lease_job L = {.mode = mode};
    model_copy_split(dir, &L, b);
    /* The lease-break signal would end this test process; the break itself goes on. */
    signal(SIGIO, SIG_IGN);
    L.fd = open(b, O_WRONLY | O_CLOEXEC);
    cr_assert_geq(L.fd, 0);
    if (fcntl(L.fd, F_SETLEASE, F_WRLCK) != 0) {
        /* Some file systems (and fs.leases-enable = 0) have no leases: the window cannot be
         * held open here, so this check cannot run (it is not passed either). */
        int e = errno;
        cr_assert(e == EINVAL || e == ENOLCK || e == EACCES, "F_SETLEASE: %s", strerror(e));
        close(L.fd);
        cr_skip_test("no file leases on %s: %s", dir, strerror(e));
    }
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, lease_thread, &L), 0);

    snprintf(spec, sizeof spec, "default=%s/m", dir);
    it_server_start_bare(&srv, "--model", spec, "--workers", "1", NULL);
    pthread_join(th, NULL);
    cr_assert_eq(L.broke, 1, "the loader never opened the leased shard (or the change failed: %d)",
                 L.broke);

    /* The server is alive and answers with the weights it read, not with what is on disk now. */
    it_response got = reference_png();
    cr_assert_eq(got.status, 200, "%ld %s", got.status, got.body);
    int w, h;
    cr_assert(it_png_size(got.body, got.len, &w, &h) && w == 32 && h == 48);
    cr_assert(got.len == want.len && memcmp(got.body, want.body, got.len) == 0,
              "the image differs from the untouched model's: the weights changed under it");
    it_response r = it_http(&srv, "GET", "/healthz", NULL, NULL);
    cr_assert_eq(r.status, 200);
    it_response_free(&r);
    it_response_free(&got);
    it_response_free(&want);
    cr_assert_eq(it_server_stop(&srv, 5000), 0);

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(security_jobs, weights_truncated_while_loading)
{
    weights_changed_while_loading(CHANGE_TRUNCATE);
}

Test(security_jobs, weights_overwritten_while_loading)
{
    weights_changed_while_loading(CHANGE_OVERWRITE);
}

/* The reader itself: what an open handed out stays readable, and the same, after the file on
 * disk is truncated and rewritten (a mapping faults with SIGBUS, or shows the new bytes). */
Test(security_jobs, safetensors_open_keeps_its_own_bytes)
{
    enum { N = 8192 };
    static float v[N], got[N];
    for (int i = 0; i < N; i++)
        v[i] = (float)i * 0.5f;
    char path[] = "/tmp/tttd-sec-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    eng_error err = {0};
    eng_st_writer *w;
    int64_t shape[1] = {N};
    cr_assert_eq(eng_st_writer_init(&w, &err), 0);
    cr_assert_eq(eng_st_writer_add(w, "t", ENG_DTYPE_F32, 1, shape, v, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_st_writer_write(w, path, &err), 0, "%s", err.msg);
    eng_st_writer_free(w);

    eng_safetensors *st;
    cr_assert_eq(eng_safetensors_open(&st, path, &err), 0, "%s", err.msg);
    const eng_st_tensor *t = eng_safetensors_find(st, "t");
    cr_assert(t);
    cr_assert_eq(truncate(path, 0), 0);
    cr_assert_eq(eng_st_tensor_to_f32(t, got, &err), 0, "%s", err.msg);
    cr_assert(memcmp(got, v, sizeof v) == 0, "the data changed after a truncation");
    /* Rewritten in place to its old size with other bytes. */
    cr_assert_eq(truncate(path, (off_t)(sizeof v + 4096)), 0);
    cr_assert_eq(eng_st_tensor_to_f32(t, got, &err), 0, "%s", err.msg);
    cr_assert(memcmp(got, v, sizeof v) == 0, "the data follows the file on disk");
    eng_safetensors_close(st);
    unlink(path);
}

/* After the load, the files may go altogether: nothing of the model is read from them again. */
Test(security_jobs, weights_truncated_after_loading)
{
    char dir[256], cmd[600], spec[300];
    snprintf(dir, sizeof dir, "/tmp/tttd-sec-XXXXXX");
    cr_assert(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "cp -r %s %s/m", IT_MODEL_DIR, dir);
    cr_assert_eq(system(cmd), 0);
    snprintf(spec, sizeof spec, "default=%s/m", dir);
    it_server_start_bare(&srv, "--model", spec, "--workers", "1", NULL);
    snprintf(cmd, sizeof cmd, "truncate -s 5 %s/m/*/*.safetensors", dir);
    cr_assert_eq(system(cmd), 0);
    it_response r = reference_png();
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    int w, h;
    cr_assert(it_png_size(r.body, r.len, &w, &h) && w == 32 && h == 48);
    it_response_free(&r);
    cr_assert_eq(it_server_stop(&srv, 5000), 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
