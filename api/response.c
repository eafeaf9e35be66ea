/*
 * response.c - the JSON and SSE bodies the API answers.
 *
 * Everything but the images is built with jansson. The base64 of an image (megabytes for a
 * 1024x1024 PNG) is not: jansson would copy it into a json_t and scan it again, escaping, on
 * dump. Instead each image object is dumped without its base64 field and the field is spliced in
 * front while the final string is assembled, base64-encoding straight into the answer buffer.
 * Base64 needs no JSON escaping, so the result is the JSON jansson would have written.
 */
#include "api/response.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/base64.h"
#include "api/buf.h"

/* Reals in answers: milliseconds rounded to microseconds, printed without float noise. */
#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

static json_t *ms_real(double x)
{
    if (!isfinite(x) || x < 0)
        x = 0;
    return json_real(round(x * 1000.0) / 1000.0);
}

static json_t *seed_int(uint64_t seed) { return json_integer((json_int_t)(seed & (uint64_t)INT64_MAX)); }

/* Base64 of n bytes written straight into b (api_base64_encode adds the NUL). */
static void put_base64(api_buf *b, const uint8_t *data, size_t n)
{
    char *p = api_buf_reserve(b, api_base64_encoded_len(n));
    if (p)
        api_buf_commit(b, api_base64_encode(data, n, p));
}

/*
 * Appends obj (dumped) with "key": "<base64 of img>" as its first member, and drops obj's
 * reference. Returns 0 or -1.
 */
static int put_with_b64(api_buf *b, json_t *obj, const char *key, const api_image *img)
{
    if (!obj)
        return -1;
    char *dump = json_dumps(obj, DUMP_FLAGS);
    json_decref(obj);
    if (!dump)
        return -1;
    api_buf_puts(b, "{\"");
    api_buf_puts(b, key);
    api_buf_puts(b, "\":\"");
    put_base64(b, img->data, img->data ? img->len : 0);
    api_buf_puts(b, "\"");
    /* dump is "{}" or "{...}": continue after its opening brace. */
    if (strcmp(dump, "{}") != 0)
        api_buf_puts(b, ",");
    api_buf_puts(b, dump + 1);
    free(dump);
    return api_buf_failed(b) ? -1 : 0;
}

/*
 * Appends head (an object, dumped) with one more member, "key": [images...], at its end, each
 * image built by make_obj and given its base64 under b64_key. Drops head's reference.
 */
static int put_with_images(api_buf *b, json_t *head, const char *key, const api_image *images,
                           int n, json_t *(*make_obj)(const api_image *img, int index),
                           const char *b64_key)
{
    if (!head)
        return -1;
    char *dump = json_dumps(head, DUMP_FLAGS);
    json_decref(head);
    if (!dump)
        return -1;
    size_t dl = strlen(dump);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += api_base64_encoded_len(images[i].data ? images[i].len : 0) + 128;
    if (!api_buf_reserve(b, dl + total + 64)) {
        free(dump);
        return -1;
    }
    api_buf_append(b, dump, dl - 1); /* without the closing brace */
    if (dl > 2)
        api_buf_puts(b, ",");
    free(dump);
    api_buf_puts(b, "\"");
    api_buf_puts(b, key);
    api_buf_puts(b, "\":[");
    for (int i = 0; i < n; i++) {
        if (i)
            api_buf_puts(b, ",");
        if (put_with_b64(b, make_obj(&images[i], i), b64_key, &images[i]) != 0)
            return -1;
    }
    api_buf_puts(b, "]}");
    return api_buf_failed(b) ? -1 : 0;
}

static json_t *metrics_obj(const api_metrics *m)
{
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:i, s:o}", "queue_ms", ms_real(m->queue_ms),
                     "text_encode_ms", ms_real(m->text_encode_ms), "denoise_ms",
                     ms_real(m->denoise_ms), "vae_ms", ms_real(m->vae_ms), "encode_ms",
                     ms_real(m->encode_ms), "total_ms", ms_real(m->total_ms), "batch_size",
                     m->batch_size, "seed", seed_int(m->seed));
}

char *api_metrics_json(const api_metrics *m)
{
    if (!m)
        return NULL;
    json_t *o = metrics_obj(m);
    char *s = o ? json_dumps(o, DUMP_FLAGS) : NULL;
    json_decref(o);
    return s;
}

static json_t *native_image_obj(const api_image *img, int index)
{
    return json_pack("{s:i, s:o, s:s, s:i, s:i}", "index", index, "seed", seed_int(img->seed),
                     "format", api_format_name(img->format), "width", img->width, "height",
                     img->height);
}

char *api_generate_response(const char *id, const char *model, int64_t created,
                            const api_image *images, int n, const api_metrics *m)
{
    if (!id || !model || !m || n < 0 || (n > 0 && !images))
        return NULL;
    json_t *head = json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", id, "object", "generation",
                             "created", (json_int_t)created, "model", model, "metrics",
                             metrics_obj(m));
    api_buf b = {0};
    if (put_with_images(&b, head, "images", images, n, native_image_obj, "b64") != 0) {
        api_buf_free(&b);
        return NULL;
    }
    return api_buf_take(&b, NULL);
}

static json_t *openai_image_obj(const api_image *img, int index)
{
    (void)img;
    (void)index;
    return json_object();
}

char *api_openai_images_response(int64_t created, const api_generate_request *req,
                                 const api_image *images, int n, const api_metrics *m)
{
    if (!req || !m || n < 0 || (n > 0 && !images))
        return NULL;
    json_t *head = json_pack("{s:I, s:s, s:s, s:s, s:s, s:o}", "created", (json_int_t)created,
                             "background", "opaque", "output_format", api_format_name(req->format),
                             "size", req->size, "quality",
                             req->quality_label[0] ? req->quality_label : "auto", "metrics",
                             metrics_obj(m));
    api_buf b = {0};
    if (put_with_images(&b, head, "data", images, n, openai_image_obj, "b64_json") != 0) {
        api_buf_free(&b);
        return NULL;
    }
    return api_buf_take(&b, NULL);
}

/* Durations with at most three decimals, trailing zeros dropped ("12.5", "0.034", "7"). */
static void fmt_ms(char *buf, size_t len, double x)
{
    if (!isfinite(x) || x < 0)
        x = 0;
    if (x > 1e12) /* 30 years: keeps the header within its documented 256 bytes */
        x = 1e12;
    snprintf(buf, len, "%.3f", x);
    char *dot = strchr(buf, '.');
    if (!dot)
        return;
    char *e = buf + strlen(buf) - 1;
    while (e > dot && *e == '0')
        *e-- = '\0';
    if (e == dot)
        *e = '\0';
}

int api_server_timing(const api_metrics *m, char *buf, size_t len)
{
    if (!m || !buf)
        return -1;
    const struct {
        const char *name;
        double v;
    } phases[] = {{"queue", m->queue_ms},   {"text_encode", m->text_encode_ms},
                  {"denoise", m->denoise_ms}, {"vae", m->vae_ms},
                  {"encode", m->encode_ms}, {"total", m->total_ms}};
    size_t off = 0;
    for (size_t i = 0; i < sizeof phases / sizeof phases[0]; i++) {
        char d[48];
        fmt_ms(d, sizeof d, phases[i].v);
        int w = snprintf(buf + off, len > off ? len - off : 0, "%s%s;dur=%s", i ? ", " : "",
                         phases[i].name, d);
        if (w < 0 || (size_t)w >= (len > off ? len - off : 0))
            return -1;
        off += (size_t)w;
    }
    int w = snprintf(buf + off, len - off, ", batch;desc=\"%d\", seed;desc=\"%" PRIu64 "\"",
                     m->batch_size, m->seed & (uint64_t)INT64_MAX);
    if (w < 0 || (size_t)w >= len - off)
        return -1;
    return (int)(off + (size_t)w);
}

/* ---- Server-Sent Events ---- */

static void event_head(api_buf *b, const char *event)
{
    api_buf_puts(b, "event: ");
    api_buf_puts(b, event);
    api_buf_puts(b, "\ndata: ");
}

/* A data line must not hold a newline: it would end the field (compact dumps never do). */
char *api_sse_event(const char *event, const char *data)
{
    if (!event || !data || strpbrk(event, "\r\n") || strpbrk(data, "\r\n"))
        return NULL;
    api_buf b = {0};
    event_head(&b, event);
    api_buf_puts(&b, data);
    api_buf_puts(&b, "\n\n");
    return api_buf_take(&b, NULL);
}

static char *event_of(const char *event, json_t *obj)
{
    if (!obj)
        return NULL;
    char *data = json_dumps(obj, DUMP_FLAGS);
    json_decref(obj);
    if (!data)
        return NULL;
    char *s = api_sse_event(event, data);
    free(data);
    return s;
}

char *api_sse_queued(const char *id, int position)
{
    if (!id)
        return NULL;
    return event_of("queued", json_pack("{s:s, s:i}", "id", id, "position", position));
}

char *api_sse_progress(const char *id, int index, int step, int steps)
{
    if (!id)
        return NULL;
    json_t *o = json_pack("{s:s, s:i, s:i}", "id", id, "step", step, "steps", steps);
    if (o && index >= 0)
        json_object_set_new(o, "index", json_integer(index));
    return event_of("progress", o);
}

static char *b64_event(const char *event, json_t *obj, const api_image *img)
{
    api_buf b = {0};
    event_head(&b, event);
    if (put_with_b64(&b, obj, "b64", img) != 0) {
        api_buf_free(&b);
        return NULL;
    }
    api_buf_puts(&b, "\n\n");
    return api_buf_take(&b, NULL);
}

char *api_sse_preview(const char *id, int index, int step, int steps, const api_image *img)
{
    if (!id || !img)
        return NULL;
    return b64_event("preview", json_pack("{s:s, s:i, s:i, s:i, s:s, s:i, s:i}", "id", id,
                                          "index", index, "step", step, "steps", steps, "format",
                                          api_format_name(img->format), "width", img->width,
                                          "height", img->height),
                     img);
}

char *api_sse_image(const char *id, int index, const api_image *img)
{
    if (!id || !img)
        return NULL;
    return b64_event("image", json_pack("{s:s, s:i, s:o, s:s, s:i, s:i}", "id", id, "index",
                                        index, "seed", seed_int(img->seed), "format",
                                        api_format_name(img->format), "width", img->width,
                                        "height", img->height),
                     img);
}

char *api_sse_done(const char *id, const char *model, int n, const api_metrics *m)
{
    if (!id || !model || !m)
        return NULL;
    return event_of("done", json_pack("{s:s, s:s, s:i, s:o}", "id", id, "model", model, "n", n,
                                      "metrics", metrics_obj(m)));
}

char *api_sse_error(api_err e, const char *msg)
{
    char *body = api_error_body(e, msg && *msg ? "%s" : NULL, msg);
    if (!body)
        return NULL;
    char *s = api_sse_event("error", body);
    free(body);
    return s;
}

/* ---- jobs and models ---- */

const char *api_job_state_name(api_job_state s)
{
    switch (s) {
    case API_JOB_QUEUED: return "queued";
    case API_JOB_RUNNING: return "running";
    case API_JOB_DONE: return "done";
    case API_JOB_FAILED: return "failed";
    case API_JOB_CANCELED: return "canceled";
    }
    return "failed";
}

char *api_job_status_json(const api_job_status *j)
{
    if (!j || !j->id)
        return NULL;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:o, s:{s:i, s:i}, s:i, s:i}", "id", j->id,
                          "object", "job", "model", j->model ? j->model : "", "state",
                          api_job_state_name(j->state), "created", (json_int_t)j->created,
                          "queue_position",
                          j->state == API_JOB_QUEUED && j->queue_position > 0
                              ? json_integer(j->queue_position) : json_null(),
                          "progress", "step", j->step, "steps", j->steps, "n", j->n,
                          "images_done", j->images_done);
    if (!o)
        return NULL;
    if (j->error != API_OK && (j->state == API_JOB_FAILED || j->state == API_JOB_CANCELED)) {
        const char *msg = j->error_message && *j->error_message ? j->error_message
                                                                : api_error_message(j->error);
        json_t *err = json_pack("{s:s, s:s, s:s}", "code", api_error_code(j->error), "type",
                                api_error_type(j->error), "message", msg);
        if (!err || json_object_set_new(o, "error", err) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    char *s = json_dumps(o, DUMP_FLAGS);
    json_decref(o);
    return s;
}

char *api_models_list(const api_model_info *models, int n)
{
    if (n < 0 || (n > 0 && !models))
        return NULL;
    json_t *data = json_array();
    json_t *root = json_pack("{s:s, s:o}", "object", "list", "data", data);
    if (!root)
        return NULL;
    for (int i = 0; i < n; i++) {
        const api_model_info *m = &models[i];
        json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:f, s:b}",
                              "id", m->id ? m->id : "", "object", "model", "created",
                              (json_int_t)m->created, "owned_by", "tttd", "kind",
                              m->kind ? m->kind : "softmax", "attention_modules",
                              m->attention_modules, "ttt_modules", m->ttt_modules,
                              "default_width", m->default_width, "default_height",
                              m->default_height, "default_steps", m->default_steps,
                              "default_guidance", m->default_guidance, "ready", m->ready);
        if (!o || json_array_append_new(data, o) != 0) {
            json_decref(root);
            return NULL;
        }
    }
    char *s = json_dumps(root, DUMP_FLAGS);
    json_decref(root);
    return s;
}
