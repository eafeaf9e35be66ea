/*
 * metrics.c - counters, gauges and histograms behind one mutex, and their Prometheus text.
 *
 * Requests are counted per route and per status (100..599 as an array: the set of statuses is
 * small and open-ended, and 9 x 500 counters cost less than a map). Histograms keep cumulative
 * bucket counts at render time, as the format wants, but store per-bucket counts so an update
 * touches one slot.
 */
#include "server/metrics.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "api/buf.h"

static const double duration_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5,   1,      2.5,   5,    10,    30,   60,  120, 300};
static const double batch_bounds[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64};

#define NDUR ((int)(sizeof duration_bounds / sizeof duration_bounds[0]))
#define NBATCH ((int)(sizeof batch_bounds / sizeof batch_bounds[0]))
#define MAX_BOUNDS NDUR

typedef struct histogram {
    const double *bounds;
    int nb;
    uint64_t counts[MAX_BOUNDS + 1]; /* the last: above every bound (+Inf) */
    uint64_t total;
    double sum;
} histogram;

struct srv_metrics {
    pthread_mutex_t mu;
    uint64_t requests[SRV_ROUTE_COUNT][500]; /* status - 100 */
    histogram request_duration[SRV_ROUTE_COUNT];
    histogram queue, inference, encode, batch;
    int queue_size, workers, workers_busy, ready;
    uint64_t images, worker_errors;
    uint64_t rejections[SRV_REJECT_COUNT];
    uint64_t cancellations[SRV_CANCEL_COUNT];
};

static const char *const route_labels[SRV_ROUTE_COUNT] = {
    "/v1/generate", "/v1/images/generations", "/v1/jobs", "/v1/models", "/healthz",
    "/readyz",      "/metrics",               "/",
    "/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/sdapi/v1/sd-models", "/sdapi/v1/samplers",
    "/sdapi/v1/options", "/sdapi/v1/progress", "other"};
static const char *const reject_labels[SRV_REJECT_COUNT] = {
    "queue_full", "body_too_large", "invalid", "unauthorized", "loading", "shutting_down"};
static const char *const cancel_labels[SRV_CANCEL_COUNT] = {"none", "disconnect", "delete",
                                                            "timeout", "shutdown"};

const char *srv_route_label(srv_route r)
{
    return r >= 0 && r < SRV_ROUTE_COUNT ? route_labels[r] : "other";
}

const char *srv_reject_label(srv_reject r)
{
    return r >= 0 && r < SRV_REJECT_COUNT ? reject_labels[r] : "unknown";
}

const char *srv_cancel_label(srv_cancel c)
{
    return c >= 0 && c < SRV_CANCEL_COUNT ? cancel_labels[c] : "unknown";
}

static void hist_init(histogram *h, const double *bounds, int nb)
{
    h->bounds = bounds;
    h->nb = nb;
}

static void hist_observe(histogram *h, double v)
{
    int i = 0;
    while (i < h->nb && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->total++;
    h->sum += v;
}

srv_metrics *srv_metrics_new(void)
{
    srv_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    if (pthread_mutex_init(&m->mu, NULL)) {
        free(m);
        return NULL;
    }
    for (int r = 0; r < SRV_ROUTE_COUNT; r++)
        hist_init(&m->request_duration[r], duration_bounds, NDUR);
    hist_init(&m->queue, duration_bounds, NDUR);
    hist_init(&m->inference, duration_bounds, NDUR);
    hist_init(&m->encode, duration_bounds, NDUR);
    hist_init(&m->batch, batch_bounds, NBATCH);
    return m;
}

void srv_metrics_free(srv_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

#define LOCKED(m, stmt)                                                                          \
    do {                                                                                         \
        pthread_mutex_lock(&(m)->mu);                                                            \
        stmt;                                                                                    \
        pthread_mutex_unlock(&(m)->mu);                                                          \
    } while (0)

void srv_metrics_request(srv_metrics *m, srv_route route, int status, double seconds)
{
    if (route < 0 || route >= SRV_ROUTE_COUNT)
        route = SRV_ROUTE_OTHER;
    if (status < 100 || status > 599)
        status = 500;
    LOCKED(m, {
        m->requests[route][status - 100]++;
        hist_observe(&m->request_duration[route], seconds);
    });
}

void srv_metrics_queue_wait(srv_metrics *m, double seconds)
{
    LOCKED(m, hist_observe(&m->queue, seconds));
}

void srv_metrics_inference(srv_metrics *m, double seconds)
{
    LOCKED(m, hist_observe(&m->inference, seconds));
}

void srv_metrics_encode(srv_metrics *m, double seconds)
{
    LOCKED(m, hist_observe(&m->encode, seconds));
}

void srv_metrics_batch(srv_metrics *m, int size)
{
    LOCKED(m, hist_observe(&m->batch, size));
}

void srv_metrics_set_queue_size(srv_metrics *m, int n)
{
    LOCKED(m, m->queue_size = n);
}

void srv_metrics_set_workers(srv_metrics *m, int n)
{
    LOCKED(m, m->workers = n);
}

void srv_metrics_set_ready(srv_metrics *m, int ready)
{
    LOCKED(m, m->ready = ready);
}

void srv_metrics_worker_busy(srv_metrics *m, int delta)
{
    LOCKED(m, m->workers_busy += delta);
}

void srv_metrics_images(srv_metrics *m, int n)
{
    LOCKED(m, m->images += (uint64_t)n);
}

void srv_metrics_reject(srv_metrics *m, srv_reject reason)
{
    if (reason >= 0 && reason < SRV_REJECT_COUNT)
        LOCKED(m, m->rejections[reason]++);
}

void srv_metrics_worker_error(srv_metrics *m)
{
    LOCKED(m, m->worker_errors++);
}

void srv_metrics_cancel(srv_metrics *m, srv_cancel reason)
{
    if (reason > SRV_CANCEL_NONE && reason < SRV_CANCEL_COUNT)
        LOCKED(m, m->cancellations[reason]++);
}

int srv_metrics_workers_busy(srv_metrics *m)
{
    int n;
    LOCKED(m, n = m->workers_busy);
    return n;
}

/* ---- exposition ---- */

static void head(api_buf *b, const char *name, const char *type, const char *help)
{
    api_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* labels: "" or `route="/x",` (with the trailing comma, so le can follow). */
static void hist_write(api_buf *b, const char *name, const char *labels, const histogram *h)
{
    uint64_t cum = 0;
    for (int i = 0; i < h->nb; i++) {
        cum += h->counts[i];
        api_buf_printf(b, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels, h->bounds[i],
                       (unsigned long long)cum);
    }
    cum += h->counts[h->nb];
    api_buf_printf(b, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cum);
    /* Without the trailing comma the label set is `{route="/x"}` or nothing. */
    size_t ll = 0;
    while (labels[ll])
        ll++;
    if (ll) {
        api_buf_printf(b, "%s_sum{%.*s} %.9g\n", name, (int)ll - 1, labels, h->sum);
        api_buf_printf(b, "%s_count{%.*s} %llu\n", name, (int)ll - 1, labels,
                       (unsigned long long)h->total);
    } else {
        api_buf_printf(b, "%s_sum %.9g\n%s_count %llu\n", name, h->sum, name,
                       (unsigned long long)h->total);
    }
}

static void render_locked(const srv_metrics *m, api_buf *b)
{
    head(b, "tttd_requests_total", "counter", "HTTP requests answered, by route and status.");
    for (int r = 0; r < SRV_ROUTE_COUNT; r++)
        for (int s = 0; s < 500; s++)
            if (m->requests[r][s])
                api_buf_printf(b, "tttd_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                               route_labels[r], s + 100, (unsigned long long)m->requests[r][s]);

    head(b, "tttd_request_duration_seconds", "histogram",
         "Time from a request's arrival to its reply, by route.");
    for (int r = 0; r < SRV_ROUTE_COUNT; r++) {
        if (!m->request_duration[r].total)
            continue;
        char labels[64];
        snprintf(labels, sizeof labels, "route=\"%s\",", route_labels[r]);
        hist_write(b, "tttd_request_duration_seconds", labels, &m->request_duration[r]);
    }
    head(b, "tttd_queue_duration_seconds", "histogram",
         "Time an image waited in the queue before its batch started.");
    hist_write(b, "tttd_queue_duration_seconds", "", &m->queue);
    head(b, "tttd_inference_duration_seconds", "histogram",
         "Engine time of a batch: text encoding, denoising and VAE decoding.");
    hist_write(b, "tttd_inference_duration_seconds", "", &m->inference);
    head(b, "tttd_encode_duration_seconds", "histogram", "PNG/JPEG encoding time of an image.");
    hist_write(b, "tttd_encode_duration_seconds", "", &m->encode);
    head(b, "tttd_batch_size", "histogram", "Images per engine call.");
    hist_write(b, "tttd_batch_size", "", &m->batch);

    head(b, "tttd_queue_size", "gauge", "Images waiting in the queue.");
    api_buf_printf(b, "tttd_queue_size %d\n", m->queue_size);
    head(b, "tttd_workers", "gauge", "Worker threads.");
    api_buf_printf(b, "tttd_workers %d\n", m->workers);
    head(b, "tttd_workers_busy", "gauge", "Workers running a batch.");
    api_buf_printf(b, "tttd_workers_busy %d\n", m->workers_busy);
    head(b, "tttd_ready", "gauge", "1 once every worker has loaded every model.");
    api_buf_printf(b, "tttd_ready %d\n", m->ready);
    head(b, "tttd_images_generated_total", "counter", "Images generated and delivered.");
    api_buf_printf(b, "tttd_images_generated_total %llu\n", (unsigned long long)m->images);

    head(b, "tttd_rejections_total", "counter", "Requests refused before any work, by reason.");
    for (int r = 0; r < SRV_REJECT_COUNT; r++)
        api_buf_printf(b, "tttd_rejections_total{reason=\"%s\"} %llu\n", reject_labels[r],
                       (unsigned long long)m->rejections[r]);
    head(b, "tttd_worker_errors_total", "counter", "Engine or encoding failures in workers.");
    api_buf_printf(b, "tttd_worker_errors_total %llu\n", (unsigned long long)m->worker_errors);
    head(b, "tttd_cancellations_total", "counter", "Requests canceled, by reason.");
    for (int c = SRV_CANCEL_NONE + 1; c < SRV_CANCEL_COUNT; c++)
        api_buf_printf(b, "tttd_cancellations_total{reason=\"%s\"} %llu\n", cancel_labels[c],
                       (unsigned long long)m->cancellations[c]);
}

char *srv_metrics_render(srv_metrics *m, size_t *len)
{
    api_buf b = {0};
    /* Render under the lock so a scrape sees one consistent moment. */
    LOCKED(m, render_locked(m, &b));
    return api_buf_take(&b, len);
}
