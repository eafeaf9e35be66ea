/*
 * options.h - the configuration of `tttd serve`, as the daemon reads it.
 *
 * The options are one table of cmd/args.h rows in cmd/cmd_serve.c (name, type, default, bounds,
 * environment variable, help, target field in this struct), read from flags, TTTD_* variables and
 * a JSON config file; `tttd serve --help` lists them. What is left here is the daemon's own part:
 * the struct, the checks across options, the values derived from them (--model's NAME=DIR, the
 * API keys with the key file's) and freeing.
 *
 * Not thread-safe; filled once at start-up, then read-only.
 */
#ifndef TTTD_SERVER_OPTIONS_H
#define TTTD_SERVER_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum srv_device {
    SRV_DEVICE_AUTO = 0, /* CUDA when this build has it and a GPU answers, else CPU */
    SRV_DEVICE_CPU = 1,
    SRV_DEVICE_CUDA = 2,
} srv_device;

typedef enum srv_dtype_choice {
    SRV_DTYPE_AUTO = 0, /* bf16 on CUDA, f32 on the CPU */
    SRV_DTYPE_F32 = 1,
    SRV_DTYPE_BF16 = 2,
} srv_dtype_choice;

/* A repeatable string option's values (owned by the options; laid out as cmd/args's
 * cmd_strlist, which fills it). */
typedef struct srv_strlist {
    char **v;
    int n;
} srv_strlist;

/* One --model NAME=DIR (a bare DIR is named "default"). */
typedef struct srv_model_spec {
    char *name;
    char *dir;
} srv_model_spec;

typedef struct srv_options {
    char *config; /* the config file read, or NULL */
    char *host;
    int port; /* 0: the kernel picks one */
    srv_strlist model; /* raw NAME=DIR values */
    int workers;
    int gpus; /* 0: every GPU found */
    int device;  /* srv_device */
    int dtype;   /* srv_dtype_choice */
    int max_batch;
    int max_queue_delay_ms;
    int max_queue; /* units (images), not requests */
    int64_t max_body;
    int max_width, max_height;
    int max_pixels;
    int max_steps, max_n;
    int64_t request_timeout_ms;
    int64_t drain_timeout_ms;
    srv_strlist api_key;
    char *api_key_file;
    srv_strlist allowed_hosts; /* Host names allowed besides the listening address; "*": any */
    srv_strlist cors_origins;  /* origins given Access-Control-Allow-Origin; "*": any */
    int public_health, public_metrics;
    int readyz_queue_mark; /* 0: max_queue */
    int log_level;         /* eng_log_level */
    int preview_every;
    int metadata; /* images carry their generation parameters unless a request says no */
    int64_t sse_ping_ms;
    int64_t sse_max_buffer; /* bytes of events one stream may hold for a client that reads slowly */
    int64_t job_ttl_ms; /* how long a finished job stays visible to GET /v1/jobs/{id} */
    int max_connections;

    /* Derived by srv_options_finish. */
    srv_model_spec *models; /* parsed --model values, names unique */
    int n_models;
    srv_strlist keys; /* --api-key values plus the key file's lines */
} srv_options;

/* The longest API key, in bytes (--api-key, TTTD_API_KEY, a line of --api-key-file). */
#define SRV_API_KEY_MAX 512

/* srv_options_finish's return when the key file cannot be read or holds a bad key. */
#define SRV_OPTIONS_EKEYFILE (-2)

/*
 * After the table's values are in o: checks them across options (--max-n against --max-queue,
 * --dtype against --device, ...), resolves --readyz-queue-mark 0, parses --model values into
 * o->models (names unique), checks --allowed-hosts and --cors-origins, and gathers the API keys
 * (--api-key, then the lines of --api-key-file) into o->keys. Returns 0, -1 with a one-line
 * message in err naming the option, the value and what is wrong, or SRV_OPTIONS_EKEYFILE with a
 * message naming the file and the line.
 */
int srv_options_finish(srv_options *o, char *err, size_t errlen);

/* Frees every string and list o owns (the table's and the derived ones); o may be NULL. */
void srv_options_free(srv_options *o);

#endif
