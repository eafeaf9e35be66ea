/*
 * test_integration_metadata.c - generation metadata in the images of a real `tttd serve` on
 * loopback (issue 15, "Metadata"): a PNG answer carries A1111's "parameters" text chunk and a
 * "tttd" iTXt JSON chunk (decoded with libspng), a JPEG answer the parameters as EXIF
 * UserComment (parsed by hand); "metadata": false on /v1/generate and /sdapi/v1/txt2img drops
 * them, the OpenAI route refuses the field and keeps the server's default, and
 * `tttd serve --no-metadata` turns the default off ("metadata": true still asks for it).
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spng.h>

#include "tests/server/integration_util.h"
#include "tests/common/test_util.h"

static it_server srv;

static void stop_server(void)
{
    if (srv.pid > 0)
        it_server_stop(&srv, 5000);
}

TestSuite(serve_metadata, .fini = stop_server, .timeout = 90);

#define SMALL "\"width\":32,\"height\":48,\"steps\":2"
#define INFO_41 "a lighthouse\nNegative prompt: fog\nSteps: 2, Sampler: Euler, CFG scale: 3.5, " \
                "Seed: 41, Size: 32x48, Model: default"

/* The image of an answer: "images"[i]["b64"] (native), "images"[i] (A1111) or "data"[i]
 * ["b64_json"] (OpenAI), decoded. */
static unsigned char *image_of(const it_response *r, size_t i, size_t *len)
{
    cr_assert_eq(r->status, 200, "%ld %s", r->status, r->body);
    json_t *j = it_json(r);
    json_t *v = json_object_get(j, "images");
    const char *b64;
    if (v && json_is_string(json_array_get(v, i)))
        b64 = json_string_value(json_array_get(v, i));
    else if (v)
        b64 = json_string_value(json_object_get(json_array_get(v, i), "b64"));
    else
        b64 = json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), i),
                                                "b64_json"));
    cr_assert(b64, "no image %zu in %.200s", i, r->body);
    unsigned char *img = it_b64_decode(b64, len);
    cr_assert(img);
    json_decref(j);
    return img;
}

/* The request's PNG, its "parameters" text (NULL when none). */
static char *parameters_of(const it_response *r, size_t i)
{
    size_t len;
    unsigned char *png = image_of(r, i, &len);
    char *p = tu_png_text(png, len, "parameters", NULL);
    free(png);
    return p;
}

static unsigned be16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }
static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A JPEG's EXIF UserComment after its 8-byte code (malloc'd, NUL-terminated), or NULL. */
static char *jpeg_comment(const unsigned char *jpg, size_t len)
{
    cr_assert(len > 12 && jpg[0] == 0xFF && jpg[1] == 0xD8, "not a JPEG");
    if (jpg[2] != 0xFF || jpg[3] != 0xE1 || memcmp(jpg + 6, "Exif\0\0", 6))
        return NULL;
    const unsigned char *t = jpg + 12;
    cr_assert_eq(memcmp(t, "MM\0\x2A", 4), 0);
    const unsigned char *ifd0 = t + be32(t + 4);
    cr_assert_eq(be16(ifd0 + 2), 0x8769);
    const unsigned char *exif = t + be32(ifd0 + 10);
    cr_assert_eq(be16(exif + 2), 0x9286);
    uint32_t n = be32(exif + 6);
    const unsigned char *c = t + be32(exif + 10);
    cr_assert(c + n <= jpg + len);
    cr_assert_eq(memcmp(c, "ASCII\0\0\0", 8), 0);
    return strndup((const char *)c + 8, n - 8);
}

Test(serve_metadata, png_jpeg_and_the_request_field)
{
    it_server_start(&srv, NULL);
    /* Native, PNG: the A1111 text of each image (its own seed) and tttd's JSON. */
    it_response r = it_http(&srv, "POST", "/v1/generate",
                            "{\"prompt\":\"a lighthouse\",\"negative_prompt\":\"fog\"," SMALL
                            ",\"guidance\":3.5,\"seed\":41,\"n\":2}",
                            NULL);
    char *p = parameters_of(&r, 0);
    cr_assert_str_eq(p, INFO_41);
    free(p);
    p = parameters_of(&r, 1);
    cr_assert(p && strstr(p, "Seed: 42, Size: 32x48"), "%s", p);
    free(p);
    size_t len;
    unsigned char *png = image_of(&r, 0, &len);
    char *js = tu_png_text(png, len, "tttd", NULL);
    json_t *m = json_loads(js, 0, NULL);
    cr_assert(json_is_object(m), "tttd chunk: %s", js);
    cr_assert_str_eq(json_string_value(json_object_get(m, "prompt")), "a lighthouse");
    cr_assert_str_eq(json_string_value(json_object_get(m, "negative_prompt")), "fog");
    cr_assert_eq(json_integer_value(json_object_get(m, "seed")), 41);
    cr_assert_eq(json_integer_value(json_object_get(m, "steps")), 2);
    cr_assert_float_eq(json_number_value(json_object_get(m, "guidance")), 3.5, 1e-9);
    cr_assert_eq(json_integer_value(json_object_get(m, "width")), 32);
    cr_assert_eq(json_integer_value(json_object_get(m, "height")), 48);
    cr_assert_str_eq(json_string_value(json_object_get(m, "model")), "default");
    cr_assert(json_is_string(json_object_get(m, "tttd_version")));
    json_decref(m), free(js), free(png);
    it_response_free(&r);

    /* Native, JPEG: the same text as EXIF UserComment. */
    r = it_http(&srv, "POST", "/v1/generate",
                "{\"prompt\":\"a lighthouse\",\"negative_prompt\":\"fog\"," SMALL
                ",\"guidance\":3.5,\"seed\":41,\"format\":\"jpeg\"}",
                NULL);
    unsigned char *jpg = image_of(&r, 0, &len);
    char *c = jpeg_comment(jpg, len);
    cr_assert_str_eq(c, INFO_41);
    free(c), free(jpg);
    it_response_free(&r);

    /* "metadata": false: neither. */
    r = it_http(&srv, "POST", "/v1/generate",
                "{\"prompt\":\"a lighthouse\"," SMALL ",\"seed\":41,\"metadata\":false}", NULL);
    png = image_of(&r, 0, &len);
    cr_assert_null(tu_png_text(png, len, "parameters", NULL));
    cr_assert_null(tu_png_text(png, len, "tttd", NULL));
    free(png);
    it_response_free(&r);
    r = it_http(&srv, "POST", "/v1/generate",
                "{\"prompt\":\"a lighthouse\"," SMALL
                ",\"format\":\"jpeg\",\"metadata\":false}", NULL);
    jpg = image_of(&r, 0, &len);
    cr_assert_null(jpeg_comment(jpg, len));
    free(jpg);
    it_response_free(&r);

    /* A1111's txt2img: on by default, "metadata": false drops it. */
    r = it_http(&srv, "POST", "/sdapi/v1/txt2img",
                "{\"prompt\":\"a lighthouse\",\"negative_prompt\":\"fog\"," SMALL
                ",\"cfg_scale\":3.5,\"seed\":41}",
                NULL);
    p = parameters_of(&r, 0);
    cr_assert_str_eq(p, INFO_41);
    free(p);
    it_response_free(&r);
    r = it_http(&srv, "POST", "/sdapi/v1/txt2img",
                "{\"prompt\":\"a lighthouse\"," SMALL ",\"metadata\":false}", NULL);
    cr_assert_null(parameters_of(&r, 0));
    it_response_free(&r);

    /* A wrong type names the field. */
    r = it_http(&srv, "POST", "/v1/generate", "{\"prompt\":\"x\",\"metadata\":1}", NULL);
    const char *msg = it_expect_error(&r, 422, "invalid_request_error.field_type");
    cr_assert(strstr(msg, "metadata"), "%s", msg);
    it_response_free(&r);

    /* OpenAI's route has no such field; it keeps the server's default (on). */
    r = it_http(&srv, "POST", "/v1/images/generations",
                "{\"prompt\":\"x\",\"size\":\"32x48\",\"metadata\":false}", NULL);
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "metadata"), "%s", r.body);
    it_response_free(&r);
    r = it_http(&srv, "POST", "/v1/images/generations",
                "{\"prompt\":\"x\",\"size\":\"32x48\",\"steps\":2,\"seed\":7}", NULL);
    p = parameters_of(&r, 0);
    cr_assert(p && strstr(p, "x\nSteps: 2, Sampler: Euler,") && strstr(p, "Seed: 7,"), "%s", p);
    free(p);
    it_response_free(&r);
}

Test(serve_metadata, no_metadata_flag_turns_the_default_off)
{
    it_server_start(&srv, "--no-metadata", NULL);
    it_response r = it_http(&srv, "POST", "/v1/generate",
                            "{\"prompt\":\"a lighthouse\"," SMALL ",\"seed\":41}", NULL);
    cr_assert_null(parameters_of(&r, 0));
    it_response_free(&r);
    r = it_http(&srv, "POST", "/v1/images/generations",
                "{\"prompt\":\"x\",\"size\":\"32x48\",\"steps\":2}", NULL);
    cr_assert_null(parameters_of(&r, 0));
    it_response_free(&r);
    r = it_http(&srv, "POST", "/sdapi/v1/txt2img", "{\"prompt\":\"x\"," SMALL "}", NULL);
    cr_assert_null(parameters_of(&r, 0));
    it_response_free(&r);

    /* A request may still ask for it. */
    r = it_http(&srv, "POST", "/v1/generate",
                "{\"prompt\":\"a lighthouse\",\"negative_prompt\":\"fog\"," SMALL
                ",\"guidance\":3.5,\"seed\":41,\"metadata\":true}",
                NULL);
    char *p = parameters_of(&r, 0);
    cr_assert_str_eq(p, INFO_41);
    free(p);
    it_response_free(&r);
}
