/*
 * http_a1111.c - AUTOMATIC1111's small routes: GET /sdapi/v1/sd-models, /samplers, /progress,
 * GET and POST /sdapi/v1/options (sd_model_checkpoint picks the model of A1111 requests), and
 * POST /sdapi/v1/img2img, refused until tttd has a VAE encoder. POST /sdapi/v1/txt2img is a
 * generation like any other: http_generate.c parses it with api_parse_a1111_txt2img and answers
 * it with api_a1111_txt2img_response, through the same queue, batcher and workers.
 */
#include "server/http_internal.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "engine/core/log.h"

static void sd_models(srv_req *r)
{
    const srv_models *ms = r->h->cfg.models;
    api_a1111_model *v = calloc((size_t)ms->n, sizeof *v);
    if (!v) {
        srv_req_error(r, API_ERR_INTERNAL, "out of memory");
        return;
    }
    for (int i = 0; i < ms->n; i++)
        v[i] = (api_a1111_model){.name = ms->v[i].name, .path = ms->v[i].dir};
    char *json = api_a1111_sd_models(v, ms->n);
    free(v);
    srv_req_json(r, 200, json);
}

/*
 * A1111 clients POST back the whole object they read (Open WebUI does), so every key but
 * sd_model_checkpoint is ignored, with one log line naming them; A1111 answers null.
 */
static void options_post(srv_req *r)
{
    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
    if (api_content_type_is_json(ct) != 0) {
        srv_req_error(r, API_ERR_UNSUPPORTED_MEDIA_TYPE, NULL);
        return;
    }
    json_error_t jerr;
    json_t *root = r->body.len ? json_loadb(r->body.data, r->body.len, 0, &jerr) : NULL;
    if (!root) {
        if (r->body.len)
            srv_req_error(r, API_ERR_BAD_JSON, "invalid JSON at line %d, column %d: %s",
                          jerr.line, jerr.column, jerr.text);
        else
            srv_req_error(r, API_ERR_BAD_JSON, "the request body is empty: expected a JSON "
                          "object");
        return;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        srv_req_error(r, API_ERR_BAD_JSON, "the request body must be a JSON object");
        return;
    }
    const srv_models *ms = r->h->cfg.models;
    int pick = -1;
    json_t *ck = json_object_get(root, "sd_model_checkpoint");
    if (ck && !json_is_null(ck)) {
        const char *name = json_string_value(ck);
        if (!name) {
            json_decref(root);
            srv_req_error(r, API_ERR_FIELD_TYPE, "sd_model_checkpoint: expected a string");
            return;
        }
        pick = srv_models_find(ms, name);
        if (pick < 0) {
            srv_req_error(r, API_ERR_MODEL_NOT_FOUND, "sd_model_checkpoint: no model \"%.64s\" "
                          "is loaded (see GET /sdapi/v1/sd-models).", name);
            json_decref(root);
            return;
        }
    }
    api_buf ignored = {0};
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "sd_model_checkpoint") != 0)
            api_buf_printf(&ignored, "%s%.64s", ignored.len ? ", " : "", key);
        if (ignored.len > 200) {
            api_buf_puts(&ignored, ", ...");
            break;
        }
    }
    if (ignored.len && !api_buf_failed(&ignored))
        eng_log(ENG_LOG_INFO, r->id, "options: ignored A1111 option(s) this server does not "
                "have: %.*s", (int)ignored.len, ignored.data);
    api_buf_free(&ignored);
    json_decref(root);
    if (pick >= 0 && pick != r->h->a1111_model) {
        eng_log(ENG_LOG_INFO, r->id, "options: A1111 requests now use model %s",
                ms->v[pick].name);
        r->h->a1111_model = pick;
    }
    srv_req_json(r, 200, strdup("null"));
}

/* A1111's progress is of one job at a time: here the oldest running one, with the count of the
 * generation jobs this server's clients wait on. */
static void progress(srv_req *r)
{
    api_a1111_progress p = {.job = ""};
    const srv_job *front = NULL;
    for (const srv_req *q = r->h->reqs; q; q = q->next) {
        const srv_job *j = q->job;
        if (!j || srv_job_is_finished(j))
            continue;
        p.job_count++;
        if (j->state == API_JOB_RUNNING && (!front || j->first_start_ms < front->first_start_ms))
            front = j;
    }
    if (front) {
        long done = 0;
        for (int k = 0; k < front->n; k++)
            done += front->unit_step[k];
        long total = (long)front->n * front->steps;
        p.progress = total > 0 ? (double)done / (double)total : 0.0;
        double elapsed = (srv_now_ms() - front->first_start_ms) / 1e3;
        if (p.progress > 0 && elapsed > 0)
            p.eta_relative = elapsed * (1.0 - p.progress) / p.progress;
        p.job = front->id;
        p.sampling_steps = front->steps;
        p.sampling_step = front->n > 0 ? (int)(done / front->n) : 0;
        p.job_timestamp = front->created_unix;
    }
    srv_req_json(r, 200, api_a1111_progress_json(&p));
}

void srv_http_a1111(srv_req *r)
{
    switch (r->route) {
    case SRV_ROUTE_A1111_MODELS:
        sd_models(r);
        break;
    case SRV_ROUTE_A1111_SAMPLERS:
        srv_req_json(r, 200, api_a1111_samplers());
        break;
    case SRV_ROUTE_A1111_OPTIONS:
        if (!strcmp(r->method, "POST"))
            options_post(r);
        else
            srv_req_json(r, 200, api_a1111_options(r->h->cfg.models->v[r->h->a1111_model].name));
        break;
    case SRV_ROUTE_A1111_PROGRESS:
        progress(r);
        break;
    case SRV_ROUTE_A1111_IMG2IMG:
        srv_req_error(r, API_ERR_FIELD_UNSUPPORTED, "init_images: image-to-image is not "
                      "supported yet (tttd has no VAE encoder); use POST /sdapi/v1/txt2img");
        break;
    default:
        srv_req_error(r, API_ERR_NOT_FOUND, NULL);
        break;
    }
}
