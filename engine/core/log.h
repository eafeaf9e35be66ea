/*
 * log.h - the one logging facility: levels, timestamps, optional request id.
 *
 * Thread-safe: each call writes one whole line to stderr (or the sink set by
 * eng_log_set_file). The level threshold comes from eng_log_set_level or the
 * TTTD_LOG_LEVEL environment variable (debug|info|warn|error).
 */
#ifndef TTTD_ENGINE_LOG_H
#define TTTD_ENGINE_LOG_H

#include <stdio.h>

typedef enum eng_log_level {
    ENG_LOG_DEBUG = 0,
    ENG_LOG_INFO = 1,
    ENG_LOG_WARN = 2,
    ENG_LOG_ERROR = 3,
} eng_log_level;

void eng_log_set_level(eng_log_level level);
/* Parses "debug", "info", "warn" or "error"; returns 0 or ENG_EINVAL. */
int eng_log_level_parse(const char *s, eng_log_level *out);
/* Where lines go; NULL restores stderr. The caller keeps ownership of f. */
void eng_log_set_file(FILE *f);

/* request_id may be NULL. */
void eng_log(eng_log_level level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LOG_DEBUG(...) eng_log(ENG_LOG_DEBUG, NULL, __VA_ARGS__)
#define LOG_INFO(...) eng_log(ENG_LOG_INFO, NULL, __VA_ARGS__)
#define LOG_WARN(...) eng_log(ENG_LOG_WARN, NULL, __VA_ARGS__)
#define LOG_ERROR(...) eng_log(ENG_LOG_ERROR, NULL, __VA_ARGS__)

#endif
