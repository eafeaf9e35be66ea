/*
 * test_cmd_serve.c - `tttd serve` options (cmd/cmd_serve.c's table through cmd/args's layered
 * parse, then server/options.c's checks): defaults from the table, precedence flags >
 * environment > config file > default (lists replaced whole by a higher source, appended by
 * repeated flags), bounds and type errors in the one message format of every command (the option
 * and value as written, the source when it is not a flag, what was expected), size and duration
 * suffixes, boolean forms, --model and API key derivation, exit statuses, and --help listing
 * every row.
 */
#include <criterion/criterion.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmd_serve.h"

/* cmd_serve_options's results: go on, --help, a bad option, a bad key file. */
enum { GO_ON = -1, HELP = 0, BAD_KEY_FILE = 1, USAGE = 2 };

static char err[2048], out[65536];

/* A temporary file holding text; the caller unlinks and frees the path. */
static char *temp_file(const char *text)
{
    char *path = strdup("/tmp/tttd_opts_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* cmd_serve_options, with what it writes to stdout in out and to stderr in err. */
static int parse(srv_options *o, char **envp, int argc, char **argv)
{
    char *otext = NULL, *etext = NULL;
    size_t olen = 0, elen = 0;
    FILE *of = open_memstream(&otext, &olen), *ef = open_memstream(&etext, &elen);
    cr_assert(of && ef);
    int status = cmd_serve_options(o, argc, argv, envp, of, ef);
    fclose(of);
    fclose(ef);
    snprintf(out, sizeof out, "%s", otext);
    snprintf(err, sizeof err, "%s", etext);
    free(otext);
    free(etext);
    return status;
}

#define ARGV(...) ((char *[]){"serve", __VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((char *[]){"serve", __VA_ARGS__}) / sizeof(char *)))

Test(cmd_serve, defaults)
{
    srv_options o;
    char *argv[] = {"serve", NULL};
    cr_assert_eq(parse(&o, NULL, 1, argv), GO_ON, "%s", err);
    cr_assert_str_eq(o.host, "127.0.0.1");
    cr_assert_eq(o.port, 8080);
    cr_assert_eq(o.workers, 1);
    cr_assert_eq(o.device, SRV_DEVICE_AUTO);
    cr_assert_eq(o.max_batch, 4);
    cr_assert_eq(o.max_queue_delay_ms, 0, "greedy batching: no wait for company");
    cr_assert_eq(o.max_queue, 64);
    cr_assert_eq(o.max_body, 1 << 20);
    cr_assert_eq(o.request_timeout_ms, 600000);
    cr_assert_eq(o.drain_timeout_ms, 30000);
    cr_assert_eq(o.public_health, 1);
    cr_assert_eq(o.public_metrics, 1);
    cr_assert_eq(o.readyz_queue_mark, 64, "0 means --max-queue");
    cr_assert_eq(o.preview_every, 0);
    cr_assert_eq(o.sse_ping_ms, 10000);
    cr_assert_eq(o.n_models, 0);
    cr_assert_eq(o.keys.n, 0);
    srv_options_free(&o);
}

Test(cmd_serve, flags_beat_env_beat_file_beat_default)
{
    char *file = temp_file("{\"port\": 7001, \"max_batch\": 2, \"max-queue\": 100, "
                           "\"host\": \"0.0.0.0\"}");
    char cfg[256];
    snprintf(cfg, sizeof cfg, "TTTD_CONFIG=%s", file);
    char *envp[] = {cfg, "TTTD_PORT=7002", "TTTD_MAX_BATCH=3", "OTHER=1", NULL};
    srv_options o;
    cr_assert_eq(parse(&o, envp, ARGC("--port", "7003"), ARGV("--port", "7003")), GO_ON, "%s", err);
    cr_assert_eq(o.port, 7003, "flag over environment");
    cr_assert_eq(o.max_batch, 3, "environment over file");
    cr_assert_eq(o.max_queue, 100, "file over default");
    cr_assert_str_eq(o.host, "0.0.0.0");
    cr_assert_eq(o.max_queue_delay_ms, 0, "default");
    cr_assert_str_eq(o.config, file);
    srv_options_free(&o);

    /* --config as a flag, with --name=value spelling. */
    char flag[300];
    snprintf(flag, sizeof flag, "--config=%s", file);
    cr_assert_eq(parse(&o, NULL, ARGC(flag), ARGV(flag)), GO_ON, "%s", err);
    cr_assert_eq(o.port, 7001);
    cr_assert_eq(o.max_batch, 2);
    srv_options_free(&o);
    unlink(file);
    free(file);
}

Test(cmd_serve, lists_replace_across_sources_and_append_within)
{
    char *file = temp_file("{\"model\": [\"a=/m/a\", \"b=/m/b\"], \"api-key\": \"filekey\"}");
    char cfg[256];
    snprintf(cfg, sizeof cfg, "TTTD_CONFIG=%s", file);
    char *envp[] = {cfg, "TTTD_API_KEY=k1,k2", NULL};
    srv_options o;
    cr_assert_eq(parse(&o, envp, 1, ARGV(NULL)), GO_ON, "%s", err);
    cr_assert_eq(o.n_models, 2);
    cr_assert_str_eq(o.models[0].name, "a");
    cr_assert_str_eq(o.models[1].dir, "/m/b");
    cr_assert_eq(o.keys.n, 2, "the environment's keys replace the file's");
    cr_assert_str_eq(o.keys.v[0], "k1");
    cr_assert_str_eq(o.keys.v[1], "k2");
    srv_options_free(&o);

    cr_assert_eq(parse(&o, envp, ARGC("--model", "c=/m/c", "--model", "/m/d"),
                       ARGV("--model", "c=/m/c", "--model", "/m/d")),
                 GO_ON, "%s", err);
    cr_assert_eq(o.n_models, 2, "flags replace the file's models and append to each other");
    cr_assert_str_eq(o.models[0].name, "c");
    cr_assert_str_eq(o.models[1].name, "default", "a bare folder is the default model");
    cr_assert_str_eq(o.models[1].dir, "/m/d");
    srv_options_free(&o);
    unlink(file);
    free(file);
}

Test(cmd_serve, bounds_errors_name_option_and_source)
{
    srv_options o;
    cr_assert_eq(parse(&o, NULL, ARGC("--max-batch", "0"), ARGV("--max-batch", "0")), USAGE);
    cr_assert_str_eq(err, "tttd serve: --max-batch 0: expected an integer in [1, 64]\n",
                     "the format of every command's messages");
    srv_options_free(&o);

    char *envp[] = {"TTTD_PORT=70000", NULL};
    cr_assert_eq(parse(&o, envp, 1, ARGV(NULL)), USAGE);
    cr_assert(strstr(err, "--port 70000 (from TTTD_PORT): expected an integer in [0, 65535]"), "%s",
              err);
    srv_options_free(&o);

    /* The environment is read before the flags: its mistake is the one reported (the deploy
     * check relies on it to test TTTD_* values with one bad flag). */
    cr_assert_eq(parse(&o, envp, ARGC("--port", "65536"), ARGV("--port", "65536")), USAGE);
    cr_assert(strstr(err, "from TTTD_PORT"), "%s", err);
    srv_options_free(&o);

    char *file = temp_file("{\"workers\": 1.5}");
    char flag[300], want[400];
    snprintf(flag, sizeof flag, "--config=%s", file);
    cr_assert_eq(parse(&o, NULL, ARGC(flag), ARGV(flag)), USAGE);
    snprintf(want, sizeof want, "--workers 1.5 (from config %s): expected an integer in [1, 64]",
             file);
    cr_assert(strstr(err, want), "%s", err);
    srv_options_free(&o);
    unlink(file);
    free(file);

    cr_assert_eq(parse(&o, NULL, ARGC("--device", "tpu"), ARGV("--device", "tpu")), USAGE);
    cr_assert(strstr(err, "--device tpu: expected auto, cpu or cuda"), "%s", err);
    srv_options_free(&o);
    cr_assert_eq(parse(&o, NULL, ARGC("--public-health=maybe"), ARGV("--public-health=maybe")),
                 USAGE);
    cr_assert(strstr(err, "--public-health maybe: expected true or false"), "%s", err);
    srv_options_free(&o);
    cr_assert_eq(parse(&o, NULL, ARGC("--bogus", "1"), ARGV("--bogus", "1")), USAGE);
    cr_assert(strstr(err, "tttd serve: unknown option --bogus\nusage: tttd serve [OPTIONS]\n"),
              "%s", err);
    srv_options_free(&o);
    cr_assert_eq(parse(&o, NULL, ARGC("--port"), ARGV("--port")), USAGE);
    cr_assert(strstr(err, "--port needs a value (N)"), "%s", err);
    srv_options_free(&o);
    cr_assert_eq(parse(&o, NULL, ARGC("stray"), ARGV("stray")), USAGE);
    cr_assert(strstr(err, "too many arguments (stray)"), "%s", err);
    srv_options_free(&o);
    cr_assert_eq(parse(&o, NULL, ARGC("--max-n", "65", "--max-queue", "64"),
                       ARGV("--max-n", "65", "--max-queue", "64")),
                 USAGE, "a request bigger than the queue could never run");
    cr_assert(strstr(err, "--max-n 65: more than --max-queue 64"), "%s", err);
    srv_options_free(&o);
    cr_assert_eq(parse(&o, NULL, ARGC("--device", "cpu", "--dtype", "bf16"),
                       ARGV("--device", "cpu", "--dtype", "bf16")),
                 USAGE);
    cr_assert(strstr(err, "--dtype bf16: needs --device cuda or auto"), "%s", err);
    srv_options_free(&o);
}

Test(cmd_serve, unknown_config_key_and_bad_json)
{
    srv_options o;
    char *file = temp_file("{\"prot\": 1}");
    char flag[300];
    snprintf(flag, sizeof flag, "--config=%s", file);
    cr_assert_eq(parse(&o, NULL, ARGC(flag), ARGV(flag)), USAGE);
    char want[400];
    snprintf(want, sizeof want, "unknown option \"prot\" (from config %s)", file);
    cr_assert(strstr(err, want), "%s", err);
    srv_options_free(&o);
    unlink(file);
    free(file);

    file = temp_file("{\"port\": ");
    snprintf(flag, sizeof flag, "--config=%s", file);
    cr_assert_eq(parse(&o, NULL, ARGC(flag), ARGV(flag)), USAGE);
    cr_assert(strstr(err, file), "%s", err);
    srv_options_free(&o);
    /* Named by the environment, the message says so. */
    snprintf(want, sizeof want, "TTTD_CONFIG=%s", file);
    char *envp[] = {want, NULL};
    cr_assert_eq(parse(&o, envp, 1, ARGV(NULL)), USAGE);
    cr_assert(strstr(err, "(from TTTD_CONFIG)") && strstr(err, file), "%s", err);
    srv_options_free(&o);
    unlink(file);
    free(file);

    cr_assert_eq(parse(&o, NULL, ARGC("--config", "/nonexistent/x.json"),
                       ARGV("--config", "/nonexistent/x.json")),
                 USAGE);
    cr_assert(strstr(err, "--config /nonexistent/x.json: "), "%s", err);
    srv_options_free(&o);
}

Test(cmd_serve, units_and_booleans)
{
    srv_options o;
    cr_assert_eq(parse(&o, NULL,
                       ARGC("--max-body", "64K", "--drain-timeout", "1500ms",
                            "--request-timeout-ms", "2s", "--no-public-metrics",
                            "--public-health=off", "--job-ttl", "2m"),
                       ARGV("--max-body", "64K", "--drain-timeout", "1500ms",
                            "--request-timeout-ms", "2s", "--no-public-metrics",
                            "--public-health=off", "--job-ttl", "2m")),
                 GO_ON, "%s", err);
    cr_assert_eq(o.max_body, 65536);
    cr_assert_eq(o.drain_timeout_ms, 1500);
    cr_assert_eq(o.request_timeout_ms, 2000);
    cr_assert_eq(o.public_metrics, 0);
    cr_assert_eq(o.public_health, 0);
    cr_assert_eq(o.job_ttl_ms, 120000);
    srv_options_free(&o);

    cr_assert_eq(parse(&o, NULL, ARGC("--drain-timeout", "5"), ARGV("--drain-timeout", "5")),
                 GO_ON);
    cr_assert_eq(o.drain_timeout_ms, 5000, "a bare --drain-timeout is in seconds");
    srv_options_free(&o);
    cr_assert_eq(parse(&o, NULL, ARGC("--max-body", "3X"), ARGV("--max-body", "3X")), USAGE);
    cr_assert(strstr(err, "byte count"), "%s", err);
    srv_options_free(&o);
    cr_assert_eq(parse(&o, NULL, ARGC("--max-body", "2G"), ARGV("--max-body", "2G")), USAGE,
                 "above 1 GiB");
    srv_options_free(&o);
}

Test(cmd_serve, models_and_keys)
{
    srv_options o;
    cr_assert_eq(parse(&o, NULL, ARGC("--model", "a=/x", "--model", "a=/y"),
                       ARGV("--model", "a=/x", "--model", "a=/y")),
                 USAGE);
    cr_assert(strstr(err, "--model a=/y: the name 'a' is given twice"), "%s", err);
    srv_options_free(&o);
    cr_assert_eq(parse(&o, NULL, ARGC("--model", "bad name=/x"), ARGV("--model", "bad name=/x")),
                 USAGE);
    srv_options_free(&o);

    char *keys = temp_file("# comment\n\n  key-one  \nkey-two\n");
    char flag[300];
    snprintf(flag, sizeof flag, "--api-key-file=%s", keys);
    cr_assert_eq(parse(&o, NULL, ARGC("--api-key", "flagkey", flag),
                       ARGV("--api-key", "flagkey", flag)),
                 GO_ON, "%s", err);
    cr_assert_eq(o.keys.n, 3);
    cr_assert_str_eq(o.keys.v[0], "flagkey");
    cr_assert_str_eq(o.keys.v[1], "key-one");
    cr_assert_str_eq(o.keys.v[2], "key-two");
    srv_options_free(&o);
    unlink(keys);
    free(keys);

    cr_assert_eq(parse(&o, NULL, ARGC("--api-key-file", "/nonexistent/keys"),
                       ARGV("--api-key-file", "/nonexistent/keys")),
                 BAD_KEY_FILE, "a bad key file is bad data (1), not a misused flag (2)");
    cr_assert(strstr(err, "--api-key-file /nonexistent/keys: "), "%s", err);
    srv_options_free(&o);
}

Test(cmd_serve, help_lists_every_option)
{
    srv_options o;
    cr_assert_eq(parse(&o, NULL, ARGC("--port", "x", "--help"), ARGV("--port", "x", "--help")),
                 HELP, "--help wins over anything else");
    srv_options_free(&o);
    cr_assert_eq(err[0], '\0', "%s", err);

    const cmd_args_spec *spec = cmd_serve_spec();
    cr_assert_gt(spec->n_rows, 20);
    for (int i = 0; i < spec->n_rows; i++) {
        const cmd_arg *r = &spec->rows[i];
        char flag[64];
        snprintf(flag, sizeof flag, "%s%s", r->type == CMD_ARG_BOOL ? "--[no-]" : "--", r->name);
        cr_assert(strstr(out, flag), "help lacks %s", flag);
        cr_assert(r->env && strstr(out, r->env), "help lacks %s's variable", r->name);
    }
    cr_assert(strstr(out, "usage: tttd serve [OPTIONS]\n"), "%s", out);
    /* The facts as one line (the help wraps them). */
    static char flat[sizeof out];
    size_t n = 0;
    for (const char *p = out; *p; p++)
        if (!(isspace((unsigned char)*p) && n && flat[n - 1] == ' '))
            flat[n++] = isspace((unsigned char)*p) ? ' ' : *p;
    flat[n] = '\0';
    cr_assert(strstr(flat, "[default 127.0.0.1; env TTTD_HOST]"), "%s", out);
    cr_assert(strstr(flat, "[default 30; 0 to 3600 s, or with ms/s/m; env TTTD_DRAIN_TIMEOUT]"),
              "%s", out);
}
