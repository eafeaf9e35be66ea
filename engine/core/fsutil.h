/*
 * fsutil.h - small file-system and string helpers shared by the loaders and commands: paths,
 * file kinds, whole-file reads and atomic writes, folder copies. Stateless and thread-safe.
 */
#ifndef TTTD_ENGINE_FSUTIL_H
#define TTTD_ENGINE_FSUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "engine/core/error.h"

/* buf = a "/" b, without doubling a trailing slash of a. ENG_EINVAL when it does not fit. */
int eng_path_join(char *buf, size_t len, const char *a, const char *b, eng_error *err);
/* 1 when p names a directory / a regular file (links followed), else 0. */
int eng_is_dir(const char *p);
int eng_is_file(const char *p);
/* 1 when s ends with suffix. */
int eng_str_ends_with(const char *s, const char *suffix);

/* 1 when the folder p exists and has no entry besides . and .. */
int eng_dir_is_empty(const char *p);
/* mkdir -p path (0755); ENG_EIO naming the part that cannot be made or is not a folder. */
int eng_mkdir_p(const char *path, eng_error *err);
/* out (PATH_MAX) = the absolute, link-free form of path, which need not exist yet (its missing
 * tail is kept as written); -1 when it cannot be formed. */
int eng_resolve_path(const char *path, char *out);
/* 1 when a is b or inside it (both absolute and resolved, as eng_resolve_path gives them). */
int eng_path_within(const char *a, const char *b);
/* The whole file, NUL-terminated, malloc'd in *out (free it), its length in *len. ENG_ENOTFOUND
 * when it does not exist, ENG_EIO / ENG_ENOMEM otherwise. */
int eng_read_file(const char *path, char **out, size_t *len, eng_error *err);
/* Writes len bytes to path.tmp, then renames it over path (no half-written file under path). */
int eng_write_file(const char *path, const char *text, size_t len, eng_error *err);
/* Copies the regular file src to dst (created or truncated, 0644). */
int eng_copy_file(const char *src, const char *dst, eng_error *err);
/* Asked for each entry of a copied folder: nonzero skips it. */
typedef int (*eng_skip_fn)(const char *name, int is_folder);
/*
 * Copies the folder src into dst (which exists), following links; skip (may be NULL) is asked
 * about src's own entries only; *count grows by the files copied. ".git" folders are never
 * copied: a cloned model repository keeps its LFS objects there, a second copy of every weight.
 */
int eng_copy_tree(const char *src, const char *dst, eng_skip_fn skip, uint64_t *count,
                  eng_error *err);

#endif
