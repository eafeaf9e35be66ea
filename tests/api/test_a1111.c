/*
 * test_a1111.c - api_parse_a1111_txt2img (A1111's field names, seed -1, batch_size x n_iter, the
 * one sampler, unknown fields ignored and listed) and the answers of api/a1111.c (txt2img's
 * parameters and info, the small GET answers) parsed back as JSON.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/a1111.h"

static api_limits lim;
static api_defaults def;

static void setup(void)
{
    api_limits_init(&lim);
    api_defaults_init(&def);
    def.width = 64;
    def.height = 32;
}

TestSuite(api_a1111, .init = setup);

static int parse(const char *body, api_generate_request *r, api_err *code, char *msg)
{
    *code = API_OK;
    return api_parse_a1111_txt2img(body, strlen(body), &lim, &def, r, code, msg, 256);
}

Test(api_a1111, fields_and_defaults)
{
    api_generate_request r;
    api_err code;
    char msg[256];
    cr_assert_eq(parse("{\"prompt\":\"p\",\"negative_prompt\":\"n\",\"cfg_scale\":4.5,"
                       "\"seed\":9,\"batch_size\":2,\"n_iter\":3,\"steps\":5,"
                       "\"sampler_index\":\"k_euler\"}", &r, &code, msg), 0, "%s", msg);
    cr_assert_eq(r.kind, API_REQUEST_A1111);
    cr_assert_str_eq(r.prompt, "p");
    cr_assert_str_eq(r.negative_prompt, "n");
    cr_assert_float_eq(r.guidance, 4.5, 1e-12);
    cr_assert(r.has_seed);
    cr_assert_eq(r.seed, 9);
    cr_assert_eq(r.n, 6, "batch_size x n_iter");
    cr_assert_eq(r.batch_size, 2);
    cr_assert_eq(r.n_iter, 3);
    cr_assert_eq(r.steps, 5);
    cr_assert_eq(r.width, 64, "the server's default, not A1111's 512");
    cr_assert_eq(r.height, 32);
    cr_assert_str_eq(r.ignored, "");
    api_generate_request_free(&r);

    cr_assert_eq(parse("{\"prompt\":\"p\",\"seed\":-1}", &r, &code, msg), 0, "%s", msg);
    cr_assert_eq(r.has_seed, 0, "-1 is random");
    cr_assert_eq(r.n, 1);
    api_generate_request_free(&r);
}

Test(api_a1111, unknown_fields_are_listed_not_refused)
{
    api_generate_request r;
    api_err code;
    char msg[256];
    cr_assert_eq(parse("{\"prompt\":\"p\",\"styles\":[],\"tiling\":false,"
                       "\"override_settings\":{\"sd_model_checkpoint\":\"x\"}}", &r, &code, msg),
                 0, "%s", msg);
    cr_assert_str_eq(r.ignored, "styles, tiling, override_settings");
    api_generate_request_free(&r);

    /* Many: the list is cut with "..." and stays a string. */
    char body[4096] = "{\"prompt\":\"p\"";
    for (int i = 0; i < 60; i++)
        sprintf(body + strlen(body), ",\"some_long_field_name_%02d\":1", i);
    strcat(body, "}");
    cr_assert_eq(parse(body, &r, &code, msg), 0, "%s", msg);
    size_t l = strlen(r.ignored);
    cr_assert_lt(l, sizeof r.ignored);
    cr_assert_str_eq(r.ignored + l - 3, "...", "%s", r.ignored);
    api_generate_request_free(&r);
}

Test(api_a1111, errors_name_the_field)
{
    static const struct {
        const char *body, *field;
        api_err code;
    } cases[] = {
        {"{\"prompt\":\"p\",\"sampler_name\":\"Euler a\"}", "sampler_name: ", API_ERR_FIELD_RANGE},
        {"{\"prompt\":\"p\",\"seed\":-5}", "seed: ", API_ERR_FIELD_RANGE},
        {"{\"prompt\":\"p\",\"seed\":1.5}", "seed: ", API_ERR_FIELD_TYPE},
        {"{\"prompt\":\"p\",\"cfg_scale\":31}", "cfg_scale: ", API_ERR_FIELD_RANGE},
        {"{\"prompt\":\"p\",\"batch_size\":4,\"n_iter\":3}", "batch_size, n_iter: ",
         API_ERR_FIELD_RANGE},
        {"{\"prompt\":\"p\",\"n_iter\":0}", "n_iter: ", API_ERR_FIELD_RANGE},
        {"{\"steps\":2}", "prompt: ", API_ERR_FIELD_MISSING},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        api_generate_request r;
        api_err code;
        char msg[256];
        cr_assert_eq(parse(cases[i].body, &r, &code, msg), -1, "%s", cases[i].body);
        cr_assert_eq(code, cases[i].code, "%s: %s", cases[i].body, msg);
        cr_assert(strstr(msg, cases[i].field) == msg, "%s: %s", cases[i].body, msg);
    }
}

Test(api_a1111, txt2img_answer)
{
    api_generate_request r;
    api_err code;
    char msg[256];
    cr_assert_eq(parse("{\"prompt\":\"q\",\"seed\":-1,\"batch_size\":2,\"steps\":3}", &r, &code,
                       msg), 0, "%s", msg);
    static const uint8_t a[] = {1, 2, 3}, b[] = {4};
    api_image imgs[2] = {{.data = a, .len = 3, .seed = 7}, {.data = b, .len = 1, .seed = 8}};
    char *s = api_a1111_txt2img_response(&r, "q", NULL, "m", 0, imgs, 2);
    cr_assert(s);
    json_t *j = json_loads(s, 0, NULL);
    cr_assert(j, "%s", s);
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(j, "images"), 0)), "AQID");
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(j, "images"), 1)), "BA==");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "parameters"), "seed")),
                 -1);
    json_t *info = json_loads(json_string_value(json_object_get(j, "info")), 0, NULL);
    cr_assert(info);
    cr_assert_eq(json_integer_value(json_object_get(info, "seed")), 7);
    cr_assert_eq(json_integer_value(json_array_get(json_object_get(info, "all_seeds"), 1)), 8);
    cr_assert_str_eq(json_string_value(json_object_get(info, "job_timestamp")),
                     "19700101000000");
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(info, "infotexts"), 0)),
                     "q\nSteps: 3, Sampler: Euler, CFG scale: 7, Seed: 7, Size: 64x32, Model: m");
    json_decref(info);
    json_decref(j);
    free(s);
    api_generate_request_free(&r);
}
