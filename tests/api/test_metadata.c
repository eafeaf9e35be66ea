/*
 * test_metadata.c - api_meta_infotext (A1111's "parameters" text: the Negative prompt line only
 * when there is one) and api_meta_json (tttd's JSON of the request as understood).
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/metadata.h"

Test(api_metadata, infotext_in_a1111_format)
{
    api_image_meta m = {.prompt = "a lighthouse", .negative_prompt = "fog", .seed = 42,
                        .steps = 28, .guidance = 7.0, .width = 1024, .height = 768,
                        .model = "default"};
    char *s = api_meta_infotext(&m);
    cr_assert_str_eq(s, "a lighthouse\nNegative prompt: fog\nSteps: 28, Sampler: Euler, CFG "
                        "scale: 7, Seed: 42, Size: 1024x768, Model: default");
    free(s);
    m.negative_prompt = "";
    m.guidance = 4.5;
    s = api_meta_infotext(&m);
    cr_assert_str_eq(s, "a lighthouse\nSteps: 28, Sampler: Euler, CFG scale: 4.5, Seed: 42, "
                        "Size: 1024x768, Model: default");
    free(s);
    m.negative_prompt = NULL;
    m.model = NULL;
    s = api_meta_infotext(&m);
    cr_assert_str_eq(s, "a lighthouse\nSteps: 28, Sampler: Euler, CFG scale: 4.5, Seed: 42, "
                        "Size: 1024x768, Model: ");
    free(s);
}

Test(api_metadata, json_of_the_request)
{
    api_image_meta m = {.prompt = "caf\xc3\xa9", .negative_prompt = NULL,
                        .seed = ((uint64_t)1 << 53) - 1, .steps = 4, .guidance = (float)4.2,
                        .width = 64, .height = 32, .model = "tiny"};
    char *s = api_meta_json(&m);
    json_t *v = json_loads(s, 0, NULL);
    cr_assert(json_is_object(v), "%s", s);
    cr_assert_str_eq(json_string_value(json_object_get(v, "prompt")), "caf\xc3\xa9");
    cr_assert_str_eq(json_string_value(json_object_get(v, "negative_prompt")), "");
    cr_assert_eq(json_integer_value(json_object_get(v, "seed")), ((json_int_t)1 << 53) - 1);
    cr_assert_eq(json_integer_value(json_object_get(v, "steps")), 4);
    cr_assert_eq(json_integer_value(json_object_get(v, "width")), 64);
    cr_assert_eq(json_integer_value(json_object_get(v, "height")), 32);
    cr_assert_str_eq(json_string_value(json_object_get(v, "model")), "tiny");
    cr_assert_str_eq(json_string_value(json_object_get(v, "sampler")), "Euler");
    cr_assert_str_eq(json_string_value(json_object_get(v, "tttd_version")), TTTD_VERSION);
    /* A float's guidance prints as the number asked for, not its float expansion. */
    cr_assert(strstr(s, "\"guidance\":4.2,") || strstr(s, "\"guidance\":4.2}"), "%s", s);
    json_decref(v);
    free(s);
}
