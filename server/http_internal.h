/*
 * http_internal.h - what the HTTP files share: a request's state (srv_req), the srv_http object,
 * and each file's functions. Not for other modules.
 *
 * The files use each other one way; each calls only those listed before it:
 *
 *   http_guard.c     what a request must be before it is routed (framing, Host, Origin), and
 *                    the CORS headers;
 *   http_reply.c     a request's answers and its wait: replies, suspend/resume, the disconnect
 *                    watch, and canceling its job when the client goes;
 *   http_generate.c  the generation endpoints, jobs, streams, and the scheduler's events;
 *   http_a1111.c     AUTOMATIC1111's small routes (/sdapi/v1/...: models, samplers, options,
 *                    progress, img2img's refusal); its txt2img is http_generate.c's;
 *   http.c           MHD's handler and completion: routing, the small endpoints, srv_http.
 *
 * tools/check_layers.py fails the build on a circle between them.
 */
#ifndef TTTD_SERVER_HTTP_INTERNAL_H
#define TTTD_SERVER_HTTP_INTERNAL_H

#include "api/api.h"
#include "api/buf.h"
#include "server/http.h"
#include "server/jobs.h"

typedef struct conn_watch conn_watch;

typedef struct srv_req {
    srv_http *h;
    struct MHD_Connection *conn;
    srv_route route;
    const char *allow;        /* the methods the route allows ("GET, HEAD"), set by http.c */
    char method[8];
    char url[64];             /* for messages; cut when longer */
    api_err reject;           /* set at the first call: 404, 405 or 401 to answer at the end */
    char reject_msg[224];     /* its message, when not the table's (http_guard.c's refusals) */
    int preflight;            /* a CORS preflight (OPTIONS with Origin), answered 204 */
    int cors;                 /* srv_cors: whether answers carry Access-Control-Allow-Origin */
    char id[SRV_ID_LEN];      /* X-Request-Id */
    char path_id[SRV_ID_LEN]; /* {id} of /v1/jobs/{id} */
    int key;                  /* the API key sent, as its index + 1 (the jobs' owner); 0: none */
    double start_ms;

    api_buf body;
    uint64_t received; /* body bytes read, kept or not */
    int too_large;
    int answered; /* a response is queued, or pending until the resume */
    int status;   /* what was answered, for the metrics */
    char timing[256]; /* Server-Timing value, when the answer has one */

    int suspended;
    int gone; /* the client hung up while its job ran: close, answer nothing */
    int http10; /* an HTTP/1.0 request: no interim (1xx) answer may be sent to it */
    conn_watch *watch;

    /* POST /v1/generate, /v1/images/generations. */
    srv_job *job;
    api_generate_request greq;
    api_answer answer;
    struct MHD_Response *pending;
    int pending_status;

    /* Server-Sent Events. */
    int sse, sse_done, reader_waiting;
    int position; /* the queue position last sent in a "queued" event */
    api_buf sse_out;
    int sse_dropped;  /* preview events dropped: the client was not keeping up */
    int sse_overflow; /* over --sse-max-buffer: the connection is being closed */

    struct srv_req *prev, *next; /* srv_http's list of live requests */
} srv_req;

struct srv_http {
    uv_loop_t *loop;
    srv_http_config cfg;
    uv_timer_t ping;
    srv_req *reqs;
    int in_flight;
    int draining;
    int listen_scope; /* http_guard.c: what the listening socket is bound to, once known */
    int a1111_model;  /* the model of A1111 requests (POST /sdapi/v1/options), an index */
};

/* What r->cors says: no CORS header, the request's own Origin echoed, or "*". */
enum srv_cors { SRV_CORS_NONE = 0, SRV_CORS_ORIGIN = 1, SRV_CORS_ANY = 2 };

/* ---- http_guard.c (at the first call, in this order; each fills msg when it refuses) ---- */

/* API_ERR_BAD_HEADER when Content-Length is doubled with other values or beside
 * Transfer-Encoding, or Host is missing (but on HTTP/1.0), doubled or malformed. */
api_err srv_guard_framing(srv_req *r, const char *version, char *msg, size_t len);
/* API_ERR_MISDIRECTED when Host names a host this server does not answer to. */
api_err srv_guard_host(srv_req *r, char *msg, size_t len);
/* Sets r->cors from Origin and --cors-origins; API_ERR_ORIGIN_FORBIDDEN for a request other than
 * GET/HEAD from an origin that is neither listed nor the server's own. */
api_err srv_guard_origin(srv_req *r, char *msg, size_t len);
/* Whether r is a CORS preflight: OPTIONS with Origin and Access-Control-Request-Method. */
int srv_guard_is_preflight(srv_req *r);
/* Adds Access-Control-Allow-Origin (and Vary, Expose-Headers) to resp when r->cors says so. */
void srv_guard_cors_headers(srv_req *r, struct MHD_Response *resp);
/* Adds what an allowed preflight's answer says: the route's methods (r->allow), the request
 * headers a page may send, and how long the browser may keep that. */
void srv_guard_preflight_headers(srv_req *r, struct MHD_Response *resp);

/* ---- http_reply.c ---- */

/* A response with the headers every answer carries (X-Request-Id, Server-Timing if set, ...).
 * body: freed by MHD when mode is MHD_RESPMEM_MUST_FREE. */
struct MHD_Response *srv_req_response(srv_req *r, const char *ctype, void *body, size_t len,
                                      enum MHD_ResponseMemoryMode mode);
/* Queues resp now, or, when r is suspended, keeps it and resumes r. Takes resp. */
void srv_req_send(srv_req *r, int status, struct MHD_Response *resp);
/* A JSON answer (json malloc'ed, taken; NULL answers 500). */
void srv_req_json(srv_req *r, int status, char *json);
/* An error answer from the api/ table, with the header its row asks for. */
void srv_req_error(srv_req *r, api_err e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Suspends r and watches its socket for a disconnect; resumes it (and kicks MHD). A disconnect
 * seen by the watch cancels r's job (srv_req_gone) and resumes r, whose completion follows. */
void srv_req_suspend(srv_req *r);
void srv_req_resume(srv_req *r);
/* Forgets r's job (the job no longer names r as its waiter). */
void srv_req_detach(srv_req *r);
/* The client went away (disconnect seen on the socket) or the request completed: cancel the
 * job if it still runs, and forget it. */
void srv_req_gone(srv_req *r, srv_cancel reason);
/* MHD completed r: its job is canceled if it still runs, the watch stopped and an answer never
 * queued dropped. Freeing r is the caller's (http.c). */
void srv_req_release(srv_req *r);

/* ---- http_generate.c (and http.h's srv_http_sched_events, srv_http_queue_moved) ---- */

/* POST /v1/generate and /v1/images/generations, once the body is in. */
void srv_http_generate(srv_req *r);
void srv_http_job_get(srv_req *r);
void srv_http_job_delete(srv_req *r);
void srv_http_models(srv_req *r);
/* Sends ": ping" on every open stream. */
void srv_http_ping_streams(srv_http *h);

/* ---- http_a1111.c ---- */

/* The /sdapi/v1/ routes but txt2img (r->route says which), once the body is in. */
void srv_http_a1111(srv_req *r);

#endif
