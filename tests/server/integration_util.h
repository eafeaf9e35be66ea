/*
 * integration_util.h - what the daemon's integration tests share: starting `tttd serve` as a child
 * process on a random loopback port, speaking HTTP to it with libcurl (one request, several at
 * once, or one in the background), and reading its answers (headers, Server-Sent Events, PNG
 * headers, the Server-Timing header).
 *
 * The helpers fail the running Criterion test (cr_assert) when something they need breaks, so a
 * test reads as the list of what it checks. Everything here belongs to one test process; the
 * background requests run on their own threads, each with its own curl handle.
 */
#ifndef TTTD_TESTS_SERVER_INTEGRATION_UTIL_H
#define TTTD_TESTS_SERVER_INTEGRATION_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

/* The tiny pipeline every test serves: random weights, milliseconds per image. */
#define IT_MODEL_DIR "tests/fixtures/tiny_model"

typedef struct it_server {
    pid_t pid; /* 0 once stopped */
    int port;
    char base[64];     /* "http://127.0.0.1:PORT" */
    char log_path[64]; /* the server's stdout and stderr */
} it_server;

/*
 * Starts `$TTTD_BIN serve --host 127.0.0.1 --port 0 --model default=tests/fixtures/tiny_model`
 * followed by the NULL-terminated extra arguments, waits (up to 60 s) for the line
 * "listening on 127.0.0.1:PORT" in its output, then for GET /readyz to answer 200 (the models
 * loaded; an --api-key among the arguments is sent with it). TTTD_BIN defaults to build/tttd.
 * The server dies with the test process (PR_SET_PDEATHSIG) if the test never stops it. Unless the
 * environment says otherwise, it runs with OMP_NUM_THREADS=1 (two tests share two cores).
 */
void it_server_start(it_server *s, ...) __attribute__((sentinel));
/* Same, with no default --model: the arguments say everything but --host and --port. */
void it_server_start_bare(it_server *s, ...) __attribute__((sentinel));

/* SIGTERM, then waits (up to timeout_ms, then SIGKILL). Returns the exit status, or 128 + the
 * signal that ended it. */
int it_server_stop(it_server *s, int timeout_ms);
/* Sends sig without waiting. */
void it_server_signal(const it_server *s, int sig);
/* Waits up to timeout_ms for the server to exit; returns as it_server_stop does, or -1 (and
 * leaves it running) on timeout. */
int it_server_wait(it_server *s, int timeout_ms);
/* The server's output so far (malloc'ed, NUL-terminated); for messages when a test fails. */
char *it_server_log(const it_server *s);

typedef struct it_response {
    long status;   /* 0: no answer (the transfer failed) */
    char *body;    /* NUL-terminated (the body may itself hold NULs: use len) */
    size_t len;
    char *headers; /* the final response's header block, "Name: value\r\n" lines */
    int curl_code; /* CURLcode of the transfer */
    double seconds;
} it_response;

void it_response_free(it_response *r);

/*
 * One request: method, path (appended to s->base), body (NULL: none; sent as is with its strlen),
 * then NULL-terminated extra header lines ("Accept: image/png"). A body gets
 * "Content-Type: application/json" unless a Content-Type is among the headers.
 */
it_response it_http(const it_server *s, const char *method, const char *path, const char *body,
                    ...) __attribute__((sentinel));
/* Same with a body of len bytes and the headers as an array (NULL-terminated, may be NULL). */
it_response it_http_n(const it_server *s, const char *method, const char *path, const char *body,
                      size_t len, const char *const *headers);

/* The value of header name (case-insensitive) in r, copied into buf; 1 if found, else 0. */
int it_header(const it_response *r, const char *name, char *buf, size_t n);

/* r's body as JSON (the test fails when it is not). Free with json_decref. */
json_t *it_json(const it_response *r);
/* Checks r is a JSON error reply {"error": {"code", "type", "message"}} with this status and code
 * (code NULL: any) and returns its message (pointing into a static copy). */
/* The tttd binary under test: $TTTD_BIN (make check sets it), else build/tttd; asserts that it
 * exists. */
const char *it_bin(void);

const char *it_expect_error(const it_response *r, long status, const char *code);

/* One request to run with others: method, path, body, headers (NULL-terminated list), and how
 * long the client waits before it gives up and closes the connection (0: 60 s). */
typedef struct it_request {
    const char *method, *path, *body;
    const char *headers[8];
    long timeout_ms;
} it_request;

/* Runs the n requests at the same time (curl multi) and waits for all of them. */
void it_http_many(const it_server *s, const it_request *reqs, it_response *out, int n);

/* A request on its own thread; its body can be read while it arrives (streams). */
typedef struct it_async it_async;
it_async *it_http_async(const it_server *s, const it_request *req);
/* The body received so far (malloc'ed copy). */
char *it_async_peek(it_async *a);
/* Waits (up to timeout_ms) until text is in the body; returns the body so far (malloc'ed), or
 * NULL on timeout. */
char *it_async_wait_for(it_async *a, const char *text, int timeout_ms);
/* Closes the connection when the next bytes arrive (a client that goes away). */
void it_async_hangup(it_async *a);
/* Waits for it and returns its response (the it_async is freed). */
it_response it_async_wait(it_async *a);

/*
 * Streams a request and closes the connection as soon as the text `until` has arrived in the
 * body (a client that goes away). Returns what arrived until then, with the HTTP status; *aborted
 * is 1 when we hung up, 0 when the server ended the answer before `until` came.
 */
it_response it_http_hangup(const it_server *s, const it_request *req, const char *until,
                           int *aborted);

/* Server-Sent Events of an answer: name ("message" when none) and the joined data lines. */
typedef struct it_event {
    char name[32];
    char *data;
} it_event;

/* Parses body; returns the count and sets *out (free with it_events_free). Comments (": ping")
 * are counted in *comments when it is not NULL. */
int it_sse_parse(const char *body, size_t len, it_event **out, int *comments);
void it_events_free(it_event *ev, int n);

/* Decodes standard base64 (padding required); malloc'ed bytes and *len, or NULL when s is not
 * base64. Written here, not taken from api/, so that the server's encoder is checked by another. */
unsigned char *it_b64_decode(const char *s, size_t *len);

/* PNG signature and IHDR: 1 and the size when bytes start a PNG file, else 0. */
int it_png_size(const void *bytes, size_t len, int *w, int *h);

/* The dur= of metric name in a Server-Timing header value; -1 when absent. */
double it_server_timing(const char *header, const char *name);

/* Milliseconds of a monotonic clock. */
double it_now_ms(void);
/* Sleeps ms milliseconds. */
void it_sleep_ms(int ms);

/* Waits (up to 20 s) until a streamed request's `queued` event is complete and returns its job id
 * (malloc'ed). */
char *it_stream_job_id(it_async *a);

/*
 * Raw HTTP, for bytes curl would not send. it_raw_connect: a TCP socket connected to the server
 * (rcvbuf > 0: that SO_RCVBUF, set before connecting). it_raw_send: all of data. it_raw_read:
 * what the server sent within timeout_ms, until it closed the connection (*closed = 1) or the
 * text `until` arrived (NULL: the close only); NUL-terminated, malloc'ed, *len its length (len
 * may be NULL). it_raw_exchange: one request on a new connection, read as it_raw_read does
 * until the close (closed may be NULL). it_raw_status: the status of the final response (interim
 * 1xx ones skipped), or 0. it_raw_body: the body after that response's header block.
 */
int it_raw_connect(const it_server *s, int rcvbuf);
void it_raw_send(int fd, const char *data, size_t len);
char *it_raw_read(int fd, const char *until, int timeout_ms, size_t *len, int *closed);
char *it_raw_exchange(const it_server *s, const char *req, size_t reqlen, int timeout_ms,
                      size_t *len, int *closed);
int it_raw_status(const char *answer);
const char *it_raw_body(const char *answer);

/* Polls GET /v1/jobs/{id} until its "state" is one of the '|'-separated states (up to timeout_ms);
 * returns 1 when it got there. */
int it_wait_job_state(const it_server *s, const char *id, const char *states, int timeout_ms);

/* The value of a Prometheus sample in GET /metrics: "name{labels}" exactly as the server writes
 * it, or "name", which sums every label set of name. -1 when absent. */
double it_metric(const it_server *s, const char *sample);

#endif
