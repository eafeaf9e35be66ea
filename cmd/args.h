/*
 * args.h - the one argument-table parser of tttd's command lines.
 *
 * A command describes each option and each positional argument as one row of a table (name,
 * type, default, bounds, metavar, help, environment variable, target field), as redis does its
 * config; cmd_args_parse fills the caller's struct from argv and cmd_args_help writes the usage
 * from the same rows, so a flag, its bounds and its default are written down once. Options are
 * `--name VALUE`, `--name=VALUE`, a one-letter `-x VALUE` where the row has one, `--name` /
 * `--no-name` for booleans; "--" ends the options; "-" alone is a positional argument.
 *
 * cmd_args_parse_layered adds the daemon's two lower sources under the command line: each row's
 * environment variable and a JSON config file. Every value, whatever its source, goes through
 * cmd_arg_set, so bounds and messages are the same for `--max-batch 0`, `TTTD_MAX_BATCH=0` and
 * `{"max-batch": 0}`. A bad value is reported as written, then what was expected, with where it
 * came from when that was not the command line:
 *     tttd generate: --steps 0: expected an integer in [1, 10000]
 *     tttd serve: --port 70000 (from TTTD_PORT): expected an integer in [0, 65535]
 *     tttd serve: --workers 1.5 (from config tttd.json): expected an integer in [1, 64]
 *
 * Stateless; thread-safe as long as two threads do not fill the same struct.
 */
#ifndef TTTD_CMD_ARGS_H
#define TTTD_CMD_ARGS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum cmd_arg_type {
    CMD_ARG_FLAG,     /* int set to the row's hi (0 or 1 usually); takes no value */
    CMD_ARG_BOOL,     /* int: --name, --no-name, or a value true/false, 1/0, yes/no, on/off */
    CMD_ARG_INT,      /* int in [lo, hi] */
    CMD_ARG_INT64,    /* int64_t in [lo, hi] */
    CMD_ARG_U64,      /* uint64_t, 0 .. 2^64-1 (no sign), bounds not checked; with lo = -1 the
                       * value -1 also parses and means "not given" (the field keeps its
                       * default, the row's seen flag is cleared; cmd_arg_set returns 1) */
    CMD_ARG_DOUBLE,   /* double in [lo, hi] (never NaN) */
    CMD_ARG_SIZE,     /* int64_t bytes in [lo, hi]; suffixes K, M, G (binary; KiB, KB too) */
    CMD_ARG_DURATION, /* int64_t ms in [lo, hi]; suffixes ms, s, m; a bare number counts `unit` ms */
    CMD_ARG_STR,      /* const char * (see cmd_args_spec.own) */
    CMD_ARG_ENUM,     /* int: the index of the value in `choices` ("a|b|c"), any case */
    CMD_ARG_LIST,     /* cmd_strlist: each use appends one value */
} cmd_arg_type;

/* A CMD_ARG_LIST's values, in the order given; freed by cmd_args_free. */
typedef struct cmd_strlist {
    char **v;
    int n;
} cmd_strlist;

enum {
    CMD_ARG_REQUIRED = 1 << 0,   /* an option that must be given */
    CMD_ARG_POSITIONAL = 1 << 1, /* a positional argument, in table order; required unless
                                    CMD_ARG_OPTIONAL too */
    CMD_ARG_OPTIONAL = 1 << 2,   /* a positional argument that may be left out */
};

/* Where a row records that it was given: offsetof + 1 of an int in the caller's struct. */
#define CMD_ARG_SEEN(type, field) (offsetof(type, field) + 1)

typedef struct cmd_arg {
    const char *name;    /* long name without "--" ("steps"); NULL: short only; positional: its
                            metavar ("MODEL_DIR") */
    char short_name;     /* 'o' for -o, or 0 */
    cmd_arg_type type;
    const char *def;     /* the default as text, parsed as a value would be; NULL: none (the
                            field keeps what the caller put there; the help says what it means) */
    double lo, hi;       /* bounds of numbers (integers: exactly representable, |x| <= 2^53);
                            CMD_ARG_FLAG: hi is the value stored */
    int64_t unit;        /* CMD_ARG_DURATION: milliseconds per bare unit (1, or 1000) */
    const char *choices; /* CMD_ARG_ENUM: "a|b|c" */
    const char *env;     /* the environment variable that may also set it, or NULL */
    const char *metavar; /* "N", "DIR" in the help; NULL for flags and booleans */
    const char *help;    /* sentences; "\n" starts a new line (leading spaces kept) */
    size_t off;          /* offsetof the target field in the caller's struct */
    unsigned flags;      /* CMD_ARG_REQUIRED, CMD_ARG_POSITIONAL, CMD_ARG_OPTIONAL */
    size_t seen;         /* CMD_ARG_SEEN(...), or 0: not recorded */
} cmd_arg;

typedef struct cmd_args_spec {
    const char *prog;     /* "tttd generate": starts every message and the usage line */
    const char *synopsis; /* the usage line after prog, or NULL: made from the rows */
    const char *about;    /* paragraph(s) after the usage line in --help, or NULL */
    const cmd_arg *rows;
    int n_rows;
    int own; /* 1: CMD_ARG_STR and CMD_ARG_LIST values are copies (cmd_args_free frees them);
                0: they point into the text given (argv outlives the struct) */
    const char *config; /* cmd_args_parse_layered: the long name of the CMD_ARG_STR row that names
                           a JSON config file, or NULL: no file */
} cmd_args_spec;

/*
 * Sets every row that has a default, then parses argv (argv[0] is the command's name and is
 * skipped) into dst. Returns -1 when the command should go on, else the exit status to return
 * now: 0 after --help / -h (the help went to out), 2 after bad usage (one line naming the
 * option and what was expected went to errout, with the usage line when an option or argument
 * is unknown or missing). Only syntax and each value's own bounds are checked: checks across
 * options are the command's.
 */
int cmd_args_parse(const cmd_args_spec *s, void *dst, int argc, char **argv, FILE *out,
                   FILE *errout);

/*
 * As cmd_args_parse, over two more sources, lowest first: the JSON config file that the row
 * s->config names (by its flag, else by its environment variable: an object whose keys are long
 * names, '_' standing for '-', with a string, number or boolean each, or an array of them for a
 * list), then each row's environment variable in envp ("NAME=VALUE" strings, may be NULL; a list's
 * value is comma-separated, empty items skipped), then argv. A later source overrides an earlier
 * one; a list set by a source replaces what lower sources gave it, and repeated flags append to
 * each other. --help or -h anywhere before "--" prints the help and returns 0, whatever else argv
 * holds. The file and the environment are read before argv, so a bad value there is reported even
 * when a flag is bad too. Needs s->own (values from the file do not outlive the parse).
 */
int cmd_args_parse_layered(const cmd_args_spec *s, void *dst, int argc, char **argv,
                           char *const *envp, FILE *out, FILE *errout);

/* Sets every row that has a default; 0, or -1 with a message in err (a bad default: a bug). */
int cmd_args_defaults(const cmd_args_spec *s, void *dst, char *err, size_t errlen);

/*
 * Converts text into row r's field of dst (a list gains one value). 0, 1 for a CMD_ARG_U64 row's
 * "-1" that means "not given" (the field left as it was), or -1 leaving the field as it was, with
 * what was expected in err ("expected an integer in [1, 10000]").
 */
int cmd_arg_set(const cmd_args_spec *s, const cmd_arg *r, void *dst, const char *text, char *err,
                size_t errlen);

/* The row whose long name is name[0 .. len) ('_' matching '-'), or NULL. Positionals excluded. */
const cmd_arg *cmd_args_find(const cmd_args_spec *s, const char *name, size_t len);

/* Choice idx of "a|b|c" into buf ("" when out of range); returns buf. */
const char *cmd_args_choice(const char *choices, int idx, char *buf, size_t len);

/* Writes the usage line, the about text and every option with its default and bounds. */
void cmd_args_help(const cmd_args_spec *s, FILE *f);
/* Writes only the usage line (what follows a usage error). */
void cmd_args_usage(const cmd_args_spec *s, FILE *f);

/* Frees what the rows' values own (lists; strings when s->own). dst may be NULL. */
void cmd_args_free(const cmd_args_spec *s, void *dst);

#endif
