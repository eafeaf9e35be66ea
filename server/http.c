/*
 * http.c - libmicrohttpd's callbacks: per-request state, routing, API keys, body accumulation
 * under --max-body, the small endpoints (/, /healthz, /readyz, /metrics) and the srv_http object.
 *
 * The top of the HTTP files (see http_internal.h): it runs http_guard.c's checks, answers
 * through http_reply.c, and hands the generation endpoints, jobs and streams to
 * http_generate.c; none of them calls back into it.
 */
#include "server/http_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/core/log.h"
#include "server/web_index.h"
/* ---- routing and checks ---- */

static srv_route route_of(const char *url, char *path_id, size_t idlen)
{
    static const struct {
        const char *path;
        srv_route route;
    } exact[] = {
        {"/", SRV_ROUTE_INDEX},           {"/healthz", SRV_ROUTE_HEALTHZ},
        {"/readyz", SRV_ROUTE_READYZ},    {"/metrics", SRV_ROUTE_METRICS},
        {"/v1/models", SRV_ROUTE_MODELS}, {"/v1/generate", SRV_ROUTE_GENERATE},
        {"/v1/images/generations", SRV_ROUTE_IMAGES},
        {"/sdapi/v1/txt2img", SRV_ROUTE_A1111_TXT2IMG},
        {"/sdapi/v1/img2img", SRV_ROUTE_A1111_IMG2IMG},
        {"/sdapi/v1/sd-models", SRV_ROUTE_A1111_MODELS},
        {"/sdapi/v1/samplers", SRV_ROUTE_A1111_SAMPLERS},
        {"/sdapi/v1/options", SRV_ROUTE_A1111_OPTIONS},
        {"/sdapi/v1/progress", SRV_ROUTE_A1111_PROGRESS},
    };
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (!strcmp(url, exact[i].path))
            return exact[i].route;
    static const char jobs[] = "/v1/jobs/";
    if (!strncmp(url, jobs, sizeof jobs - 1)) {
        const char *id = url + sizeof jobs - 1;
        size_t n = strlen(id);
        if (n > 0 && n < idlen && !strchr(id, '/')) {
            memcpy(path_id, id, n + 1);
            return SRV_ROUTE_JOBS;
        }
    }
    return SRV_ROUTE_OTHER;
}

static const char *allow_of(srv_route route)
{
    switch (route) {
    case SRV_ROUTE_GENERATE:
    case SRV_ROUTE_IMAGES:
    case SRV_ROUTE_A1111_TXT2IMG:
    case SRV_ROUTE_A1111_IMG2IMG:
        return "POST";
    case SRV_ROUTE_A1111_OPTIONS:
        return "GET, HEAD, POST";
    case SRV_ROUTE_JOBS:
        return "GET, HEAD, DELETE";
    default:
        return "GET, HEAD";
    }
}

static int method_allowed(srv_route route, const char *m)
{
    switch (route) {
    case SRV_ROUTE_GENERATE:
    case SRV_ROUTE_IMAGES:
    case SRV_ROUTE_A1111_TXT2IMG:
    case SRV_ROUTE_A1111_IMG2IMG:
        return !strcmp(m, "POST");
    case SRV_ROUTE_A1111_OPTIONS:
        return !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "POST");
    case SRV_ROUTE_JOBS:
        return !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "DELETE");
    default:
        return !strcmp(m, "GET") || !strcmp(m, "HEAD");
    }
}

static int needs_key(const srv_options *o, srv_route route)
{
    if (o->keys.n == 0)
        return 0;
    switch (route) {
    case SRV_ROUTE_INDEX: /* the page is static; it sends the key the user types */
    case SRV_ROUTE_OTHER:
        return 0;
    case SRV_ROUTE_HEALTHZ:
    case SRV_ROUTE_READYZ:
        return !o->public_health;
    case SRV_ROUTE_METRICS:
        return !o->public_metrics;
    default:
        return 1;
    }
}

/*
 * Compares against every key in time that does not depend on where a guess goes wrong. Returns
 * which key matched, as its index + 1 (the owner of the jobs it creates), or 0 for none.
 */
/*
 * The key an Authorization header carries: "Bearer KEY", or HTTP Basic with the key as the
 * password (AUTOMATIC1111's --api-auth user:password, which its clients such as Open WebUI send;
 * the user name is not checked). NULL when there is none; a Basic one is decoded into buf.
 */
static const char *sent_key(const char *auth, char *buf, size_t cap)
{
    if (!auth)
        return NULL;
    if (!strncasecmp(auth, "Bearer ", 7)) {
        const char *k = auth + 7;
        while (*k == ' ')
            k++;
        return k;
    }
    if (strncasecmp(auth, "Basic ", 6) != 0)
        return NULL;
    const char *b64 = auth + 6;
    while (*b64 == ' ')
        b64++;
    size_t n = strlen(b64), len;
    if (api_base64_decoded_max(n) >= cap ||
        api_base64_decode(b64, n, (uint8_t *)buf, &len) != 0)
        return NULL;
    buf[len] = '\0';
    char *colon = memchr(buf, ':', len);
    return colon && strlen(buf) == len ? colon + 1 : NULL;
}

static int key_ok(const srv_options *o, const char *auth)
{
    char basic[1024];
    const char *k = sent_key(auth, basic, sizeof basic);
    if (!k)
        return 0;
    size_t kl = strlen(k);
    int ok = 0;
    for (int i = 0; i < o->keys.n; i++) {
        const char *key = o->keys.v[i];
        size_t l = strlen(key);
        unsigned diff = (unsigned)(l ^ kl);
        for (size_t j = 0; j < l; j++)
            diff |= (unsigned char)key[j] ^ (unsigned char)(j < kl ? k[j] : 0);
        if (diff == 0 && ok == 0)
            ok = i + 1;
    }
    return ok;
}

/* Returns 0, or -errno when no random id could be made (then r->id is empty). */
static int set_request_id(srv_req *r)
{
    const char *given = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id");
    if (given) {
        size_t n = strlen(given), i = 0;
        while (i < n && (isalnum((unsigned char)given[i]) || strchr("._-", given[i])))
            i++;
        if (n > 0 && n <= 64 && i == n) {
            memcpy(r->id, given, n + 1);
            return 0;
        }
    }
    return srv_random_hex(r->id, 20);
}

/* ---- the small endpoints ---- */

static void reply_static(srv_req *r, int status, const char *ctype, const void *data, size_t len)
{
    srv_req_send(r, status,
                 srv_req_response(r, ctype, (void *)data, len, MHD_RESPMEM_PERSISTENT));
}

static void handle_readyz(srv_req *r)
{
    const srv_sched *s = r->h->cfg.sched;
    if (r->h->draining || srv_sched_draining(s))
        srv_req_error(r, API_ERR_SHUTTING_DOWN, NULL);
    else if (!srv_sched_ready(s))
        srv_req_error(r, API_ERR_MODEL_LOADING, NULL);
    else if (srv_sched_queue_len(s) >= r->h->cfg.opts->readyz_queue_mark)
        srv_req_error(r, API_ERR_OVERLOADED, "%d images are queued (the mark is %d).",
                      srv_sched_queue_len(s), r->h->cfg.opts->readyz_queue_mark);
    else {
        static const char ok[] = "{\"status\":\"ready\"}";
        reply_static(r, 200, "application/json", ok, sizeof ok - 1);
    }
}

static void handle_metrics(srv_req *r)
{
    size_t len = 0;
    srv_metrics_set_queue_size(r->h->cfg.metrics, srv_sched_queue_len(r->h->cfg.sched));
    char *text = srv_metrics_render(r->h->cfg.metrics, &len);
    if (!text) {
        srv_req_error(r, API_ERR_INTERNAL, "out of memory");
        return;
    }
    srv_req_send(r, 200,
                 srv_req_response(r, "text/plain; version=0.0.4; charset=utf-8", text, len,
                                  MHD_RESPMEM_MUST_FREE));
}

/* Answers a request whose headers (and, for POST, body) are in. */
static void dispatch_route(srv_req *r)
{
    static const char healthy[] = "{\"status\":\"ok\"}";
    switch (r->route) {
    case SRV_ROUTE_INDEX:
        reply_static(r, 200, "text/html; charset=utf-8", srv_web_index_html,
                     srv_web_index_html_len);
        break;
    case SRV_ROUTE_HEALTHZ:
        reply_static(r, 200, "application/json", healthy, sizeof healthy - 1);
        break;
    case SRV_ROUTE_READYZ:
        handle_readyz(r);
        break;
    case SRV_ROUTE_METRICS:
        handle_metrics(r);
        break;
    case SRV_ROUTE_MODELS:
        srv_http_models(r);
        break;
    case SRV_ROUTE_JOBS:
        if (!strcmp(r->method, "DELETE"))
            srv_http_job_delete(r);
        else
            srv_http_job_get(r);
        break;
    case SRV_ROUTE_A1111_IMG2IMG:
    case SRV_ROUTE_A1111_MODELS:
    case SRV_ROUTE_A1111_SAMPLERS:
    case SRV_ROUTE_A1111_OPTIONS:
    case SRV_ROUTE_A1111_PROGRESS:
        if (r->too_large)
            srv_req_error(r, API_ERR_BODY_TOO_LARGE, "The body is larger than %lld bytes.",
                          (long long)r->h->cfg.opts->max_body);
        else
            srv_http_a1111(r);
        break;
    case SRV_ROUTE_GENERATE:
    case SRV_ROUTE_IMAGES:
    case SRV_ROUTE_A1111_TXT2IMG:
        if (r->too_large)
            srv_req_error(r, API_ERR_BODY_TOO_LARGE, "The body is larger than %lld bytes.",
                          (long long)r->h->cfg.opts->max_body);
        else
            srv_http_generate(r);
        break;
    default:
        srv_req_error(r, API_ERR_NOT_FOUND, NULL);
        break;
    }
}

static enum MHD_Result add_length(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    size_t *total = cls;
    (void)kind;
    *total += strlen(key) + (value ? strlen(value) : 0) + 4; /* ": " and CRLF, or "=" and "&" */
    return MHD_YES;
}

/* The request target and header limits of http.h: 0, or the error already answered. */
static int request_check_size(srv_req *r, const char *url)
{
    size_t target = strlen(url), headers = 0;
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, add_length, &target);
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, add_length, &headers);
    if (target > SRV_HTTP_MAX_TARGET) {
        srv_req_error(r, API_ERR_URI_TOO_LONG, "The request target is %zu bytes (path and "
                      "query); this server takes at most %d.", target, SRV_HTTP_MAX_TARGET);
        return -1;
    }
    if (headers > SRV_HTTP_MAX_HEADERS) {
        srv_req_error(r, API_ERR_HEADERS_TOO_LARGE, "The header fields are %zu bytes in all; "
                      "this server takes at most %d.", headers, SRV_HTTP_MAX_HEADERS);
        return -1;
    }
    return 0;
}

/*
 * First call for a request (headers in): its state, and what it will be answered if it may not
 * go on (r->reject). Only an announced oversized body is answered now, before it is read: an
 * answer queued before the request is complete makes MHD close the connection, which is right
 * for a body nobody wants but would cost every keep-alive GET its connection.
 */
static void request_start(srv_req *r, const char *url, const char *method, const char *version)
{
    const srv_options *o = r->h->cfg.opts;
    int id_rc = set_request_id(r);
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->url, sizeof r->url, "%s", url);
    r->route = route_of(url, r->path_id, sizeof r->path_id);
    r->allow = allow_of(r->route);
    if (request_check_size(r, url))
        return;
    api_err e = srv_guard_framing(r, version, r->reject_msg, sizeof r->reject_msg);
    if (e) {
        /* Answered now, which closes the connection: once where a request ends is in doubt,
         * nothing after it on the connection can be trusted. */
        srv_req_error(r, e, "%s", r->reject_msg);
        return;
    }
    e = srv_guard_host(r, r->reject_msg, sizeof r->reject_msg);
    if (!e && r->route != SRV_ROUTE_OTHER && srv_guard_is_preflight(r)) {
        /* No key check: browsers never send Authorization on a preflight. */
        r->preflight = 1;
        e = srv_guard_origin(r, r->reject_msg, sizeof r->reject_msg);
    }
    if (e || r->preflight)
        r->reject = e;
    else if (r->route == SRV_ROUTE_OTHER)
        r->reject = API_ERR_NOT_FOUND;
    else if (!method_allowed(r->route, method))
        r->reject = API_ERR_METHOD_NOT_ALLOWED;
    else if ((e = srv_guard_origin(r, r->reject_msg, sizeof r->reject_msg)))
        r->reject = e;
    else if (needs_key(o, r->route) &&
             !(r->key = key_ok(o, MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                              "Authorization"))))
        r->reject = API_ERR_UNAUTHORIZED;
    else if (id_rc) {
        /* No id without the kernel's randomness: a guessable one would expose the job. */
        LOG_ERROR("no random request id: %s", strerror(-id_rc));
        r->reject = API_ERR_INTERNAL;
    }
    if (r->reject || strcmp(method, "POST") != 0)
        return;
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (!errno && end != cl && n > (unsigned long long)o->max_body)
            srv_req_error(r, API_ERR_BODY_TOO_LARGE,
                          "The body is %llu bytes; this server takes at most %lld.", n,
                          (long long)o->max_body);
    }
}

/* Answers an allowed preflight: 204 with the route's methods and the headers it may send. */
static void reply_preflight(srv_req *r)
{
    struct MHD_Response *resp = srv_req_response(r, NULL, (void *)"", 0, MHD_RESPMEM_PERSISTENT);
    if (resp)
        srv_guard_preflight_headers(r, resp);
    srv_req_send(r, 204, resp);
}

/* The request is complete: answer it, or start its work. */
static void request_ready(srv_req *r)
{
    switch (r->reject) {
    case API_OK:
        if (r->preflight)
            reply_preflight(r);
        else
            dispatch_route(r);
        break;
    case API_ERR_NOT_FOUND:
        srv_req_error(r, API_ERR_NOT_FOUND, "No route %s.", r->url);
        break;
    case API_ERR_METHOD_NOT_ALLOWED:
        srv_req_error(r, API_ERR_METHOD_NOT_ALLOWED, "%s does not allow %s.", r->url, r->method);
        break;
    default:
        if (r->reject_msg[0])
            srv_req_error(r, r->reject, "%s", r->reject_msg);
        else
            srv_req_error(r, r->reject, NULL);
        break;
    }
}

enum MHD_Result srv_http_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    srv_http *h = cls;
    srv_req *r = *con_cls;

    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->h = h;
        r->conn = conn;
        r->start_ms = srv_now_ms();
        r->next = h->reqs;
        if (h->reqs)
            h->reqs->prev = r;
        h->reqs = r;
        h->in_flight++;
        *con_cls = r;
        r->http10 = version && !strcmp(version, MHD_HTTP_VERSION_1_0);
        request_start(r, url, method, version);
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        r->received += n;
        if (r->too_large || r->answered || r->reject) {
            /* Read and dropped: the answer is an error anyway. A client that goes on sending
             * far beyond the limit loses its connection instead of holding it forever. */
            return r->received > 4 * (uint64_t)h->cfg.opts->max_body + (1u << 20) ? MHD_NO
                                                                                   : MHD_YES;
        }
        if (r->body.len + n > (size_t)h->cfg.opts->max_body) {
            r->too_large = 1;
            api_buf_free(&r->body);
            return MHD_YES;
        }
        api_buf_append(&r->body, upload_data, n);
        if (api_buf_failed(&r->body))
            return MHD_NO;
        return MHD_YES;
    }
    if (r->pending) {
        struct MHD_Response *resp = r->pending;
        r->pending = NULL;
        if (MHD_queue_response(conn, (unsigned)r->pending_status, resp) != MHD_YES)
            eng_log(ENG_LOG_WARN, r->id, "MHD refused the response (%d)", r->pending_status);
        MHD_destroy_response(resp);
        return MHD_YES;
    }
    if (r->gone) {
        /* Nobody will read it; MHD finds the socket closed when it writes, and completes. */
        srv_req_error(r, API_ERR_CANCELED, "The client closed the connection.");
        return MHD_YES;
    }
    if (r->answered) {
        /* Resumed with nothing to send (the out-of-memory path): close the connection. */
        return r->sse ? MHD_YES : MHD_NO;
    }
    if (r->job) {
        /* Resumed before its job finished (shutdown): it cannot wait any longer. */
        srv_req_error(r, API_ERR_SHUTTING_DOWN, NULL);
        return MHD_YES;
    }
    request_ready(r);
    return MHD_YES;
}

void srv_http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                        enum MHD_RequestTerminationCode toe)
{
    srv_http *h = cls;
    srv_req *r = *con_cls;
    (void)conn;
    if (!r)
        return;
    *con_cls = NULL;
    srv_req_release(r);
    double ms = srv_now_ms() - r->start_ms;
    int status = r->status ? r->status : 500;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !r->sse)
        eng_log(ENG_LOG_DEBUG, r->id, "connection ended before the answer was sent (%d)",
                (int)toe);
    srv_metrics_request(h->cfg.metrics, r->route, status, ms / 1e3);
    eng_log(ENG_LOG_DEBUG, r->id, "%s %s %d %.2f ms", r->method, srv_route_label(r->route),
            status, ms);
    api_generate_request_free(&r->greq);
    api_buf_free(&r->body);
    api_buf_free(&r->sse_out);
    if (r->prev)
        r->prev->next = r->next;
    else
        h->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    h->in_flight--;
    free(r);
}

/* ---- the object ---- */

static void on_ping(uv_timer_t *t)
{
    srv_http_ping_streams(t->data);
}

int srv_http_new(srv_http **out, uv_loop_t *loop, const srv_http_config *cfg)
{
    srv_http *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    h->loop = loop;
    h->cfg = *cfg;
    uv_timer_init(loop, &h->ping);
    h->ping.data = h;
    uint64_t every = (uint64_t)cfg->opts->sse_ping_ms;
    uv_timer_start(&h->ping, on_ping, every, every);
    *out = h;
    return 0;
}

static void http_closed(uv_handle_t *t)
{
    free(t->data);
}

void srv_http_free(srv_http *h)
{
    if (!h)
        return;
    uv_timer_stop(&h->ping);
    uv_close((uv_handle_t *)&h->ping, http_closed);
}

void srv_http_set_draining(srv_http *h)
{
    h->draining = 1;
}

int srv_http_in_flight(const srv_http *h)
{
    return h->in_flight;
}

void srv_http_resume_all(srv_http *h)
{
    for (srv_req *r = h->reqs; r; r = r->next) {
        if (r->sse)
            r->sse_done = 1;
        srv_req_resume(r);
    }
}
