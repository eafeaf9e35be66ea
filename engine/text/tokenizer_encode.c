/*
 * tokenizer_encode.c - eng_tokenizer_encode: text to a fixed-length row of ids.
 *
 * The order is tokenizers' Tokenizer::encode with transformers' truncation and padding:
 *   1. invalid UTF-8 becomes U+FFFD (from_utf8_lossy);
 *   2. added tokens with normalized=false are cut out of the raw text (leftmost-longest, with
 *      their lstrip / rstrip / single_word rules);
 *   3. each remaining chunk is normalized, then added tokens with normalized=true are cut out of
 *      the normalized chunk;
 *   4. the pre-tokenizers split the rest into words, the model encodes each word;
 *   5. the ids are cut to max_len minus the post-processor's specials, which go around them,
 *      and padding fills the row.
 * All scratch memory lives in one arena per call.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/text/tokenizer_internal.h"
#include "engine/text/unicode.h"

/* regex \w of the Rust regex crate: alphabetic, marks, digits, connector punctuation. */
static int is_word_char(uint32_t cp)
{
    eng_uc_class c = eng_uc_class_of(cp);
    return c == ENG_UC_LETTER || c == ENG_UC_NUMBER || c == ENG_UC_MARK || c == ENG_UC_CONNECTOR;
}

/* The code point that ends just before byte i of s (i > 0). */
static uint32_t cp_before(const char *s, size_t i, size_t *start)
{
    size_t st = i - 1;
    while (st > 0 && ((unsigned char)s[st] & 0xC0) == 0x80)
        st--;
    uint32_t cp;
    eng_utf8_decode(s + st, i - st, &cp);
    *start = st;
    return cp;
}

/* The leftmost-longest added token (of the given normalized flag) at or after pos. */
static const tok_added *find_added(const eng_tokenizer *t, int normalized,
                                   const unsigned char *first, const char *s, size_t n,
                                   size_t pos, size_t *at)
{
    for (size_t i = pos; i < n; i++) {
        if (!first[(unsigned char)s[i]])
            continue;
        const tok_added *best = NULL;
        for (size_t k = 0; k < t->n_added; k++) {
            const tok_added *a = &t->added[k];
            if (a->normalized != normalized || a->match_n == 0 || a->match_n > n - i)
                continue;
            if ((!best || a->match_n > best->match_n) && memcmp(s + i, a->match, a->match_n) == 0)
                best = a;
        }
        if (best) {
            *at = i;
            return best;
        }
    }
    return NULL;
}

/* Cuts the added tokens of one kind out of s[0..n), appending pieces to out (find_matches). */
static int split_added(const eng_tokenizer *t, int normalized, const char *s, size_t n,
                       int at_start, tok_plist *out)
{
    unsigned char first[256] = {0};
    int any = 0;
    for (size_t k = 0; k < t->n_added; k++) {
        if (t->added[k].normalized == normalized && t->added[k].match_n) {
            first[(unsigned char)t->added[k].match[0]] = 1;
            any = 1;
        }
    }
    size_t pos = 0, done = 0, at;
    const tok_added *a;
    while (any && (a = find_added(t, normalized, first, s, n, pos, &at)) != NULL) {
        size_t start = at, stop = at + a->match_n;
        pos = stop;
        uint32_t cp;
        size_t st;
        if (a->single_word) {
            int word_before = start > 0 && is_word_char(cp_before(s, start, &st));
            int word_after = 0;
            if (stop < n) {
                eng_utf8_decode(s + stop, n - stop, &cp);
                word_after = is_word_char(cp);
            }
            if (word_before || word_after)
                continue;
        }
        if (a->lstrip) {
            while (start > done && eng_uc_is_space(cp_before(s, start, &st)))
                start = st;
        }
        if (a->rstrip) {
            while (stop < n) {
                size_t k = eng_utf8_decode(s + stop, n - stop, &cp);
                if (!eng_uc_is_space(cp))
                    break;
                stop += k;
            }
            if (stop > pos)
                pos = stop;
        }
        if (start > done)
            ENG_TRY(tok_plist_push(out, s + done, start - done, -1, at_start && done == 0));
        ENG_TRY(tok_plist_push(out, s + start, stop - start, a->id, at_start && start == 0));
        done = stop;
    }
    if (done < n)
        ENG_TRY(tok_plist_push(out, s + done, n - done, -1, at_start && done == 0));
    return 0;
}

/* A valid UTF-8 copy of s: each maximal ill-formed subsequence becomes U+FFFD. */
static const char *lossy(const char *s, size_t n, size_t *out_n, tok_arena *a)
{
    if (eng_utf8_valid(s, n)) {
        *out_n = n;
        return s;
    }
    char *d = tok_arena_alloc(a, 3 * n + 1); /* a replaced byte grows to 3 */
    if (!d)
        return NULL;
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += eng_utf8_decode(s + i, n - i, &cp);
        m += eng_utf8_encode(cp, d + m);
    }
    d[m] = 0;
    *out_n = m;
    return d;
}

static int encode_word(const eng_tokenizer *t, const tok_piece *p, int32_t **ids, size_t *n,
                       size_t *cap)
{
    if (p->id >= 0)
        return tok_ids_push(ids, n, cap, p->id);
    if (t->bpe)
        return tok_bpe_encode_word(t->bpe, p->s, p->n, ids, n, cap);
    return tok_unigram_encode_word(t->unigram, p->s, p->n, ids, n, cap);
}

/* Encodes one raw-text chunk (no non-normalized added token inside) until need ids exist. */
static int encode_chunk(const eng_tokenizer *t, const tok_piece *c, size_t need, tok_arena *a,
                        int32_t **ids, size_t *n, size_t *cap)
{
    tok_buf nb = {0};
    tok_plist pieces = {0}, next = {0};
    int rc = 0;
    ENG_TRY_DONE(tok_normalize(t->norms, t->n_norms, c->s, c->n, &nb));
    const char *norm = tok_arena_strndup(a, nb.p ? nb.p : "", nb.n);
    if (!norm) {
        rc = ENG_ENOMEM;
        goto done;
    }
    ENG_TRY_DONE(split_added(t, 1, norm, nb.n, c->at_start, &pieces));
    for (size_t k = 0; k < t->n_pretoks; k++) {
        next.n = 0;
        rc = tok_pretokenize(&t->pretoks[k], &pieces, &next, a);
        tok_plist swap = pieces;
        pieces = next;
        next = swap;
        if (rc)
            goto done;
    }
    for (size_t i = 0; i < pieces.n && *n < need; i++)
        ENG_TRY_DONE(encode_word(t, &pieces.v[i], ids, n, cap));
done:
    tok_buf_free(&nb);
    tok_plist_free(&pieces);
    tok_plist_free(&next);
    return rc;
}

int eng_tokenizer_encode(const eng_tokenizer *t, const char *utf8, int32_t *ids, int max_len,
                         int *n_real, eng_error *err)
{
    if (!t || !utf8 || !ids)
        return eng_error_set(err, ENG_EINVAL, "eng_tokenizer_encode: NULL argument");
    size_t n_spec = t->n_prefix + t->n_suffix;
    if (max_len < 0 || (size_t)max_len < n_spec)
        return eng_error_set(err, ENG_EINVAL, "eng_tokenizer_encode: max_len %d is less than the "
                             "%zu special tokens", max_len, n_spec);
    size_t need = (size_t)max_len - n_spec;
    tok_arena a = {0};
    tok_plist chunks = {0};
    int32_t *out = NULL;
    size_t out_n = 0, out_cap = 0, n;
    int rc = 0;
    const char *text = lossy(utf8, strlen(utf8), &n, &a);
    if (!text) {
        rc = ENG_ENOMEM;
        goto done;
    }
    if (need > 0)
        ENG_TRY_DONE(split_added(t, 0, text, n, 1, &chunks));
    for (size_t i = 0; i < chunks.n && out_n < need; i++) {
        if (chunks.v[i].id >= 0)
            ENG_TRY_DONE(tok_ids_push(&out, &out_n, &out_cap, chunks.v[i].id));
        else
            ENG_TRY_DONE(encode_chunk(t, &chunks.v[i], need, &a, &out, &out_n, &out_cap));
    }
    if (out_n > need)
        out_n = need;
    size_t k = 0;
    for (size_t i = 0; i < t->n_prefix; i++)
        ids[k++] = t->prefix[i];
    for (size_t i = 0; i < out_n; i++)
        ids[k++] = out[i];
    for (size_t i = 0; i < t->n_suffix; i++)
        ids[k++] = t->suffix[i];
    if (n_real)
        *n_real = (int)k;
    while (k < (size_t)max_len)
        ids[k++] = t->pad_id;
done:
    if (rc == ENG_ENOMEM)
        eng_error_set(err, rc, "eng_tokenizer_encode: out of memory");
    else if (rc)
        eng_error_set(err, rc,
                      "eng_tokenizer_encode: a character the vocabulary cannot encode "
                      "and no unknown token");
    free(out);
    tok_plist_free(&chunks);
    tok_arena_free(&a);
    return rc;
}
