/*
 * options.c - the daemon's part of its options (see options.h): the checks across options and
 * what is derived from them (--model's NAME=DIR, the API keys and the key file, the Host and
 * origin lists), and freeing. The table and its sources are cmd/cmd_serve.c's.
 *
 * A message names the option as a flag would, its value where that is no secret, and what is
 * wrong: "--model bad name=/x: the name must be 1 to 64 of [A-Za-z0-9._-]".
 */
#include "server/options.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

typedef struct finish_ctx {
    srv_options *o;
    char *err;
    size_t errlen;
} finish_ctx;

static int fail(finish_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(finish_ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    return -1;
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

static int derive_models(finish_ctx *c)
{
    srv_options *o = c->o;
    if (o->model.n == 0)
        return 0;
    o->models = calloc((size_t)o->model.n, sizeof *o->models);
    if (!o->models)
        return fail(c, "out of memory");
    for (int k = 0; k < o->model.n; k++) {
        const char *v = o->model.v[k];
        const char *eq = strchr(v, '=');
        const char *name = eq ? v : "default";
        size_t nlen = eq ? (size_t)(eq - v) : strlen("default");
        const char *dir = eq ? eq + 1 : v;
        if (!valid_model_name(name, nlen))
            return fail(c, "--model %s: the name must be 1 to 64 of [A-Za-z0-9._-]", v);
        if (!*dir)
            return fail(c, "--model %s: the folder is empty", v);
        for (int j = 0; j < o->n_models; j++)
            if (strlen(o->models[j].name) == nlen && !strncmp(o->models[j].name, name, nlen))
                return fail(c, "--model %s: the name '%.*s' is given twice", v, (int)nlen, name);
        srv_model_spec *m = &o->models[o->n_models];
        m->name = strndup(name, nlen);
        m->dir = strdup(dir);
        o->n_models++;
        if (!m->name || !m->dir)
            return fail(c, "out of memory");
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
 * admit its tail as a second key. Returns SRV_OPTIONS_EKEYFILE (the file, not the command line,
 * is wrong).
 */
static int read_key_file(finish_ctx *c, const char *path)
{
    srv_options *o = c->o;
    FILE *f = fopen(path, "r");
    if (!f) {
        fail(c, "--api-key-file %s: %s", path, strerror(errno));
        return SRV_OPTIONS_EKEYFILE;
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
        const char *bad = memchr(s, ' ', n) || memchr(s, '\t', n) ? "a key must not contain spaces"
                                                                  : key_problem(s, n);
        if (bad) {
            fail(c,
                 "--api-key-file %s:%d: %s (%zu bytes; a key is 1 to %d bytes without spaces or "
                 "control characters)",
                 path, lineno, bad, n, SRV_API_KEY_MAX);
            rc = SRV_OPTIONS_EKEYFILE;
            break;
        }
        if (list_add(&o->keys, s, n)) {
            rc = fail(c, "out of memory");
            break;
        }
    }
    if (!rc && ferror(f)) {
        fail(c, "--api-key-file %s: read error", path);
        rc = SRV_OPTIONS_EKEYFILE;
    }
    free(line);
    fclose(f);
    return rc;
}

static int derive_keys(finish_ctx *c)
{
    srv_options *o = c->o;
    for (int k = 0; k < o->api_key.n; k++) {
        const char *bad = key_problem(o->api_key.v[k], strlen(o->api_key.v[k]));
        if (bad)
            return fail(c,
                        "--api-key: %s (an API key is 1 to %d bytes without control "
                        "characters)",
                        bad, SRV_API_KEY_MAX);
        if (list_add(&o->keys, o->api_key.v[k], strlen(o->api_key.v[k])))
            return fail(c, "out of memory");
    }
    if (!o->api_key_file)
        return 0;
    return read_key_file(c, o->api_key_file);
}

/*
 * --allowed-hosts and --cors-origins are compared with what clients send, byte for byte but for
 * case: a value that no header could ever equal is a mistake worth saying at start-up.
 */
static int derive_access(finish_ctx *c)
{
    srv_options *o = c->o;
    for (int k = 0; k < o->allowed_hosts.n; k++) {
        const char *h = o->allowed_hosts.v[k];
        if (!*h || strcspn(h, " \t/@") != strlen(h) || (h[0] == '.' && !h[1]))
            return fail(c,
                        "--allowed-hosts %s: not a host name (e.g. tttd, api.example.com, "
                        ".example.com or *)",
                        h);
    }
    for (int k = 0; k < o->cors_origins.n; k++) {
        const char *v = o->cors_origins.v[k];
        const char *host = !strncasecmp(v, "http://", 7)    ? v + 7
                           : !strncasecmp(v, "https://", 8) ? v + 8
                                                            : NULL;
        if (strcmp(v, "*") != 0 && (!host || !*host || strcspn(host, " \t/@") != strlen(host)))
            return fail(c,
                        "--cors-origins %s: not an origin (scheme://host[:port] with no path, "
                        "as a browser sends it, or *)",
                        v);
    }
    return 0;
}

static int cross_checks(finish_ctx *c)
{
    srv_options *o = c->o;
    if (o->max_n > o->max_queue)
        return fail(c,
                    "--max-n %d: more than --max-queue %d: such a request could never be "
                    "queued",
                    o->max_n, o->max_queue);
    if (o->readyz_queue_mark > o->max_queue)
        return fail(c, "--readyz-queue-mark %d: more than --max-queue %d", o->readyz_queue_mark,
                    o->max_queue);
    if (o->readyz_queue_mark == 0)
        o->readyz_queue_mark = o->max_queue;
    if (o->dtype == SRV_DTYPE_BF16 && o->device == SRV_DEVICE_CPU)
        return fail(c, "--dtype bf16: needs --device cuda or auto");
    return 0;
}

int srv_options_finish(srv_options *o, char *err, size_t errlen)
{
    static char dummy[1];
    finish_ctx c = {.o = o, .err = errlen ? err : dummy, .errlen = errlen ? errlen : 1};
    c.err[0] = '\0';
    if (derive_models(&c) || derive_access(&c) || cross_checks(&c))
        return -1;
    return derive_keys(&c);
}

void srv_options_free(srv_options *o)
{
    if (!o)
        return;
    free(o->config);
    free(o->host);
    free(o->api_key_file);
    o->config = o->host = o->api_key_file = NULL;
    list_clear(&o->model);
    list_clear(&o->api_key);
    list_clear(&o->allowed_hosts);
    list_clear(&o->cors_origins);
    for (int k = 0; k < o->n_models; k++) {
        free(o->models[k].name);
        free(o->models[k].dir);
    }
    free(o->models);
    o->models = NULL;
    o->n_models = 0;
    list_clear(&o->keys);
}
