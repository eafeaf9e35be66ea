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

/* A connected TCP socket to the server (rcvbuf > 0: that SO_RCVBUF, set before connecting). */
static int raw_connect(const it_server *s, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s", strerror(errno));
    return fd;
}

static void raw_send(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        cr_assert_gt(n, 0, "send: %s", strerror(errno));
        data += n;
        len -= (size_t)n;
    }
}

/* What the server sent on fd within timeout_ms: until it closed the connection, or until the
 * text `until` arrived (NULL: the close only). NUL-terminated, malloc'ed; *len its length. */
static char *raw_read(int fd, const char *until, int timeout_ms, size_t *len, int *closed)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    cr_assert_not_null(buf);
    double deadline = it_now_ms() + timeout_ms;
    *closed = 0;
    for (;;) {
        buf[n] = '\0';
        if (until && strstr(buf, until))
            break;
        int left = (int)(deadline - it_now_ms());
        if (left <= 0)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0)
            continue;
        if (cap - n < 4096) {
            cap *= 2;
            buf = realloc(buf, cap);
            cr_assert_not_null(buf);
        }
        ssize_t got = recv(fd, buf + n, cap - n - 1, 0);
        if (got <= 0) {
            *closed = 1;
            break;
        }
        n += (size_t)got;
    }
    if (len)
        *len = n;
    return buf;
}

/* One request on a new connection, read until the server closes it (Connection: close). */
static char *raw_exchange(const it_server *s, const char *req, size_t reqlen, int timeout_ms,
                          size_t *len)
{
    int fd = raw_connect(s, 0), closed;
    raw_send(fd, req, reqlen);
    char *out = raw_read(fd, NULL, timeout_ms, len, &closed);
    close(fd);
    return out;
}

/* The status of an HTTP answer's final response (interim 1xx ones skipped), or 0. */
static int status_of(const char *answer)
{
    const char *p = answer;
    while (p && !strncmp(p, "HTTP/1.", 7)) {
        int st = atoi(p + 9);
        if (st >= 200)
            return st;
        p = strstr(p, "\r\n\r\n");
        if (p)
            p += 4;
    }
    return 0;
}

/* The body of an answer whose header block ends with a blank line. */
static const char *body_of(const char *answer)
{
    const char *p = answer, *b;
    while (!strncmp(p, "HTTP/1.", 7) && p[9] == '1' && (b = strstr(p, "\r\n\r\n")))
        p = b + 4; /* an interim answer */
    b = strstr(p, "\r\n\r\n");
    return b ? b + 4 : "";
}

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
    char *out = raw_exchange(s, HEALTHZ, sizeof HEALTHZ - 1, timeout_ms, &len);
    cr_assert_eq(status_of(out), 200, "GET /healthz within %d ms: \"%s\"", timeout_ms, out);
    free(out);
}

/* ---- 1: the connection limit ---- */

Test(security_loop, accepts_again_after_max_connections)
{
    it_server_start(&srv, "--max-connections", "4", NULL);
    for (int round = 0; round < 3; round++) {
        int fds[4];
        for (int i = 0; i < 4; i++)
            fds[i] = raw_connect(&srv, 0);
        /* The server has taken all four (each gets an answer), then they go. */
        for (int i = 0; i < 4; i++) {
            raw_send(fds[i], HEALTHZ, sizeof HEALTHZ - 1);
            int closed;
            char *out = raw_read(fds[i], "{\"status\":\"ok\"}", 3000, NULL, &closed);
            cr_assert_eq(status_of(out), 200, "connection %d of round %d: \"%s\"", i, round, out);
            free(out);
        }
        for (int i = 0; i < 4; i++)
            close(fds[i]);
        /* Idle connections at the limit, closed without a request, too. */
        for (int i = 0; i < 4; i++)
            fds[i] = raw_connect(&srv, 0);
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
    int fd = raw_connect(&srv, 0);
    raw_send(fd, req, (size_t)n);
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
    int fd = raw_connect(&srv, 0), closed;
    raw_send(fd, req, (size_t)n);
    char *out = raw_read(fd, "}}", 3000, NULL, &closed);
    cr_assert_eq(status_of(out), 200, "DELETE %s: \"%s\"", id, out);
    free(out);
    out = raw_read(waiting, "canceled_error.canceled", 1000, NULL, &closed);
    cr_assert(strstr(out, "canceled_error.canceled"), "%s (%s): no answer within 1 s of its "
              "DELETE: \"%s\"", id, stream ? "stream" : "plain", out);
    if (!stream)
        cr_assert_eq(status_of(out), 499, "\"%s\"", out);
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
    int fd = raw_connect(&srv, 0), closed;
    raw_send(fd, req, (size_t)n);
    char *out = raw_read(fd, "\r\n\r\n", 3000, NULL, &closed);
    cr_assert_neq(status_of(out), 0, "no answer within 3 s: \"%s\"", out);
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
        char *out = raw_exchange(&srv, req, (size_t)n, 3000, &len);
        cr_assert_eq(status_of(out), 414, "\"%.300s\"", out);
        expect_json_error(body_of(out), "invalid_request_error.uri_too_long");
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
    char *out = raw_exchange(&srv, req, (size_t)n, 3000, &len);
    cr_assert_eq(status_of(out), 431, "\"%.300s\"", out);
    expect_json_error(body_of(out), "invalid_request_error.headers_too_large");
    free(out);

    n = snprintf(req, sizeof req, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n");
    for (int i = 0; i < 3000; i++)
        n += snprintf(req + n, sizeof req - (size_t)n, "X-H%d: v\r\n", i);
    n += snprintf(req + n, sizeof req - (size_t)n, "\r\n");
    out = raw_exchange(&srv, req, (size_t)n, 3000, &len);
    cr_assert_eq(status_of(out), 431, "\"%.300s\"", out);
    expect_json_error(body_of(out), "invalid_request_error.headers_too_large");
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
    int fd = raw_connect(&srv, 0), closed;
    raw_send(fd, req, (size_t)n);
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    size_t len;
    char *out = raw_read(fd, NULL, 20000, &len, &closed);
    close(fd);
    cr_assert(closed, "the server did not finish the answer within 20 s");
    cr_assert_eq(status_of(out), 200, "\"%.400s\"", out);
    const char *png = body_of(out);
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
    int fd = raw_connect(&srv, 2048);
    raw_send(fd, req, (size_t)n);
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
