/*
 * fsutil.h - small file-system and string helpers shared by the loaders and commands.
 * Stateless and thread-safe.
 */
#ifndef TTTD_ENGINE_FSUTIL_H
#define TTTD_ENGINE_FSUTIL_H

#include <stddef.h>

#include "engine/error.h"

/* buf = a "/" b, without doubling a trailing slash of a. ENG_EINVAL when it does not fit. */
int eng_path_join(char *buf, size_t len, const char *a, const char *b, eng_error *err);
/* 1 when p names a directory / a regular file (links followed), else 0. */
int eng_is_dir(const char *p);
int eng_is_file(const char *p);
/* 1 when s ends with suffix. */
int eng_str_ends_with(const char *s, const char *suffix);

#endif
