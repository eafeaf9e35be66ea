/*
 * buf.h - a growable byte buffer with printf-style appends, for the text the server writes
 * (Prometheus exposition, Server-Timing headers, SSE events).
 *
 * An append that cannot grow the buffer marks it failed and later appends do nothing, so a
 * writer checks once at the end (srv_buf_failed). Not thread-safe; one owner.
 */
#ifndef TTTD_SERVER_BUF_H
#define TTTD_SERVER_BUF_H

#include <stddef.h>

typedef struct srv_buf {
    char *data; /* NUL-terminated when len > 0 */
    size_t len, cap;
    int failed;
} srv_buf;

void srv_buf_append(srv_buf *b, const void *data, size_t len);
void srv_buf_printf(srv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes (what a reader has consumed). */
void srv_buf_consume(srv_buf *b, size_t n);
int srv_buf_failed(const srv_buf *b);
/* Hands over the bytes (the caller frees them) and resets b; NULL when failed. */
char *srv_buf_take(srv_buf *b, size_t *len);
void srv_buf_free(srv_buf *b);

#endif
