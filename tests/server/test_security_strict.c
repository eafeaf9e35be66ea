/*
 * test_security_strict.c - `tttd serve` refusing what it must not trust (issue 11, items 3, 5, 6
 * and 10), on a real server on loopback:
 *   - an --api-key-file line that is too long or holds control characters stops the server with
 *     exit status 1 and a message naming the file and the line (a fixed read buffer used to cut a
 *     long line in two and take its tail as a second key);
 *   - ambiguous framing (Content-Length twice with other values, or beside Transfer-Encoding)
 *     and HTTP/1.1 without exactly one Host are 400, sent as raw bytes since curl would fix them;
 *   - a Host the server does not answer to is 421 (DNS rebinding), --allowed-hosts widens it;
 *   - a web page of another origin cannot POST (403), its preflights are refused, and only
 *     --cors-origins origins get Access-Control-Allow-Origin;
 *   - an Accept q that is not an RFC 9110 qvalue drops its media range.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/server/integration_util.h"

static it_server srv;

static void stop_server(void)
{
    if (srv.pid > 0)
        it_server_stop(&srv, 5000);
}

TestSuite(security_strict, .fini = stop_server, .timeout = 60);

#define SMALL "\"width\":32,\"height\":48,\"steps\":2,\"guidance\":1"
#define BODY "{\"prompt\":\"a\"," SMALL "}"

/* ---- raw HTTP ---- */

/* Bytes as they are on a new connection; everything the server answers until it closes the
 * connection or 3 s pass (malloc'ed). *closed says which. */
static char *raw_http(const it_server *s, const char *bytes, int *closed)
{
    return it_raw_exchange(s, bytes, strlen(bytes), 3000, NULL, closed);
}

/* The answer is one JSON error with this status and code; the body follows the blank line. */
static void expect_raw_error(const char *answer, int status, const char *code)
{
    cr_assert_eq(it_raw_status(answer), status, "expected %d %s, got:\n%s", status, code, answer);
    json_t *j = json_loads(it_raw_body(answer), JSON_DISABLE_EOF_CHECK, NULL);
    cr_assert(j, "not JSON: %s", answer);
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    cr_assert(c && !strcmp(c, code), "code %s, expected %s: %s", c ? c : "(none)", code, answer);
    json_decref(j);
}

/* ---- the key file (item 3) ---- */

/*
 * Runs `tttd serve` with these extra arguments and waits up to 6 s for it to exit. Returns its
 * exit status, or -1 when it is still running (it was then listening, and is killed); its output
 * goes to log (malloc'ed). When it listens, *port gets the port, so that a caller may probe it
 * before it is killed: probe is called with the port and returns a note for the failure message.
 */
static int run_serve(const char *const *extra, char **log, char *(*probe)(int port),
                     char **note)
{
    char path[] = "/tmp/tttd_strict_log_XXXXXX";
    int lfd = mkstemp(path);
    cr_assert(lfd >= 0);
    const char *argv[32] = {it_bin(), "serve", "--host", "127.0.0.1", "--port", "0",
                            "--model", "default=" IT_MODEL_DIR};
    int argc = 8;
    for (int i = 0; extra[i]; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(lfd, 1);
        dup2(lfd, 2);
        setenv("OMP_NUM_THREADS", "1", 0);
        unsetenv("TTTD_API_KEY");
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(lfd);
    int status = -1, wst;
    double deadline = it_now_ms() + 6000;
    *note = NULL;
    while (it_now_ms() < deadline) {
        if (waitpid(pid, &wst, WNOHANG) == pid) {
            status = WIFEXITED(wst) ? WEXITSTATUS(wst) : 128 + WTERMSIG(wst);
            break;
        }
        FILE *f = fopen(path, "r");
        char line[256];
        int port = 0;
        if (f && fgets(line, sizeof line, f))
            sscanf(line, "listening on 127.0.0.1:%d", &port);
        if (f)
            fclose(f);
        if (port > 0) {
            if (probe) {
                it_sleep_ms(1500); /* the models load after the line */
                *note = probe(port);
            }
            break;
        }
        it_sleep_ms(50);
    }
    if (status < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &wst, 0);
    }
    FILE *f = fopen(path, "r");
    cr_assert(f);
    char *text = calloc(1, 1 << 16);
    cr_assert(text);
    size_t got = fread(text, 1, (1 << 16) - 1, f);
    text[got] = '\0';
    fclose(f);
    unlink(path);
    *log = text;
    return status;
}

/* The tail of the 1025-byte key, which a 1024-byte read buffer made a key of its own. */
static const char *const tail_key = "zz";

static char *probe_tail_key(int port)
{
    it_server s = {.pid = 0, .port = port};
    snprintf(s.base, sizeof s.base, "http://127.0.0.1:%d", port);
    char auth[64];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", tail_key);
    it_response r = it_http(&s, "GET", "/v1/models", NULL, auth, NULL);
    char *note = malloc(128);
    snprintf(note, 128, "the server started, and the key's last 2 bytes \"%s\" got %ld", tail_key,
             r.status);
    it_response_free(&r);
    return note;
}

static char *write_keys(const char *text, size_t len)
{
    char *path = strdup("/tmp/tttd_strict_keys_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

Test(security_strict, key_file_long_line_is_refused_with_file_and_line)
{
    /* Line 3 holds 1023 bytes then "zz": 1025 bytes, one over a 1024-byte fgets buffer. */
    char text[2048];
    int n = snprintf(text, sizeof text, "# keys\ngood-key\n");
    memset(text + n, 'k', 1023);
    n += 1023;
    n += snprintf(text + n, sizeof text - (size_t)n, "%s\n", tail_key);
    char *keys = write_keys(text, (size_t)n);
    const char *args[] = {"--api-key-file", keys, NULL};
    char *log, *note;
    int status = run_serve(args, &log, probe_tail_key, &note);
    cr_assert_eq(status, 1, "exit status %d (%s); output:\n%s", status, note ? note : "", log);
    char where[128];
    snprintf(where, sizeof where, "%s:3:", keys);
    cr_assert(strstr(log, where), "the message names the file and line 3 (%s):\n%s", where, log);
    cr_assert(strstr(log, "too long"), "%s", log);
    free(log);
    free(note);
    unlink(keys);
    free(keys);

    /* A key of exactly the limit (512 bytes) is fine, and works. */
    char key[513];
    memset(key, 'k', 512);
    key[512] = '\0';
    n = snprintf(text, sizeof text, "%s\n", key);
    keys = write_keys(text, (size_t)n);
    it_server_start(&srv, "--api-key-file", keys, NULL);
    char auth[600];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    it_response r = it_http(&srv, "GET", "/v1/models", NULL, auth, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    it_response_free(&r);
    r = it_http(&srv, "GET", "/v1/models", NULL, "Authorization: Bearer kk", NULL);
    it_expect_error(&r, 401, "authentication_error.unauthorized");
    it_response_free(&r);
    unlink(keys);
    free(keys);
}

Test(security_strict, key_file_control_characters_are_refused)
{
    /* A NUL cuts a key short where C strings are used; other control bytes can never arrive in
     * an Authorization header. Each file is refused, naming its line. */
    static const struct {
        const char *text;
        size_t len;
        const char *line;
    } cases[] = {
        {"ok-key\nbad\x01key\n", 15, ":2:"},
        {"bad\0tail\n", 9, ":1:"},
        {"# c\n\n\x7f\n", 7, ":3:"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *keys = write_keys(cases[i].text, cases[i].len);
        const char *args[] = {"--api-key-file", keys, NULL};
        char *log, *note;
        int status = run_serve(args, &log, NULL, &note);
        cr_assert_eq(status, 1, "case %zu: exit status %d; output:\n%s", i, status, log);
        char where[128];
        snprintf(where, sizeof where, "%s%s", keys, cases[i].line);
        cr_assert(strstr(log, where), "case %zu names %s:\n%s", i, where, log);
        cr_assert(strstr(log, "control character"), "case %zu: %s", i, log);
        free(log);
        unlink(keys);
        free(keys);
    }
}

/* ---- framing (item 5) ---- */

Test(security_strict, ambiguous_content_length_is_400_and_closes)
{
    it_server_start(&srv, NULL);
    int closed;
    char *a = raw_http(&srv,
                       "POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       "Content-Type: application/json\r\nContent-Length: 2\r\n"
                       "Content-Length: 60\r\n\r\n{}",
                       &closed);
    expect_raw_error(a, 400, "invalid_request_error.header");
    cr_assert(closed, "the connection is closed after an ambiguous request");
    free(a);

    /* Content-Length beside Transfer-Encoding: chunked (RFC 9112 section 6.3). The chunked body
     * holds a complete request that a server reading by Content-Length would take as the next
     * one. */
    a = raw_http(&srv,
                 "POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Content-Type: application/json\r\nContent-Length: 4\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n"
                 "2\r\n{}\r\n0\r\n\r\n",
                 &closed);
    expect_raw_error(a, 400, "invalid_request_error.header");
    cr_assert(strstr(a, "Transfer-Encoding"), "the message says why: %s", a);
    free(a);

    /* The same value twice is one length (RFC 9110 section 8.6): the request goes on (422: no
     * prompt). */
    a = raw_http(&srv,
                 "POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Content-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 2\r\n"
                 "Connection: close\r\n\r\n{}",
                 &closed);
    expect_raw_error(a, 422, "invalid_request_error.field_missing");
    free(a);
}

Test(security_strict, http11_needs_exactly_one_host)
{
    it_server_start(&srv, NULL);
    int closed;
    char *a = raw_http(&srv, "GET /healthz HTTP/1.1\r\n\r\n", &closed);
    expect_raw_error(a, 400, "invalid_request_error.header");
    cr_assert(strstr(a, "Host"), "%s", a);
    free(a);
    a = raw_http(&srv, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n",
                 &closed);
    expect_raw_error(a, 400, "invalid_request_error.header");
    free(a);
    a = raw_http(&srv, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:80:80\r\n\r\n", &closed);
    expect_raw_error(a, 400, "invalid_request_error.header");
    free(a);
    /* HTTP/1.0 has no Host requirement (deploy/healthcheck.sh speaks it). */
    a = raw_http(&srv, "GET /healthz HTTP/1.0\r\n\r\n", &closed);
    cr_assert_eq(it_raw_status(a), 200, "%s", a);
    free(a);
}

/* ---- Host and Origin (item 6) ---- */

Test(security_strict, foreign_host_is_421)
{
    it_server_start(&srv, NULL);
    it_response r = it_http(&srv, "POST", "/v1/generate", BODY, "Host: rebound.example", NULL);
    const char *msg = it_expect_error(&r, 421, "invalid_request_error.host");
    cr_assert(strstr(msg, "rebound.example"), "%s", msg);
    it_response_free(&r);
    r = it_http(&srv, "GET", "/", NULL, "Host: rebound.example:8080", NULL);
    it_expect_error(&r, 421, "invalid_request_error.host");
    it_response_free(&r);
    r = it_http(&srv, "GET", "/healthz", NULL, "Host: 10.255.0.1", NULL);
    it_expect_error(&r, 421, "invalid_request_error.host");
    it_response_free(&r);

    /* The names of a loopback server, with or without a port. */
    char own[64];
    snprintf(own, sizeof own, "Host: 127.0.0.1:%d", srv.port);
    const char *ok[] = {own, "Host: localhost", "Host: LOCALHOST:8080", "Host: [::1]:8080",
                        "Host: 127.0.0.1"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        r = it_http(&srv, "GET", "/healthz", NULL, ok[i], NULL);
        cr_assert_eq(r.status, 200, "%s: %ld %s", ok[i], r.status, r.body);
        it_response_free(&r);
    }
}

Test(security_strict, allowed_hosts_widen_the_host_check)
{
    setenv("TTTD_ALLOWED_HOSTS", "tttd,.example.org", 1);
    it_server_start(&srv, NULL);
    unsetenv("TTTD_ALLOWED_HOSTS");
    const char *ok[] = {"Host: tttd:8080", "Host: TTTD", "Host: example.org",
                        "Host: api.example.org:443", "Host: localhost"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        it_response r = it_http(&srv, "GET", "/healthz", NULL, ok[i], NULL);
        cr_assert_eq(r.status, 200, "%s: %ld %s", ok[i], r.status, r.body);
        it_response_free(&r);
    }
    const char *bad[] = {"Host: tttd.evil.example", "Host: notexample.org", "Host: xtttd"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        it_response r = it_http(&srv, "GET", "/healthz", NULL, bad[i], NULL);
        it_expect_error(&r, 421, "invalid_request_error.host");
        it_response_free(&r);
    }
    stop_server();

    /* "*": any Host (a proxy in front checks it). */
    it_server_start(&srv, "--allowed-hosts", "*", NULL);
    it_response r = it_http(&srv, "GET", "/healthz", NULL, "Host: anything.example", NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    it_response_free(&r);
}

Test(security_strict, cross_origin_writes_are_refused_without_cors_origins)
{
    it_server_start(&srv, NULL);
    /* A page elsewhere POSTs text/plain: no preflight in a browser, so the server must refuse. */
    it_response r = it_http(&srv, "POST", "/v1/generate", BODY, "Content-Type: text/plain",
                            "Origin: http://evil.example", NULL);
    it_expect_error(&r, 403, "permission_error.origin");
    char v[256];
    cr_assert(!it_header(&r, "Access-Control-Allow-Origin", v, sizeof v), "ACAO: %s", v);
    it_response_free(&r);
    r = it_http(&srv, "DELETE", "/v1/jobs/job_0", NULL, "Origin: null", NULL);
    it_expect_error(&r, 403, "permission_error.origin");
    it_response_free(&r);
    /* Its preflight is refused too. */
    r = it_http(&srv, "OPTIONS", "/v1/generate", NULL, "Origin: http://evil.example",
                "Access-Control-Request-Method: POST", NULL);
    it_expect_error(&r, 403, "permission_error.origin");
    cr_assert(!it_header(&r, "Access-Control-Allow-Origin", v, sizeof v), "ACAO: %s", v);
    it_response_free(&r);
    /* A GET changes nothing and its answer stays unreadable to the page: no ACAO. */
    r = it_http(&srv, "GET", "/v1/models", NULL, "Origin: http://evil.example", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert(!it_header(&r, "Access-Control-Allow-Origin", v, sizeof v), "ACAO: %s", v);
    it_response_free(&r);

    /* The server's own page (GET /) posts from its own origin. */
    char origin[96];
    snprintf(origin, sizeof origin, "Origin: http://127.0.0.1:%d", srv.port);
    r = it_http(&srv, "POST", "/v1/generate", BODY, "Content-Type: text/plain", origin, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    it_response_free(&r);
}

Test(security_strict, cors_origins_get_preflights_and_allow_origin)
{
    it_server_start(&srv, "--cors-origins", "https://app.example", "--api-key", "sekret",
                    NULL);
    /* The preflight carries no key; it is answered for the listed origin. */
    it_response r = it_http(&srv, "OPTIONS", "/v1/generate", NULL, "Origin: https://app.example",
                            "Access-Control-Request-Method: POST",
                            "Access-Control-Request-Headers: authorization, content-type", NULL);
    cr_assert_eq(r.status, 204, "%ld %s", r.status, r.body);
    char v[256];
    cr_assert(it_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    cr_assert_str_eq(v, "https://app.example");
    cr_assert(it_header(&r, "Access-Control-Allow-Methods", v, sizeof v) && strstr(v, "POST"),
              "%s", v);
    cr_assert(it_header(&r, "Access-Control-Allow-Headers", v, sizeof v) &&
                  strstr(v, "Authorization") && strstr(v, "Content-Type"),
              "%s", v);
    cr_assert(it_header(&r, "Access-Control-Max-Age", v, sizeof v) && atoi(v) > 0, "%s", v);
    it_response_free(&r);
    r = it_http(&srv, "OPTIONS", "/v1/generate", NULL, "Origin: https://other.example",
                "Access-Control-Request-Method: POST", NULL);
    it_expect_error(&r, 403, "permission_error.origin");
    it_response_free(&r);

    /* The request itself: answered with the origin, errors included (the page reads them). */
    r = it_http(&srv, "POST", "/v1/generate", BODY, "Origin: https://app.example",
                "Authorization: Bearer sekret", NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(it_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    cr_assert_str_eq(v, "https://app.example");
    it_response_free(&r);
    r = it_http(&srv, "POST", "/v1/generate", BODY, "Origin: https://app.example", NULL);
    it_expect_error(&r, 401, "authentication_error.unauthorized");
    cr_assert(it_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    it_response_free(&r);
    stop_server();

    it_server_start(&srv, "--cors-origins", "*", NULL);
    r = it_http(&srv, "POST", "/v1/generate", BODY, "Origin: https://any.example", NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(it_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    cr_assert_str_eq(v, "*");
    it_response_free(&r);
}

/* ---- Accept (item 10) ---- */

Test(security_strict, malformed_accept_q_is_not_trusted)
{
    it_server_start(&srv, NULL);
    /* The only range has a q that is no qvalue: nothing acceptable is left. */
    it_response r = it_http(&srv, "POST", "/v1/generate", BODY, "Accept: image/png;q=abc", NULL);
    it_expect_error(&r, 406, "invalid_request_error.not_acceptable");
    it_response_free(&r);
    /* "0.9x" is not 0.9, nor 1: the PNG range is dropped and JSON (0.5) answers. */
    r = it_http(&srv, "POST", "/v1/generate", BODY,
                "Accept: application/json;q=0.5, image/png;q=0.9x", NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    char ct[128];
    cr_assert(it_header(&r, "Content-Type", ct, sizeof ct) && strstr(ct, "application/json"),
              "%s", ct);
    it_response_free(&r);
    /* A valid q still weighs. */
    r = it_http(&srv, "POST", "/v1/generate", BODY,
                "Accept: application/json;q=0.5, image/png;q=0.9", NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(it_header(&r, "Content-Type", ct, sizeof ct) && strstr(ct, "image/png"), "%s", ct);
    it_response_free(&r);
}
