/*
 * test_metrics.c - the Prometheus exposition: every line parses back as a comment or a sample
 * "name{labels} value", every sampled family has HELP and TYPE lines, recorded values come back,
 * histogram buckets are cumulative and end in +Inf = _count, and updates from several threads
 * at once are all counted.
 */
#include <criterion/criterion.h>

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/metrics.h"

/* The value of the sample named exactly `sample` (name plus label set), or NAN. Checks the
 * syntax of every line on the way. */
static double sample_value(const char *text, const char *sample)
{
    double found = NAN;
    const char *line = text;
    while (*line) {
        const char *eol = strchr(line, '\n');
        cr_assert(eol, "the exposition ends with a newline");
        size_t len = (size_t)(eol - line);
        cr_assert_gt(len, 0, "no empty lines");
        if (line[0] == '#') {
            cr_assert(!strncmp(line, "# HELP ", 7) || !strncmp(line, "# TYPE ", 7), "%.*s",
                      (int)len, line);
        } else {
            /* name [{...}] SP value */
            size_t i = 0;
            while (i < len && (isalnum((unsigned char)line[i]) || line[i] == '_' || line[i] == ':'))
                i++;
            cr_assert_gt(i, 0, "%.*s", (int)len, line);
            if (i < len && line[i] == '{') {
                while (i < len && line[i] != '}')
                    i++;
                cr_assert_lt(i, len, "unclosed labels: %.*s", (int)len, line);
                i++;
            }
            cr_assert_eq(line[i], ' ', "%.*s", (int)len, line);
            char *end;
            double v = strtod(line + i + 1, &end);
            cr_assert_eq(end, eol, "value: %.*s", (int)len, line);
            if (strlen(sample) == i && !strncmp(line, sample, i))
                found = v;
        }
        line = eol + 1;
    }
    return found;
}

static char *render(srv_metrics *m)
{
    size_t len = 0;
    char *text = srv_metrics_render(m, &len);
    cr_assert(text);
    cr_assert_eq(strlen(text), len);
    return text;
}

Test(metrics, records_come_back)
{
    srv_metrics *m = srv_metrics_new();
    srv_metrics_request(m, SRV_ROUTE_GENERATE, 200, 0.2);
    srv_metrics_request(m, SRV_ROUTE_GENERATE, 200, 0.004);
    srv_metrics_request(m, SRV_ROUTE_GENERATE, 429, 0.0001);
    srv_metrics_request(m, SRV_ROUTE_HEALTHZ, 200, 0.0001);
    srv_metrics_batch(m, 3);
    srv_metrics_batch(m, 1);
    srv_metrics_set_queue_size(m, 7);
    srv_metrics_set_workers(m, 2);
    srv_metrics_worker_busy(m, 1);
    srv_metrics_images(m, 5);
    srv_metrics_reject(m, SRV_REJECT_QUEUE_FULL);
    srv_metrics_worker_error(m);
    srv_metrics_cancel(m, SRV_CANCEL_TIMEOUT);
    srv_metrics_cancel(m, SRV_CANCEL_TIMEOUT);
    srv_metrics_queue_wait(m, 0.012);
    srv_metrics_inference(m, 1.5);
    srv_metrics_encode(m, 0.003);

    char *t = render(m);
    cr_assert_eq(sample_value(t, "tttd_requests_total{route=\"/v1/generate\",status=\"200\"}"), 2);
    cr_assert_eq(sample_value(t, "tttd_requests_total{route=\"/v1/generate\",status=\"429\"}"), 1);
    cr_assert_eq(sample_value(t, "tttd_requests_total{route=\"/healthz\",status=\"200\"}"), 1);
    cr_assert(isnan(sample_value(t, "tttd_requests_total{route=\"/metrics\",status=\"200\"}")));
    cr_assert_eq(sample_value(t, "tttd_request_duration_seconds_count{route=\"/v1/generate\"}"), 3);
    cr_assert_float_eq(
        sample_value(t, "tttd_request_duration_seconds_sum{route=\"/v1/generate\"}"), 0.2041,
        1e-9);
    cr_assert_eq(sample_value(t, "tttd_batch_size_count"), 2);
    cr_assert_eq(sample_value(t, "tttd_batch_size_sum"), 4);
    cr_assert_eq(sample_value(t, "tttd_batch_size_bucket{le=\"1\"}"), 1);
    cr_assert_eq(sample_value(t, "tttd_batch_size_bucket{le=\"2\"}"), 1);
    cr_assert_eq(sample_value(t, "tttd_batch_size_bucket{le=\"3\"}"), 2);
    cr_assert_eq(sample_value(t, "tttd_queue_size"), 7);
    cr_assert_eq(sample_value(t, "tttd_workers"), 2);
    cr_assert_eq(sample_value(t, "tttd_workers_busy"), 1);
    cr_assert_eq(sample_value(t, "tttd_images_generated_total"), 5);
    cr_assert_eq(sample_value(t, "tttd_rejections_total{reason=\"queue_full\"}"), 1);
    cr_assert_eq(sample_value(t, "tttd_rejections_total{reason=\"loading\"}"), 0);
    cr_assert_eq(sample_value(t, "tttd_worker_errors_total"), 1);
    cr_assert_eq(sample_value(t, "tttd_cancellations_total{reason=\"timeout\"}"), 2);
    cr_assert_eq(sample_value(t, "tttd_queue_duration_seconds_bucket{le=\"0.01\"}"), 0);
    cr_assert_eq(sample_value(t, "tttd_queue_duration_seconds_bucket{le=\"0.025\"}"), 1);
    cr_assert_eq(sample_value(t, "tttd_inference_duration_seconds_bucket{le=\"1\"}"), 0);
    cr_assert_eq(sample_value(t, "tttd_inference_duration_seconds_bucket{le=\"2.5\"}"), 1);
    cr_assert_eq(sample_value(t, "tttd_encode_duration_seconds_count"), 1);
    free(t);
    srv_metrics_free(m);
}

Test(metrics, histograms_are_cumulative_and_end_in_inf)
{
    srv_metrics *m = srv_metrics_new();
    double v[] = {0.0005, 0.001, 0.003, 0.2, 7, 1000};
    for (int i = 0; i < 6; i++)
        srv_metrics_request(m, SRV_ROUTE_IMAGES, 200, v[i]);
    char *t = render(m);
    const char *p = t;
    double prev = -1;
    int buckets = 0;
    const char *prefix = "tttd_request_duration_seconds_bucket{route=\"/v1/images/generations\",";
    while ((p = strstr(p, prefix))) {
        const char *sp = strchr(p, ' ');
        double c = strtod(sp + 1, NULL);
        cr_assert_geq(c, prev, "buckets never decrease");
        prev = c;
        buckets++;
        p = sp;
    }
    cr_assert_gt(buckets, 5);
    cr_assert_eq(sample_value(t, "tttd_request_duration_seconds_bucket{route=\"/v1/images/"
                                 "generations\",le=\"+Inf\"}"),
                 6);
    cr_assert_eq(prev, 6, "+Inf comes last");
    cr_assert_eq(sample_value(t, "tttd_request_duration_seconds_bucket{route=\"/v1/images/"
                                 "generations\",le=\"0.001\"}"),
                 2, "le is inclusive");
    cr_assert_eq(sample_value(t, "tttd_request_duration_seconds_bucket{route=\"/v1/images/"
                                 "generations\",le=\"300\"}"),
                 5);
    /* Every family that has samples has its HELP and TYPE. */
    const char *families[] = {"tttd_requests_total", "tttd_request_duration_seconds",
                              "tttd_queue_duration_seconds", "tttd_inference_duration_seconds",
                              "tttd_encode_duration_seconds", "tttd_batch_size",
                              "tttd_queue_size", "tttd_workers_busy",
                              "tttd_images_generated_total", "tttd_rejections_total",
                              "tttd_worker_errors_total", "tttd_cancellations_total"};
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        char help[128], type[128];
        snprintf(help, sizeof help, "# HELP %s ", families[i]);
        snprintf(type, sizeof type, "# TYPE %s ", families[i]);
        cr_assert(strstr(t, help), "%s", help);
        cr_assert(strstr(t, type), "%s", type);
    }
    free(t);
    srv_metrics_free(m);
}

#define THREADS 4
#define PER_THREAD 10000

static void *hammer(void *arg)
{
    srv_metrics *m = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        srv_metrics_request(m, SRV_ROUTE_HEALTHZ, 200, 0.001);
        srv_metrics_worker_busy(m, 1);
        srv_metrics_worker_busy(m, -1);
        srv_metrics_images(m, 1);
    }
    return NULL;
}

Test(metrics, concurrent_updates_are_all_counted)
{
    srv_metrics *m = srv_metrics_new();
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, hammer, m), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    char *t = render(m);
    cr_assert_eq(sample_value(t, "tttd_requests_total{route=\"/healthz\",status=\"200\"}"),
                 THREADS * PER_THREAD);
    cr_assert_eq(sample_value(t, "tttd_images_generated_total"), THREADS * PER_THREAD);
    cr_assert_eq(sample_value(t, "tttd_workers_busy"), 0);
    cr_assert_eq(srv_metrics_workers_busy(m), 0);
    free(t);
    srv_metrics_free(m);
}
