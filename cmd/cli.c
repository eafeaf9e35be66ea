/* cli.c - number formatting and engine-error reporting for the subcommands (see cli.h). */
#include "cmd/cli.h"

#include <inttypes.h>
#include <stdio.h>

const char *cmd_fmt_count(uint64_t v, char *buf, size_t len)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%" PRIu64, v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < len; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

int cmd_engine_fail(FILE *errout, const char *cmd, const char *what, const eng_error *err)
{
    fprintf(errout, "tttd %s: %s%s%s\n", cmd, what ? what : "", what ? ": " : "",
            err->msg[0] ? err->msg : eng_strerror(err->code));
    return 1;
}
