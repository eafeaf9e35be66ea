/*
 * unicode.c - lossy UTF-8, table look-ups, NFC and grapheme clusters for the tokenizers.
 *
 * Every table of engine/text/unicode_tables.c is sorted, so each look-up is a bisection. NFC is the
 * textbook algorithm (full canonical decomposition, canonical ordering, canonical composition
 * with blocking) with Hangul done arithmetically.
 */
#include "engine/text/unicode.h"

#include <stdlib.h>

#include "engine/text/unicode_tables.h"

/* Hangul syllable arithmetic (Unicode 3.12). */
enum {
    HG_SBASE = 0xAC00,
    HG_LBASE = 0x1100,
    HG_VBASE = 0x1161,
    HG_TBASE = 0x11A7,
    HG_LCOUNT = 19,
    HG_VCOUNT = 21,
    HG_TCOUNT = 28,
    HG_NCOUNT = HG_VCOUNT * HG_TCOUNT,
    HG_SCOUNT = HG_LCOUNT * HG_NCOUNT,
};

const char *eng_uc_version(void)
{
    return eng_uc_unicode_version;
}

size_t eng_utf8_decode(const char *s, size_t n, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned b0 = u[0];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    size_t need;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    uint32_t v;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1;
        v = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        v = b0 & 0x0F;
        if (b0 == 0xE0)
            lo = 0xA0; /* no overlongs */
        else if (b0 == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        v = b0 & 0x07;
        if (b0 == 0xF0)
            lo = 0x90;
        else if (b0 == 0xF4)
            hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        *cp = ENG_UC_REPLACEMENT;
        return 1;
    }
    size_t i = 1;
    for (; i <= need; i++) {
        if (i >= n)
            break;
        unsigned b = u[i];
        unsigned l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (b < l || b > h)
            break;
        v = (v << 6) | (b & 0x3F);
    }
    if (i <= need) {
        /* The bytes read so far form the maximal subpart: one replacement character for them. */
        *cp = ENG_UC_REPLACEMENT;
        return i;
    }
    *cp = v;
    return need + 1;
}

size_t eng_utf8_encode(uint32_t cp, char out[4])
{
    if (cp >= 0x110000 || (cp >= 0xD800 && cp <= 0xDFFF))
        cp = ENG_UC_REPLACEMENT;
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int eng_utf8_valid(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = eng_utf8_decode(s + i, n - i, &cp);
        /* A genuine U+FFFD in the input is 3 bytes EF BF BD; a replacement for bad bytes is not. */
        if (cp == ENG_UC_REPLACEMENT && (k != 3 || (unsigned char)s[i] != 0xEF))
            return 0;
        i += k;
    }
    return 1;
}

/* Index of the range holding cp, or -1. */
static long find_range(const eng_uc_range *r, size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r[mid].hi < cp)
            lo = mid + 1;
        else if (r[mid].lo > cp)
            hi = mid;
        else
            return (long)mid;
    }
    return -1;
}

eng_uc_class eng_uc_class_of(uint32_t cp)
{
    if (cp < 0x80) {
        /* The ASCII fast path covers nearly every prompt byte. */
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z')
            return ENG_UC_LETTER;
        if (cp >= '0' && cp <= '9')
            return ENG_UC_NUMBER;
    }
    long i = find_range(eng_uc_class_ranges, eng_uc_class_ranges_len, cp);
    return i < 0 ? ENG_UC_OTHER : (eng_uc_class)eng_uc_class_ranges[i].v;
}

int eng_uc_is_space(uint32_t cp)
{
    if (cp <= 0x20)
        return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85)
        return 0;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

int eng_uc_lower(uint32_t cp, uint32_t out[3])
{
    if (cp < 0x80) {
        out[0] = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
        return 1;
    }
    size_t lo = 0, hi = eng_uc_lower_map_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const eng_uc_lower_entry *e = &eng_uc_lower_map[mid];
        if (e->cp < cp) {
            lo = mid + 1;
        } else if (e->cp > cp) {
            hi = mid;
        } else {
            int k = 0;
            while (k < 3 && e->l[k]) {
                out[k] = e->l[k];
                k++;
            }
            return k;
        }
    }
    out[0] = cp;
    return 1;
}

int eng_uc_ccc(uint32_t cp)
{
    if (cp < 0x300)
        return 0;
    long i = find_range(eng_uc_ccc_ranges, eng_uc_ccc_ranges_len, cp);
    return i < 0 ? 0 : (int)eng_uc_ccc_ranges[i].v;
}

eng_uc_gcb eng_uc_gcb_of(uint32_t cp)
{
    long i = find_range(eng_uc_gcb_ranges, eng_uc_gcb_ranges_len, cp);
    return i < 0 ? ENG_UC_GCB_OTHER : (eng_uc_gcb)eng_uc_gcb_ranges[i].v;
}

int eng_uc_is_extpict(uint32_t cp)
{
    size_t lo = 0, hi = eng_uc_extpict_ranges_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (eng_uc_extpict_ranges[mid].hi < cp)
            lo = mid + 1;
        else if (eng_uc_extpict_ranges[mid].lo > cp)
            hi = mid;
        else
            return 1;
    }
    return 0;
}

/* ---- NFC ---- */

static const eng_uc_pair *find_decomp(uint32_t cp)
{
    size_t lo = 0, hi = eng_uc_decomp_map_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (eng_uc_decomp_map[mid].a < cp)
            lo = mid + 1;
        else if (eng_uc_decomp_map[mid].a > cp)
            hi = mid;
        else
            return &eng_uc_decomp_map[mid];
    }
    return NULL;
}

/* Appends the full canonical decomposition of cp; returns -1 when out of room. */
static int decompose(uint32_t cp, uint32_t *out, size_t cap, size_t *n)
{
    if (cp >= HG_SBASE && cp < HG_SBASE + HG_SCOUNT) {
        uint32_t s = cp - HG_SBASE, t = s % HG_TCOUNT;
        if (*n + 3 > cap)
            return -1;
        out[(*n)++] = HG_LBASE + s / HG_NCOUNT;
        out[(*n)++] = HG_VBASE + (s % HG_NCOUNT) / HG_TCOUNT;
        if (t)
            out[(*n)++] = HG_TBASE + t;
        return 0;
    }
    const eng_uc_pair *d = cp < 0xC0 ? NULL : find_decomp(cp);
    if (!d) {
        if (*n >= cap)
            return -1;
        out[(*n)++] = cp;
        return 0;
    }
    if (decompose(d->b, out, cap, n) != 0)
        return -1;
    return d->c ? decompose(d->c, out, cap, n) : 0;
}

/* The primary composite of a + b, or 0. */
static uint32_t compose(uint32_t a, uint32_t b)
{
    if (a >= HG_LBASE && a < HG_LBASE + HG_LCOUNT && b >= HG_VBASE && b < HG_VBASE + HG_VCOUNT)
        return HG_SBASE + ((a - HG_LBASE) * HG_VCOUNT + (b - HG_VBASE)) * HG_TCOUNT;
    if (a >= HG_SBASE && a < HG_SBASE + HG_SCOUNT && (a - HG_SBASE) % HG_TCOUNT == 0 &&
        b > HG_TBASE && b < HG_TBASE + HG_TCOUNT)
        return a + (b - HG_TBASE);
    size_t lo = 0, hi = eng_uc_compose_map_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const eng_uc_pair *p = &eng_uc_compose_map[mid];
        if (p->a < a || (p->a == a && p->b < b))
            lo = mid + 1;
        else if (p->a > a || p->b > b)
            hi = mid;
        else
            return p->c;
    }
    return 0;
}

typedef struct cc_item {
    uint32_t cp;
    int ccc;
    size_t pos;
} cc_item;

static int cc_item_cmp(const void *pa, const void *pb)
{
    const cc_item *a = pa, *b = pb;
    if (a->ccc != b->ccc)
        return a->ccc < b->ccc ? -1 : 1;
    return a->pos < b->pos ? -1 : (a->pos > b->pos); /* stable */
}

/* Canonical ordering: stable sort of every run of non-starters by combining class. */
static int reorder(uint32_t *v, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (eng_uc_ccc(v[i]) == 0) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && eng_uc_ccc(v[j]) != 0)
            j++;
        size_t len = j - i;
        if (len > 1) {
            cc_item *tmp = malloc(len * sizeof *tmp);
            if (!tmp)
                return -1;
            for (size_t k = 0; k < len; k++)
                tmp[k] = (cc_item){v[i + k], eng_uc_ccc(v[i + k]), k};
            qsort(tmp, len, sizeof *tmp, cc_item_cmp);
            for (size_t k = 0; k < len; k++)
                v[i + k] = tmp[k].cp;
            free(tmp);
        }
        i = j;
    }
    return 0;
}

int eng_uc_nfc(const uint32_t *cps, size_t n, uint32_t *out, size_t *out_n)
{
    size_t cap = *out_n, m = 0;
    for (size_t i = 0; i < n; i++)
        if (decompose(cps[i], out, cap, &m) != 0)
            return -1;
    if (reorder(out, m) != 0)
        return -1;
    /* Compose in place: k is the write index, starter the index of the last starter written. */
    size_t k = 0;
    long starter = -1;
    int last_cc = 0;
    for (size_t i = 0; i < m; i++) {
        uint32_t c = out[i];
        int cc = eng_uc_ccc(c);
        if (starter >= 0) {
            int adjacent = (size_t)starter == k - 1;
            if (adjacent || (last_cc != 0 && last_cc < cc)) {
                uint32_t comp = compose(out[starter], c);
                if (comp) {
                    out[starter] = comp;
                    continue;
                }
            }
        }
        if (cc == 0)
            starter = (long)k;
        last_cc = cc;
        out[k++] = c;
    }
    *out_n = k;
    return 0;
}

/* ---- grapheme clusters ---- */

static int is_control_like(eng_uc_gcb g)
{
    return g == ENG_UC_GCB_CONTROL || g == ENG_UC_GCB_CR || g == ENG_UC_GCB_LF;
}

size_t eng_uc_grapheme_len(const uint32_t *cps, size_t n)
{
    eng_uc_gcb prev = eng_uc_gcb_of(cps[0]);
    int ri_run = prev == ENG_UC_GCB_RI;
    /* GB11 state: 1 after ExtPict Extend*, 2 after ExtPict Extend* ZWJ. */
    int emoji = eng_uc_is_extpict(cps[0]) ? 1 : 0;
    size_t i = 1;
    for (; i < n; i++) {
        eng_uc_gcb cur = eng_uc_gcb_of(cps[i]);
        int ep = eng_uc_is_extpict(cps[i]);
        int join;
        if (prev == ENG_UC_GCB_CR && cur == ENG_UC_GCB_LF)
            join = 1; /* GB3 */
        else if (is_control_like(prev) || is_control_like(cur))
            join = 0; /* GB4, GB5 */
        else if (prev == ENG_UC_GCB_L && (cur == ENG_UC_GCB_L || cur == ENG_UC_GCB_V ||
                                          cur == ENG_UC_GCB_LV || cur == ENG_UC_GCB_LVT))
            join = 1; /* GB6 */
        else if ((prev == ENG_UC_GCB_LV || prev == ENG_UC_GCB_V) &&
                 (cur == ENG_UC_GCB_V || cur == ENG_UC_GCB_T))
            join = 1; /* GB7 */
        else if ((prev == ENG_UC_GCB_LVT || prev == ENG_UC_GCB_T) && cur == ENG_UC_GCB_T)
            join = 1; /* GB8 */
        else if (cur == ENG_UC_GCB_EXTEND || cur == ENG_UC_GCB_ZWJ || cur == ENG_UC_GCB_SPACINGMARK)
            join = 1; /* GB9, GB9a */
        else if (prev == ENG_UC_GCB_PREPEND)
            join = 1; /* GB9b */
        else if (emoji == 2 && ep)
            join = 1; /* GB11 */
        else if (prev == ENG_UC_GCB_RI && cur == ENG_UC_GCB_RI && (ri_run & 1))
            join = 1; /* GB12, GB13 */
        else
            join = 0; /* GB999 */
        if (!join)
            break;
        ri_run = cur == ENG_UC_GCB_RI ? ri_run + 1 : 0;
        if (ep)
            emoji = 1;
        else if (emoji == 1 && cur == ENG_UC_GCB_EXTEND)
            emoji = 1;
        else if (emoji == 1 && cur == ENG_UC_GCB_ZWJ)
            emoji = 2;
        else
            emoji = 0;
        prev = cur;
    }
    return i;
}
