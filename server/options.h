/*
 * options.h - the configuration of `tttd serve`, from one table.
 *
 * Every option is one row of the table in options.c (name, type, default, bounds, environment
 * variable, help, target field), as redis does its config. A value comes from, in order of
 * precedence: a command-line flag (--name VALUE, --name=VALUE, --name / --no-name for booleans),
 * the environment (TTTD_NAME, dashes as underscores; list options take comma-separated values),
 * a JSON config file (--config FILE or TTTD_CONFIG: an object whose keys are option names, with
 * arrays for list options), and the table's default. A list option set by a source replaces what
 * lower sources gave it; repeated flags append to each other.
 *
 * Not thread-safe; parsed once at start-up, then read-only.
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

/* A repeatable string option's values (owned by the options). */
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
    int64_t sse_ping_ms;
    int64_t sse_max_buffer; /* bytes of events one stream may hold for a client that reads slowly */
    int64_t job_ttl_ms; /* how long a finished job stays visible to GET /v1/jobs/{id} */
    int max_connections;

    /* Derived by srv_options_parse. */
    srv_model_spec *models; /* parsed --model values, names unique */
    int n_models;
    srv_strlist keys; /* --api-key values plus the key file's lines */
} srv_options;

/* The longest API key, in bytes (--api-key, TTTD_API_KEY, a line of --api-key-file). */
#define SRV_API_KEY_MAX 512

/*
 * Fills o from argv (argv[0] is the subcommand name and is skipped), envp (NULL-terminated
 * "NAME=VALUE" strings, may be NULL) and the config file they name. Returns 0 on success,
 * 1 when --help was asked (nothing else is checked), or -1 with a one-line message in err that
 * names the option, the source (flag, environment variable or file) and what was expected, or
 * -2 when the key file (--api-key-file) cannot be read or a line of it is not a valid key (the
 * message names the file and the line).
 * o is always left safe to pass to srv_options_free.
 */
int srv_options_parse(srv_options *o, int argc, char **argv, char *const *envp, char *err,
                      size_t errlen);
void srv_options_free(srv_options *o);

/* Writes the usage text: every option with its default, bounds and environment variable. */
void srv_options_help(FILE *f);

/* Number of rows of the table and the name of row i (for tests). */
int srv_options_count(void);
const char *srv_options_name(int i);

#endif
