/* fsutil.c - path joining, file-kind tests and suffix matching (see fsutil.h). */
#include "engine/fsutil.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

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
