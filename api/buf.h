/*
 * buf.h - a growable byte buffer with printf-style appends, for the text tttd writes: the
 * answers of response.c (with base64 written in place, see api_buf_reserve) and, in the server,
 * request bodies, Prometheus exposition and SSE streams.
 *
 * An append that cannot grow the buffer marks it failed and later appends do nothing, so a
 * writer checks once at the end (api_buf_failed, or api_buf_take's NULL). The struct is plain:
 * zero-initialise it (api_buf b = {0}) and release it with api_buf_free or api_buf_take.
 * Not thread-safe; one owner.
 */
#ifndef TTTD_API_BUF_H
#define TTTD_API_BUF_H

#include <stddef.h>

typedef struct api_buf {
    char *data; /* NUL-terminated when len > 0 */
    size_t len, cap;
    int failed;
} api_buf;

/*
 * Makes room for extra more bytes plus a NUL and returns where they go (data + len), or NULL
 * when b has failed or cannot grow (then it is marked failed). Write at most extra bytes there,
 * then api_buf_commit what was written.
 */
char *api_buf_reserve(api_buf *b, size_t extra);
/* Counts n bytes written at api_buf_reserve's pointer as part of b and NUL-terminates. */
void api_buf_commit(api_buf *b, size_t n);

void api_buf_append(api_buf *b, const void *data, size_t len);
/* Appends a NUL-terminated string (without its NUL). */
void api_buf_puts(api_buf *b, const char *s);
void api_buf_printf(api_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes (what a reader has consumed). */
void api_buf_consume(api_buf *b, size_t n);
int api_buf_failed(const api_buf *b);
/*
 * Hands over the bytes, NUL-terminated (the caller frees them; an empty buffer gives ""), sets
 * *len (may be NULL) and resets b; NULL when b has failed.
 */
char *api_buf_take(api_buf *b, size_t *len);
/* Frees the bytes and resets b (also its failed mark); NULL data is fine. */
void api_buf_free(api_buf *b);

#endif
