/*
 * test_request.c - api_parse_generate and api_parse_openai_images: defaults, every field valid
 * and invalid (the message must name the field), unknown fields, JSON types, bounds, the pixel
 * limit, bad JSON and UTF-8, the OpenAI mapping; then Content-Type and Accept negotiation.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "api/request.h"

static api_limits lim;
static api_defaults def;

static void setup(void)
{
    api_limits_init(&lim);
    api_defaults_init(&def);
}

TestSuite(api_request, .init = setup);

/* Parses body (native when openai == 0); returns the parser's result. */
static int parse(int openai, const char *body, api_generate_request *r, api_err *code, char *msg)
{
    *code = API_OK;
    int rc = openai ? api_parse_openai_images(body, strlen(body), &lim, &def, r, code, msg, 256)
                    : api_parse_generate(body, strlen(body), &lim, &def, r, code, msg, 256);
    if (rc == 0)
        cr_assert_eq(*code, API_OK, "success must leave the code alone");
    return rc;
}

Test(api_request, minimal_body_takes_the_defaults)
{
    api_generate_request r;
    api_err code;
    char msg[256];
    cr_assert_eq(parse(0, "{\"prompt\": \"a cat\"}", &r, &code, msg), 0, "%s", msg);
    cr_expect_eq(r.kind, API_REQUEST_NATIVE);
    cr_expect_str_eq(r.prompt, "a cat");
    cr_expect_null(r.negative_prompt);
    cr_expect_eq(r.width, 1024);
    cr_expect_eq(r.height, 1024);
    cr_expect_eq(r.steps, 28);
    cr_expect_float_eq(r.guidance, 7.0, 1e-12);
    cr_expect_eq(r.has_seed, 0);
    cr_expect_eq(r.n, 1);
    cr_expect_null(r.model);
    cr_expect_eq(r.format, API_FORMAT_PNG);
    cr_expect_eq(r.has_format, 0);
    cr_expect_eq(r.quality, 90);
    cr_expect_eq(r.stream, 0);
    cr_expect_eq(r.timeout_ms, 0);
    cr_expect_eq(r.preview_every, 0);
    cr_expect_str_eq(r.size, "1024x1024");
    api_generate_request_free(&r);
    cr_expect_null(r.prompt, "free zeroes the struct");
    api_generate_request_free(&r); /* twice is harmless */
    api_generate_request_free(NULL);
}

Test(api_request, server_defaults_are_used)
{
    def.width = 512;
    def.height = 768;
    def.steps = 4;
    def.guidance = 1.0;
    def.format = API_FORMAT_JPEG;
    def.quality = 75;
    def.timeout_ms = 5000;
    api_generate_request r;
    api_err code;
    char msg[256];
    cr_assert_eq(parse(0, "{\"prompt\": \"x\"}", &r, &code, msg), 0, "%s", msg);
    cr_expect_eq(r.width, 512);
    cr_expect_eq(r.height, 768);
    cr_expect_eq(r.steps, 4);
    cr_expect_float_eq(r.guidance, 1.0, 1e-12);
    cr_expect_eq(r.format, API_FORMAT_JPEG);
    cr_expect_eq(r.quality, 75);
    cr_expect_eq(r.timeout_ms, 5000);
    api_generate_request_free(&r);
}

Test(api_request, every_field_valid)
{
    const char *body =
        "{\"prompt\": \"a red fox, \\u00e9t\\u00e9 \\ud83e\\udd8a\", \"negative_prompt\": \"blur\","
        " \"width\": 512, \"height\": 768, \"steps\": 12, \"guidance\": 4.5, \"seed\": 42,"
        " \"n\": 3, \"model\": \"sd35m\", \"format\": \"jpeg\", \"quality\": 77, \"stream\": true,"
        " \"timeout_ms\": 30000, \"preview_every\": 4}";
    api_generate_request r;
    api_err code;
    char msg[256];
    cr_assert_eq(parse(0, body, &r, &code, msg), 0, "%s", msg);
    cr_expect_str_eq(r.prompt, "a red fox, \xc3\xa9t\xc3\xa9 \xf0\x9f\xa6\x8a");
    cr_expect_str_eq(r.negative_prompt, "blur");
    cr_expect_eq(r.width, 512);
    cr_expect_eq(r.height, 768);
    cr_expect_eq(r.steps, 12);
    cr_expect_float_eq(r.guidance, 4.5, 1e-12);
    cr_expect_eq(r.has_seed, 1);
    cr_expect_eq(r.seed, 42);
    cr_expect_eq(r.n, 3);
    cr_expect_str_eq(r.model, "sd35m");
    cr_expect_eq(r.format, API_FORMAT_JPEG);
    cr_expect_eq(r.has_format, 1);
    cr_expect_eq(r.quality, 77);
    cr_expect_eq(r.stream, 1);
    cr_expect_eq(r.timeout_ms, 30000);
    cr_expect_eq(r.preview_every, 4);
    cr_expect_str_eq(r.size, "512x768");
    api_generate_request_free(&r);
}

Test(api_request, bounds_are_inclusive)
{
    const char *body = "{\"prompt\": \"p\", \"width\": 16, \"height\": 2048, \"steps\": 100,"
                       " \"guidance\": 0, \"seed\": 9223372036854775807, \"n\": 8,"
                       " \"quality\": 1, \"timeout_ms\": 600000, \"preview_every\": 0,"
                       " \"negative_prompt\": \"\"}";
    api_generate_request r;
    api_err code;
    char msg[256];
    cr_assert_eq(parse(0, body, &r, &code, msg), 0, "%s", msg);
    cr_expect_eq(r.width, 16);
    cr_expect_eq(r.height, 2048);
    cr_expect_eq(r.steps, 100);
    cr_expect_float_eq(r.guidance, 0.0, 1e-12);
    cr_expect_eq(r.seed, (uint64_t)INT64_MAX);
    cr_expect_eq(r.n, 8);
    cr_expect_eq(r.quality, 1);
    cr_expect_eq(r.timeout_ms, 600000);
    cr_expect_str_eq(r.negative_prompt, "");
    api_generate_request_free(&r);
    cr_assert_eq(parse(0, "{\"prompt\": \"p\", \"guidance\": 30, \"quality\": 100}", &r, &code,
                       msg), 0, "%s", msg);
    api_generate_request_free(&r);
}

Test(api_request, null_means_absent)
{
    api_generate_request r;
    api_err code;
    char msg[256];
    cr_assert_eq(parse(0, "{\"prompt\": \"p\", \"seed\": null, \"model\": null, \"width\": null}",
                       &r, &code, msg), 0, "%s", msg);
    cr_expect_eq(r.has_seed, 0);
    cr_expect_null(r.model);
    cr_expect_eq(r.width, 1024);
    api_generate_request_free(&r);
    cr_expect_neq(parse(0, "{\"prompt\": null}", &r, &code, msg), 0);
    cr_expect_eq(code, API_ERR_FIELD_MISSING);
}

/* -1 asks for a random seed on both routes, as absent or null does. */
Test(api_request, seed_minus_one_means_random)
{
    api_generate_request r;
    api_err code;
    char msg[256];
    cr_assert_eq(parse(0, "{\"prompt\": \"p\", \"seed\": -1}", &r, &code, msg), 0, "%s", msg);
    cr_expect_eq(r.has_seed, 0);
    api_generate_request_free(&r);
    cr_assert_eq(parse(1, "{\"prompt\": \"p\", \"seed\": -1}", &r, &code, msg), 0, "%s", msg);
    cr_expect_eq(r.has_seed, 0);
    api_generate_request_free(&r);
    cr_assert_eq(parse(0, "{\"prompt\": \"p\", \"seed\": 0}", &r, &code, msg), 0, "%s", msg);
    cr_expect_eq(r.has_seed, 1);
    cr_expect_eq(r.seed, 0);
    api_generate_request_free(&r);
}

/* One bad body: the error code and words the message must hold (the field's name first). */
typedef struct bad_case {
    const char *body;
    api_err code;
    const char *needle1, *needle2;
} bad_case;

static void check_bad(int openai, const bad_case *cases, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        api_generate_request r;
        api_err code;
        char msg[256];
        int rc = parse(openai, cases[i].body, &r, &code, msg);
        cr_expect_eq(rc, -1, "accepted: %s", cases[i].body);
        if (rc != -1) {
            api_generate_request_free(&r);
            continue;
        }
        cr_expect_null(r.prompt, "a failed parse leaves the struct zeroed");
        cr_expect_eq(code, cases[i].code, "%s: code %d, want %d (%s)", cases[i].body, code,
                     cases[i].code, msg);
        cr_expect(strstr(msg, cases[i].needle1) != NULL, "%s: message \"%s\" lacks \"%s\"",
                  cases[i].body, msg, cases[i].needle1);
        if (cases[i].needle2)
            cr_expect(strstr(msg, cases[i].needle2) != NULL, "%s: message \"%s\" lacks \"%s\"",
                      cases[i].body, msg, cases[i].needle2);
    }
}

Test(api_request, wrong_types_name_the_field_and_the_type)
{
    static const bad_case cases[] = {
        {"{\"prompt\": 5}", API_ERR_FIELD_TYPE, "prompt", "expected a string"},
        {"{\"prompt\": [\"a\"]}", API_ERR_FIELD_TYPE, "prompt", "got an array"},
        {"{\"prompt\": \"p\", \"negative_prompt\": {}}", API_ERR_FIELD_TYPE, "negative_prompt", "string"},
        {"{\"prompt\": \"p\", \"width\": \"512\"}", API_ERR_FIELD_TYPE, "width", "expected an integer"},
        {"{\"prompt\": \"p\", \"width\": 512.0}", API_ERR_FIELD_TYPE, "width", "integer"},
        {"{\"prompt\": \"p\", \"height\": true}", API_ERR_FIELD_TYPE, "height", "got a boolean"},
        {"{\"prompt\": \"p\", \"steps\": 2.5}", API_ERR_FIELD_TYPE, "steps", "integer"},
        {"{\"prompt\": \"p\", \"guidance\": \"7\"}", API_ERR_FIELD_TYPE, "guidance", "expected a number"},
        {"{\"prompt\": \"p\", \"seed\": \"42\"}", API_ERR_FIELD_TYPE, "seed", "integer"},
        {"{\"prompt\": \"p\", \"seed\": 1.5}", API_ERR_FIELD_TYPE, "seed", "integer"},
        {"{\"prompt\": \"p\", \"n\": \"2\"}", API_ERR_FIELD_TYPE, "n:", "integer"},
        {"{\"prompt\": \"p\", \"model\": 3}", API_ERR_FIELD_TYPE, "model", "string"},
        {"{\"prompt\": \"p\", \"format\": 1}", API_ERR_FIELD_TYPE, "format", "string"},
        {"{\"prompt\": \"p\", \"quality\": \"high\"}", API_ERR_FIELD_TYPE, "quality", "integer"},
        {"{\"prompt\": \"p\", \"stream\": \"true\"}", API_ERR_FIELD_TYPE, "stream", "expected a boolean"},
        {"{\"prompt\": \"p\", \"stream\": 1}", API_ERR_FIELD_TYPE, "stream", "boolean"},
        {"{\"prompt\": \"p\", \"timeout_ms\": [1]}", API_ERR_FIELD_TYPE, "timeout_ms", "integer"},
        {"{\"prompt\": \"p\", \"preview_every\": false}", API_ERR_FIELD_TYPE, "preview_every", "integer"},
    };
    check_bad(0, cases, sizeof cases / sizeof cases[0]);
}

Test(api_request, out_of_range_names_the_field_and_the_bounds)
{
    static const bad_case cases[] = {
        {"{\"prompt\": \"\"}", API_ERR_FIELD_RANGE, "prompt", "empty"},
        {"{\"prompt\": \"p\", \"width\": 1000}", API_ERR_FIELD_RANGE, "width", "multiple of 16"},
        {"{\"prompt\": \"p\", \"width\": 0}", API_ERR_FIELD_RANGE, "width", "got 0"},
        {"{\"prompt\": \"p\", \"width\": -16}", API_ERR_FIELD_RANGE, "width", "-16"},
        {"{\"prompt\": \"p\", \"width\": 2064}", API_ERR_FIELD_RANGE, "width", "2048"},
        {"{\"prompt\": \"p\", \"height\": 8}", API_ERR_FIELD_RANGE, "height", "multiple of 16"},
        {"{\"prompt\": \"p\", \"height\": 99999999999}", API_ERR_FIELD_RANGE, "height", "99999999999"},
        {"{\"prompt\": \"p\", \"steps\": 0}", API_ERR_FIELD_RANGE, "steps", "between 1 and 100"},
        {"{\"prompt\": \"p\", \"steps\": 101}", API_ERR_FIELD_RANGE, "steps", "101"},
        {"{\"prompt\": \"p\", \"guidance\": -0.5}", API_ERR_FIELD_RANGE, "guidance", "between 0 and 30"},
        {"{\"prompt\": \"p\", \"guidance\": 30.01}", API_ERR_FIELD_RANGE, "guidance", "30.01"},
        {"{\"prompt\": \"p\", \"seed\": -2}", API_ERR_FIELD_RANGE, "seed", "between -1 and"},
        {"{\"prompt\": \"p\", \"n\": 0}", API_ERR_FIELD_RANGE, "n:", "between 1 and 8"},
        {"{\"prompt\": \"p\", \"n\": 9}", API_ERR_FIELD_RANGE, "n:", "9"},
        {"{\"prompt\": \"p\", \"model\": \"\"}", API_ERR_FIELD_RANGE, "model", "empty"},
        {"{\"prompt\": \"p\", \"format\": \"gif\"}", API_ERR_FIELD_RANGE, "format", "\"gif\""},
        {"{\"prompt\": \"p\", \"format\": \"PNG\"}", API_ERR_FIELD_RANGE, "format", "\"png\", \"jpeg\""},
        {"{\"prompt\": \"p\", \"format\": \"webp\"}", API_ERR_FIELD_UNSUPPORTED, "format", "webp"},
        {"{\"prompt\": \"p\", \"quality\": 0}", API_ERR_FIELD_RANGE, "quality", "between 1 and 100"},
        {"{\"prompt\": \"p\", \"quality\": 101}", API_ERR_FIELD_RANGE, "quality", "101"},
        {"{\"prompt\": \"p\", \"timeout_ms\": 0}", API_ERR_FIELD_RANGE, "timeout_ms", "between 1 and 600000"},
        {"{\"prompt\": \"p\", \"timeout_ms\": 600001}", API_ERR_FIELD_RANGE, "timeout_ms", "600001"},
        {"{\"prompt\": \"p\", \"preview_every\": -1}", API_ERR_FIELD_RANGE, "preview_every", "between 0 and 100"},
        {"{\"prompt\": \"p\", \"preview_every\": 101}", API_ERR_FIELD_RANGE, "preview_every", "101"},
    };
    check_bad(0, cases, sizeof cases / sizeof cases[0]);
}

Test(api_request, unknown_missing_and_malformed)
{
    static const bad_case cases[] = {
        {"{\"prompt\": \"p\", \"widht\": 512}", API_ERR_UNKNOWN_FIELD, "widht", "unknown field"},
        {"{\"size\": \"512x512\", \"prompt\": \"p\"}", API_ERR_UNKNOWN_FIELD, "size", NULL},
        {"{\"Prompt\": \"p\"}", API_ERR_UNKNOWN_FIELD, "Prompt", NULL},
        {"{\"prompt\": \"p\", \"\\u00e9\": 1}", API_ERR_UNKNOWN_FIELD, "\xc3\xa9", NULL},
        {"{}", API_ERR_FIELD_MISSING, "prompt", "required"},
        {"{\"negative_prompt\": \"x\"}", API_ERR_FIELD_MISSING, "prompt", NULL},
        {"", API_ERR_BAD_JSON, "empty", NULL},
        {"{\"prompt\": \"p\"", API_ERR_BAD_JSON, "invalid JSON", "line 1"},
        {"{\"prompt\": \"p\"} x", API_ERR_BAD_JSON, "invalid JSON", NULL},
        {"{\"prompt\": 'p'}", API_ERR_BAD_JSON, "invalid JSON", NULL},
        {"[\"prompt\"]", API_ERR_BAD_JSON, "JSON object", "array"},
        {"\"prompt\"", API_ERR_BAD_JSON, "invalid JSON", NULL}, /* jansson wants an array or object */
        {"{\"prompt\": \"a\", \"prompt\": \"b\"}", API_ERR_BAD_JSON, "duplicate", NULL},
        {"{\"prompt\": \"a\\u0000b\"}", API_ERR_BAD_JSON, "invalid JSON", NULL},
        {"{\"prompt\": \"p\", \"seed\": 18446744073709551615}", API_ERR_BAD_JSON, "invalid JSON", NULL},
        {"{\"prompt\": \"p\", \"guidance\": 1e999}", API_ERR_BAD_JSON, "invalid JSON", NULL},
        {"{\"prompt\": \"\xff\xfe\"}", API_ERR_BAD_UTF8, "invalid JSON", NULL},
        {"{\"prompt\": \"\xc0\xaf\"}", API_ERR_BAD_UTF8, "invalid JSON", NULL},          /* overlong */
        {"{\"prompt\": \"\xed\xa0\x80\"}", API_ERR_BAD_UTF8, "invalid JSON", NULL},      /* surrogate */
        {"{\"prompt\": \"\\ud800\"}", API_ERR_BAD_JSON, "invalid JSON", NULL},           /* lone escape */
    };
    check_bad(0, cases, sizeof cases / sizeof cases[0]);
}

Test(api_request, an_unknown_field_is_reported_before_a_later_bad_one)
{
    api_generate_request r;
    api_err code;
    char msg[256];
    cr_assert_eq(parse(0, "{\"prompt\": \"p\", \"colour\": 1, \"width\": \"x\"}", &r, &code, msg), -1);
    cr_expect_eq(code, API_ERR_UNKNOWN_FIELD);
    cr_expect(strstr(msg, "colour") != NULL, "%s", msg);
}

Test(api_request, a_long_unknown_field_name_is_cut_on_a_character_boundary)
{
    char body[512];
    char name[201];
    /* "é" is two bytes: a cut at byte 64 of "xé..." would fall inside a character. */
    name[0] = 'x';
    for (int i = 1; i < 199; i += 2) {
        name[i] = (char)0xc3;
        name[i + 1] = (char)0xa9;
    }
    name[199] = '\0';
    snprintf(body, sizeof body, "{\"prompt\": \"p\", \"%s\": 1}", name);
    api_generate_request r;
    api_err code;
    char msg[256];
    cr_assert_eq(parse(0, body, &r, &code, msg), -1);
    cr_expect_eq(code, API_ERR_UNKNOWN_FIELD);
    cr_expect(strstr(msg, "...") != NULL, "%s", msg);
    cr_expect_lt(strlen(msg), 100);
    /* No lone lead byte before the ellipsis. */
    const char *dots = strstr(msg, "...");
    cr_expect_eq((unsigned char)dots[-1], 0xa9);
}

Test(api_request, prompt_length_is_in_bytes)
{
    lim.max_prompt_bytes = 8;
    api_generate_request r;
    api_err code;
    char msg[256];
    cr_expect_eq(parse(0, "{\"prompt\": \"12345678\"}", &r, &code, msg), 0, "%s", msg);
    api_generate_request_free(&r);
    /* Four two-byte characters are 8 bytes; five are 10. */
    cr_expect_eq(parse(0, "{\"prompt\": \"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}", &r, &code, msg), 0);
    api_generate_request_free(&r);
    cr_expect_eq(parse(0, "{\"prompt\": \"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}", &r, &code, msg), -1);
    cr_expect_eq(code, API_ERR_FIELD_RANGE);
    cr_expect(strstr(msg, "prompt: must be at most 8 bytes, got 10") != NULL, "%s", msg);
    cr_expect_eq(parse(0, "{\"prompt\": \"p\", \"negative_prompt\": \"123456789\"}", &r, &code, msg), -1);
    cr_expect(strstr(msg, "negative_prompt") != NULL, "%s", msg);
}

Test(api_request, pixel_limit_and_size_multiple_come_from_the_limits)
{
    api_generate_request r;
    api_err code;
    char msg[256];
    /* 2048 x 2048 = 4 Mpx is the default limit exactly. */
    cr_expect_eq(parse(0, "{\"prompt\": \"p\", \"width\": 2048, \"height\": 2048}", &r, &code, msg), 0, "%s", msg);
    api_generate_request_free(&r);
    lim.max_pixels = 1024 * 1024;
    cr_expect_eq(parse(0, "{\"prompt\": \"p\", \"width\": 2048, \"height\": 1024}", &r, &code, msg), -1);
    cr_expect_eq(code, API_ERR_FIELD_RANGE);
    cr_expect(strstr(msg, "width, height") && strstr(msg, "2097152") && strstr(msg, "1048576"), "%s", msg);
    /* A side given alone meets the default of the other. */
    cr_expect_eq(parse(0, "{\"prompt\": \"p\", \"width\": 1040}", &r, &code, msg), -1);
    lim.size_multiple = 64;
    cr_expect_eq(parse(0, "{\"prompt\": \"p\", \"width\": 528, \"height\": 512}", &r, &code, msg), -1);
    cr_expect(strstr(msg, "multiple of 64") != NULL, "%s", msg);
    cr_expect_eq(parse(0, "{\"prompt\": \"p\", \"width\": 576, \"height\": 512}", &r, &code, msg), 0, "%s", msg);
    api_generate_request_free(&r);
    /* Defaults that break a limit are refused too (the server must keep them inside). */
    def.width = 1000;
    cr_expect_eq(parse(0, "{\"prompt\": \"p\"}", &r, &code, msg), -1);
    cr_expect(strstr(msg, "width") != NULL, "%s", msg);
}

Test(api_request, parse_accepts_bodies_without_nul_and_a_null_message_buffer)
{
    const char body[] = "{\"prompt\": \"p\"}GARBAGE";
    api_generate_request r;
    api_err code;
    cr_expect_eq(api_parse_generate(body, 15, &lim, &def, &r, &code, NULL, 0), 0);
    api_generate_request_free(&r);
    cr_expect_eq(api_parse_generate(body, sizeof body - 1, &lim, &def, &r, &code, NULL, 0), -1);
    cr_expect_eq(code, API_ERR_BAD_JSON);
    cr_expect_eq(api_parse_generate(NULL, 0, &lim, &def, &r, NULL, NULL, 0), -1);
}

/* ---- OpenAI Images API ---- */

Test(api_request, openai_minimal_and_full)
{
    api_generate_request r;
    api_err code;
    char msg[256];
    cr_assert_eq(parse(1, "{\"prompt\": \"a cat\"}", &r, &code, msg), 0, "%s", msg);
    cr_expect_eq(r.kind, API_REQUEST_OPENAI);
    cr_expect_eq(r.width, 1024);
    cr_expect_eq(r.height, 1024);
    cr_expect_str_eq(r.size, "1024x1024");
    cr_expect_str_eq(r.quality_label, "auto");
    cr_expect_eq(r.format, API_FORMAT_PNG);
    cr_expect_eq(r.n, 1);
    api_generate_request_free(&r);

    const char *full =
        "{\"prompt\": \"a cat\", \"n\": 2, \"size\": \"512x768\", \"response_format\": \"b64_json\","
        " \"output_format\": \"jpeg\", \"output_compression\": 60, \"model\": \"sd35m\","
        " \"quality\": \"high\", \"style\": \"natural\", \"background\": \"opaque\","
        " \"moderation\": \"low\", \"user\": \"u-1\", \"stream\": false, \"partial_images\": 2,"
        " \"negative_prompt\": \"blur\", \"steps\": 8, \"guidance\": 3, \"seed\": 7,"
        " \"timeout_ms\": 1000}";
    cr_assert_eq(parse(1, full, &r, &code, msg), 0, "%s", msg);
    cr_expect_eq(r.n, 2);
    cr_expect_eq(r.width, 512);
    cr_expect_eq(r.height, 768);
    cr_expect_str_eq(r.size, "512x768");
    cr_expect_eq(r.format, API_FORMAT_JPEG);
    cr_expect_eq(r.quality, 60);
    cr_expect_str_eq(r.model, "sd35m");
    cr_expect_str_eq(r.quality_label, "high");
    cr_expect_str_eq(r.negative_prompt, "blur");
    cr_expect_eq(r.steps, 8);
    cr_expect_float_eq(r.guidance, 3.0, 1e-12);
    cr_expect_eq(r.seed, 7);
    cr_expect_eq(r.has_seed, 1);
    cr_expect_eq(r.timeout_ms, 1000);
    cr_expect_eq(r.stream, 0);
    api_generate_request_free(&r);
}

Test(api_request, openai_size_auto_compression_zero_and_model_aliases)
{
    def.width = 768;
    def.height = 512;
    api_generate_request r;
    api_err code;
    char msg[256];
    cr_assert_eq(parse(1, "{\"prompt\": \"p\", \"size\": \"auto\", \"output_compression\": 0,"
                          " \"model\": \"gpt-image-1\"}", &r, &code, msg), 0, "%s", msg);
    cr_expect_str_eq(r.size, "768x512");
    cr_expect_eq(r.quality, 1);
    cr_expect_null(r.model, "OpenAI's model names mean the default model");
    api_generate_request_free(&r);
    cr_assert_eq(parse(1, "{\"prompt\": \"p\", \"model\": \"dall-e-3\"}", &r, &code, msg), 0);
    cr_expect_null(r.model);
    api_generate_request_free(&r);
    cr_assert_eq(parse(1, "{\"prompt\": \"p\", \"output_compression\": 100}", &r, &code, msg), 0);
    cr_expect_eq(r.quality, 100);
    api_generate_request_free(&r);
}

Test(api_request, openai_bad_fields)
{
    static const bad_case cases[] = {
        {"{\"prompt\": \"p\", \"response_format\": \"url\"}", API_ERR_FIELD_UNSUPPORTED, "response_format", "b64_json"},
        {"{\"prompt\": \"p\", \"response_format\": \"png\"}", API_ERR_FIELD_RANGE, "response_format", NULL},
        {"{\"prompt\": \"p\", \"output_format\": \"webp\"}", API_ERR_FIELD_UNSUPPORTED, "output_format", "webp"},
        {"{\"prompt\": \"p\", \"output_format\": \"bmp\"}", API_ERR_FIELD_RANGE, "output_format", NULL},
        {"{\"prompt\": \"p\", \"output_compression\": 101}", API_ERR_FIELD_RANGE, "output_compression", "between 0 and 100"},
        {"{\"prompt\": \"p\", \"output_compression\": -1}", API_ERR_FIELD_RANGE, "output_compression", NULL},
        {"{\"prompt\": \"p\", \"size\": \"1024X1024\"}", API_ERR_FIELD_RANGE, "size", "WIDTHxHEIGHT"},
        {"{\"prompt\": \"p\", \"size\": \"01024x1024\"}", API_ERR_FIELD_RANGE, "size", NULL},
        {"{\"prompt\": \"p\", \"size\": \"1024x\"}", API_ERR_FIELD_RANGE, "size", NULL},
        {"{\"prompt\": \"p\", \"size\": \"x1024\"}", API_ERR_FIELD_RANGE, "size", NULL},
        {"{\"prompt\": \"p\", \"size\": \"1024x1024x\"}", API_ERR_FIELD_RANGE, "size", NULL},
        {"{\"prompt\": \"p\", \"size\": \"1024x1024 \"}", API_ERR_FIELD_RANGE, "size", NULL},
        {"{\"prompt\": \"p\", \"size\": \"-16x16\"}", API_ERR_FIELD_RANGE, "size", NULL},
        {"{\"prompt\": \"p\", \"size\": \"100000x16\"}", API_ERR_FIELD_RANGE, "size", NULL},
        {"{\"prompt\": \"p\", \"size\": \"\"}", API_ERR_FIELD_RANGE, "size", NULL},
        {"{\"prompt\": \"p\", \"size\": \"1000x1024\"}", API_ERR_FIELD_RANGE, "size (width)", "multiple of 16"},
        {"{\"prompt\": \"p\", \"size\": \"1024x4096\"}", API_ERR_FIELD_RANGE, "size (height)", "2048"},
        {"{\"prompt\": \"p\", \"size\": 1024}", API_ERR_FIELD_TYPE, "size", "string"},
        {"{\"prompt\": \"p\", \"n\": 11}", API_ERR_FIELD_RANGE, "n:", NULL},
        {"{\"prompt\": \"p\", \"quality\": 90}", API_ERR_FIELD_TYPE, "quality", "string"},
        {"{\"prompt\": \"p\", \"quality\": \"ultra\"}", API_ERR_FIELD_RANGE, "quality", "\"hd\""},
        {"{\"prompt\": \"p\", \"style\": \"bold\"}", API_ERR_FIELD_RANGE, "style", "\"vivid\""},
        {"{\"prompt\": \"p\", \"background\": \"transparent\"}", API_ERR_FIELD_UNSUPPORTED, "background", "transparent"},
        {"{\"prompt\": \"p\", \"background\": \"green\"}", API_ERR_FIELD_RANGE, "background", NULL},
        {"{\"prompt\": \"p\", \"moderation\": \"none\"}", API_ERR_FIELD_RANGE, "moderation", NULL},
        {"{\"prompt\": \"p\", \"user\": 5}", API_ERR_FIELD_TYPE, "user", NULL},
        {"{\"prompt\": \"p\", \"stream\": true}", API_ERR_FIELD_UNSUPPORTED, "stream", "/v1/generate"},
        {"{\"prompt\": \"p\", \"partial_images\": 4}", API_ERR_FIELD_RANGE, "partial_images", NULL},
        {"{\"prompt\": \"p\", \"width\": 512}", API_ERR_UNKNOWN_FIELD, "width", NULL},
        {"{\"prompt\": \"p\", \"format\": \"png\"}", API_ERR_UNKNOWN_FIELD, "format", NULL},
        {"{\"prompt\": \"p\", \"preview_every\": 1}", API_ERR_UNKNOWN_FIELD, "preview_every", NULL},
        {"{\"n\": 1}", API_ERR_FIELD_MISSING, "prompt", NULL},
        {"{\"prompt\": \"p\", \"size\": \"2048x2048\", \"steps\": 0}", API_ERR_FIELD_RANGE, "steps", NULL},
    };
    check_bad(1, cases, sizeof cases / sizeof cases[0]);
    /* The pixel limit names "size" on this endpoint. */
    lim.max_pixels = 512 * 512;
    static const bad_case px[] = {
        {"{\"prompt\": \"p\", \"size\": \"1024x512\"}", API_ERR_FIELD_RANGE, "size:", "pixels"},
    };
    check_bad(1, px, 1);
}

Test(api_request, unit_seeds_wrap_inside_63_bits)
{
    cr_expect_eq(api_unit_seed(42, 0), 42);
    cr_expect_eq(api_unit_seed(42, 3), 45);
    cr_expect_eq(api_unit_seed((uint64_t)INT64_MAX, 1), 0);
    cr_expect_eq(api_unit_seed((uint64_t)INT64_MAX - 1, 3), 1);
}

Test(api_request, formats)
{
    api_format f;
    cr_expect_eq(api_format_parse("png", &f), 0);
    cr_expect_eq(f, API_FORMAT_PNG);
    cr_expect_eq(api_format_parse("jpeg", &f), 0);
    cr_expect_eq(f, API_FORMAT_JPEG);
    cr_expect_eq(api_format_parse("webp", &f), -1);
    cr_expect_eq(api_format_parse(NULL, &f), -1);
    cr_expect_str_eq(api_format_name(API_FORMAT_JPEG), "jpeg");
    cr_expect_str_eq(api_format_mime(API_FORMAT_PNG), "image/png");
    cr_expect_str_eq(api_format_mime(API_FORMAT_JPEG), "image/jpeg");
}

/* ---- Content-Type and Accept ---- */

Test(api_request, content_type)
{
    cr_expect_eq(api_content_type_is_json(NULL), 0);
    cr_expect_eq(api_content_type_is_json(""), 0);
    cr_expect_eq(api_content_type_is_json("application/json"), 0);
    cr_expect_eq(api_content_type_is_json("Application/JSON; charset=UTF-8"), 0);
    cr_expect_eq(api_content_type_is_json("application/json;charset=\"utf-8\""), 0);
    cr_expect_eq(api_content_type_is_json("application/json; foo=bar; charset=utf8"), 0);
    cr_expect_eq(api_content_type_is_json("application/x-www-form-urlencoded"), 0, "curl -d");
    cr_expect_eq(api_content_type_is_json("text/plain;charset=UTF-8"), 0, "fetch() of a string");
    cr_expect_eq(api_content_type_is_json("application/json; charset=latin1"), -1);
    cr_expect_eq(api_content_type_is_json("multipart/form-data; boundary=x"), -1);
    cr_expect_eq(api_content_type_is_json("application/jsonx"), -1);
    cr_expect_eq(api_content_type_is_json("text/html"), -1);
    cr_expect_eq(api_content_type_is_json("application/xml"), -1);
}

typedef struct accept_case {
    const char *accept;
    int stream, n, has_format;
    api_format format;
    int rc;
    api_answer answer;
    api_format out_format;
} accept_case;

Test(api_request, accept_chooses_the_answer)
{
    static const accept_case cases[] = {
        {NULL, 0, 1, 0, API_FORMAT_PNG, 0, API_ANSWER_JSON, API_FORMAT_PNG},
        {"", 0, 1, 0, API_FORMAT_PNG, 0, API_ANSWER_JSON, API_FORMAT_PNG},
        {"*/*", 0, 1, 0, API_FORMAT_PNG, 0, API_ANSWER_JSON, API_FORMAT_PNG},
        {"application/json", 0, 4, 0, API_FORMAT_PNG, 0, API_ANSWER_JSON, API_FORMAT_PNG},
        {"image/png", 0, 1, 0, API_FORMAT_PNG, 0, API_ANSWER_IMAGE, API_FORMAT_PNG},
        {"image/jpeg", 0, 1, 0, API_FORMAT_PNG, 0, API_ANSWER_IMAGE, API_FORMAT_JPEG},
        {"image/*", 0, 1, 0, API_FORMAT_JPEG, 0, API_ANSWER_IMAGE, API_FORMAT_JPEG},
        {"image/*", 0, 1, 0, API_FORMAT_PNG, 0, API_ANSWER_IMAGE, API_FORMAT_PNG},
        {"image/png, image/jpeg;q=0.9", 0, 1, 0, API_FORMAT_JPEG, 0, API_ANSWER_IMAGE, API_FORMAT_PNG},
        {"image/png;q=0.5, image/jpeg", 0, 1, 0, API_FORMAT_PNG, 0, API_ANSWER_IMAGE, API_FORMAT_JPEG},
        {"image/jpeg", 0, 1, 1, API_FORMAT_JPEG, 0, API_ANSWER_IMAGE, API_FORMAT_JPEG},
        {"image/png", 0, 1, 1, API_FORMAT_JPEG, -1, API_ANSWER_JSON, API_FORMAT_JPEG},
        {"image/png, application/json;q=0.1", 0, 1, 1, API_FORMAT_JPEG, 0, API_ANSWER_JSON, API_FORMAT_JPEG},
        /* A browser's <img> Accept. */
        {"image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8", 0, 1, 0, API_FORMAT_PNG, 0, API_ANSWER_IMAGE, API_FORMAT_PNG},
        /* A browser's navigation Accept: text/html wins there, JSON is what this route has. */
        {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", 0, 1, 0, API_FORMAT_PNG, 0, API_ANSWER_JSON, API_FORMAT_PNG},
        {"application/json, image/png", 0, 1, 0, API_FORMAT_PNG, 0, API_ANSWER_JSON, API_FORMAT_PNG},
        {"application/json;q=0.5, image/png", 0, 1, 0, API_FORMAT_PNG, 0, API_ANSWER_IMAGE, API_FORMAT_PNG},
        {"image/png ; q=0.2 , application/json ; q=0.1", 0, 1, 0, API_FORMAT_PNG, 0, API_ANSWER_IMAGE, API_FORMAT_PNG},
        {"image/png;q=0", 0, 1, 0, API_FORMAT_PNG, -1, API_ANSWER_JSON, API_FORMAT_PNG},
        {"image/png", 0, 2, 0, API_FORMAT_PNG, -1, API_ANSWER_JSON, API_FORMAT_PNG},
        {"image/png, */*;q=0.1", 0, 2, 0, API_FORMAT_PNG, 0, API_ANSWER_JSON, API_FORMAT_PNG},
        {"text/html", 0, 1, 0, API_FORMAT_PNG, -1, API_ANSWER_JSON, API_FORMAT_PNG},
        {"application/*", 0, 1, 0, API_FORMAT_PNG, 0, API_ANSWER_JSON, API_FORMAT_PNG},
        {"*/*;q=0", 0, 1, 0, API_FORMAT_PNG, -1, API_ANSWER_JSON, API_FORMAT_PNG},
        {"garbage", 0, 1, 0, API_FORMAT_PNG, -1, API_ANSWER_JSON, API_FORMAT_PNG},
        {"image/png;q=abc", 0, 1, 0, API_FORMAT_PNG, -1, API_ANSWER_JSON, API_FORMAT_PNG},
        {"text/event-stream", 1, 4, 0, API_FORMAT_PNG, 0, API_ANSWER_SSE, API_FORMAT_PNG},
        {"*/*", 1, 1, 0, API_FORMAT_PNG, 0, API_ANSWER_SSE, API_FORMAT_PNG},
        {NULL, 1, 1, 0, API_FORMAT_PNG, 0, API_ANSWER_SSE, API_FORMAT_PNG},
        {"application/json", 1, 1, 0, API_FORMAT_PNG, -1, API_ANSWER_JSON, API_FORMAT_PNG},
        {"text/*", 1, 1, 0, API_FORMAT_PNG, 0, API_ANSWER_SSE, API_FORMAT_PNG},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const accept_case *c = &cases[i];
        api_generate_request r;
        memset(&r, 0, sizeof r);
        r.stream = c->stream;
        r.n = c->n;
        r.has_format = c->has_format;
        r.format = c->format;
        api_answer a = (api_answer)-1;
        api_err code = API_OK;
        char msg[256] = "";
        int rc = api_accept_choose(c->accept, &r, &a, &code, msg, sizeof msg);
        cr_expect_eq(rc, c->rc, "case %zu (%s): rc %d (%s)", i, c->accept ? c->accept : "NULL", rc, msg);
        if (rc == 0) {
            cr_expect_eq(a, c->answer, "case %zu (%s): answer %d", i, c->accept ? c->accept : "NULL", a);
            if (a == API_ANSWER_IMAGE)
                cr_expect_eq(r.format, c->out_format, "case %zu: format", i);
        } else {
            cr_expect_eq(code, API_ERR_NOT_ACCEPTABLE, "case %zu", i);
            cr_expect_neq(msg[0], '\0', "case %zu: a message", i);
        }
    }
}

Test(api_request, defaults_must_lie_inside_the_limits)
{
    char msg[256];
    cr_expect_eq(api_defaults_check(&def, &lim, msg, sizeof msg), 0);
    api_defaults d = def;
    d.steps = 101;
    cr_expect_eq(api_defaults_check(&d, &lim, msg, sizeof msg), -1);
    cr_expect(strstr(msg, "steps") != NULL, "%s", msg);
    d = def;
    d.width = 1000;
    cr_expect_eq(api_defaults_check(&d, &lim, msg, sizeof msg), -1);
    cr_expect(strstr(msg, "width") != NULL, "%s", msg);
    d = def;
    d.guidance = 31;
    cr_expect_eq(api_defaults_check(&d, &lim, msg, sizeof msg), -1);
    d = def;
    d.n = 9;
    cr_expect_eq(api_defaults_check(&d, &lim, msg, sizeof msg), -1);
    d = def;
    d.quality = 0;
    cr_expect_eq(api_defaults_check(&d, &lim, NULL, 0), -1);
    d = def;
    d.timeout_ms = lim.max_timeout_ms + 1;
    cr_expect_eq(api_defaults_check(&d, &lim, msg, sizeof msg), -1);
    api_limits l = lim;
    l.max_pixels = 512 * 512;
    cr_expect_eq(api_defaults_check(&def, &l, msg, sizeof msg), -1);
    cr_expect(strstr(msg, "pixel") != NULL, "%s", msg);
    l = lim;
    l.size_multiple = 0;
    cr_expect_eq(api_defaults_check(&def, &l, msg, sizeof msg), -1);
    cr_expect(strstr(msg, "limits") != NULL, "%s", msg);
}

/* A failed parse names the field at fault (the OpenAI route's "param"); "" when none is. */
Test(api_request, failure_names_the_param)
{
    static const struct {
        int openai;
        const char *body, *param;
    } cases[] = {
        {1, "{\"prompt\": \"p\", \"n\": 0}", "n"},
        {1, "{\"prompt\": \"p\", \"size\": \"7x7\"}", "size"},
        {1, "{\"prompt\": \"p\", \"zzz\": 1}", "zzz"},
        {1, "{\"n\": 1}", "prompt"},
        {1, "{\"prompt\": ", ""},
        {1, "[]", ""},
        {0, "{\"prompt\": \"p\", \"height\": 8}", "height"},
        {0, "{\"prompt\": \"p\", \"seed\": -2}", "seed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        api_generate_request r;
        api_err code;
        char msg[256];
        cr_assert_neq(parse(cases[i].openai, cases[i].body, &r, &code, msg), 0, "%s",
                      cases[i].body);
        cr_expect_str_eq(r.error_param, cases[i].param, "%s: param", cases[i].body);
    }
}
