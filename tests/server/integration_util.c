/*
 * integration_util.c - the child server and the libcurl client of the integration tests (see
 * integration_util.h).
 *
 * The server's stdout and stderr go to a file rather than a pipe: nobody has to keep reading it
 * for the server not to block, and a failing test can print it.
 */
#include "tests/server/integration_util.h"

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double it_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

void it_sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

/* ---- the child server ---- */

char *it_server_log(const it_server *s)
{
    FILE *f = fopen(s->log_path, "rb");
    if (!f)
        return strdup("");
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char chunk[4096];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, k, m);
    fclose(f);
    fclose(m);
    return buf;
}

const char *it_bin(void)
{
    const char *bin = getenv("TTTD_BIN");
    if (!bin || !*bin)
        bin = "build/tttd";
    cr_assert(access(bin, X_OK) == 0,
              "the server binary %s is missing: build it first (make check sets TTTD_BIN)", bin);
    return bin;
}

static void server_start_v(it_server *s, int with_model, va_list ap)
{
    const char *bin = it_bin();

    const char *argv[64];
    int argc = 0;
    argv[argc++] = bin;
    argv[argc++] = "serve";
    argv[argc++] = "--host";
    argv[argc++] = "127.0.0.1";
    argv[argc++] = "--port";
    argv[argc++] = "0";
    if (with_model) {
        argv[argc++] = "--model";
        argv[argc++] = "default=" IT_MODEL_DIR;
    }
    for (const char *a = va_arg(ap, const char *); a; a = va_arg(ap, const char *)) {
        cr_assert_lt(argc, 62);
        argv[argc++] = a;
    }
    argv[argc] = NULL;

    memset(s, 0, sizeof *s);
    strcpy(s->log_path, "/tmp/tttd_it_XXXXXX");
    int fd = mkstemp(s->log_path);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));

    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* The server must not outlive a test that crashed or failed before stopping it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        /* One OpenMP thread per worker unless the caller says otherwise: tests run two at a time
         * on two cores, and spinning thread teams would only make them slower and noisier. */
        setenv("OMP_NUM_THREADS", "1", 0);
        setenv("OPENBLAS_NUM_THREADS", "1", 0);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, STDIN_FILENO);
        execv(bin, (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    close(fd);
    s->pid = pid;

    /* Up to 60 s: a sanitizer build on two busy cores loads the tiny model slowly. */
    double deadline = it_now_ms() + 60000;
    for (;;) {
        char *log = it_server_log(s);
        const char *p = strstr(log, "listening on 127.0.0.1:");
        if (p && strchr(p, '\n')) {
            s->port = atoi(p + strlen("listening on 127.0.0.1:"));
            free(log);
            break;
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            s->pid = 0;
            cr_assert_fail("the server exited (status %d) before listening:\n%s", status, log);
        }
        if (it_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            s->pid = 0;
            cr_assert_fail("the server did not say where it listens within 60 s:\n%s", log);
        }
        free(log);
        it_sleep_ms(10);
    }
    cr_assert(s->port > 0 && s->port < 65536, "bad port %d", s->port);
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", s->port);

    /* The server listens while its workers load the model (/readyz says 503 until then); the
     * tests want it ready. An --api-key given to it is used for the probe. */
    char auth[256] = "";
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], "--api-key") == 0)
            snprintf(auth, sizeof auth, "Authorization: Bearer %s", argv[i + 1]);
    const char *probe_headers[2] = {auth[0] ? auth : NULL, NULL};
    for (;;) {
        it_response r = it_http_n(s, "GET", "/readyz", NULL, 0, probe_headers);
        long status = r.status;
        it_response_free(&r);
        if (status == 200)
            break;
        int wstatus;
        if (waitpid(s->pid, &wstatus, WNOHANG) == s->pid) { /* died loading: say so at once */
            s->pid = 0;
            char *log = it_server_log(s);
            cr_assert_fail("the server exited (%s %d) before it was ready:\n%s",
                           WIFSIGNALED(wstatus) ? "signal" : "status",
                           WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : WEXITSTATUS(wstatus), log);
        }
        if (it_now_ms() > deadline) {
            char *log = it_server_log(s);
            cr_assert_fail("the server was not ready within 60 s (/readyz %ld):\n%s", status, log);
        }
        it_sleep_ms(10);
    }
}

void it_server_start(it_server *s, ...)
{
    va_list ap;
    va_start(ap, s);
    server_start_v(s, 1, ap);
    va_end(ap);
}

void it_server_start_bare(it_server *s, ...)
{
    va_list ap;
    va_start(ap, s);
    server_start_v(s, 0, ap);
    va_end(ap);
}

void it_server_signal(const it_server *s, int sig)
{
    cr_assert(s->pid > 0, "no server to signal");
    kill(s->pid, sig);
}

int it_server_wait(it_server *s, int timeout_ms)
{
    if (s->pid <= 0)
        return -1;
    double deadline = it_now_ms() + timeout_ms;
    int status = 0;
    while (waitpid(s->pid, &status, WNOHANG) != s->pid) {
        if (it_now_ms() > deadline)
            return -1;
        it_sleep_ms(5);
    }
    s->pid = 0;
    unlink(s->log_path);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

int it_server_stop(it_server *s, int timeout_ms)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, SIGTERM);
    int rc = it_server_wait(s, timeout_ms);
    if (rc < 0) {
        kill(s->pid, SIGKILL);
        rc = it_server_wait(s, 10000);
    }
    return rc;
}

/* ---- HTTP ---- */

typedef struct buffer {
    char *p;
    size_t len, cap;
} buffer;

static void buf_add(buffer *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = realloc(b->p, cap);
        cr_assert(b->p);
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
}

/* What one transfer collects. */
typedef struct transfer {
    CURL *curl;
    struct curl_slist *headers;
    buffer body, head;
    const char *until; /* hang up once this text is in the body */
    int hangup;        /* hang up at the next data */
    int aborted;
    pthread_mutex_t *lock; /* held while the body grows (background transfers) */
} transfer;

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
    transfer *t = user;
    if (t->lock)
        pthread_mutex_lock(t->lock);
    buf_add(&t->body, data, size * nmemb);
    int stop = t->hangup || (t->until && strstr(t->body.p, t->until));
    if (stop)
        t->aborted = 1;
    if (t->lock)
        pthread_mutex_unlock(t->lock);
    /* Returning less than given makes curl close the connection: the client went away. */
    return stop ? 0 : size * nmemb;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *user)
{
    transfer *t = user;
    /* A new status line (after "100 Continue") starts the final response's block afresh. */
    if (size * nmemb >= 5 && memcmp(data, "HTTP/", 5) == 0)
        t->head.len = 0;
    buf_add(&t->head, data, size * nmemb);
    return size * nmemb;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void transfer_init(transfer *t, const it_server *s, const char *method, const char *path,
                          const char *body, size_t len, const char *const *headers,
                          long timeout_ms)
{
    pthread_once(&curl_once, curl_init_once);
    memset(t, 0, sizeof *t);
    t->curl = curl_easy_init();
    cr_assert(t->curl);
    char url[512];
    snprintf(url, sizeof url, "%s%s", s->base, path);
    curl_easy_setopt(t->curl, CURLOPT_URL, url);
    curl_easy_setopt(t->curl, CURLOPT_NOSIGNAL, 1L);
    /* Straight to the loopback server, whatever proxy the environment names. */
    curl_easy_setopt(t->curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(t->curl, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 60000L);
    curl_easy_setopt(t->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(t->curl, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(t->curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(t->curl, CURLOPT_HEADERDATA, t);
    /* Each request on its own connection: the tests count connections (hang-ups, drains). */
    curl_easy_setopt(t->curl, CURLOPT_FORBID_REUSE, 1L);
    int has_type = 0;
    for (int i = 0; headers && headers[i]; i++) {
        t->headers = curl_slist_append(t->headers, headers[i]);
        if (strncasecmp(headers[i], "Content-Type:", 13) == 0)
            has_type = 1;
    }
    if (body) {
        if (!has_type)
            t->headers = curl_slist_append(t->headers, "Content-Type: application/json");
        /* No "Expect: 100-continue" round trip unless a test asks for it. */
        t->headers = curl_slist_append(t->headers, "Expect:");
        curl_easy_setopt(t->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(t->curl, CURLOPT_POSTFIELDS, body);
    }
    if (strcmp(method, "GET") == 0 && !body)
        curl_easy_setopt(t->curl, CURLOPT_HTTPGET, 1L);
    else if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(t->curl, CURLOPT_NOBODY, 1L);
    else
        curl_easy_setopt(t->curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(t->curl, CURLOPT_HTTPHEADER, t->headers);
}

static it_response transfer_finish(transfer *t, CURLcode rc)
{
    it_response r = {0};
    r.curl_code = (int)rc;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_getinfo(t->curl, CURLINFO_TOTAL_TIME, &r.seconds);
    buf_add(&t->body, "", 0);
    buf_add(&t->head, "", 0);
    r.body = t->body.p;
    r.len = t->body.len;
    r.headers = t->head.p;
    curl_slist_free_all(t->headers);
    curl_easy_cleanup(t->curl);
    return r;
}

void it_response_free(it_response *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof *r);
}

it_response it_http_n(const it_server *s, const char *method, const char *path, const char *body,
                      size_t len, const char *const *headers)
{
    transfer t;
    transfer_init(&t, s, method, path, body, len, headers, 0);
    CURLcode rc = curl_easy_perform(t.curl);
    return transfer_finish(&t, rc);
}

it_response it_http(const it_server *s, const char *method, const char *path, const char *body,
                    ...)
{
    const char *headers[16];
    int n = 0;
    va_list ap;
    va_start(ap, body);
    for (const char *h = va_arg(ap, const char *); h; h = va_arg(ap, const char *)) {
        cr_assert_lt(n, 15);
        headers[n++] = h;
    }
    va_end(ap);
    headers[n] = NULL;
    return it_http_n(s, method, path, body, body ? strlen(body) : 0, headers);
}

int it_header(const it_response *r, const char *name, char *buf, size_t n)
{
    size_t nl = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        const char *end = strstr(line, "\r\n");
        size_t ll = end ? (size_t)(end - line) : strlen(line);
        if (ll > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t vl = ll - (size_t)(v - line);
            while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            if (n > 0) {
                size_t k = vl < n - 1 ? vl : n - 1;
                memcpy(buf, v, k);
                buf[k] = 0;
            }
            return 1;
        }
        line = end ? end + 2 : line + ll;
    }
    return 0;
}

json_t *it_json(const it_response *r)
{
    json_error_t e;
    json_t *j = json_loadb(r->body ? r->body : "", r->len, 0, &e);
    cr_assert(j, "status %ld: the body is not JSON (%s): %.400s", r->status, e.text,
              r->body ? r->body : "");
    return j;
}

const char *it_expect_error(const it_response *r, long status, const char *code)
{
    static char message[512];
    cr_assert_eq(r->status, status, "expected %ld, got %ld: %.400s", status, r->status,
                 r->body ? r->body : "");
    char type[128];
    cr_assert(it_header(r, "Content-Type", type, sizeof type) && strstr(type, "application/json"),
              "an error reply is JSON");
    json_t *j = it_json(r);
    json_t *e = json_object_get(j, "error");
    cr_assert(json_is_object(e), "no \"error\" object: %s", r->body);
    cr_assert_eq(json_object_size(j), 1, "only \"error\" at the top: %s", r->body);
    const char *c = json_string_value(json_object_get(e, "code"));
    const char *t = json_string_value(json_object_get(e, "type"));
    const char *m = json_string_value(json_object_get(e, "message"));
    cr_assert(c && t && m, "error needs code, type and message strings: %s", r->body);
    cr_assert(strlen(m) > 0);
    if (code)
        cr_assert_str_eq(c, code, "error code: %s", r->body);
    snprintf(message, sizeof message, "%s", m);
    json_decref(j);
    return message;
}

void it_http_many(const it_server *s, const it_request *reqs, it_response *out, int n)
{
    pthread_once(&curl_once, curl_init_once);
    transfer *t = calloc((size_t)n, sizeof *t);
    cr_assert(t);
    CURLM *m = curl_multi_init();
    for (int i = 0; i < n; i++) {
        const char *body = reqs[i].body;
        transfer_init(&t[i], s, reqs[i].method, reqs[i].path, body, body ? strlen(body) : 0,
                      reqs[i].headers, reqs[i].timeout_ms);
        curl_multi_add_handle(m, t[i].curl);
    }
    CURLcode *codes = calloc((size_t)n, sizeof *codes);
    int running = 1;
    while (running) {
        cr_assert_eq(curl_multi_perform(m, &running), CURLM_OK);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            for (int i = 0; i < n; i++)
                if (t[i].curl == msg->easy_handle)
                    codes[i] = msg->data.result;
        }
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    for (int i = 0; i < n; i++) {
        curl_multi_remove_handle(m, t[i].curl);
        out[i] = transfer_finish(&t[i], codes[i]);
    }
    curl_multi_cleanup(m);
    free(codes);
    free(t);
}

struct it_async {
    pthread_t thread;
    pthread_mutex_t lock; /* guards t.body while the thread writes it */
    transfer t;
    CURLcode rc;
};

static void *async_main(void *arg)
{
    it_async *a = arg;
    a->rc = curl_easy_perform(a->t.curl);
    return NULL;
}

it_async *it_http_async(const it_server *s, const it_request *req)
{
    it_async *a = calloc(1, sizeof *a);
    cr_assert(a);
    pthread_mutex_init(&a->lock, NULL);
    const char *body = req->body;
    transfer_init(&a->t, s, req->method, req->path, body, body ? strlen(body) : 0, req->headers,
                  req->timeout_ms);
    a->t.lock = &a->lock;
    cr_assert_eq(pthread_create(&a->thread, NULL, async_main, a), 0);
    return a;
}

char *it_async_peek(it_async *a)
{
    pthread_mutex_lock(&a->lock);
    char *copy = strdup(a->t.body.p ? a->t.body.p : "");
    pthread_mutex_unlock(&a->lock);
    cr_assert(copy);
    return copy;
}

char *it_async_wait_for(it_async *a, const char *text, int timeout_ms)
{
    double deadline = it_now_ms() + timeout_ms;
    for (;;) {
        char *body = it_async_peek(a);
        const char *hit = strstr(body, text);
        if (hit)
            return body;
        free(body);
        if (it_now_ms() > deadline)
            return NULL;
        it_sleep_ms(2);
    }
}

void it_async_hangup(it_async *a)
{
    pthread_mutex_lock(&a->lock);
    a->t.hangup = 1;
    pthread_mutex_unlock(&a->lock);
}

it_response it_async_wait(it_async *a)
{
    pthread_join(a->thread, NULL);
    it_response r = transfer_finish(&a->t, a->rc);
    pthread_mutex_destroy(&a->lock);
    free(a);
    return r;
}

it_response it_http_hangup(const it_server *s, const it_request *req, const char *until,
                           int *aborted)
{
    transfer t;
    const char *body = req->body;
    transfer_init(&t, s, req->method, req->path, body, body ? strlen(body) : 0, req->headers,
                  req->timeout_ms);
    t.until = until;
    CURLcode rc = curl_easy_perform(t.curl);
    *aborted = t.aborted;
    return transfer_finish(&t, rc);
}

/* ---- answers ---- */

int it_sse_parse(const char *body, size_t len, it_event **out, int *comments)
{
    int n = 0, cap = 16, ncomments = 0;
    it_event *ev = calloc((size_t)cap, sizeof *ev);
    cr_assert(ev);
    char name[32] = "message";
    buffer data = {0};
    int has_data = 0;
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *eol = p;
        while (eol < end && *eol != '\n' && *eol != '\r')
            eol++;
        size_t ll = (size_t)(eol - p);
        if (ll == 0) {
            /* A blank line dispatches the event being built (if it has data). */
            if (has_data) {
                if (n == cap) {
                    cap *= 2;
                    ev = realloc(ev, (size_t)cap * sizeof *ev);
                    cr_assert(ev);
                }
                snprintf(ev[n].name, sizeof ev[n].name, "%s", name);
                ev[n].data = data.p ? data.p : strdup("");
                n++;
                data = (buffer){0};
            }
            strcpy(name, "message");
            has_data = 0;
        } else if (p[0] == ':') {
            ncomments++;
        } else {
            const char *colon = memchr(p, ':', ll);
            size_t fl = colon ? (size_t)(colon - p) : ll;
            const char *v = colon ? colon + 1 : eol;
            if (v < eol && *v == ' ')
                v++;
            size_t vl = (size_t)(eol - v);
            if (fl == 5 && memcmp(p, "event", 5) == 0) {
                snprintf(name, sizeof name, "%.*s", (int)vl, v);
            } else if (fl == 4 && memcmp(p, "data", 4) == 0) {
                if (has_data)
                    buf_add(&data, "\n", 1);
                buf_add(&data, v, vl);
                if (!data.p)
                    buf_add(&data, "", 0);
                has_data = 1;
            }
        }
        /* One line end: "\r\n", "\n" or "\r". */
        if (eol < end && *eol == '\r' && eol + 1 < end && eol[1] == '\n')
            eol++;
        p = eol + 1;
    }
    free(data.p);
    *out = ev;
    if (comments)
        *comments = ncomments;
    return n;
}

void it_events_free(it_event *ev, int n)
{
    for (int i = 0; i < n; i++)
        free(ev[i].data);
    free(ev);
}

unsigned char *it_b64_decode(const char *s, size_t *len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s);
    if (n % 4 != 0)
        return NULL;
    unsigned char *out = malloc(n / 4 * 3 + 1);
    cr_assert(out);
    size_t k = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            char c = s[i + j];
            const char *at = c ? strchr(alphabet, c) : NULL;
            if (c == '=' && i + 4 == n && j >= 2) {
                pad++;
                v <<= 6;
            } else if (at && !pad) {
                v = v << 6 | (uint32_t)(at - alphabet);
            } else {
                free(out);
                return NULL;
            }
        }
        out[k++] = (unsigned char)(v >> 16);
        if (pad < 2)
            out[k++] = (unsigned char)(v >> 8);
        if (pad < 1)
            out[k++] = (unsigned char)v;
    }
    *len = k;
    return out;
}

int it_png_size(const void *bytes, size_t len, int *w, int *h)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const unsigned char *b = bytes;
    /* Signature, then the first chunk: length 13, type IHDR, width and height big-endian. */
    if (len < 33 || memcmp(b, sig, 8) != 0 || memcmp(b + 12, "IHDR", 4) != 0)
        return 0;
    *w = (int)((uint32_t)b[16] << 24 | (uint32_t)b[17] << 16 | (uint32_t)b[18] << 8 | b[19]);
    *h = (int)((uint32_t)b[20] << 24 | (uint32_t)b[21] << 16 | (uint32_t)b[22] << 8 | b[23]);
    return 1;
}

double it_server_timing(const char *header, const char *name)
{
    /* "queue;dur=0.1, text_encode;dur=2.3, ..." */
    size_t nl = strlen(name);
    for (const char *p = header; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = strchr(p, ',');
        size_t ml = strcspn(p, ";,");
        if (ml == nl && strncmp(p, name, nl) == 0) {
            const char *d = strstr(p, "dur=");
            if (d && (!end || d < end))
                return strtod(d + 4, NULL);
            return -1;
        }
        p = end ? end + 1 : NULL;
    }
    return -1;
}

/* ---- the server's own state ---- */

char *it_stream_job_id(it_async *a)
{
    char *body = it_async_wait_for(a, "event: queued", 20000);
    cr_assert(body, "no queued event");
    free(body);
    /* The event is complete once its blank line has arrived. */
    double deadline = it_now_ms() + 5000;
    for (;;) {
        body = it_async_peek(a);
        it_event *ev;
        int n = it_sse_parse(body, strlen(body), &ev, NULL);
        free(body);
        for (int i = 0; i < n; i++) {
            if (strcmp(ev[i].name, "queued") != 0)
                continue;
            json_t *d = json_loads(ev[i].data, 0, NULL);
            cr_assert(d, "queued data: %s", ev[i].data);
            char *id = strdup(json_string_value(json_object_get(d, "id")));
            json_decref(d);
            it_events_free(ev, n);
            return id;
        }
        it_events_free(ev, n);
        cr_assert_lt(it_now_ms(), deadline, "queued event incomplete");
        it_sleep_ms(2);
    }
}

int it_wait_job_state(const it_server *s, const char *id, const char *states, int timeout_ms)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    double deadline = it_now_ms() + timeout_ms;
    do {
        it_response r = it_http(s, "GET", path, NULL, NULL);
        if (r.status == 200) {
            json_t *j = it_json(&r);
            const char *st = json_string_value(json_object_get(j, "state"));
            int hit = 0;
            if (st) {
                size_t sl = strlen(st);
                for (const char *p = states; p;) {
                    const char *bar = strchr(p, '|');
                    size_t pl = bar ? (size_t)(bar - p) : strlen(p);
                    if (pl == sl && strncmp(p, st, sl) == 0)
                        hit = 1;
                    p = bar ? bar + 1 : NULL;
                }
            }
            json_decref(j);
            it_response_free(&r);
            if (hit)
                return 1;
        } else {
            it_response_free(&r);
        }
        it_sleep_ms(5);
    } while (it_now_ms() < deadline);
    return 0;
}

double it_metric(const it_server *s, const char *sample)
{
    it_response r = it_http(s, "GET", "/metrics", NULL, NULL);
    cr_assert_eq(r.status, 200, "/metrics: %ld", r.status);
    /* A sample without labels sums the family's label sets ("x" counts "x{a="1"}" too). */
    int any_labels = strchr(sample, '{') == NULL;
    double v = -1;
    size_t sl = strlen(sample);
    for (const char *line = r.body; line && *line;) {
        const char *nl = strchr(line, '\n');
        if (line[0] != '#' && strncmp(line, sample, sl) == 0 &&
            (line[sl] == ' ' || (any_labels && line[sl] == '{'))) {
            const char *val = line[sl] == ' ' ? line + sl + 1 : strstr(line + sl, "} ");
            cr_assert(val, "bad sample line: %.100s", line);
            if (*val == '}')
                val += 2;
            v = (v < 0 ? 0 : v) + strtod(val, NULL);
        }
        line = nl ? nl + 1 : NULL;
    }
    it_response_free(&r);
    return v;
}

/* ---- raw HTTP on a socket (bytes curl would not send) ---- */

int it_raw_connect(const it_server *s, int rcvbuf)
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

void it_raw_send(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        cr_assert_gt(n, 0, "send: %s", strerror(errno));
        data += n;
        len -= (size_t)n;
    }
}

char *it_raw_read(int fd, const char *until, int timeout_ms, size_t *len, int *closed)
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

char *it_raw_exchange(const it_server *s, const char *req, size_t reqlen, int timeout_ms,
                      size_t *len, int *closed)
{
    int fd = it_raw_connect(s, 0), gone;
    it_raw_send(fd, req, reqlen);
    char *out = it_raw_read(fd, NULL, timeout_ms, len, closed ? closed : &gone);
    close(fd);
    return out;
}

int it_raw_status(const char *answer)
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

const char *it_raw_body(const char *answer)
{
    const char *p = answer, *b;
    while (!strncmp(p, "HTTP/1.", 7) && p[9] == '1' && (b = strstr(p, "\r\n\r\n")))
        p = b + 4; /* an interim answer */
    b = strstr(p, "\r\n\r\n");
    return b ? b + 4 : "";
}
