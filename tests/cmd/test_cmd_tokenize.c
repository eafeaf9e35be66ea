/*
 * test_cmd_tokenize.c - `tttd tokenize`: a model folder whose tokenizer/, tokenizer_2/ and
 * tokenizer_3/ link to the fixture tokenizers (tests/fixtures/tokenizers), a single tokenizer
 * folder, --max-length / --trim / --, and the exit statuses of usage errors and broken folders.
 */
#include <criterion/criterion.h>

#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/cmd_tokenize.h"
#include "tests/common/test_util.h"

static char model[64];

static const char *fixtures(void)
{
    const char *r = getenv("TTTD_TOKENIZER_FIXTURES");
    return r && *r ? r : "tests/fixtures/tokenizers";
}

static void link_in(const char *name, const char *target)
{
    char src[PATH_MAX], rel[PATH_MAX], dst[PATH_MAX];
    snprintf(rel, sizeof rel, "%s/%s", fixtures(), target);
    cr_assert_not_null(realpath(rel, src), "%s", rel);
    snprintf(dst, sizeof dst, "%s/%s", model, name);
    cr_assert_eq(symlink(src, dst), 0, "%s", dst);
}

static void setup(void)
{
    strcpy(model, "/tmp/tttd_tokcmd_XXXXXX");
    cr_assert_not_null(mkdtemp(model));
    link_in("tokenizer", "clip_l");
    link_in("tokenizer_2", "clip_g");
    link_in("tokenizer_3", "t5");
}

static void teardown(void)
{
    tu_rmtree(model);
}

/* Runs the command; returns the status, out and err text in static buffers. */
static int run(char **out_text, char **err_text, int argc, ...)
{
    static char obuf[65536], ebuf[4096];
    char *argv[16];
    va_list ap;
    va_start(ap, argc);
    argv[0] = "tokenize";
    for (int i = 1; i < argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    FILE *o = fmemopen(obuf, sizeof obuf, "w"), *e = fmemopen(ebuf, sizeof ebuf, "w");
    cr_assert(o && e);
    int rc = cmd_tokenize(argc, argv, o, e);
    fclose(o);
    fclose(e);
    *out_text = obuf;
    *err_text = ebuf;
    return rc;
}

static json_t *row(json_t *obj, const char *key, size_t len)
{
    json_t *r = json_object_get(obj, key);
    cr_assert(json_is_array(r), "no %s row", key);
    cr_assert_eq(json_array_size(r), len, "%s: %zu ids", key, json_array_size(r));
    return r;
}

static long long at(json_t *r, size_t i)
{
    return json_integer_value(json_array_get(r, i));
}

Test(cmd_tokenize, model_folder, .init = setup, .fini = teardown)
{
    char *out, *err;
    cr_assert_eq(run(&out, &err, 3, model, "a photo of a cat"), 0, "%s", err);
    json_error_t je;
    json_t *obj = json_loads(out, 0, &je);
    cr_assert_not_null(obj, "%s: %s", je.text, out);
    cr_assert_eq(json_object_size(obj), 3);
    static const long long cat[] = {49406, 320, 1125, 539, 320, 2368, 49407};
    json_t *l = row(obj, "tokenizer", 77), *g = row(obj, "tokenizer_2", 77);
    for (size_t i = 0; i < 77; i++) {
        cr_assert_eq(at(l, i), i < 7 ? cat[i] : 49407);
        cr_assert_eq(at(g, i), i < 7 ? cat[i] : 0);
    }
    json_t *t5 = row(obj, "tokenizer_3", 256);
    static const long long t5cat[] = {73, 155, 71, 73, 122, 1};
    for (size_t i = 0; i < 256; i++)
        cr_assert_eq(at(t5, i), i < 6 ? t5cat[i] : 0);
    cr_assert_eq(strncmp(out, "{\"tokenizer\":", 13), 0, "keys keep the folder order: %s", out);
    json_decref(obj);
}

Test(cmd_tokenize, options_and_single_folder, .init = setup, .fini = teardown)
{
    char *out, *err, path[128];
    cr_assert_eq(run(&out, &err, 5, model, "a cat", "--max-length", "4"), 0, "%s", err);
    json_t *obj = json_loads(out, 0, NULL);
    cr_assert_eq(at(row(obj, "tokenizer", 4), 3), 49407);
    cr_assert_eq(at(row(obj, "tokenizer_3", 4), 2), 1);
    json_decref(obj);
    snprintf(path, sizeof path, "%s/tokenizer_3/", model);
    cr_assert_eq(run(&out, &err, 5, "--trim", path, "--", "-a cat"), 0, "%s", err);
    obj = json_loads(out, 0, NULL);
    cr_assert_eq(json_object_size(obj), 1, "%s", out);
    json_t *r = json_object_get(obj, "tokenizer_3");
    cr_assert(json_is_array(r) && json_array_size(r) > 1 && json_array_size(r) < 10, "%s", out);
    cr_assert_eq(at(r, json_array_size(r) - 1), 1);
    json_decref(obj);
    cr_assert_eq(run(&out, &err, 2, "--help"), 0);
    cr_assert(strstr(out, "usage: tttd tokenize"));
}

Test(cmd_tokenize, failures, .init = setup, .fini = teardown)
{
    char *out, *err, path[128];
    cr_assert_eq(run(&out, &err, 2, model), 2);
    cr_assert(strstr(err, "missing PROMPT"), "%s", err);
    cr_assert_eq(run(&out, &err, 4, model, "a", "b"), 2);
    cr_assert_eq(run(&out, &err, 3, model, "-x"), 2);
    cr_assert(strstr(err, "unknown option -x"), "%s", err);
    cr_assert_eq(run(&out, &err, 5, model, "a", "--max-length", "0"), 2);
    cr_assert_eq(run(&out, &err, 3, "/nonexistent", "a"), 1);
    cr_assert(strstr(err, "/nonexistent"), "%s", err);
    cr_assert_eq(out[0], 0, "nothing on out after a failure");
    /* A broken tokenizer_2: one error line naming it, no partial JSON. */
    snprintf(path, sizeof path, "%s/tokenizer_2", model);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(mkdir(path, 0755), 0);
    cr_assert_eq(run(&out, &err, 3, model, "a"), 1);
    cr_assert(strstr(err, "tokenizer_2"), "%s", err);
    cr_assert_eq(out[0], 0, "%s", out);
}
