/*
 * metrics.h - the server's one metrics module: counters, gauges and histograms, rendered in the
 * Prometheus text exposition format (version 0.0.4) for GET /metrics.
 *
 *   tttd_requests_total{route,status}            counter
 *   tttd_request_duration_seconds{route}         histogram (arrival to reply queued)
 *   tttd_queue_duration_seconds                  histogram (per image: queued to batch start)
 *   tttd_inference_duration_seconds              histogram (per batch: text + denoise + vae)
 *   tttd_encode_duration_seconds                 histogram (per image: PNG/JPEG encoding)
 *   tttd_batch_size                              histogram (images per engine call)
 *   tttd_queue_size                              gauge (images waiting)
 *   tttd_workers                                 gauge (worker threads)
 *   tttd_workers_busy                            gauge (workers running a batch)
 *   tttd_ready                                   gauge (1 once every model is loaded)
 *   tttd_images_generated_total                  counter
 *   tttd_rejections_total{reason}                counter
 *   tttd_worker_errors_total                     counter
 *   tttd_cancellations_total{reason}             counter
 *
 * Thread-safety: every function may be called from any thread (one mutex; updates are a few
 * additions, so the loop thread and the workers never wait long on each other).
 */
#ifndef TTTD_SERVER_METRICS_H
#define TTTD_SERVER_METRICS_H

#include <stddef.h>

typedef enum srv_route {
    SRV_ROUTE_GENERATE = 0,
    SRV_ROUTE_IMAGES,
    SRV_ROUTE_JOBS,
    SRV_ROUTE_MODELS,
    SRV_ROUTE_HEALTHZ,
    SRV_ROUTE_READYZ,
    SRV_ROUTE_METRICS,
    SRV_ROUTE_INDEX,
    SRV_ROUTE_A1111_TXT2IMG,  /* AUTOMATIC1111's API: POST /sdapi/v1/txt2img */
    SRV_ROUTE_A1111_IMG2IMG,  /* POST /sdapi/v1/img2img (422 until image-to-image exists) */
    SRV_ROUTE_A1111_MODELS,   /* GET /sdapi/v1/sd-models */
    SRV_ROUTE_A1111_SAMPLERS, /* GET /sdapi/v1/samplers */
    SRV_ROUTE_A1111_OPTIONS,  /* GET, POST /sdapi/v1/options */
    SRV_ROUTE_A1111_PROGRESS, /* GET /sdapi/v1/progress */
    SRV_ROUTE_OTHER, /* no such route (404) */
    SRV_ROUTE_COUNT
} srv_route;

typedef enum srv_reject {
    SRV_REJECT_QUEUE_FULL = 0,
    SRV_REJECT_BODY_TOO_LARGE,
    SRV_REJECT_INVALID, /* bad JSON or a bad field */
    SRV_REJECT_UNAUTHORIZED,
    SRV_REJECT_LOADING,
    SRV_REJECT_SHUTTING_DOWN,
    SRV_REJECT_COUNT
} srv_reject;

typedef enum srv_cancel {
    SRV_CANCEL_NONE = 0,
    SRV_CANCEL_DISCONNECT, /* the client went away */
    SRV_CANCEL_DELETE,     /* DELETE /v1/jobs/{id} */
    SRV_CANCEL_TIMEOUT,    /* the request's timeout passed */
    SRV_CANCEL_SHUTDOWN,   /* the drain timeout passed */
    SRV_CANCEL_COUNT
} srv_cancel;

typedef struct srv_metrics srv_metrics;

/* Returns NULL when out of memory. */
srv_metrics *srv_metrics_new(void);
void srv_metrics_free(srv_metrics *m);

/* The route's label ("/v1/generate", ...) and the reasons' labels ("queue_full", ...). */
const char *srv_route_label(srv_route r);
const char *srv_reject_label(srv_reject r);
const char *srv_cancel_label(srv_cancel c);

void srv_metrics_request(srv_metrics *m, srv_route route, int status, double seconds);
void srv_metrics_queue_wait(srv_metrics *m, double seconds);
void srv_metrics_inference(srv_metrics *m, double seconds);
void srv_metrics_encode(srv_metrics *m, double seconds);
void srv_metrics_batch(srv_metrics *m, int size);
void srv_metrics_set_queue_size(srv_metrics *m, int n);
void srv_metrics_set_workers(srv_metrics *m, int n);
void srv_metrics_set_ready(srv_metrics *m, int ready);
void srv_metrics_worker_busy(srv_metrics *m, int delta);
void srv_metrics_images(srv_metrics *m, int n);
void srv_metrics_reject(srv_metrics *m, srv_reject reason);
void srv_metrics_worker_error(srv_metrics *m);
void srv_metrics_cancel(srv_metrics *m, srv_cancel reason);

/* Current values, for /readyz and tests. */
int srv_metrics_workers_busy(srv_metrics *m);

/*
 * The exposition text (malloc'ed, NUL-terminated; the caller frees it), or NULL when out of
 * memory. *len gets its length when len is not NULL.
 */
char *srv_metrics_render(srv_metrics *m, size_t *len);

#endif
