/* log.c - line-at-a-time logging with level, UTC timestamp and request id. */
#include "engine/core/log.h"
#include "engine/core/error.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_file;
static int log_level = -1; /* -1: not yet read from the environment */

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int eng_log_level_parse(const char *s, eng_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (s && strcmp(s, level_names[i]) == 0) {
            *out = (eng_log_level)i;
            return 0;
        }
    }
    return ENG_EINVAL;
}

void eng_log_set_level(eng_log_level level)
{
    pthread_mutex_lock(&log_lock);
    log_level = (int)level;
    pthread_mutex_unlock(&log_lock);
}

void eng_log_set_file(FILE *f)
{
    pthread_mutex_lock(&log_lock);
    log_file = f;
    pthread_mutex_unlock(&log_lock);
}

void eng_log(eng_log_level level, const char *request_id, const char *fmt, ...)
{
    char line[2048], stamp[32];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n;

    pthread_mutex_lock(&log_lock);
    if (log_level < 0) {
        eng_log_level l = ENG_LOG_INFO;
        eng_log_level_parse(getenv("TTTD_LOG_LEVEL"), &l);
        log_level = (int)l;
    }
    if ((int)level < log_level) {
        pthread_mutex_unlock(&log_lock);
        return;
    }
    pthread_mutex_unlock(&log_lock);

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line, sizeof line, "%s.%03ldZ %-5s ", stamp, ts.tv_nsec / 1000000L,
                 level_names[level]);
    if (request_id && n < (int)sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, "[%s] ", request_id);
    if (n < (int)sizeof line) {
        va_start(ap, fmt);
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        va_end(ap);
    }

    pthread_mutex_lock(&log_lock);
    fprintf(log_file ? log_file : stderr, "%s\n", line);
    fflush(log_file ? log_file : stderr);
    pthread_mutex_unlock(&log_lock);
}
