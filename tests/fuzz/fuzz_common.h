/*
 * fuzz_common.h - helpers shared by the libFuzzer targets of tests/fuzz/ (header only, so that
 * every fuzz_*.c stays one translation unit and the Makefile's wildcard sees only targets).
 *
 * Provides FUZZ_CHECK (abort with file, line and the failed condition: libFuzzer then saves the
 * input), a per-process scratch folder under $TMPDIR (or /tmp) and writing or removing files in
 * it, and splitting an input into parts at a separator.
 */
#ifndef TTTD_TESTS_FUZZ_COMMON_H
#define TTTD_TESTS_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FUZZ_CHECK(cond)                                                                         \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                             \
        }                                                                                        \
    } while (0)

/*
 * The scratch folder of this process, made on first use. Several fuzzers (and libFuzzer's
 * -jobs workers) run side by side, so each process has its own folder; it is removed at exit.
 */
static char fuzz_dir_path[512];

static void fuzz_dir_cleanup(void)
{
    char cmd[600];
    if (fuzz_dir_path[0] && strstr(fuzz_dir_path, "/tttd-fuzz-")) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir_path);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", fuzz_dir_path);
    }
}

static inline const char *fuzz_dir(void)
{
    if (!fuzz_dir_path[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/tttd-fuzz-XXXXXX",
                 tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(fuzz_dir_path)) {
            perror("mkdtemp");
            abort();
        }
        atexit(fuzz_dir_cleanup);
    }
    return fuzz_dir_path;
}

/* Writes (or, with data NULL, removes) the file fuzz_dir()/name into path (PATH_MAX bytes). */
static inline void fuzz_file(const char *name, const void *data, size_t n, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", fuzz_dir(), name);
    if (!data) {
        unlink(path);
        return;
    }
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

/*
 * Splits data at each occurrence of sep into at most max parts (the last part keeps the rest).
 * Returns the number of parts; part i is [at[i], at[i] + len[i]).
 */
static inline int fuzz_split(const uint8_t *data, size_t size, const char *sep, int max,
                             const uint8_t **at, size_t *len)
{
    size_t sl = strlen(sep);
    int n = 0;
    while (n < max - 1) {
        const uint8_t *hit = memmem(data, size, sep, sl);
        if (!hit)
            break;
        at[n] = data;
        len[n++] = (size_t)(hit - data);
        size -= (size_t)(hit - data) + sl;
        data = hit + sl;
    }
    at[n] = data;
    len[n++] = size;
    return n;
}

#endif
