/*
 * http_internal.h - what http.c (routing, replies, connection state) and http_generate.c (the
 * generation endpoints, jobs and streaming) share. Not for other modules.
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
    char method[8];
    char url[64];             /* for messages; cut when longer */
    api_err reject;           /* set at the first call: 404, 405 or 401 to answer at the end */
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

    struct srv_req *prev, *next; /* srv_http's list of live requests */
} srv_req;

struct srv_http {
    uv_loop_t *loop;
    srv_http_config cfg;
    uv_timer_t ping;
    srv_req *reqs;
    int in_flight;
    int draining;
};

/* ---- http.c ---- */

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
/* Suspends r and watches its socket for a disconnect; resumes it (and kicks MHD). */
void srv_req_suspend(srv_req *r);
void srv_req_resume(srv_req *r);

/* ---- http_generate.c ---- */

/* POST /v1/generate and /v1/images/generations, once the body is in. */
void srv_http_generate(srv_req *r);
void srv_http_job_get(srv_req *r);
void srv_http_job_delete(srv_req *r);
void srv_http_models(srv_req *r);
/* The streamed answer's reader (MHD_create_response_from_callback). */
ssize_t srv_http_sse_reader(void *cls, uint64_t pos, char *buf, size_t max);
/* Sends ": ping" on every open stream. */
void srv_http_ping_streams(srv_http *h);
/* The client went away (disconnect seen on the socket) or the request completed: cancel the
 * job if it still runs, and forget it. */
void srv_http_req_gone(srv_req *r, srv_cancel reason);

#endif
