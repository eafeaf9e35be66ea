/*
 * tokenizer_pipeline.c - running the normalizers and pre-tokenizers of a tokenizer pipeline.
 *
 * The semantics are those of Hugging Face `tokenizers`: a normalizer rewrites a whole text chunk
 * (the text between added tokens), a pre-tokenizer cuts each piece into smaller ones and drops
 * empty results. The two regular expressions of the CLIP pipeline (transformers' CLIP split and
 * the GPT-2 split inside ByteLevel) are hand-written scanners that follow the regex alternatives
 * in order, with \s = White_Space, \p{L} = letters, \p{N} = numbers.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/text/tokenizer_internal.h"
#include "engine/text/unicode.h"

/* ---- normalizers ---- */

static int norm_nfc(const char *s, size_t n, tok_buf *out)
{
    uint32_t *cps = malloc((n + 1) * sizeof *cps);
    uint32_t *res = malloc((4 * n + 1) * sizeof *res);
    int rc = ENG_ENOMEM;
    if (!cps || !res)
        goto done;
    size_t m = 0;
    for (size_t i = 0; i < n;)
        i += eng_utf8_decode(s + i, n - i, &cps[m++]);
    size_t k = 4 * n + 1;
    if (eng_uc_nfc(cps, m, res, &k) != 0)
        goto done;
    for (size_t i = 0; i < k; i++)
        if (tok_buf_put_cp(out, res[i]))
            goto done;
    rc = 0;
done:
    free(cps);
    free(res);
    return rc;
}

static int norm_lower(const char *s, size_t n, tok_buf *out)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp, low[3];
        i += eng_utf8_decode(s + i, n - i, &cp);
        int k = eng_uc_lower(cp, low);
        for (int j = 0; j < k; j++)
            ENG_TRY(tok_buf_put_cp(out, low[j]));
    }
    return 0;
}

static int norm_replace(const tok_norm *nm, const char *s, size_t n, tok_buf *out)
{
    size_t pos = 0, ms, me;
    while (tok_pattern_find(&nm->pattern, s, n, pos, &ms, &me)) {
        ENG_TRY(tok_buf_put(out, s + pos, ms - pos));
        ENG_TRY(tok_buf_put(out, nm->text, nm->text_n));
        pos = me;
    }
    return tok_buf_put(out, s + pos, n - pos);
}

static int norm_strip(const tok_norm *nm, const char *s, size_t n, tok_buf *out)
{
    size_t b = 0, e = n;
    if (nm->left) {
        while (b < e) {
            uint32_t cp;
            size_t k = eng_utf8_decode(s + b, e - b, &cp);
            if (!eng_uc_is_space(cp))
                break;
            b += k;
        }
    }
    if (nm->right) {
        while (e > b) {
            size_t st = e - 1;
            while (st > b && ((unsigned char)s[st] & 0xC0) == 0x80)
                st--;
            uint32_t cp;
            eng_utf8_decode(s + st, e - st, &cp);
            if (!eng_uc_is_space(cp))
                break;
            e = st;
        }
    }
    return tok_buf_put(out, s + b, e - b);
}

int tok_normalize(const tok_norm *norms, size_t n_norms, const char *s, size_t n, tok_buf *out)
{
    tok_buf tmp = {0};
    const char *cur = s;
    size_t cur_n = n;
    int rc = 0;
    /* Each step reads cur and writes into the buffer cur is not in. */
    tok_buf *bufs[2] = {out, &tmp};
    int w = (n_norms % 2 == 1) ? 0 : 1; /* so that the last step writes into out */
    out->n = 0;
    for (size_t k = 0; k < n_norms; k++) {
        const tok_norm *nm = &norms[k];
        tok_buf *dst = bufs[w];
        dst->n = 0;
        ENG_TRY_DONE(tok_buf_put(dst, "", 0));
        switch (nm->kind) {
        case TOK_NORM_NFC:
            ENG_TRY_DONE(norm_nfc(cur, cur_n, dst));
            break;
        case TOK_NORM_LOWERCASE:
            ENG_TRY_DONE(norm_lower(cur, cur_n, dst));
            break;
        case TOK_NORM_REPLACE:
            ENG_TRY_DONE(norm_replace(nm, cur, cur_n, dst));
            break;
        case TOK_NORM_STRIP:
            ENG_TRY_DONE(norm_strip(nm, cur, cur_n, dst));
            break;
        case TOK_NORM_PREPEND:
            if (cur_n)
                ENG_TRY_DONE(tok_buf_put(dst, nm->text, nm->text_n));
            ENG_TRY_DONE(tok_buf_put(dst, cur, cur_n));
            break;
        case TOK_NORM_PRECOMPILED:
            if (!nm->charsmap)
                ENG_TRY_DONE(tok_buf_put(dst, cur, cur_n));
            else
                ENG_TRY_DONE(tok_charsmap_normalize(nm->charsmap, cur, cur_n, dst));
            break;
        }
        cur = dst->p;
        cur_n = dst->n;
        w ^= 1;
    }
    if (n_norms == 0)
        ENG_TRY_DONE(tok_buf_put(out, s, n));
done:
    tok_buf_free(&tmp);
    return rc;
}

/* ---- pre-tokenizers ---- */

static int push_piece(tok_plist *out, tok_arena *a, const char *s, size_t n, int at_start)
{
    (void)a;
    if (n == 0)
        return 0;
    return tok_plist_push(out, s, n, -1, at_start);
}

static size_t cp_at(const char *s, size_t n, size_t i, uint32_t *cp)
{
    return eng_utf8_decode(s + i, n - i, cp);
}

static int pre_whitespace_split(const tok_piece *p, tok_plist *out, tok_arena *a)
{
    size_t i = 0, start = 0;
    while (i < p->n) {
        uint32_t cp;
        size_t k = cp_at(p->s, p->n, i, &cp);
        if (eng_uc_is_space(cp)) {
            if (push_piece(out, a, p->s + start, i - start, p->at_start && start == 0) != 0)
                return ENG_ENOMEM;
            start = i + k;
        }
        i += k;
    }
    return push_piece(out, a, p->s + start, p->n - start, p->at_start && start == 0);
}

static int pre_metaspace(const tok_pretok *pt, const tok_piece *p, tok_plist *out, tok_arena *a)
{
    char rep[4];
    size_t rn = eng_utf8_encode(pt->replacement, rep);
    size_t spaces = 0;
    for (size_t i = 0; i < p->n; i++)
        spaces += p->s[i] == ' ';
    int starts = p->n >= rn && memcmp(p->s, rep, rn) == 0;
    int prepend = !starts && (pt->prepend_scheme == TOK_PREPEND_ALWAYS ||
                              (pt->prepend_scheme == TOK_PREPEND_FIRST && p->at_start));
    size_t cap = p->n + spaces * (rn - 1) + (prepend ? rn : 0);
    char *s = tok_arena_alloc(a, cap + 1);
    if (!s)
        return ENG_ENOMEM;
    size_t m = 0;
    if (prepend) {
        memcpy(s, rep, rn);
        m = rn;
    }
    for (size_t i = 0; i < p->n; i++) {
        if (p->s[i] == ' ') {
            memcpy(s + m, rep, rn);
            m += rn;
        } else {
            s[m++] = p->s[i];
        }
    }
    if (!pt->split)
        return push_piece(out, a, s, m, p->at_start);
    /* MergedWithNext: every replacement character begins a new piece. */
    size_t start = 0;
    for (size_t i = 0; i < m;) {
        uint32_t cp;
        size_t k = cp_at(s, m, i, &cp);
        if (cp == pt->replacement && i > start) {
            if (push_piece(out, a, s + start, i - start, p->at_start && start == 0) != 0)
                return ENG_ENOMEM;
            start = i;
        }
        i += k;
    }
    return push_piece(out, a, s + start, m - start, p->at_start && start == 0);
}

/* The contractions both CLIP and GPT-2 regexes try first: 's 't 're 've 'm 'll 'd. */
static size_t contraction_len(const char *s, size_t n, size_t i)
{
    if (s[i] != '\'' || i + 1 >= n)
        return 0;
    char c = s[i + 1];
    if (c == 's' || c == 't' || c == 'm' || c == 'd')
        return 2;
    if (i + 2 < n && ((c == 'r' && s[i + 2] == 'e') || (c == 'v' && s[i + 2] == 'e') ||
                      (c == 'l' && s[i + 2] == 'l')))
        return 3;
    return 0;
}

typedef enum cclass { CC_SPACE, CC_LETTER, CC_NUMBER, CC_OTHER } cclass;

static cclass class_at(const char *s, size_t n, size_t i, size_t *k)
{
    uint32_t cp;
    *k = cp_at(s, n, i, &cp);
    if (eng_uc_is_space(cp))
        return CC_SPACE;
    eng_uc_class c = eng_uc_class_of(cp);
    return c == ENG_UC_LETTER ? CC_LETTER : c == ENG_UC_NUMBER ? CC_NUMBER : CC_OTHER;
}

/* End of the run of class cc starting at i. */
static size_t run_end(const char *s, size_t n, size_t i, cclass cc)
{
    size_t k;
    while (i < n && class_at(s, n, i, &k) == cc)
        i += k;
    return i;
}

/*
 * transformers' CLIP pattern: <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|
 * [\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+ ; the matches are kept, what lies between (whitespace)
 * is dropped.
 */
static int pre_split_clip(const tok_piece *p, tok_plist *out, tok_arena *a)
{
    static const char sot[] = "<|startoftext|>", eot[] = "<|endoftext|>";
    const char *s = p->s;
    size_t n = p->n, i = 0;
    while (i < n) {
        size_t k, len;
        cclass cc = class_at(s, n, i, &k);
        if (n - i >= sizeof sot - 1 && memcmp(s + i, sot, sizeof sot - 1) == 0)
            len = sizeof sot - 1;
        else if (n - i >= sizeof eot - 1 && memcmp(s + i, eot, sizeof eot - 1) == 0)
            len = sizeof eot - 1;
        else if ((len = contraction_len(s, n, i)) != 0)
            ;
        else if (cc == CC_LETTER)
            len = run_end(s, n, i, CC_LETTER) - i;
        else if (cc == CC_NUMBER)
            len = k;
        else if (cc == CC_OTHER)
            len = run_end(s, n, i, CC_OTHER) - i;
        else {
            i += k; /* whitespace: removed */
            continue;
        }
        if (push_piece(out, a, s + i, len, p->at_start && i == 0) != 0)
            return ENG_ENOMEM;
        i += len;
    }
    return 0;
}

/*
 * The GPT-2 pattern of ByteLevel: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|
 * \s+(?!\S)|\s+ . Returns the length of the match at i (every position matches something).
 */
static size_t gpt2_match(const char *s, size_t n, size_t i)
{
    size_t len = contraction_len(s, n, i), k;
    if (len)
        return len;
    size_t j = i;
    if (s[i] == ' ' && i + 1 < n)
        j = i + 1;
    cclass cc = class_at(s, n, j, &k);
    if (cc != CC_SPACE)
        return run_end(s, n, j, cc) - i; /* the three " ?class+" alternatives */
    /* Whitespace: the run, minus its last character when a non-space follows it. */
    size_t e = run_end(s, n, i, CC_SPACE);
    if (e == n)
        return e - i;
    size_t last = e - 1;
    while (((unsigned char)s[last] & 0xC0) == 0x80)
        last--;
    return last > i ? last - i : e - i;
}

/*
 * bytes_to_unicode of GPT-2: the printable Latin-1 bytes ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) map
 * to themselves, the other 68 bytes, in order, to U+0100..U+0143.
 */
static uint32_t byte_char(unsigned b)
{
    if (b <= 0x20)
        return 256 + b;
    if (b >= 0x7F && b <= 0xA0)
        return 256 + 33 + (b - 0x7F);
    if (b == 0xAD)
        return 256 + 33 + 34;
    return b;
}

static int push_bytelevel(const char *s, size_t n, int at_start, tok_plist *out, tok_arena *a)
{
    if (n == 0)
        return 0;
    char *m = tok_arena_alloc(a, 2 * n + 1); /* every mapped byte is 1 or 2 UTF-8 bytes */
    if (!m)
        return ENG_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += eng_utf8_encode(byte_char((unsigned char)s[i]), m + k);
    return push_piece(out, a, m, k, at_start);
}

static int pre_bytelevel(const tok_pretok *pt, const tok_piece *p, tok_plist *out, tok_arena *a)
{
    const char *s = p->s;
    size_t n = p->n;
    if (pt->add_prefix_space && !(n && s[0] == ' ')) {
        char *t = tok_arena_alloc(a, n + 2);
        if (!t)
            return ENG_ENOMEM;
        t[0] = ' ';
        memcpy(t + 1, s, n);
        s = t;
        n++;
    }
    if (!pt->use_regex)
        return push_bytelevel(s, n, p->at_start, out, a);
    for (size_t i = 0; i < n;) {
        size_t len = gpt2_match(s, n, i);
        if (push_bytelevel(s + i, len, p->at_start && i == 0, out, a) != 0)
            return ENG_ENOMEM;
        i += len;
    }
    return 0;
}

int tok_pretokenize(const tok_pretok *pt, const tok_plist *in, tok_plist *out, tok_arena *a)
{
    for (size_t k = 0; k < in->n; k++) {
        const tok_piece *p = &in->v[k];
        int rc;
        if (p->id >= 0) {
            rc = tok_plist_push(out, p->s, p->n, p->id, p->at_start);
        } else {
            switch (pt->kind) {
            case TOK_PRE_WHITESPACE_SPLIT:
                rc = pre_whitespace_split(p, out, a);
                break;
            case TOK_PRE_METASPACE:
                rc = pre_metaspace(pt, p, out, a);
                break;
            case TOK_PRE_SPLIT_CLIP:
                rc = pre_split_clip(p, out, a);
                break;
            case TOK_PRE_BYTELEVEL:
                rc = pre_bytelevel(pt, p, out, a);
                break;
            default:
                rc = ENG_EINVAL;
            }
        }
        if (rc)
            return rc;
    }
    return 0;
}
