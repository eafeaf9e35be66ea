/*
 * test_security_loop.c - `tttd serve` against clients that stress its event loop rather than its
 * engine, over raw TCP sockets where curl would not send the bytes or behave the way needed:
 * accepting again after --max-connections was reached, answering a request whose job DELETE
 * canceled at once (plain and streamed, running and queued), a request with hundreds of query
 * arguments, JSON 414 and 431 answers, a client that half-closes its connection and still reads
 * its image, and a stream whose client stops reading (bounded by --sse-max-buffer).
 *
 * Waits are short deadlines on sockets (a few seconds), never sleeps: a test that fails does so
 * by a missing answer within its deadline.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/server/integration_util.h"

static it_server srv;

static void stop_server(void)
{
    if (srv.pid > 0)
        it_server_stop(&srv, 5000);
}

TestSuite(security_loop, .fini = stop_server, .timeout = 90);

#define SLOW_OPTS "--max-steps", "10000"

/* Checks body is the JSON error envelope with this code. */
static void expect_json_error(const char *body, const char *code)
{
    json_error_t e;
    json_t *j = json_loads(body, 0, &e);
    cr_assert_not_null(j, "not JSON (%s): %s", e.text, body);
    json_t *err = json_object_get(j, "error");
    cr_assert(json_is_object(err), "%s", body);
    cr_assert_str_eq(json_string_value(json_object_get(err, "code")), code);
    cr_assert(json_is_string(json_object_get(err, "type")), "%s", body);
    cr_assert(json_is_string(json_object_get(err, "message")), "%s", body);
    json_decref(j);
}

static const char HEALTHZ[] = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

static void expect_healthy(const it_server *s, int timeout_ms)
{
    size_t len;
    char *out = it_raw_exchange(s, HEALTHZ, sizeof HEALTHZ - 1, timeout_ms, &len, NULL);
    cr_assert_eq(it_raw_status(out), 200, "GET /healthz within %d ms: \"%s\"", timeout_ms, out);
    free(out);
}

/* ---- 1: the connection limit ---- */

Test(security_loop, accepts_again_after_max_connections)
{
    it_server_start(&srv, "--max-connections", "4", NULL);
    for (int round = 0; round < 3; round++) {
        int fds[4];
        for (int i = 0; i < 4; i++)
            fds[i] = it_raw_connect(&srv, 0);
        /* The server has taken all four (each gets an answer), then they go. */
        for (int i = 0; i < 4; i++) {
            it_raw_send(fds[i], HEALTHZ, sizeof HEALTHZ - 1);
            int closed;
            char *out = it_raw_read(fds[i], "{\"status\":\"ok\"}", 3000, NULL, &closed);
            cr_assert_eq(it_raw_status(out), 200, "connection %d of round %d: \"%s\"", i, round, out);
            free(out);
        }
        for (int i = 0; i < 4; i++)
            close(fds[i]);
        /* Idle connections at the limit, closed without a request, too. */
        for (int i = 0; i < 4; i++)
            fds[i] = it_raw_connect(&srv, 0);
        it_sleep_ms(100);
        for (int i = 0; i < 4; i++)
            close(fds[i]);
        expect_healthy(&srv, 3000);
    }
}

/* ---- 2: answers owed after a resume ---- */

/* A slow request (5000 steps) on its own raw connection, named id. */
static int slow_request(const char *id, int stream)
{
    char body[256], req[512];
    int bl = snprintf(body, sizeof body,
                      "{\"prompt\":\"slow\",\"width\":32,\"height\":48,\"steps\":5000,"
                      "\"guidance\":1,\"timeout_ms\":30000%s}", stream ? ",\"stream\":true" : "");
    int n = snprintf(req, sizeof req,
                     "POST /v1/generate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     "X-Request-Id: %s\r\nContent-Length: %d\r\n\r\n%s", id, bl, body);
    int fd = it_raw_connect(&srv, 0);
    it_raw_send(fd, req, (size_t)n);
    return fd;
}

/*
 * DELETE /v1/jobs/id, then the canceled request's own answer within 1 s. The DELETE's connection
 * stays open (keep-alive) until then: its close would be a socket event that runs MHD, hiding an
 * answer that nothing else would have sent.
 */
static void cancel_and_expect_answer(const char *id, int waiting, int stream)
{
    char req[256];
    int n = snprintf(req, sizeof req, "DELETE /v1/jobs/%s HTTP/1.1\r\nHost: localhost\r\n\r\n", id);
    int fd = it_raw_connect(&srv, 0), closed;
    it_raw_send(fd, req, (size_t)n);
    char *out = it_raw_read(fd, "}}", 3000, NULL, &closed);
    cr_assert_eq(it_raw_status(out), 200, "DELETE %s: \"%s\"", id, out);
    free(out);
    out = it_raw_read(waiting, "canceled_error.canceled", 1000, NULL, &closed);
    cr_assert(strstr(out, "canceled_error.canceled"), "%s (%s): no answer within 1 s of its "
              "DELETE: \"%s\"", id, stream ? "stream" : "plain", out);
    if (!stream)
        cr_assert_eq(it_raw_status(out), 499, "\"%s\"", out);
    free(out);
    close(fd);
    close(waiting);
}

static void delete_answers_at_once(int stream)
{
    it_server_start(&srv, "--workers", "1", SLOW_OPTS, NULL);
    char run_id[32], queued_id[32];
    snprintf(run_id, sizeof run_id, "run-%d", stream);
    snprintf(queued_id, sizeof queued_id, "queued-%d", stream);
    int run = slow_request(run_id, stream);
    cr_assert(it_wait_job_state(&srv, run_id, "running", 10000));
    int queued = slow_request(queued_id, stream);
    cr_assert(it_wait_job_state(&srv, queued_id, "queued", 10000));
    cancel_and_expect_answer(queued_id, queued, stream);
    cancel_and_expect_answer(run_id, run, stream);
}

Test(security_loop, delete_answers_a_plain_request_at_once)
{
    delete_answers_at_once(0);
}

Test(security_loop, delete_answers_a_stream_at_once)
{
    delete_answers_at_once(1);
}

Test(security_loop, many_query_arguments_are_answered)
{
    it_server_start(&srv, NULL);
    char req[16384];
    int n = snprintf(req, sizeof req, "GET /healthz?");
    for (int i = 0; i < 600; i++)
        n += snprintf(req + n, sizeof req - (size_t)n, "%sa%d=%d", i ? "&" : "", i, i);
    n += snprintf(req + n, sizeof req - (size_t)n, " HTTP/1.1\r\nHost: localhost\r\n\r\n");
    int fd = it_raw_connect(&srv, 0), closed;
    it_raw_send(fd, req, (size_t)n);
    char *out = it_raw_read(fd, "\r\n\r\n", 3000, NULL, &closed);
    cr_assert_neq(it_raw_status(out), 0, "no answer within 3 s: \"%s\"", out);
    free(out);
    close(fd);
}

/* ---- 7: libmicrohttpd's own limits never answer first ---- */

Test(security_loop, long_target_is_a_json_414)
{
    it_server_start(&srv, NULL);
    /* Over tttd's 8 KiB, far under what libmicrohttpd holds; in the path, and in many small
     * query arguments (which, on their own, once exhausted libmicrohttpd's memory). */
    static char req[40000];
    const char *shapes[] = {"/%s", "/healthz?%s"};
    for (int k = 0; k < 2; k++) {
        char fill[20001];
        int flen = k ? 9000 : 20000;
        for (int i = 0; i < flen; i++)
            fill[i] = k ? "a&"[i % 2] : 'a';
        fill[flen] = '\0';
        char target[20100];
        snprintf(target, sizeof target, shapes[k], fill);
        int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", target);
        size_t len;
        char *out = it_raw_exchange(&srv, req, (size_t)n, 3000, &len, NULL);
        cr_assert_eq(it_raw_status(out), 414, "\"%.300s\"", out);
        expect_json_error(it_raw_body(out), "invalid_request_error.uri_too_long");
        free(out);
    }
    expect_healthy(&srv, 3000);
}

Test(security_loop, large_headers_are_a_json_431)
{
    it_server_start(&srv, NULL);
    static char req[80000];
    /* One large header, and many small ones. */
    char big[40001];
    memset(big, 'x', 40000);
    big[40000] = '\0';
    int n = snprintf(req, sizeof req, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: %s\r\n\r\n", big);
    size_t len;
    char *out = it_raw_exchange(&srv, req, (size_t)n, 3000, &len, NULL);
    cr_assert_eq(it_raw_status(out), 431, "\"%.300s\"", out);
    expect_json_error(it_raw_body(out), "invalid_request_error.headers_too_large");
    free(out);

    n = snprintf(req, sizeof req, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n");
    for (int i = 0; i < 3000; i++)
        n += snprintf(req + n, sizeof req - (size_t)n, "X-H%d: v\r\n", i);
    n += snprintf(req + n, sizeof req - (size_t)n, "\r\n");
    out = it_raw_exchange(&srv, req, (size_t)n, 3000, &len, NULL);
    cr_assert_eq(it_raw_status(out), 431, "\"%.300s\"", out);
    expect_json_error(it_raw_body(out), "invalid_request_error.headers_too_large");
    free(out);
    expect_healthy(&srv, 3000);
}

/* ---- 9: a half-closed client still gets its answer ---- */

Test(security_loop, half_closed_client_gets_its_image)
{
    it_server_start(&srv, NULL);
    static const char body[] =
        "{\"prompt\":\"a red cube\",\"width\":32,\"height\":48,\"steps\":30,\"guidance\":1}";
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "POST /v1/generate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     "Accept: image/png\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
                     sizeof body - 1, body);
    int fd = it_raw_connect(&srv, 0), closed;
    it_raw_send(fd, req, (size_t)n);
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    size_t len;
    char *out = it_raw_read(fd, NULL, 20000, &len, &closed);
    close(fd);
    cr_assert(closed, "the server did not finish the answer within 20 s");
    cr_assert_eq(it_raw_status(out), 200, "\"%.400s\"", out);
    const char *png = it_raw_body(out);
    int w, h;
    cr_assert(it_png_size(png, len - (size_t)(png - out), &w, &h), "not a PNG: \"%.400s\"", out);
    cr_assert_eq(w, 32);
    cr_assert_eq(h, 48);
    free(out);
    cr_assert_eq(it_metric(&srv, "tttd_cancellations_total{reason=\"disconnect\"}"), 0);
}

/* ---- 11: a stream whose client stops reading ---- */

Test(security_loop, stream_to_a_client_that_stops_reading_is_bounded)
{
    it_server_start(&srv, "--sse-max-buffer", "64K", "--max-batch", "8", SLOW_OPTS, NULL);
    /* Eight 256x256 images with a preview of each at every step: hundreds of KB a second. */
    static const char body[] =
        "{\"prompt\":\"a stream\",\"width\":256,\"height\":256,\"n\":8,\"steps\":5000,"
        "\"guidance\":1,\"timeout_ms\":60000,\"stream\":true,\"preview_every\":1}";
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "POST /v1/generate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     "X-Request-Id: not-reading\r\nContent-Length: %zu\r\n\r\n%s",
                     sizeof body - 1, body);
    int fd = it_raw_connect(&srv, 2048);
    it_raw_send(fd, req, (size_t)n);
    cr_assert(it_wait_job_state(&srv, "not-reading", "running", 10000));

    /* The client never reads. Once the kernel's buffers are full, the server holds at most
     * 64 KiB (plus an event) for it, drops previews, then cancels the job. */
    double t0 = it_now_ms();
    while (it_metric(&srv, "tttd_cancellations_total{reason=\"disconnect\"}") < 1) {
        cr_assert_lt(it_now_ms() - t0, 45000, "the stream was never bounded");
        expect_healthy(&srv, 3000); /* and others are answered meanwhile */
        it_sleep_ms(250);
    }
    cr_assert(it_wait_job_state(&srv, "not-reading", "canceled", 5000));
    char *log = it_server_log(&srv);
    cr_assert(strstr(log, "dropping previews"), "%s", log);
    cr_assert(strstr(log, "over --sse-max-buffer"), "%s", log);
    free(log);
    close(fd);
    expect_healthy(&srv, 3000);
}
