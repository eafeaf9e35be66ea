/*
 * cmd_serve.c - `tttd serve`'s entry (see cmd_serve.h): the one table of the daemon's options,
 * its three sources over the defaults (cmd_args_parse_layered), the checks the daemon makes of
 * them (srv_options_finish), then srv_serve_run.
 */
#include "cmd/cmd_serve.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "server/serve.h"

extern char **environ;

#define XSTR(x)  #x
#define STR(x)   XSTR(x)
#define F(field) offsetof(srv_options, field)
#define MS       1
#define SEC      1000

/* cmd/args fills srv_options's lists as its own cmd_strlist: the two must be laid out alike
 * (server/ may not include cmd/, so srv_strlist is its own type). */
_Static_assert(sizeof(srv_strlist) == sizeof(cmd_strlist) &&
                   offsetof(srv_strlist, v) == offsetof(cmd_strlist, v) &&
                   offsetof(srv_strlist, n) == offsetof(cmd_strlist, n),
               "srv_strlist and cmd_strlist differ");

/* clang-format off */
static const cmd_arg serve_rows[] = {
    {.name = "config", .type = CMD_ARG_STR, .env = "TTTD_CONFIG", .metavar = "FILE",
     .off = F(config), .help = "JSON config file: an object of option names to values"},
    {.name = "host", .type = CMD_ARG_STR, .def = "127.0.0.1", .env = "TTTD_HOST",
     .metavar = "ADDR", .off = F(host),
     .help = "address to listen on (IPv4 or IPv6 literal, or a host name)"},
    {.name = "port", .type = CMD_ARG_INT, .def = "8080", .lo = 0, .hi = 65535, .env = "TTTD_PORT",
     .metavar = "N", .off = F(port),
     .help = "TCP port; 0 lets the kernel pick one (printed as \"listening on HOST:PORT\")"},
    {.name = "model", .type = CMD_ARG_LIST, .env = "TTTD_MODEL", .metavar = "NAME=DIR",
     .off = F(model),
     .help = "a diffusers SD3 pipeline folder to serve under NAME (repeatable; a bare DIR is "
             "named \"default\"); none: the embedded model models/default "
             "($TTTD_MODELS_DIR/default, else in the working directory, else beside the "
             "binary), else tests/fixtures/tiny_model"},
    {.name = "workers", .type = CMD_ARG_INT, .def = "1", .lo = 1, .hi = 64,
     .env = "TTTD_WORKERS", .metavar = "N", .off = F(workers),
     .help = "CPU worker threads when there is no GPU (each loads every model)"},
    {.name = "gpus", .type = CMD_ARG_INT, .def = "0", .lo = 0, .hi = 64, .env = "TTTD_GPUS",
     .metavar = "N", .off = F(gpus), .help = "GPUs to use, one worker each; 0: every GPU found"},
    {.name = "device", .type = CMD_ARG_ENUM, .def = "auto", .choices = "auto|cpu|cuda",
     .env = "TTTD_DEVICE", .metavar = "D", .off = F(device),
     .help = "where the workers run: auto picks CUDA when built with it and a GPU answers"},
    {.name = "dtype", .type = CMD_ARG_ENUM, .def = "auto", .choices = "auto|f32|bf16",
     .env = "TTTD_DTYPE", .metavar = "T", .off = F(dtype),
     .help = "weights and activations: auto is bf16 on CUDA, f32 on the CPU"},
    {.name = "max-batch", .type = CMD_ARG_INT, .def = "4", .lo = 1, .hi = 64,
     .env = "TTTD_MAX_BATCH", .metavar = "N", .off = F(max_batch),
     .help = "images denoised together at most (same model, size and steps)"},
    {.name = "max-queue-delay-ms", .type = CMD_ARG_INT, .def = "0", .lo = 0, .hi = 60000,
     .env = "TTTD_MAX_QUEUE_DELAY_MS", .metavar = "MS", .off = F(max_queue_delay_ms),
     .help = "how long the oldest queued image may wait for a fuller batch; 0: none (greedy: a "
             "batch leaves as soon as a worker is free, with the images of its kind that queued "
             "while every worker was busy, up to --max-batch)"},
    {.name = "max-queue", .type = CMD_ARG_INT, .def = "64", .lo = 1, .hi = 100000,
     .env = "TTTD_MAX_QUEUE", .metavar = "N", .off = F(max_queue),
     .help = "images waiting at most; a request that does not fit gets 429"},
    {.name = "max-body", .type = CMD_ARG_SIZE, .def = "1M", .lo = 64, .hi = 1 << 30,
     .env = "TTTD_MAX_BODY", .metavar = "BYTES", .off = F(max_body),
     .help = "largest request body (K, M, G suffixes); larger gets 413"},
    {.name = "max-width", .type = CMD_ARG_INT, .def = "2048", .lo = 16, .hi = 16384,
     .env = "TTTD_MAX_WIDTH", .metavar = "PX", .off = F(max_width),
     .help = "widest image a request may ask for"},
    {.name = "max-height", .type = CMD_ARG_INT, .def = "2048", .lo = 16, .hi = 16384,
     .env = "TTTD_MAX_HEIGHT", .metavar = "PX", .off = F(max_height),
     .help = "tallest image a request may ask for"},
    {.name = "max-pixels", .type = CMD_ARG_INT, .def = "4194304", .lo = 256,
     .hi = 16384.0 * 16384, .env = "TTTD_MAX_PIXELS", .metavar = "N", .off = F(max_pixels),
     .help = "largest width x height a request may ask for"},
    {.name = "max-steps", .type = CMD_ARG_INT, .def = "100", .lo = 1, .hi = 10000,
     .env = "TTTD_MAX_STEPS", .metavar = "N", .off = F(max_steps),
     .help = "most denoising steps a request may ask for"},
    {.name = "max-n", .type = CMD_ARG_INT, .def = "8", .lo = 1, .hi = 1024, .env = "TTTD_MAX_N",
     .metavar = "N", .off = F(max_n), .help = "most images one request may ask for"},
    {.name = "request-timeout-ms", .type = CMD_ARG_DURATION, .def = "600000", .lo = 1,
     .hi = 86400000, .unit = MS, .env = "TTTD_REQUEST_TIMEOUT_MS", .metavar = "MS",
     .off = F(request_timeout_ms),
     .help = "longest a request may take, queue included (a request's timeout_ms may lower "
             "it)"},
    {.name = "drain-timeout", .type = CMD_ARG_DURATION, .def = "30", .lo = 0, .hi = 3600000,
     .unit = SEC, .env = "TTTD_DRAIN_TIMEOUT", .metavar = "SECONDS", .off = F(drain_timeout_ms),
     .help = "on SIGTERM/SIGINT, how long queued and running work may take before it is "
             "canceled (then the exit status is " STR(SRV_EXIT_DRAIN_TIMEOUT) ")"},
    {.name = "api-key", .type = CMD_ARG_LIST, .env = "TTTD_API_KEY", .metavar = "KEY",
     .off = F(api_key),
     .help = "a key clients must send as \"Authorization: Bearer KEY\" (repeatable); none: no "
             "auth"},
    {.name = "api-key-file", .type = CMD_ARG_STR, .env = "TTTD_API_KEY_FILE", .metavar = "FILE",
     .off = F(api_key_file),
     .help = "more keys, one a line (blank lines and # comments skipped; a key is at most "
             STR(SRV_API_KEY_MAX) " bytes, without spaces or control characters, else tttd "
             "exits with status 1)"},
    {.name = "allowed-hosts", .type = CMD_ARG_LIST, .env = "TTTD_ALLOWED_HOSTS",
     .metavar = "LIST", .off = F(allowed_hosts),
     .help = "host names the Host header may carry besides the listening address "
             "(comma-separated; \".example.com\" also allows its subdomains; \"*\": any Host). "
             "localhost and loopback addresses pass when listening on loopback or on every "
             "address (0.0.0.0, ::), and on every address also the machine's addresses and host "
             "name; another Host gets 421"},
    {.name = "cors-origins", .type = CMD_ARG_LIST, .env = "TTTD_CORS_ORIGINS", .metavar = "LIST",
     .off = F(cors_origins),
     .help = "origins (scheme://host[:port], comma-separated, or \"*\") whose web pages may call "
             "the API: they get Access-Control-Allow-Origin and answered preflights; none: only "
             "the server's own origin (its page at /), and a cross-origin POST or DELETE gets "
             "403"},
    {.name = "public-health", .type = CMD_ARG_BOOL, .def = "true", .env = "TTTD_PUBLIC_HEALTH",
     .off = F(public_health), .help = "/healthz and /readyz answer without a key"},
    {.name = "public-metrics", .type = CMD_ARG_BOOL, .def = "true",
     .env = "TTTD_PUBLIC_METRICS", .off = F(public_metrics),
     .help = "/metrics answers without a key"},
    {.name = "readyz-queue-mark", .type = CMD_ARG_INT, .def = "0", .lo = 0, .hi = 100000,
     .env = "TTTD_READYZ_QUEUE_MARK", .metavar = "N", .off = F(readyz_queue_mark),
     .help = "/readyz says 503 while this many images or more wait; 0: --max-queue"},
    {.name = "log-level", .type = CMD_ARG_ENUM, .def = "info", .choices = "debug|info|warn|error",
     .env = "TTTD_LOG_LEVEL", .metavar = "L", .off = F(log_level),
     .help = "least severe log lines written (to stderr)"},
    {.name = "preview-every", .type = CMD_ARG_INT, .def = "0", .lo = 0, .hi = 10000,
     .env = "TTTD_PREVIEW_EVERY", .metavar = "K", .off = F(preview_every),
     .help = "streamed requests get a preview event every K steps; 0: none"},
    {.name = "metadata", .type = CMD_ARG_BOOL, .def = "true", .env = "TTTD_METADATA",
     .off = F(metadata),
     .help = "images carry their generation parameters (a PNG A1111's \"parameters\" text chunk "
             "and a \"tttd\" JSON chunk, a JPEG the parameters as EXIF UserComment); a "
             "request's \"metadata\" field decides for itself"},
    {.name = "sse-ping", .type = CMD_ARG_DURATION, .def = "10000", .lo = 10, .hi = 3600000,
     .unit = MS, .env = "TTTD_SSE_PING", .metavar = "MS", .off = F(sse_ping_ms),
     .help = "interval of the \": ping\" comments that keep event streams open"},
    {.name = "sse-max-buffer", .type = CMD_ARG_SIZE, .def = "4M", .lo = 16384, .hi = 1 << 30,
     .env = "TTTD_SSE_MAX_BUFFER", .metavar = "BYTES", .off = F(sse_max_buffer),
     .help = "event bytes one stream may hold for a client that does not keep up; over it, "
             "preview events are dropped, then the job is canceled and the connection closed"},
    {.name = "job-ttl", .type = CMD_ARG_DURATION, .def = "300", .lo = 0, .hi = 86400000,
     .unit = SEC, .env = "TTTD_JOB_TTL", .metavar = "SECONDS", .off = F(job_ttl_ms),
     .help = "how long GET /v1/jobs/{id} still sees a finished job"},
    {.name = "max-connections", .type = CMD_ARG_INT, .def = "1024", .lo = 4, .hi = 100000,
     .env = "TTTD_MAX_CONNECTIONS", .metavar = "N", .off = F(max_connections),
     .help = "open client connections at most"},
};
/* clang-format on */

static const cmd_args_spec serve_spec = {
    .prog = "tttd serve",
    .synopsis = "[OPTIONS]",
    .about = "Serves text-to-image models over HTTP (see README: the daemon). Each option may "
             "also come from its environment variable or a JSON config file (--config); flags "
             "win over the environment, which wins over the file.",
    .rows = serve_rows,
    .n_rows = (int)(sizeof serve_rows / sizeof serve_rows[0]),
    .own = 1,
    .config = "config",
};

const cmd_args_spec *cmd_serve_spec(void)
{
    return &serve_spec;
}

int cmd_serve_options(srv_options *o, int argc, char **argv, char *const *envp, FILE *out,
                      FILE *errout)
{
    char err[1024];
    memset(o, 0, sizeof *o);
    int status = cmd_args_parse_layered(&serve_spec, o, argc, argv, envp, out, errout);
    if (status >= 0)
        return status;
    int rc = srv_options_finish(o, err, sizeof err);
    if (rc == 0)
        return -1;
    fprintf(errout, "%s: %s\n", serve_spec.prog, err);
    /* A bad key file is bad data, as a bad model folder is (1), not a misused flag (2). */
    return rc == SRV_OPTIONS_EKEYFILE ? 1 : 2;
}

int cmd_serve(int argc, char **argv, FILE *out, FILE *errout)
{
    srv_options o;
    int status = cmd_serve_options(&o, argc, argv, environ, out, errout);
    if (status < 0)
        status = srv_serve_run(&o, out, errout);
    srv_options_free(&o);
    return status;
}
