/*
 * tokenizer_t5_norm.c - the "Precompiled" normalizer of SentencePiece tokenizers (T5's nmt_nfkc).
 *
 * precompiled_charsmap is base64 of: a little-endian u32 byte size of a trie, the trie (u32
 * units of sentencepiece's Darts double array: label, leaf flag, offset), then the normalized
 * strings, NUL-separated; a trie value is the offset of a replacement string.
 *
 * The look-up follows Hugging Face tokenizers (spm_precompiled), which is what transformers' T5
 * tokenizer runs, rather than sentencepiece's own longest-match normalizer: the text is cut into
 * extended grapheme clusters; a cluster shorter than 6 bytes is looked up whole and, when some
 * prefix of it is in the trie, the whole cluster becomes that prefix's replacement (the first,
 * i.e. shortest, prefix found); otherwise each of its characters is looked up on its own and
 * replaced when found. The two differ, for instance, on "e" + two combining accents.
 *
 * A malformed trie never reads outside the blob: an out-of-range node is "no match" (where the
 * Rust code would panic).
 */
#include <stdlib.h>
#include <string.h>

#include "engine/text/tokenizer_internal.h"
#include "engine/text/unicode.h"

struct tok_charsmap {
    uint32_t *units;
    size_t n_units;
    char *normalized;
    size_t n_normalized;
};

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Standard base64 with '=' padding; returns the decoded length or -1. out holds 3 * n / 4. */
static long b64_decode(const char *s, size_t n, unsigned char *out)
{
    if (n % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)s[i + k];
            if (c == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
            } else if (pad || (v[k] = b64_value(c)) < 0) {
                return -1;
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        out[o++] = (unsigned char)(w >> 16);
        if (pad < 2)
            out[o++] = (unsigned char)(w >> 8);
        if (pad < 1)
            out[o++] = (unsigned char)w;
    }
    return (long)o;
}

int tok_charsmap_load(tok_charsmap **out, const char *base64, size_t n, eng_error *err)
{
    *out = NULL;
    unsigned char *blob = malloc(n / 4 * 3 + 4);
    tok_charsmap *c = calloc(1, sizeof *c);
    int rc = ENG_ENOMEM;
    if (!blob || !c)
        goto fail;
    long len = b64_decode(base64, n, blob);
    rc = ENG_EFORMAT;
    if (len < 0) {
        eng_error_set(err, rc, "precompiled_charsmap is not valid base64");
        goto fail;
    }
    if (len < 4) {
        eng_error_set(err, rc, "precompiled_charsmap: %ld bytes, too short for its header", len);
        goto fail;
    }
    uint32_t trie_bytes = blob[0] | blob[1] << 8 | blob[2] << 16 | (uint32_t)blob[3] << 24;
    size_t n_units = trie_bytes / 4;
    if (n_units > ((size_t)len - 4) / 4) {
        eng_error_set(err, rc, "precompiled_charsmap: trie of %u bytes in a blob of %ld",
                      trie_bytes, len);
        goto fail;
    }
    c->n_units = n_units;
    c->n_normalized = (size_t)len - 4 - 4 * n_units;
    c->units = malloc((n_units ? n_units : 1) * sizeof *c->units);
    c->normalized = malloc(c->n_normalized + 1);
    if (!c->units || !c->normalized) {
        rc = ENG_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < n_units; i++) {
        const unsigned char *u = blob + 4 + 4 * i;
        c->units[i] = u[0] | u[1] << 8 | u[2] << 16 | (uint32_t)u[3] << 24;
    }
    memcpy(c->normalized, blob + 4 + 4 * n_units, c->n_normalized);
    c->normalized[c->n_normalized] = 0;
    if (!eng_utf8_valid(c->normalized, c->n_normalized)) {
        eng_error_set(err, rc, "precompiled_charsmap: the normalized strings are not UTF-8");
        goto fail;
    }
    free(blob);
    *out = c;
    return 0;
fail:
    if (rc == ENG_ENOMEM)
        eng_error_set(err, rc, "precompiled_charsmap: out of memory");
    free(blob);
    tok_charsmap_free(c);
    return rc;
}

void tok_charsmap_free(tok_charsmap *c)
{
    if (!c)
        return;
    free(c->units);
    free(c->normalized);
    free(c);
}

/* The replacement of the shortest prefix of key[0..n) in the trie: 1 and [*r, *r + *rn). */
static int charsmap_lookup(const tok_charsmap *c, const char *key, size_t n, const char **r,
                           size_t *rn)
{
    if (c->n_units == 0)
        return 0;
    uint64_t unit = c->units[0];
    uint64_t pos = (unit >> 10) << ((unit & (1u << 9)) >> 6);
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)key[i];
        if (b == 0)
            break;
        pos ^= b;
        if (pos >= c->n_units)
            return 0;
        unit = c->units[pos];
        if ((unit & ((1u << 31) | 0xFF)) != b)
            return 0;
        pos ^= (unit >> 10) << ((unit & (1u << 9)) >> 6);
        if ((unit >> 8) & 1) {
            if (pos >= c->n_units)
                return 0;
            size_t off = c->units[pos] & ((1u << 31) - 1);
            if (off > c->n_normalized)
                return 0;
            const char *s = c->normalized + off;
            size_t len = strlen(s); /* normalized is NUL-terminated past its end */
            if (!eng_utf8_valid(s, len))
                return 0; /* an offset inside a character: refuse rather than emit bad UTF-8 */
            *r = s;
            *rn = len;
            return 1;
        }
    }
    return 0;
}

int tok_charsmap_normalize(const tok_charsmap *c, const char *s, size_t n, tok_buf *out)
{
    uint32_t *cps = malloc((n + 1) * sizeof *cps);
    size_t *off = malloc((n + 1) * sizeof *off);
    int rc = ENG_ENOMEM;
    if (!cps || !off)
        goto done;
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        off[m] = i;
        i += eng_utf8_decode(s + i, n - i, &cps[m++]);
    }
    off[m] = n;
    for (size_t i = 0; i < m;) {
        size_t g = eng_uc_grapheme_len(cps + i, m - i);
        size_t gb = off[i + g] - off[i];
        const char *r;
        size_t rn;
        if (gb < 6 && charsmap_lookup(c, s + off[i], gb, &r, &rn)) {
            if (tok_buf_put(out, r, rn) != 0)
                goto done;
            i += g;
            continue;
        }
        for (size_t k = i; k < i + g; k++) {
            size_t cb = off[k + 1] - off[k];
            if (!charsmap_lookup(c, s + off[k], cb, &r, &rn)) {
                r = s + off[k];
                rn = cb;
            }
            if (tok_buf_put(out, r, rn) != 0)
                goto done;
        }
        i += g;
    }
    rc = tok_buf_put(out, "", 0);
done:
    free(cps);
    free(off);
    return rc;
}
