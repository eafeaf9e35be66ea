/* error.c - eng_error helpers: code names and message formatting. */
#include "engine/core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *eng_strerror(int code)
{
    switch (code) {
    case ENG_OK: return "success";
    case ENG_EINVAL: return "invalid argument";
    case ENG_ENOMEM: return "out of memory";
    case ENG_EIO: return "input/output error";
    case ENG_EFORMAT: return "malformed file";
    case ENG_ENOTFOUND: return "not found";
    case ENG_EUNSUPPORTED: return "not supported";
    case ENG_EDEVICE: return "device error";
    case ENG_ECANCELED: return "canceled";
    default: return "unknown error";
    }
}

int eng_error_set(eng_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

int eng_error_prefix(eng_error *err, const char *fmt, ...)
{
    char prefix[256], old[sizeof err->msg];
    va_list ap;

    if (!err)
        return 0;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = '\0';
    /* Built piecewise so that a long message is cut, never lost. */
    size_t n = strlen(prefix), cap = sizeof err->msg - 1;
    if (n > cap)
        n = cap;
    memcpy(err->msg, prefix, n);
    if (n + 2 <= cap) {
        memcpy(err->msg + n, ": ", 2);
        n += 2;
    }
    size_t m = strlen(old);
    if (m > cap - n)
        m = cap - n;
    memcpy(err->msg + n, old, m);
    err->msg[n + m] = '\0';
    return err->code;
}
