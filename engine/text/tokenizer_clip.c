/*
 * tokenizer_clip.c - the BPE model of CLIP's tokenizers, and the pipeline transformers'
 * CLIPTokenizer puts around it.
 *
 * A word (one pre-tokenized piece, already mapped byte-to-unicode by ByteLevel) starts as its
 * characters, the last one with the end-of-word suffix "</w>"; then merges are applied lowest
 * rank first, leftmost first among equal ranks, through a binary heap of candidate pairs - the
 * algorithm of tokenizers' BPE::merge_all (which also gives what the rank-by-rank loop of the
 * original Python CLIP code gives).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/core/fsutil.h"
#include "engine/text/tokenizer_internal.h"
#include "engine/text/unicode.h"

struct tok_bpe {
    tok_strmap vocab;
    tok_u64map merges; /* (left id, right id) -> (rank, merged id) */
    const char *suffix, *prefix;
    size_t suffix_n, prefix_n;
    int32_t unk_id; /* -1: none */
    int fuse_unk;
    int ignore_merges;
    int32_t vocab_size;
};

static uint64_t pair_key(int32_t a, int32_t b)
{
    return (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
}

static int bpe_new(tok_bpe **out, eng_error *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return eng_error_set(err, ENG_ENOMEM, "BPE: out of memory");
    (*out)->unk_id = -1;
    return 0;
}

void tok_bpe_free(tok_bpe *b)
{
    if (!b)
        return;
    tok_strmap_free(&b->vocab);
    tok_u64map_free(&b->merges);
    free(b);
}

int tok_bpe_token_id(const tok_bpe *b, const char *s, size_t n, int32_t *id)
{
    return tok_strmap_get(&b->vocab, s, n, id);
}

int32_t tok_bpe_vocab_size(const tok_bpe *b)
{
    return b->vocab_size;
}

void tok_bpe_set_unk(tok_bpe *b, int32_t id)
{
    b->unk_id = id;
}

static int vocab_add(tok_bpe *b, tok_arena *a, const char *tok, size_t n, json_t *v,
                     const char *label, eng_error *err)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= INT32_MAX)
        return eng_error_set(err, ENG_EFORMAT, "%s: the id of \"%.64s\" is not an id", label, tok);
    int32_t id = (int32_t)json_integer_value(v);
    const char *key = tok_arena_strndup(a, tok, n);
    if (!key || tok_strmap_put(&b->vocab, key, n, id) != 0)
        return eng_error_set(err, ENG_ENOMEM, "%s: out of memory", label);
    if (id >= b->vocab_size)
        b->vocab_size = id + 1;
    return 0;
}

static int vocab_from_object(tok_bpe *b, json_t *vocab, tok_arena *a, const char *label,
                             eng_error *err)
{
    if (!json_is_object(vocab))
        return eng_error_set(err, ENG_EFORMAT, "%s: the vocabulary must be an object", label);
    const char *k;
    size_t kn;
    json_t *v;
    json_object_keylen_foreach(vocab, k, kn, v) {
        int rc = vocab_add(b, a, k, kn, v, label, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Registers merge number rank: left + right (right without the subword prefix). */
static int merge_add(tok_bpe *b, const char *l, size_t ln, const char *r, size_t rn,
                     int32_t rank, const char *label, eng_error *err)
{
    int32_t lid, rid, mid;
    if (!tok_strmap_get(&b->vocab, l, ln, &lid) || !tok_strmap_get(&b->vocab, r, rn, &rid))
        return eng_error_set(err, ENG_EFORMAT, "%s: merge %d (\"%.*s\" \"%.*s\") uses a token "
                             "missing from the vocabulary", label, (int)rank, (int)ln, l, (int)rn,
                             r);
    if (b->prefix_n && rn >= b->prefix_n && memcmp(r, b->prefix, b->prefix_n) == 0) {
        r += b->prefix_n;
        rn -= b->prefix_n;
    }
    char stack[256];
    char *m = ln + rn <= sizeof stack ? stack : malloc(ln + rn);
    if (!m)
        return eng_error_set(err, ENG_ENOMEM, "%s: out of memory", label);
    memcpy(m, l, ln);
    memcpy(m + ln, r, rn);
    int found = tok_strmap_get(&b->vocab, m, ln + rn, &mid);
    if (m != stack)
        free(m);
    if (!found)
        return eng_error_set(err, ENG_EFORMAT, "%s: merge %d (\"%.*s\" \"%.*s\") makes a token "
                             "missing from the vocabulary", label, (int)rank, (int)ln, l, (int)rn,
                             r);
    if (tok_u64map_put(&b->merges, pair_key(lid, rid), rank, mid) != 0)
        return eng_error_set(err, ENG_ENOMEM, "%s: out of memory", label);
    return 0;
}

/* One merges.txt line "left right" (already without its newline). */
static int merge_line(tok_bpe *b, const char *line, size_t n, int32_t rank, const char *label,
                      eng_error *err)
{
    const char *sp = memchr(line, ' ', n);
    if (!sp || sp == line || sp + 1 == line + n || memchr(sp + 1, ' ', (size_t)(line + n - sp - 1)))
        return eng_error_set(err, ENG_EFORMAT, "%s: line %d is not \"left right\"", label,
                             (int)rank + 2);
    return merge_add(b, line, (size_t)(sp - line), sp + 1, (size_t)(line + n - sp - 1), rank,
                     label, err);
}

int tok_bpe_from_files(tok_bpe **out, const char *vocab_path, const char *merges_path,
                       tok_arena *a, eng_error *err)
{
    tok_bpe *b;
    int rc = bpe_new(&b, err);
    if (rc != 0)
        return rc;
    json_error_t jerr;
    json_t *vocab = json_load_file(vocab_path, 0, &jerr);
    char *text = NULL;
    if (!vocab) {
        rc = eng_error_set(err, ENG_EFORMAT, "%s: line %d: %s", vocab_path, jerr.line, jerr.text);
        goto fail;
    }
    rc = vocab_from_object(b, vocab, a, vocab_path, err);
    json_decref(vocab);
    if (rc != 0)
        goto fail;
    size_t n;
    rc = eng_read_file(merges_path, &text, &n, err);
    if (rc != 0)
        goto fail;
    int32_t rank = 0;
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(text + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - text) : n, len = e - i;
        if (len && text[i + len - 1] == '\r')
            len--;
        /* "#version: 0.2" heads the file; blank lines (the last newline) carry nothing. */
        if (len && !(len >= 8 && memcmp(text + i, "#version", 8) == 0)) {
            rc = merge_line(b, text + i, len, rank++, merges_path, err);
            if (rc != 0)
                goto fail;
        }
        i = e + 1;
    }
    free(text);
    b->suffix = "</w>";
    b->suffix_n = 4;
    *out = b;
    return 0;
fail:
    free(text);
    tok_bpe_free(b);
    return rc;
}

static const char *opt_string(json_t *model, const char *key, tok_arena *a, size_t *n)
{
    json_t *v = json_object_get(model, key);
    if (!json_is_string(v))
        return NULL;
    *n = json_string_length(v);
    return tok_arena_strndup(a, json_string_value(v), *n);
}

int tok_bpe_from_json(tok_bpe **out, json_t *model, tok_arena *a, eng_error *err)
{
    static const char label[] = "model";
    tok_bpe *b;
    int rc = bpe_new(&b, err);
    if (rc != 0)
        return rc;
    json_t *dropout = json_object_get(model, "dropout");
    if (json_is_true(json_object_get(model, "byte_fallback")) ||
        (dropout && !json_is_null(dropout) && json_number_value(dropout) != 0.0)) {
        rc = eng_error_set(err, ENG_EUNSUPPORTED, "%s: BPE byte_fallback and dropout are not "
                           "supported", label);
        goto fail;
    }
    size_t un = 0;
    b->suffix = opt_string(model, "end_of_word_suffix", a, &b->suffix_n);
    b->prefix = opt_string(model, "continuing_subword_prefix", a, &b->prefix_n);
    b->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    b->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    rc = vocab_from_object(b, json_object_get(model, "vocab"), a, label, err);
    if (rc != 0)
        goto fail;
    const char *unk = opt_string(model, "unk_token", a, &un);
    if (unk && !tok_strmap_get(&b->vocab, unk, un, &b->unk_id)) {
        rc = eng_error_set(err, ENG_EFORMAT, "%s: unk_token \"%s\" is not in the vocabulary",
                           label, unk);
        goto fail;
    }
    json_t *merges = json_object_get(model, "merges");
    if (!json_is_array(merges)) {
        rc = eng_error_set(err, ENG_EFORMAT, "%s: \"merges\" must be an array", label);
        goto fail;
    }
    size_t i;
    json_t *m;
    json_array_foreach(merges, i, m) {
        if (json_is_string(m)) {
            rc = merge_line(b, json_string_value(m), json_string_length(m), (int32_t)i, label, err);
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            json_t *l = json_array_get(m, 0), *r = json_array_get(m, 1);
            rc = merge_add(b, json_string_value(l), json_string_length(l), json_string_value(r),
                           json_string_length(r), (int32_t)i, label, err);
        } else {
            rc = eng_error_set(err, ENG_EFORMAT, "%s: merge %zu is neither \"a b\" nor [a, b]",
                               label, i);
        }
        if (rc != 0)
            goto fail;
    }
    *out = b;
    return 0;
fail:
    tok_bpe_free(b);
    return rc;
}

/* ---- merging ---- */

typedef struct sym {
    int32_t id;
    int32_t prev, next; /* -1: none */
    size_t len;         /* bytes; 0 once merged into its left neighbour */
} sym;

typedef struct cand {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
} cand;

static int cand_less(const cand *a, const cand *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

typedef struct heap {
    cand *v;
    size_t n, cap;
} heap;

static int heap_push(heap *h, cand c)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        cand *v = realloc(h->v, cap * sizeof *v);
        if (!v)
            return ENG_ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && cand_less(&c, &h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = c;
    return 0;
}

static cand heap_pop(heap *h)
{
    cand top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &last;
        if (l < h->n && cand_less(&h->v[l], best))
            m = l, best = &h->v[l];
        if (r < h->n && cand_less(&h->v[r], best))
            m = r;
        if (m == i)
            break;
        h->v[i] = h->v[m];
        i = m;
    }
    if (h->n)
        h->v[i] = last;
    return top;
}

static int push_pair(const tok_bpe *b, heap *h, const sym *s, int32_t pos)
{
    int32_t next = s[pos].next;
    if (next < 0)
        return 0;
    const tok_u64map_slot *m = tok_u64map_get(&b->merges, pair_key(s[pos].id, s[next].id));
    if (!m)
        return 0;
    return heap_push(h, (cand){m->a, pos, m->b});
}

static int merge_all(const tok_bpe *b, sym *s, size_t n)
{
    heap h = {0};
    int rc = 0;
    for (size_t i = 0; i + 1 < n; i++)
        ENG_TRY_DONE(push_pair(b, &h, s, (int32_t)i));
    while (h.n) {
        cand top = heap_pop(&h);
        sym *cur = &s[top.pos];
        if (cur->len == 0 || cur->next < 0)
            continue;
        sym *right = &s[cur->next];
        const tok_u64map_slot *m = tok_u64map_get(&b->merges, pair_key(cur->id, right->id));
        if (!m || m->b != top.new_id)
            continue; /* a stale candidate: one side has changed since it was queued */
        cur->id = top.new_id;
        cur->len += right->len;
        cur->next = right->next;
        right->len = 0;
        if (cur->next >= 0)
            s[cur->next].prev = top.pos;
        if (cur->prev >= 0)
            ENG_TRY_DONE(push_pair(b, &h, s, cur->prev));
        ENG_TRY_DONE(push_pair(b, &h, s, top.pos));
    }
done:
    free(h.v);
    return rc;
}

int tok_bpe_encode_word(const tok_bpe *b, const char *s, size_t n, int32_t **ids, size_t *n_ids,
                        size_t *cap)
{
    int32_t whole;
    if (b->ignore_merges && tok_strmap_get(&b->vocab, s, n, &whole))
        return tok_ids_push(ids, n_ids, cap, whole);
    sym *sy = malloc((n + 1) * sizeof *sy);
    char *tmp = malloc(b->prefix_n + 4 + b->suffix_n);
    int rc = ENG_ENOMEM;
    if (!sy || !tmp)
        goto done;
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = eng_utf8_decode(s + i, n - i, &cp), t = 0;
        if (i > 0 && b->prefix_n) {
            memcpy(tmp, b->prefix, b->prefix_n);
            t = b->prefix_n;
        }
        memcpy(tmp + t, s + i, k);
        t += k;
        if (i + k == n && b->suffix_n) {
            memcpy(tmp + t, b->suffix, b->suffix_n);
            t += b->suffix_n;
        }
        int32_t id;
        if (!tok_strmap_get(&b->vocab, tmp, t, &id)) {
            if (b->unk_id < 0) {
                rc = ENG_EINVAL; /* tokenizers refuses too: an unknown symbol and no unk token */
                goto done;
            }
            id = b->unk_id;
            if (b->fuse_unk && m > 0 && sy[m - 1].id == b->unk_id) {
                sy[m - 1].len += k;
                i += k;
                continue;
            }
        }
        sy[m] = (sym){id, (int32_t)m - 1, -1, k};
        if (m > 0)
            sy[m - 1].next = (int32_t)m;
        m++;
        i += k;
    }
    ENG_TRY_DONE(merge_all(b, sy, m));
    for (size_t i = 0; i < m; i++)
        if (sy[i].len)
            ENG_TRY_DONE(tok_ids_push(ids, n_ids, cap, sy[i].id));
done:
    free(sy);
    free(tmp);
    return rc;
}

/* ---- the CLIPTokenizer pipeline ---- */

int tok_clip_default_pipeline(eng_tokenizer *t, eng_error *err)
{
    t->norms = tok_arena_alloc(&t->arena, 3 * sizeof *t->norms);
    t->pretoks = tok_arena_alloc(&t->arena, 2 * sizeof *t->pretoks);
    if (!t->norms || !t->pretoks)
        return eng_error_set(err, ENG_ENOMEM, "CLIP tokenizer: out of memory");
    memset(t->norms, 0, 3 * sizeof *t->norms);
    memset(t->pretoks, 0, 2 * sizeof *t->pretoks);
    t->norms[0].kind = TOK_NORM_NFC;
    t->norms[1].kind = TOK_NORM_REPLACE;
    t->norms[1].pattern = (tok_pattern){.kind = TOK_PAT_RUN, .cp = 0, .min = 1}; /* \s+ */
    t->norms[1].text = " ";
    t->norms[1].text_n = 1;
    t->norms[2].kind = TOK_NORM_LOWERCASE;
    t->n_norms = 3;
    t->pretoks[0].kind = TOK_PRE_SPLIT_CLIP;
    t->pretoks[1].kind = TOK_PRE_BYTELEVEL;
    t->pretoks[1].use_regex = 1;
    t->n_pretoks = 2;
    return 0;
}
