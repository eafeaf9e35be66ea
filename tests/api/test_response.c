/*
 * test_response.c - the answer builders: every body is parsed back with jansson and checked key
 * by key (no key more, none less), images come back bit for bit through base64, SSE events have
 * the exact wire form, and Server-Timing the exact header value.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/base64.h"
#include "api/response.h"

static const api_metrics metrics = {
    .queue_ms = 1.25, .text_encode_ms = 3.4, .denoise_ms = 812.0004, .vae_ms = 40.5,
    .encode_ms = 7.0, .total_ms = 864.1234567, .batch_size = 4, .seed = 42,
};

static json_t *load(const char *s)
{
    cr_assert_not_null(s);
    json_error_t jerr;
    json_t *j = json_loads(s, 0, &jerr);
    cr_assert_not_null(j, "not JSON (%s): %.200s", jerr.text, s);
    return j;
}

/* obj must have exactly the keys listed (NULL-terminated). */
static void expect_keys(const json_t *obj, const char *const *keys)
{
    cr_assert(json_is_object(obj));
    size_t n = 0;
    for (; keys[n]; n++)
        cr_expect_not_null(json_object_get(obj, keys[n]), "missing key %s", keys[n]);
    cr_expect_eq(json_object_size(obj), n, "expected %zu keys, got %zu", n, json_object_size(obj));
}

static void expect_metrics(const json_t *m)
{
    static const char *const keys[] = {"queue_ms", "text_encode_ms", "denoise_ms", "vae_ms",
                                       "encode_ms", "total_ms", "batch_size", "seed", NULL};
    expect_keys(m, keys);
    cr_expect_float_eq(json_number_value(json_object_get(m, "queue_ms")), 1.25, 1e-9);
    cr_expect_float_eq(json_number_value(json_object_get(m, "text_encode_ms")), 3.4, 1e-9);
    cr_expect_float_eq(json_number_value(json_object_get(m, "denoise_ms")), 812.0, 1e-9,
                       "rounded to microseconds");
    cr_expect_float_eq(json_number_value(json_object_get(m, "total_ms")), 864.123, 1e-9);
    cr_expect_eq(json_integer_value(json_object_get(m, "batch_size")), 4);
    cr_expect_eq(json_integer_value(json_object_get(m, "seed")), 42);
    cr_expect(json_is_integer(json_object_get(m, "seed")));
}

/* The base64 string s decodes to data[0..len). */
static void expect_b64(const char *s, const uint8_t *data, size_t len)
{
    cr_assert_not_null(s);
    size_t n = strlen(s);
    uint8_t *back = malloc(api_base64_decoded_max(n) + 1);
    size_t bl;
    cr_assert_eq(api_base64_decode(s, n, back, &bl), 0);
    cr_expect_eq(bl, len);
    cr_expect(memcmp(back, data, len) == 0);
    free(back);
}

static uint8_t png_bytes[1000], jpeg_bytes[3];

static void fill(void)
{
    for (size_t i = 0; i < sizeof png_bytes; i++)
        png_bytes[i] = (uint8_t)(i * 7 + 3);
    jpeg_bytes[0] = 0xff;
    jpeg_bytes[1] = 0xd8;
    jpeg_bytes[2] = 0x00;
}

TestSuite(api_response, .init = fill);

Test(api_response, native_generate_shape)
{
    api_image imgs[2] = {
        {png_bytes, sizeof png_bytes, 42, API_FORMAT_PNG, 512, 768},
        {jpeg_bytes, sizeof jpeg_bytes, 43, API_FORMAT_JPEG, 512, 768},
    };
    char *s = api_generate_response("gen-1", "default", 1700000000, imgs, 2, &metrics);
    json_t *root = load(s);
    static const char *const keys[] = {"id", "object", "created", "model", "images", "metrics", NULL};
    expect_keys(root, keys);
    cr_expect_str_eq(json_string_value(json_object_get(root, "id")), "gen-1");
    cr_expect_str_eq(json_string_value(json_object_get(root, "object")), "generation");
    cr_expect_eq(json_integer_value(json_object_get(root, "created")), 1700000000);
    cr_expect_str_eq(json_string_value(json_object_get(root, "model")), "default");
    expect_metrics(json_object_get(root, "metrics"));
    json_t *images = json_object_get(root, "images");
    cr_assert_eq(json_array_size(images), 2);
    static const char *const ikeys[] = {"index", "b64", "seed", "format", "width", "height", NULL};
    for (int i = 0; i < 2; i++) {
        json_t *im = json_array_get(images, (size_t)i);
        expect_keys(im, ikeys);
        cr_expect_eq(json_integer_value(json_object_get(im, "index")), i);
        cr_expect_eq(json_integer_value(json_object_get(im, "seed")), 42 + i);
        cr_expect_str_eq(json_string_value(json_object_get(im, "format")), i ? "jpeg" : "png");
        cr_expect_eq(json_integer_value(json_object_get(im, "width")), 512);
        cr_expect_eq(json_integer_value(json_object_get(im, "height")), 768);
        expect_b64(json_string_value(json_object_get(im, "b64")), imgs[i].data, imgs[i].len);
    }
    cr_expect_null(strchr(s, '\n'), "compact");
    json_decref(root);
    free(s);
}

Test(api_response, native_generate_edge_cases)
{
    char *s = api_generate_response("gen-2", "m", 0, NULL, 0, &metrics);
    json_t *root = load(s);
    cr_expect_eq(json_array_size(json_object_get(root, "images")), 0);
    json_decref(root);
    free(s);
    /* An empty image still makes a valid body. */
    api_image empty = {NULL, 0, 1, API_FORMAT_PNG, 16, 16};
    s = api_generate_response("gen-3", "m", 0, &empty, 1, &metrics);
    root = load(s);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(root, "images"), 0), "b64")), "");
    json_decref(root);
    free(s);
    cr_expect_null(api_generate_response(NULL, "m", 0, NULL, 0, &metrics));
    cr_expect_null(api_generate_response("id", "m", 0, NULL, 0, NULL));
    cr_expect_null(api_generate_response("id", "m", 0, NULL, 1, &metrics));
    /* Strings the server passes are escaped, and invalid UTF-8 is refused rather than sent. */
    s = api_generate_response("a\"b", "m\\", 0, NULL, 0, &metrics);
    root = load(s);
    cr_expect_str_eq(json_string_value(json_object_get(root, "id")), "a\"b");
    json_decref(root);
    free(s);
    cr_expect_null(api_generate_response("\xff", "m", 0, NULL, 0, &metrics));
}

Test(api_response, non_finite_and_negative_durations_become_zero)
{
    api_metrics m = metrics;
    m.queue_ms = -1;
    m.vae_ms = 1.0 / 0.0;
    char *s = api_metrics_json(&m);
    json_t *root = load(s);
    cr_expect_float_eq(json_number_value(json_object_get(root, "queue_ms")), 0.0, 1e-12);
    cr_expect_float_eq(json_number_value(json_object_get(root, "vae_ms")), 0.0, 1e-12);
    json_decref(root);
    free(s);
}

Test(api_response, openai_images_shape)
{
    api_generate_request req;
    memset(&req, 0, sizeof req);
    req.format = API_FORMAT_JPEG;
    strcpy(req.size, "512x768");
    strcpy(req.quality_label, "high");
    api_image imgs[2] = {
        {png_bytes, 10, 1, API_FORMAT_JPEG, 512, 768},
        {png_bytes + 10, 11, 2, API_FORMAT_JPEG, 512, 768},
    };
    char *s = api_openai_images_response(1700000001, &req, imgs, 2, &metrics);
    json_t *root = load(s);
    static const char *const keys[] = {"created", "data", "background", "output_format", "size",
                                       "quality", "metrics", NULL};
    expect_keys(root, keys);
    cr_expect_eq(json_integer_value(json_object_get(root, "created")), 1700000001);
    cr_expect_str_eq(json_string_value(json_object_get(root, "background")), "opaque");
    cr_expect_str_eq(json_string_value(json_object_get(root, "output_format")), "jpeg");
    cr_expect_str_eq(json_string_value(json_object_get(root, "size")), "512x768");
    cr_expect_str_eq(json_string_value(json_object_get(root, "quality")), "high");
    expect_metrics(json_object_get(root, "metrics"));
    json_t *data = json_object_get(root, "data");
    cr_assert_eq(json_array_size(data), 2);
    static const char *const dkeys[] = {"b64_json", NULL};
    for (size_t i = 0; i < 2; i++) {
        json_t *d = json_array_get(data, i);
        expect_keys(d, dkeys);
        expect_b64(json_string_value(json_object_get(d, "b64_json")), imgs[i].data, imgs[i].len);
    }
    json_decref(root);
    free(s);
    /* A zeroed quality label answers "auto". */
    req.quality_label[0] = '\0';
    s = api_openai_images_response(0, &req, imgs, 1, &metrics);
    root = load(s);
    cr_expect_str_eq(json_string_value(json_object_get(root, "quality")), "auto");
    json_decref(root);
    free(s);
}

Test(api_response, server_timing_header)
{
    char buf[256];
    int n = api_server_timing(&metrics, buf, sizeof buf);
    const char *want = "queue;dur=1.25, text_encode;dur=3.4, denoise;dur=812, vae;dur=40.5, "
                       "encode;dur=7, total;dur=864.123, batch;desc=\"4\", seed;desc=\"42\"";
    cr_expect_str_eq(buf, want);
    cr_expect_eq(n, (int)strlen(want));
    /* Exactly fitting, and one byte short. */
    char exact[256];
    cr_expect_eq(api_server_timing(&metrics, exact, strlen(want) + 1), n);
    cr_expect_eq(api_server_timing(&metrics, exact, strlen(want)), -1);
    cr_expect_eq(api_server_timing(&metrics, exact, 10), -1);
    /* 256 bytes suffice for the largest values. */
    api_metrics big = {1e300, 1e300, 1e300, 1e300, 1e300, 1e300, -2147483647 - 1, UINT64_MAX};
    cr_expect_gt(api_server_timing(&big, buf, sizeof buf), 0);
    api_metrics zero = {0};
    api_server_timing(&zero, buf, sizeof buf);
    cr_expect_str_eq(buf, "queue;dur=0, text_encode;dur=0, denoise;dur=0, vae;dur=0, encode;dur=0, "
                          "total;dur=0, batch;desc=\"0\", seed;desc=\"0\"");
}

/* s is "event: <name>\ndata: <json>\n\n" with no other newline; returns the parsed data. */
static json_t *sse_data(char *s, const char *name)
{
    cr_assert_not_null(s);
    char head[64];
    snprintf(head, sizeof head, "event: %s\ndata: ", name);
    cr_assert(strncmp(s, head, strlen(head)) == 0, "bad head: %.80s", s);
    size_t len = strlen(s);
    cr_assert(len > strlen(head) + 2 && strcmp(s + len - 2, "\n\n") == 0);
    const char *data = s + strlen(head);
    cr_assert_eq(strchr(data, '\n'), s + len - 2, "a newline inside the data line");
    char *copy = strndup(data, (size_t)(s + len - 2 - data));
    json_t *j = load(copy);
    free(copy);
    free(s);
    return j;
}

Test(api_response, sse_events)
{
    json_t *j = sse_data(api_sse_queued("job-1", 3), "queued");
    static const char *const qkeys[] = {"id", "position", NULL};
    expect_keys(j, qkeys);
    cr_expect_eq(json_integer_value(json_object_get(j, "position")), 3);
    json_decref(j);

    j = sse_data(api_sse_progress("job-1", -1, 5, 28), "progress");
    static const char *const pkeys[] = {"id", "step", "steps", NULL};
    expect_keys(j, pkeys);
    cr_expect_eq(json_integer_value(json_object_get(j, "step")), 5);
    cr_expect_eq(json_integer_value(json_object_get(j, "steps")), 28);
    json_decref(j);
    j = sse_data(api_sse_progress("job-1", 2, 5, 28), "progress");
    cr_expect_eq(json_integer_value(json_object_get(j, "index")), 2);
    json_decref(j);

    api_image small = {png_bytes, 100, 9, API_FORMAT_JPEG, 64, 32};
    j = sse_data(api_sse_preview("job-1", 1, 4, 28, &small), "preview");
    static const char *const vkeys[] = {"id", "index", "step", "steps", "format", "width", "height", "b64", NULL};
    expect_keys(j, vkeys);
    cr_expect_str_eq(json_string_value(json_object_get(j, "format")), "jpeg");
    expect_b64(json_string_value(json_object_get(j, "b64")), png_bytes, 100);
    json_decref(j);

    api_image img = {png_bytes, sizeof png_bytes, 43, API_FORMAT_PNG, 512, 512};
    j = sse_data(api_sse_image("job-1", 1, &img), "image");
    static const char *const ikeys[] = {"id", "index", "b64", "seed", "format", "width", "height", NULL};
    expect_keys(j, ikeys);
    cr_expect_eq(json_integer_value(json_object_get(j, "seed")), 43);
    expect_b64(json_string_value(json_object_get(j, "b64")), png_bytes, sizeof png_bytes);
    json_decref(j);

    j = sse_data(api_sse_done("job-1", "default", 2, &metrics), "done");
    static const char *const dkeys[] = {"id", "model", "n", "metrics", NULL};
    expect_keys(j, dkeys);
    expect_metrics(json_object_get(j, "metrics"));
    json_decref(j);

    j = sse_data(api_sse_error(API_ERR_TIMEOUT, NULL), "error");
    json_t *e = json_object_get(j, "error");
    cr_expect_str_eq(json_string_value(json_object_get(e, "code")), "timeout_error.timeout");
    cr_expect_str_eq(json_string_value(json_object_get(e, "message")), api_error_message(API_ERR_TIMEOUT));
    json_decref(j);
    j = sse_data(api_sse_error(API_ERR_ENGINE, "CUDA out of memory\n(worker 0)"), "error");
    cr_expect_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
                     "CUDA out of memory\n(worker 0)", "a newline is escaped inside the data line");
    json_decref(j);

    char *s = api_sse_event("custom", "{\"a\":1}");
    cr_expect_str_eq(s, "event: custom\ndata: {\"a\":1}\n\n");
    free(s);
    cr_expect_null(api_sse_event("x", "a\nb"));
    cr_expect_null(api_sse_event("x\n", "{}"));
    cr_expect_null(api_sse_event("x", "a\rb"));
    cr_expect_str_eq(API_SSE_PING, ": ping\n\n");
}

Test(api_response, job_status)
{
    api_job_status js = {.id = "job-7", .model = "default", .state = API_JOB_QUEUED,
                         .created = 1700000002, .queue_position = 2, .step = 0, .steps = 28, .n = 1};
    char *s = api_job_status_json(&js);
    json_t *j = load(s);
    static const char *const keys[] = {"id", "object", "model", "state", "created",
                                       "queue_position", "progress", "n", "images_done", NULL};
    expect_keys(j, keys);
    cr_expect_str_eq(json_string_value(json_object_get(j, "state")), "queued");
    cr_expect_str_eq(json_string_value(json_object_get(j, "object")), "job");
    cr_expect_eq(json_integer_value(json_object_get(j, "queue_position")), 2);
    json_t *p = json_object_get(j, "progress");
    static const char *const pkeys[] = {"step", "steps", NULL};
    expect_keys(p, pkeys);
    cr_expect_eq(json_integer_value(json_object_get(p, "steps")), 28);
    json_decref(j);
    free(s);

    js.state = API_JOB_RUNNING;
    js.step = 9;
    s = api_job_status_json(&js);
    j = load(s);
    cr_expect(json_is_null(json_object_get(j, "queue_position")), "null unless queued");
    cr_expect_eq(json_integer_value(json_object_get(json_object_get(j, "progress"), "step")), 9);
    cr_expect_null(json_object_get(j, "error"));
    json_decref(j);
    free(s);

    js.state = API_JOB_CANCELED;
    js.error = API_ERR_CANCELED;
    s = api_job_status_json(&js);
    j = load(s);
    cr_expect_str_eq(json_string_value(json_object_get(j, "state")), "canceled");
    json_t *e = json_object_get(j, "error");
    static const char *const ekeys[] = {"code", "type", "message", NULL};
    expect_keys(e, ekeys);
    cr_expect_str_eq(json_string_value(json_object_get(e, "code")), "canceled_error.canceled");
    json_decref(j);
    free(s);

    js.state = API_JOB_FAILED;
    js.error = API_ERR_ENGINE;
    js.error_message = "worker 1: out of memory";
    s = api_job_status_json(&js);
    j = load(s);
    cr_expect_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
                     "worker 1: out of memory");
    json_decref(j);
    free(s);

    cr_expect_str_eq(api_job_state_name(API_JOB_DONE), "done");
    cr_expect_str_eq(api_job_state_name(API_JOB_FAILED), "failed");
    cr_expect_null(api_job_status_json(NULL));
}

Test(api_response, models_list)
{
    api_model_info models[2] = {
        {"default", 1700000003, "hybrid", 37, 18, 1024, 1024, 28, 7.0, 1},
        {"tiny", 1700000004, "softmax", 4, 0, 64, 64, 4, 1.5, 0},
    };
    char *s = api_models_list(models, 2);
    json_t *j = load(s);
    static const char *const keys[] = {"object", "data", NULL};
    expect_keys(j, keys);
    cr_expect_str_eq(json_string_value(json_object_get(j, "object")), "list");
    json_t *data = json_object_get(j, "data");
    cr_assert_eq(json_array_size(data), 2);
    static const char *const mkeys[] = {"id", "object", "created", "owned_by", "kind",
                                        "attention_modules", "ttt_modules", "default_width",
                                        "default_height", "default_steps", "default_guidance",
                                        "ready", NULL};
    json_t *m0 = json_array_get(data, 0), *m1 = json_array_get(data, 1);
    expect_keys(m0, mkeys);
    cr_expect_str_eq(json_string_value(json_object_get(m0, "object")), "model");
    cr_expect_str_eq(json_string_value(json_object_get(m0, "owned_by")), "tttd");
    cr_expect_str_eq(json_string_value(json_object_get(m0, "kind")), "hybrid");
    cr_expect_eq(json_integer_value(json_object_get(m0, "ttt_modules")), 18);
    cr_expect(json_is_true(json_object_get(m0, "ready")));
    cr_expect(json_is_false(json_object_get(m1, "ready")));
    cr_expect_float_eq(json_number_value(json_object_get(m1, "default_guidance")), 1.5, 1e-12);
    json_decref(j);
    free(s);
    s = api_models_list(NULL, 0);
    j = load(s);
    cr_expect_eq(json_array_size(json_object_get(j, "data")), 0);
    json_decref(j);
    free(s);
}
