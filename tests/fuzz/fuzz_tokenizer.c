/*
 * fuzz_tokenizer.c - libFuzzer target for the tokenizers: arbitrary bytes (invalid UTF-8, NUL,
 * control characters, huge words) as a prompt for the CLIP (tokenizer_2 flavour: "!" is an added
 * token) and T5 fixture tokenizers.
 *
 * The tokenizers are loaded once from $TTTD_TOKENIZER_FIXTURES or tests/fixtures/tokenizers
 * (make fuzz runs from the repository root). The first input byte picks a row length 0..63
 * besides the pipeline's 77 / 256, so short rows and the max_len check are exercised too.
 * Checked on every input: encode succeeds (or refuses a too-short row with ENG_EINVAL and
 * nothing else), the row starts and ends with the post-processor's specials, every id is inside
 * the vocabulary, the padding is the pad id, and nothing is written past max_len.
 * Seeds: tests/fuzz/corpus/tokenizer/ (tools/reference/tokenizer_corpus.py writes them).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/text/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static eng_tokenizer *clip, *t5;

static eng_tokenizer *load(const char *name)
{
    const char *root = getenv("TTTD_TOKENIZER_FIXTURES");
    char path[1024];
    eng_error err = {0};
    eng_tokenizer *t = NULL;
    snprintf(path, sizeof path, "%s/%s", root && *root ? root : "tests/fixtures/tokenizers", name);
    if (eng_tokenizer_load(&t, path, &err) != 0) {
        fprintf(stderr, "fuzz_tokenizer: %s (run from the repository root or set "
                        "TTTD_TOKENIZER_FIXTURES)\n", err.msg);
        abort();
    }
    return t;
}

/* The guard after the row must survive. */
#define GUARD 0x5A5A5A5A

static void check(eng_tokenizer *t, const char *text, int max_len, int32_t first, int32_t last)
{
    int32_t *ids = malloc(((size_t)max_len + 1) * sizeof *ids);
    if (!ids)
        return;
    ids[max_len] = GUARD;
    int n_real = -1;
    eng_error err = {0};
    int min_len = first >= 0 ? 2 : 1;
    int rc = eng_tokenizer_encode(t, text, ids, max_len, &n_real, &err);
    if (max_len < min_len) {
        if (rc != ENG_EINVAL)
            abort();
    } else {
        if (rc != 0 || n_real < min_len || n_real > max_len || ids[max_len] != GUARD)
            abort();
        if ((first >= 0 && ids[0] != first) || ids[n_real - 1] != last)
            abort();
        int32_t vs = eng_tokenizer_vocab_size(t), pad = eng_tokenizer_pad_id(t);
        for (int i = 0; i < max_len; i++)
            if (ids[i] < 0 || ids[i] >= vs || (i >= n_real && ids[i] != pad))
                abort();
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!clip) {
        clip = load("clip_g");
        t5 = load("t5");
    }
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0; /* an embedded NUL simply ends the prompt */
    int short_len = size ? data[0] & 63 : 0;
    check(clip, text, 77, 49406, 49407);
    check(clip, text, short_len, 49406, 49407);
    check(t5, text, 256, -1, 1);
    check(t5, text, short_len, -1, 1);
    free(text);
    return 0;
}
