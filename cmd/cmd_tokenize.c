/*
 * cmd_tokenize.c - `tttd tokenize`: loads the tokenizers of a model folder and prints the ids of
 * one prompt as JSON (see cmd_tokenize.h). All rows are computed before anything is printed, so
 * a failure gives one error line and no partial output.
 */
#include "cmd/cmd_tokenize.h"
#include "cmd/args.h"
#include "cmd/cli.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/core/error.h"
#include "engine/prompt.h"
#include "engine/text/tokenizer.h"

enum { MAX_LEN_LIMIT = 1 << 20 };

#define XSTR(x) #x
#define STR(x) XSTR(x)

static const char *const folders[] = {"tokenizer", "tokenizer_2", "tokenizer_3"};

typedef struct tok_args {
    const char *dir, *prompt;
    int max_length; /* 0: each tokenizer's row length in SD3's pipeline */
    int trim;
} tok_args;

static const cmd_arg tok_rows[] = {
    {.name = "MODEL_DIR", .type = CMD_ARG_STR, .flags = CMD_ARG_POSITIONAL,
     .off = offsetof(tok_args, dir),
     .help = "a pipeline folder (its tokenizer/, tokenizer_2/, tokenizer_3/) or one tokenizer "
             "folder"},
    {.name = "PROMPT", .type = CMD_ARG_STR, .flags = CMD_ARG_POSITIONAL,
     .off = offsetof(tok_args, prompt), .help = "the text to encode (\"--\" before it when it "
                                               "starts with -)"},
    {.name = "max-length", .type = CMD_ARG_INT, .lo = 1, .hi = MAX_LEN_LIMIT, .metavar = "N",
     .off = offsetof(tok_args, max_length),
     .help = "row length; default: SD3's, " STR(ENG_PROMPT_CLIP_LEN) " for CLIP BPE and "
             STR(ENG_PROMPT_T5_LEN) " for T5 Unigram tokenizers"},
    {.name = "trim", .type = CMD_ARG_FLAG, .hi = 1, .off = offsetof(tok_args, trim),
     .help = "leave the padding out"},
};

static const cmd_args_spec tok_spec = {
    .prog = "tttd tokenize",
    .about = "Prints the token ids of PROMPT for each tokenizer folder of MODEL_DIR (tokenizer/, "
             "tokenizer_2/, tokenizer_3/), or for MODEL_DIR itself when it is a tokenizer folder, "
             "as one JSON object keyed by folder name.",
    .rows = tok_rows,
    .n_rows = (int)(sizeof tok_rows / sizeof tok_rows[0]),
};

static int is_file(const char *dir, const char *name)
{
    char p[PATH_MAX];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_dir(const char *dir, const char *name)
{
    char p[PATH_MAX];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The last path component of dir (without trailing slashes), into buf. */
static const char *base_name(const char *dir, char *buf, size_t n)
{
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    size_t s = len;
    while (s > 0 && dir[s - 1] != '/')
        s--;
    snprintf(buf, n, "%.*s", (int)(len - s), dir + s);
    return buf;
}

/* Encodes prompt with the tokenizer folder path and adds the row to obj under key. */
static int add_row(json_t *obj, const char *key, const char *path, const char *prompt,
                   int max_length, int trim, FILE *errout)
{
    eng_tokenizer *t = NULL;
    eng_error err = {0};
    if (eng_tokenizer_load(&t, path, &err) != 0)
        return cmd_engine_fail(errout, "tokenize", NULL, &err);
    int len = max_length > 0 ? max_length
                             : eng_tokenizer_kind_of(t) == ENG_TOKENIZER_BPE ? ENG_PROMPT_CLIP_LEN
                                                               : ENG_PROMPT_T5_LEN;
    int32_t *ids = malloc((size_t)len * sizeof *ids);
    json_t *row = json_array();
    int n_real = 0, status = 1;
    if (!ids || !row) {
        fprintf(errout, "tttd tokenize: out of memory\n");
    } else if (eng_tokenizer_encode(t, prompt, ids, len, &n_real, &err) != 0) {
        status = cmd_engine_fail(errout, "tokenize", path, &err);
    } else {
        status = 0;
        for (int i = 0; i < (trim ? n_real : len) && status == 0; i++)
            if (json_array_append_new(row, json_integer(ids[i])) != 0)
                status = 1;
        if (status == 0 && json_object_set(obj, key, row) != 0)
            status = 1;
        if (status != 0)
            fprintf(errout, "tttd tokenize: out of memory\n");
    }
    json_decref(row);
    free(ids);
    eng_tokenizer_free(t);
    return status;
}

int cmd_tokenize(int argc, char **argv, FILE *out, FILE *errout)
{
    tok_args a = {0};
    int rc = cmd_args_parse(&tok_spec, &a, argc, argv, out, errout);
    if (rc >= 0)
        return rc;
    const char *dir = a.dir, *prompt = a.prompt;
    int max_length = a.max_length, trim = a.trim;
    json_t *obj = json_object();
    int status = 0, found = 0;
    if (!obj) {
        fprintf(errout, "tttd tokenize: out of memory\n");
        return 1;
    }
    if (is_file(dir, "tokenizer.json") || is_file(dir, "vocab.json")) {
        char name[256];
        found = 1;
        status = add_row(obj, base_name(dir, name, sizeof name), dir, prompt, max_length, trim,
                         errout);
    } else {
        for (size_t k = 0; k < sizeof folders / sizeof folders[0] && status == 0; k++) {
            char path[PATH_MAX];
            if (!is_dir(dir, folders[k]))
                continue;
            found = 1;
            snprintf(path, sizeof path, "%s/%s", dir, folders[k]);
            status = add_row(obj, folders[k], path, prompt, max_length, trim, errout);
        }
    }
    if (!found) {
        fprintf(errout, "tttd tokenize: %s: no tokenizer folder (tokenizer/, tokenizer_2/, "
                        "tokenizer_3/) and not a tokenizer folder itself\n", dir);
        status = 1;
    }
    if (status == 0) {
        char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!s) {
            fprintf(errout, "tttd tokenize: out of memory\n");
            status = 1;
        } else {
            fprintf(out, "%s\n", s);
            free(s);
        }
    }
    json_decref(obj);
    return status;
}
