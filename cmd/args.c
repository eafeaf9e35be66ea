/*
 * args.c - the argument-table parser (see args.h): value conversion, argv, and the help text.
 *
 * Every value, a default included, goes through cmd_arg_set, so the bounds and the messages of
 * a row are the same whatever gave the value.
 */
#include "cmd/args.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

/* Separates the words of one synopsis item ("[--steps N]") without letting wrap() break there. */
#define NBSP '\x01'
#define HELP_WIDTH 79

static void *field(void *dst, const cmd_arg *r)
{
    return (char *)dst + r->off;
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

const char *cmd_args_choice(const char *choices, int idx, char *buf, size_t len)
{
    const char *p = choices ? choices : "";
    for (int i = 0; i < idx && p; i++) {
        p = strchr(p, '|');
        p = p ? p + 1 : NULL;
    }
    size_t n = p ? strcspn(p, "|") : 0;
    snprintf(buf, len, "%.*s", (int)n, p ? p : "");
    return buf;
}

/* "a|b|c" -> "a, b or c". */
static const char *choices_text(const char *choices, char *buf, size_t len)
{
    size_t o = 0;
    int n = 1;
    for (const char *p = choices; *p; p++)
        n += *p == '|';
    buf[0] = '\0';
    for (int i = 0; i < n && o < len; i++) {
        char one[64];
        cmd_args_choice(choices, i, one, sizeof one);
        o += (size_t)snprintf(buf + o, len - o, "%s%s", i == 0 ? "" : i == n - 1 ? " or " : ", ",
                              one);
    }
    return buf;
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

/* A signed decimal integer, the rest (a unit suffix, or "") left in *rest. */
static int parse_num(const char *s, int64_t *v, const char **rest)
{
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s)
        return -1;
    *v = x;
    *rest = end;
    return 0;
}

/* The multiplier of a size or duration suffix, or 0 when it is not one. */
static int64_t suffix_unit(cmd_arg_type t, const char *s, int64_t bare)
{
    if (!*s)
        return bare;
    if (t == CMD_ARG_SIZE) {
        if (!strcasecmp(s, "k") || !strcasecmp(s, "kib") || !strcasecmp(s, "kb"))
            return 1024;
        if (!strcasecmp(s, "m") || !strcasecmp(s, "mib") || !strcasecmp(s, "mb"))
            return 1024 * 1024;
        if (!strcasecmp(s, "g") || !strcasecmp(s, "gib") || !strcasecmp(s, "gb"))
            return 1024 * 1024 * 1024;
    } else if (t == CMD_ARG_DURATION) {
        if (!strcmp(s, "ms"))
            return 1;
        if (!strcmp(s, "s"))
            return 1000;
        if (!strcmp(s, "m") || !strcmp(s, "min"))
            return 60000;
    }
    return 0;
}

/* What a row accepts, for messages: "an integer in [1, 10000]". */
static const char *expected(const cmd_arg *r, char *buf, size_t len)
{
    char ch[256];
    int64_t u = r->type == CMD_ARG_DURATION && r->unit > 0 ? r->unit : 1;
    switch (r->type) {
    case CMD_ARG_BOOL:
        return "true or false";
    case CMD_ARG_ENUM:
        snprintf(buf, len, "%s", choices_text(r->choices, ch, sizeof ch));
        return buf;
    case CMD_ARG_U64:
        return r->lo < 0 ? "an integer in [0, 18446744073709551615], or -1"
                         : "an integer in [0, 18446744073709551615]";
    case CMD_ARG_DOUBLE:
        snprintf(buf, len, "a number in [%g, %g]", r->lo, r->hi);
        return buf;
    case CMD_ARG_SIZE:
        snprintf(buf, len, "a byte count (N, NK, NM or NG) in [%.0f, %.0f]", r->lo, r->hi);
        return buf;
    case CMD_ARG_DURATION:
        snprintf(buf, len, "a duration (N, Nms, Ns or Nm) in [%.0f, %.0f]%s", r->lo / (double)u,
                 r->hi / (double)u, u == 1000 ? " seconds" : " ms");
        return buf;
    default:
        snprintf(buf, len, "an integer in [%.0f, %.0f]", r->lo, r->hi);
        return buf;
    }
}

static int list_add(cmd_strlist *l, const char *s, int own)
{
    char **v = realloc(l->v, (size_t)(l->n + 1) * sizeof *v);
    if (!v)
        return -1;
    l->v = v;
    if (!(v[l->n] = own ? strdup(s) : (char *)s))
        return -1;
    l->n++;
    return 0;
}

int cmd_arg_set(const cmd_args_spec *s, const cmd_arg *r, void *dst, const char *text, char *err,
                size_t errlen)
{
    void *f = field(dst, r);
    char want[320];
    switch (r->type) {
    case CMD_ARG_FLAG:
        *(int *)f = (int)r->hi;
        return 0;
    case CMD_ARG_BOOL:
        return parse_bool(text, f) ? fail(err, errlen, "expected %s", expected(r, want, sizeof want))
                                   : 0;
    case CMD_ARG_ENUM:
        return parse_enum(r->choices, text, f)
                   ? fail(err, errlen, "expected %s", expected(r, want, sizeof want))
                   : 0;
    case CMD_ARG_STR: {
        char *v = s->own ? strdup(text) : (char *)text;
        if (!v)
            return fail(err, errlen, "out of memory");
        if (s->own)
            free(*(char **)f);
        *(char **)f = v;
        return 0;
    }
    case CMD_ARG_LIST:
        return list_add(f, text, s->own) ? fail(err, errlen, "out of memory") : 0;
    case CMD_ARG_U64: {
        char *end;
        if (r->lo < 0 && strcmp(text, "-1") == 0) /* "not given" */
            return 1;
        if (*text < '0' || *text > '9') /* strtoull would take "-1" as 2^64 - 1 */
            return fail(err, errlen, "expected %s", expected(r, want, sizeof want));
        errno = 0;
        unsigned long long v = strtoull(text, &end, 10);
        if (errno || *end)
            return fail(err, errlen, "expected %s", expected(r, want, sizeof want));
        *(uint64_t *)f = (uint64_t)v;
        return 0;
    }
    case CMD_ARG_DOUBLE: {
        char *end;
        double v = strtod(text, &end);
        if (end == text || *end || !(v >= r->lo && v <= r->hi))
            return fail(err, errlen, "expected %s", expected(r, want, sizeof want));
        *(double *)f = v;
        return 0;
    }
    case CMD_ARG_INT:
    case CMD_ARG_INT64:
    case CMD_ARG_SIZE:
    case CMD_ARG_DURATION: {
        int64_t v, unit;
        const char *rest;
        if (parse_num(text, &v, &rest) ||
            !(unit = suffix_unit(r->type, rest, r->type == CMD_ARG_DURATION ? r->unit : 1)) ||
            __builtin_mul_overflow(v, unit, &v) || (double)v < r->lo || (double)v > r->hi)
            return fail(err, errlen, "expected %s", expected(r, want, sizeof want));
        if (r->type == CMD_ARG_INT)
            *(int *)f = (int)v;
        else
            *(int64_t *)f = v;
        return 0;
    }
    }
    return fail(err, errlen, "unknown row type %d", (int)r->type);
}

int cmd_args_defaults(const cmd_args_spec *s, void *dst, char *err, size_t errlen)
{
    char msg[384];
    for (int i = 0; i < s->n_rows; i++) {
        const cmd_arg *r = &s->rows[i];
        if (r->def && r->type != CMD_ARG_FLAG && cmd_arg_set(s, r, dst, r->def, msg, sizeof msg) < 0)
            return fail(err, errlen, "the default of %s, '%s': %s", r->name ? r->name : "-?",
                        r->def, msg);
    }
    return 0;
}

const cmd_arg *cmd_args_find(const cmd_args_spec *s, const char *name, size_t len)
{
    for (int i = 0; i < s->n_rows; i++) {
        const char *n = s->rows[i].name;
        if (!n || (s->rows[i].flags & CMD_ARG_POSITIONAL) || strlen(n) != len)
            continue;
        size_t k = 0;
        while (k < len && (n[k] == name[k] || (n[k] == '-' && name[k] == '_')))
            k++;
        if (k == len)
            return &s->rows[i];
    }
    return NULL;
}

static const cmd_arg *find_short(const cmd_args_spec *s, char c)
{
    for (int i = 0; i < s->n_rows; i++)
        if (c && s->rows[i].short_name == c && !(s->rows[i].flags & CMD_ARG_POSITIONAL))
            return &s->rows[i];
    return NULL;
}

/* ---- help ---- */

/*
 * Writes text from column col (where the cursor is), wrapping at HELP_WIDTH with further lines
 * indented by indent. A "\n" in text starts a new line at indent plus that line's own leading
 * spaces; spaces inside a line are kept, and a line that has a run of two (a list item
 * "  all      every attn ...") wraps under the text after it. NBSP prints as a space that never
 * breaks. Ends the last line.
 */
static void wrap(FILE *f, const char *text, int col, int indent)
{
    const char *p = text;
    for (;;) {
        int lead = (int)strspn(p, " ");
        int sub = indent + lead, hung = 0;
        fprintf(f, "%*s", lead, "");
        col += lead;
        p += lead;
        for (int first = 1;; first = 0) {
            int gap = (int)strspn(p, " ");
            p += gap;
            if (!*p || *p == '\n')
                break;
            int n = (int)strcspn(p, " \n");
            if (!first && col + gap + n > HELP_WIDTH) {
                fprintf(f, "\n%*s", sub, "");
                col = sub;
            } else if (!first) {
                fprintf(f, "%*s", gap, "");
                col += gap;
                if (gap >= 2 && !hung)
                    sub = col, hung = 1;
            }
            for (int k = 0; k < n; k++)
                fputc(p[k] == NBSP ? ' ' : p[k], f);
            col += n;
            p += n;
        }
        fputc('\n', f);
        if (*p != '\n')
            return;
        p++;
        fprintf(f, "%*s", indent, "");
        col = indent;
    }
}

/* How a row is written in the option list: "-o, --output OUT", "--[no-]public-health". */
static void row_label(const cmd_arg *r, char *buf, size_t len)
{
    size_t o = 0;
    if (r->flags & CMD_ARG_POSITIONAL) {
        snprintf(buf, len, "%s", r->name);
        return;
    }
    if (r->short_name)
        o += (size_t)snprintf(buf, len, "-%c%s", r->short_name, r->name ? ", " : "");
    if (r->name && o < len)
        o += (size_t)snprintf(buf + o, len - o, "--%s%s", r->type == CMD_ARG_BOOL ? "[no-]" : "",
                              r->name);
    if (r->metavar && r->type != CMD_ARG_FLAG && r->type != CMD_ARG_BOOL && o < len)
        snprintf(buf + o, len - o, " %s", r->metavar);
}

/* The option as the synopsis and the "is required" message name it: the short form when it has
 * one. */
static void row_flag(const cmd_arg *r, char *buf, size_t len)
{
    if (r->flags & CMD_ARG_POSITIONAL)
        snprintf(buf, len, "%s", r->name);
    else if (r->short_name)
        snprintf(buf, len, "-%c", r->short_name);
    else
        snprintf(buf, len, "--%s%s", r->type == CMD_ARG_BOOL ? "[no-]" : "", r->name);
}

static void synopsis(const cmd_args_spec *s, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    if (s->synopsis) {
        snprintf(buf, len, "%s", s->synopsis);
        return;
    }
    /* Positionals, then required options, then the others, each group in table order. */
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < s->n_rows && o < len; i++) {
            const cmd_arg *r = &s->rows[i];
            int pos = (r->flags & CMD_ARG_POSITIONAL) != 0;
            int req = pos ? !(r->flags & CMD_ARG_OPTIONAL) : (r->flags & CMD_ARG_REQUIRED) != 0;
            if ((pass == 0) != pos || (pass == 1 && !req) || (pass == 2 && req))
                continue;
            char flag[64];
            row_flag(r, flag, sizeof flag);
            const char *mv = pos || r->type == CMD_ARG_FLAG || r->type == CMD_ARG_BOOL
                                 ? NULL
                                 : r->metavar;
            o += (size_t)snprintf(buf + o, len - o, "%s%s%s%s%s%s", o ? " " : "", req ? "" : "[",
                                  flag, mv ? "\x01" : "", mv ? mv : "", req ? "" : "]");
        }
    }
}

void cmd_args_usage(const cmd_args_spec *s, FILE *f)
{
    char syn[2048];
    synopsis(s, syn, sizeof syn);
    int col = fprintf(f, "usage: %s ", s->prog);
    wrap(f, syn, col, col);
}

void cmd_args_help(const cmd_args_spec *s, FILE *f)
{
    cmd_args_usage(s, f);
    if (s->about) {
        fputc('\n', f);
        wrap(f, s->about, 0, 0);
    }
    fputc('\n', f);
    int width = 6; /* "--help" */
    for (int i = 0; i < s->n_rows; i++) {
        char label[128];
        row_label(&s->rows[i], label, sizeof label);
        int n = (int)strlen(label);
        width = n > width && n <= 24 ? n : width;
    }
    for (int i = 0; i < s->n_rows; i++) {
        const cmd_arg *r = &s->rows[i];
        char label[128], facts[512], text[2048], ch[256];
        size_t n = 0;
        row_label(r, label, sizeof label);
        facts[0] = '\0';
        if (r->def && *r->def && r->type != CMD_ARG_FLAG)
            n += (size_t)snprintf(facts + n, sizeof facts - n, "default\x01%s; ", r->def);
        if (r->type == CMD_ARG_ENUM)
            n += (size_t)snprintf(facts + n, sizeof facts - n, "%s; ",
                                  choices_text(r->choices, ch, sizeof ch));
        else if (r->type == CMD_ARG_INT || r->type == CMD_ARG_INT64 || r->type == CMD_ARG_SIZE)
            n += (size_t)snprintf(facts + n, sizeof facts - n, "%.0f\x01to\x01%.0f; ", r->lo, r->hi);
        else if (r->type == CMD_ARG_DOUBLE)
            n += (size_t)snprintf(facts + n, sizeof facts - n, "%g\x01to\x01%g; ", r->lo, r->hi);
        else if (r->type == CMD_ARG_U64)
            n += (size_t)snprintf(facts + n, sizeof facts - n, "0\x01to\x01" "2^64-1%s; ",
                                  r->lo < 0 ? ",\x01or\x01-1" : "");
        else if (r->type == CMD_ARG_DURATION) {
            double u = r->unit > 0 ? (double)r->unit : 1.0;
            n += (size_t)snprintf(facts + n, sizeof facts - n, "%.0f to %.0f %s, or with ms/s/m; ",
                                  r->lo / u, r->hi / u, u == 1000 ? "s" : "ms");
        }
        if (r->env)
            n += (size_t)snprintf(facts + n, sizeof facts - n, "env\x01%s; ", r->env);
        if (n >= 2 && n < sizeof facts)
            facts[n - 2] = '\0'; /* the last "; " */
        snprintf(text, sizeof text, "%s%s%s%s", r->help ? r->help : "", facts[0] ? " [" : "",
                 facts, facts[0] ? "]" : "");
        int col = fprintf(f, "  %-*s  ", width, label);
        if (col > width + 4) {
            fprintf(f, "\n%*s", width + 4, "");
            col = width + 4;
        }
        wrap(f, text, col, width + 4);
    }
    fprintf(f, "  %-*s  print this help\n", width, "--help");
}

/* ---- sources ---- */

/* Where a row's value came from, lowest first: a higher source's list replaces a lower one's. */
enum { SRC_DEFAULT = 0, SRC_FILE, SRC_ENV, SRC_FLAG };

/* One parse: the rows' sources, and where messages go. */
typedef struct parse_state {
    const cmd_args_spec *s;
    void *dst;
    unsigned char *src; /* per row: the highest source that set it */
    FILE *errout;
} parse_state;

static void list_clear(cmd_strlist *l, int own)
{
    for (int k = 0; own && k < l->n; k++)
        free(l->v[k]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* Sets row r from text, given by source: cmd_arg_set, after which the row counts as given. */
static int set_from(parse_state *st, const cmd_arg *r, const char *text, int source, char *err,
                    size_t errlen)
{
    size_t i = (size_t)(r - st->s->rows);
    if (r->type == CMD_ARG_LIST && st->src[i] < source)
        list_clear((cmd_strlist *)field(st->dst, r), st->s->own);
    int rc = cmd_arg_set(st->s, r, st->dst, text, err, errlen);
    if (rc < 0)
        return -1;
    st->src[i] = (unsigned char)source;
    if (r->seen) /* 1: a value that means "not given" (a U64 row's -1) */
        *(int *)((char *)st->dst + r->seen - 1) = rc == 0;
    return 0;
}

/* A usage error: the message, then the usage line and where the rest is; returns 2. */
static int usage_error(const cmd_args_spec *s, FILE *errout, int with_usage, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int usage_error(const cmd_args_spec *s, FILE *errout, int with_usage, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(errout, "%s: ", s->prog);
    vfprintf(errout, fmt, ap);
    fputc('\n', errout);
    va_end(ap);
    if (with_usage) {
        cmd_args_usage(s, errout);
        fprintf(errout, "`%s --help` describes every option.\n", s->prog);
    }
    return 2;
}

/* Sets row r from a source other than argv; -1, or 2 with "--name VALUE (from WHERE): ...". */
static int set_sourced(parse_state *st, const cmd_arg *r, const char *text, int source,
                       const char *where)
{
    char msg[384];
    if (set_from(st, r, text, source, msg, sizeof msg) == 0)
        return -1;
    return usage_error(st->s, st->errout, 0, "--%s %s (from %s): %s", r->name, text, where, msg);
}

static const char *env_get(char *const *envp, const char *name)
{
    size_t n = name ? strlen(name) : 0;
    for (char *const *e = envp; n && e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

/* Every row's environment variable; a list's value is comma-separated ("a=x,b=y"). */
static int apply_env(parse_state *st, char *const *envp)
{
    const cmd_args_spec *s = st->s;
    for (int i = 0; i < s->n_rows; i++) {
        const cmd_arg *r = &s->rows[i];
        const char *v = env_get(envp, r->env);
        int status = -1;
        if (!v || (r->flags & CMD_ARG_POSITIONAL))
            continue;
        if (r->type != CMD_ARG_LIST) {
            if ((status = set_sourced(st, r, v, SRC_ENV, r->env)) >= 0)
                return status;
            continue;
        }
        for (const char *p = v; *p && status < 0;) {
            size_t len = strcspn(p, ",");
            if (len) {
                char *item = strndup(p, len);
                status = item ? set_sourced(st, r, item, SRC_ENV, r->env)
                              : usage_error(s, st->errout, 0, "out of memory");
                free(item);
            }
            p += len + (p[len] == ',');
        }
        if (status >= 0)
            return status;
    }
    return -1;
}

/* A JSON scalar as the text a flag would carry; -1 for anything else. */
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

/* The config file: an object of long names to values (arrays for lists). */
static int apply_file(parse_state *st, const char *path, const char *path_from)
{
    const cmd_args_spec *s = st->s;
    char where[4200], text[4096];
    const char *key;
    json_t *val;
    json_error_t jerr;
    int status = -1;
    snprintf(where, sizeof where, "config %s", path);
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (jerr.line > 0)
            return usage_error(s, st->errout, 0, "--%s %s%s: line %d: %s", s->config, path,
                               path_from, jerr.line, jerr.text);
        return usage_error(s, st->errout, 0, "--%s %s%s: %s", s->config, path, path_from,
                           jerr.text);
    }
    if (!json_is_object(root)) {
        status = usage_error(s, st->errout, 0, "--%s %s%s: expected a JSON object of option names",
                             s->config, path, path_from);
        goto out;
    }
    json_object_foreach(root, key, val) {
        const cmd_arg *r = cmd_args_find(s, key, strlen(key));
        if (!r || strcmp(r->name, s->config) == 0 || r->type == CMD_ARG_FLAG) {
            status = usage_error(s, st->errout, 0, "unknown option \"%s\" (from %s)", key, where);
            goto out;
        }
        if (json_is_array(val) && r->type == CMD_ARG_LIST) {
            size_t k;
            json_t *item;
            json_array_foreach(val, k, item) {
                if (json_text(item, text, sizeof text)) {
                    status = usage_error(s, st->errout, 0,
                                         "--%s (from %s): expected strings in the array",
                                         r->name, where);
                    goto out;
                }
                if ((status = set_sourced(st, r, text, SRC_FILE, where)) >= 0)
                    goto out;
            }
            continue;
        }
        if (json_text(val, text, sizeof text)) {
            status = usage_error(s, st->errout, 0,
                                 "--%s (from %s): expected a string, number or boolean%s",
                                 r->name, where,
                                 r->type == CMD_ARG_LIST ? " or an array of them" : "");
            goto out;
        }
        if ((status = set_sourced(st, r, text, SRC_FILE, where)) >= 0)
            goto out;
    }
out:
    json_decref(root);
    return status;
}

/* ---- argv ---- */

static int has_positionals(const cmd_args_spec *s)
{
    for (int i = 0; i < s->n_rows; i++)
        if (s->rows[i].flags & CMD_ARG_POSITIONAL)
            return 1;
    return 0;
}

/* The k-th positional row, or NULL. */
static const cmd_arg *positional(const cmd_args_spec *s, int k)
{
    for (int i = 0; i < s->n_rows; i++)
        if ((s->rows[i].flags & CMD_ARG_POSITIONAL) && k-- == 0)
            return &s->rows[i];
    return NULL;
}

/*
 * The row and the value of the option at argv[*a], advancing *a past a separate value: 0, or
 * -1 with a message in err (then with_usage says whether the usage line should follow).
 */
static int split_option(const cmd_args_spec *s, int argc, char **argv, int *a, const cmd_arg **rp,
                        const char **valp, int *lenp, char *err, size_t errlen, int *with_usage)
{
    const char *arg = argv[*a];
    const cmd_arg *r = NULL;
    const char *eq = NULL;
    int negated = 0, len;
    if (arg[1] == '-') {
        const char *name = arg + 2;
        eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        r = cmd_args_find(s, name, n);
        if (!r && n > 3 && strncmp(name, "no-", 3) == 0) {
            r = cmd_args_find(s, name + 3, n - 3);
            negated = r != NULL;
            if (r && r->type != CMD_ARG_BOOL)
                r = NULL;
        }
        len = (int)n + 2;
    } else {
        r = arg[2] == '\0' ? find_short(s, arg[1]) : NULL;
        len = (int)strlen(arg);
    }
    *lenp = len;
    *with_usage = 0;
    if (!r) {
        *with_usage = 1;
        return fail(err, errlen, "unknown option %.*s%s", len, arg,
                    has_positionals(s) ? " (use -- before an argument that starts with -)" : "");
    }
    const char *val = eq ? eq + 1 : NULL;
    if (r->type == CMD_ARG_FLAG || negated) {
        if (val)
            return fail(err, errlen, "%.*s takes no value", len, arg);
        val = negated ? "false" : NULL;
    } else if (r->type == CMD_ARG_BOOL && !val) {
        val = "true";
    } else if (!val) {
        if (*a + 1 >= argc)
            return fail(err, errlen, "%.*s needs a value (%s)", len, arg,
                        r->metavar ? r->metavar : "VALUE");
        val = argv[++*a];
    }
    *rp = r;
    *valp = val;
    return 0;
}

/* One option at argv[*a]; advances *a past its value. -1 to go on, else the exit status. */
static int parse_option(parse_state *st, int argc, char **argv, int *a)
{
    const char *arg = argv[*a], *val = NULL;
    const cmd_arg *r = NULL;
    char msg[384];
    int len, with_usage;
    if (split_option(st->s, argc, argv, a, &r, &val, &len, msg, sizeof msg, &with_usage))
        return usage_error(st->s, st->errout, with_usage, "%s", msg);
    if (set_from(st, r, val ? val : "", SRC_FLAG, msg, sizeof msg))
        return usage_error(st->s, st->errout, 0, "%.*s %s: %s", len, arg, val ? val : "", msg);
    return -1;
}

/* After every source: every required positional and option given? -1, or 2 with the message. */
static int check_required(const parse_state *st)
{
    const cmd_args_spec *s = st->s;
    char missing[512];
    size_t o = 0;
    int n = 0, total = 0;
    for (int i = 0; i < s->n_rows; i++) {
        const cmd_arg *r = &s->rows[i];
        total += (r->flags & CMD_ARG_POSITIONAL) && !(r->flags & CMD_ARG_OPTIONAL) && !st->src[i];
    }
    for (int i = 0; i < s->n_rows && o < sizeof missing; i++) {
        const cmd_arg *r = &s->rows[i];
        if (!(r->flags & CMD_ARG_POSITIONAL) || (r->flags & CMD_ARG_OPTIONAL) || st->src[i])
            continue;
        n++;
        o += (size_t)snprintf(missing + o, sizeof missing - o, "%s%s",
                              n == 1 ? "" : n == total ? " and " : ", ", r->name);
    }
    if (n)
        return usage_error(s, st->errout, 1, "missing %s", missing);
    for (int i = 0; i < s->n_rows; i++) {
        const cmd_arg *r = &s->rows[i];
        char flag[64];
        if (!(r->flags & CMD_ARG_REQUIRED) || (r->flags & CMD_ARG_POSITIONAL) || st->src[i])
            continue;
        row_flag(r, flag, sizeof flag);
        return usage_error(s, st->errout, 1, "%s is required", flag);
    }
    return -1;
}

/* argv's options and positionals, in order. -1 to go on, else the exit status. */
static int apply_argv(parse_state *st, int argc, char **argv, FILE *out)
{
    char msg[512];
    int status = -1, n_pos = 0, only_pos = 0;
    for (int a = 1; a < argc && status < 0; a++) {
        const char *arg = argv[a];
        if (!only_pos && arg[0] == '-' && arg[1] != '\0') {
            if (strcmp(arg, "--") == 0) {
                only_pos = 1;
            } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
                cmd_args_help(st->s, out);
                status = 0;
            } else {
                status = parse_option(st, argc, argv, &a);
            }
            continue;
        }
        const cmd_arg *r = positional(st->s, n_pos++);
        if (!r)
            status = usage_error(st->s, st->errout, 1, "too many arguments (%s)", arg);
        else if (set_from(st, r, arg, SRC_FLAG, msg, sizeof msg))
            status = usage_error(st->s, st->errout, 0, "%s %s: %s", r->name, arg, msg);
    }
    return status;
}

/* Runs the sources in order over the defaults: -1 when the command should go on. */
static int parse_sources(const cmd_args_spec *s, void *dst, int argc, char **argv,
                         char *const *envp, int layered, FILE *out, FILE *errout)
{
    char msg[512];
    if (cmd_args_defaults(s, dst, msg, sizeof msg))
        return usage_error(s, errout, 0, "%s", msg);
    parse_state st = {.s = s, .dst = dst, .src = calloc((size_t)s->n_rows + 1, 1),
                      .errout = errout};
    if (!st.src)
        return usage_error(s, errout, 0, "out of memory");
    int status = -1;
    if (layered && s->config) {
        /* The file is named by a flag or the environment: find it before reading either. */
        const cmd_arg *cr = cmd_args_find(s, s->config, strlen(s->config));
        const char *path = cr ? env_get(envp, cr->env) : NULL;
        int from_env = 1;
        for (int a = 1; cr && a < argc && strcmp(argv[a], "--") != 0; a++) {
            const cmd_arg *r;
            const char *val;
            int len, with_usage;
            if (argv[a][0] == '-' && argv[a][1] &&
                !split_option(s, argc, argv, &a, &r, &val, &len, msg, sizeof msg, &with_usage) &&
                r == cr)
                path = val, from_env = 0;
        }
        if (path && *path) {
            char from[128] = "";
            if (from_env)
                snprintf(from, sizeof from, " (from %s)", cr->env);
            status = apply_file(&st, path, from);
        }
    }
    if (status < 0 && layered)
        status = apply_env(&st, envp);
    if (status < 0)
        status = apply_argv(&st, argc, argv, out);
    if (status < 0)
        status = check_required(&st);
    free(st.src);
    return status;
}

int cmd_args_parse(const cmd_args_spec *s, void *dst, int argc, char **argv, FILE *out,
                   FILE *errout)
{
    return parse_sources(s, dst, argc, argv, NULL, 0, out, errout);
}

int cmd_args_parse_layered(const cmd_args_spec *s, void *dst, int argc, char **argv,
                           char *const *envp, FILE *out, FILE *errout)
{
    if (!s->own) /* the file's values do not outlive the parse */
        return usage_error(s, errout, 0, "a layered parse needs owned values (a bug)");
    /* --help wins over anything else argv holds (cmd_args_parse stops at the first mistake). */
    for (int a = 1; a < argc && strcmp(argv[a], "--") != 0; a++)
        if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0) {
            cmd_args_help(s, out);
            return 0;
        }
    return parse_sources(s, dst, argc, argv, envp, 1, out, errout);
}

void cmd_args_free(const cmd_args_spec *s, void *dst)
{
    if (!dst)
        return;
    for (int i = 0; i < s->n_rows; i++) {
        const cmd_arg *r = &s->rows[i];
        void *f = field(dst, r);
        if (r->type == CMD_ARG_LIST)
            list_clear(f, s->own);
        else if (r->type == CMD_ARG_STR && s->own) {
            free(*(char **)f);
            *(char **)f = NULL;
        }
    }
}
