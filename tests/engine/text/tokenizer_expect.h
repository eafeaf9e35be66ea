/*
 * tokenizer_expect.h - test helpers for the tokenizer tests: the fixture folders and
 * tests/fixtures/tokenizers/expected.json (written by tools/reference/make_tokenizer_fixtures.py
 * with transformers), compared case by case against eng_tokenizer_encode.
 */
#ifndef TTTD_TESTS_TOKENIZER_EXPECT_H
#define TTTD_TESTS_TOKENIZER_EXPECT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/text/tokenizer.h"

/* The fixture root: $TTTD_TOKENIZER_FIXTURES, else tests/fixtures/tokenizers. */
const char *tx_root(void);
/* tx_root()/name in a static buffer (one at a time). */
const char *tx_path(const char *name);
/* Loads tx_root()/name or fails the test. */
eng_tokenizer *tx_load(const char *name);
/* expected.json, parsed (fails the test when it is missing). */
json_t *tx_expected(void);

/* Case i's input bytes (hex-decoded when the case has "hex"), NUL-terminated; free() it. */
char *tx_case_text(json_t *c);

/*
 * Encodes every case with tok at max_len and compares with the case's array named key padded
 * with pad_id; also checks n_real. Prints the first few mismatches and returns their count.
 * Cases without key are skipped; *checked receives how many were compared.
 */
int tx_compare_all(eng_tokenizer *tok, json_t *doc, const char *key, int max_len, int32_t pad_id,
                   int *checked);

/* Encodes text at max_len; fails the test on an error. Returns n_real. */
int tx_encode(eng_tokenizer *tok, const char *text, int32_t *ids, int max_len);

#endif
