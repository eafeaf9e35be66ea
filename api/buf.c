/*
 * buf.c - the growable byte buffer of buf.h.
 */
#include "api/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *api_buf_reserve(api_buf *b, size_t extra)
{
    if (b->failed)
        return NULL;
    if (extra > (size_t)-1 - 1 - b->len) {
        b->failed = 1;
        return NULL;
    }
    if (b->len + extra + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + extra + 1) {
            if (cap > (size_t)-1 / 2) {
                cap = b->len + extra + 1;
                break;
            }
            cap *= 2;
        }
        char *p = realloc(b->data, cap);
        if (!p) {
            b->failed = 1;
            return NULL;
        }
        b->data = p;
        b->cap = cap;
    }
    return b->data + b->len;
}

void api_buf_commit(api_buf *b, size_t n)
{
    if (b->failed || !b->data)
        return;
    b->len += n;
    b->data[b->len] = '\0';
}

void api_buf_append(api_buf *b, const void *data, size_t len)
{
    char *p = api_buf_reserve(b, len);
    if (!p)
        return;
    if (len)
        memcpy(p, data, len);
    api_buf_commit(b, len);
}

void api_buf_puts(api_buf *b, const char *s)
{
    api_buf_append(b, s, strlen(s));
}

void api_buf_printf(api_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    char *p = api_buf_reserve(b, (size_t)n);
    if (!p)
        return;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void api_buf_consume(api_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        if (b->data)
            b->data[0] = '\0';
        return;
    }
    memmove(b->data, b->data + n, b->len - n + 1);
    b->len -= n;
}

int api_buf_failed(const api_buf *b)
{
    return b->failed;
}

char *api_buf_take(api_buf *b, size_t *len)
{
    char *p = NULL;
    if (api_buf_reserve(b, 0)) {
        b->data[b->len] = '\0'; /* a buffer never appended to has no NUL yet */
        p = b->data;
        if (len)
            *len = b->len;
        b->data = NULL;
    }
    api_buf_free(b);
    return p;
}

void api_buf_free(api_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}
