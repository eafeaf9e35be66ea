/*
 * options.c - the one table of `tttd serve` options and its three sources (flags, TTTD_*
 * environment variables, a JSON config file) over the table's defaults.
 *
 * Every value, whatever its source, goes through the same text parser, so bounds and error
 * messages are the same for `--max-batch 0`, `TTTD_MAX_BATCH=0` and `{"max-batch": 0}`.
 */
#include "server/options.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "engine/core/log.h"

typedef enum opt_type {
    T_BOOL,     /* int: true/false, 1/0, yes/no, on/off */
    T_INT,      /* int within [lo, hi] */
    T_SIZE,     /* int64 bytes; suffixes K, M, G (binary, KiB... accepted) */
    T_DURATION, /* int64 milliseconds; suffixes ms, s, m; a bare number is in `unit` ms */
    T_STR,      /* char *, strdup'ed */
    T_ENUM,     /* int: the index of the value in `choices` ("a|b|c") */
    T_LIST,     /* srv_strlist: repeatable flag, comma-separated env, JSON array */
} opt_type;

typedef struct opt_row {
    const char *name; /* flag without the dashes; also the config file key */
    opt_type type;
    const char *def; /* default as text, NULL for none */
    int64_t lo, hi;  /* bounds of numbers, after units are applied */
    int64_t unit;    /* T_DURATION: milliseconds per bare unit */
    const char *choices;
    const char *env;
    const char *metavar;
    const char *help;
    size_t off;
} opt_row;

#define F(field) offsetof(srv_options, field)
#define MS 1
#define SEC 1000

/* clang-format off */
static const opt_row rows[] = {
    {"config", T_STR, NULL, 0, 0, 0, NULL, "TTTD_CONFIG", "FILE",
     "JSON config file: an object of option names to values", F(config)},
    {"host", T_STR, "127.0.0.1", 0, 0, 0, NULL, "TTTD_HOST", "ADDR",
     "address to listen on (IPv4 or IPv6 literal, or a host name)", F(host)},
    {"port", T_INT, "8080", 0, 65535, 0, NULL, "TTTD_PORT", "N",
     "TCP port; 0 lets the kernel pick one (printed as \"listening on HOST:PORT\")", F(port)},
    {"model", T_LIST, NULL, 0, 0, 0, NULL, "TTTD_MODEL", "NAME=DIR",
     "a diffusers SD3 pipeline folder to serve under NAME (repeatable; a bare DIR is named "
     "\"default\"); none: the embedded model models/default ($TTTD_MODELS_DIR/default, "
     "else in the working directory, else beside the binary), else tests/fixtures/tiny_model",
     F(model)},
    {"workers", T_INT, "1", 1, 64, 0, NULL, "TTTD_WORKERS", "N",
     "CPU worker threads when there is no GPU (each loads every model)", F(workers)},
    {"gpus", T_INT, "0", 0, 64, 0, NULL, "TTTD_GPUS", "N",
     "GPUs to use, one worker each; 0: every GPU found", F(gpus)},
    {"device", T_ENUM, "auto", 0, 0, 0, "auto|cpu|cuda", "TTTD_DEVICE", "D",
     "where the workers run: auto picks CUDA when built with it and a GPU answers", F(device)},
    {"dtype", T_ENUM, "auto", 0, 0, 0, "auto|f32|bf16", "TTTD_DTYPE", "T",
     "weights and activations: auto is bf16 on CUDA, f32 on the CPU", F(dtype)},
    {"max-batch", T_INT, "4", 1, 64, 0, NULL, "TTTD_MAX_BATCH", "N",
     "images denoised together at most (same model, size and steps)", F(max_batch)},
    {"max-queue-delay-ms", T_INT, "0", 0, 60000, 0, NULL, "TTTD_MAX_QUEUE_DELAY_MS", "MS",
     "how long the oldest queued image may wait for a fuller batch; 0: none (greedy: a batch "
     "leaves as soon as a worker is free, with the images of its kind that queued while every "
     "worker was busy, up to --max-batch)", F(max_queue_delay_ms)},
    {"max-queue", T_INT, "64", 1, 100000, 0, NULL, "TTTD_MAX_QUEUE", "N",
     "images waiting at most; a request that does not fit gets 429", F(max_queue)},
    {"max-body", T_SIZE, "1M", 64, (int64_t)1 << 30, 0, NULL, "TTTD_MAX_BODY", "BYTES",
     "largest request body (K, M, G suffixes); larger gets 413", F(max_body)},
    {"max-width", T_INT, "2048", 16, 16384, 0, NULL, "TTTD_MAX_WIDTH", "PX",
     "widest image a request may ask for", F(max_width)},
    {"max-height", T_INT, "2048", 16, 16384, 0, NULL, "TTTD_MAX_HEIGHT", "PX",
     "tallest image a request may ask for", F(max_height)},
    {"max-pixels", T_INT, "4194304", 256, (int64_t)16384 * 16384, 0, NULL, "TTTD_MAX_PIXELS",
     "N", "largest width x height a request may ask for", F(max_pixels)},
    {"max-steps", T_INT, "100", 1, 10000, 0, NULL, "TTTD_MAX_STEPS", "N",
     "most denoising steps a request may ask for", F(max_steps)},
    {"max-n", T_INT, "8", 1, 1024, 0, NULL, "TTTD_MAX_N", "N",
     "most images one request may ask for", F(max_n)},
    {"request-timeout-ms", T_DURATION, "600000", 1, 86400000, MS, NULL,
     "TTTD_REQUEST_TIMEOUT_MS", "MS",
     "longest a request may take, queue included (a request's timeout_ms may lower it)",
     F(request_timeout_ms)},
    {"drain-timeout", T_DURATION, "30", 0, 3600000, SEC, NULL, "TTTD_DRAIN_TIMEOUT", "SECONDS",
     "on SIGTERM/SIGINT, how long queued and running work may take before it is canceled "
     "(then the exit status is 3)",
     F(drain_timeout_ms)},
    {"api-key", T_LIST, NULL, 0, 0, 0, NULL, "TTTD_API_KEY", "KEY",
     "a key clients must send as \"Authorization: Bearer KEY\" (repeatable); none: no auth",
     F(api_key)},
    {"api-key-file", T_STR, NULL, 0, 0, 0, NULL, "TTTD_API_KEY_FILE", "FILE",
     "more keys, one a line (blank lines and # comments skipped; a key is at most 512 bytes, "
     "without spaces or control characters, else tttd exits with status 1)", F(api_key_file)},
    {"allowed-hosts", T_LIST, NULL, 0, 0, 0, NULL, "TTTD_ALLOWED_HOSTS", "LIST",
     "host names the Host header may carry besides the listening address (comma-separated; "
     "\".example.com\" also allows its subdomains; \"*\": any Host). localhost and loopback "
     "addresses pass when listening on loopback or on every address (0.0.0.0, ::), and on every "
     "address also the machine's addresses and host name; another Host gets 421",
     F(allowed_hosts)},
    {"cors-origins", T_LIST, NULL, 0, 0, 0, NULL, "TTTD_CORS_ORIGINS", "LIST",
     "origins (scheme://host[:port], comma-separated, or \"*\") whose web pages may call the API: "
     "they get Access-Control-Allow-Origin and answered preflights; none: only the server's own "
     "origin (its page at /), and a cross-origin POST or DELETE gets 403", F(cors_origins)},
    {"public-health", T_BOOL, "true", 0, 0, 0, NULL, "TTTD_PUBLIC_HEALTH", "BOOL",
     "/healthz and /readyz answer without a key", F(public_health)},
    {"public-metrics", T_BOOL, "true", 0, 0, 0, NULL, "TTTD_PUBLIC_METRICS", "BOOL",
     "/metrics answers without a key", F(public_metrics)},
    {"readyz-queue-mark", T_INT, "0", 0, 100000, 0, NULL, "TTTD_READYZ_QUEUE_MARK", "N",
     "/readyz says 503 while this many images or more wait; 0: --max-queue",
     F(readyz_queue_mark)},
    {"log-level", T_ENUM, "info", 0, 0, 0, "debug|info|warn|error", "TTTD_LOG_LEVEL", "L",
     "least severe log lines written (to stderr)", F(log_level)},
    {"preview-every", T_INT, "0", 0, 10000, 0, NULL, "TTTD_PREVIEW_EVERY", "K",
     "streamed requests get a preview event every K steps; 0: none", F(preview_every)},
    {"sse-ping", T_DURATION, "10000", 10, 3600000, MS, NULL, "TTTD_SSE_PING", "MS",
     "interval of the \": ping\" comments that keep event streams open", F(sse_ping_ms)},
    {"sse-max-buffer", T_SIZE, "4M", 16384, (int64_t)1 << 30, 0, NULL, "TTTD_SSE_MAX_BUFFER",
     "BYTES", "event bytes one stream may hold for a client that does not keep up; over it, "
     "preview events are dropped, then the job is canceled and the connection closed",
     F(sse_max_buffer)},
    {"job-ttl", T_DURATION, "300", 0, 86400000, SEC, NULL, "TTTD_JOB_TTL", "SECONDS",
     "how long GET /v1/jobs/{id} still sees a finished job", F(job_ttl_ms)},
    {"max-connections", T_INT, "1024", 4, 100000, 0, NULL, "TTTD_MAX_CONNECTIONS", "N",
     "open client connections at most", F(max_connections)},
};
/* clang-format on */

#define NROWS ((int)(sizeof rows / sizeof rows[0]))

enum { SRC_DEFAULT = 0, SRC_FILE = 1, SRC_ENV = 2, SRC_FLAG = 3 };

typedef struct parse_ctx {
    srv_options *o;
    int src[NROWS]; /* the source that last set each row */
    const char *where; /* "flag", "TTTD_X", "config FILE" */
    char *err;
    size_t errlen;
} parse_ctx;

int srv_options_count(void)
{
    return NROWS;
}

const char *srv_options_name(int i)
{
    return i >= 0 && i < NROWS ? rows[i].name : NULL;
}

static int fail(parse_ctx *c, const opt_row *r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(parse_ctx *c, const opt_row *r, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r)
        snprintf(c->err, c->errlen, "--%s: %s (from %s)", r->name, msg, c->where);
    else
        snprintf(c->err, c->errlen, "%s (from %s)", msg, c->where);
    return -1;
}

static void *field(srv_options *o, const opt_row *r)
{
    return (char *)o + r->off;
}

static void list_clear(srv_strlist *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int list_add(srv_strlist *l, const char *s, size_t len)
{
    char **v = realloc(l->v, (size_t)(l->n + 1) * sizeof *v);
    if (!v)
        return -1;
    l->v = v;
    if (!(v[l->n] = strndup(s, len)))
        return -1;
    l->n++;
    return 0;
}

/* Parses a signed decimal integer with an optional suffix left in *rest. */
static int parse_num(const char *s, int64_t *v, const char **rest)
{
    char *end;
    errno = 0;
    while (*s == ' ')
        s++;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s)
        return -1;
    *v = x;
    *rest = end;
    return 0;
}

static int mul_checked(int64_t a, int64_t b, int64_t *out)
{
    return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}

static int parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(s, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

static int parse_enum(const char *choices, const char *s, int *out)
{
    int idx = 0;
    for (const char *p = choices; *p; idx++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (strlen(s) == n && strncasecmp(p, s, n) == 0)
            return *out = idx, 0;
        p += n + (bar ? 1 : 0);
    }
    return -1;
}

/* Sets row r from text s (one value; lists take one element per call). */
static int set_value(parse_ctx *c, int i, const char *s, int source)
{
    const opt_row *r = &rows[i];
    void *f = field(c->o, r);
    int64_t v = 0;
    const char *rest = "";

    switch (r->type) {
    case T_BOOL:
        if (parse_bool(s, (int *)f))
            return fail(c, r, "'%s' is not a boolean: expected true or false", s);
        break;
    case T_ENUM:
        if (parse_enum(r->choices, s, (int *)f))
            return fail(c, r, "'%s' is not one of %s", s, r->choices);
        break;
    case T_STR: {
        char *dup = strdup(s);
        if (!dup)
            return fail(c, r, "out of memory");
        free(*(char **)f);
        *(char **)f = dup;
        break;
    }
    case T_LIST: {
        srv_strlist *l = f;
        if (c->src[i] < source)
            list_clear(l);
        if (list_add(l, s, strlen(s)))
            return fail(c, r, "out of memory");
        break;
    }
    case T_INT:
    case T_SIZE:
    case T_DURATION: {
        int64_t unit = r->type == T_DURATION ? r->unit : 1;
        if (parse_num(s, &v, &rest))
            goto bad_number;
        if (r->type == T_SIZE && *rest) {
            if (!strcasecmp(rest, "k") || !strcasecmp(rest, "kib") || !strcasecmp(rest, "kb"))
                unit = 1024;
            else if (!strcasecmp(rest, "m") || !strcasecmp(rest, "mib") || !strcasecmp(rest, "mb"))
                unit = 1024 * 1024;
            else if (!strcasecmp(rest, "g") || !strcasecmp(rest, "gib") || !strcasecmp(rest, "gb"))
                unit = 1024 * 1024 * 1024;
            else
                goto bad_number;
        } else if (r->type == T_DURATION && *rest) {
            if (!strcmp(rest, "ms"))
                unit = 1;
            else if (!strcmp(rest, "s"))
                unit = 1000;
            else if (!strcmp(rest, "m") || !strcmp(rest, "min"))
                unit = 60000;
            else
                goto bad_number;
        } else if (*rest) {
            goto bad_number;
        }
        if (mul_checked(v, unit, &v) || v < r->lo || v > r->hi)
            return fail(c, r, "'%s' is out of range: expected %s in [%" PRId64 ", %" PRId64 "]%s",
                        s, r->type == T_SIZE ? "a byte count" : "an integer",
                        r->type == T_DURATION ? r->lo / r->unit : r->lo,
                        r->type == T_DURATION ? r->hi / r->unit : r->hi,
                        r->type == T_DURATION ? (r->unit == SEC ? " seconds" : " ms") : "");
        if (r->type == T_INT)
            *(int *)f = (int)v;
        else
            *(int64_t *)f = v;
        break;
    bad_number:
        return fail(c, r, "'%s' is not %s", s,
                    r->type == T_SIZE       ? "a byte count (N, NK, NM or NG)"
                    : r->type == T_DURATION ? "a duration (N, Nms, Ns or Nm)"
                                            : "an integer");
    }
    }
    c->src[i] = source;
    return 0;
}

static int find_row(const char *name, size_t len)
{
    for (int i = 0; i < NROWS; i++) {
        const char *n = rows[i].name;
        if (strlen(n) != len)
            continue;
        size_t k = 0;
        /* Config files may spell dashes as underscores ("max_batch"). */
        while (k < len && (n[k] == name[k] || (n[k] == '-' && name[k] == '_')))
            k++;
        if (k == len)
            return i;
    }
    return -1;
}

/* ---- sources ---- */

static int apply_defaults(parse_ctx *c)
{
    c->where = "default";
    for (int i = 0; i < NROWS; i++)
        if (rows[i].def && set_value(c, i, rows[i].def, SRC_DEFAULT))
            return -1;
    return 0;
}

static const char *env_get(char *const *envp, const char *name)
{
    size_t n = strlen(name);
    for (char *const *e = envp; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

static int apply_env(parse_ctx *c, char *const *envp)
{
    for (int i = 0; i < NROWS; i++) {
        const char *v = env_get(envp, rows[i].env);
        if (!v)
            continue;
        c->where = rows[i].env;
        if (rows[i].type != T_LIST) {
            if (set_value(c, i, v, SRC_ENV))
                return -1;
            continue;
        }
        /* Lists: comma-separated, empty items skipped (TTTD_MODEL="a=x,b=y"). */
        for (const char *p = v; *p;) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            if (len) {
                char *item = strndup(p, len);
                int rc = item ? set_value(c, i, item, SRC_ENV) : fail(c, NULL, "out of memory");
                free(item);
                if (rc)
                    return -1;
            }
            p += len + (comma ? 1 : 0);
        }
    }
    return 0;
}

/* A JSON scalar as the text a flag would carry. */
static int json_text(const json_t *v, char *buf, size_t len)
{
    if (json_is_string(v))
        snprintf(buf, len, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, len, "%.17g", json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, len, "%s", json_is_true(v) ? "true" : "false");
    else
        return -1;
    return 0;
}

static int apply_file(parse_ctx *c, const char *path)
{
    char where[PATH_MAX + 16], text[4096];
    json_error_t jerr;
    snprintf(where, sizeof where, "config %s", path);
    c->where = where;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return fail(c, NULL, "%s:%d: %s", path, jerr.line, jerr.text);
    int rc = 0;
    const char *key;
    json_t *val;
    if (!json_is_object(root)) {
        rc = fail(c, NULL, "%s: expected a JSON object of option names", path);
        goto out;
    }
    json_object_foreach(root, key, val) {
        int i = find_row(key, strlen(key));
        if (i < 0 || strcmp(rows[i].name, "config") == 0) {
            rc = fail(c, NULL, "unknown option \"%s\"", key);
            goto out;
        }
        if (json_is_array(val) && rows[i].type == T_LIST) {
            size_t k;
            json_t *item;
            json_array_foreach(val, k, item) {
                if (json_text(item, text, sizeof text) ||
                    set_value(c, i, text, SRC_FILE)) {
                    rc = c->err[0] ? -1 : fail(c, &rows[i], "expected strings in the array");
                    goto out;
                }
            }
            continue;
        }
        if (json_text(val, text, sizeof text)) {
            rc = fail(c, &rows[i], "expected a string, number or boolean%s",
                      rows[i].type == T_LIST ? " or an array of strings" : "");
            goto out;
        }
        if ((rc = set_value(c, i, text, SRC_FILE)))
            goto out;
    }
out:
    json_decref(root);
    return rc;
}

static int apply_flags(parse_ctx *c, int argc, char **argv)
{
    c->where = "flag";
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strncmp(arg, "--", 2) != 0)
            return fail(c, NULL, "unexpected argument '%s' (options start with --)", arg);
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int i = find_row(name, len);
        int negated = 0;
        if (i < 0 && len > 3 && strncmp(name, "no-", 3) == 0) {
            i = find_row(name + 3, len - 3);
            negated = i >= 0 && rows[i].type == T_BOOL;
            if (!negated)
                i = -1;
        }
        if (i < 0)
            return fail(c, NULL, "unknown option '%.*s' (see tttd serve --help)", (int)len + 2,
                        arg);
        const char *val = eq ? eq + 1 : NULL;
        if (rows[i].type == T_BOOL && !val) {
            val = negated ? "false" : "true";
        } else if (negated) {
            return fail(c, &rows[i], "--no-%s takes no value", rows[i].name);
        } else if (!val) {
            if (a + 1 >= argc)
                return fail(c, &rows[i], "needs a value (%s)", rows[i].metavar);
            val = argv[++a];
        }
        if (set_value(c, i, val, SRC_FLAG))
            return -1;
    }
    return 0;
}

/* ---- derived values ---- */

static int valid_model_name(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            return 0;
    }
    return 1;
}

static int derive_models(parse_ctx *c)
{
    srv_options *o = c->o;
    const opt_row *r = &rows[find_row("model", 5)];
    c->where = "--model";
    if (o->model.n == 0)
        return 0;
    o->models = calloc((size_t)o->model.n, sizeof *o->models);
    if (!o->models)
        return fail(c, r, "out of memory");
    for (int k = 0; k < o->model.n; k++) {
        const char *v = o->model.v[k];
        const char *eq = strchr(v, '=');
        const char *name = eq ? v : "default";
        size_t nlen = eq ? (size_t)(eq - v) : strlen("default");
        const char *dir = eq ? eq + 1 : v;
        if (!valid_model_name(name, nlen))
            return fail(c, r, "'%s': the name must be 1 to 64 of [A-Za-z0-9._-]", v);
        if (!*dir)
            return fail(c, r, "'%s': the folder is empty", v);
        for (int j = 0; j < o->n_models; j++)
            if (strlen(o->models[j].name) == nlen && !strncmp(o->models[j].name, name, nlen))
                return fail(c, r, "'%s': the name '%.*s' is given twice", v, (int)nlen, name);
        srv_model_spec *m = &o->models[o->n_models];
        m->name = strndup(name, nlen);
        m->dir = strdup(dir);
        o->n_models++;
        if (!m->name || !m->dir)
            return fail(c, r, "out of memory");
    }
    return 0;
}

/*
 * A key is sent in an Authorization header, so it must be one header token: no control
 * characters (a NUL would cut it short, a CR or LF could never arrive) and a bounded length.
 * Returns NULL, or what is wrong with it.
 */
static const char *key_problem(const char *k, size_t n)
{
    if (n == 0)
        return "the key is empty";
    if (n > SRV_API_KEY_MAX)
        return "the key is too long";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)k[i];
        if (ch < 0x20 || ch == 0x7f)
            return "the key holds a control character";
    }
    return NULL;
}

/*
 * The key file, read a whole line at a time: a fixed buffer would cut a long line in two and
 * admit its tail as a second key. Returns -2 (the file, not the command line, is wrong).
 */
static int read_key_file(parse_ctx *c, const opt_row *r, const char *path)
{
    srv_options *o = c->o;
    FILE *f = fopen(path, "r");
    if (!f) {
        fail(c, r, "%s: %s", path, strerror(errno));
        return -2;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int rc = 0, lineno = 0;
    while ((got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t n = (size_t)got;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                     line[n - 1] == '\t'))
            n--;
        const char *s = line;
        while (n && (*s == ' ' || *s == '\t')) {
            s++;
            n--;
        }
        /* Blank lines and comments are skipped; a line of other bytes is a key or an error. */
        if (n == 0 || *s == '#')
            continue;
        const char *bad = memchr(s, ' ', n) || memchr(s, '\t', n)
                              ? "a key must not contain spaces"
                              : key_problem(s, n);
        if (bad) {
            fail(c, r, "%s:%d: %s (%zu bytes; a key is 1 to %d bytes without spaces or control "
                 "characters)", path, lineno, bad, n, SRV_API_KEY_MAX);
            rc = -2;
            break;
        }
        if (list_add(&o->keys, s, n)) {
            rc = fail(c, r, "out of memory");
            break;
        }
    }
    if (!rc && ferror(f)) {
        fail(c, r, "%s: read error", path);
        rc = -2;
    }
    free(line);
    fclose(f);
    return rc;
}

static int derive_keys(parse_ctx *c)
{
    srv_options *o = c->o;
    const opt_row *r = &rows[find_row("api-key", 7)];
    c->where = "--api-key";
    for (int k = 0; k < o->api_key.n; k++) {
        const char *bad = key_problem(o->api_key.v[k], strlen(o->api_key.v[k]));
        if (bad)
            return fail(c, r, "%s (an API key is 1 to %d bytes without control characters)",
                        bad, SRV_API_KEY_MAX);
        if (list_add(&o->keys, o->api_key.v[k], strlen(o->api_key.v[k])))
            return fail(c, r, "out of memory");
    }
    if (!o->api_key_file)
        return 0;
    c->where = "--api-key-file";
    return read_key_file(c, &rows[find_row("api-key-file", 12)], o->api_key_file);
}

/*
 * --allowed-hosts and --cors-origins are compared with what clients send, byte for byte but for
 * case: a value that no header could ever equal is a mistake worth saying at start-up.
 */
static int derive_access(parse_ctx *c)
{
    srv_options *o = c->o;
    const opt_row *r = &rows[find_row("allowed-hosts", 13)];
    c->where = "--allowed-hosts";
    for (int k = 0; k < o->allowed_hosts.n; k++) {
        const char *h = o->allowed_hosts.v[k];
        if (!*h || strcspn(h, " \t/@") != strlen(h) || (h[0] == '.' && !h[1]))
            return fail(c, r, "'%s' is not a host name (e.g. tttd, api.example.com, "
                        ".example.com or *)", h);
    }
    r = &rows[find_row("cors-origins", 12)];
    c->where = "--cors-origins";
    for (int k = 0; k < o->cors_origins.n; k++) {
        const char *v = o->cors_origins.v[k];
        const char *host = !strncasecmp(v, "http://", 7)    ? v + 7
                           : !strncasecmp(v, "https://", 8) ? v + 8
                                                            : NULL;
        if (strcmp(v, "*") != 0 &&
            (!host || !*host || strcspn(host, " \t/@") != strlen(host)))
            return fail(c, r, "'%s' is not an origin (scheme://host[:port] with no path, as a "
                        "browser sends it, or *)", v);
    }
    return 0;
}

static int cross_checks(parse_ctx *c)
{
    srv_options *o = c->o;
    c->where = "the combination of options";
    if (o->max_n > o->max_queue)
        return fail(c, &rows[find_row("max-n", 5)],
                    "%d is more than --max-queue %d: such a request could never be queued",
                    o->max_n, o->max_queue);
    if (o->readyz_queue_mark > o->max_queue)
        return fail(c, &rows[find_row("readyz-queue-mark", 17)],
                    "%d is more than --max-queue %d", o->readyz_queue_mark, o->max_queue);
    if (o->readyz_queue_mark == 0)
        o->readyz_queue_mark = o->max_queue;
    if (o->dtype == SRV_DTYPE_BF16 && o->device == SRV_DEVICE_CPU)
        return fail(c, &rows[find_row("dtype", 5)], "bf16 needs --device cuda or auto");
    return 0;
}

int srv_options_parse(srv_options *o, int argc, char **argv, char *const *envp, char *err,
                      size_t errlen)
{
    static char dummy[1];
    parse_ctx c = {.o = o, .err = errlen ? err : dummy, .errlen = errlen ? errlen : 1};
    memset(o, 0, sizeof *o);
    c.err[0] = '\0';
    for (int a = 1; a < argc; a++)
        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h"))
            return 1;
    if (apply_defaults(&c))
        return -1;

    /* The config file is named by a flag or the environment: find it before the others. */
    const char *config = env_get(envp, "TTTD_CONFIG");
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--config") && a + 1 < argc)
            config = argv[a + 1];
        else if (!strncmp(argv[a], "--config=", 9))
            config = argv[a] + 9;
    }
    if (config && *config && apply_file(&c, config))
        return -1;
    if (apply_env(&c, envp) || apply_flags(&c, argc, argv))
        return -1;
    if (derive_models(&c) || derive_access(&c) || cross_checks(&c))
        return -1;
    return derive_keys(&c);
}

void srv_options_free(srv_options *o)
{
    if (!o)
        return;
    for (int i = 0; i < NROWS; i++) {
        void *f = field(o, &rows[i]);
        if (rows[i].type == T_STR) {
            free(*(char **)f);
            *(char **)f = NULL;
        } else if (rows[i].type == T_LIST) {
            list_clear(f);
        }
    }
    for (int k = 0; k < o->n_models; k++) {
        free(o->models[k].name);
        free(o->models[k].dir);
    }
    free(o->models);
    o->models = NULL;
    o->n_models = 0;
    list_clear(&o->keys);
}

/* Writes text in lines of at most `width` columns, each after `indent` spaces but the first. */
static void wrap(FILE *f, const char *text, int indent, int width)
{
    int col = 0;
    for (const char *p = text; *p;) {
        while (*p == ' ')
            p++;
        int n = (int)strcspn(p, " ");
        if (col > 0 && col + 1 + n > width) {
            fprintf(f, "\n%*s", indent, "");
            col = 0;
        } else if (col > 0) {
            fputc(' ', f);
            col++;
        }
        fwrite(p, 1, (size_t)n, f);
        col += n;
        p += n;
    }
    fputc('\n', f);
}

void srv_options_help(FILE *f)
{
    fprintf(f, "usage: tttd serve [OPTIONS]\n\n"
               "Serves text-to-image models over HTTP (see README: the daemon). Each option may\n"
               "also come from its environment variable or a JSON config file (--config);\n"
               "flags win over the environment, which wins over the file.\n\n");
    for (int i = 0; i < NROWS; i++) {
        const opt_row *r = &rows[i];
        char flag[64];
        if (r->type == T_BOOL)
            snprintf(flag, sizeof flag, "--[no-]%s", r->name);
        else
            snprintf(flag, sizeof flag, "--%s %s", r->name, r->metavar);
        char facts[256];
        int n = 0;
        if (r->def)
            n += snprintf(facts + n, sizeof facts - (size_t)n, "default %s; ", r->def);
        if (r->type == T_ENUM)
            n += snprintf(facts + n, sizeof facts - (size_t)n, "one of %s; ", r->choices);
        else if (r->type == T_INT || r->type == T_SIZE)
            n += snprintf(facts + n, sizeof facts - (size_t)n, "%" PRId64 "..%" PRId64 "; ",
                          r->lo, r->hi);
        else if (r->type == T_DURATION)
            n += snprintf(facts + n, sizeof facts - (size_t)n,
                          "%" PRId64 "..%" PRId64 " %s, or with ms/s/m; ", r->lo / r->unit,
                          r->hi / r->unit, r->unit == SEC ? "s" : "ms");
        snprintf(facts + n, sizeof facts - (size_t)n, "env %s]", r->env);
        fprintf(f, "  %-28s ", flag);
        wrap(f, r->help, 31, 68);
        fprintf(f, "%31s[", "");
        wrap(f, facts, 32, 67);
    }
    fprintf(f, "  %-28s print this help\n", "--help");
}
