/*
 * test_cmd_linearize.c - `tttd linearize` (cmd/cmd_linearize.c) on the softmax fixture
 * (tests/fixtures/mmdit/softmax/transformer, 3 blocks, dual attention in block 0): the help,
 * the usage errors (status 2), a module the model lacks (status 1, one line naming it), and a
 * run with --map=... --seed=... whose summary and output metadata say what was done. The
 * conversion itself is tests/engine/models/test_linearize.c's.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmd_linearize.h"
#include "engine/io/safetensors.h"
#include "tests/common/test_util.h"

#define SOFTMAX "tests/fixtures/mmdit/softmax/transformer"

static char tmp[64], out_dir[128];

static void setup(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/tttd_lincmd_XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
    snprintf(out_dir, sizeof out_dir, "%s/out", tmp);
}

static void teardown(void)
{
    tu_rmtree(tmp);
}

TestSuite(cmd_linearize, .init = setup, .fini = teardown);

static int cmd(char *outbuf, size_t outlen, char *errbuf, size_t errlen, int argc, char **argv)
{
    FILE *o = fmemopen(outbuf, outlen, "w"), *e = fmemopen(errbuf, errlen, "w");
    int rc = cmd_linearize(argc, argv, o, e);
    fclose(o);
    fclose(e);
    return rc;
}

Test(cmd_linearize, command_line)
{
    char out[8192], errs[4096];
    char *in_s = SOFTMAX, *out_s = out_dir;

    char *help[] = {"linearize", "--help"};
    cr_assert_eq(cmd(out, sizeof out, errs, sizeof errs, 2, help), 0);
    for (const char *const *f = (const char *const[]){"--map", "--seed", "--force", "sd35-t5",
                                                      "all", NULL};
         *f; f++)
        cr_assert_not_null(strstr(out, *f), "--help lacks %s", *f);

    char *no_dirs[] = {"linearize", "--map", "all"};
    cr_assert_eq(cmd(out, sizeof out, errs, sizeof errs, 3, no_dirs), 2);
    cr_assert_not_null(strstr(errs, "missing IN_DIR and OUT_DIR"), "%s", errs);
    char *no_map[] = {"linearize", in_s, out_s};
    cr_assert_eq(cmd(out, sizeof out, errs, sizeof errs, 3, no_map), 2);
    cr_assert_not_null(strstr(errs, "--map is required"), "%s", errs);
    char *bad_seed[] = {"linearize", in_s, out_s, "--map", "all", "--seed", "-1"};
    cr_assert_eq(cmd(out, sizeof out, errs, sizeof errs, 7, bad_seed), 2);
    cr_assert_not_null(strstr(errs, "--seed -1: expected an integer"), "%s", errs);
    char *bad_opt[] = {"linearize", in_s, out_s, "--map=all", "--bogus"};
    cr_assert_eq(cmd(out, sizeof out, errs, sizeof errs, 5, bad_opt), 2);
    cr_assert_not_null(strstr(errs, "unknown option --bogus"), "%s", errs);
    char *too_many[] = {"linearize", in_s, out_s, "x", "--map=all"};
    cr_assert_eq(cmd(out, sizeof out, errs, sizeof errs, 5, too_many), 2);
    char *bad_mod[] = {"linearize", in_s, out_s, "--map", "transformer_blocks.0.attn9"};
    cr_assert_eq(cmd(out, sizeof out, errs, sizeof errs, 5, bad_mod), 1);
    cr_assert_not_null(strstr(errs, "transformer_blocks.0.attn9"), "%s", errs);
    cr_assert_eq(strchr(errs, '\n'), errs + strlen(errs) - 1, "one line: %s", errs);
    cr_assert_eq(access(out_s, F_OK), -1);

    char *ok[] = {"linearize", in_s, out_s,
                  "--map=transformer_blocks.0.attn2,transformer_blocks.2.attn", "--seed=77"};
    cr_assert_eq(cmd(out, sizeof out, errs, sizeof errs, 5, ok), 0, "%s", errs);
    cr_assert_not_null(strstr(out, "linearized 2 of 4 attention modules"), "%s", out);
    cr_assert_not_null(strstr(out, "seed 77"), "%s", out);
    cr_assert_not_null(strstr(out, "  transformer_blocks.0.attn2\n  transformer_blocks.2.attn\n"),
                       "%s", out);
    cr_assert_not_null(strstr(out, "new: 12 tensors, 3,328 parameters"), "%s", out);
    eng_safetensors *st;
    cr_assert_eq(eng_safetensors_open_dir(&st, out_s, NULL), 0);
    cr_assert_str_eq(eng_safetensors_metadata(st, "tttd.linearize.seed"), "77");
    eng_safetensors_close(st);

    /* The folder now holds files: only --force writes into it again. */
    cr_assert_eq(cmd(out, sizeof out, errs, sizeof errs, 5, ok), 1);
    char *forced[] = {"linearize", in_s, out_s, "--map", "all", "--force"};
    cr_assert_eq(cmd(out, sizeof out, errs, sizeof errs, 6, forced), 0, "%s", errs);
    cr_assert_not_null(strstr(out, "linearized 4 of 4 attention modules"), "%s", out);
}
