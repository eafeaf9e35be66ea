/*
 * request.c - strict parsing of the two generate bodies (native and OpenAI) into one struct.
 *
 * Each endpoint has a table of fields (name -> handler). The body's keys are walked in order
 * (jansson keeps insertion order), so the first unknown or bad field is the one reported. A
 * handler checks the JSON type and the field's own bounds; what depends on two fields (pixels =
 * width x height) is checked once all are read. JSON null means "absent" for every field.
 * Content negotiation (Accept, Content-Type) lives in negotiate.c.
 */
#include "api/request.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "engine/pipeline.h"

void api_limits_init(api_limits *l)
{
    l->max_body_bytes = 1u << 20;
    l->max_prompt_bytes = 32768;
    l->max_width = 2048;
    l->max_height = 2048;
    l->max_pixels = 2048 * 2048;
    l->size_multiple = 16;
    l->max_steps = 100;
    l->max_n = 8;
    l->max_guidance = 30.0;
    l->max_timeout_ms = 600000;
}

void api_defaults_init(api_defaults *d)
{
    d->width = 1024;
    d->height = 1024;
    d->steps = ENG_PIPELINE_DEFAULT_STEPS;
    d->guidance = ENG_PIPELINE_DEFAULT_GUIDANCE;
    d->n = 1;
    d->format = API_FORMAT_PNG;
    d->quality = API_DEFAULT_QUALITY;
    d->timeout_ms = 0;
}

int api_defaults_check(const api_defaults *d, const api_limits *l, char *msg, size_t msglen)
{
    const char *bad = NULL;
    int m = l->size_multiple;
    if (m < 1 || l->max_width < m || l->max_height < m || l->max_pixels < (int64_t)m * m ||
        l->max_steps < 1 || l->max_n < 1 || !(l->max_guidance >= 0) || l->max_timeout_ms < 1 ||
        l->max_prompt_bytes < 1)
        bad = "limits (each maximum must allow at least one valid value)";
    else if (d->width < m || d->width > l->max_width || d->width % m != 0)
        bad = "default width";
    else if (d->height < m || d->height > l->max_height || d->height % m != 0)
        bad = "default height";
    else if ((int64_t)d->width * d->height > l->max_pixels)
        bad = "default width x height (over the pixel limit)";
    else if (d->steps < 1 || d->steps > l->max_steps)
        bad = "default steps";
    else if (!(d->guidance >= 0 && d->guidance <= l->max_guidance))
        bad = "default guidance";
    else if (d->n < 1 || d->n > l->max_n)
        bad = "default n";
    else if (d->quality < 1 || d->quality > 100)
        bad = "default quality";
    else if (d->timeout_ms > l->max_timeout_ms)
        bad = "default timeout";
    else if (d->format != API_FORMAT_PNG && d->format != API_FORMAT_JPEG)
        bad = "default format";
    if (!bad)
        return 0;
    if (msg && msglen)
        snprintf(msg, msglen, "%s is outside the request limits", bad);
    return -1;
}

const char *api_format_name(api_format f) { return f == API_FORMAT_JPEG ? "jpeg" : "png"; }
const char *api_format_mime(api_format f) { return f == API_FORMAT_JPEG ? "image/jpeg" : "image/png"; }

int api_format_parse(const char *s, api_format *out)
{
    if (s && strcmp(s, "png") == 0) {
        *out = API_FORMAT_PNG;
        return 0;
    }
    if (s && strcmp(s, "jpeg") == 0) {
        *out = API_FORMAT_JPEG;
        return 0;
    }
    return -1;
}

void api_generate_request_free(api_generate_request *r)
{
    if (!r)
        return;
    free(r->prompt);
    free(r->negative_prompt);
    free(r->model);
    memset(r, 0, sizeof *r);
}

uint64_t api_unit_seed(uint64_t seed, int i) { return (seed + (uint64_t)i) & (uint64_t)INT64_MAX; }

/* ---- parse state and failure reporting ---- */

typedef struct pstate {
    const api_limits *lim;
    api_generate_request *req;
    api_err *code;
    char *msg;
    size_t msglen;
} pstate;

static int fail(pstate *s, api_err e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(pstate *s, api_err e, const char *fmt, ...)
{
    *s->code = e;
    if (s->msg && s->msglen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->msg, s->msglen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* A client's text quoted in a message: at most 64 bytes, cut on a UTF-8 character boundary. */
static void quote_cut(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src), max = cap - 4;
    if (n <= max) {
        memcpy(dst, src, n + 1);
        return;
    }
    while (max > 0 && ((unsigned char)src[max] & 0xc0) == 0x80)
        max--;
    memcpy(dst, src, max);
    memcpy(dst + max, "...", 4);
}

static int want_int(pstate *s, const char *name, const json_t *v, int64_t lo, int64_t hi,
                    int64_t *out)
{
    if (!json_is_integer(v))
        return fail(s, API_ERR_FIELD_TYPE, "%s: expected an integer, got %s", name, type_name(v));
    int64_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return fail(s, API_ERR_FIELD_RANGE, "%s: must be between %" PRId64 " and %" PRId64
                    ", got %" PRId64, name, lo, hi, x);
    *out = x;
    return 0;
}

static int want_number(pstate *s, const char *name, const json_t *v, double lo, double hi,
                       double *out)
{
    if (!json_is_number(v))
        return fail(s, API_ERR_FIELD_TYPE, "%s: expected a number, got %s", name, type_name(v));
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return fail(s, API_ERR_FIELD_RANGE, "%s: must be between %g and %g, got %g", name, lo,
                    hi, x);
    *out = x;
    return 0;
}

static int want_bool(pstate *s, const char *name, const json_t *v, int *out)
{
    if (!json_is_boolean(v))
        return fail(s, API_ERR_FIELD_TYPE, "%s: expected a boolean, got %s", name, type_name(v));
    *out = json_is_true(v);
    return 0;
}

/* Jansson has already refused invalid UTF-8 and (without JSON_ALLOW_NUL) "\u0000". */
static int want_string(pstate *s, const char *name, const json_t *v, size_t min, size_t max,
                       const char **out)
{
    if (!json_is_string(v))
        return fail(s, API_ERR_FIELD_TYPE, "%s: expected a string, got %s", name, type_name(v));
    size_t n = json_string_length(v);
    if (n < min)
        return fail(s, API_ERR_FIELD_RANGE, "%s: must not be empty", name);
    if (n > max)
        return fail(s, API_ERR_FIELD_RANGE, "%s: must be at most %zu bytes, got %zu", name, max, n);
    *out = json_string_value(v);
    return 0;
}

static int set_string(pstate *s, char **dst, const char *src)
{
    char *copy = strdup(src);
    if (!copy)
        return fail(s, API_ERR_INTERNAL, "out of memory");
    free(*dst);
    *dst = copy;
    return 0;
}

/* One of values (NULL-terminated); its index in *idx. */
static int want_enum(pstate *s, const char *name, const json_t *v, const char *const *values,
                     int *idx)
{
    const char *str;
    if (want_string(s, name, v, 0, SIZE_MAX, &str) != 0)
        return -1;
    char list[256] = "", got[72];
    for (int i = 0; values[i]; i++) {
        if (strcmp(values[i], str) == 0) {
            *idx = i;
            return 0;
        }
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s\"%s\"", i ? ", " : "", values[i]);
    }
    quote_cut(got, sizeof got, str);
    return fail(s, API_ERR_FIELD_RANGE, "%s: must be one of %s, got \"%s\"", name, list, got);
}

/* A side in pixels: a multiple of size_multiple in [size_multiple, max]. */
static int check_side(pstate *s, const char *name, int64_t x, int max)
{
    int m = s->lim->size_multiple > 0 ? s->lim->size_multiple : 1;
    if (x < m || x > max || x % m != 0)
        return fail(s, API_ERR_FIELD_RANGE, "%s: must be a multiple of %d between %d and %d, "
                    "got %" PRId64, name, m, m, max, x);
    return 0;
}

/* ---- fields shared by both endpoints ---- */

typedef int (*field_fn)(pstate *s, const char *name, const json_t *v);

static int f_prompt(pstate *s, const char *name, const json_t *v)
{
    const char *str;
    if (want_string(s, name, v, 1, s->lim->max_prompt_bytes, &str) != 0)
        return -1;
    return set_string(s, &s->req->prompt, str);
}

static int f_negative_prompt(pstate *s, const char *name, const json_t *v)
{
    const char *str;
    if (want_string(s, name, v, 0, s->lim->max_prompt_bytes, &str) != 0)
        return -1;
    return set_string(s, &s->req->negative_prompt, str);
}

static int f_width(pstate *s, const char *name, const json_t *v)
{
    int64_t x;
    if (want_int(s, name, v, INT64_MIN, INT64_MAX, &x) != 0 || check_side(s, name, x, s->lim->max_width) != 0)
        return -1;
    s->req->width = (int)x;
    return 0;
}

static int f_height(pstate *s, const char *name, const json_t *v)
{
    int64_t x;
    if (want_int(s, name, v, INT64_MIN, INT64_MAX, &x) != 0 || check_side(s, name, x, s->lim->max_height) != 0)
        return -1;
    s->req->height = (int)x;
    return 0;
}

static int f_steps(pstate *s, const char *name, const json_t *v)
{
    int64_t x;
    if (want_int(s, name, v, 1, s->lim->max_steps, &x) != 0)
        return -1;
    s->req->steps = (int)x;
    return 0;
}

static int f_guidance(pstate *s, const char *name, const json_t *v)
{
    return want_number(s, name, v, 0.0, s->lim->max_guidance, &s->req->guidance);
}

/* -1 asks for a random seed, as A1111 and most image servers' clients send it. */
static int f_seed(pstate *s, const char *name, const json_t *v)
{
    int64_t x;
    if (want_int(s, name, v, -1, INT64_MAX, &x) != 0)
        return -1;
    s->req->seed = x < 0 ? 0 : (uint64_t)x;
    s->req->has_seed = x >= 0;
    return 0;
}

static int f_n(pstate *s, const char *name, const json_t *v)
{
    int64_t x;
    if (want_int(s, name, v, 1, s->lim->max_n, &x) != 0)
        return -1;
    s->req->n = (int)x;
    return 0;
}

static int f_model(pstate *s, const char *name, const json_t *v)
{
    const char *str;
    if (want_string(s, name, v, 1, 256, &str) != 0)
        return -1;
    return set_string(s, &s->req->model, str);
}

static int f_timeout_ms(pstate *s, const char *name, const json_t *v)
{
    int64_t x;
    if (want_int(s, name, v, 1, s->lim->max_timeout_ms, &x) != 0)
        return -1;
    s->req->timeout_ms = (uint32_t)x;
    return 0;
}

/* "png" | "jpeg"; "webp" is a format the API names but this server does not encode. */
static int set_format(pstate *s, const char *name, const json_t *v)
{
    static const char *const values[] = {"png", "jpeg", NULL};
    if (json_is_string(v) && strcmp(json_string_value(v), "webp") == 0)
        return fail(s, API_ERR_FIELD_UNSUPPORTED, "%s: \"webp\" is not supported by this server; "
                    "use \"png\" or \"jpeg\"", name);
    int i;
    if (want_enum(s, name, v, values, &i) != 0)
        return -1;
    s->req->format = i == 1 ? API_FORMAT_JPEG : API_FORMAT_PNG;
    s->req->has_format = 1;
    return 0;
}

/* ---- native-only fields ---- */

static int f_quality(pstate *s, const char *name, const json_t *v)
{
    int64_t x;
    if (want_int(s, name, v, 1, 100, &x) != 0)
        return -1;
    s->req->quality = (int)x;
    return 0;
}

static int f_stream(pstate *s, const char *name, const json_t *v)
{
    return want_bool(s, name, v, &s->req->stream);
}

static int f_metadata(pstate *s, const char *name, const json_t *v)
{
    return want_bool(s, name, v, &s->req->metadata);
}

static int f_preview_every(pstate *s, const char *name, const json_t *v)
{
    int64_t x;
    if (want_int(s, name, v, 0, s->lim->max_steps, &x) != 0)
        return -1;
    s->req->preview_every = (int)x;
    return 0;
}

/* ---- OpenAI-only fields ---- */

/* "auto" or "WIDTHxHEIGHT" in decimal (no sign, no leading zero, at most 5 digits a side). */
static int f_size(pstate *s, const char *name, const json_t *v)
{
    const char *str;
    if (want_string(s, name, v, 0, 64, &str) != 0)
        return -1;
    if (strcmp(str, "auto") == 0)
        return 0;
    int64_t side[2] = {0, 0};
    const char *p = str;
    for (int k = 0; k < 2; k++) {
        int digits = 0;
        if (*p < '1' || *p > '9')
            goto bad;
        while (*p >= '0' && *p <= '9' && digits < 6) {
            side[k] = side[k] * 10 + (*p++ - '0');
            digits++;
        }
        if (digits > 5 || *p != (k == 0 ? 'x' : '\0'))
            goto bad;
        p++;
    }
    if (check_side(s, "size (width)", side[0], s->lim->max_width) != 0 ||
        check_side(s, "size (height)", side[1], s->lim->max_height) != 0)
        return -1;
    s->req->width = (int)side[0];
    s->req->height = (int)side[1];
    return 0;
bad:;
    char got[72];
    quote_cut(got, sizeof got, str);
    return fail(s, API_ERR_FIELD_RANGE, "%s: must be \"auto\" or \"WIDTHxHEIGHT\" (e.g. "
                "\"1024x1024\"), got \"%s\"", name, got);
}

static int f_response_format(pstate *s, const char *name, const json_t *v)
{
    static const char *const values[] = {"b64_json", "url", NULL};
    int i;
    if (want_enum(s, name, v, values, &i) != 0)
        return -1;
    if (i == 1)
        return fail(s, API_ERR_FIELD_UNSUPPORTED, "%s: \"url\" is not supported: this server "
                    "keeps no images and answers \"b64_json\" only", name);
    return 0;
}

/* OpenAI's compression percentage is the JPEG quality here; 0 is the lowest quality, 1. */
static int f_output_compression(pstate *s, const char *name, const json_t *v)
{
    int64_t x;
    if (want_int(s, name, v, 0, 100, &x) != 0)
        return -1;
    s->req->quality = x < 1 ? 1 : (int)x;
    return 0;
}

static int f_openai_model(pstate *s, const char *name, const json_t *v)
{
    if (f_model(s, name, v) != 0)
        return -1;
    /* Clients of OpenAI's API send its model names by default: they mean "the default model". */
    if (strncmp(s->req->model, "dall-e-", 7) == 0 || strncmp(s->req->model, "gpt-image-", 10) == 0) {
        free(s->req->model);
        s->req->model = NULL;
    }
    return 0;
}

static int f_openai_quality(pstate *s, const char *name, const json_t *v)
{
    static const char *const values[] = {"auto", "low", "medium", "high", "standard", "hd", NULL};
    int i;
    if (want_enum(s, name, v, values, &i) != 0)
        return -1;
    snprintf(s->req->quality_label, sizeof s->req->quality_label, "%s", values[i]);
    return 0;
}

static int f_style(pstate *s, const char *name, const json_t *v)
{
    static const char *const values[] = {"vivid", "natural", NULL};
    int i;
    return want_enum(s, name, v, values, &i);
}

static int f_background(pstate *s, const char *name, const json_t *v)
{
    static const char *const values[] = {"auto", "opaque", "transparent", NULL};
    int i;
    if (want_enum(s, name, v, values, &i) != 0)
        return -1;
    if (i == 2)
        return fail(s, API_ERR_FIELD_UNSUPPORTED, "%s: \"transparent\" is not supported: images "
                    "are opaque RGB", name);
    return 0;
}

static int f_moderation(pstate *s, const char *name, const json_t *v)
{
    static const char *const values[] = {"auto", "low", NULL};
    int i;
    return want_enum(s, name, v, values, &i);
}

static int f_user(pstate *s, const char *name, const json_t *v)
{
    const char *str;
    return want_string(s, name, v, 0, 256, &str);
}

static int f_openai_stream(pstate *s, const char *name, const json_t *v)
{
    int b;
    if (want_bool(s, name, v, &b) != 0)
        return -1;
    if (b)
        return fail(s, API_ERR_FIELD_UNSUPPORTED, "%s: streaming is not supported on "
                    "/v1/images/generations; use POST /v1/generate with \"stream\": true", name);
    return 0;
}

static int f_partial_images(pstate *s, const char *name, const json_t *v)
{
    int64_t x;
    return want_int(s, name, v, 0, 3, &x);
}

/* ---- A1111 (POST /sdapi/v1/txt2img) ---- */

const char *const api_a1111_sampler_aliases[] = {"k_euler", "euler", NULL};

static int f_a1111_seed(pstate *s, const char *name, const json_t *v)
{
    if (!json_is_integer(v))
        return fail(s, API_ERR_FIELD_TYPE, "%s: expected an integer, got %s", name, type_name(v));
    int64_t x = json_integer_value(v);
    if (x == -1)
        return 0; /* A1111's "random" */
    if (x < 0)
        return fail(s, API_ERR_FIELD_RANGE, "%s: must be -1 (random) or between 0 and %" PRId64
                    ", got %" PRId64, name, INT64_MAX, x);
    s->req->seed = (uint64_t)x;
    s->req->has_seed = 1;
    return 0;
}

static int f_batch_size(pstate *s, const char *name, const json_t *v)
{
    int64_t x;
    if (want_int(s, name, v, 1, s->lim->max_n, &x) != 0)
        return -1;
    s->req->batch_size = (int)x;
    return 0;
}

static int f_n_iter(pstate *s, const char *name, const json_t *v)
{
    int64_t x;
    if (want_int(s, name, v, 1, s->lim->max_n, &x) != 0)
        return -1;
    s->req->n_iter = (int)x;
    return 0;
}

static int f_sampler(pstate *s, const char *name, const json_t *v)
{
    const char *str;
    if (want_string(s, name, v, 0, SIZE_MAX, &str) != 0)
        return -1;
    if (!strcmp(str, API_A1111_SAMPLER))
        return 0;
    for (int i = 0; api_a1111_sampler_aliases[i]; i++)
        if (!strcmp(str, api_a1111_sampler_aliases[i]))
            return 0;
    char got[72];
    quote_cut(got, sizeof got, str);
    return fail(s, API_ERR_FIELD_RANGE, "%s: this server has one sampler, \"%s\" (the flow-"
                "matching Euler of SD3; also \"k_euler\"), got \"%s\" (see GET "
                "/sdapi/v1/samplers)", name, API_A1111_SAMPLER, got);
}

/* An unknown A1111 field: its name noted for the log, never an error. */
static void note_ignored(api_generate_request *r, const char *key)
{
    size_t l = strlen(r->ignored), cap = sizeof r->ignored;
    if (l + 4 >= cap)
        return; /* already cut */
    char name[72];
    quote_cut(name, sizeof name, key);
    if (l + strlen(name) + 2 + 4 >= cap)
        memcpy(r->ignored + l, "...", 4);
    else
        snprintf(r->ignored + l, cap - l, "%s%s", l ? ", " : "", name);
}

/* ---- the tables ---- */

typedef struct field {
    const char *name;
    field_fn fn;
} field;

static const field native_fields[] = {
    {"prompt", f_prompt},       {"negative_prompt", f_negative_prompt},
    {"width", f_width},         {"height", f_height},
    {"steps", f_steps},         {"guidance", f_guidance},
    {"seed", f_seed},           {"n", f_n},
    {"model", f_model},         {"format", set_format},
    {"quality", f_quality},     {"stream", f_stream},
    {"timeout_ms", f_timeout_ms}, {"preview_every", f_preview_every},
    {"metadata", f_metadata},   {NULL, NULL},
};

static const field openai_fields[] = {
    {"prompt", f_prompt},
    {"n", f_n},
    {"size", f_size},
    {"response_format", f_response_format},
    {"output_format", set_format},
    {"output_compression", f_output_compression},
    {"model", f_openai_model},
    {"quality", f_openai_quality},
    {"style", f_style},
    {"background", f_background},
    {"moderation", f_moderation},
    {"user", f_user},
    {"stream", f_openai_stream},
    {"partial_images", f_partial_images},
    /* tttd extensions (OpenAI SDKs send them through extra_body) */
    {"negative_prompt", f_negative_prompt},
    {"steps", f_steps},
    {"guidance", f_guidance},
    {"seed", f_seed},
    {"timeout_ms", f_timeout_ms},
    {NULL, NULL},
};

static const field a1111_fields[] = {
    {"prompt", f_prompt},           {"negative_prompt", f_negative_prompt},
    {"width", f_width},             {"height", f_height},
    {"steps", f_steps},             {"cfg_scale", f_guidance},
    {"seed", f_a1111_seed},         {"batch_size", f_batch_size},
    {"n_iter", f_n_iter},           {"sampler_name", f_sampler},
    {"sampler_index", f_sampler},   {"metadata", f_metadata},
    {NULL, NULL},
};

static int parse(const char *body, size_t len, const api_limits *lim, const api_defaults *def,
                 const field *fields, api_request_kind kind, api_generate_request *out,
                 api_err *code, char *msg, size_t msglen)
{
    api_err dummy;
    api_generate_request r;
    memset(&r, 0, sizeof r);
    pstate s = {lim, &r, code ? code : &dummy, msg, msglen};
    memset(out, 0, sizeof *out);
    if (msg && msglen)
        msg[0] = '\0';

    r.kind = kind;
    r.width = def->width;
    r.height = def->height;
    r.steps = def->steps;
    r.guidance = def->guidance;
    r.n = def->n;
    r.format = def->format;
    r.quality = def->quality;
    r.timeout_ms = def->timeout_ms;
    r.batch_size = r.n_iter = 1;
    r.metadata = -1;
    snprintf(r.quality_label, sizeof r.quality_label, "auto");

    if (!body || len == 0)
        return fail(&s, API_ERR_BAD_JSON, "the request body is empty: expected a JSON object");
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        api_err e = json_error_code(&jerr) == json_error_invalid_utf8 ? API_ERR_BAD_UTF8
                                                                      : API_ERR_BAD_JSON;
        return fail(&s, e, "invalid JSON at line %d, column %d: %s", jerr.line, jerr.column,
                    jerr.text);
    }
    int rc = -1;
    char param[sizeof out->error_param] = "";
    if (!json_is_object(root)) {
        fail(&s, API_ERR_BAD_JSON, "the request body must be a JSON object, got %s",
             type_name(root));
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        const field *f = fields;
        while (f->name && strcmp(f->name, key) != 0)
            f++;
        if (!f->name && kind == API_REQUEST_A1111) {
            note_ignored(&r, key);
            continue;
        }
        if (!f->name) {
            char name[72];
            quote_cut(name, sizeof name, key);
            snprintf(param, sizeof param, "%s", name);
            fail(&s, API_ERR_UNKNOWN_FIELD, "%s: unknown field", name);
            goto done;
        }
        if (json_is_null(v))
            continue;
        snprintf(param, sizeof param, "%s", f->name);
        if (f->fn(&s, f->name, v) != 0)
            goto done;
    }
    if (kind == API_REQUEST_A1111) {
        snprintf(param, sizeof param, "batch_size");
        r.n = r.batch_size * r.n_iter;
        if (r.n > lim->max_n) {
            fail(&s, API_ERR_FIELD_RANGE, "batch_size, n_iter: %d x %d = %d images is more than "
                 "the limit of %d", r.batch_size, r.n_iter, r.n, lim->max_n);
            goto done;
        }
    }
    snprintf(param, sizeof param, "prompt");
    if (!r.prompt) {
        fail(&s, API_ERR_FIELD_MISSING, "prompt: is required (a non-empty string)");
        goto done;
    }
    snprintf(param, sizeof param, "%s", kind == API_REQUEST_OPENAI ? "size" : "width");
    /* The defaults are the server's to keep inside the limits, but a side given alone may
     * still meet a default that breaks the pixel bound, so both sides are checked here. */
    if (check_side(&s, "width", r.width, lim->max_width) != 0)
        goto done;
    if (kind != API_REQUEST_OPENAI)
        snprintf(param, sizeof param, "height");
    if (check_side(&s, "height", r.height, lim->max_height) != 0)
        goto done;
    if (kind != API_REQUEST_OPENAI)
        snprintf(param, sizeof param, "width");
    if ((int64_t)r.width * r.height > lim->max_pixels) {
        fail(&s, API_ERR_FIELD_RANGE, "%s: %d x %d = %" PRId64 " pixels is more than the limit "
             "of %" PRId64, kind == API_REQUEST_OPENAI ? "size" : "width, height", r.width,
             r.height, (int64_t)r.width * r.height, lim->max_pixels);
        goto done;
    }
    snprintf(r.size, sizeof r.size, "%dx%d", r.width, r.height);
    *out = r;
    memset(&r, 0, sizeof r);
    rc = 0;
done:
    json_decref(root);
    api_generate_request_free(&r);
    if (rc)
        snprintf(out->error_param, sizeof out->error_param, "%s", param);
    return rc;
}

int api_parse_generate(const char *body, size_t len, const api_limits *limits,
                       const api_defaults *defaults, api_generate_request *out, api_err *code,
                       char *msg, size_t msglen)
{
    return parse(body, len, limits, defaults, native_fields, API_REQUEST_NATIVE, out, code, msg,
                 msglen);
}

int api_parse_openai_images(const char *body, size_t len, const api_limits *limits,
                            const api_defaults *defaults, api_generate_request *out,
                            api_err *code, char *msg, size_t msglen)
{
    return parse(body, len, limits, defaults, openai_fields, API_REQUEST_OPENAI, out, code, msg,
                 msglen);
}

int api_parse_a1111_txt2img(const char *body, size_t len, const api_limits *limits,
                            const api_defaults *defaults, api_generate_request *out,
                            api_err *code, char *msg, size_t msglen)
{
    return parse(body, len, limits, defaults, a1111_fields, API_REQUEST_A1111, out, code, msg,
                 msglen);
}
