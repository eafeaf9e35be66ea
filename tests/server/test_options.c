/*
 * test_options.c - `tttd serve` options: defaults from the table, precedence flags > environment >
 * config file > default (lists replaced whole by a higher source, appended by repeated flags),
 * bounds and type errors naming the option and where the value came from, size and duration
 * suffixes, boolean forms, --model and API key derivation, and --help listing every row.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/options.h"

static char err[1024];

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

static int parse(srv_options *o, char **envp, int argc, char **argv)
{
    err[0] = '\0';
    return srv_options_parse(o, argc, argv, envp, err, sizeof err);
}

#define ARGV(...) ((char *[]){"serve", __VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((char *[]){"serve", __VA_ARGS__}) / sizeof(char *)))

Test(options, defaults)
{
    srv_options o;
    char *argv[] = {"serve", NULL};
    cr_assert_eq(parse(&o, NULL, 1, argv), 0, "%s", err);
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

Test(options, flags_beat_env_beat_file_beat_default)
{
    char *file = temp_file("{\"port\": 7001, \"max_batch\": 2, \"max-queue\": 100, "
                           "\"host\": \"0.0.0.0\"}");
    char cfg[256];
    snprintf(cfg, sizeof cfg, "TTTD_CONFIG=%s", file);
    char *envp[] = {cfg, "TTTD_PORT=7002", "TTTD_MAX_BATCH=3", "OTHER=1", NULL};
    srv_options o;
    cr_assert_eq(parse(&o, envp, ARGC("--port", "7003"), ARGV("--port", "7003")), 0, "%s", err);
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
    cr_assert_eq(parse(&o, NULL, ARGC(flag), ARGV(flag)), 0, "%s", err);
    cr_assert_eq(o.port, 7001);
    cr_assert_eq(o.max_batch, 2);
    srv_options_free(&o);
    unlink(file);
    free(file);
}

Test(options, lists_replace_across_sources_and_append_within)
{
    char *file = temp_file("{\"model\": [\"a=/m/a\", \"b=/m/b\"], \"api-key\": \"filekey\"}");
    char cfg[256];
    snprintf(cfg, sizeof cfg, "TTTD_CONFIG=%s", file);
    char *envp[] = {cfg, "TTTD_API_KEY=k1,k2", NULL};
    srv_options o;
    cr_assert_eq(parse(&o, envp, 1, ARGV(NULL)), 0, "%s", err);
    cr_assert_eq(o.n_models, 2);
    cr_assert_str_eq(o.models[0].name, "a");
    cr_assert_str_eq(o.models[1].dir, "/m/b");
    cr_assert_eq(o.keys.n, 2, "the environment's keys replace the file's");
    cr_assert_str_eq(o.keys.v[0], "k1");
    cr_assert_str_eq(o.keys.v[1], "k2");
    srv_options_free(&o);

    cr_assert_eq(parse(&o, envp, ARGC("--model", "c=/m/c", "--model", "/m/d"),
                       ARGV("--model", "c=/m/c", "--model", "/m/d")),
                 0, "%s", err);
    cr_assert_eq(o.n_models, 2, "flags replace the file's models and append to each other");
    cr_assert_str_eq(o.models[0].name, "c");
    cr_assert_str_eq(o.models[1].name, "default", "a bare folder is the default model");
    cr_assert_str_eq(o.models[1].dir, "/m/d");
    srv_options_free(&o);
    unlink(file);
    free(file);
}

Test(options, bounds_errors_name_option_and_source)
{
    srv_options o;
    cr_assert_eq(parse(&o, NULL, ARGC("--max-batch", "0"), ARGV("--max-batch", "0")), -1);
    cr_assert(strstr(err, "--max-batch"), "%s", err);
    cr_assert(strstr(err, "[1, 64]"), "%s", err);
    cr_assert(strstr(err, "flag"), "%s", err);
    srv_options_free(&o);

    char *envp[] = {"TTTD_PORT=70000", NULL};
    cr_assert_eq(parse(&o, envp, 1, ARGV(NULL)), -1);
    cr_assert(strstr(err, "--port") && strstr(err, "TTTD_PORT") && strstr(err, "65535"), "%s",
              err);
    srv_options_free(&o);

    char *file = temp_file("{\"workers\": 1.5}");
    char flag[300];
    snprintf(flag, sizeof flag, "--config=%s", file);
    cr_assert_eq(parse(&o, NULL, ARGC(flag), ARGV(flag)), -1);
    cr_assert(strstr(err, "--workers") && strstr(err, file), "%s", err);
    srv_options_free(&o);
    unlink(file);
    free(file);

    cr_assert_eq(parse(&o, NULL, ARGC("--device", "tpu"), ARGV("--device", "tpu")), -1);
    cr_assert(strstr(err, "auto|cpu|cuda"), "%s", err);
    srv_options_free(&o);
    cr_assert_eq(parse(&o, NULL, ARGC("--public-health=maybe"), ARGV("--public-health=maybe")),
                 -1);
    cr_assert(strstr(err, "boolean"), "%s", err);
    srv_options_free(&o);
    cr_assert_eq(parse(&o, NULL, ARGC("--bogus", "1"), ARGV("--bogus", "1")), -1);
    cr_assert(strstr(err, "unknown option '--bogus'"), "%s", err);
    srv_options_free(&o);
    cr_assert_eq(parse(&o, NULL, ARGC("--port"), ARGV("--port")), -1);
    cr_assert(strstr(err, "needs a value"), "%s", err);
    srv_options_free(&o);
    cr_assert_eq(parse(&o, NULL, ARGC("--max-n", "65", "--max-queue", "64"),
                       ARGV("--max-n", "65", "--max-queue", "64")),
                 -1, "a request bigger than the queue could never run");
    cr_assert(strstr(err, "--max-n"), "%s", err);
    srv_options_free(&o);
}

Test(options, unknown_config_key_and_bad_json)
{
    srv_options o;
    char *file = temp_file("{\"prot\": 1}");
    char flag[300];
    snprintf(flag, sizeof flag, "--config=%s", file);
    cr_assert_eq(parse(&o, NULL, ARGC(flag), ARGV(flag)), -1);
    cr_assert(strstr(err, "unknown option \"prot\""), "%s", err);
    srv_options_free(&o);
    unlink(file);
    free(file);

    file = temp_file("{\"port\": ");
    snprintf(flag, sizeof flag, "--config=%s", file);
    cr_assert_eq(parse(&o, NULL, ARGC(flag), ARGV(flag)), -1);
    cr_assert(strstr(err, file), "%s", err);
    srv_options_free(&o);
    unlink(file);
    free(file);

    cr_assert_eq(parse(&o, NULL, ARGC("--config", "/nonexistent/x.json"),
                       ARGV("--config", "/nonexistent/x.json")),
                 -1);
    srv_options_free(&o);
}

Test(options, units_and_booleans)
{
    srv_options o;
    cr_assert_eq(parse(&o, NULL,
                       ARGC("--max-body", "64K", "--drain-timeout", "1500ms", "--request-timeout-ms",
                            "2s", "--no-public-metrics", "--public-health=off", "--job-ttl", "2m"),
                       ARGV("--max-body", "64K", "--drain-timeout", "1500ms", "--request-timeout-ms",
                            "2s", "--no-public-metrics", "--public-health=off", "--job-ttl", "2m")),
                 0, "%s", err);
    cr_assert_eq(o.max_body, 65536);
    cr_assert_eq(o.drain_timeout_ms, 1500);
    cr_assert_eq(o.request_timeout_ms, 2000);
    cr_assert_eq(o.public_metrics, 0);
    cr_assert_eq(o.public_health, 0);
    cr_assert_eq(o.job_ttl_ms, 120000);
    srv_options_free(&o);

    cr_assert_eq(parse(&o, NULL, ARGC("--drain-timeout", "5"), ARGV("--drain-timeout", "5")), 0);
    cr_assert_eq(o.drain_timeout_ms, 5000, "a bare --drain-timeout is in seconds");
    srv_options_free(&o);
    cr_assert_eq(parse(&o, NULL, ARGC("--max-body", "3X"), ARGV("--max-body", "3X")), -1);
    cr_assert(strstr(err, "byte count"), "%s", err);
    srv_options_free(&o);
    cr_assert_eq(parse(&o, NULL, ARGC("--max-body", "2G"), ARGV("--max-body", "2G")), -1,
                 "above 1 GiB");
    srv_options_free(&o);
}

Test(options, models_and_keys)
{
    srv_options o;
    cr_assert_eq(parse(&o, NULL, ARGC("--model", "a=/x", "--model", "a=/y"),
                       ARGV("--model", "a=/x", "--model", "a=/y")),
                 -1);
    cr_assert(strstr(err, "twice"), "%s", err);
    srv_options_free(&o);
    cr_assert_eq(parse(&o, NULL, ARGC("--model", "bad name=/x"), ARGV("--model", "bad name=/x")),
                 -1);
    srv_options_free(&o);

    char *keys = temp_file("# comment\n\n  key-one  \nkey-two\n");
    char flag[300];
    snprintf(flag, sizeof flag, "--api-key-file=%s", keys);
    cr_assert_eq(parse(&o, NULL, ARGC("--api-key", "flagkey", flag),
                       ARGV("--api-key", "flagkey", flag)),
                 0, "%s", err);
    cr_assert_eq(o.keys.n, 3);
    cr_assert_str_eq(o.keys.v[0], "flagkey");
    cr_assert_str_eq(o.keys.v[1], "key-one");
    cr_assert_str_eq(o.keys.v[2], "key-two");
    srv_options_free(&o);
    unlink(keys);
    free(keys);

    cr_assert_eq(parse(&o, NULL, ARGC("--api-key-file", "/nonexistent/keys"),
                       ARGV("--api-key-file", "/nonexistent/keys")),
                 -2);
    cr_assert(strstr(err, "/nonexistent/keys"), "%s", err);
    srv_options_free(&o);
}

Test(options, help_lists_every_option)
{
    srv_options o;
    cr_assert_eq(parse(&o, NULL, ARGC("--port", "x", "--help"), ARGV("--port", "x", "--help")), 1,
                 "--help wins over anything else");
    srv_options_free(&o);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    srv_options_help(f);
    fclose(f);
    cr_assert_gt(srv_options_count(), 20);
    for (int i = 0; i < srv_options_count(); i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "%s", srv_options_name(i));
        cr_assert(strstr(text, flag), "help lacks %s", flag);
    }
    cr_assert(strstr(text, "TTTD_MAX_QUEUE_DELAY_MS"));
    cr_assert(strstr(text, "default 127.0.0.1"));
    free(text);
}
