/*
 * response.h - the bodies the API answers: the native generate JSON, OpenAI's images response,
 * the Server-Timing header, Server-Sent Events, job status and the models list.
 *
 * Every builder returns a malloc'ed NUL-terminated string that the caller frees, or NULL when out
 * of memory (or on a NULL required argument). The exact shapes are in api/openapi.yaml.
 * Thread-safety: reentrant; nothing is shared.
 */
#ifndef TTTD_API_RESPONSE_H
#define TTTD_API_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

#include "api/errors.h"
#include "api/request.h"

/*
 * The latency breakdown of one request, in milliseconds. When a request's images ran in more
 * than one batch, the server reports the sums of the phases over its batches, the largest
 * batch_size, and queue_ms until its first image started; total_ms is always the wall time from
 * arrival to the answer. seed: the seed of the first image.
 */
typedef struct api_metrics {
    double queue_ms, text_encode_ms, denoise_ms, vae_ms, encode_ms, total_ms;
    int batch_size;
    uint64_t seed;
} api_metrics;

/* One encoded image (the bytes stay the caller's; they are base64-encoded into the body). */
typedef struct api_image {
    const uint8_t *data;
    size_t len;
    uint64_t seed;
    api_format format;
    int width, height;
} api_image;

/*
 * Native answer of POST /v1/generate:
 *   {"id", "object": "generation", "created", "model",
 *    "images": [{"index", "b64", "seed", "format", "width", "height"}],
 *    "metrics": {"queue_ms", "text_encode_ms", "denoise_ms", "vae_ms", "encode_ms", "total_ms",
 *                "batch_size", "seed"}}
 * created: Unix seconds.
 */
char *api_generate_response(const char *id, const char *model, int64_t created,
                            const api_image *images, int n, const api_metrics *m);

/*
 * OpenAI answer of POST /v1/images/generations:
 *   {"created", "data": [{"b64_json"}], "background": "opaque", "output_format", "size",
 *    "quality", "metrics": {...as above (a tttd extension)}}
 * size and quality come from req (req->size, req->quality_label), output_format from req->format.
 */
char *api_openai_images_response(int64_t created, const api_generate_request *req,
                                 const api_image *images, int n, const api_metrics *m);

/* The metrics object alone (what "metrics" holds), for other bodies. */
char *api_metrics_json(const api_metrics *m);

/*
 * The Server-Timing header value:
 *   "queue;dur=1.2, text_encode;dur=3.4, denoise;dur=..., vae;dur=..., encode;dur=...,
 *    total;dur=..., batch;desc=\"4\", seed;desc=\"42\""
 * (milliseconds with at most three decimals, trailing zeros dropped; batch and seed as desc).
 * Writes at most len bytes (NUL included) into buf; returns the length without the NUL, or -1
 * when buf is too small (256 bytes always suffice).
 */
int api_server_timing(const api_metrics *m, char *buf, size_t len);

/* ---- Server-Sent Events: each builder returns one whole event ("event: X\ndata: {...}\n\n"). */

/* A comment line that keeps proxies from closing an idle stream. */
#define API_SSE_PING ": ping\n\n"

/* Any event: data is one line of JSON (no newline inside). */
char *api_sse_event(const char *event, const char *data);
/* event: queued   data: {"id", "position"}            position 1 = next to run */
char *api_sse_queued(const char *id, int position);
/* event: progress data: {"id", "step", "steps"[, "index"]}   index < 0: omitted (whole request) */
char *api_sse_progress(const char *id, int index, int step, int steps);
/* event: preview  data: {"id", "index", "step", "steps", "format", "width", "height", "b64"} */
char *api_sse_preview(const char *id, int index, int step, int steps, const api_image *img);
/* event: image    data: {"id", "index", "b64", "seed", "format", "width", "height"} */
char *api_sse_image(const char *id, int index, const api_image *img);
/* event: done     data: {"id", "model", "n", "metrics": {...}} */
char *api_sse_done(const char *id, const char *model, int n, const api_metrics *m);
/* event: error    data: {"error": {"code", "type", "message"}}   msg NULL: the default */
char *api_sse_error(api_err e, const char *msg);

/* ---- GET /v1/jobs/{id} */

typedef enum api_job_state {
    API_JOB_QUEUED = 0,
    API_JOB_RUNNING,
    API_JOB_DONE,
    API_JOB_FAILED,
    API_JOB_CANCELED,
} api_job_state;

/* "queued", "running", "done", "failed", "canceled". */
const char *api_job_state_name(api_job_state s);

typedef struct api_job_status {
    const char *id;
    const char *model;
    api_job_state state;
    int64_t created;       /* Unix seconds */
    int queue_position;    /* 1-based while queued; answered as null otherwise */
    int step, steps;       /* denoising progress of the request's least advanced image */
    int n, images_done;
    api_err error;         /* FAILED/CANCELED: why (API_OK otherwise) */
    const char *error_message; /* NULL: the table's default */
} api_job_status;

/*
 * {"id", "object": "job", "model", "state", "created", "queue_position": int|null,
 *  "progress": {"step", "steps"}, "n", "images_done"[, "error": {"code","type","message"}]}
 */
char *api_job_status_json(const api_job_status *j);

/* ---- GET /v1/models */

typedef struct api_model_info {
    const char *id;
    int64_t created;          /* Unix seconds (when it was loaded) */
    const char *kind;         /* "softmax", "ttt" (all attention linearized) or "hybrid" */
    int attention_modules;    /* attention modules of the transformer */
    int ttt_modules;          /* of which TTT */
    int default_width, default_height, default_steps;
    double default_guidance;
    int ready;                /* 0 while loading */
} api_model_info;

/*
 * {"object": "list", "data": [{"id", "object": "model", "created", "owned_by": "tttd", "kind",
 *  "attention_modules", "ttt_modules", "default_width", "default_height", "default_steps",
 *  "default_guidance", "ready"}]}
 */
char *api_models_list(const api_model_info *models, int n);

#endif
