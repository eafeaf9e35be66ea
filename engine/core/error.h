/*
 * error.h - the engine's one error type and its one way to propagate errors.
 *
 * Engine functions return 0 on success or a negative ENG_E* code, and fill an
 * optional eng_error with a message that names the thing at fault (file,
 * tensor, field) and what was expected. Passing err == NULL is always allowed.
 *
 * The codes live in their own range, -1001 and below, so that none of them can be
 * mistaken for a -errno value (Linux errno values stay far below 1000); eng_strerror
 * names them. The server maps them to its replies and exit statuses in one place
 * (server/errmap.c).
 *
 * Propagation, everywhere in the engine: a function that holds nothing to release
 * writes ENG_TRY(step) for each step; a function that owns resources declares
 * `int rc = 0;`, writes ENG_TRY_DONE(step), and releases them in reverse order
 * under its `done:` label (libuv's goto unwind); a constructor hands its object out
 * there when rc is 0 and frees it otherwise. A step that needs context on failure
 * keeps the long form (`rc = step; if (rc) { eng_error_prefix(...); goto done; }`).
 * A label that only failures reach (`fail:`) is the same unwind for a function whose
 * success returns before it. No `(rc = a) || (rc = b)` chains, no `if (!rc) rc = b`
 * runs, and no file-local STEP macros; internal helpers (containers, copies) return
 * ENG_E* codes too, not -1. A `||` of system calls that all fail with one code and
 * one message (writing a file, a CUDA copy) is a single test, not a chain.
 */
#ifndef TTTD_ENGINE_ERROR_H
#define TTTD_ENGINE_ERROR_H

#include <stddef.h>

enum {
    ENG_OK = 0,
    ENG_EINVAL = -1001,       /* bad argument: shape, dtype, range */
    ENG_ENOMEM = -1002,       /* an allocation failed */
    ENG_EIO = -1003,          /* open/read/write failed */
    ENG_EFORMAT = -1004,      /* a file's content is malformed */
    ENG_ENOTFOUND = -1005,    /* a file, key or tensor is missing */
    ENG_EUNSUPPORTED = -1006, /* valid but not implemented (dtype, op on a backend) */
    ENG_EDEVICE = -1007,      /* a device (CUDA) call failed */
    ENG_ECANCELED = -1008,    /* work was canceled by the caller */
};

typedef struct eng_error {
    int code;
    char msg[512];
} eng_error;

/* Returns from the calling function with expr's code when expr is not 0 (an ENG_E* code). */
#define ENG_TRY(expr)                                                                              \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

/* The same for functions that unwind: sets the caller's `rc` and jumps to its `done` label. */
#define ENG_TRY_DONE(expr)                                                                         \
    do {                                                                                           \
        rc = (expr);                                                                               \
        if (rc)                                                                                    \
            goto done;                                                                             \
    } while (0)

/* A short constant description of a code ("invalid argument", ...). */
const char *eng_strerror(int code);

/*
 * Records code and a printf-style message in err (if not NULL) and returns
 * code, so callers can write `return eng_error_set(err, ENG_EINVAL, ...)`.
 */
int eng_error_set(eng_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to an existing message (adds context on the way up). */
int eng_error_prefix(eng_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
