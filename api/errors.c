/*
 * errors.c - the error table and the one function that turns a row into a JSON body.
 *
 * Types follow OpenAI's error "type" names where one fits (invalid_request_error,
 * authentication_error, permission_error, not_found_error, rate_limit_error, server_error); the
 * code is the type plus a dot and a detail, so a client can switch on either.
 */
#include "api/errors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* Indexed by api_err: the order must follow the enum (errors.c's tests check it). */
static const api_error_info table[API_ERR_COUNT] = {
    {API_OK, "ok", "ok", 200, "No error.", NULL},
    {API_ERR_BAD_JSON, "invalid_request_error.json", "invalid_request_error", 400,
     "The request body is not a valid JSON object.", NULL},
    {API_ERR_BAD_UTF8, "invalid_request_error.utf8", "invalid_request_error", 400,
     "The request body is not valid UTF-8.", NULL},
    {API_ERR_BAD_HEADER, "invalid_request_error.header", "invalid_request_error", 400,
     "The request's headers are malformed or ambiguous.", NULL},
    {API_ERR_BODY_TOO_LARGE, "invalid_request_error.body_too_large", "invalid_request_error", 413,
     "The request body is larger than the server accepts.", NULL},
    {API_ERR_UNKNOWN_FIELD, "invalid_request_error.unknown_field", "invalid_request_error", 422,
     "The request has a field this endpoint does not know.", NULL},
    {API_ERR_FIELD_TYPE, "invalid_request_error.field_type", "invalid_request_error", 422,
     "A field of the request has the wrong JSON type.", NULL},
    {API_ERR_FIELD_RANGE, "invalid_request_error.field_range", "invalid_request_error", 422,
     "A field of the request is out of its allowed range.", NULL},
    {API_ERR_FIELD_MISSING, "invalid_request_error.field_missing", "invalid_request_error", 422,
     "A required field of the request is missing.", NULL},
    {API_ERR_FIELD_UNSUPPORTED, "invalid_request_error.field_unsupported",
     "invalid_request_error", 422, "A field of the request asks for something this server does "
     "not support.", NULL},
    {API_ERR_UNSUPPORTED_MEDIA_TYPE, "invalid_request_error.media_type", "invalid_request_error",
     415, "The request body must be JSON (Content-Type: application/json).", NULL},
    {API_ERR_NOT_ACCEPTABLE, "invalid_request_error.not_acceptable", "invalid_request_error",
     406, "No answer this endpoint can give matches the Accept header.", NULL},
    {API_ERR_UNAUTHORIZED, "authentication_error.unauthorized", "authentication_error", 401,
     "A valid API key is required (Authorization: Bearer <key>).", "WWW-Authenticate"},
    {API_ERR_ORIGIN_FORBIDDEN, "permission_error.origin", "permission_error", 403,
     "Web pages of this origin may not call this server.", NULL},
    {API_ERR_MISDIRECTED, "invalid_request_error.host", "invalid_request_error", 421,
     "This server does not answer to the host the request names.", NULL},
    {API_ERR_NOT_FOUND, "not_found_error.route", "not_found_error", 404,
     "No such route.", NULL},
    {API_ERR_JOB_NOT_FOUND, "not_found_error.job", "not_found_error", 404,
     "No such job (unknown id, or finished too long ago).", NULL},
    {API_ERR_MODEL_NOT_FOUND, "not_found_error.model", "not_found_error", 404,
     "No such model is loaded (see GET /v1/models).", NULL},
    {API_ERR_METHOD_NOT_ALLOWED, "invalid_request_error.method", "invalid_request_error", 405,
     "This route does not allow this method.", "Allow"},
    {API_ERR_JOB_FINISHED, "conflict_error.job_finished", "conflict_error", 409,
     "The job has already finished and cannot be canceled.", NULL},
    {API_ERR_QUEUE_FULL, "rate_limit_error.queue_full", "rate_limit_error", 429,
     "The queue is full; retry later.", "Retry-After"},
    {API_ERR_MODEL_LOADING, "unavailable_error.model_loading", "unavailable_error", 503,
     "The model is still loading; retry later.", "Retry-After"},
    {API_ERR_SHUTTING_DOWN, "unavailable_error.shutting_down", "unavailable_error", 503,
     "The server is shutting down.", "Retry-After"},
    {API_ERR_OVERLOADED, "unavailable_error.overloaded", "unavailable_error", 503,
     "The queue is over its high-water mark.", "Retry-After"},
    {API_ERR_TIMEOUT, "timeout_error.timeout", "timeout_error", 504,
     "The request did not finish within its timeout.", NULL},
    {API_ERR_CANCELED, "canceled_error.canceled", "canceled_error", 499,
     "The job was canceled.", NULL},
    {API_ERR_INTERNAL, "server_error.internal", "server_error", 500,
     "Internal server error.", NULL},
    {API_ERR_ENGINE, "server_error.engine", "server_error", 500,
     "The inference engine failed on this request.", NULL},
    {API_ERR_URI_TOO_LONG, "invalid_request_error.uri_too_long", "invalid_request_error", 414,
     "The request target (path and query) is longer than the server accepts.", NULL},
    {API_ERR_HEADERS_TOO_LARGE, "invalid_request_error.headers_too_large",
     "invalid_request_error", 431, "The request's header fields are larger than the server "
     "accepts.", NULL},
};

const api_error_info *api_error_info_get(api_err e)
{
    if ((int)e < 0 || e >= API_ERR_COUNT)
        return &table[API_ERR_INTERNAL];
    return &table[e];
}

int api_error_status(api_err e) { return api_error_info_get(e)->status; }
const char *api_error_code(api_err e) { return api_error_info_get(e)->code; }
const char *api_error_type(api_err e) { return api_error_info_get(e)->type; }
const char *api_error_message(api_err e) { return api_error_info_get(e)->message; }
const char *api_error_header(api_err e) { return api_error_info_get(e)->header; }

api_err api_error_from_code(const char *code)
{
    if (!code)
        return API_ERR_COUNT;
    for (int i = 0; i < API_ERR_COUNT; i++)
        if (strcmp(table[i].code, code) == 0)
            return (api_err)i;
    return API_ERR_COUNT;
}

const char *api_status_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

/*
 * Messages may quote what a client sent (a field name, cut to a length); jansson refuses a
 * string that is not UTF-8, so invalid bytes become '?' rather than losing the whole body.
 */
static void utf8_sanitize(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        int len = *p < 0x80 ? 1 : (*p >> 5) == 0x6 ? 2 : (*p >> 4) == 0xe ? 3 : (*p >> 3) == 0x1e ? 4 : 0;
        int ok = len > 0;
        for (int i = 1; ok && i < len; i++)
            ok = (p[i] & 0xc0) == 0x80;
        if (ok && len > 1) {
            /* Overlong forms, surrogates and code points past U+10FFFF. */
            unsigned cp = len == 2 ? (p[0] & 0x1fu) << 6 | (p[1] & 0x3fu)
                        : len == 3 ? (p[0] & 0x0fu) << 12 | (p[1] & 0x3fu) << 6 | (p[2] & 0x3fu)
                        : (p[0] & 0x07u) << 18 | (p[1] & 0x3fu) << 12 | (p[2] & 0x3fu) << 6 | (p[3] & 0x3fu);
            unsigned min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
            ok = cp >= min && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
        }
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += len;
    }
}

char *api_error_body_v(api_err e, const char *fmt, va_list ap)
{
    const api_error_info *info = api_error_info_get(e);
    char msg[1024];
    if (fmt && *fmt) {
        vsnprintf(msg, sizeof msg, fmt, ap);
        utf8_sanitize(msg);
    } else {
        snprintf(msg, sizeof msg, "%s", info->message);
    }
    json_t *root = json_pack("{s:{s:s, s:s, s:s}}", "error", "code", info->code, "type",
                             info->type, "message", msg);
    if (!root)
        return NULL;
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

char *api_openai_error_body_v(api_err e, const char *param, const char *fmt, va_list ap)
{
    const api_error_info *info = api_error_info_get(e);
    char msg[1024];
    if (fmt && *fmt) {
        vsnprintf(msg, sizeof msg, fmt, ap);
        utf8_sanitize(msg);
    } else {
        snprintf(msg, sizeof msg, "%s", info->message);
    }
    char p[128] = "";
    if (param) {
        snprintf(p, sizeof p, "%s", param);
        utf8_sanitize(p);
    }
    json_t *root = json_pack("{s:{s:s, s:s, s:o, s:s}}", "error", "message", msg, "type",
                             info->type, "param", *p ? json_string(p) : json_null(), "code",
                             info->code);
    if (!root)
        return NULL;
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

int api_openai_error_status(api_err e)
{
    int status = api_error_status(e);
    return status == 422 ? 400 : status;
}

char *api_error_body(api_err e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = api_error_body_v(e, fmt, ap);
    va_end(ap);
    return s;
}
