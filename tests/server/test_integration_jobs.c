/*
 * test_integration_jobs.c - `tttd serve` under concurrent load (see test_integration.c for the
 * set-up): dynamic batching (concurrent requests of one size share a batch, shown by their
 * batch_size; with the default greedy policy a lone request starts at once and requests queued
 * behind a busy worker leave together), cancellation (DELETE /v1/jobs/{id} while queued and while
 * running, a client that hangs up, a request's timeout_ms), the queue bound (429 + Retry-After,
 * /readyz 503) and the graceful shutdown (SIGTERM lets the work in flight finish and exits 0;
 * --drain-timeout cancels what is left and exits 3).
 *
 * A "slow" request is 5000 steps of the tiny model (tens of seconds): long enough to be certainly
 * running or queued while the test acts, and always canceled long before it would finish. Its
 * own timeout_ms (30 s) is there only so that a server that fails to cancel still ends the test,
 * with an error that says which.
 */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/server/integration_util.h"

static it_server srv;

static void stop_server(void)
{
    if (srv.pid > 0)
        it_server_stop(&srv, 5000);
}

TestSuite(serve_jobs, .fini = stop_server, .timeout = 90);

#define SMALL "\"width\":32,\"height\":48,\"steps\":2,\"guidance\":1"
#define SLOW_BODY                                                                                 \
    "{\"prompt\":\"slow\",\"width\":32,\"height\":48,\"steps\":5000,\"guidance\":1,"          \
    "\"timeout_ms\":30000,\"stream\":true}"
/* Lets the slow requests through the default 100-step limit. */
#define SLOW_OPTS "--max-steps", "10000"

static const it_request SLOW = {"POST", "/v1/generate", SLOW_BODY, {NULL}, 0};

/* Waits until a streamed request is running (its first progress event). */
static void wait_running(it_async *a)
{
    char *body = it_async_wait_for(a, "event: progress", 20000);
    cr_assert(body, "the request never started running");
    free(body);
}

/* A streamed answer that ended with an error event of this code (after a 200 status line). */
static void expect_stream_error(const it_response *r, const char *code)
{
    cr_assert_eq(r->status, 200, "%ld %s", r->status, r->body);
    it_event *ev;
    int n = it_sse_parse(r->body, r->len, &ev, NULL);
    cr_assert_gt(n, 0);
    cr_assert_str_eq(ev[n - 1].name, "error", "last event %s: %s", ev[n - 1].name,
                     ev[n - 1].data);
    json_t *d = json_loads(ev[n - 1].data, 0, NULL);
    cr_assert(d);
    const char *c = json_string_value(json_object_get(json_object_get(d, "error"), "code"));
    cr_assert(c, "error event: %s", ev[n - 1].data);
    cr_assert_str_eq(c, code, "error event: %s", ev[n - 1].data);
    for (int i = 0; i < n; i++)
        cr_assert(strcmp(ev[i].name, "image") != 0 && strcmp(ev[i].name, "done") != 0,
                  "no image after an error");
    json_decref(d);
    it_events_free(ev, n);
}

static json_t *get_job(const char *id)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    it_response r = it_http(&srv, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "GET %s: %ld %s", path, r.status, r.body);
    json_t *j = it_json(&r);
    it_response_free(&r);
    return j;
}

static long delete_job(const char *id)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    it_response r = it_http(&srv, "DELETE", path, NULL, NULL);
    long status = r.status;
    if (status == 200) {
        json_t *j = it_json(&r);
        cr_assert_str_eq(json_string_value(json_object_get(j, "id")), id);
        json_decref(j);
    }
    it_response_free(&r);
    return status;
}

/* A small request answers promptly: the worker is not stuck on canceled work. */
static void expect_worker_free(void)
{
    double t0 = it_now_ms();
    it_response r = it_http(&srv, "POST", "/v1/generate", "{\"prompt\":\"after\"," SMALL "}",
                            NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert_lt(it_now_ms() - t0, 5000, "the worker is free again");
    it_response_free(&r);
}

static long batch_size_of(const it_response *r)
{
    cr_assert_eq(r->status, 200, "%ld %s", r->status, r->body);
    json_t *j = it_json(r);
    long b = (long)json_integer_value(json_object_get(json_object_get(j, "metrics"), "batch_size"));
    json_decref(j);
    return b;
}

Test(serve_jobs, concurrent_requests_share_a_batch)
{
    /* One worker, batches of up to 4 gathered for up to 1 s: the batcher, not luck, groups them. */
    it_server_start(&srv, "--workers", "1", "--max-batch", "4", "--max-queue-delay-ms", "1000",
                    NULL);
    it_request reqs[5];
    static const char *const bodies[] = {
        "{\"prompt\":\"one\"," SMALL ",\"seed\":1}",
        /* Guidance may differ inside a batch. */
        "{\"prompt\":\"two\",\"width\":32,\"height\":48,\"steps\":2,\"guidance\":3,\"seed\":2}",
        "{\"prompt\":\"three\"," SMALL ",\"seed\":3}",
        "{\"prompt\":\"four\"," SMALL ",\"seed\":4}",
        /* Another size never joins their batch. */
        "{\"prompt\":\"wide\",\"width\":64,\"height\":32,\"steps\":2,\"guidance\":1}",
    };
    for (int i = 0; i < 5; i++)
        reqs[i] = (it_request){"POST", "/v1/generate", bodies[i], {NULL}, 0};
    it_response out[5];
    double t0 = it_now_ms();
    it_http_many(&srv, reqs, out, 5);
    double elapsed = it_now_ms() - t0;
    for (int i = 0; i < 4; i++) {
        long b = batch_size_of(&out[i]);
        cr_assert_gt(b, 1, "request %d ran in a batch of %ld", i, b);
        cr_assert_leq(b, 4);
    }
    cr_assert_eq(batch_size_of(&out[4]), 1, "the 64x32 request ran alone");
    /* A full batch starts at once: the 1 s delay is an upper bound, not a wait. */
    cr_assert_lt(elapsed, 20000);
    for (int i = 0; i < 5; i++)
        it_response_free(&out[i]);
    cr_assert_eq(it_metric(&srv, "tttd_images_generated_total"), 5);
}

Test(serve_jobs, greedy_batching_by_default)
{
    /* The default batching wait is 0: a lone request starts at once, alone. */
    it_server_start(&srv, "--workers", "1", "--max-batch", "4", SLOW_OPTS, NULL);
    it_response r = it_http(&srv, "POST", "/v1/generate", "{\"prompt\":\"alone\"," SMALL "}",
                            NULL);
    cr_assert_eq(batch_size_of(&r), 1);
    json_t *j = it_json(&r);
    double queue_ms = json_real_value(json_object_get(json_object_get(j, "metrics"), "queue_ms"));
    cr_assert_lt(queue_ms, 5.0, "a lone request waits for no company (queue_ms %g)", queue_ms);
    json_decref(j);
    it_response_free(&r);

    /* Requests that arrive while the worker is busy pile up, and leave together once it frees. */
    it_async *a = it_http_async(&srv, &SLOW);
    char *id_a = it_stream_job_id(a);
    wait_running(a);
    static const char *const bodies[] = {
        "{\"prompt\":\"one\"," SMALL ",\"seed\":1}",
        "{\"prompt\":\"two\"," SMALL ",\"seed\":2}",
        "{\"prompt\":\"three\"," SMALL ",\"seed\":3}",
    };
    it_request reqs[3];
    it_async *waiting[3];
    for (int i = 0; i < 3; i++) {
        reqs[i] = (it_request){"POST", "/v1/generate", bodies[i], {NULL}, 0};
        waiting[i] = it_http_async(&srv, &reqs[i]);
    }
    double t0 = it_now_ms();
    while (it_metric(&srv, "tttd_queue_size") < 3) {
        cr_assert_lt(it_now_ms() - t0, 10000, "the three requests were queued");
        it_sleep_ms(10);
    }
    cr_assert_eq(delete_job(id_a), 200);
    it_response ra = it_async_wait(a);
    expect_stream_error(&ra, "canceled_error.canceled");
    it_response_free(&ra);
    for (int i = 0; i < 3; i++) {
        it_response ri = it_async_wait(waiting[i]);
        cr_assert_eq(batch_size_of(&ri), 3, "request %d: one batch of the three queued", i);
        it_response_free(&ri);
    }
    free(id_a);
}

Test(serve_jobs, cancel_queued_and_running)
{
    it_server_start(&srv, "--workers", "1", "--max-batch", "1", SLOW_OPTS, NULL);
    it_async *a = it_http_async(&srv, &SLOW);
    char *id_a = it_stream_job_id(a);
    wait_running(a);
    it_async *b = it_http_async(&srv, &SLOW);
    char *id_b = it_stream_job_id(b);

    json_t *j = get_job(id_a);
    cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "running");
    cr_assert_geq(json_integer_value(json_object_get(json_object_get(j, "progress"), "step")), 1);
    json_decref(j);
    j = get_job(id_b);
    cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "queued");
    cr_assert_eq(json_integer_value(json_object_get(j, "queue_position")), 1);
    json_decref(j);

    /* Queued: canceled at once; its stream ends with a "canceled" error event. */
    cr_assert_eq(delete_job(id_b), 200);
    it_response rb = it_async_wait(b);
    expect_stream_error(&rb, "canceled_error.canceled");
    it_response_free(&rb);
    cr_assert(it_wait_job_state(&srv, id_b, "canceled", 5000));

    /* Running: canceled between two denoising steps. */
    cr_assert_eq(delete_job(id_a), 200);
    it_response ra = it_async_wait(a);
    expect_stream_error(&ra, "canceled_error.canceled");
    it_response_free(&ra);
    j = get_job(id_a);
    cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "canceled");
    cr_assert_lt(json_integer_value(json_object_get(json_object_get(j, "progress"), "step")),
                 5000);
    json_t *err = json_object_get(j, "error");
    cr_assert_str_eq(json_string_value(json_object_get(err, "code")), "canceled_error.canceled");
    json_decref(j);

    /* Deleting it again: it has finished. */
    cr_assert_eq(delete_job(id_a), 409);

    /* A plain request whose client named its id (X-Request-Id) is canceled by that id: 499. */
    it_request plain = {"POST", "/v1/generate",
                        "{\"prompt\":\"slow\",\"width\":32,\"height\":48,\"steps\":5000,"
                        "\"guidance\":1,\"timeout_ms\":30000}",
                        {"X-Request-Id: plain-cancel.1", NULL}, 0};
    it_async *c = it_http_async(&srv, &plain);
    cr_assert(it_wait_job_state(&srv, "plain-cancel.1", "running", 10000));
    cr_assert_eq(delete_job("plain-cancel.1"), 200);
    it_response rc = it_async_wait(c);
    it_expect_error(&rc, 499, "canceled_error.canceled");
    it_response_free(&rc);
    cr_assert_eq(it_metric(&srv, "tttd_cancellations_total{reason=\"delete\"}"), 3);
    expect_worker_free();
    free(id_a);
    free(id_b);
}

Test(serve_jobs, client_hangup_cancels_a_stream)
{
    it_server_start(&srv, "--workers", "1", SLOW_OPTS, NULL);
    int aborted;
    it_response r = it_http_hangup(&srv, &SLOW, "event: progress", &aborted);
    cr_assert(aborted, "the stream ended by itself: %s", r.body);
    it_event *ev;
    int n = it_sse_parse(r.body, r.len, &ev, NULL);
    cr_assert_geq(n, 1);
    cr_assert_str_eq(ev[0].name, "queued");
    json_t *d = json_loads(ev[0].data, 0, NULL);
    char *id = strdup(json_string_value(json_object_get(d, "id")));
    json_decref(d);
    it_events_free(ev, n);
    it_response_free(&r);

    cr_assert(it_wait_job_state(&srv, id, "canceled", 10000),
              "a job whose client went away is canceled");
    cr_assert_eq(it_metric(&srv, "tttd_cancellations_total{reason=\"disconnect\"}"), 1);
    expect_worker_free();
    free(id);
}

Test(serve_jobs, client_hangup_cancels_a_plain_request)
{
    it_server_start(&srv, "--workers", "1", SLOW_OPTS, NULL);
    /* The client gives up after 500 ms without any byte of the answer. */
    it_request slow = {"POST", "/v1/generate",
                       "{\"prompt\":\"slow\",\"width\":32,\"height\":48,\"steps\":5000,"
                       "\"guidance\":1,\"timeout_ms\":30000}",
                       {NULL}, 500};
    it_async *a = it_http_async(&srv, &slow);
    it_response r = it_async_wait(a);
    cr_assert_eq(r.status, 0, "no answer within 500 ms");
    it_response_free(&r);
    double t0 = it_now_ms();
    for (;;) {
        if (it_metric(&srv, "tttd_cancellations_total{reason=\"disconnect\"}") >= 1)
            break;
        cr_assert_lt(it_now_ms() - t0, 10000, "the hang-up was noticed and the job canceled");
        it_sleep_ms(20);
    }
    expect_worker_free();
}

Test(serve_jobs, request_timeout)
{
    it_server_start(&srv, "--workers", "1", "--max-batch", "1", SLOW_OPTS, NULL);
    /* Running past timeout_ms: 504. */
    double t0 = it_now_ms();
    it_response r = it_http(&srv, "POST", "/v1/generate",
                            "{\"prompt\":\"slow\",\"width\":32,\"height\":48,\"steps\":5000,"
                            "\"guidance\":1,\"timeout_ms\":300}",
                            NULL);
    it_expect_error(&r, 504, "timeout_error.timeout");
    cr_assert_lt(it_now_ms() - t0, 5000);
    it_response_free(&r);

    /* Waiting in the queue past it: 504 as well; a stream ends with a timeout error event. */
    it_async *a = it_http_async(&srv, &SLOW);
    char *id_a = it_stream_job_id(a);
    wait_running(a);
    t0 = it_now_ms();
    r = it_http(&srv, "POST", "/v1/generate",
                "{\"prompt\":\"late\"," SMALL ",\"timeout_ms\":200}", NULL);
    it_expect_error(&r, 504, "timeout_error.timeout");
    cr_assert_lt(it_now_ms() - t0, 5000);
    it_response_free(&r);
    r = it_http(&srv, "POST", "/v1/generate",
                "{\"prompt\":\"late\"," SMALL ",\"timeout_ms\":200,\"stream\":true}", NULL);
    expect_stream_error(&r, "timeout_error.timeout");
    it_response_free(&r);

    cr_assert_eq(delete_job(id_a), 200);
    it_response ra = it_async_wait(a);
    it_response_free(&ra);
    free(id_a);
    expect_worker_free();
}

Test(serve_jobs, queue_bound_and_readyz)
{
    it_server_start(&srv, "--workers", "1", "--max-batch", "1", "--max-queue", "1", "--max-n", "1",
                    "--readyz-queue-mark", "1", SLOW_OPTS, NULL);
    it_async *a = it_http_async(&srv, &SLOW);
    char *id_a = it_stream_job_id(a);
    wait_running(a);
    it_response r = it_http(&srv, "GET", "/readyz", NULL, NULL);
    cr_assert_eq(r.status, 200, "nothing waits yet: %s", r.body);
    it_response_free(&r);

    it_async *b = it_http_async(&srv, &SLOW);
    char *id_b = it_stream_job_id(b);

    /* The queue holds its one unit: the next request is refused with a hint when to retry. */
    r = it_http(&srv, "POST", "/v1/generate", "{\"prompt\":\"c\"," SMALL "}", NULL);
    it_expect_error(&r, 429, "rate_limit_error.queue_full");
    char retry[32];
    cr_assert(it_header(&r, "Retry-After", retry, sizeof retry), "Retry-After");
    cr_assert_geq(atoi(retry), 1, "Retry-After: %s", retry);
    it_response_free(&r);
    r = it_http(&srv, "GET", "/readyz", NULL, NULL);
    it_expect_error(&r, 503, "unavailable_error.overloaded");
    it_response_free(&r);
    cr_assert_geq(it_metric(&srv, "tttd_rejections_total{reason=\"queue_full\"}"), 1);

    cr_assert_eq(delete_job(id_b), 200);
    cr_assert_eq(delete_job(id_a), 200);
    it_response ra = it_async_wait(a), rb = it_async_wait(b);
    it_response_free(&ra);
    it_response_free(&rb);
    free(id_a);
    free(id_b);
    /* Room again. */
    expect_worker_free();
    r = it_http(&srv, "GET", "/readyz", NULL, NULL);
    cr_assert_eq(r.status, 200);
    it_response_free(&r);
}

Test(serve_jobs, sigterm_drains_work_in_flight)
{
    it_server_start(&srv, "--workers", "1", "--max-batch", "1", NULL);
    /* A streamed request running, a plain one queued behind it: both finish after SIGTERM. */
    it_request streamed = {"POST", "/v1/generate",
                           "{\"prompt\":\"a\",\"width\":32,\"height\":48,\"steps\":40,"
                           "\"guidance\":1,\"stream\":true}",
                           {NULL}, 0};
    it_request plain = {"POST", "/v1/generate", "{\"prompt\":\"b\"," SMALL "}",
                        {"Accept: image/png", NULL}, 0};
    it_async *a = it_http_async(&srv, &streamed);
    wait_running(a);
    it_async *b = it_http_async(&srv, &plain);
    /* SIGTERM only once b waits in the queue (a request after it would be refused). */
    double t0 = it_now_ms();
    while (it_metric(&srv, "tttd_queue_size") < 1) {
        cr_assert_lt(it_now_ms() - t0, 10000, "the plain request never reached the queue");
        it_sleep_ms(2);
    }
    it_server_signal(&srv, SIGTERM);

    it_response ra = it_async_wait(a), rb = it_async_wait(b);
    cr_assert_eq(ra.status, 200);
    cr_assert(strstr(ra.body, "event: done"), "the running request finished: %s", ra.body);
    cr_assert_eq(rb.status, 200, "the queued request finished: %ld %s", rb.status, rb.body);
    int w, h;
    cr_assert(it_png_size(rb.body, rb.len, &w, &h) && w == 32 && h == 48);
    it_response_free(&ra);
    it_response_free(&rb);
    cr_assert_eq(it_server_wait(&srv, 10000), 0, "exit status 0 after the drain");
}

Test(serve_jobs, sigterm_refuses_new_work_and_drain_timeout_cancels)
{
    it_server_start(&srv, "--workers", "1", "--drain-timeout", "500ms", SLOW_OPTS, NULL);
    it_async *a = it_http_async(&srv, &SLOW);
    wait_running(a);
    double t0 = it_now_ms();
    it_server_signal(&srv, SIGTERM);
    it_sleep_ms(100);
    /* New work is refused while draining: no connection at all, or 503. */
    it_response r = it_http(&srv, "POST", "/v1/generate", "{\"prompt\":\"c\"," SMALL "}", NULL);
    cr_assert(r.status == 0 || r.status == 503, "during the drain: %ld %s", r.status, r.body);
    if (r.status == 503)
        it_expect_error(&r, 503, "unavailable_error.shutting_down");
    it_response_free(&r);

    /* The slow request is canceled when the drain timeout passes, and the server exits 3 (work
     * was lost). */
    it_response ra = it_async_wait(a);
    cr_assert_eq(ra.status, 200);
    cr_assert(strstr(ra.body, "event: error"), "the stream ends with an error: %s", ra.body);
    cr_assert(!strstr(ra.body, "event: done"));
    it_response_free(&ra);
    cr_assert_eq(it_server_wait(&srv, 10000), 3, "exit status 3");
    cr_assert_lt(it_now_ms() - t0, 5000, "the drain timeout bounds the shutdown");
}
