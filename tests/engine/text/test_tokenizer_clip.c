/*
 * test_tokenizer_clip.c - the CLIP BPE tokenizers of SD3.5 (tokenizer/ pads with <|endoftext|>,
 * tokenizer_2/ with "!"), on the real CLIP vocabulary in tests/fixtures/tokenizers/clip_{l,g}:
 * hand-checked ids, every prompt of the corpus against transformers' CLIPTokenizer
 * (expected.json), truncation and padding at other lengths, the tokenizer.json route to the
 * same BPE, and the errors of broken folders.
 */
#include <criterion/criterion.h>

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/text/tokenizer.h"
#include "tests/engine/text/tokenizer_expect.h"
#include "tests/common/test_util.h"

enum { BOS = 49406, EOS = 49407 };

static void expect_ids(eng_tokenizer *t, const char *text, const int32_t *want, int n_want,
                       int max_len, int32_t pad)
{
    int32_t ids[512];
    cr_assert_leq(max_len, 512);
    int n = tx_encode(t, text, ids, max_len);
    cr_assert_eq(n, n_want, "\"%s\": %d ids, want %d", text, n, n_want);
    for (int i = 0; i < max_len; i++)
        cr_assert_eq(ids[i], i < n_want ? want[i] : pad, "\"%s\": id %d is %d, want %d", text, i,
                     ids[i], i < n_want ? want[i] : pad);
}

Test(tokenizer_clip, folder_properties)
{
    eng_tokenizer *l = tx_load("clip_l"), *g = tx_load("clip_g");
    cr_assert_eq(eng_tokenizer_kind_of(l), ENG_TOKENIZER_BPE);
    cr_assert_eq(eng_tokenizer_pad_id(l), EOS);
    cr_assert_eq(eng_tokenizer_pad_id(g), 0);
    cr_assert_eq(eng_tokenizer_model_max_length(l), 77);
    cr_assert_eq(eng_tokenizer_vocab_size(l), 49408);
    eng_tokenizer_free(l);
    eng_tokenizer_free(g);
}

/*
 * Checked by hand in vocab.json: "a</w>" 320, "photo</w>" 1125, "of</w>" 539, "cat</w>" 2368;
 * "hello</w>" 3306, "!!!</w>" 995; "astronaut</w>" 18376.
 */
Test(tokenizer_clip, hand_checked)
{
    eng_tokenizer *l = tx_load("clip_l"), *g = tx_load("clip_g");
    static const int32_t cat[] = {BOS, 320, 1125, 539, 320, 2368, EOS};
    expect_ids(l, "a photo of a cat", cat, 7, 77, EOS);
    expect_ids(l, "  A   Photo\tof a CAT\n", cat, 7, 77, EOS); /* whitespace runs, case */
    expect_ids(g, "a photo of a cat", cat, 7, 77, 0);
    static const int32_t hello_l[] = {BOS, 3306, 995, EOS};
    expect_ids(l, "hello!!!", hello_l, 4, 77, EOS);
    /* tokenizer_2 registers its pad token "!" as a special token: each "!" stands alone. */
    static const int32_t hello_g[] = {BOS, 3306, 0, 0, 0, EOS};
    expect_ids(g, "hello!!!", hello_g, 6, 77, 0);
    static const int32_t empty[] = {BOS, EOS};
    expect_ids(l, "", empty, 2, 77, EOS);
    /* A literal special token in the text is that token. */
    static const int32_t eot[] = {BOS, 320, EOS, 320, EOS};
    expect_ids(l, "a<|endoftext|>a", eot, 5, 77, EOS);
    eng_tokenizer_free(l);
    eng_tokenizer_free(g);
}

Test(tokenizer_clip, corpus_matches_transformers)
{
    json_t *doc = tx_expected();
    static const char *const names[] = {"clip_l", "clip_g"};
    for (int k = 0; k < 2; k++) {
        eng_tokenizer *t = tx_load(names[k]);
        int32_t pad = (int32_t)json_integer_value(json_object_get(
            json_object_get(json_object_get(doc, "tokenizers"), names[k]), "pad_id"));
        cr_assert_eq(pad, eng_tokenizer_pad_id(t));
        int checked;
        int bad = tx_compare_all(t, doc, names[k], 77, pad, &checked);
        cr_assert_geq(checked, 300, "%s: only %d cases", names[k], checked);
        cr_assert_eq(bad, 0, "%s: %d of %d prompts differ from transformers", names[k], bad,
                     checked);
        eng_tokenizer_free(t);
    }
    json_decref(doc);
}

/* At a shorter max_len the row is bos, the first max_len - 2 text ids, eos (transformers cuts
 * the same way). */
Test(tokenizer_clip, truncation_at_other_lengths)
{
    json_t *doc = tx_expected();
    eng_tokenizer *t = tx_load("clip_l");
    json_t *cases = json_object_get(doc, "cases"), *c;
    size_t i;
    int tested = 0;
    json_array_foreach(cases, i, c) {
        json_t *want = json_object_get(c, "clip_l");
        size_t nw = json_array_size(want);
        if (nw < 6 || nw == 77)
            continue; /* the full text ids are known only when the 77 did not cut them */
        char *text = tx_case_text(c);
        for (int m = 2; m <= (int)nw; m += 3) {
            int32_t ids[77];
            int n = tx_encode(t, text, ids, m);
            cr_assert_eq(n, m, "case %zu at %d", i, m);
            cr_assert_eq(ids[0], BOS);
            cr_assert_eq(ids[m - 1], EOS, "case %zu at %d", i, m);
            for (int k = 1; k < m - 1; k++)
                cr_assert_eq(ids[k], json_integer_value(json_array_get(want, (size_t)k)),
                             "case %zu at max_len %d, id %d", i, m, k);
        }
        free(text);
        tested++;
    }
    cr_assert_geq(tested, 100);
    eng_tokenizer_free(t);
    json_decref(doc);
}

Test(tokenizer_clip, max_len_limits)
{
    eng_tokenizer *t = tx_load("clip_l");
    int32_t ids[4] = {7, 7, 7, 7};
    eng_error err = {0};
    int n = -1;
    cr_assert_eq(eng_tokenizer_encode(t, "a cat", ids, 1, &n, &err), ENG_EINVAL);
    cr_assert(strstr(err.msg, "max_len"), "%s", err.msg);
    cr_assert_eq(eng_tokenizer_encode(t, "a cat", ids, 2, &n, &err), 0);
    cr_assert_eq(n, 2);
    cr_assert(ids[0] == BOS && ids[1] == EOS && ids[2] == 7, "wrote past max_len");
    cr_assert_eq(eng_tokenizer_encode(t, NULL, ids, 4, &n, &err), ENG_EINVAL);
    eng_tokenizer_free(t);
}

/* A loaded tokenizer is read-only, so threads may share it: four threads encode the whole corpus
 * at once (CLIP and T5) and each must still get transformers' ids. */
typedef struct job {
    eng_tokenizer *t;
    json_t *doc;
    const char *key;
    int max_len;
    int32_t pad;
    int bad, checked;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    j->bad = tx_compare_all(j->t, j->doc, j->key, j->max_len, j->pad, &j->checked);
    return NULL;
}

Test(tokenizer_clip, concurrent_encoding)
{
    json_t *doc = tx_expected();
    eng_tokenizer *l = tx_load("clip_l"), *t5 = tx_load("t5");
    job jobs[4] = {{l, doc, "clip_l", 77, EOS, 0, 0}, {t5, doc, "t5", 256, 0, 0, 0},
                   {l, doc, "clip_l", 77, EOS, 0, 0}, {t5, doc, "t5", 256, 0, 0, 0}};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, run_job, &jobs[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(jobs[i].bad, 0, "thread %d: %d of %d differ", i, jobs[i].bad, jobs[i].checked);
        cr_assert_geq(jobs[i].checked, 300);
    }
    eng_tokenizer_free(l);
    eng_tokenizer_free(t5);
    json_decref(doc);
}

/* ---- the same BPE from a tokenizer.json, as the tokenizers library would save it ---- */

static char tmpdir[64];

static void make_tmp(void)
{
    strcpy(tmpdir, "/tmp/tttd_tok_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void drop_tmp(void)
{
    tu_rmtree(tmpdir);
}

static const char *tmp_at(const char *name)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

static void put(const char *name, const char *text)
{
    FILE *f = fopen(tmp_at(name), "wb");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* The pipeline transformers' CLIPTokenizer builds, as JSON; vocab and merges from clip_l. */
static json_t *clip_tokenizer_json(void)
{
    json_error_t je;
    json_t *root = json_loads(
        "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null,"
        " \"added_tokens\": [{\"id\": 49406, \"content\": \"<|startoftext|>\","
        "   \"single_word\": false, \"lstrip\": false, \"rstrip\": false,"
        "   \"normalized\": true, \"special\": true},"
        "  {\"id\": 49407, \"content\": \"<|endoftext|>\", \"single_word\": false,"
        "   \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}],"
        " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"},"
        "   {\"type\": \"Replace\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"content\": \" \"},"
        "   {\"type\": \"Lowercase\"}]},"
        " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\","
        "   \"pattern\": {\"Regex\": \"<\\\\|startoftext\\\\|>|<\\\\|endoftext\\\\|>|"
        "'s|'t|'re|'ve|'m|'ll|'d|[\\\\p{L}]+|[\\\\p{N}]|[^\\\\s\\\\p{L}\\\\p{N}]+\"},"
        "   \"behavior\": \"Removed\", \"invert\": true}, {\"type\": \"ByteLevel\","
        "   \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}]},"
        " \"post_processor\": {\"type\": \"RobertaProcessing\","
        "   \"sep\": [\"<|endoftext|>\", 49407], \"cls\": [\"<|startoftext|>\", 49406],"
        "   \"trim_offsets\": false, \"add_prefix_space\": false},"
        " \"decoder\": {\"type\": \"ByteLevel\"},"
        " \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": \"<|endoftext|>\","
        "   \"continuing_subword_prefix\": \"\", \"end_of_word_suffix\": \"</w>\","
        "   \"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": false}}",
        0, &je);
    cr_assert_not_null(root, "%s", je.text);
    json_t *model = json_object_get(root, "model");
    json_t *vocab = json_load_file(tx_path("clip_l/vocab.json"), 0, &je);
    cr_assert_not_null(vocab, "%s", je.text);
    json_object_set_new(model, "vocab", vocab);
    json_t *merges = json_array();
    FILE *f = fopen(tx_path("clip_l/merges.txt"), "r");
    cr_assert_not_null(f);
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (line[0] && strncmp(line, "#version", 8) != 0)
            json_array_append_new(merges, json_string(line));
    }
    fclose(f);
    json_object_set_new(model, "merges", merges);
    return root;
}

Test(tokenizer_clip, tokenizer_json_gives_the_same_ids, .init = make_tmp, .fini = drop_tmp)
{
    json_t *root = clip_tokenizer_json();
    cr_assert_eq(json_dump_file(root, tmp_at("tokenizer.json"), JSON_COMPACT), 0);
    json_decref(root);
    put("tokenizer_config.json", "{\"model_max_length\": 77, \"pad_token\": \"<|endoftext|>\"}");
    eng_tokenizer *t = NULL;
    eng_error err = {0};
    cr_assert_eq(eng_tokenizer_load(&t, tmpdir, &err), 0, "%s", err.msg);
    json_t *doc = tx_expected();
    int checked;
    int bad = tx_compare_all(t, doc, "clip_l", 77, EOS, &checked);
    cr_assert_eq(bad, 0, "%d of %d prompts differ", bad, checked);
    json_decref(doc);
    eng_tokenizer_free(t);
}

/* Merges given as [left, right] pairs (newer tokenizers files) read the same. */
Test(tokenizer_clip, merges_as_pairs, .init = make_tmp, .fini = drop_tmp)
{
    json_t *root = clip_tokenizer_json();
    json_t *merges = json_object_get(json_object_get(root, "model"), "merges"), *m;
    size_t i;
    json_array_foreach(merges, i, m) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s", json_string_value(m));
        char *sp = strchr(buf, ' ');
        cr_assert_not_null(sp);
        *sp = 0;
        json_array_set_new(merges, i, json_pack("[ss]", buf, sp + 1));
    }
    cr_assert_eq(json_dump_file(root, tmp_at("tokenizer.json"), JSON_COMPACT), 0);
    json_decref(root);
    eng_tokenizer *t = NULL;
    eng_error err = {0};
    cr_assert_eq(eng_tokenizer_load(&t, tmpdir, &err), 0, "%s", err.msg);
    static const int32_t cat[] = {BOS, 320, 1125, 539, 320, 2368, EOS};
    expect_ids(t, "A photo of a cat", cat, 7, 20, EOS);
    eng_tokenizer_free(t);
}

/* ---- broken folders ---- */

static int load_err(eng_error *err)
{
    eng_tokenizer *t = NULL;
    int rc = eng_tokenizer_load(&t, tmpdir, err);
    cr_assert_null(t);
    return rc;
}

Test(tokenizer_clip, errors, .init = make_tmp, .fini = drop_tmp)
{
    eng_error err = {0};
    eng_tokenizer *t = NULL;
    cr_assert_eq(eng_tokenizer_load(&t, "/nonexistent/tokenizer", &err), ENG_ENOTFOUND);
    cr_assert_null(t);
    cr_assert_eq(load_err(&err), ENG_ENOTFOUND, "%s", err.msg);
    put("spiece.model", "x");
    cr_assert_eq(load_err(&err), ENG_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "spiece.model"), "%s", err.msg);
    put("vocab.json", "{\"a\": 0, \"b\": 1, \"ab\": 2, \"a</w>\": 3, \"b</w>\": 4, \"ab</w>\": 5,"
                      " \"<|startoftext|>\": 6, \"<|endoftext|>\": 7");
    put("merges.txt", "#version: 0.2\na b</w>\n");
    cr_assert_eq(load_err(&err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, "vocab.json"), "%s", err.msg);
    put("vocab.json", "{\"a\": 0, \"b\": 1, \"ab\": 2, \"a</w>\": 3, \"b</w>\": 4, \"ab</w>\": 5,"
                      " \"<|startoftext|>\": 6, \"<|endoftext|>\": 7}");
    put("merges.txt", "#version: 0.2\na c</w>\n");
    cr_assert_eq(load_err(&err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, "merges.txt") && strstr(err.msg, "missing"), "%s", err.msg);
    put("merges.txt", "#version: 0.2\na b c\n");
    cr_assert_eq(load_err(&err), ENG_EFORMAT);
    /* A tiny but valid BPE: "ab" merges to "ab</w>". */
    put("merges.txt", "#version: 0.2\na b</w>\n");
    cr_assert_eq(eng_tokenizer_load(&t, tmpdir, &err), 0, "%s", err.msg);
    static const int32_t ab[] = {6, 5, 3, 7};
    expect_ids(t, "AB a", ab, 4, 6, 7);
    eng_tokenizer_free(t);
    /* A pad token the vocabulary lacks is appended after it, as transformers does. */
    put("tokenizer_config.json", "{\"pad_token\": \"<pad>\"}");
    cr_assert_eq(eng_tokenizer_load(&t, tmpdir, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_tokenizer_pad_id(t), 8);
    cr_assert_eq(eng_tokenizer_vocab_size(t), 9);
    eng_tokenizer_free(t);
    put("tokenizer_config.json", "{\"pad_token\": 5}");
    cr_assert_eq(load_err(&err), ENG_EFORMAT);
    put("tokenizer_config.json", "{\"bos_token\": \"<s>\"");
    cr_assert_eq(load_err(&err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, "tokenizer_config.json"), "%s", err.msg);
    unlink(tmp_at("tokenizer_config.json"));
    put("tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []},"
                          " \"normalizer\": {\"type\": \"NFKD\"}}");
    cr_assert_eq(load_err(&err), ENG_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "NFKD") && strstr(err.msg, "tokenizer.json"), "%s", err.msg);
    put("tokenizer.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}");
    cr_assert_eq(load_err(&err), ENG_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "WordPiece"), "%s", err.msg);
}
