/*
 * test_integration.c - `tttd serve` from the outside: a real server on a random loopback port,
 * serving the tiny pipeline, spoken to over HTTP with libcurl. This file: every endpoint's
 * answers (image bytes, JSON with base64, Server-Sent Events, OpenAI's shape, jobs, models,
 * health, metrics, the web page), the latency breakdown in JSON and Server-Timing, X-Request-Id,
 * and every error path (400, 401, 404, 405 + Allow, 406, 413, 415, 422 naming the field).
 * test_integration_jobs.c holds batching, cancellation, the queue bound, timeouts and the drain.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <turbojpeg.h>
#include <unistd.h>

#include "tests/server/integration_util.h"

static it_server srv;

static void stop_server(void)
{
    if (srv.pid > 0)
        it_server_stop(&srv, 5000);
}

TestSuite(serve, .fini = stop_server, .timeout = 60);

/* 32 x 48 (two by three latent patches of the tiny model), two steps, no CFG pass: milliseconds. */
#define SMALL "\"width\":32,\"height\":48,\"steps\":2,\"guidance\":1"

static const char *const PHASES[] = {"queue_ms",  "text_encode_ms", "denoise_ms",
                                     "vae_ms",    "encode_ms",      "total_ms"};

/* The metrics object of an answer: every phase a number >= 0, batch_size and seed integers. */
static void check_metrics(json_t *m, long long seed)
{
    cr_assert(json_is_object(m), "metrics is an object");
    double sum = 0;
    for (size_t i = 0; i < sizeof PHASES / sizeof PHASES[0]; i++) {
        json_t *v = json_object_get(m, PHASES[i]);
        cr_assert(json_is_number(v), "metrics.%s is a number", PHASES[i]);
        cr_assert_geq(json_number_value(v), 0.0, "metrics.%s >= 0", PHASES[i]);
        if (i > 0 && i < 5)
            sum += json_number_value(v);
    }
    double total = json_number_value(json_object_get(m, "total_ms"));
    /* The engine's phases happen inside the request's wall time (0.05 ms of rounding slack). */
    cr_assert_leq(sum, total + 0.05, "phases %.3f ms within total %.3f ms", sum, total);
    cr_assert_gt(json_number_value(json_object_get(m, "denoise_ms")), 0.0);
    cr_assert(json_is_integer(json_object_get(m, "batch_size")));
    cr_assert_geq(json_integer_value(json_object_get(m, "batch_size")), 1);
    cr_assert(json_is_integer(json_object_get(m, "seed")));
    if (seed >= 0)
        cr_assert_eq(json_integer_value(json_object_get(m, "seed")), seed);
}

/* Server-Timing carries the same figures as the JSON metrics. */
static void check_server_timing(const it_response *r, json_t *metrics)
{
    char st[512];
    cr_assert(it_header(r, "Server-Timing", st, sizeof st), "Server-Timing header");
    static const char *const names[] = {"queue", "text_encode", "denoise", "vae", "encode",
                                        "total"};
    for (size_t i = 0; i < 6; i++) {
        double v = it_server_timing(st, names[i]);
        cr_assert_geq(v, 0.0, "Server-Timing %s in \"%s\"", names[i], st);
        if (metrics) {
            double j = json_number_value(json_object_get(metrics, PHASES[i]));
            cr_assert_leq(v - j, 0.001 + 1e-3 * j, "%s: header %.4f vs JSON %.4f", names[i], v, j);
            cr_assert_geq(v - j, -0.001 - 1e-3 * j, "%s: header %.4f vs JSON %.4f", names[i], v,
                          j);
        }
    }
    cr_assert(strstr(st, "batch;desc="), "Server-Timing batch: %s", st);
    cr_assert(strstr(st, "seed;desc="), "Server-Timing seed: %s", st);
}

static void check_request_id(const it_response *r)
{
    char id[128];
    cr_assert(it_header(r, "X-Request-Id", id, sizeof id), "X-Request-Id on status %ld",
              r->status);
    cr_assert_gt(strlen(id), 0);
}

/* One base64 image of a JSON answer: a PNG of w x h. */
static void check_b64_png(const char *b64, int w, int h)
{
    cr_assert(b64, "base64 image string");
    size_t len;
    unsigned char *png = it_b64_decode(b64, &len);
    cr_assert(png, "valid base64");
    int pw, ph;
    cr_assert(it_png_size(png, len, &pw, &ph), "a PNG");
    cr_assert_eq(pw, w);
    cr_assert_eq(ph, h);
    free(png);
}

Test(serve, health_ready_models_and_page)
{
    it_server_start(&srv, NULL);
    it_response r = it_http(&srv, "GET", "/healthz", NULL, NULL);
    cr_assert_eq(r.status, 200, "/healthz: %ld %s", r.status, r.body);
    check_request_id(&r);
    it_response_free(&r);

    r = it_http(&srv, "GET", "/readyz", NULL, NULL);
    cr_assert_eq(r.status, 200, "/readyz: %ld %s", r.status, r.body);
    it_response_free(&r);

    r = it_http(&srv, "GET", "/v1/models", NULL, NULL);
    cr_assert_eq(r.status, 200);
    json_t *j = it_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "object")), "list");
    json_t *data = json_object_get(j, "data");
    cr_assert_eq(json_array_size(data), 1);
    json_t *m = json_array_get(data, 0);
    cr_assert_str_eq(json_string_value(json_object_get(m, "id")), "default");
    cr_assert_str_eq(json_string_value(json_object_get(m, "object")), "model");
    cr_assert(json_is_true(json_object_get(m, "ready")));
    /* The tiny pipeline linearizes 3 of its attention modules with TTT. */
    cr_assert_eq(json_integer_value(json_object_get(m, "ttt_modules")), 3);
    json_decref(j);
    it_response_free(&r);

    /* GET / is the embedded page, byte for byte. */
    r = it_http(&srv, "GET", "/", NULL, NULL);
    cr_assert_eq(r.status, 200);
    char type[128];
    cr_assert(it_header(&r, "Content-Type", type, sizeof type) && strstr(type, "text/html"));
    FILE *f = fopen("server/web/index.html", "rb");
    cr_assert(f);
    char *page = malloc(1 << 20);
    size_t n = fread(page, 1, 1 << 20, f);
    fclose(f);
    cr_assert_eq(r.len, n, "page length %zu vs file %zu", r.len, n);
    cr_assert_eq(memcmp(r.body, page, n), 0);
    free(page);
    it_response_free(&r);
    cr_assert_eq(it_server_stop(&srv, 5000), 0);
}

Test(serve, default_model_without_model_option)
{
    /* No --model: models/default when the repository has one, else the tiny test pipeline; either
     * way a model named "default" that generates. */
    it_server_start_bare(&srv, NULL);
    it_response r = it_http(&srv, "GET", "/v1/models", NULL, NULL);
    cr_assert_eq(r.status, 200);
    json_t *j = it_json(&r);
    json_t *data = json_object_get(j, "data");
    cr_assert_eq(json_array_size(data), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(data, 0), "id")), "default");
    json_decref(j);
    it_response_free(&r);
    r = it_http(&srv, "POST", "/v1/generate", "{\"prompt\":\"a\"," SMALL "}", "Accept: image/png",
                NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    int w, h;
    cr_assert(it_png_size(r.body, r.len, &w, &h) && w == 32 && h == 48);
    it_response_free(&r);
}

Test(serve, generate_png_bytes)
{
    it_server_start(&srv, NULL);
    it_response r = it_http(&srv, "POST", "/v1/generate",
                            "{\"prompt\":\"a red cube\"," SMALL ",\"seed\":7}",
                            "Accept: image/png", NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    char type[64];
    cr_assert(it_header(&r, "Content-Type", type, sizeof type));
    cr_assert_str_eq(type, "image/png");
    const unsigned char *b = (const unsigned char *)r.body;
    cr_assert(r.len > 8 && b[0] == 0x89 && b[1] == 0x50 && b[2] == 0x4E && b[3] == 0x47);
    int w, h;
    cr_assert(it_png_size(r.body, r.len, &w, &h));
    cr_assert_eq(w, 32);
    cr_assert_eq(h, 48);
    check_request_id(&r);
    check_server_timing(&r, NULL);
    char st[512];
    it_header(&r, "Server-Timing", st, sizeof st);
    cr_assert(strstr(st, "seed;desc=\"7\"") || strstr(st, "seed;desc=7"), "%s", st);
    cr_assert(strstr(st, "batch;desc=\"1\"") || strstr(st, "batch;desc=1"), "%s", st);

    /* The same seed gives the same bytes (the image depends on the request, not the server). */
    it_response again = it_http(&srv, "POST", "/v1/generate",
                                "{\"prompt\":\"a red cube\"," SMALL ",\"seed\":7}",
                                "Accept: image/png", NULL);
    cr_assert_eq(again.status, 200);
    cr_assert_eq(again.len, r.len);
    cr_assert_eq(memcmp(again.body, r.body, r.len), 0);
    it_response_free(&again);
    it_response_free(&r);
}

Test(serve, generate_jpeg_bytes)
{
    it_server_start(&srv, NULL);
    it_response r = it_http(&srv, "POST", "/v1/generate",
                            "{\"prompt\":\"a red cube\"," SMALL ",\"quality\":80}",
                            "Accept: image/jpeg", NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    char type[64];
    cr_assert(it_header(&r, "Content-Type", type, sizeof type));
    cr_assert_str_eq(type, "image/jpeg");
    tjhandle tj = tjInitDecompress();
    int w, h, sub, cs;
    cr_assert_eq(tjDecompressHeader3(tj, (unsigned char *)r.body, r.len, &w, &h, &sub, &cs), 0);
    tjDestroy(tj);
    cr_assert_eq(w, 32);
    cr_assert_eq(h, 48);
    it_response_free(&r);
}

Test(serve, generate_json_base64)
{
    it_server_start(&srv, NULL);
    it_response r = it_http(&srv, "POST", "/v1/generate",
                            "{\"prompt\":\"two red cubes\",\"negative_prompt\":\"blue\"," SMALL
                            ",\"seed\":41,\"n\":2}",
                            "X-Request-Id: client-req.42", NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    char type[64], id[128];
    cr_assert(it_header(&r, "Content-Type", type, sizeof type) && strstr(type, "application/json"));
    /* The client's own request id is kept, and is the job's id (api/openapi.yaml). */
    cr_assert(it_header(&r, "X-Request-Id", id, sizeof id));
    cr_assert_str_eq(id, "client-req.42");
    json_t *j = it_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "id")), id, "id is the request id");
    cr_assert_str_eq(json_string_value(json_object_get(j, "object")), "generation");
    cr_assert_str_eq(json_string_value(json_object_get(j, "model")), "default");
    cr_assert(json_is_integer(json_object_get(j, "created")));
    json_t *images = json_object_get(j, "images");
    cr_assert_eq(json_array_size(images), 2);
    for (int i = 0; i < 2; i++) {
        json_t *im = json_array_get(images, (size_t)i);
        cr_assert_eq(json_integer_value(json_object_get(im, "index")), i);
        cr_assert_eq(json_integer_value(json_object_get(im, "seed")), 41 + i, "image i: seed+i");
        cr_assert_str_eq(json_string_value(json_object_get(im, "format")), "png");
        cr_assert_eq(json_integer_value(json_object_get(im, "width")), 32);
        cr_assert_eq(json_integer_value(json_object_get(im, "height")), 48);
        check_b64_png(json_string_value(json_object_get(im, "b64")), 32, 48);
    }
    json_t *m = json_object_get(j, "metrics");
    check_metrics(m, 41);
    /* Both images were denoised together. */
    cr_assert_eq(json_integer_value(json_object_get(m, "batch_size")), 2);
    check_server_timing(&r, m);
    json_decref(j);
    it_response_free(&r);
}

Test(serve, generate_stream_events)
{
    it_server_start(&srv, "--preview-every", "2", NULL);
    it_response r = it_http(&srv, "POST", "/v1/generate",
                            "{\"prompt\":\"a red cube\",\"width\":32,\"height\":48,\"steps\":4,"
                            "\"guidance\":1,\"seed\":3,\"stream\":true}",
                            NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    char type[64], id[128];
    cr_assert(it_header(&r, "Content-Type", type, sizeof type) &&
              strstr(type, "text/event-stream"));
    /* The id of every event is the request's id, which the headers give before any event. */
    cr_assert(it_header(&r, "X-Request-Id", id, sizeof id));
    it_event *ev;
    int n = it_sse_parse(r.body, r.len, &ev, NULL);
    /* queued, progress x4, preview x2 (steps 2 and 4), image, done */
    cr_assert_geq(n, 8, "events: %d in %s", n, r.body);
    cr_assert_str_eq(ev[0].name, "queued");
    cr_assert_str_eq(ev[n - 1].name, "done");
    int step = 0, previews = 0, images = 0, image_at = -1;
    for (int i = 0; i < n; i++) {
        json_error_t e;
        json_t *d = json_loads(ev[i].data, 0, &e);
        cr_assert(d, "event %s: data is JSON: %s", ev[i].name, ev[i].data);
        if (strcmp(ev[i].name, "error") != 0)
            cr_assert_str_eq(json_string_value(json_object_get(d, "id")), id, "%s id",
                             ev[i].name);
        if (strcmp(ev[i].name, "queued") == 0) {
            cr_assert_eq(i, 0);
            cr_assert(json_is_integer(json_object_get(d, "position")));
        } else if (strcmp(ev[i].name, "progress") == 0) {
            cr_assert_eq(json_integer_value(json_object_get(d, "step")), step + 1,
                         "steps in order");
            cr_assert_eq(json_integer_value(json_object_get(d, "steps")), 4);
            cr_assert_lt(i, image_at < 0 ? n : image_at, "progress before the image");
            step++;
        } else if (strcmp(ev[i].name, "preview") == 0) {
            previews++;
            cr_assert_eq(json_integer_value(json_object_get(d, "step")) % 2, 0);
            const char *b64 = json_string_value(json_object_get(d, "b64"));
            size_t len;
            unsigned char *bytes = it_b64_decode(b64 ? b64 : "", &len);
            cr_assert(bytes && len > 0, "preview bytes");
            free(bytes);
        } else if (strcmp(ev[i].name, "image") == 0) {
            images++;
            image_at = i;
            cr_assert_eq(step, 4, "the image comes after the last step");
            cr_assert_eq(json_integer_value(json_object_get(d, "index")), 0);
            cr_assert_eq(json_integer_value(json_object_get(d, "seed")), 3);
            check_b64_png(json_string_value(json_object_get(d, "b64")), 32, 48);
        } else if (strcmp(ev[i].name, "done") == 0) {
            cr_assert_eq(i, n - 1);
            check_metrics(json_object_get(d, "metrics"), 3);
        } else {
            cr_assert_fail("unexpected event %s: %s", ev[i].name, ev[i].data);
        }
        json_decref(d);
    }
    cr_assert_eq(step, 4);
    cr_assert_eq(previews, 2);
    cr_assert_eq(images, 1);
    it_events_free(ev, n);
    it_response_free(&r);
}

Test(serve, openai_images)
{
    it_server_start(&srv, NULL);
    it_response r = it_http(&srv, "POST", "/v1/images/generations",
                            "{\"prompt\":\"a red cube\",\"n\":1,\"size\":\"32x48\","
                            "\"response_format\":\"b64_json\",\"model\":\"gpt-image-1\","
                            "\"steps\":2,\"guidance\":1}",
                            NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    check_request_id(&r);
    json_t *j = it_json(&r);
    cr_assert(json_is_integer(json_object_get(j, "created")));
    json_t *data = json_object_get(j, "data");
    cr_assert_eq(json_array_size(data), 1);
    check_b64_png(json_string_value(json_object_get(json_array_get(data, 0), "b64_json")), 32,
                  48);
    cr_assert_str_eq(json_string_value(json_object_get(j, "size")), "32x48");
    cr_assert_str_eq(json_string_value(json_object_get(j, "output_format")), "png");
    check_metrics(json_object_get(j, "metrics"), -1);
    json_decref(j);
    it_response_free(&r);

    /* OpenAI's "url" answers are not served: 400 in OpenAI's shape, param naming the field. */
    r = it_http(&srv, "POST", "/v1/images/generations",
                "{\"prompt\":\"x\",\"size\":\"32x48\",\"response_format\":\"url\"}", NULL);
    const char *msg = it_expect_error(&r, 400, "invalid_request_error.field_unsupported");
    cr_assert(strstr(msg, "response_format"), "%s", msg);
    it_response_free(&r);
}

/* The OpenAI route's errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}},
 * a wrong field 400 (what the SDKs raise as BadRequestError) with param naming it; the native
 * route keeps 422 and its own shape. */
static void expect_openai_error(const char *body, long status, const char *code,
                                const char *param)
{
    it_response r = it_http(&srv, "POST", "/v1/images/generations", body, NULL);
    cr_assert_eq(r.status, status, "%s: %ld %s", body, r.status, r.body);
    json_t *j = it_json(&r);
    json_t *e = json_object_get(j, "error");
    cr_assert(json_is_object(e), "%s", r.body);
    cr_assert_eq(json_object_size(e), 4, "message, type, param, code: %s", r.body);
    cr_assert(json_is_string(json_object_get(e, "message")), "%s", r.body);
    cr_assert_str_eq(json_string_value(json_object_get(e, "type")), "invalid_request_error");
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), code);
    json_t *p = json_object_get(e, "param");
    if (param)
        cr_assert(json_is_string(p) && !strcmp(json_string_value(p), param), "param %s: %s",
                  param, r.body);
    else
        cr_assert(json_is_null(p), "param null: %s", r.body);
    json_decref(j);
    it_response_free(&r);
}

Test(serve, openai_errors_in_openai_shape)
{
    it_server_start(&srv, NULL);
    expect_openai_error("{\"prompt\":\"x\",\"n\":9}", 400, "invalid_request_error.field_range",
                        "n");
    expect_openai_error("{\"prompt\":\"x\",\"size\":\"33x48\"}", 400,
                        "invalid_request_error.field_range", "size");
    expect_openai_error("{\"prompt\":\"x\",\"steps\":\"two\"}", 400,
                        "invalid_request_error.field_type", "steps");
    expect_openai_error("{\"size\":\"32x48\"}", 400, "invalid_request_error.field_missing",
                        "prompt");
    expect_openai_error("{\"prompt\":\"x\",\"colour\":1}", 400,
                        "invalid_request_error.unknown_field", "colour");
    expect_openai_error("{\"prompt\":\"x\",\"output_format\":\"webp\"}", 400,
                        "invalid_request_error.field_unsupported", "output_format");
    expect_openai_error("{\"prompt\": ", 400, "invalid_request_error.json", NULL);
    /* The native route is unchanged: 422, no param. */
    it_response r = it_http(&srv, "POST", "/v1/generate", "{\"prompt\":\"x\",\"n\":9}", NULL);
    it_expect_error(&r, 422, "invalid_request_error.field_range");
    json_t *j = it_json(&r);
    cr_assert_null(json_object_get(json_object_get(j, "error"), "param"));
    json_decref(j);
    it_response_free(&r);
}

static void expect_generate_error(const char *body, long status, const char *code,
                                  const char *names);

/* Every seed of an answer (metrics, each image) below 2^53: what a JavaScript number holds. */
static void check_seeds_js_safe(json_t *answer, const char *images_key)
{
    const json_int_t js_max = (json_int_t)1 << 53;
    json_t *seed = json_object_get(json_object_get(answer, "metrics"), "seed");
    cr_assert(json_is_integer(seed));
    cr_assert_lt(json_integer_value(seed), js_max, "metrics.seed %lld",
                 (long long)json_integer_value(seed));
    json_t *images = json_object_get(answer, images_key);
    for (size_t i = 0; i < json_array_size(images); i++) {
        json_t *s = json_object_get(json_array_get(images, i), "seed");
        if (!s)
            continue; /* OpenAI's data items carry no seed */
        cr_assert_lt(json_integer_value(s), js_max);
        cr_assert_eq(json_integer_value(s), json_integer_value(seed) + (json_int_t)i);
    }
}

/* Seeds the server picks (no seed, null or -1, on both routes) stay below 2^53: a 63-bit seed
 * is below 2^53 once in 1024 draws, so eight answers catch a server that picks them so. */
Test(serve, random_seeds_are_javascript_safe)
{
    it_server_start(&srv, NULL);
    static const char *const native[] = {
        "{\"prompt\":\"a\"," SMALL ",\"n\":2}",
        "{\"prompt\":\"a\"," SMALL ",\"n\":2,\"seed\":null}",
        "{\"prompt\":\"a\"," SMALL ",\"n\":2,\"seed\":-1}",
        "{\"prompt\":\"a\"," SMALL ",\"seed\":-1}",
    };
    for (int round = 0; round < 2; round++)
        for (size_t i = 0; i < sizeof native / sizeof native[0]; i++) {
            it_response r = it_http(&srv, "POST", "/v1/generate", native[i], NULL);
            cr_assert_eq(r.status, 200, "%s: %ld %s", native[i], r.status, r.body);
            json_t *j = it_json(&r);
            check_seeds_js_safe(j, "images");
            json_decref(j);
            it_response_free(&r);
        }
    for (int round = 0; round < 4; round++) {
        it_response r = it_http(&srv, "POST", "/v1/images/generations",
                                round % 2 ? "{\"prompt\":\"a\",\"size\":\"32x48\",\"steps\":2,"
                                            "\"guidance\":1,\"seed\":-1}"
                                          : "{\"prompt\":\"a\",\"size\":\"32x48\",\"steps\":2,"
                                            "\"guidance\":1}",
                                NULL);
        cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
        json_t *j = it_json(&r);
        check_seeds_js_safe(j, "data");
        json_decref(j);
        it_response_free(&r);
    }
    /* -2 is no seed and no request for one. */
    expect_generate_error("{\"prompt\":\"a\"," SMALL ",\"seed\":-2}", 422,
                          "invalid_request_error.field_range", "seed");
}

Test(serve, jobs_endpoint)
{
    it_server_start(&srv, NULL);
    it_response r = it_http(&srv, "POST", "/v1/generate", "{\"prompt\":\"a\"," SMALL "}", NULL);
    cr_assert_eq(r.status, 200);
    char id[128], path[200];
    json_t *answer = it_json(&r);
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(answer, "id")));
    json_decref(answer);
    it_response_free(&r);

    /* A finished job stays visible for --job-ttl. */
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    r = it_http(&srv, "GET", path, NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    json_t *j = it_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "id")), id);
    cr_assert_str_eq(json_string_value(json_object_get(j, "object")), "job");
    cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "done");
    cr_assert(json_is_null(json_object_get(j, "queue_position")));
    json_t *p = json_object_get(j, "progress");
    cr_assert_eq(json_integer_value(json_object_get(p, "step")), 2);
    cr_assert_eq(json_integer_value(json_object_get(p, "steps")), 2);
    cr_assert_eq(json_integer_value(json_object_get(j, "images_done")), 1);
    json_decref(j);
    it_response_free(&r);

    /* Deleting a finished job is a conflict; unknown ids are 404. */
    r = it_http(&srv, "DELETE", path, NULL, NULL);
    it_expect_error(&r, 409, "conflict_error.job_finished");
    it_response_free(&r);
    r = it_http(&srv, "GET", "/v1/jobs/no-such-job", NULL, NULL);
    it_expect_error(&r, 404, "not_found_error.job");
    it_response_free(&r);
    r = it_http(&srv, "DELETE", "/v1/jobs/no-such-job", NULL, NULL);
    it_expect_error(&r, 404, "not_found_error.job");
    it_response_free(&r);
}

/* A POST /v1/generate body that must fail with status and code, its message naming `names`. */
static void expect_generate_error(const char *body, long status, const char *code,
                                  const char *names)
{
    it_response r = it_http(&srv, "POST", "/v1/generate", body, NULL);
    const char *msg = it_expect_error(&r, status, code);
    if (names)
        cr_assert(strstr(msg, names), "message \"%s\" names \"%s\"", msg, names);
    check_request_id(&r);
    it_response_free(&r);
}

Test(serve, request_errors)
{
    it_server_start(&srv, "--max-body", "1024", NULL);
    expect_generate_error("{\"prompt\": \"a\",", 400, "invalid_request_error.json", NULL);
    expect_generate_error("[1, 2]", 400, "invalid_request_error.json", NULL);
    expect_generate_error("{\"prompt\":\"a\",\"colour\":\"red\"}", 422,
                          "invalid_request_error.unknown_field", "colour");
    expect_generate_error("{\"prompt\":\"a\",\"width\":4096}", 422,
                          "invalid_request_error.field_range", "width");
    expect_generate_error("{\"prompt\":\"a\",\"height\":40}", 422,
                          "invalid_request_error.field_range", "height");
    expect_generate_error("{\"prompt\":\"a\",\"steps\":0}", 422,
                          "invalid_request_error.field_range", "steps");
    expect_generate_error("{\"prompt\":\"a\",\"steps\":101}", 422,
                          "invalid_request_error.field_range", "steps");
    expect_generate_error("{\"prompt\":\"a\",\"n\":9}", 422, "invalid_request_error.field_range",
                          "n");
    expect_generate_error("{\"prompt\":\"a\",\"guidance\":-1}", 422,
                          "invalid_request_error.field_range", "guidance");
    expect_generate_error("{\"prompt\":\"a\",\"steps\":\"two\"}", 422,
                          "invalid_request_error.field_type", "steps");
    expect_generate_error("{\"prompt\":\"a\",\"format\":\"gif\"}", 422, NULL, "format");
    expect_generate_error("{\"negative_prompt\":\"a\"}", 422,
                          "invalid_request_error.field_missing", "prompt");
    expect_generate_error("{\"prompt\":\"a\",\"model\":\"nope\"}", 404, "not_found_error.model",
                          "nope");

    /* Larger than --max-body: 413, before anything is parsed. */
    char big[2100];
    memset(big, ' ', sizeof big);
    memcpy(big, "{\"prompt\":\"", 11);
    memset(big + 11, 'a', 2000);
    strcpy(big + 2011, "\"}");
    expect_generate_error(big, 413, "invalid_request_error.body_too_large", NULL);

    /* A Content-Type other than JSON (or what curl -d and fetch() send: form, text/plain):
     * 415; an Accept the server cannot meet: 406. */
    it_response r = it_http(&srv, "POST", "/v1/generate", "{\"prompt\":\"a\"}",
                            "Content-Type: application/xml", NULL);
    it_expect_error(&r, 415, "invalid_request_error.media_type");
    it_response_free(&r);
    r = it_http(&srv, "POST", "/v1/generate", "{\"prompt\":\"a\"}", "Accept: text/html", NULL);
    it_expect_error(&r, 406, "invalid_request_error.not_acceptable");
    it_response_free(&r);

    /* Routes: 404 for none, 405 with Allow for a wrong method. */
    r = it_http(&srv, "GET", "/v2/nothing", NULL, NULL);
    it_expect_error(&r, 404, "not_found_error.route");
    check_request_id(&r);
    it_response_free(&r);
    static const struct {
        const char *method, *path, *allow;
    } wrong[] = {
        {"GET", "/v1/generate", "POST"},
        {"PUT", "/v1/images/generations", "POST"},
        {"POST", "/v1/models", "GET"},
        {"POST", "/healthz", "GET"},
        {"DELETE", "/metrics", "GET"},
        {"PUT", "/v1/jobs/abc", "DELETE"},
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        r = it_http(&srv, wrong[i].method, wrong[i].path, NULL, NULL);
        it_expect_error(&r, 405, "invalid_request_error.method");
        char allow[128];
        cr_assert(it_header(&r, "Allow", allow, sizeof allow), "%s %s: Allow", wrong[i].method,
                  wrong[i].path);
        cr_assert(strstr(allow, wrong[i].allow), "%s %s: Allow: %s", wrong[i].method,
                  wrong[i].path, allow);
        it_response_free(&r);
    }
    /* The server is still fine after all that. */
    r = it_http(&srv, "POST", "/v1/generate", "{\"prompt\":\"a\"," SMALL "}", NULL);
    cr_assert_eq(r.status, 200);
    it_response_free(&r);
}

Test(serve, api_keys)
{
    it_server_start(&srv, "--api-key", "k1-secret", "--api-key", "k2-secret",
                    "--no-public-metrics", NULL);
    const char *body = "{\"prompt\":\"a\"," SMALL "}";
    it_response r = it_http(&srv, "POST", "/v1/generate", body, NULL);
    it_expect_error(&r, 401, "authentication_error.unauthorized");
    char www[128];
    cr_assert(it_header(&r, "WWW-Authenticate", www, sizeof www) && strstr(www, "Bearer"));
    it_response_free(&r);

    r = it_http(&srv, "POST", "/v1/generate", body, "Authorization: Bearer wrong", NULL);
    it_expect_error(&r, 401, "authentication_error.unauthorized");
    it_response_free(&r);
    r = it_http(&srv, "POST", "/v1/generate", body, "Authorization: Basic azEtc2VjcmV0", NULL);
    it_expect_error(&r, 401, "authentication_error.unauthorized");
    it_response_free(&r);

    r = it_http(&srv, "POST", "/v1/generate", body, "Authorization: Bearer k2-secret", NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    it_response_free(&r);
    r = it_http(&srv, "GET", "/v1/models", NULL, "Authorization: Bearer k1-secret", NULL);
    cr_assert_eq(r.status, 200);
    it_response_free(&r);
    r = it_http(&srv, "GET", "/v1/models", NULL, NULL);
    it_expect_error(&r, 401, "authentication_error.unauthorized");
    it_response_free(&r);

    /* /healthz public (the default), /metrics not (--no-public-metrics). */
    r = it_http(&srv, "GET", "/healthz", NULL, NULL);
    cr_assert_eq(r.status, 200);
    it_response_free(&r);
    r = it_http(&srv, "GET", "/metrics", NULL, NULL);
    it_expect_error(&r, 401, "authentication_error.unauthorized");
    it_response_free(&r);
    r = it_http(&srv, "GET", "/metrics", NULL, "Authorization: Bearer k1-secret", NULL);
    cr_assert_eq(r.status, 200);
    it_response_free(&r);
}

Test(serve, config_file_environment_and_key_file)
{
    /* Keys from a file (comments and blank lines skipped) and from TTTD_API_KEY; a limit from a
     * JSON config file: the three sources the options table reads besides flags. */
    char dir[] = "/tmp/tttd_it_cfg_XXXXXX", keys[64], config[64];
    cr_assert(mkdtemp(dir));
    snprintf(keys, sizeof keys, "%s/keys", dir);
    snprintf(config, sizeof config, "%s/config.json", dir);
    FILE *f = fopen(keys, "w");
    cr_assert(f);
    fputs("# the key of the test\n\nfile-key\n", f);
    fclose(f);
    f = fopen(config, "w");
    cr_assert(f);
    fprintf(f, "{\"max-steps\": 3, \"api-key-file\": \"%s\"}\n", keys);
    fclose(f);
    setenv("TTTD_API_KEY", "env-key", 1);
    it_server_start(&srv, "--config", config, NULL);

    const char *body = "{\"prompt\":\"a\",\"width\":32,\"height\":48,\"steps\":3,\"guidance\":1}";
    it_response r = it_http(&srv, "POST", "/v1/generate", body, NULL);
    it_expect_error(&r, 401, "authentication_error.unauthorized");
    it_response_free(&r);
    r = it_http(&srv, "POST", "/v1/generate", body, "Authorization: Bearer file-key", NULL);
    cr_assert_eq(r.status, 200, "the key file's key: %ld %s", r.status, r.body);
    it_response_free(&r);
    r = it_http(&srv, "POST", "/v1/generate", body, "Authorization: Bearer env-key", NULL);
    cr_assert_eq(r.status, 200, "the environment's key: %ld %s", r.status, r.body);
    it_response_free(&r);
    r = it_http(&srv, "POST", "/v1/generate",
                "{\"prompt\":\"a\",\"width\":32,\"height\":48,\"steps\":4,\"guidance\":1}",
                "Authorization: Bearer env-key", NULL);
    const char *msg = it_expect_error(&r, 422, "invalid_request_error.field_range");
    cr_assert(strstr(msg, "steps"), "the config file's max-steps 3: %s", msg);
    it_response_free(&r);

    unlink(keys);
    unlink(config);
    rmdir(dir);
}

Test(serve, prometheus_metrics)
{
    it_server_start(&srv, NULL);
    it_response r = it_http(&srv, "POST", "/v1/generate", "{\"prompt\":\"a\"," SMALL ",\"n\":2}",
                            NULL);
    cr_assert_eq(r.status, 200);
    it_response_free(&r);
    r = it_http(&srv, "POST", "/v1/generate", "{\"prompt\":\"a\",\"steps\":0}", NULL);
    cr_assert_eq(r.status, 422);
    it_response_free(&r);

    r = it_http(&srv, "GET", "/metrics", NULL, NULL);
    cr_assert_eq(r.status, 200);
    char type[128];
    cr_assert(it_header(&r, "Content-Type", type, sizeof type) && strstr(type, "text/plain"),
              "%s", type);
    static const char *const families[] = {
        "# TYPE tttd_requests_total counter",
        "# TYPE tttd_request_duration_seconds histogram",
        "# TYPE tttd_queue_duration_seconds histogram",
        "# TYPE tttd_inference_duration_seconds histogram",
        "# TYPE tttd_encode_duration_seconds histogram",
        "# TYPE tttd_batch_size histogram",
        "# TYPE tttd_queue_size gauge",
        "# TYPE tttd_workers_busy gauge",
        "# TYPE tttd_images_generated_total counter",
        "# TYPE tttd_rejections_total counter",
        "# TYPE tttd_worker_errors_total counter",
        "# TYPE tttd_cancellations_total counter",
    };
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        cr_assert(strstr(r.body, families[i]), "/metrics has \"%s\":\n%s", families[i], r.body);
    cr_assert(strstr(r.body, "tttd_request_duration_seconds_bucket{"));
    cr_assert(strstr(r.body, "le=\"+Inf\""));
    it_response_free(&r);

    cr_assert_eq(it_metric(&srv, "tttd_images_generated_total"), 2);
    cr_assert_eq(it_metric(&srv, "tttd_queue_size"), 0);
    cr_assert_eq(it_metric(&srv, "tttd_workers_busy"), 0);
    /* One generate request answered 200, one 422. */
    cr_assert_eq(it_metric(&srv, "tttd_requests_total{route=\"/v1/generate\",status=\"200\"}"), 1);
    cr_assert_eq(it_metric(&srv, "tttd_requests_total{route=\"/v1/generate\",status=\"422\"}"), 1);
    cr_assert_eq(it_metric(&srv, "tttd_rejections_total{reason=\"invalid\"}"), 1);
    cr_assert_geq(it_metric(&srv, "tttd_request_duration_seconds_count{route=\"/v1/generate\"}"),
                  2);
    /* Both images in one engine call. */
    cr_assert_eq(it_metric(&srv, "tttd_batch_size_count"), 1);
    cr_assert_eq(it_metric(&srv, "tttd_batch_size_sum"), 2);
    cr_assert_eq(it_metric(&srv, "tttd_ready"), 1);
}
