/*
 * fuzz_http.c - libFuzzer target for the HTTP layer end to end: raw request bytes into the
 * real daemon (cmd_serve: the libuv loop, libmicrohttpd in external-epoll mode with
 * suspend/resume, routing, API keys, body accumulation under --max-body, the scheduler, one
 * CPU worker generating with tests/fixtures/tiny_model, JSON, image and SSE answers, jobs).
 *
 * LLVMFuzzerInitialize starts `tttd serve` in this process on a background thread, on a
 * loopback port the kernel picks, with small limits (--max-steps 2, 64x64 images at most, a
 * queue of 4, an API key "fuzzkey", Host "fuzz" allowed, CORS for "http://fuzz", --sse-ping 50 ms,
 * --preview-every 1, a 16 KiB SSE buffer) so that a generation
 * takes milliseconds, and waits until /readyz says 200. The model folder is
 * $TTTD_FUZZ_ROOT/tests/fixtures/tiny_model (TTTD_FUZZ_ROOT defaults to the working
 * directory: make fuzz runs from the repository root).
 *
 * Input: one or more byte streams separated by the line "--conn--" (CONN_SEP below). Each is
 * written to a fresh connection; a stream that starts with "!HUP\n" has that line dropped and
 * the connection half-closed after the write (the daemon still answers a half-closed client). The answer
 * is read until the server closes, until it stays silent IDLE_MS after some bytes came, or for
 * 1000 ms in all ($TTTD_FUZZ_READ_MS: a generation takes about 0.5 s under ASan on a busy
 * machine); then the connection is closed, whatever still runs for it (a cancel on disconnect).
 * Checked on every input: each answer is empty or starts with an HTTP/1.x status line; an error
 * answer of the daemon (4xx/5xx with a JSON body of known length) is the error envelope
 * {"error": {"code", "type", "message"}}; after the input a fresh connection gets 200 from
 * /healthz within HEALTH_MS (the server neither died nor wedged its loop).
 * TTTD_FUZZ_VERBOSE=1 prints the status line of each answer (to see what a seed reaches).
 * Seeds: tests/fuzz/corpus/http/; dictionary: tests/fuzz/http.dict.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cmd/cmd_serve.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CONN_SEP "\n--conn--\n"
#define HUP_MARK "!HUP\n"
#define MAX_CONNS 4
#define IDLE_MS 60
#define HEALTH_MS 5000
#define READY_MS 120000
#define ANSWER_MAX (1 << 20)

static int port;
static int read_ms = 1000; /* the longest one connection is read ($TTTD_FUZZ_READ_MS) */
static int serve_out_fd; /* serve's stdout: the write end of a pipe */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int connect_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        fprintf(stderr, "fuzz_http: connect to port %d: %s\n", port, strerror(errno));
        abort();
    }
    return fd;
}

/* Writes what the server takes of data (it may close early, after an error answer). */
static void write_all(int fd, const uint8_t *data, size_t n, double deadline)
{
    while (n > 0 && now_ms() < deadline) {
        struct pollfd p = {fd, POLLOUT, 0};
        if (poll(&p, 1, 20) <= 0)
            continue;
        ssize_t k = send(fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (k <= 0)
            return;
        data += k;
        n -= (size_t)k;
    }
}

/* Reads into buf until EOF, IDLE_MS of silence after some bytes, or the deadline. */
static size_t read_answer(int fd, char *buf, size_t cap, double deadline)
{
    size_t n = 0;
    double last = 0;
    for (;;) {
        double t = now_ms();
        if (t >= deadline || (n > 0 && t - last >= IDLE_MS))
            break;
        struct pollfd p = {fd, POLLIN, 0};
        int wait = (int)(deadline - t) + 1;
        if (n > 0 && wait > IDLE_MS)
            wait = IDLE_MS;
        if (poll(&p, 1, wait) <= 0)
            continue;
        char scratch[4096];
        char *to = n < cap ? buf + n : scratch;
        size_t room = n < cap ? cap - n : sizeof scratch;
        ssize_t k = recv(fd, to, room, MSG_DONTWAIT);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (k <= 0)
            break;
        if (n < cap)
            n += (size_t)k;
        last = now_ms();
    }
    return n;
}

/* The value of header name in the head [s, s + n), or NULL; *vn gets its length. */
static const char *header(const char *s, size_t n, const char *name, size_t *vn)
{
    size_t nl = strlen(name);
    for (const char *p = s; p && p < s + n;) {
        const char *eol = memmem(p, (size_t)(s + n - p), "\r\n", 2);
        if (!eol)
            break;
        if ((size_t)(eol - p) > nl + 1 && !strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < eol && *v == ' ')
                v++;
            *vn = (size_t)(eol - v);
            return v;
        }
        p = eol + 2;
    }
    return NULL;
}

/* The first answer of a connection: a status line, and the error envelope on JSON errors. */
static void check_answer(const char *a, size_t n)
{
    if (n == 0)
        return;
    FUZZ_CHECK(n >= 12 && (!memcmp(a, "HTTP/1.1 ", 9) || !memcmp(a, "HTTP/1.0 ", 9)));
    int status = atoi(a + 9);
    FUZZ_CHECK(status >= 100 && status <= 599);
    const char *end = memmem(a, n, "\r\n\r\n", 4);
    if (!end || status < 400)
        return;
    size_t hn = (size_t)(end - a) + 2, cn = 0, ln = 0;
    const char *ct = header(a, hn, "Content-Type", &cn);
    const char *cl = header(a, hn, "Content-Length", &ln);
    if (!ct || cn < 16 || strncasecmp(ct, "application/json", 16) || !cl)
        return; /* libmicrohttpd's own answers to malformed requests are HTML */
    size_t len = (size_t)strtoul(cl, NULL, 10);
    const char *body = end + 4;
    if ((size_t)(a + n - body) < len)
        return; /* not all of it came before the read stopped */
    json_error_t jerr;
    json_t *j = json_loadb(body, len, 0, &jerr);
    if (!j)
        fprintf(stderr, "fuzz_http: error body is not JSON: %.*s\n", (int)len, body);
    FUZZ_CHECK(j != NULL);
    json_t *e = json_object_get(j, "error");
    FUZZ_CHECK(json_is_object(e));
    FUZZ_CHECK(json_is_string(json_object_get(e, "code")));
    FUZZ_CHECK(json_is_string(json_object_get(e, "type")));
    FUZZ_CHECK(json_is_string(json_object_get(e, "message")));
    json_decref(j);
}

/* The status of GET path on a fresh connection, or -1 when none came within ms. */
static int get_status(const char *path, int ms)
{
    char req[256], ans[1024];
    int fd = connect_server();
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n",
                     path);
    double deadline = now_ms() + ms;
    write_all(fd, (const uint8_t *)req, (size_t)n, deadline);
    size_t got = 0;
    /* Not read_answer: a slow loop must not be mistaken for silence after a partial answer. */
    while (got < sizeof ans - 1 && now_ms() < deadline) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0)
            continue;
        ssize_t k = recv(fd, ans + got, sizeof ans - 1 - got, MSG_DONTWAIT);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    ans[got] = '\0';
    return got >= 12 && !memcmp(ans, "HTTP/1.", 7) ? atoi(ans + 9) : -1;
}

static void *serve_thread(void *arg)
{
    char **argv = arg;
    int argc = 0;
    while (argv[argc])
        argc++;
    FILE *out = fdopen(serve_out_fd, "w");
    int rc = cmd_serve(argc, argv, out, stderr);
    fprintf(stderr, "fuzz_http: the server returned %d\n", rc);
    abort(); /* it must run for as long as the fuzzer does */
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    /*
     * OpenBLAS's own thread pool can hang the exit (its destructor joins a thread that missed
     * the wake-up after the worker used it), and the workers need no BLAS threads anyway: run
     * again with one BLAS thread, which the library reads only when it loads.
     */
    if (!getenv("OPENBLAS_NUM_THREADS")) {
        setenv("OPENBLAS_NUM_THREADS", "1", 1);
        execv("/proc/self/exe", *argv);
        perror("fuzz_http: execv /proc/self/exe");
    }
    const char *rm = getenv("TTTD_FUZZ_READ_MS");
    if (rm && atoi(rm) > 0)
        read_ms = atoi(rm);
    static char model[PATH_MAX + 16];
    const char *root = getenv("TTTD_FUZZ_ROOT");
    snprintf(model, sizeof model, "default=%s/tests/fixtures/tiny_model",
             root && *root ? root : ".");
    int pfd[2];
    FUZZ_CHECK(pipe(pfd) == 0);
    static char *args[] = {"serve", "--host", "127.0.0.1", "--port", "0", "--model", model,
                           "--workers", "1", "--device", "cpu", "--max-batch", "2",
                           "--max-steps", "2", "--max-width", "64", "--max-height", "64",
                           "--max-n", "2", "--max-queue", "4", "--max-body", "64K",
                           "--request-timeout-ms", "3000", "--drain-timeout", "0",
                           "--api-key", "fuzzkey", "--sse-ping", "50", "--preview-every", "1",
                           "--allowed-hosts", "fuzz", "--cors-origins", "http://fuzz",
                           "--sse-max-buffer", "16K",
                           "--job-ttl", "2", "--max-connections", "16", "--log-level", "error",
                           NULL};
    serve_out_fd = pfd[1];
    pthread_t th;
    FUZZ_CHECK(pthread_create(&th, NULL, serve_thread, args) == 0);
    FUZZ_CHECK(pthread_detach(th) == 0);

    char line[256];
    FILE *in = fdopen(pfd[0], "r");
    FUZZ_CHECK(in != NULL);
    if (!fgets(line, sizeof line, in) || strncmp(line, "listening on ", 13) != 0) {
        fprintf(stderr, "fuzz_http: the server did not start (model %s)\n", model);
        abort();
    }
    const char *colon = strrchr(line, ':');
    FUZZ_CHECK(colon != NULL);
    port = atoi(colon + 1);
    FUZZ_CHECK(port > 0);
    /* serve handles SIGINT and SIGTERM by draining; the fuzzer must stop on them instead. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    double deadline = now_ms() + READY_MS;
    while (get_status("/readyz", 1000) != 200) {
        if (now_ms() > deadline) {
            fprintf(stderr, "fuzz_http: the model did not load in %d s\n", READY_MS / 1000);
            abort();
        }
        usleep(50 * 1000);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char *answer;
    if (!answer)
        answer = malloc(ANSWER_MAX);
    FUZZ_CHECK(answer != NULL);
    const uint8_t *at[MAX_CONNS];
    size_t len[MAX_CONNS];
    int n = fuzz_split(data, size, CONN_SEP, MAX_CONNS, at, len);
    for (int i = 0; i < n; i++) {
        const uint8_t *p = at[i];
        size_t pn = len[i];
        int hup = pn >= sizeof HUP_MARK - 1 && !memcmp(p, HUP_MARK, sizeof HUP_MARK - 1);
        if (hup) {
            p += sizeof HUP_MARK - 1;
            pn -= sizeof HUP_MARK - 1;
        }
        int fd = connect_server();
        double deadline = now_ms() + read_ms;
        write_all(fd, p, pn, deadline);
        if (hup)
            shutdown(fd, SHUT_WR);
        size_t got = read_answer(fd, answer, ANSWER_MAX, deadline);
        close(fd);
        if (getenv("TTTD_FUZZ_VERBOSE"))
            fprintf(stderr, "connection %d: %zu bytes: %.*s\n", i, got,
                    (int)(memchr(answer, '\r', got) ? (char *)memchr(answer, '\r', got) - answer
                                                     : (long)got), answer);
        check_answer(answer, got);
    }
    int status = get_status("/healthz", HEALTH_MS);
    if (status != 200)
        fprintf(stderr, "fuzz_http: /healthz answered %d after the input\n", status);
    FUZZ_CHECK(status == 200);
    return 0;
}
