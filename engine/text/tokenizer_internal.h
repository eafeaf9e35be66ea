/*
 * tokenizer_internal.h - what the tokenizer files share (engine/tokenizer*.c only; the public API
 * is engine/text/tokenizer.h).
 *
 * A tokenizer is the Hugging Face pipeline: added tokens are cut out of the text, the rest is
 * normalized (tok_norm), cut into words (tok_pretok), each word goes through the model (BPE or
 * Unigram), and the post-processor's special tokens go around the result.
 *
 * Encoding works on lists of pieces: UTF-8 strings in a per-call arena, each either plain text
 * or an added token already resolved to its id. Nothing here is shared between calls, so a
 * loaded tokenizer stays read-only.
 */
#ifndef TTTD_ENGINE_TOKENIZER_INTERNAL_H
#define TTTD_ENGINE_TOKENIZER_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/core/error.h"
#include "engine/text/tokenizer.h"

/* ---- memory ---- */

/* A bump allocator: many small allocations, one free. */
typedef struct tok_arena_block tok_arena_block;
typedef struct tok_arena {
    tok_arena_block *head;
} tok_arena;

void *tok_arena_alloc(tok_arena *a, size_t n);
char *tok_arena_strndup(tok_arena *a, const char *s, size_t n);
void tok_arena_free(tok_arena *a);

/* A growable byte string (always NUL-terminated when p != NULL). */
typedef struct tok_buf {
    char *p;
    size_t n, cap;
} tok_buf;

/* Append bytes / one code point as UTF-8. 0 or ENG_ENOMEM, as every container here. */
int tok_buf_put(tok_buf *b, const void *s, size_t n);
int tok_buf_put_cp(tok_buf *b, uint32_t cp);
void tok_buf_free(tok_buf *b);

/* string -> int32; a later put of the same key replaces the value (as Rust's HashMap::insert). */
typedef struct tok_strmap_slot {
    const char *key; /* NULL: empty */
    uint32_t klen;
    uint32_t hash;
    int32_t val;
} tok_strmap_slot;

typedef struct tok_strmap {
    tok_strmap_slot *slots;
    size_t cap, len;
} tok_strmap;

/* key must outlive the map (keep it in an arena). Returns 0 or ENG_ENOMEM. */
int tok_strmap_put(tok_strmap *m, const char *key, size_t klen, int32_t val);
/* 1 and *val when found, else 0. */
int tok_strmap_get(const tok_strmap *m, const char *key, size_t klen, int32_t *val);
void tok_strmap_free(tok_strmap *m);

/* uint64 -> (int32, int32); keys are never UINT64_MAX. */
typedef struct tok_u64map_slot {
    uint64_t key;
    int32_t a, b;
} tok_u64map_slot;

typedef struct tok_u64map {
    tok_u64map_slot *slots;
    size_t cap, len;
} tok_u64map;

/* 0 or ENG_ENOMEM. */
int tok_u64map_put(tok_u64map *m, uint64_t key, int32_t a, int32_t b);
const tok_u64map_slot *tok_u64map_get(const tok_u64map *m, uint64_t key);
void tok_u64map_free(tok_u64map *m);

/* ---- pieces ---- */

typedef struct tok_piece {
    const char *s; /* UTF-8, in the call's arena or the tokenizer */
    size_t n;
    int32_t id;   /* >= 0: an added token (done); -1: text still to tokenize */
    int at_start; /* 1 when the piece begins at offset 0 of the original text */
} tok_piece;

typedef struct tok_plist {
    tok_piece *v;
    size_t n, cap;
} tok_plist;

/* 0 or ENG_ENOMEM. */
int tok_plist_push(tok_plist *l, const char *s, size_t n, int32_t id, int at_start);
void tok_plist_free(tok_plist *l);

/* ---- patterns: the few regular expressions tokenizer files use ---- */

typedef enum tok_pat_kind {
    TOK_PAT_LITERAL, /* the bytes of lit */
    TOK_PAT_RUN,     /* min or more of one atom: a code point, or any White_Space when cp == 0 */
} tok_pat_kind;

typedef struct tok_pattern {
    tok_pat_kind kind;
    const char *lit;
    size_t lit_n;
    uint32_t cp;
    size_t min;
} tok_pattern;

/* Reads {"String": s} or {"Regex": r}; r must be ATOM QUANT (\s, a literal or escaped char;
 * +, *, {m,}, {m}). what names the owner in messages. */
int tok_pattern_parse(tok_pattern *p, json_t *obj, tok_arena *a, const char *what, eng_error *err);
/* The leftmost match in s[from..n): 1 and [*ms, *me), or 0. An empty match is never reported. */
int tok_pattern_find(const tok_pattern *p, const char *s, size_t n, size_t from, size_t *ms,
                     size_t *me);

/* ---- normalizers ---- */

typedef struct tok_charsmap tok_charsmap;

typedef enum tok_norm_kind {
    TOK_NORM_NFC,
    TOK_NORM_LOWERCASE,
    TOK_NORM_REPLACE,
    TOK_NORM_STRIP,
    TOK_NORM_PREPEND,
    TOK_NORM_PRECOMPILED,
} tok_norm_kind;

typedef struct tok_norm {
    tok_norm_kind kind;
    tok_pattern pattern; /* REPLACE */
    const char *text;    /* REPLACE: content; PREPEND: the prefix */
    size_t text_n;
    int left, right;        /* STRIP */
    tok_charsmap *charsmap; /* PRECOMPILED (NULL: a no-op, as a null charsmap is) */
} tok_norm;

/* Runs the normalizers on s[0..n) into out (reset first). Returns 0 or ENG_ENOMEM. */
int tok_normalize(const tok_norm *norms, size_t n_norms, const char *s, size_t n, tok_buf *out);

/* Precompiled (SentencePiece) charsmap: tokenizer_t5_norm.c. */
int tok_charsmap_load(tok_charsmap **out, const char *base64, size_t n, eng_error *err);
void tok_charsmap_free(tok_charsmap *c);
int tok_charsmap_normalize(const tok_charsmap *c, const char *s, size_t n, tok_buf *out);

/* ---- pre-tokenizers ---- */

typedef enum tok_pretok_kind {
    TOK_PRE_WHITESPACE_SPLIT,
    TOK_PRE_METASPACE,
    TOK_PRE_SPLIT_CLIP, /* transformers' CLIP regex, behaviour Removed, inverted: keep matches */
    TOK_PRE_BYTELEVEL,
} tok_pretok_kind;

enum { TOK_PREPEND_ALWAYS, TOK_PREPEND_FIRST, TOK_PREPEND_NEVER };

typedef struct tok_pretok {
    tok_pretok_kind kind;
    uint32_t replacement; /* METASPACE */
    int prepend_scheme;   /* METASPACE */
    int split;            /* METASPACE */
    int add_prefix_space; /* BYTELEVEL */
    int use_regex;        /* BYTELEVEL: the GPT-2 split */
} tok_pretok;

/* Runs one pre-tokenizer over every text piece of in, appending to out. 0 or ENG_ENOMEM. */
int tok_pretokenize(const tok_pretok *p, const tok_plist *in, tok_plist *out, tok_arena *a);

/* ---- models ---- */

typedef struct tok_bpe tok_bpe;
typedef struct tok_unigram tok_unigram;

/* tokenizer_clip.c */
int tok_bpe_from_files(tok_bpe **out, const char *vocab_path, const char *merges_path,
                       tok_arena *a, eng_error *err);
int tok_bpe_from_json(tok_bpe **out, json_t *model, tok_arena *a, eng_error *err);
void tok_bpe_free(tok_bpe *b);
int tok_bpe_token_id(const tok_bpe *b, const char *s, size_t n, int32_t *id);
int32_t tok_bpe_vocab_size(const tok_bpe *b);
/* The id unknown symbols get (vocab.json files name it in tokenizer_config.json). */
void tok_bpe_set_unk(tok_bpe *b, int32_t id);
/* Appends the ids of one word (after pre-tokenization). 0 or ENG_ENOMEM. */
int tok_bpe_encode_word(const tok_bpe *b, const char *s, size_t n, int32_t **ids, size_t *n_ids,
                        size_t *cap);

/* tokenizer_t5.c */
int tok_unigram_from_json(tok_unigram **out, json_t *model, tok_arena *a, eng_error *err);
void tok_unigram_free(tok_unigram *u);
int tok_unigram_token_id(const tok_unigram *u, const char *s, size_t n, int32_t *id);
int32_t tok_unigram_vocab_size(const tok_unigram *u);
int tok_unigram_encode_word(const tok_unigram *u, const char *s, size_t n, int32_t **ids,
                            size_t *n_ids, size_t *cap);

/* Appends id to a growable id array. 0 or ENG_ENOMEM. */
int tok_ids_push(int32_t **ids, size_t *n, size_t *cap, int32_t id);

/* ---- the tokenizer ---- */

typedef struct tok_added {
    const char *content;
    size_t n;
    const char *match; /* what is searched: content, or content normalized when normalized */
    size_t match_n;
    int32_t id;
    int lstrip, rstrip, single_word, normalized, special;
} tok_added;

struct eng_tokenizer {
    eng_tokenizer_kind kind;
    tok_arena arena; /* every string below */
    tok_norm *norms;
    size_t n_norms;
    tok_pretok *pretoks;
    size_t n_pretoks;
    tok_bpe *bpe;
    tok_unigram *unigram;
    tok_added *added;
    size_t n_added, cap_added;
    int32_t *prefix, *suffix; /* post-processor ids around the text */
    size_t n_prefix, n_suffix;
    int32_t pad_id;
    int model_max_length;
    int32_t vocab_size;
};

/*
 * What a tokenizer.json describes, as plain data: tokenizer_json.c reads the file into it and
 * tokenizer.c builds the eng_tokenizer from it, so the reader never calls back into the builder.
 * Strings and arrays live in the arena given to tok_json_load; the model (bpe or unigram) and the
 * Precompiled normalizers' charsmaps belong to the description until the builder takes them.
 */
typedef struct tok_desc {
    eng_tokenizer_kind kind;
    tok_bpe *bpe;         /* kind BPE */
    tok_unigram *unigram; /* kind UNIGRAM */
    tok_norm *norms;      /* the normalizer, a Sequence flattened */
    size_t n_norms;
    tok_pretok *pretoks; /* the pre-tokenizer, a Sequence flattened */
    size_t n_pretoks;
    int32_t *prefix, *suffix; /* the post-processor's ids around the text */
    size_t n_prefix, n_suffix;
    tok_added *added; /* "added_tokens" in file order (match = content; never empty) */
    size_t n_added;
} tok_desc;

/* tokenizer_json.c: reads a parsed tokenizer.json into *d (zeroed first). On failure nothing is
 * left to free but the arena's strings; path names the file in messages. */
int tok_json_load(tok_desc *d, json_t *root, const char *path, tok_arena *a, eng_error *err);
/* tokenizer_clip.c: the CLIP pipeline transformers' CLIPTokenizer builds, for vocab.json. */
int tok_clip_default_pipeline(eng_tokenizer *t, eng_error *err);
/* tokenizer.c: registers an added token (skipped when its content is already there). */
int tok_add_token(eng_tokenizer *t, const char *content, int32_t id, int lstrip, int rstrip,
                  int single_word, int normalized, int special, eng_error *err);
/* The id of a token string: added tokens first, then the model vocabulary. */
int tok_lookup(const eng_tokenizer *t, const char *s, int32_t *id);

#endif
