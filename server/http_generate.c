/*
 * http_generate.c - POST /v1/generate, /v1/images/generations and AUTOMATIC1111's
 * /sdapi/v1/txt2img (parse, check against the model, queue, wait suspended or stream),
 * GET/DELETE /v1/jobs/{id}, GET /v1/models, and the job events that answer or feed a waiting
 * request.
 */
#include "server/http_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>

#include "engine/core/log.h"

#define SSE_BLOCK 16384

/* ---- parsing against the right model ---- */

/* The "model" a body names, peeked before the real parse so that limits and defaults are the
 * model's (a bad body falls back to the first model: the real parse reports the fault). */
static int peek_model(const srv_models *ms, const char *body, size_t len)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    int idx = 0;
    if (root) {
        const char *name = json_string_value(json_object_get(root, "model"));
        int i = name ? srv_models_find(ms, name) : -1;
        if (i >= 0)
            idx = i;
        json_decref(root);
    }
    return idx;
}

static void limits_for(const srv_options *o, const srv_model *m, api_limits *l, api_defaults *d)
{
    api_limits_init(l);
    l->max_body_bytes = (size_t)o->max_body;
    l->max_width = o->max_width < m->max_side ? o->max_width : m->max_side;
    l->max_height = o->max_height < m->max_side ? o->max_height : m->max_side;
    l->max_pixels = o->max_pixels;
    l->size_multiple = m->cell;
    l->max_steps = o->max_steps;
    l->max_n = o->max_n;
    l->max_timeout_ms = (uint32_t)o->request_timeout_ms;
    api_defaults_init(d);
    d->width = m->default_width <= l->max_width ? m->default_width : l->max_width;
    d->height = m->default_height <= l->max_height ? m->default_height : l->max_height;
    if (d->steps > l->max_steps)
        d->steps = l->max_steps;
}

/* ---- job events ---- */

/*
 * A client that stops reading a stream would make r->sse_out grow for as long as its job runs
 * (previews are whole PNGs). Events wait there only once the kernel's socket buffers are full,
 * so the bytes held are a measure of how far behind the client is, bounded by
 * --sse-max-buffer: an event that may be lost (a preview, a ping) is dropped when it would not
 * fit; any other event is still added (an image must not be lost to a client that is merely
 * slow, so the buffer may pass the bound by one event), but once the bytes already waiting
 * exceed the bound the client is taken as gone. The job is not canceled from here, inside the
 * scheduler's event delivery: the socket is shut down, MHD sees the hang-up and closes the
 * connection, and its completion cancels the job as for any disconnect (reason "disconnect").
 */
static void sse_overflow(srv_req *r)
{
    eng_log(ENG_LOG_WARN, r->id, "stream over --sse-max-buffer (%zu bytes waiting, %d preview(s) "
            "dropped): the client is not reading; closing it and canceling the job",
            r->sse_out.len, r->sse_dropped);
    r->sse_overflow = 1;
    r->sse_done = 1;
    api_buf_free(&r->sse_out);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci)
        shutdown(ci->connect_fd, SHUT_RDWR);
    if (r->suspended)
        srv_req_resume(r);
    else
        srv_mhd_loop_kick(r->h->cfg.mhd);
}

/* Adds an event (taken) to the stream; droppable: a preview or a ping (see above). */
static void sse_queue(srv_req *r, char *event, int droppable)
{
    if (!event) {
        eng_log(ENG_LOG_ERROR, r->id, "out of memory for an event");
        return;
    }
    size_t len = strlen(event), cap = (size_t)r->h->cfg.opts->sse_max_buffer;
    if (r->sse_overflow) {
        free(event);
        return;
    }
    if (droppable && r->sse_out.len + len > cap) {
        if (r->sse_dropped++ == 0)
            eng_log(ENG_LOG_WARN, r->id, "stream: %zu bytes wait for the client: dropping "
                    "previews", r->sse_out.len);
        free(event);
        return;
    }
    if (!droppable && r->sse_out.len > cap) {
        free(event);
        sse_overflow(r);
        return;
    }
    api_buf_append(&r->sse_out, event, len);
    free(event);
    if (r->reader_waiting)
        srv_req_resume(r);
}

static void sse_push(srv_req *r, char *event)
{
    sse_queue(r, event, 0);
}

static api_image image_of(const srv_job *j, int k)
{
    return (api_image){.data = j->units[k].image, .len = j->units[k].image_len,
                       .seed = j->units[k].seed, .format = j->format, .width = j->width,
                       .height = j->height};
}

static void ev_progress(void *waiter, srv_job *j, int index, int step, int steps)
{
    srv_req *r = waiter;
    if (r->sse)
        sse_push(r, api_sse_progress(j->id, index, step, steps));
}

static void ev_preview(void *waiter, srv_job *j, int index, int step, int steps,
                       const uint8_t *png, size_t len, int w, int h)
{
    srv_req *r = waiter;
    if (!r->sse)
        return;
    api_image img = {.data = png, .len = len, .seed = j->units[index].seed,
                     .format = API_FORMAT_PNG, .width = w, .height = h};
    sse_queue(r, api_sse_preview(j->id, index, step, steps, &img), 1);
}

static void ev_image(void *waiter, srv_job *j, int index)
{
    srv_req *r = waiter;
    if (!r->sse)
        return;
    api_image img = image_of(j, index);
    sse_push(r, api_sse_image(j->id, index, &img));
    /* Sent: the bytes are not needed again. */
    free(j->units[index].image);
    j->units[index].image = NULL;
}

static void answer_done(srv_req *r, srv_job *j, const api_metrics *m)
{
    if (r->answer == API_ANSWER_IMAGE) {
        srv_unit *u = &j->units[0];
        void *bytes = u->image;
        size_t len = u->image_len;
        u->image = NULL; /* MHD frees it */
        struct MHD_Response *resp = srv_req_response(r, api_format_mime(j->format), bytes, len,
                                                     MHD_RESPMEM_MUST_FREE);
        if (resp) {
            char seed[24];
            snprintf(seed, sizeof seed, "%llu", (unsigned long long)u->seed);
            MHD_add_response_header(resp, "X-Seed", seed);
        }
        srv_req_send(r, 200, resp);
        return;
    }
    api_image *imgs = calloc((size_t)j->n, sizeof *imgs);
    char *json = NULL;
    if (imgs) {
        for (int k = 0; k < j->n; k++)
            imgs[k] = image_of(j, k);
        if (r->greq.kind == API_REQUEST_OPENAI)
            json = api_openai_images_response(j->created_unix, &r->greq, imgs, j->n, m);
        else if (r->greq.kind == API_REQUEST_A1111)
            json = api_a1111_txt2img_response(&r->greq, j->prompt, j->negative_prompt,
                                              j->model_name, j->created_unix, imgs, j->n);
        else
            json = api_generate_response(j->id, j->model_name, j->created_unix, imgs, j->n, m);
        free(imgs);
    }
    srv_job_drop_images(j);
    srv_req_json(r, 200, json);
}

static void ev_finished(void *waiter, srv_job *j)
{
    srv_req *r = waiter;
    api_metrics m;
    double now = srv_now_ms();
    srv_job_metrics(j, now, &m);
    if (api_server_timing(&m, r->timing, sizeof r->timing) < 0)
        r->timing[0] = '\0';

    if (j->state == API_JOB_DONE)
        eng_log(ENG_LOG_INFO, r->id,
                "done: %d image(s) %dx%d, %d steps, queue %.1f ms, text %.1f ms, "
                "denoise %.1f ms, vae %.1f ms, encode %.1f ms, total %.1f ms, batch %d",
                j->n, j->width, j->height, j->steps, m.queue_ms, m.text_encode_ms,
                m.denoise_ms, m.vae_ms, m.encode_ms, m.total_ms, m.batch_size);
    else
        eng_log(ENG_LOG_INFO, r->id, "%s: %s", api_job_state_name(j->state),
                j->error_msg ? j->error_msg : api_error_message(j->error));

    if (r->sse) {
        if (j->state == API_JOB_DONE)
            sse_push(r, api_sse_done(j->id, j->model_name, j->n, &m));
        else
            sse_push(r, api_sse_error(j->error, j->error_msg));
        r->sse_done = 1;
        srv_req_detach(r);
        if (r->reader_waiting)
            srv_req_resume(r);
        return;
    }
    if (j->state == API_JOB_DONE)
        answer_done(r, j, &m);
    else if (j->error_msg)
        srv_req_error(r, j->error, "%s", j->error_msg);
    else
        srv_req_error(r, j->error, NULL);
    srv_req_detach(r);
}

static const srv_sched_events events = {
    .progress = ev_progress,
    .preview = ev_preview,
    .image = ev_image,
    .finished = ev_finished,
    .load_state = NULL,
};

const srv_sched_events *srv_http_sched_events(void)
{
    return &events;
}

/* ---- streaming ---- */

/* The streamed answer's reader (MHD_create_response_from_callback). */
static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    srv_req *r = cls;
    (void)pos;
    if (r->sse_out.len) {
        size_t n = r->sse_out.len < max ? r->sse_out.len : max;
        memcpy(buf, r->sse_out.data, n);
        api_buf_consume(&r->sse_out, n);
        return (ssize_t)n;
    }
    if (r->sse_done)
        return MHD_CONTENT_READER_END_OF_STREAM;
    /* Nothing to send: sleep until a job event or a ping resumes the connection. */
    r->reader_waiting = 1;
    srv_req_suspend(r);
    return 0;
}

void srv_http_ping_streams(srv_http *h)
{
    for (srv_req *r = h->reqs; r; r = r->next) {
        if (!r->sse || r->sse_done)
            continue;
        sse_queue(r, strdup(API_SSE_PING), 1);
    }
}

void srv_http_queue_moved(srv_http *h)
{
    const srv_sched *s = h->cfg.sched;
    for (srv_req *r = h->reqs; r; r = r->next) {
        /* Only while still queued: that it started running, progress events say. */
        if (!r->sse || !r->job || r->job->state != API_JOB_QUEUED)
            continue;
        int p = srv_sched_position(s, r->job);
        if (p >= 1 && p != r->position) {
            r->position = p;
            sse_push(r, api_sse_queued(r->job->id, p));
        }
    }
}

static void start_stream(srv_req *r, srv_job *j, int position)
{
    r->sse = 1;
    r->position = position;
    char *ev = api_sse_queued(j->id, position);
    if (ev) {
        api_buf_append(&r->sse_out, ev, strlen(ev));
        free(ev);
    }
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SSE_BLOCK, sse_reader, r, NULL);
    if (resp) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no"); /* nginx: do not buffer */
        MHD_add_response_header(resp, "X-Request-Id", r->id);
        srv_guard_cors_headers(r, resp);
    }
    srv_req_send(r, 200, resp);
}

/* ---- POST /v1/generate, /v1/images/generations ---- */

void srv_http_generate(srv_req *r)
{
    srv_http *h = r->h;
    const srv_options *o = h->cfg.opts;
    const srv_models *ms = h->cfg.models;
    srv_sched *s = h->cfg.sched;
    api_err code = API_OK;
    char msg[512];
    const char *body = r->body.data ? r->body.data : "";

    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
    if (api_content_type_is_json(ct) != 0) {
        srv_req_error(r, API_ERR_UNSUPPORTED_MEDIA_TYPE, NULL);
        return;
    }
    int a1111 = r->route == SRV_ROUTE_A1111_TXT2IMG;
    /* A1111 requests name no model: theirs is the one POST /sdapi/v1/options picked. */
    int mi = a1111 ? h->a1111_model : peek_model(ms, body, r->body.len);
    api_limits lim;
    api_defaults def;
    limits_for(o, &ms->v[mi], &lim, &def);
    int rc;
    if (r->route == SRV_ROUTE_IMAGES)
        rc = api_parse_openai_images(body, r->body.len, &lim, &def, &r->greq, &code, msg,
                                     sizeof msg);
    else if (a1111)
        rc = api_parse_a1111_txt2img(body, r->body.len, &lim, &def, &r->greq, &code, msg,
                                     sizeof msg);
    else
        rc = api_parse_generate(body, r->body.len, &lim, &def, &r->greq, &code, msg, sizeof msg);
    if (rc) {
        srv_req_error(r, code, "%s", msg);
        return;
    }
    api_generate_request *g = &r->greq;
    if (g->ignored[0])
        eng_log(ENG_LOG_INFO, r->id, "txt2img: ignored A1111 field(s) this server does not "
                "use: %s", g->ignored);
    if (a1111) {
        /* mi stays the A1111 model. */
    } else if (g->model) {
        mi = srv_models_find(ms, g->model);
        if (mi < 0) {
            snprintf(g->error_param, sizeof g->error_param, "model");
            srv_req_error(r, API_ERR_MODEL_NOT_FOUND, "model: no model \"%s\" is loaded "
                          "(see GET /v1/models).", g->model);
            return;
        }
    } else {
        mi = 0;
    }
    r->answer = API_ANSWER_JSON;
    if (g->kind == API_REQUEST_NATIVE) {
        const char *accept = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Accept");
        if (api_accept_choose(accept, g, &r->answer, &code, msg, sizeof msg)) {
            srv_req_error(r, code, "%s", msg);
            return;
        }
    }

    switch (srv_sched_can_accept(s, g->n)) {
    case 0:
        break;
    case -EBUSY:
        srv_req_error(r, API_ERR_MODEL_LOADING, NULL);
        return;
    case -ESHUTDOWN:
        srv_req_error(r, API_ERR_SHUTTING_DOWN, NULL);
        return;
    default:
        srv_req_error(r, API_ERR_QUEUE_FULL, "The queue holds %d of %d images; this request "
                      "needs %d places.", srv_sched_queue_len(s), srv_sched_queue_capacity(s),
                      g->n);
        return;
    }

    /* The request id is the job id. Ids are per owner (API key): a client-chosen id never meets
     * another key's job, so it can neither shadow that job nor tell that its id is taken. A client
     * that reuses the id of one of its own jobs still held gets a new one (the answer's
     * X-Request-Id says which). */
    uint64_t seed = g->seed;
    rc = g->has_seed ? 0 : srv_random_seed(&seed);
    if (!rc && srv_jobs_find(srv_sched_jobs(s), r->id, r->key)) {
        eng_log(ENG_LOG_WARN, r->id, "X-Request-Id already names a job: using a new id");
        do
            rc = srv_random_hex(r->id, 20);
        while (!rc && srv_jobs_find(srv_sched_jobs(s), r->id, r->key));
    }
    if (rc) {
        srv_req_error(r, API_ERR_INTERNAL, "no random number from the kernel: %s", strerror(-rc));
        return;
    }
    srv_job *j = srv_jobs_create(srv_sched_jobs(s), g->n, r->id);
    if (!j) {
        srv_req_error(r, API_ERR_INTERNAL, "out of memory");
        return;
    }
    j->owner = r->key;
    j->model = mi;
    j->model_name = ms->v[mi].name;
    j->prompt = g->prompt;
    j->negative_prompt = g->negative_prompt;
    g->prompt = g->negative_prompt = NULL; /* the job owns them now */
    j->guidance = (float)g->guidance;
    j->width = g->width;
    j->height = g->height;
    j->steps = g->steps;
    j->format = g->format;
    j->quality = g->quality;
    /* The body's "metadata", else the server's default (the OpenAI route has no such field). */
    j->metadata = g->metadata >= 0 ? g->metadata : o->metadata;
    /* Previews only for a stream; the request's interval, else the server's (0: none). */
    if (r->answer == API_ANSWER_SSE)
        j->preview_every = g->preview_every > 0 ? g->preview_every : o->preview_every;
    j->arrival_ms = r->start_ms;
    for (int k = 0; k < j->n; k++)
        j->units[k].seed = api_unit_seed(seed, k);
    double timeout = (double)o->request_timeout_ms;
    if (g->timeout_ms > 0 && g->timeout_ms < timeout)
        timeout = g->timeout_ms;

    j->waiter = r;
    r->job = j;
    if (srv_sched_submit(s, j, timeout)) {
        /* can_accept said yes a moment ago on the same thread: only a bug gets here. */
        srv_req_detach(r);
        srv_jobs_discard(srv_sched_jobs(s), j);
        srv_req_error(r, API_ERR_INTERNAL, "the job could not be queued");
        return;
    }
    int position = srv_sched_position(s, j);
    eng_log(ENG_LOG_INFO, r->id, "queued: model %s, %d image(s) %dx%d, %d steps, seed %llu%s, "
            "queue position %d", j->model_name, j->n, j->width, j->height, j->steps,
            (unsigned long long)seed, g->has_seed ? "" : " (random)", position);
    if (r->answer == API_ANSWER_SSE)
        start_stream(r, j, position);
    else
        srv_req_suspend(r);
}

/* ---- GET/DELETE /v1/jobs/{id} ---- */

static char *job_json(const srv_sched *s, const srv_job *j)
{
    int least = j->steps;
    for (int k = 0; k < j->n; k++)
        if (j->unit_step[k] < least)
            least = j->unit_step[k];
    api_job_status st = {
        .id = j->id,
        .model = j->model_name,
        .state = j->state,
        .created = j->created_unix,
        .queue_position = j->state == API_JOB_QUEUED ? srv_sched_position(s, j) : 0,
        .step = j->state == API_JOB_DONE ? j->steps : least,
        .steps = j->steps,
        .n = j->n,
        .images_done = j->images_done,
        .error = j->error,
        .error_message = j->error_msg,
    };
    return api_job_status_json(&st);
}

void srv_http_job_get(srv_req *r)
{
    srv_sched *s = r->h->cfg.sched;
    /* Another key's job answers as an unknown one: its id is not confirmed. */
    srv_job *j = srv_jobs_find(srv_sched_jobs(s), r->path_id, r->key);
    if (!j) {
        srv_req_error(r, API_ERR_JOB_NOT_FOUND, NULL);
        return;
    }
    srv_req_json(r, 200, job_json(s, j));
}

void srv_http_job_delete(srv_req *r)
{
    srv_sched *s = r->h->cfg.sched;
    /* Another key's job answers as an unknown one: its id is not confirmed. */
    srv_job *j = srv_jobs_find(srv_sched_jobs(s), r->path_id, r->key);
    if (!j) {
        srv_req_error(r, API_ERR_JOB_NOT_FOUND, NULL);
        return;
    }
    if (srv_job_is_finished(j)) {
        srv_req_error(r, API_ERR_JOB_FINISHED, "Job %s has already %s.", j->id,
                      j->state == API_JOB_DONE ? "finished" : "ended");
        return;
    }
    eng_log(ENG_LOG_INFO, r->id, "DELETE job %s", j->id);
    srv_sched_cancel(s, j, SRV_CANCEL_DELETE);
    srv_req_json(r, 200, job_json(s, j));
}

/* ---- GET /v1/models ---- */

void srv_http_models(srv_req *r)
{
    const srv_models *ms = r->h->cfg.models;
    api_model_info *info = calloc((size_t)ms->n, sizeof *info);
    if (!info) {
        srv_req_error(r, API_ERR_INTERNAL, "out of memory");
        return;
    }
    int ready = srv_sched_ready(r->h->cfg.sched);
    for (int i = 0; i < ms->n; i++) {
        const srv_model *m = &ms->v[i];
        api_limits lim;
        api_defaults def;
        limits_for(r->h->cfg.opts, m, &lim, &def);
        info[i] = (api_model_info){
            .id = m->name,
            .created = m->created,
            .kind = m->ttt_modules == 0                      ? "softmax"
                    : m->ttt_modules >= m->attention_modules ? "ttt"
                                                             : "hybrid",
            .attention_modules = m->attention_modules,
            .ttt_modules = m->ttt_modules,
            .default_width = def.width,
            .default_height = def.height,
            .default_steps = def.steps,
            .default_guidance = def.guidance,
            .ready = ready,
        };
    }
    char *json = api_models_list(info, ms->n);
    free(info);
    srv_req_json(r, 200, json);
}
