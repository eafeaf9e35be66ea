/*
 * web_index.h - the page served at GET / (server/web/index.html), embedded in the binary.
 *
 * web_index.c is generated at build time by tools/embed_file.py from server/web/index.html (see
 * the Makefile); the bytes are constant, so any thread may read them.
 */
#ifndef TTTD_SERVER_WEB_INDEX_H
#define TTTD_SERVER_WEB_INDEX_H

#include <stddef.h>

/* The page's bytes (UTF-8 HTML), followed by a NUL that srv_web_index_html_len does not count. */
extern const unsigned char srv_web_index_html[];
extern const size_t srv_web_index_html_len;

#endif
