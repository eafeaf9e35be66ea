/*
 * cmd_tokenize.c - `tttd tokenize`: loads the tokenizers of a model folder and prints the ids of
 * one prompt as JSON (see cmd_tokenize.h). All rows are computed before anything is printed, so
 * a failure gives one error line and no partial output.
 */
#include "server/cmd_tokenize.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/core/error.h"
#include "engine/text/tokenizer.h"

/* SD3's pipeline: CLIP rows of 77, T5 rows of 256. */
enum { CLIP_LEN = 77, T5_LEN = 256, MAX_LEN_LIMIT = 1 << 20 };

static const char *const folders[] = {"tokenizer", "tokenizer_2", "tokenizer_3"};

static void usage(FILE *f)
{
    fprintf(f, "usage: tttd tokenize MODEL_DIR PROMPT [--max-length N] [--trim]\n"
               "  Prints the token ids of PROMPT for each tokenizer folder of MODEL_DIR\n"
               "  (tokenizer/, tokenizer_2/, tokenizer_3/), or for MODEL_DIR itself when it is\n"
               "  a tokenizer folder, as one JSON object keyed by folder name.\n"
               "  --max-length N  row length (default: 77 for CLIP BPE, 256 for T5 Unigram)\n"
               "  --trim          leave the padding out\n"
               "  --              the next argument is the prompt even if it starts with -\n");
}

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
    if (eng_tokenizer_load(&t, path, &err) != 0) {
        fprintf(errout, "tttd tokenize: %s\n", err.msg);
        return 1;
    }
    int len = max_length > 0 ? max_length
                             : eng_tokenizer_kind_of(t) == ENG_TOKENIZER_BPE ? CLIP_LEN : T5_LEN;
    int32_t *ids = malloc((size_t)len * sizeof *ids);
    json_t *row = json_array();
    int n_real = 0, status = 1;
    if (!ids || !row) {
        fprintf(errout, "tttd tokenize: out of memory\n");
    } else if (eng_tokenizer_encode(t, prompt, ids, len, &n_real, &err) != 0) {
        fprintf(errout, "tttd tokenize: %s: %s\n", path, err.msg);
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

int srv_cmd_tokenize(int argc, char **argv, FILE *out, FILE *errout)
{
    const char *pos[2] = {NULL, NULL};
    int n_pos = 0, trim = 0, max_length = 0, only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = 1;
        } else if (!only_pos && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            usage(out);
            return 0;
        } else if (!only_pos && strcmp(a, "--trim") == 0) {
            trim = 1;
        } else if (!only_pos && strcmp(a, "--max-length") == 0) {
            char *end;
            errno = 0;
            long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
            if (i + 1 >= argc || *end || errno || v < 1 || v > MAX_LEN_LIMIT) {
                fprintf(errout, "tttd tokenize: --max-length needs a number in 1..%d\n",
                        MAX_LEN_LIMIT);
                usage(errout);
                return 2;
            }
            max_length = (int)v;
            i++;
        } else if (!only_pos && a[0] == '-' && a[1] != '\0') {
            fprintf(errout, "tttd tokenize: unknown option %s (use -- before a prompt that "
                            "starts with -)\n", a);
            usage(errout);
            return 2;
        } else if (n_pos < 2) {
            pos[n_pos++] = a;
        } else {
            fprintf(errout, "tttd tokenize: too many arguments (quote the prompt)\n");
            usage(errout);
            return 2;
        }
    }
    if (n_pos < 2) {
        fprintf(errout, "tttd tokenize: missing %s\n", n_pos == 0 ? "MODEL_DIR" : "PROMPT");
        usage(errout);
        return 2;
    }
    const char *dir = pos[0], *prompt = pos[1];
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
