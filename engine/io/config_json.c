/*
 * config_json.c - the JSON readers of the config loaders (see config_json.h): typed key access
 * with first-error recording, file and in-memory loading, and eng_config_class_name.
 */
#include "engine/io/config_json.h"
#include "engine/io/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- readers ---- */

const char *eng_cfg_json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* Records "label: message" as the cfg's error unless an earlier one is there. Returns r->rc. */
int eng_cfg_fail(eng_cfg *r, int code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;

    if (r->rc)
        return r->rc;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->rc = code;
    eng_error_set(r->err, code, "%s: %s", r->label, msg);
    return code;
}

void eng_cfg_type_error(eng_cfg *r, const char *key, const char *want, const json_t *v)
{
    eng_cfg_fail(r, ENG_EFORMAT, "key \"%s\" must be %s, not %s", key, want, eng_cfg_json_kind(v));
}

/* The value of key, or NULL when absent (an error when required). */
json_t *eng_cfg_get(eng_cfg *r, const char *key, int flags)
{
    json_t *v = json_object_get(r->root, key);
    if (!v && (flags & ENG_CFG_REQ))
        eng_cfg_fail(r, ENG_ENOTFOUND, "missing required key \"%s\"", key);
    return v;
}

/* 1 when key is present with the value null. */
int eng_cfg_is_null(eng_cfg *r, const char *key)
{
    return json_is_null(json_object_get(r->root, key));
}

int eng_cfg_int(eng_cfg *r, const char *key, int flags, int def, int lo, int hi)
{
    json_t *v = eng_cfg_get(r, key, flags);
    if (!v)
        return def;
    if (!json_is_integer(v)) {
        eng_cfg_type_error(r, key, "an integer", v);
        return def;
    }
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) {
        eng_cfg_fail(r, ENG_EFORMAT, "key \"%s\" = %lld is out of range [%d, %d]", key,
                     (long long)x, lo, hi);
        return def;
    }
    return (int)x;
}

/* A number in [lo, hi]; with gt_lo set, lo itself is excluded. */
double eng_cfg_num(eng_cfg *r, const char *key, int flags, double def, double lo, double hi,
                   int gt_lo)
{
    json_t *v = eng_cfg_get(r, key, flags);
    if (!v)
        return def;
    if (!json_is_number(v)) {
        eng_cfg_type_error(r, key, "a number", v);
        return def;
    }
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi) || (gt_lo && x == lo)) {
        eng_cfg_fail(r, ENG_EFORMAT, "key \"%s\" = %g is out of range %c%g, %g]", key, x,
                     gt_lo ? '(' : '[', lo, hi);
        return def;
    }
    return x;
}

int eng_cfg_bool(eng_cfg *r, const char *key, int flags, int def)
{
    json_t *v = eng_cfg_get(r, key, flags);
    if (!v)
        return def;
    if (!json_is_boolean(v)) {
        eng_cfg_type_error(r, key, "a boolean", v);
        return def;
    }
    return json_is_true(v);
}

const char *eng_cfg_str(eng_cfg *r, const char *key, int flags, const char *def)
{
    json_t *v = eng_cfg_get(r, key, flags);
    if (!v)
        return def;
    if (!json_is_string(v)) {
        eng_cfg_type_error(r, key, "a string", v);
        return def;
    }
    return json_string_value(v);
}

/* A boolean option tttd only supports as false. */
void eng_cfg_false_only(eng_cfg *r, const char *key)
{
    if (eng_cfg_bool(r, key, ENG_CFG_OPT, 0))
        eng_cfg_fail(r, ENG_EUNSUPPORTED, "key \"%s\" = true is not supported", key);
}

/* When key is present it must be the string want (a class check). */
void eng_cfg_expect_class(eng_cfg *r, const char *key, const char *want)
{
    const char *got = eng_cfg_str(r, key, ENG_CFG_OPT, NULL);
    if (got && strcmp(got, want) != 0)
        eng_cfg_fail(r, ENG_EUNSUPPORTED, "key \"%s\" = \"%s\": expected \"%s\"", key, got, want);
}

/* ---- files ---- */

static int json_read_file(const char *path, json_t **out, eng_error *err)
{
    json_error_t je;
    FILE *f = fopen(path, "rb");

    *out = NULL;
    if (!f) {
        int e = errno;
        return eng_error_set(err, e == ENOENT ? ENG_ENOTFOUND : ENG_EIO, "%s: %s", path,
                             strerror(e));
    }
    json_t *root = json_loadf(f, 0, &je);
    int read_failed = ferror(f);
    fclose(f);
    if (read_failed) {
        json_decref(root);
        return eng_error_set(err, ENG_EIO, "%s: read error", path);
    }
    if (!root)
        return eng_error_set(err, ENG_EFORMAT, "%s: invalid JSON at line %d, column %d: %s", path,
                             je.line, je.column, je.text);
    *out = root;
    return 0;
}

static int run_parser(json_t *root, const char *label, eng_cfg_parse_fn fn, void *out,
                      eng_error *err)
{
    eng_cfg r = {label, root, err, 0};

    if (!json_is_object(root))
        return eng_error_set(err, ENG_EFORMAT, "%s: the top level must be an object, not %s", label,
                             eng_cfg_json_kind(root));
    ENG_TRY(fn(&r, out));
    return r.rc; /* a parser may record a failure in r and go on */
}

int eng_cfg_load_file(const char *path, eng_cfg_parse_fn fn, void *out, eng_error *err)
{
    json_t *root;
    ENG_TRY(json_read_file(path, &root, err));
    int rc = run_parser(root, path, fn, out, err);
    json_decref(root);
    return rc;
}

int eng_cfg_load_text(const char *text, size_t len, const char *label, eng_cfg_parse_fn fn,
                      void *out, eng_error *err)
{
    json_error_t je;
    if (!label)
        label = "<config>";
    json_t *root = text ? json_loadb(text, len, 0, &je) : NULL;
    if (!root)
        return eng_error_set(err, ENG_EFORMAT, "%s: invalid JSON at line %d, column %d: %s", label,
                             text ? je.line : 0, text ? je.column : 0, text ? je.text : "no text");
    int rc = run_parser(root, label, fn, out, err);
    json_decref(root);
    return rc;
}

int eng_config_class_name(const char *path, char *buf, size_t len, eng_error *err)
{
    json_t *root;
    const char *name = NULL;
    ENG_TRY(json_read_file(path, &root, err));
    if (json_is_object(root)) {
        json_t *arch = json_object_get(root, "architectures");
        name = json_string_value(json_object_get(root, "_class_name"));
        if (!name && json_is_array(arch))
            name = json_string_value(json_array_get(arch, 0));
        if (!name)
            name = json_string_value(json_object_get(root, "model_type"));
    }
    if (name && len > 0)
        snprintf(buf, len, "%s", name);
    json_decref(root);
    if (!name)
        return eng_error_set(err, ENG_ENOTFOUND,
                             "%s: declares no class (no \"_class_name\", \"architectures\" or "
                             "\"model_type\")",
                             path);
    return 0;
}
