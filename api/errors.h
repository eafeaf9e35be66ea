/*
 * errors.h - the one table of every error the HTTP API can answer.
 *
 * Each row: a stable machine code ("invalid_request_error.field"), a type (the part before the
 * dot, OpenAI-style), the HTTP status and a default message. Every error reply of the server is
 * built by api_error_body() from this table, so the body is always
 *     {"error": {"code": "...", "type": "...", "message": "..."}}
 * Codes never change once published; api/openapi.yaml lists them all.
 *
 * Statuses that need a header the server must add: 405 (Allow), 429 and 503 (Retry-After),
 * 401 (WWW-Authenticate: Bearer). api_error_header() names it.
 *
 * Thread-safety: the table is constant; every function here is thread-safe.
 */
#ifndef TTTD_API_ERRORS_H
#define TTTD_API_ERRORS_H

#include <stdarg.h>

typedef enum api_err {
    API_OK = 0,
    /* 400: the body is not JSON, or not UTF-8, or not an object. */
    API_ERR_BAD_JSON,
    API_ERR_BAD_UTF8,
    /* 400: the request's framing is ambiguous or incomplete (Content-Length twice with different
     * values, Content-Length beside Transfer-Encoding, no Host or several on HTTP/1.1). */
    API_ERR_BAD_HEADER,
    /* 413: the body is larger than the server's --max-body. */
    API_ERR_BODY_TOO_LARGE,
    /* 422: the JSON is well formed but a field is wrong; the message names the field. */
    API_ERR_UNKNOWN_FIELD,
    API_ERR_FIELD_TYPE,        /* wrong JSON type: message names the field and the type expected */
    API_ERR_FIELD_RANGE,       /* out of bounds, not a multiple, too long, empty */
    API_ERR_FIELD_MISSING,     /* a required field is absent */
    API_ERR_FIELD_UNSUPPORTED, /* a value the API knows but this server does not serve (url, webp) */
    /* 415, 406 */
    API_ERR_UNSUPPORTED_MEDIA_TYPE,
    API_ERR_NOT_ACCEPTABLE,
    /* 401 */
    API_ERR_UNAUTHORIZED,
    /* 403: a web page of another origin, not in --cors-origins, sent a POST or DELETE (or a
     * preflight for one). */
    API_ERR_ORIGIN_FORBIDDEN,
    /* 421: the Host header names a host this server does not answer to (--allowed-hosts). */
    API_ERR_MISDIRECTED,
    /* 404 */
    API_ERR_NOT_FOUND,       /* no such route */
    API_ERR_JOB_NOT_FOUND,   /* GET/DELETE /v1/jobs/{id} of an unknown (or expired) id */
    API_ERR_MODEL_NOT_FOUND, /* "model" names no loaded model */
    /* 405: the route exists, the method does not (Allow header). */
    API_ERR_METHOD_NOT_ALLOWED,
    /* 409: DELETE of a job that already finished. */
    API_ERR_JOB_FINISHED,
    /* 429: the queue is full (Retry-After). */
    API_ERR_QUEUE_FULL,
    /* 503 */
    API_ERR_MODEL_LOADING,
    API_ERR_SHUTTING_DOWN,
    API_ERR_OVERLOADED, /* /readyz: the queue is over its high-water mark */
    /* 504: the request's timeout_ms (or the server's) passed before it finished. */
    API_ERR_TIMEOUT,
    /* 499 (nginx's "client closed request"): the job was canceled by DELETE /v1/jobs/{id}. */
    API_ERR_CANCELED,
    /* 500 */
    API_ERR_INTERNAL,
    API_ERR_ENGINE, /* a worker's engine call failed */
    /* 414, 431: the request target, or the header block, is over the server's fixed limits. */
    API_ERR_URI_TOO_LONG,
    API_ERR_HEADERS_TOO_LARGE,
    API_ERR_COUNT
} api_err;

/* One row of the table. */
typedef struct api_error_info {
    api_err err;
    const char *code;    /* stable: "invalid_request_error.field" */
    const char *type;    /* "invalid_request_error", "not_found_error", ... */
    int status;          /* HTTP status */
    const char *message; /* default message, a full sentence */
    const char *header;  /* header the reply must carry ("Allow", "Retry-After", ...) or NULL */
} api_error_info;

/* The row of e; an out-of-range e gives the API_ERR_INTERNAL row. Never NULL. */
const api_error_info *api_error_info_get(api_err e);
int api_error_status(api_err e);
const char *api_error_code(api_err e);
const char *api_error_type(api_err e);
const char *api_error_message(api_err e);
const char *api_error_header(api_err e);
/* The api_err whose code string is code, or API_ERR_COUNT when none is. */
api_err api_error_from_code(const char *code);
/* The HTTP reason phrase of a status this API answers ("Unprocessable Content", ...). */
const char *api_status_reason(int status);

/*
 * The JSON body {"error": {"code", "type", "message"}} of e. fmt (printf) gives the message;
 * NULL or "" uses the table's default. Returns a malloc'ed NUL-terminated string the caller
 * frees, or NULL when out of memory.
 */
char *api_error_body(api_err e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *api_error_body_v(api_err e, const char *fmt, va_list ap);

/*
 * The same error in OpenAI's shape, for the OpenAI-compatible routes, whose SDKs read it:
 *     {"error": {"message": "...", "type": "...", "param": "<field>" | null, "code": "..."}}
 * param is the request field at fault (NULL or "" gives null); code and type are the table's.
 * api_openai_error_status is the status OpenAI answers: a wrong field (422 here) is its 400.
 */
char *api_openai_error_body_v(api_err e, const char *param, const char *fmt, va_list ap);
int api_openai_error_status(api_err e);

#endif
