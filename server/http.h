/*
 * http.h - the HTTP layer: libmicrohttpd's callbacks (routing, per-request state, body
 * accumulation under --max-body, API keys, replies, Server-Sent Events) and the job events that
 * resume suspended connections.
 *
 * A request that waits for images is suspended (MHD_suspend_connection) and its socket watched
 * for a disconnect, which MHD does not notice while a connection is suspended; when its job
 * finishes the answer is stored and the connection resumed, and MHD calls the handler again to
 * queue it. A streamed request queues a callback response at once; its reader suspends the
 * connection whenever it has nothing to send and job events resume it.
 *
 * The layer is four files that call each other one way (http_internal.h says which holds what):
 * http.c the handler and routing, http_generate.c generation, jobs and streams, http_reply.c the
 * answers and the suspended wait, http_guard.c the checks before routing.
 *
 * Thread-safety: loop thread only (MHD runs there, in external-epoll mode).
 */
#ifndef TTTD_SERVER_HTTP_H
#define TTTD_SERVER_HTTP_H

#include <microhttpd.h>
#include <uv.h>

#include "server/loop.h"
#include "server/metrics.h"
#include "server/models.h"
#include "server/options.h"
#include "server/sched.h"

typedef struct srv_http_config {
    const srv_options *opts;
    srv_metrics *metrics;
    srv_sched *sched;
    const srv_models *models;
    srv_mhd_loop *mhd; /* kicked after a resume */
} srv_http_config;

typedef struct srv_http srv_http;

/*
 * Request limits tttd enforces itself, with JSON 414 and 431 answers from the first handler call:
 * the request target (path plus query, decoded) and the header fields in all. libmicrohttpd
 * answers requests over its per-connection memory with fixed HTML bodies and, in 0.9.75, one of
 * those answers (too many query arguments for its pool) is never sent at all; so each connection
 * gives MHD SRV_HTTP_CONNECTION_MEMORY (MHD_OPTION_CONNECTION_MEMORY_LIMIT), enough that any
 * request within these limits reaches the handler: MHD keeps the request in the first half of
 * its pool and a 56-byte record per header or argument in the second, and the limits allow at
 * most about 8192 of those (a "a&" argument is 2 bytes, a "a:" header line 4), about 460 KiB.
 * The pool is mmap'ed, so untouched pages cost nothing.
 */
#define SRV_HTTP_MAX_TARGET 8192
#define SRV_HTTP_MAX_HEADERS 16384
#define SRV_HTTP_CONNECTION_MEMORY (1024 * 1024)

/* Returns 0 or a negative errno. The SSE ping timer starts here. */
int srv_http_new(srv_http **out, uv_loop_t *loop, const srv_http_config *cfg);
/* Closes the ping timer and frees h (after MHD_stop_daemon: no request may be left). */
void srv_http_free(srv_http *h);

/* The access handler and completion callback to give MHD_start_daemon, with h as cls. */
enum MHD_Result srv_http_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls);
void srv_http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                        enum MHD_RequestTerminationCode toe);

/* The scheduler's job events (waiter: the request), and the user pointer they expect. */
const srv_sched_events *srv_http_sched_events(void);

/* Tells every waiting stream its new queue position (a "queued" event when it changed). */
void srv_http_queue_moved(srv_http *h);
/* From now on answers carry "Connection: close", and /readyz says 503. */
void srv_http_set_draining(srv_http *h);
/* Requests received and not yet completed (idle keep-alive connections do not count). */
int srv_http_in_flight(const srv_http *h);
/* Resumes every suspended connection (required before MHD_stop_daemon). */
void srv_http_resume_all(srv_http *h);

#endif
