/*
 * test_tokenizer_t5.c - the T5 SentencePiece Unigram tokenizer on the small test tokenizer of
 * tests/fixtures/tokenizers/t5 (trained by tools/reference/make_tokenizer_fixtures.py with the
 * real nmt_nfkc normalization): hand-checked pieces, every corpus prompt against transformers'
 * T5TokenizerFast at SD3's 256 tokens, equivalent tokenizer.json layouts of other tokenizers
 * versions, unknown characters, truncation, and malformed files.
 */
#include <criterion/criterion.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/text/tokenizer.h"
#include "tests/engine/text/tokenizer_expect.h"
#include "tests/common/test_util.h"

enum { PAD = 0, EOS = 1, UNK = 2, META = 3 /* "▁" */ };

static void expect_ids(eng_tokenizer *t, const char *text, const int32_t *want, int n_want)
{
    int32_t ids[256];
    int n = tx_encode(t, text, ids, 256);
    cr_assert_eq(n, n_want, "\"%s\": %d ids, want %d", text, n, n_want);
    for (int i = 0; i < 256; i++)
        cr_assert_eq(ids[i], i < n_want ? want[i] : PAD, "\"%s\": id %d is %d, want %d", text, i,
                     ids[i], i < n_want ? want[i] : PAD);
}

/* Both texts give the same ids (checks normalization without spelling ids out). */
static void expect_same(eng_tokenizer *t, const char *a, const char *b)
{
    int32_t ia[256], ib[256];
    int na = tx_encode(t, a, ia, 256), nb = tx_encode(t, b, ib, 256);
    cr_assert_eq(na, nb, "\"%s\" vs \"%s\"", a, b);
    cr_assert_eq(memcmp(ia, ib, sizeof ia), 0, "\"%s\" vs \"%s\"", a, b);
}

Test(tokenizer_t5, folder_properties)
{
    eng_tokenizer *t = tx_load("t5");
    cr_assert_eq(eng_tokenizer_kind_of(t), ENG_TOKENIZER_UNIGRAM);
    cr_assert_eq(eng_tokenizer_pad_id(t), PAD);
    cr_assert_eq(eng_tokenizer_model_max_length(t), 512);
    cr_assert_eq(eng_tokenizer_vocab_size(t), 2100); /* 2000 pieces + 100 <extra_id_N> */
    eng_tokenizer_free(t);
}

/*
 * Checked in tokenizer.json: "▁a" 73, "▁photo" 155, "▁of" 71, "▁cat" 122, "▁" 3, "A" 1986,
 * "▁fi" 751, "ne" 382; <unk> 2, </s> 1; <extra_id_0> 2099, <extra_id_99> 2000.
 */
Test(tokenizer_t5, hand_checked)
{
    eng_tokenizer *t = tx_load("t5");
    static const int32_t cat[] = {73, 155, 71, 73, 122, EOS};
    expect_ids(t, "a photo of a cat", cat, 6);
    expect_ids(t, "  a  photo\tof\na cat  ", cat, 6); /* whitespace only separates */
    static const int32_t upper[] = {META, 1986, 155, 71, 73, 122, EOS};
    expect_ids(t, "A photo of a cat", upper, 7);
    static const int32_t empty[] = {EOS};
    expect_ids(t, "", empty, 1);
    expect_ids(t, " \t\n ", empty, 1);
    /* Characters the vocabulary lacks are <unk>; a run of them is one <unk>. */
    static const int32_t unk[] = {122, META, UNK, EOS};
    expect_ids(t, "cat \xe7\x8c\xab", unk, 4);
    expect_ids(t, "cat \xe7\x8c\xab\xe7\x8b\x97\xe7\x8c\xab", unk, 4);
    /* Special tokens in the text. */
    static const int32_t sp[] = {2099, EOS, 2000, EOS};
    expect_ids(t, "<extra_id_0></s><extra_id_99>", sp, 4);
    eng_tokenizer_free(t);
}

/* The Precompiled (nmt_nfkc) normalizer: NFKC folding, per grapheme cluster. */
Test(tokenizer_t5, precompiled_normalizer)
{
    eng_tokenizer *t = tx_load("t5");
    static const int32_t fine[] = {751, 382, EOS};
    expect_ids(t, "\xef\xac\x81ne", fine, 3);                                    /* "ﬁne" */
    expect_same(t, "\xef\xbc\xa1\xef\xbc\xa2\xef\xbc\xa3", "ABC");               /* fullwidth */
    expect_same(t, "cafe\xcc\x81", "caf\xc3\xa9");                               /* e + U+0301 */
    expect_same(t, "\xe2\x84\xab", "\xc3\x85");                                  /* Angstrom sign */
    /* e + U+0301 + U+0302 is one cluster of 5 bytes: its first prefix in the map ("é") stands for
     * the whole cluster, so the circumflex disappears, as in tokenizers (sentencepiece keeps
     * it). */
    expect_same(t, "e\xcc\x81\xcc\x82", "\xc3\xa9");
    eng_tokenizer_free(t);
}

Test(tokenizer_t5, corpus_matches_transformers)
{
    json_t *doc = tx_expected();
    eng_tokenizer *t = tx_load("t5");
    int checked;
    int bad = tx_compare_all(t, doc, "t5", 256, PAD, &checked);
    cr_assert_geq(checked, 300, "only %d cases", checked);
    cr_assert_eq(bad, 0, "%d of %d prompts differ from transformers", bad, checked);
    /* Where the file's own pipeline and transformers differed, the file is what we implement. */
    bad = tx_compare_all(t, doc, "t5_file", 256, PAD, &checked);
    cr_assert_eq(bad, 0, "%d of %d prompts differ from tokenizers", bad, checked);
    eng_tokenizer_free(t);
    json_decref(doc);
}

Test(tokenizer_t5, truncation)
{
    eng_tokenizer *t = tx_load("t5");
    char text[4096] = "";
    for (int i = 0; i < 400; i++)
        strcat(text, "a ");
    int32_t ids[256];
    int n = tx_encode(t, text, ids, 256);
    cr_assert_eq(n, 256);
    for (int i = 0; i < 255; i++)
        cr_assert_eq(ids[i], 73);
    cr_assert_eq(ids[255], EOS);
    n = tx_encode(t, text, ids, 1);
    cr_assert(n == 1 && ids[0] == EOS);
    eng_error err = {0};
    cr_assert_eq(eng_tokenizer_encode(t, text, ids, 0, &n, &err), ENG_EINVAL);
    eng_tokenizer_free(t);
}

/* ---- other layouts of tokenizer.json ---- */

static char tmpdir[64];

static void make_tmp(void)
{
    strcpy(tmpdir, "/tmp/tttd_t5_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void drop_tmp(void)
{
    tu_rmtree(tmpdir);
}

static json_t *fixture_json(void)
{
    json_error_t je;
    json_t *root = json_load_file(tx_path("t5/tokenizer.json"), 0, &je);
    cr_assert_not_null(root, "%s", je.text);
    return root;
}

static int load_json_tok(json_t *root, eng_tokenizer **t, eng_error *err)
{
    char path[128];
    snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir);
    cr_assert_eq(json_dump_file(root, path, JSON_COMPACT), 0);
    json_decref(root);
    *t = NULL;
    return eng_tokenizer_load(t, tmpdir, err);
}

/*
 * Older conversions (the SD3.5 tokenizer_3 files among them) wrap the charsmap in a Sequence with
 * Replace(" {2,}", " ") and write Metaspace with add_prefix_space; newer ones strip and replace
 * runs with "▁". On every corpus prompt all must give transformers' ids.
 */
Test(tokenizer_t5, equivalent_layouts, .init = make_tmp, .fini = drop_tmp)
{
    json_t *doc = tx_expected();
    for (int variant = 0; variant < 2; variant++) {
        json_t *root = fixture_json();
        json_t *pre = json_object_get(root, "normalizer");
        json_t *seq = json_pack("{s:s, s:[O, {s:s, s:{s:s}, s:s}]}", "type", "Sequence",
                                "normalizers", pre, "type", "Replace", "pattern", "Regex",
                                variant == 0 ? " {2,}" : "\\s+", "content",
                                variant == 0 ? " " : "\xe2\x96\x81");
        if (variant == 1)
            json_array_insert_new(json_object_get(seq, "normalizers"), 1,
                                  json_pack("{s:s, s:b, s:b}", "type", "Strip", "strip_left", 0,
                                            "strip_right", 1));
        json_object_set_new(root, "normalizer", seq);
        if (variant == 0)
            json_object_set_new(root, "pre_tokenizer",
                                json_pack("{s:s, s:[{s:s}, {s:s, s:s, s:s, s:b}]}", "type",
                                          "Sequence", "pretokenizers", "type", "WhitespaceSplit",
                                          "type", "Metaspace", "replacement", "\xe2\x96\x81",
                                          "str_rep", "\xe2\x96\x81", "add_prefix_space", 1));
        eng_tokenizer *t;
        eng_error err = {0};
        cr_assert_eq(load_json_tok(root, &t, &err), 0, "%s", err.msg);
        int checked;
        int bad = tx_compare_all(t, doc, "t5", 256, PAD, &checked);
        cr_assert_eq(bad, 0, "variant %d: %d of %d prompts differ", variant, bad, checked);
        eng_tokenizer_free(t);
    }
    json_decref(doc);
}

/* Metaspace without WhitespaceSplit keeps one "▁" per extra space; prepend_scheme "first" only
 * prefixes the start of the text. */
Test(tokenizer_t5, metaspace_alone, .init = make_tmp, .fini = drop_tmp)
{
    json_t *root = fixture_json();
    json_object_set_new(root, "pre_tokenizer",
                        json_pack("{s:s, s:s, s:s, s:b}", "type", "Metaspace", "replacement",
                                  "\xe2\x96\x81", "prepend_scheme", "first", "split", 1));
    eng_tokenizer *t;
    eng_error err = {0};
    cr_assert_eq(load_json_tok(root, &t, &err), 0, "%s", err.msg);
    static const int32_t two[] = {73, META, 122, EOS}; /* "▁a" "▁" "▁cat" */
    expect_ids(t, "a  cat", two, 4);
    static const int32_t after_special[] = {EOS, 1993, EOS}; /* "b" keeps no "▁" after </s> */
    expect_ids(t, "</s>b", after_special, 3);
    eng_tokenizer_free(t);
}

Test(tokenizer_t5, malformed, .init = make_tmp, .fini = drop_tmp)
{
    eng_tokenizer *t;
    eng_error err = {0};
    json_t *root = fixture_json();
    json_object_set_new(json_object_get(root, "normalizer"), "precompiled_charsmap",
                        json_string("not base64!"));
    cr_assert_eq(load_json_tok(root, &t, &err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, "base64"), "%s", err.msg);
    /* A trie size larger than the blob. */
    root = fixture_json();
    json_object_set_new(json_object_get(root, "normalizer"), "precompiled_charsmap",
                        json_string("/////wAAAAA="));
    cr_assert_eq(load_json_tok(root, &t, &err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, "trie"), "%s", err.msg);
    /* A one-unit trie whose root points nowhere: loads, and maps nothing (no read outside). */
    root = fixture_json();
    json_object_set_new(json_object_get(root, "normalizer"), "precompiled_charsmap",
                        json_string("BAAAAP///38="));
    cr_assert_eq(load_json_tok(root, &t, &err), 0, "%s", err.msg);
    static const int32_t cat[] = {73, 155, 71, 73, 122, EOS};
    expect_ids(t, "a photo of a cat", cat, 6);
    eng_tokenizer_free(t);
    root = fixture_json();
    json_object_set_new(json_object_get(root, "model"), "unk_id", json_integer(5000));
    cr_assert_eq(load_json_tok(root, &t, &err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, "unk_id"), "%s", err.msg);
    root = fixture_json();
    json_array_set_new(json_object_get(json_object_get(root, "model"), "vocab"), 5,
                       json_pack("[s]", "x"));
    cr_assert_eq(load_json_tok(root, &t, &err), ENG_EFORMAT);
    cr_assert(strstr(err.msg, "vocab entry 5"), "%s", err.msg);
    root = fixture_json();
    json_object_set_new(root, "pre_tokenizer", json_pack("{s:s}", "type", "BertPreTokenizer"));
    cr_assert_eq(load_json_tok(root, &t, &err), ENG_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "BertPreTokenizer"), "%s", err.msg);
    root = fixture_json();
    json_object_set_new(json_object_get(root, "normalizer"), "type", json_string("Replace"));
    json_object_set_new(json_object_get(root, "normalizer"), "content", json_string(""));
    json_object_set_new(json_object_get(root, "normalizer"), "pattern",
                        json_pack("{s:s}", "Regex", "(a|b)+"));
    cr_assert_eq(load_json_tok(root, &t, &err), ENG_EUNSUPPORTED);
    cr_assert(strstr(err.msg, "(a|b)+"), "%s", err.msg);
}
