/*
 * test_errors.c - the error table: every row in enum order with a unique code whose prefix is its
 * type, the statuses the contract promises, the headers that must go with 401/405/429/503, and
 * the bodies api_error_body builds (parsed back with jansson).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/errors.h"

Test(api_errors, table_rows_follow_the_enum_and_codes_are_unique)
{
    for (int i = 0; i < API_ERR_COUNT; i++) {
        const api_error_info *row = api_error_info_get((api_err)i);
        cr_expect_eq(row->err, (api_err)i, "row %d is out of order", i);
        cr_expect(row->code && row->type && row->message && *row->message, "row %d incomplete", i);
        if (i == API_OK)
            continue;
        size_t tl = strlen(row->type);
        cr_expect(strncmp(row->code, row->type, tl) == 0 && row->code[tl] == '.',
                  "code %s must be its type %s plus a detail", row->code, row->type);
        cr_expect_eq(api_error_from_code(row->code), (api_err)i, "%s", row->code);
        for (int j = 0; j < i; j++)
            cr_expect_str_neq(row->code, api_error_info_get((api_err)j)->code);
        cr_expect_str_neq(api_status_reason(row->status), "Unknown", "status %d", row->status);
    }
    cr_expect_eq(api_error_from_code("no.such"), API_ERR_COUNT);
    cr_expect_eq(api_error_from_code(NULL), API_ERR_COUNT);
}

Test(api_errors, statuses_of_the_contract)
{
    static const struct {
        api_err e;
        int status;
    } want[] = {
        {API_ERR_BAD_JSON, 400},          {API_ERR_BAD_UTF8, 400},
        {API_ERR_BODY_TOO_LARGE, 413},    {API_ERR_UNKNOWN_FIELD, 422},
        {API_ERR_FIELD_TYPE, 422},        {API_ERR_FIELD_RANGE, 422},
        {API_ERR_FIELD_MISSING, 422},     {API_ERR_FIELD_UNSUPPORTED, 422},
        {API_ERR_UNSUPPORTED_MEDIA_TYPE, 415}, {API_ERR_NOT_ACCEPTABLE, 406},
        {API_ERR_UNAUTHORIZED, 401},      {API_ERR_NOT_FOUND, 404},
        {API_ERR_JOB_NOT_FOUND, 404},     {API_ERR_MODEL_NOT_FOUND, 404},
        {API_ERR_METHOD_NOT_ALLOWED, 405}, {API_ERR_JOB_FINISHED, 409},
        {API_ERR_QUEUE_FULL, 429},        {API_ERR_MODEL_LOADING, 503},
        {API_ERR_SHUTTING_DOWN, 503},     {API_ERR_OVERLOADED, 503},
        {API_ERR_TIMEOUT, 504},           {API_ERR_CANCELED, 499},
        {API_ERR_INTERNAL, 500},          {API_ERR_ENGINE, 500},
        {API_ERR_BAD_HEADER, 400},        {API_ERR_ORIGIN_FORBIDDEN, 403},
        {API_ERR_MISDIRECTED, 421},       {API_ERR_URI_TOO_LONG, 414},
        {API_ERR_HEADERS_TOO_LARGE, 431},
    };
    cr_assert_eq(sizeof want / sizeof want[0], API_ERR_COUNT - 1, "every error is checked");
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_expect_eq(api_error_status(want[i].e), want[i].status, "%s",
                     api_error_code(want[i].e));
    cr_expect_str_eq(api_error_header(API_ERR_METHOD_NOT_ALLOWED), "Allow");
    cr_expect_str_eq(api_error_header(API_ERR_QUEUE_FULL), "Retry-After");
    cr_expect_str_eq(api_error_header(API_ERR_MODEL_LOADING), "Retry-After");
    cr_expect_str_eq(api_error_header(API_ERR_UNAUTHORIZED), "WWW-Authenticate");
    cr_expect_null(api_error_header(API_ERR_BAD_JSON));
    /* Out of range falls back to the internal error rather than reading past the table. */
    cr_expect_eq(api_error_status((api_err)999), 500);
    cr_expect_eq(api_error_status((api_err)-3), 500);
    cr_expect_str_eq(api_status_reason(422), "Unprocessable Content");
    cr_expect_str_eq(api_status_reason(499), "Client Closed Request");
}

/* Parses body and checks it is exactly {"error": {"code", "type", "message"}}. */
static void check_body(char *body, api_err e, const char *message)
{
    cr_assert_not_null(body);
    json_error_t jerr;
    json_t *root = json_loads(body, 0, &jerr);
    cr_assert_not_null(root, "%s: %s", body, jerr.text);
    cr_expect_eq(json_object_size(root), 1);
    json_t *err = json_object_get(root, "error");
    cr_assert(json_is_object(err), "%s", body);
    cr_expect_eq(json_object_size(err), 3, "%s", body);
    cr_expect_str_eq(json_string_value(json_object_get(err, "code")), api_error_code(e));
    cr_expect_str_eq(json_string_value(json_object_get(err, "type")), api_error_type(e));
    cr_expect_str_eq(json_string_value(json_object_get(err, "message")), message);
    json_decref(root);
    free(body);
}

Test(api_errors, body_with_the_default_message)
{
    for (int i = 1; i < API_ERR_COUNT; i++)
        check_body(api_error_body((api_err)i, NULL), (api_err)i, api_error_message((api_err)i));
}

Test(api_errors, body_with_a_formatted_message)
{
    check_body(api_error_body(API_ERR_FIELD_RANGE, "%s: must be at most %d, got %d", "steps", 100,
                              101),
               API_ERR_FIELD_RANGE, "steps: must be at most 100, got 101");
    /* Quotes, backslashes and control characters are escaped by jansson. */
    check_body(api_error_body(API_ERR_UNKNOWN_FIELD, "%s", "a\"b\\c\n\x01"), API_ERR_UNKNOWN_FIELD,
               "a\"b\\c\n\x01");
    check_body(api_error_body(API_ERR_UNKNOWN_FIELD, "%s", "\xc3\xa9t\xc3\xa9"),
               API_ERR_UNKNOWN_FIELD, "\xc3\xa9t\xc3\xa9");
}

Test(api_errors, invalid_utf8_in_a_message_becomes_question_marks)
{
    check_body(api_error_body(API_ERR_UNKNOWN_FIELD, "field %s!", "\xff\xc3(\xed\xa0\x80\xc0\xaf"),
               API_ERR_UNKNOWN_FIELD, "field ?" "?(?" "?" "?" "?" "?!");
    /* A multibyte character cut by the 1 KiB message buffer. */
    char big[1100];
    memset(big, 'a', sizeof big);
    big[1022] = (char)0xe2;
    big[1023] = (char)0x82;
    big[1024] = (char)0xac;
    big[sizeof big - 1] = '\0';
    char *body = api_error_body(API_ERR_INTERNAL, "%s", big);
    cr_assert_not_null(body);
    json_t *root = json_loads(body, 0, NULL);
    cr_assert_not_null(root);
    const char *msg = json_string_value(json_object_get(json_object_get(root, "error"), "message"));
    cr_expect_eq(strlen(msg), 1023);
    cr_expect_eq(msg[1022], '?');
    json_decref(root);
    free(body);
}

/*
 * api/openapi.yaml lists every code twice: in the ErrorCode enum ("- code") and in its
 * x-tttd-status map ("code: status"). Both must agree with the table (and hold nothing more).
 */
Test(api_errors, openapi_yaml_lists_every_code_with_its_status)
{
    FILE *f = fopen("api/openapi.yaml", "r");
    cr_assert_not_null(f, "run the tests from the repository root");
    static char text[1 << 17];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    for (int i = 1; i < API_ERR_COUNT; i++) {
        const api_error_info *row = api_error_info_get((api_err)i);
        char want[128];
        snprintf(want, sizeof want, "- %s ", row->code);
        cr_expect(strstr(text, want) != NULL, "ErrorCode enum lacks %s", row->code);
        snprintf(want, sizeof want, "        %s: %d\n", row->code, row->status);
        cr_expect(strstr(text, want) != NULL, "x-tttd-status lacks \"%s: %d\"", row->code,
                  row->status);
    }
    /* Nothing more: count the map's rows. */
    const char *map = strstr(text, "x-tttd-status:");
    cr_assert_not_null(map);
    int rows = 0;
    for (const char *p = strchr(map, '\n') + 1; strncmp(p, "        ", 8) == 0 && p[8] != ' ';
         p = strchr(p, '\n') + 1)
        rows++;
    cr_expect_eq(rows, API_ERR_COUNT - 1);
}

static char *openai_body(api_err e, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = api_openai_error_body_v(e, param, fmt, ap);
    va_end(ap);
    return s;
}

/* The OpenAI routes' shape: message, type, param (or null), code; 422 answered as 400. */
Test(api_errors, openai_shape_and_status)
{
    char *s = openai_body(API_ERR_FIELD_RANGE, "n", "n: must be between %d and %d", 1, 8);
    cr_assert_str_eq(s, "{\"error\":{\"message\":\"n: must be between 1 and 8\",\"type\":"
                        "\"invalid_request_error\",\"param\":\"n\",\"code\":"
                        "\"invalid_request_error.field_range\"}}");
    free(s);
    s = openai_body(API_ERR_BAD_JSON, NULL, NULL);
    cr_assert(strstr(s, "\"param\":null"), "%s", s);
    cr_assert(strstr(s, "\"message\":\"The request body is not a valid JSON object.\""), "%s", s);
    free(s);
    s = openai_body(API_ERR_UNKNOWN_FIELD, "", "x");
    cr_assert(strstr(s, "\"param\":null"), "%s", s);
    free(s);
    cr_expect_eq(api_openai_error_status(API_ERR_FIELD_RANGE), 400);
    cr_expect_eq(api_openai_error_status(API_ERR_FIELD_UNSUPPORTED), 400);
    cr_expect_eq(api_openai_error_status(API_ERR_UNAUTHORIZED), 401);
    cr_expect_eq(api_openai_error_status(API_ERR_QUEUE_FULL), 429);
    cr_expect_eq(api_error_status(API_ERR_FIELD_RANGE), 422);
}
