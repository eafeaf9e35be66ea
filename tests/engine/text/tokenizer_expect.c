/*
 * tokenizer_expect.c - see tokenizer_expect.h.
 */
#include "tests/engine/text/tokenizer_expect.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *tx_root(void)
{
    const char *r = getenv("TTTD_TOKENIZER_FIXTURES");
    return r && *r ? r : "tests/fixtures/tokenizers";
}

const char *tx_path(const char *name)
{
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/%s", tx_root(), name);
    return buf;
}

eng_tokenizer *tx_load(const char *name)
{
    eng_tokenizer *t = NULL;
    eng_error err = {0};
    int rc = eng_tokenizer_load(&t, tx_path(name), &err);
    cr_assert_eq(rc, 0, "loading %s: %s", name, err.msg);
    cr_assert_not_null(t);
    return t;
}

json_t *tx_expected(void)
{
    json_error_t je;
    json_t *doc = json_load_file(tx_path("expected.json"), 0, &je);
    cr_assert_not_null(doc, "%s: %s (run tools/reference/make_tokenizer_fixtures.py)",
                       tx_path("expected.json"), je.text);
    return doc;
}

char *tx_case_text(json_t *c)
{
    const char *hex = json_string_value(json_object_get(c, "hex"));
    if (!hex) {
        const char *t = json_string_value(json_object_get(c, "text"));
        cr_assert_not_null(t, "a case without text");
        return strdup(t);
    }
    size_t n = strlen(hex) / 2;
    char *b = malloc(n + 1);
    cr_assert_not_null(b);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        cr_assert_eq(sscanf(hex + 2 * i, "%2x", &v), 1, "bad hex in expected.json");
        b[i] = (char)v;
    }
    b[n] = 0;
    return b;
}

int tx_encode(eng_tokenizer *tok, const char *text, int32_t *ids, int max_len)
{
    eng_error err = {0};
    int n_real = -1;
    int rc = eng_tokenizer_encode(tok, text, ids, max_len, &n_real, &err);
    cr_assert_eq(rc, 0, "encode \"%s\": %s", text, err.msg);
    return n_real;
}

int tx_compare_all(eng_tokenizer *tok, json_t *doc, const char *key, int max_len, int32_t pad_id,
                   int *checked)
{
    json_t *cases = json_object_get(doc, "cases");
    int32_t *ids = malloc((size_t)max_len * sizeof *ids);
    cr_assert(json_is_array(cases) && ids);
    int bad = 0;
    *checked = 0;
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        json_t *want = json_object_get(c, key);
        if (!json_is_array(want))
            continue;
        char *text = tx_case_text(c);
        int n_real = tx_encode(tok, text, ids, max_len);
        size_t nw = json_array_size(want);
        int ok = n_real == (int)nw;
        for (int k = 0; k < max_len && ok; k++) {
            int32_t w = pad_id;
            if ((size_t)k < nw)
                w = (int32_t)json_integer_value(json_array_get(want, (size_t)k));
            ok = ids[k] == w;
        }
        (*checked)++;
        if (!ok && ++bad <= 8) {
            fprintf(stderr, "%s case %zu %s\n  want(%zu):", key, i,
                    json_string_value(json_object_get(c, "text")), nw);
            for (size_t k = 0; k < nw && k < 40; k++)
                fprintf(stderr, " %lld", (long long)json_integer_value(json_array_get(want, k)));
            fprintf(stderr, "\n  got (%d):", n_real);
            for (int k = 0; k < n_real && k < 40; k++)
                fprintf(stderr, " %d", ids[k]);
            fprintf(stderr, "\n");
        }
        free(text);
    }
    free(ids);
    return bad;
}
