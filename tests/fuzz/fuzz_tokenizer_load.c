/*
 * fuzz_tokenizer_load.c - libFuzzer target for reading a tokenizer folder (eng_tokenizer_load):
 * tokenizer.json (BPE or Unigram, normalizers including T5's precompiled charsmap,
 * pre-tokenizers, post-processors, added tokens), CLIP's vocab.json + merges.txt, and the
 * tokenizer_config.json / special_tokens_map.json beside them.
 *
 * Input: a first byte choosing the layout (its value modulo 3), then parts separated by the
 * line "@@@@" (SEP below); an empty or missing part is a file left out:
 *   0  tokenizer.json, tokenizer_config.json, special_tokens_map.json, text
 *   1  vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json, text
 *   2  a raw precompiled charsmap blob, text: the blob is base64-encoded into a small Unigram
 *      tokenizer.json (T5's pipeline), so that the trie and its strings are fuzzed directly
 *      rather than through base64 text.
 * The files are written to a scratch folder of this process and loaded from there.
 * Checked on every input: loading fails with a negative ENG_E* code and a message, or gives a
 * tokenizer of the layout's kind whose pad id is inside the vocabulary; then every text (the
 * input's and a few fixed ones with added tokens, accents, full-width and combining characters)
 * encodes into rows of 77, 8 and 1 ids: ENG_EINVAL exactly when the row is shorter than the
 * post-processor's special tokens, else the specials at both ends, every id inside the
 * vocabulary, the padding the pad id, nothing written past the row.
 * TTTD_FUZZ_VERBOSE=1 prints each load's outcome (to see what a seed reaches).
 * Seeds: tests/fuzz/corpus/tokenizer_load/ (tests/fuzz/make_tokenizer_seeds.py writes them).
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/text/tokenizer.h"
#include "engine/text/tokenizer_internal.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SEP "\n@@@@\n"
#define GUARD 0x5A5A5A5A

static const char *const fixed_texts[] = {
    "a photo of a cat, 4k",
    "Hello <|endoftext|> world <pad></s><unk>!",
    "\xef\xbc\xa1\xef\xac\x81 \xe2\x91\xa0 e\xcc\x81\xcc\x80 \xe3\x80\x80 \xe2\x80\xa6",
    "   \t\n  ",
    "",
};

/* The Unigram tokenizer.json of layout 2, around the base64 charsmap. */
static const char unigram_head[] =
    "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":0,\"content\":\"<pad>\",\"special\":true},"
    "{\"id\":1,\"content\":\"</s>\",\"special\":true},{\"id\":2,\"content\":\"<unk>\","
    "\"special\":true}],\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":"
    "\"Precompiled\",\"precompiled_charsmap\":\"";
static const char unigram_tail[] =
    "\"},{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" {2,}\"},\"content\":\" \"}]},"
    "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"WhitespaceSplit\"},"
    "{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"always\","
    "\"split\":true}]},\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":["
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"</s>\","
    "\"type_id\":0}}],\"special_tokens\":{\"</s>\":{\"id\":\"</s>\",\"ids\":[1],\"tokens\":"
    "[\"</s>\"]}}},\"model\":{\"type\":\"Unigram\",\"unk_id\":2,\"vocab\":[[\"<pad>\",0.0],"
    "[\"</s>\",0.0],[\"<unk>\",0.0],[\"\xe2\x96\x81\",-2.0],[\"\xe2\x96\x81" "a\",-3.0],"
    "[\"a\",-4.0],[\"A\",-4.5],[\"fi\",-5.0],[\"1\",-5.0],[\"e\",-5.0],[\"\xcc\x81\",-6.0],"
    "[\"\xe2\x96\x81photo\",-7.0],[\"...\",-6.0],[\"TM\",-6.0],[\"t\",-6.0],[\"o\",-6.0]]}}";

static char *base64(const uint8_t *p, size_t n, size_t *out_n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *s = malloc(4 * ((n + 2) / 3) + 1), *o = s;
    FUZZ_CHECK(s != NULL);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        *o++ = tab[v >> 18 & 63];
        *o++ = tab[v >> 12 & 63];
        *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *out_n = (size_t)(o - s);
    return s;
}

/* Writes part as the file name, or removes the file when the part is absent or empty. */
static void put(const char *name, const uint8_t *at, size_t n, int present)
{
    char path[PATH_MAX];
    fuzz_file(name, present && n ? at : NULL, n, path, sizeof path);
}

static void check_encode(const eng_tokenizer *t, const char *text, int max_len)
{
    int32_t *ids = malloc(((size_t)max_len + 1) * sizeof *ids);
    FUZZ_CHECK(ids != NULL);
    ids[max_len] = GUARD;
    int n_real = -1;
    eng_error err = {0};
    size_t specials = t->n_prefix + t->n_suffix;
    int rc = eng_tokenizer_encode(t, text, ids, max_len, &n_real, &err);
    if ((size_t)max_len < specials || max_len < 1) {
        FUZZ_CHECK(rc == ENG_EINVAL);
    } else {
        FUZZ_CHECK(rc == 0);
        FUZZ_CHECK(n_real >= (int)specials && n_real <= max_len && ids[max_len] == GUARD);
        for (size_t i = 0; i < t->n_prefix; i++)
            FUZZ_CHECK(ids[i] == t->prefix[i]);
        for (size_t i = 0; i < t->n_suffix; i++)
            FUZZ_CHECK(ids[(size_t)n_real - t->n_suffix + i] == t->suffix[i]);
        int32_t vs = eng_tokenizer_vocab_size(t), pad = eng_tokenizer_pad_id(t);
        for (int i = 0; i < max_len; i++) {
            FUZZ_CHECK(ids[i] >= 0 && ids[i] < vs);
            FUZZ_CHECK(i < n_real || ids[i] == pad);
        }
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int layout = data[0] % 3;
    const uint8_t *at[5];
    size_t len[5];
    int n = fuzz_split(data + 1, size - 1, SEP, layout == 2 ? 2 : layout == 0 ? 4 : 5, at, len);
    const uint8_t *text = NULL;
    size_t text_n = 0;

    put("tokenizer.json", NULL, 0, 0);
    put("vocab.json", NULL, 0, 0);
    put("merges.txt", NULL, 0, 0);
    put("tokenizer_config.json", NULL, 0, 0);
    put("special_tokens_map.json", NULL, 0, 0);
    if (layout == 0) {
        /* tokenizer.json is written even when empty: an empty file is a parse error to see. */
        char path[PATH_MAX];
        fuzz_file("tokenizer.json", at[0], len[0], path, sizeof path);
        put("tokenizer_config.json", at[1], len[1], n > 1);
        put("special_tokens_map.json", at[2], len[2], n > 2);
        if (n > 3)
            text = at[3], text_n = len[3];
    } else if (layout == 1) {
        char path[PATH_MAX];
        fuzz_file("vocab.json", at[0], len[0], path, sizeof path);
        fuzz_file("merges.txt", n > 1 ? at[1] : (const uint8_t *)"", n > 1 ? len[1] : 0, path,
                  sizeof path);
        put("tokenizer_config.json", at[2], len[2], n > 2);
        put("special_tokens_map.json", at[3], len[3], n > 3);
        if (n > 4)
            text = at[4], text_n = len[4];
    } else {
        size_t b64n;
        char *b64 = base64(at[0], len[0], &b64n);
        size_t hn = sizeof unigram_head - 1, tn = sizeof unigram_tail - 1;
        char *json = malloc(hn + b64n + tn);
        FUZZ_CHECK(json != NULL);
        memcpy(json, unigram_head, hn);
        memcpy(json + hn, b64, b64n);
        memcpy(json + hn + b64n, unigram_tail, tn);
        char path[PATH_MAX];
        fuzz_file("tokenizer.json", json, hn + b64n + tn, path, sizeof path);
        free(json);
        free(b64);
        if (n > 1)
            text = at[1], text_n = len[1];
    }

    eng_tokenizer *t = NULL;
    eng_error err = {0};
    int rc = eng_tokenizer_load(&t, fuzz_dir(), &err);
    if (getenv("TTTD_FUZZ_VERBOSE"))
        fprintf(stderr, "load: %s\n", rc ? err.msg : "ok");
    if (rc != 0) {
        FUZZ_CHECK(t == NULL);
        FUZZ_CHECK(rc <= ENG_EINVAL && rc >= ENG_ECANCELED && err.code == rc && err.msg[0]);
        return 0;
    }
    FUZZ_CHECK(t != NULL);
    FUZZ_CHECK(eng_tokenizer_kind_of(t) == (layout == 1 ? ENG_TOKENIZER_BPE
                                            : layout == 2 ? ENG_TOKENIZER_UNIGRAM
                                                          : eng_tokenizer_kind_of(t)));
    FUZZ_CHECK(eng_tokenizer_kind_of(t) == ENG_TOKENIZER_BPE ||
               eng_tokenizer_kind_of(t) == ENG_TOKENIZER_UNIGRAM);
    int32_t vs = eng_tokenizer_vocab_size(t);
    FUZZ_CHECK(vs >= 1 && eng_tokenizer_pad_id(t) >= 0 && eng_tokenizer_pad_id(t) < vs);
    FUZZ_CHECK(eng_tokenizer_model_max_length(t) >= 0);

    char *s = malloc(text_n + 1);
    FUZZ_CHECK(s != NULL);
    if (text_n)
        memcpy(s, text, text_n);
    s[text_n] = '\0';
    for (int k = 0; k < 3; k++) {
        static const int rows[3] = {77, 8, 1};
        check_encode(t, s, rows[k]);
        for (size_t i = 0; i < sizeof fixed_texts / sizeof fixed_texts[0]; i++)
            check_encode(t, fixed_texts[i], rows[k]);
    }
    free(s);
    eng_tokenizer_free(t);
    return 0;
}
