/*
 * test_main.c - the tttd binary itself ($TTTD_BIN, which make check sets): the OpenMP wait
 * policy it prefers (cmd/main.c runs itself once more with OMP_WAIT_POLICY=passive unless the
 * environment chose one), seen through `tttd bench`, which prints the policy in force.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/server/integration_util.h"

/* stdout of `sh -c cmd` (at most len - 1 bytes) and its exit status. */
static int capture(const char *cmd, char *buf, size_t len)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "%s", cmd);
    size_t n = fread(buf, 1, len - 1, p);
    buf[n] = '\0';
    return pclose(p);
}

Test(main, openmp_wait_policy_is_passive_unless_chosen)
{
    char cmd[512], out[4096];
    snprintf(cmd, sizeof cmd,
             "env -u OMP_WAIT_POLICY %s bench --cpu --repeat 1 --width 32 --height 32 2>/dev/null",
             it_bin());
    cr_assert_eq(capture(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "OpenMP wait policy: passive\n"), "%s", out);
    snprintf(cmd, sizeof cmd,
             "OMP_WAIT_POLICY=active %s bench --cpu --repeat 1 --width 32 --height 32 2>/dev/null",
             it_bin());
    cr_assert_eq(capture(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "OpenMP wait policy: active\n"), "the environment's choice is kept: %s",
              out);
    /* Arguments survive the second start. */
    snprintf(cmd, sizeof cmd, "env -u OMP_WAIT_POLICY %s --version", it_bin());
    cr_assert_eq(capture(cmd, out, sizeof out), 0);
    cr_assert(strncmp(out, "tttd ", 5) == 0, "%s", out);
}
