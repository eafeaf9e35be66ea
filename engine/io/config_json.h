/*
 * config_json.h - the JSON readers shared by the config loaders (engine/config*.c only; the
 * public API is engine/io/config.h).
 *
 * A loader gets an eng_cfg (the file's top-level object, its label for messages, the caller's
 * eng_error) and reads keys with eng_cfg_int / _num / _bool / _str. The readers record the
 * FIRST failure in the eng_cfg (rc and a message "label: ...") and from then on return the
 * default they are given, so a parser reads every key in a straight line and checks r->rc once.
 * Not thread-safe per eng_cfg; no global state.
 */
#ifndef TTTD_ENGINE_CONFIG_JSON_H
#define TTTD_ENGINE_CONFIG_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "engine/core/error.h"

enum { ENG_CFG_OPT = 0, ENG_CFG_REQ = 1 };

typedef struct eng_cfg {
    const char *label; /* file name for messages */
    json_t *root;      /* the top-level object */
    eng_error *err;
    int rc; /* first error, 0 while none */
} eng_cfg;

/* Fills out from r->root; returns 0 or a negative code (r->rc when a reader failed). */
typedef int (*eng_cfg_parse_fn)(eng_cfg *r, void *out);

/* "an integer", "a string", "null", ... for messages. */
const char *eng_cfg_json_kind(const json_t *v);

/* Records "label: message" as r's error unless an earlier one is there. Returns r->rc. */
int eng_cfg_fail(eng_cfg *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Records `key "K" must be WANT, not KIND`. */
void eng_cfg_type_error(eng_cfg *r, const char *key, const char *want, const json_t *v);

/* The value of key, or NULL when absent (an error when flags has ENG_CFG_REQ). */
json_t *eng_cfg_get(eng_cfg *r, const char *key, int flags);
/* 1 when key is present with the value null. */
int eng_cfg_is_null(eng_cfg *r, const char *key);
/* A JSON integer in [lo, hi]; def when absent or after an error. */
int eng_cfg_int(eng_cfg *r, const char *key, int flags, int def, int lo, int hi);
/* A JSON number in [lo, hi] (lo excluded when gt_lo); def when absent or after an error. */
double eng_cfg_num(eng_cfg *r, const char *key, int flags, double def, double lo, double hi,
                   int gt_lo);
/* true / false as 1 / 0. */
int eng_cfg_bool(eng_cfg *r, const char *key, int flags, int def);
/* A string, borrowed from r->root. */
const char *eng_cfg_str(eng_cfg *r, const char *key, int flags, const char *def);
/* A boolean option tttd supports only as false: true is ENG_EUNSUPPORTED. */
void eng_cfg_false_only(eng_cfg *r, const char *key);
/* When key is present it must be the string want (a class check; else ENG_EUNSUPPORTED). */
void eng_cfg_expect_class(eng_cfg *r, const char *key, const char *want);

/*
 * Reads the JSON file at path (missing: ENG_ENOTFOUND; unreadable: ENG_EIO; bad JSON or not an
 * object at the top: ENG_EFORMAT) and runs fn on it with path as the label.
 */
int eng_cfg_load_file(const char *path, eng_cfg_parse_fn fn, void *out, eng_error *err);
/* The same for JSON text in memory; label names it in messages. */
int eng_cfg_load_text(const char *text, size_t len, const char *label, eng_cfg_parse_fn fn,
                      void *out, eng_error *err);

#endif
