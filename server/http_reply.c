/*
 * http_reply.c - a request's answers and its wait: the replies with the headers every answer
 * carries, error answers from api/'s table, suspend/resume, the disconnect watch of a suspended
 * connection, and the request's link to its job (forgotten, or canceled when the client goes).
 *
 * The lowest of the HTTP files (see http_internal.h): it calls http_guard.c for the CORS headers
 * and the scheduler to cancel a job, never the endpoints above it.
 */
#include "server/http_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "engine/core/log.h"

/* ---- disconnect watching ---- */

/*
 * MHD stops watching a suspended connection's socket, so a client that hangs up while its
 * images are being made would go unnoticed until the answer is written. A uv_poll_t on the same
 * fd (in libuv's own epoll set) sees the hang-up. It is allocated apart from the request because
 * uv_close finishes on a later loop iteration, possibly after the request is gone.
 */
struct conn_watch {
    uv_poll_t poll;
    srv_req *req; /* NULL once the request no longer cares */
    int fd;
};

static void watch_closed(uv_handle_t *h)
{
    free(h->data);
}

static void watch_stop(srv_req *r)
{
    conn_watch *w = r->watch;
    if (!w)
        return;
    r->watch = NULL;
    w->req = NULL;
    uv_poll_stop(&w->poll);
    uv_close((uv_handle_t *)&w->poll, watch_closed);
}

static void on_watch(uv_poll_t *p, int status, int events);

/*
 * End of input is not the end of the client. A client that has sent its request may
 * shutdown(SHUT_WR) and still read the answer (a half-close); one that close()d is gone; both
 * send the same FIN, and the socket looks the same (readable at EOF, EPOLLRDHUP) until something
 * is written to it: the kernel of a client that closed answers any data with a reset, one that
 * half-closed takes it. So at EOF:
 *
 * - a plain request (nothing of its answer written yet) gets an interim "100 Continue" answer,
 *   which HTTP/1.1 clients must skip (RFC 9110, 15.2) and which costs nothing to a client that
 *   has gone; HTTP/1.0 forbids interim answers, and an HTTP/1.0 client that sends EOF is taken
 *   as gone, as before;
 * - a stream has its answer under way, whose next event or ": ping" does the same;
 *
 * and from then on only a reset or an error counts: the watch asks for UV_PRIORITIZED alone
 * (EPOLLPRI, which TCP never raises without urgent data), so that readability and EPOLLRDHUP,
 * both level-triggered and both true for good after the FIN, stop waking the loop, while epoll
 * still reports EPOLLERR and EPOLLHUP, which libuv hands on as an error status or as the event
 * asked for. The reset sets both as soon as it arrives, a round trip after the probe.
 */
static int watch_half_closed(srv_req *r, conn_watch *w)
{
    static const char probe[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (!r->sse) {
        if (r->http10)
            return -1;
        ssize_t n = send(w->fd, probe, sizeof probe - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n != (ssize_t)(sizeof probe - 1))
            return -1; /* an error (the reset came first), or a part: the stream is broken */
    }
    eng_log(ENG_LOG_DEBUG, r->id, "client half-closed its connection: still answering");
    return uv_poll_start(&w->poll, UV_PRIORITIZED, on_watch) ? -1 : 0;
}

static void on_watch(uv_poll_t *p, int status, int events)
{
    conn_watch *w = p->data;
    srv_req *r = w->req;
    if (!r)
        return;
    int gone = status < 0 || (events & UV_PRIORITIZED);
    if (!gone && (events & (UV_READABLE | UV_DISCONNECT))) {
        char c;
        ssize_t n = recv(w->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0)
            gone = watch_half_closed(r, w) != 0;
        else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            gone = 1;
        else if (n > 0)
            /* A pipelined request: data is not a hang-up, and stays for MHD; keep watching
             * for the hang-up alone. */
            uv_poll_start(p, UV_DISCONNECT, on_watch);
    }
    if (!gone)
        return;
    eng_log(ENG_LOG_INFO, r->id, "client disconnected");
    srv_req_gone(r, SRV_CANCEL_DISCONNECT);
    srv_req_resume(r); /* MHD then finds the socket closed and completes the request */
}

static void watch_start(srv_req *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    conn_watch *w = calloc(1, sizeof *w);
    if (!ci || !w) {
        free(w);
        return; /* no watch: a disconnect is noticed when the answer is written */
    }
    w->fd = ci->connect_fd;
    w->req = r;
    if (uv_poll_init(r->h->loop, &w->poll, w->fd)) {
        free(w);
        return;
    }
    w->poll.data = w;
    if (uv_poll_start(&w->poll, UV_READABLE | UV_DISCONNECT | UV_PRIORITIZED, on_watch)) {
        uv_close((uv_handle_t *)&w->poll, watch_closed);
        return;
    }
    r->watch = w;
}

void srv_req_suspend(srv_req *r)
{
    if (r->suspended)
        return;
    MHD_suspend_connection(r->conn);
    r->suspended = 1;
    watch_start(r);
}

void srv_req_resume(srv_req *r)
{
    if (!r->suspended)
        return;
    watch_stop(r);
    r->suspended = 0;
    r->reader_waiting = 0;
    MHD_resume_connection(r->conn);
    srv_mhd_loop_kick(r->h->cfg.mhd);
}

/* ---- the request's job ---- */

void srv_req_detach(srv_req *r)
{
    if (r->job)
        r->job->waiter = NULL;
    r->job = NULL;
}

void srv_req_gone(srv_req *r, srv_cancel reason)
{
    srv_job *j = r->job;
    if (!j)
        return;
    /* Forget the job first: canceling it must not answer a request that is going away. */
    srv_req_detach(r);
    r->gone = 1;
    srv_sched_cancel(r->h->cfg.sched, j, reason);
    if (r->sse)
        r->sse_done = 1;
}

void srv_req_release(srv_req *r)
{
    srv_req_gone(r, SRV_CANCEL_DISCONNECT);
    watch_stop(r);
    if (r->pending)
        MHD_destroy_response(r->pending);
    r->pending = NULL;
}

/* ---- replies ---- */

struct MHD_Response *srv_req_response(srv_req *r, const char *ctype, void *body, size_t len,
                                      enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, mode);
    if (!resp) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return NULL;
    }
    if (ctype)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    srv_guard_cors_headers(r, resp);
    if (r->timing[0])
        MHD_add_response_header(resp, "Server-Timing", r->timing);
    if (r->h->draining)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    return resp;
}

void srv_req_send(srv_req *r, int status, struct MHD_Response *resp)
{
    if (!resp) {
        /* Out of memory: closing the connection is all that is left. */
        eng_log(ENG_LOG_ERROR, r->id, "cannot build a response (out of memory)");
        r->status = 500;
        r->answered = 1;
        srv_req_resume(r);
        return;
    }
    r->status = status;
    r->answered = 1;
    if (r->suspended) {
        if (r->pending)
            MHD_destroy_response(r->pending);
        r->pending = resp;
        r->pending_status = status;
        srv_req_resume(r);
        return;
    }
    if (MHD_queue_response(r->conn, (unsigned)status, resp) != MHD_YES)
        eng_log(ENG_LOG_WARN, r->id, "MHD refused the response (%d)", status);
    MHD_destroy_response(resp);
}

void srv_req_json(srv_req *r, int status, char *json)
{
    if (!json) {
        srv_req_error(r, API_ERR_INTERNAL, "out of memory");
        return;
    }
    srv_req_send(r, status,
                 srv_req_response(r, "application/json", json, strlen(json),
                                  MHD_RESPMEM_MUST_FREE));
}

static void count_rejection(srv_req *r, api_err e)
{
    srv_metrics *m = r->h->cfg.metrics;
    switch (e) {
    case API_ERR_QUEUE_FULL: srv_metrics_reject(m, SRV_REJECT_QUEUE_FULL); break;
    case API_ERR_BODY_TOO_LARGE: srv_metrics_reject(m, SRV_REJECT_BODY_TOO_LARGE); break;
    case API_ERR_UNAUTHORIZED: srv_metrics_reject(m, SRV_REJECT_UNAUTHORIZED); break;
    case API_ERR_MODEL_LOADING: srv_metrics_reject(m, SRV_REJECT_LOADING); break;
    case API_ERR_SHUTTING_DOWN: srv_metrics_reject(m, SRV_REJECT_SHUTTING_DOWN); break;
    case API_ERR_BAD_JSON:
    case API_ERR_BAD_UTF8:
    case API_ERR_UNKNOWN_FIELD:
    case API_ERR_FIELD_TYPE:
    case API_ERR_FIELD_RANGE:
    case API_ERR_FIELD_MISSING:
    case API_ERR_FIELD_UNSUPPORTED:
    case API_ERR_UNSUPPORTED_MEDIA_TYPE:
    case API_ERR_NOT_ACCEPTABLE:
    case API_ERR_MODEL_NOT_FOUND:
    case API_ERR_BAD_HEADER:
    case API_ERR_MISDIRECTED:
    case API_ERR_ORIGIN_FORBIDDEN:
        srv_metrics_reject(m, SRV_REJECT_INVALID);
        break;
    default:
        break;
    }
}

void srv_req_error(srv_req *r, api_err e, const char *fmt, ...)
{
    /* The OpenAI route answers in OpenAI's shape and statuses, which its SDKs read
     * (BadRequestError with param); every other route in tttd's own. */
    int openai = r->route == SRV_ROUTE_IMAGES;
    va_list ap;
    va_start(ap, fmt);
    char *body = openai ? api_openai_error_body_v(e, r->greq.error_param, fmt, ap)
                        : api_error_body_v(e, fmt, ap);
    va_end(ap);
    if (!body) {
        srv_req_send(r, 500, NULL);
        return;
    }
    /* Rejections are requests refused before any work; a job's failure is not one. */
    if (!r->job)
        count_rejection(r, e);
    struct MHD_Response *resp =
        srv_req_response(r, "application/json", body, strlen(body), MHD_RESPMEM_MUST_FREE);
    const char *hdr = api_error_header(e);
    if (resp && hdr) {
        if (!strcasecmp(hdr, "Allow"))
            MHD_add_response_header(resp, "Allow", r->allow);
        else if (!strcasecmp(hdr, "Retry-After"))
            MHD_add_response_header(resp, "Retry-After", e == API_ERR_QUEUE_FULL ? "1" : "5");
        else if (!strcasecmp(hdr, "WWW-Authenticate"))
            MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"tttd\"");
    }
    srv_req_send(r, openai ? api_openai_error_status(e) : api_error_status(e), resp);
}
