/*
 * test_integration_a1111.c - AUTOMATIC1111's API (/sdapi/v1/...) on a real `tttd serve` on
 * loopback (see test_integration.c for the set-up): txt2img's answer (images, parameters, info
 * with the seeds) and its images equal to the native route's for the same request, seed -1,
 * unknown fields ignored with one log line, the error cases (each naming its field), img2img's
 * refusal, sd-models, samplers, options (sd_model_checkpoint picks the model), progress while a
 * job runs, API keys, and a replay of the requests Open WebUI's A1111 integration sends.
 */
#include <criterion/criterion.h>

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

TestSuite(serve_a1111, .fini = stop_server, .timeout = 90);

#define SMALL "\"width\":32,\"height\":48,\"steps\":2"

static void check_png(const char *b64, int w, int h)
{
    cr_assert(b64, "an image is a base64 string");
    size_t len;
    unsigned char *png = it_b64_decode(b64, &len);
    cr_assert(png, "not base64: %.40s", b64);
    int pw, ph;
    cr_assert(it_png_size(png, len, &pw, &ph), "not a PNG");
    cr_assert_eq(pw, w);
    cr_assert_eq(ph, h);
    free(png);
}

/* The answer's "info": a string holding a JSON object (as A1111 answers it). */
static json_t *info_of(json_t *answer)
{
    const char *s = json_string_value(json_object_get(answer, "info"));
    cr_assert(s, "info is a string");
    json_t *info = json_loads(s, 0, NULL);
    cr_assert(json_is_object(info), "info holds a JSON object: %s", s);
    return info;
}

/* How many lines of the server's log hold text. */
static int log_count(const char *text)
{
    char *log = it_server_log(&srv);
    int n = 0;
    for (const char *p = log; (p = strstr(p, text)); p += strlen(text))
        n++;
    free(log);
    return n;
}

Test(serve_a1111, txt2img_answer_and_same_images_as_native)
{
    it_server_start(&srv, NULL);
    it_response r = it_http(&srv, "POST", "/sdapi/v1/txt2img",
                            "{\"prompt\":\"two red cubes\",\"negative_prompt\":\"blue\"," SMALL
                            ",\"cfg_scale\":3.5,\"seed\":41,\"batch_size\":2,\"n_iter\":1,"
                            "\"sampler_name\":\"Euler\"}",
                            NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    json_t *j = it_json(&r);
    json_t *images = json_object_get(j, "images");
    cr_assert_eq(json_array_size(images), 2);
    for (size_t i = 0; i < 2; i++)
        check_png(json_string_value(json_array_get(images, i)), 32, 48);

    json_t *p = json_object_get(j, "parameters");
    cr_assert_str_eq(json_string_value(json_object_get(p, "prompt")), "two red cubes");
    cr_assert_str_eq(json_string_value(json_object_get(p, "negative_prompt")), "blue");
    cr_assert_eq(json_integer_value(json_object_get(p, "width")), 32);
    cr_assert_eq(json_integer_value(json_object_get(p, "height")), 48);
    cr_assert_eq(json_integer_value(json_object_get(p, "steps")), 2);
    cr_assert_float_eq(json_number_value(json_object_get(p, "cfg_scale")), 3.5, 1e-9);
    cr_assert_eq(json_integer_value(json_object_get(p, "seed")), 41);
    cr_assert_eq(json_integer_value(json_object_get(p, "batch_size")), 2);
    cr_assert_eq(json_integer_value(json_object_get(p, "n_iter")), 1);
    cr_assert_str_eq(json_string_value(json_object_get(p, "sampler_name")), "Euler");

    json_t *info = info_of(j);
    cr_assert_eq(json_integer_value(json_object_get(info, "seed")), 41);
    json_t *seeds = json_object_get(info, "all_seeds");
    cr_assert_eq(json_array_size(seeds), 2);
    cr_assert_eq(json_integer_value(json_array_get(seeds, 0)), 41);
    cr_assert_eq(json_integer_value(json_array_get(seeds, 1)), 42);
    cr_assert_str_eq(json_string_value(json_object_get(info, "prompt")), "two red cubes");
    cr_assert_eq(json_array_size(json_object_get(info, "all_prompts")), 2);
    cr_assert_str_eq(json_string_value(json_object_get(info, "sd_model_name")), "default");
    cr_assert_str_eq(json_string_value(json_object_get(info, "sampler_name")), "Euler");
    const char *text = json_string_value(json_array_get(json_object_get(info, "infotexts"), 1));
    cr_assert(text && strstr(text, "two red cubes\nNegative prompt: blue\nSteps: 2, Sampler: "
                             "Euler, CFG scale: 3.5, Seed: 42, Size: 32x48, Model: default"),
              "infotext: %s", text);

    /* The same request on the native route: the same pictures (one engine path). */
    it_response n = it_http(&srv, "POST", "/v1/generate",
                            "{\"prompt\":\"two red cubes\",\"negative_prompt\":\"blue\"," SMALL
                            ",\"guidance\":3.5,\"seed\":41,\"n\":2}",
                            NULL);
    cr_assert_eq(n.status, 200, "%ld %s", n.status, n.body);
    json_t *nj = it_json(&n);
    for (size_t i = 0; i < 2; i++)
        cr_assert_str_eq(json_string_value(json_array_get(images, i)),
                         json_string_value(json_object_get(
                             json_array_get(json_object_get(nj, "images"), i), "b64")),
                         "image %zu differs from /v1/generate's", i);
    json_decref(nj);
    json_decref(info);
    json_decref(j);
    it_response_free(&n);
    it_response_free(&r);
}

Test(serve_a1111, seed_minus_one_batches_and_unknown_fields)
{
    it_server_start(&srv, NULL);
    it_response r = it_http(&srv, "POST", "/sdapi/v1/txt2img",
                            "{\"prompt\":\"a blue square\"," SMALL ",\"seed\":-1,"
                            "\"batch_size\":1,\"n_iter\":3,\"styles\":[],\"restore_faces\":false,"
                            "\"tiling\":false,\"subseed\":-1,\"override_settings\":{},"
                            "\"send_images\":true,\"save_images\":false}",
                            NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    json_t *j = it_json(&r);
    cr_assert_eq(json_array_size(json_object_get(j, "images")), 3, "batch_size x n_iter images");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "parameters"), "seed")),
                 -1, "the request as understood: a random seed");
    json_t *info = info_of(j);
    json_t *seeds = json_object_get(info, "all_seeds");
    cr_assert_eq(json_array_size(seeds), 3);
    json_int_t s0 = json_integer_value(json_array_get(seeds, 0));
    cr_assert_geq(s0, 0, "a picked seed is no -1");
    cr_assert_eq(json_integer_value(json_object_get(info, "seed")), s0);
    cr_assert_eq(json_integer_value(json_object_get(info, "n_iter")), 3);
    /* One log line names every ignored field. */
    cr_assert_eq(log_count("ignored A1111 field(s) this server does not use: styles, "
                           "restore_faces, tiling, subseed, override_settings, send_images, "
                           "save_images"), 1);
    json_decref(info);
    json_decref(j);
    it_response_free(&r);
}

static void expect_error(const char *path, const char *body, long status, const char *code,
                         const char *field)
{
    it_response r = it_http(&srv, "POST", path, body, NULL);
    const char *msg = it_expect_error(&r, status, code);
    if (field)
        cr_assert(strstr(msg, field), "%s: the message names %s: %s", body, field, msg);
    it_response_free(&r);
}

Test(serve_a1111, errors_name_the_field)
{
    it_server_start(&srv, NULL);
    const char *t = "/sdapi/v1/txt2img";
    expect_error(t, "{\"prompt\":\"x\",\"sampler_name\":\"DPM++ 2M Karras\"}", 422,
                 "invalid_request_error.field_range", "sampler_name: ");
    expect_error(t, "{\"prompt\":\"x\",\"sampler_index\":\"Euler a\"}", 422,
                 "invalid_request_error.field_range", "sampler_index: ");
    expect_error(t, "{\"prompt\":\"x\",\"width\":33}", 422, "invalid_request_error.field_range",
                 "width: ");
    expect_error(t, "{\"prompt\":\"x\",\"cfg_scale\":\"7\"}", 422,
                 "invalid_request_error.field_type", "cfg_scale: ");
    expect_error(t, "{\"prompt\":\"x\",\"seed\":-2}", 422, "invalid_request_error.field_range",
                 "seed: ");
    expect_error(t, "{\"prompt\":\"x\",\"batch_size\":3,\"n_iter\":3}", 422,
                 "invalid_request_error.field_range", "batch_size, n_iter: ");
    expect_error(t, "{\"prompt\":\"x\",\"steps\":0}", 422, "invalid_request_error.field_range",
                 "steps: ");
    expect_error(t, "{\"negative_prompt\":\"x\"}", 422, "invalid_request_error.field_missing",
                 "prompt: ");
    expect_error(t, "{\"prompt\":", 400, "invalid_request_error.json", NULL);
    expect_error("/sdapi/v1/img2img", "{\"prompt\":\"x\",\"init_images\":[\"iVBORw0KGgo=\"],"
                 "\"denoising_strength\":0.5}", 422, "invalid_request_error.field_unsupported",
                 "init_images: image-to-image is not supported yet");
    expect_error("/sdapi/v1/options", "{\"sd_model_checkpoint\":\"sd_xl_base_1.0\"}", 404,
                 "not_found_error.model", "sd_model_checkpoint: ");
    expect_error("/sdapi/v1/options", "{\"sd_model_checkpoint\":3}", 422,
                 "invalid_request_error.field_type", "sd_model_checkpoint: ");
    expect_error("/sdapi/v1/options", "[1]", 400, "invalid_request_error.json", NULL);

    it_response r = it_http(&srv, "GET", t, NULL, NULL);
    it_expect_error(&r, 405, NULL);
    char allow[32];
    cr_assert(it_header(&r, "Allow", allow, sizeof allow));
    cr_assert_str_eq(allow, "POST");
    it_response_free(&r);
    r = it_http(&srv, "DELETE", "/sdapi/v1/options", NULL, NULL);
    it_expect_error(&r, 405, NULL);
    it_response_free(&r);
    r = it_http(&srv, "GET", "/sdapi/v1/nothing", NULL, NULL);
    it_expect_error(&r, 404, NULL);
    it_response_free(&r);
}

Test(serve_a1111, models_samplers_and_options_pick_the_model)
{
    it_server_start(&srv, "--model", "other=" IT_MODEL_DIR, NULL);
    it_response r = it_http(&srv, "GET", "/sdapi/v1/sd-models", NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    json_t *j = it_json(&r);
    cr_assert_eq(json_array_size(j), 2);
    const char *names[2] = {"default", "other"};
    for (size_t i = 0; i < 2; i++) {
        json_t *m = json_array_get(j, i);
        cr_assert_str_eq(json_string_value(json_object_get(m, "title")), names[i]);
        cr_assert_str_eq(json_string_value(json_object_get(m, "model_name")), names[i]);
        cr_assert_str_eq(json_string_value(json_object_get(m, "filename")), IT_MODEL_DIR);
        cr_assert(json_object_get(m, "hash") && json_object_get(m, "sha256") &&
                  json_object_get(m, "config"), "A1111's fields are all there");
    }
    json_decref(j);
    it_response_free(&r);

    r = it_http(&srv, "GET", "/sdapi/v1/samplers", NULL, NULL);
    cr_assert_eq(r.status, 200);
    j = it_json(&r);
    cr_assert_eq(json_array_size(j), 1, "one sampler");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "name")), "Euler");
    cr_assert(json_is_array(json_object_get(json_array_get(j, 0), "aliases")));
    cr_assert(json_is_object(json_object_get(json_array_get(j, 0), "options")));
    json_decref(j);
    it_response_free(&r);

    r = it_http(&srv, "GET", "/sdapi/v1/options", NULL, NULL);
    cr_assert_eq(r.status, 200);
    j = it_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "sd_model_checkpoint")), "default");
    json_decref(j);
    it_response_free(&r);

    r = it_http(&srv, "POST", "/sdapi/v1/options",
                "{\"sd_model_checkpoint\":\"other\",\"CLIP_stop_at_last_layers\":2}", NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert_str_eq(r.body, "null", "A1111 answers null");
    it_response_free(&r);
    cr_assert_eq(log_count("options: ignored A1111 option(s) this server does not have: "
                           "CLIP_stop_at_last_layers"), 1);

    r = it_http(&srv, "GET", "/sdapi/v1/options", NULL, NULL);
    j = it_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "sd_model_checkpoint")), "other");
    json_decref(j);
    it_response_free(&r);

    r = it_http(&srv, "POST", "/sdapi/v1/txt2img", "{\"prompt\":\"x\"," SMALL "}", NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    j = it_json(&r);
    json_t *info = info_of(j);
    cr_assert_str_eq(json_string_value(json_object_get(info, "sd_model_name")), "other");
    json_decref(info);
    json_decref(j);
    it_response_free(&r);

    /* The native route keeps its own default. */
    r = it_http(&srv, "POST", "/v1/generate", "{\"prompt\":\"x\"," SMALL "}", NULL);
    j = it_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "model")), "default");
    json_decref(j);
    it_response_free(&r);
}

static json_t *progress(void)
{
    it_response r = it_http(&srv, "GET", "/sdapi/v1/progress", NULL, NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    json_t *j = it_json(&r);
    it_response_free(&r);
    cr_assert(json_is_null(json_object_get(j, "current_image")));
    return j;
}

Test(serve_a1111, progress_of_a_running_job)
{
    it_server_start(&srv, "--max-steps", "10000", NULL);
    json_t *j = progress();
    cr_assert_float_eq(json_number_value(json_object_get(j, "progress")), 0.0, 1e-12);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "state"), "job_count")), 0);
    json_decref(j);

    it_request slow = {"POST", "/sdapi/v1/txt2img",
                       "{\"prompt\":\"slow\",\"width\":32,\"height\":48,\"steps\":5000}",
                       {"X-Request-Id: a1111-slow", "Content-Type: application/json", NULL}, 0};
    it_async *a = it_http_async(&srv, &slow);
    /* Polled until the job has made a step (it runs for tens of seconds). */
    double p = 0;
    j = NULL;
    for (int i = 0; i < 400 && p <= 0; i++) {
        it_sleep_ms(50);
        json_decref(j);
        j = progress();
        p = json_number_value(json_object_get(j, "progress"));
    }
    cr_assert(j && p > 0 && p < 1, "progress %g while the job runs", p);
    json_t *state = json_object_get(j, "state");
    cr_assert_eq(json_integer_value(json_object_get(state, "job_count")), 1);
    cr_assert_str_eq(json_string_value(json_object_get(state, "job")), "a1111-slow");
    cr_assert_eq(json_integer_value(json_object_get(state, "sampling_steps")), 5000);
    cr_assert_geq(json_number_value(json_object_get(j, "eta_relative")), 0.0);
    json_decref(j);

    it_response d = it_http(&srv, "DELETE", "/v1/jobs/a1111-slow", NULL, NULL);
    cr_assert_eq(d.status, 200, "%ld %s", d.status, d.body);
    it_response_free(&d);
    it_response r = it_async_wait(a);
    cr_assert_neq(r.status, 200);
    it_response_free(&r);
}

Test(serve_a1111, api_keys_bearer_and_a1111_basic)
{
    it_server_start(&srv, "--api-key", "k-a1111", NULL);
    it_response r = it_http(&srv, "GET", "/sdapi/v1/sd-models", NULL, NULL);
    it_expect_error(&r, 401, NULL);
    it_response_free(&r);
    r = it_http(&srv, "POST", "/sdapi/v1/txt2img", "{\"prompt\":\"x\"," SMALL "}", NULL);
    it_expect_error(&r, 401, NULL);
    it_response_free(&r);
    r = it_http(&srv, "POST", "/sdapi/v1/txt2img", "{\"prompt\":\"x\"," SMALL "}",
                "Authorization: Bearer k-a1111", NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    it_response_free(&r);
    /* A1111's own scheme: HTTP Basic (--api-auth user:password), what Open WebUI sends; the
     * password is the key, the user name is not checked. */
    r = it_http(&srv, "GET", "/sdapi/v1/options", NULL,
                "Authorization: Basic b3BlbndlYnVpOmstYTExMTE=", NULL); /* openwebui:k-a1111 */
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    it_response_free(&r);
    static const char *const refused[] = {
        "Authorization: Basic b3BlbndlYnVpOmstYTExMQ==", /* openwebui:k-a111 */
        "Authorization: Basic ay1hMTExMQ==",       /* no user name and colon */
        "Authorization: Basic !!!!",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        r = it_http(&srv, "GET", "/sdapi/v1/options", NULL, refused[i], NULL);
        it_expect_error(&r, 401, NULL);
        it_response_free(&r);
    }
}

/*
 * Open WebUI's A1111 integration (backend/open_webui/routers/images.py): it checks the URL with
 * GET /sdapi/v1/options, lists GET /sdapi/v1/sd-models (title as the id, model_name as the name),
 * reads the current model from the options' sd_model_checkpoint, and to switch models POSTs the
 * options object it read back with sd_model_checkpoint changed; then it POSTs txt2img with
 * prompt, batch_size, width, height (from its IMAGE_SIZE setting, here 64x64), steps,
 * negative_prompt, cfg_scale, sampler_name and scheduler (its A1111 settings), and reads
 * "images" and "info". Its "authorization" header is empty without credentials.
 */
static const char *const OPEN_WEBUI_TXT2IMG[] = {
    "{\"prompt\": \"a red circle on a blue background\", \"batch_size\": 1, \"width\": 64, "
    "\"height\": 64}",
    "{\"prompt\": \"a green triangle\", \"batch_size\": 2, \"width\": 64, \"height\": 64, "
    "\"steps\": 4, \"negative_prompt\": \"yellow\"}",
    "{\"prompt\": \"a green triangle\", \"batch_size\": 1, \"width\": 64, \"height\": 64, "
    "\"steps\": 4, \"negative_prompt\": \"yellow\", \"cfg_scale\": 7.0, \"sampler_name\": "
    "\"Euler\", \"scheduler\": \"Automatic\"}",
    NULL,
};

Test(serve_a1111, open_webui_replay)
{
    it_server_start(&srv, "--model", "other=" IT_MODEL_DIR, NULL);
    /* Verify the connection. */
    it_response r = it_http(&srv, "GET", "/sdapi/v1/options", NULL, "authorization;", NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    it_response_free(&r);
    /* The model list. */
    r = it_http(&srv, "GET", "/sdapi/v1/sd-models", NULL, "authorization;", NULL);
    json_t *models = it_json(&r);
    it_response_free(&r);
    const char *pick = json_string_value(json_object_get(json_array_get(models, 1), "title"));
    cr_assert_str_eq(pick, "other");
    cr_assert(json_string_value(json_object_get(json_array_get(models, 1), "model_name")));
    /* set_image_model: read the options, change the checkpoint, post them all back. */
    r = it_http(&srv, "GET", "/sdapi/v1/options", NULL, "authorization;", NULL);
    json_t *opts = it_json(&r);
    it_response_free(&r);
    cr_assert_str_neq(json_string_value(json_object_get(opts, "sd_model_checkpoint")), pick);
    json_object_set_new(opts, "sd_model_checkpoint", json_string(pick));
    char *body = json_dumps(opts, 0);
    r = it_http(&srv, "POST", "/sdapi/v1/options", body, "authorization;", NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    it_response_free(&r);
    free(body);
    json_decref(opts);
    json_decref(models);
    /* get_image_model */
    r = it_http(&srv, "GET", "/sdapi/v1/options", NULL, "authorization;", NULL);
    opts = it_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(opts, "sd_model_checkpoint")), "other");
    json_decref(opts);
    it_response_free(&r);

    for (int k = 0; OPEN_WEBUI_TXT2IMG[k]; k++) {
        json_t *req = json_loads(OPEN_WEBUI_TXT2IMG[k], 0, NULL);
        r = it_http(&srv, "POST", "/sdapi/v1/txt2img", OPEN_WEBUI_TXT2IMG[k], "authorization;",
                    NULL);
        cr_assert_eq(r.status, 200, "request %d: %ld %s", k, r.status, r.body);
        json_t *j = it_json(&r);
        json_t *images = json_object_get(j, "images");
        size_t n = (size_t)json_integer_value(json_object_get(req, "batch_size"));
        cr_assert_eq(json_array_size(images), n, "request %d", k);
        for (size_t i = 0; i < n; i++)
            check_png(json_string_value(json_array_get(images, i)), 64, 64);
        /* Open WebUI stores {**data, "info": res["info"]} with each image. */
        json_t *info = info_of(j);
        cr_assert_eq(json_array_size(json_object_get(info, "all_seeds")), n);
        cr_assert_str_eq(json_string_value(json_object_get(info, "sd_model_name")), "other");
        json_decref(info);
        json_decref(j);
        json_decref(req);
        it_response_free(&r);
    }
}
