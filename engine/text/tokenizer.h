/*
 * tokenizer.h - the text tokenizers of the SD3 pipeline: CLIP byte-level BPE (tokenizer/,
 * tokenizer_2/) and T5 SentencePiece Unigram (tokenizer_3/), read from a model's tokenizer folder.
 *
 * A folder is read the way Hugging Face reads it:
 *   - tokenizer.json (the `tokenizers` serialization): model BPE or Unigram, its normalizer,
 *     pre-tokenizer, post-processor and added tokens are all taken from the file;
 *   - else vocab.json + merges.txt: CLIP BPE with the pipeline transformers' CLIPTokenizer
 *     builds (NFC, whitespace runs to one space, lowercase, the CLIP regex split, byte-level
 *     mapping, "</w>" end-of-word suffix, <|startoftext|> X <|endoftext|>);
 *   - tokenizer_config.json and special_tokens_map.json, when present, add the special tokens
 *     they name (bos/eos/unk/pad, added_tokens_decoder, additional/extra special tokens) and give
 *     the pad token and model_max_length.
 * The ids match transformers 5 (tokenizers 0.23) called as diffusers' SD3 pipeline calls it:
 * padding="max_length", truncation=True, add_special_tokens=True (tests/fixtures/tokenizers/).
 *
 * Text is UTF-8. Invalid UTF-8 is decoded lossily: each maximal ill-formed subsequence becomes
 * U+FFFD, as Rust's String::from_utf8_lossy does (the only way such bytes could reach the Rust
 * tokenizer); a NUL byte ends the text.
 *
 * A loaded tokenizer is immutable: eng_tokenizer_encode may run on several threads at once.
 */
#ifndef TTTD_ENGINE_TOKENIZER_H
#define TTTD_ENGINE_TOKENIZER_H

#include <stdint.h>

#include "engine/core/error.h"

typedef struct eng_tokenizer eng_tokenizer;

typedef enum eng_tokenizer_kind {
    ENG_TOKENIZER_BPE = 1,     /* CLIP (byte-level BPE) */
    ENG_TOKENIZER_UNIGRAM = 2, /* T5 (SentencePiece Unigram) */
} eng_tokenizer_kind;

/*
 * Reads the tokenizer folder dir into *out (NULL on failure). Errors: ENG_ENOTFOUND (no
 * tokenizer.json nor vocab.json + merges.txt; a folder with only spiece.model is
 * ENG_EUNSUPPORTED: convert it with transformers first), ENG_EFORMAT (malformed file, named in
 * the message), ENG_EUNSUPPORTED (a pipeline component or option not implemented, named),
 * ENG_EIO, ENG_ENOMEM.
 */
int eng_tokenizer_load(eng_tokenizer **out, const char *dir, eng_error *err);

/* Frees t; NULL is a no-op. */
void eng_tokenizer_free(eng_tokenizer *t);

eng_tokenizer_kind eng_tokenizer_kind_of(const eng_tokenizer *t);

/* model_max_length from tokenizer_config.json, or 0 when the folder does not give one. */
int eng_tokenizer_model_max_length(const eng_tokenizer *t);

/* The id padding uses (the configured pad token; CLIP default <|endoftext|>, T5 <pad>). */
int32_t eng_tokenizer_pad_id(const eng_tokenizer *t);

/* Vocabulary size including added tokens (one more than the largest id). */
int32_t eng_tokenizer_vocab_size(const eng_tokenizer *t);

/*
 * Tokenizes utf8 into exactly max_len ids: the special tokens of the post-processor around the
 * text's tokens, the text truncated on the right so that the whole fits, then padding with the
 * pad id. *n_real (may be NULL) receives the number of ids before the padding.
 * max_len must be at least the number of special tokens added (2 for CLIP, 1 for T5):
 * ENG_EINVAL otherwise. ENG_ENOMEM when a scratch allocation fails.
 */
int eng_tokenizer_encode(const eng_tokenizer *t, const char *utf8, int32_t *ids, int max_len,
                         int *n_real, eng_error *err);

#endif
