/*
 * test_cmd_bench.c - `tttd bench`: the usage text names every option, bad options and values
 * are exit status 2, a model that cannot serve the size is 1, and short runs (the tiny fixture
 * model, the random model with a TTT map, a CFG loop) print their timing lines and leave no
 * temporary folder behind; --profile adds a table of the time per op kind, largest first, whose
 * sum stays within the run's wall time.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmd_bench.h"
#include "engine/backend/backend.h"
#include "engine/pipeline.h"

typedef struct run_result {
    int rc;
    char *out, *err;
} run_result;

/* Runs `tttd bench ARGS...` (NULL-terminated) with out and errout captured. */
static run_result run(const char *first, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "bench";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    run_result r;
    size_t no, ne;
    FILE *out = open_memstream(&r.out, &no), *err = open_memstream(&r.err, &ne);
    cr_assert(out && err);
    r.rc = cmd_bench(argc, argv, out, err);
    fclose(out), fclose(err);
    return r;
}

static void done(run_result *r)
{
    free(r->out), free(r->err);
}

Test(cmd_bench, help_names_every_option)
{
    run_result r = run("--help", NULL);
    cr_assert_eq(r.rc, 0);
    const char *opts[] = {"--cpu",    "--model", "--ttt",      "--width",  "--height", "--batch",
                          "--tokens", "--steps", "--guidance", "--repeat", "--profile", "--help"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        cr_assert(strstr(r.out, opts[i]), "usage lacks %s", opts[i]);
    cr_assert_eq(r.err[0], '\0');
    done(&r);
}

Test(cmd_bench, bad_usage_is_status_2)
{
    run_result r = run("--frobnicate", NULL);
    cr_assert_eq(r.rc, 2);
    cr_assert(strstr(r.err, "unknown option --frobnicate"), "%s", r.err);
    cr_assert(strstr(r.err, "usage:"), "%s", r.err);
    done(&r);
    r = run("--batch", "0", NULL);
    cr_assert_eq(r.rc, 2);
    cr_assert(strstr(r.err, "--batch 0: expected an integer in [1, 1024]"), "%s", r.err);
    done(&r);
    r = run("--ttt", "some", NULL);
    cr_assert_eq(r.rc, 2);
    cr_assert(strstr(r.err, "expected none, all or sd35-t5"), "%s", r.err);
    done(&r);
    r = run("--repeat", NULL);
    cr_assert_eq(r.rc, 2);
    cr_assert(strstr(r.err, "--repeat needs a value"), "%s", r.err);
    done(&r);
    r = run("--model", "x", "--ttt", "all", NULL);
    cr_assert_eq(r.rc, 2);
    done(&r);
}

Test(cmd_bench, failures_are_status_1)
{
    run_result r = run("--model", "tests/fixtures/mmdit/ttt_mixed", "--width", "36", NULL);
    cr_assert_eq(r.rc, 1);
    cr_assert(strstr(r.err, "multiples of 16"), "%s", r.err);
    done(&r);
    r = run("--model", "/nonexistent/model", NULL);
    cr_assert_eq(r.rc, 1);
    cr_assert(strstr(r.err, "/nonexistent/model"), "%s", r.err);
    done(&r);
}

Test(cmd_bench, forward_and_loop_on_the_fixture_model)
{
    run_result r = run("--cpu", "--model", "tests/fixtures/mmdit/ttt_mixed", "--width", "64",
                       "--height", "96", "--tokens", "5", "--repeat", "2", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert(strstr(r.out, "3 blocks, 2 heads x 16"), "%s", r.out);
    cr_assert(strstr(r.out, "latent 4x12x8 (24 image tokens), 5 text tokens"), "%s", r.out);
    cr_assert(strstr(r.out, "forward: median "), "%s", r.out);
    cr_assert(strstr(r.out, "over 2 runs"), "%s", r.out);
    done(&r);
    r = run("--model", "tests/fixtures/mmdit/ttt_mixed", "--width", "64", "--height", "64",
            "--tokens", "5", "--batch", "2", "--steps", "3", "--guidance", "4", "--repeat", "1",
            NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert(strstr(r.out, "loop: 3 steps, guidance 4 (4 rows per forward)"), "%s", r.out);
    cr_assert(strstr(r.out, "per step: median "), "%s", r.out);
    done(&r);
}

/* A pipeline folder's text-token count comes from the model, as tttd generate encodes a prompt
 * for it: the embedded model's CLIP of 24 tokens and no T5 rows, not SD3's 333; --tokens still
 * wins. */
Test(cmd_bench, text_tokens_come_from_the_pipeline_folder)
{
    run_result r = run("--cpu", "--model", "models/default", "--width", "32", "--height", "32",
                       "--repeat", "1", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert(strstr(r.out, ", 24 text tokens\n"), "%s", r.out);
    done(&r);
    r = run("--cpu", "--model", "models/default", "--width", "32", "--height", "32", "--tokens",
            "7", "--repeat", "1", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert(strstr(r.out, ", 7 text tokens\n"), "%s", r.out);
    done(&r);
    /* A bare transformer folder says nothing of its text encoders: SD3's 77 + 256. */
    r = run("--cpu", "--model", "tests/fixtures/mmdit/ttt_mixed", "--width", "64", "--height",
            "64", "--repeat", "1", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert(strstr(r.out, ", 333 text tokens\n"), "%s", r.out);
    done(&r);
}

/* eng_pipeline_text_tokens_of agrees with a loaded pipeline's count (tokenizer + T5 rows). */
Test(cmd_bench, text_tokens_of_equals_the_loaded_pipeline)
{
    eng_error err = {0};
    cr_assert_eq(eng_pipeline_text_tokens_of("models/default", &err), 24, "%s", err.msg);
    eng_backend *be = eng_backend_cpu_create(&err);
    cr_assert_not_null(be, "%s", err.msg);
    eng_pipeline *p = NULL;
    cr_assert_eq(eng_pipeline_load(&p, "tests/fixtures/tiny_model", be, ENG_DTYPE_F32, &err), 0,
                 "%s", err.msg);
    cr_expect_eq(eng_pipeline_text_tokens_of("tests/fixtures/tiny_model", &err),
                 eng_pipeline_text_tokens(p), "%s", err.msg);
    eng_pipeline_free(p);
    eng_backend_destroy(be);
    cr_expect_lt(eng_pipeline_text_tokens_of("tests/fixtures/no_such_model", &err), 0);
    cr_expect(strstr(err.msg, "no_such_model"), "%s", err.msg);
}

Test(cmd_bench, random_model_leaves_no_files)
{
    char tmp[] = "/tmp/tttd_bench_test_XXXXXX";
    cr_assert_not_null(mkdtemp(tmp));
    setenv("TMPDIR", tmp, 1);
    run_result r = run("--ttt", "all", "--width", "64", "--height", "64", "--repeat", "1", NULL);
    unsetenv("TMPDIR");
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert(strstr(r.out, "random weights"), "%s", r.out);
    cr_assert(strstr(r.out, "4 blocks, 4 heads x 32 (inner 128)"), "%s", r.out);
    cr_assert(strstr(r.out, "TTT map all (6 modules)"), "%s", r.out);
    cr_assert(strstr(r.out, "forward: median "), "%s", r.out);
    DIR *d = opendir(tmp);
    cr_assert_not_null(d);
    struct dirent *e;
    int entries = 0;
    while ((e = readdir(d)))
        entries += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    cr_assert_eq(entries, 0, "the temporary model folder was left in %s", tmp);
    rmdir(tmp);
    done(&r);
}

/* The row of kind `name` in the profile table: its calls, total ms and mean us; 0 if absent. */
static int profile_row(const char *table, const char *name, long long *calls, double *ms,
                       double *mean_us)
{
    char key[64];
    snprintf(key, sizeof key, "\n  %s ", name);
    const char *row = strstr(table, key);
    double pct;
    return row && sscanf(row + strlen(key), "%lld %lf %lf%% %lf", calls, ms, &pct, mean_us) == 4;
}

/* The table's rows, largest total first, and its "all ops" and "wall time" lines. */
static void check_profile_table(const char *out, const char *const *kinds, int n_kinds)
{
    const char *table = strstr(out, "profile of one forward on cpu: ");
    cr_assert(table, "no profile table in:\n%s", out);
    cr_assert(strstr(table, "timed by the host clock around each op"), "%s", table);
    cr_assert(strstr(table, "op kind"), "%s", table);
    for (int i = 0; i < n_kinds; i++) {
        long long calls = 0;
        double ms = 0, mean = 0;
        cr_assert(profile_row(table, kinds[i], &calls, &ms, &mean), "no %s row in:\n%s",
                  kinds[i], table);
        cr_expect_gt(calls, 0, "%s", kinds[i]);
        cr_expect_gt(ms, 0.0, "%s", kinds[i]);
        cr_expect_gt(mean, 0.0, "%s", kinds[i]);
    }
    /* Sorted by total: each kind row's ms is at most the one above it. */
    const char *line = strstr(table, "mean us\n");
    cr_assert(line);
    line += strlen("mean us\n");
    double prev = 1e300, all_ms = -1, wall_ms = -1, gaps_ms = 0;
    long long all_calls = 0, sum_calls = 0;
    int rows = 0;
    while (*line == ' ') {
        char name[64];
        long long calls;
        double ms;
        if (sscanf(line, " all ops %lld %lf", &all_calls, &all_ms) == 2) {
        } else if (sscanf(line, " wall time %lf", &wall_ms) == 1) {
        } else if (sscanf(line, " host overhead and gaps between ops: %lf", &gaps_ms) == 1) {
        } else {
            cr_assert_eq(sscanf(line, " %63s %lld %lf", name, &calls, &ms), 3, "bad row: %.80s",
                         line);
            cr_expect_leq(ms, prev, "%s (%g ms) is below a smaller kind (%g ms)", name, ms, prev);
            prev = ms, sum_calls += calls, rows++;
        }
        line = strchr(line, '\n');
        cr_assert(line);
        line++;
    }
    cr_expect_geq(rows, n_kinds);
    cr_expect_eq(all_calls, sum_calls, "all ops: %lld calls, the rows sum to %lld", all_calls,
                 sum_calls);
    cr_expect_gt(all_ms, 0.0);
    cr_expect_gt(wall_ms, 0.0);
    cr_expect_leq(all_ms, wall_ms, "the ops' %g ms exceed the run's %g ms", all_ms, wall_ms);
    cr_expect_float_eq(gaps_ms, wall_ms - all_ms, 2e-3);
}

Test(cmd_bench, profile_prints_a_table_per_op_kind)
{
    run_result r = run("--cpu", "--profile", "--repeat", "1", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_assert(strstr(r.out, "forward: median "), "%s", r.out);
    const char *softmax[] = {"linear", "attention", "layer_norm", "rms_norm", "modulate"};
    check_profile_table(r.out, softmax, 5);
    done(&r);
    r = run("--cpu", "--profile", "--repeat", "1", "--ttt", "all", "--width", "64", "--height",
            "64", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    const char *ttt[] = {"linear", "ttt", "conv2d"};
    check_profile_table(r.out, ttt, 3);
    long long calls;
    double ms, mean;
    cr_expect(!profile_row(strstr(r.out, "profile of one"), "attention", &calls, &ms, &mean),
              "every attention module is TTT, yet:\n%s", r.out);
    done(&r);
}

Test(cmd_bench, no_profile_without_the_flag)
{
    run_result r = run("--cpu", "--repeat", "1", "--width", "64", "--height", "64", NULL);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    cr_expect(!strstr(r.out, "profile of one"), "%s", r.out);
    done(&r);
}
