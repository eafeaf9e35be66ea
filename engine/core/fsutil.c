/* fsutil.c - paths, file kinds, whole-file reads and writes, folder copies (see fsutil.h). */
#include "engine/core/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int eng_path_join(char *buf, size_t len, const char *a, const char *b, eng_error *err)
{
    size_t n = strlen(a);
    int w = snprintf(buf, len, "%s%s%s", a, n && a[n - 1] == '/' ? "" : "/", b);
    if (w < 0 || (size_t)w >= len)
        return eng_error_set(err, ENG_EINVAL, "%s/%s: path too long", a, b);
    return 0;
}

int eng_is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int eng_is_file(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

int eng_str_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* 1 when the folder has no entry besides . and .. */
int eng_dir_is_empty(const char *p)
{
    DIR *d = opendir(p);
    struct dirent *e;
    int empty = 1;
    if (!d)
        return 0;
    while (empty && (e = readdir(d)) != NULL)
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    return empty;
}

int eng_mkdir_p(const char *path, eng_error *err)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return eng_error_set(err, ENG_EINVAL, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return eng_error_set(err, ENG_EIO, "%s: cannot create folder: %s", buf,
                                 strerror(errno));
        if (!eng_is_dir(buf))
            return eng_error_set(err, ENG_EIO, "%s: exists and is not a folder", buf);
        *p = c;
        if (c == '\0' || p[1] == '\0')
            return 0;
    }
}

/* The absolute, link-free form of path, which need not exist yet (its missing tail is kept). */
int eng_resolve_path(const char *path, char *out)
{
    char parent[PATH_MAX], tmp[PATH_MAX];
    if (realpath(path, out))
        return 0;
    if (snprintf(parent, sizeof parent, "%s", path) >= (int)sizeof parent)
        return -1;
    size_t n = strlen(parent);
    while (n > 1 && parent[n - 1] == '/')
        parent[--n] = '\0';
    char *slash = strrchr(parent, '/');
    const char *leaf = slash ? slash + 1 : parent;
    if (!slash)
        snprintf(tmp, sizeof tmp, ".");
    else
        snprintf(tmp, sizeof tmp, "%.*s", slash == parent ? 1 : (int)(slash - parent), parent);
    char base[PATH_MAX];
    if (eng_resolve_path(tmp, base) != 0)
        return -1;
    return snprintf(out, PATH_MAX, "%s/%s", strcmp(base, "/") ? base : "", leaf) >= PATH_MAX ? -1
                                                                                            : 0;
}

/* 1 when a is b or inside it (both absolute and resolved). */
int eng_path_within(const char *a, const char *b)
{
    size_t n = strlen(b);
    return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/' || strcmp(b, "/") == 0);
}

int eng_read_file(const char *path, char **out, size_t *len, eng_error *err)
{
    FILE *f = fopen(path, "rb");
    *out = NULL;
    if (!f)
        return eng_error_set(err, errno == ENOENT ? ENG_ENOTFOUND : ENG_EIO, "%s: %s", path,
                             strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        char *nb = realloc(buf, cap *= 2);
        if (!nb)
            free(buf);
        buf = nb;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf)
        return eng_error_set(err, ENG_ENOMEM, "%s: out of memory", path);
    if (bad) {
        free(buf);
        return eng_error_set(err, ENG_EIO, "%s: read error", path);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* Writes to path.tmp, then renames it over path. */
int eng_write_file(const char *path, const char *text, size_t len, eng_error *err)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return eng_error_set(err, ENG_EINVAL, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return eng_error_set(err, ENG_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    int bad = fwrite(text, 1, len, f) != len;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return eng_error_set(err, ENG_EIO, "%s: write failed", path);
    }
    return 0;
}

int eng_copy_file(const char *src, const char *dst, eng_error *err)
{
    enum { BUF = 1 << 20 };
    int in = open(src, O_RDONLY), out = -1, rc = 0;
    if (in < 0)
        return eng_error_set(err, ENG_EIO, "%s: cannot open: %s", src, strerror(errno));
    out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char *buf = out >= 0 ? malloc(BUF) : NULL;
    if (!buf) {
        rc = out < 0 ? eng_error_set(err, ENG_EIO, "%s: cannot create: %s", dst, strerror(errno))
                     : eng_error_set(err, ENG_ENOMEM, "%s: out of memory", dst);
        close(in);
        if (out >= 0)
            close(out);
        return rc;
    }
    for (;;) {
        ssize_t n = read(in, buf, BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = eng_error_set(err, ENG_EIO, "%s: read error: %s", src, strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        for (ssize_t o = 0; o < n;) {
            ssize_t w = write(out, buf + o, (size_t)(n - o));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = eng_error_set(err, ENG_EIO, "%s: write error: %s", dst, strerror(errno));
                goto done;
            }
            o += w;
        }
    }
done:
    free(buf);
    close(in);
    if (close(out) != 0 && !rc) /* a late write error, when nothing failed before */
        rc = eng_error_set(err, ENG_EIO, "%s: write error: %s", dst, strerror(errno));
    return rc;
}


/*
 * Copies the folder src into dst (which exists), following links; skip (may be NULL) is asked
 * about src's own entries only. ".git" folders are never copied: a cloned model repository
 * keeps its LFS objects there, a second copy of every weight.
 */
int eng_copy_tree(const char *src, const char *dst, eng_skip_fn skip, uint64_t *count,
                     eng_error *err)
{
    char s[PATH_MAX], d[PATH_MAX];
    struct dirent *e;
    int rc = 0;
    DIR *dir = opendir(src);
    if (!dir)
        return eng_error_set(err, ENG_EIO, "%s: cannot open folder: %s", src, strerror(errno));
    while ((e = readdir(dir)) != NULL) {
        struct stat sb;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        ENG_TRY_DONE(eng_path_join(s, sizeof s, src, e->d_name, err));
        ENG_TRY_DONE(eng_path_join(d, sizeof d, dst, e->d_name, err));
        if (stat(s, &sb) != 0)
            ENG_TRY_DONE(eng_error_set(err, ENG_EIO, "%s: %s", s, strerror(errno)));
        int folder = S_ISDIR(sb.st_mode);
        if ((skip && skip(e->d_name, folder)) || (folder && strcmp(e->d_name, ".git") == 0))
            continue;
        if (folder) {
            if (mkdir(d, 0755) != 0 && errno != EEXIST)
                ENG_TRY_DONE(eng_error_set(err, ENG_EIO, "%s: cannot create folder: %s", d,
                                           strerror(errno)));
            ENG_TRY_DONE(eng_copy_tree(s, d, NULL, count, err));
        } else if (S_ISREG(sb.st_mode)) {
            ENG_TRY_DONE(eng_copy_file(s, d, err));
            *count += 1;
        }
    }
done:
    closedir(dir);
    return rc;
}
