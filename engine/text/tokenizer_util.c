/*
 * tokenizer_util.c - the containers the tokenizers are built from: a bump arena, a growable
 * string, two open-addressing hash maps (string -> id for vocabularies, uint64 -> pair for BPE
 * merges and trie edges), piece lists, and the small pattern matcher for Replace normalizers.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/text/tokenizer_internal.h"
#include "engine/text/unicode.h"

/* ---- arena ---- */

struct tok_arena_block {
    tok_arena_block *next;
    size_t used, cap;
    max_align_t data[];
};

#define ARENA_BLOCK (64 * 1024)

void *tok_arena_alloc(tok_arena *a, size_t n)
{
    size_t al = sizeof(max_align_t);
    n = (n + al - 1) / al * al;
    if (n == 0)
        n = al;
    tok_arena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

char *tok_arena_strndup(tok_arena *a, const char *s, size_t n)
{
    char *p = tok_arena_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

void tok_arena_free(tok_arena *a)
{
    tok_arena_block *b = a->head;
    while (b) {
        tok_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

/* ---- growable string ---- */

int tok_buf_put(tok_buf *b, const void *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return ENG_ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

int tok_buf_put_cp(tok_buf *b, uint32_t cp)
{
    char u[4];
    size_t k = eng_utf8_encode(cp, u);
    return tok_buf_put(b, u, k);
}

void tok_buf_free(tok_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* ---- hash maps ---- */

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return (uint32_t)(h ^ (h >> 32));
}

static int strmap_grow(tok_strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    tok_strmap_slot *s = calloc(cap, sizeof *s);
    if (!s)
        return ENG_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        tok_strmap_slot *o = &m->slots[i];
        if (!o->key)
            continue;
        size_t j = o->hash & (cap - 1);
        while (s[j].key)
            j = (j + 1) & (cap - 1);
        s[j] = *o;
    }
    free(m->slots);
    m->slots = s;
    m->cap = cap;
    return 0;
}

int tok_strmap_put(tok_strmap *m, const char *key, size_t klen, int32_t val)
{
    if ((m->len + 1) * 2 > m->cap && strmap_grow(m))
        return ENG_ENOMEM;
    uint32_t h = hash_bytes(key, klen);
    size_t j = h & (m->cap - 1);
    while (m->slots[j].key) {
        tok_strmap_slot *s = &m->slots[j];
        if (s->hash == h && s->klen == klen && memcmp(s->key, key, klen) == 0) {
            s->val = val;
            return 0;
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->slots[j] = (tok_strmap_slot){key, (uint32_t)klen, h, val};
    m->len++;
    return 0;
}

int tok_strmap_get(const tok_strmap *m, const char *key, size_t klen, int32_t *val)
{
    if (!m->cap)
        return 0;
    uint32_t h = hash_bytes(key, klen);
    size_t j = h & (m->cap - 1);
    while (m->slots[j].key) {
        const tok_strmap_slot *s = &m->slots[j];
        if (s->hash == h && s->klen == klen && memcmp(s->key, key, klen) == 0) {
            *val = s->val;
            return 1;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return 0;
}

void tok_strmap_free(tok_strmap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->len = 0;
}

static size_t hash_u64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k;
}

static int u64map_grow(tok_u64map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    tok_u64map_slot *s = malloc(cap * sizeof *s);
    if (!s)
        return ENG_ENOMEM;
    for (size_t i = 0; i < cap; i++)
        s[i].key = UINT64_MAX;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key == UINT64_MAX)
            continue;
        size_t j = hash_u64(m->slots[i].key) & (cap - 1);
        while (s[j].key != UINT64_MAX)
            j = (j + 1) & (cap - 1);
        s[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = s;
    m->cap = cap;
    return 0;
}

int tok_u64map_put(tok_u64map *m, uint64_t key, int32_t a, int32_t b)
{
    if ((m->len + 1) * 2 > m->cap && u64map_grow(m))
        return ENG_ENOMEM;
    size_t j = hash_u64(key) & (m->cap - 1);
    while (m->slots[j].key != UINT64_MAX) {
        if (m->slots[j].key == key) {
            m->slots[j].a = a;
            m->slots[j].b = b;
            return 0;
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->slots[j] = (tok_u64map_slot){key, a, b};
    m->len++;
    return 0;
}

const tok_u64map_slot *tok_u64map_get(const tok_u64map *m, uint64_t key)
{
    if (!m->cap)
        return NULL;
    size_t j = hash_u64(key) & (m->cap - 1);
    while (m->slots[j].key != UINT64_MAX) {
        if (m->slots[j].key == key)
            return &m->slots[j];
        j = (j + 1) & (m->cap - 1);
    }
    return NULL;
}

void tok_u64map_free(tok_u64map *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->len = 0;
}

/* ---- piece and id lists ---- */

int tok_plist_push(tok_plist *l, const char *s, size_t n, int32_t id, int at_start)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        tok_piece *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return ENG_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (tok_piece){s, n, id, at_start};
    return 0;
}

void tok_plist_free(tok_plist *l)
{
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

int tok_ids_push(int32_t **ids, size_t *n, size_t *cap, int32_t id)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        int32_t *v = realloc(*ids, c * sizeof *v);
        if (!v)
            return ENG_ENOMEM;
        *ids = v;
        *cap = c;
    }
    (*ids)[(*n)++] = id;
    return 0;
}

/* ---- patterns ---- */

/* Parses the quantifier at q: sets *min; returns 0, or -1 for anything else. */
static int parse_quant(const char *q, size_t *min)
{
    char *end;
    if (q[0] == 0) {
        *min = 1;
        return 0;
    }
    if ((q[0] == '+' || q[0] == '*') && q[1] == 0) {
        *min = q[0] == '+' ? 1 : 0;
        return 0;
    }
    if (q[0] != '{' || q[1] < '0' || q[1] > '9')
        return -1;
    unsigned long m = strtoul(q + 1, &end, 10);
    /* {m,} is "at least m"; {m} is exactly m, which for a greedy run equals "at least m" only
     * when followed by nothing else, so only {m,} is accepted. */
    if (end[0] != ',' || end[1] != '}' || end[2] != 0 || m > 1000)
        return -1;
    *min = m;
    return 0;
}

int tok_pattern_parse(tok_pattern *p, json_t *obj, tok_arena *a, const char *what, eng_error *err)
{
    json_t *s = json_object_get(obj, "String");
    json_t *r = json_object_get(obj, "Regex");
    memset(p, 0, sizeof *p);
    if (json_is_string(s)) {
        p->kind = TOK_PAT_LITERAL;
        p->lit_n = json_string_length(s);
        p->lit = tok_arena_strndup(a, json_string_value(s), p->lit_n);
        if (!p->lit)
            return eng_error_set(err, ENG_ENOMEM, "%s: out of memory", what);
        if (p->lit_n == 0)
            return eng_error_set(err, ENG_EUNSUPPORTED, "%s: empty pattern", what);
        return 0;
    }
    if (!json_is_string(r))
        return eng_error_set(err, ENG_EFORMAT, "%s: pattern must be {\"String\": ...} or "
                             "{\"Regex\": ...}", what);
    const char *re = json_string_value(r);
    p->kind = TOK_PAT_RUN;
    const char *q;
    if (re[0] == '\\' && re[1] == 's') {
        p->cp = 0;
        q = re + 2;
    } else if (re[0] == '\\' && re[1] && strchr(".\\|()[]{}*+?^$ ", re[1])) {
        p->cp = (unsigned char)re[1];
        q = re + 2;
    } else if (re[0] && !strchr(".\\|()[]{}*+?^$", re[0])) {
        uint32_t cp;
        q = re + eng_utf8_decode(re, strlen(re), &cp);
        p->cp = cp;
    } else {
        q = NULL;
    }
    if (!q || parse_quant(q, &p->min) != 0 || p->min == 0)
        return eng_error_set(err, ENG_EUNSUPPORTED,
                             "%s: regex \"%s\" is not supported (only one character or \\s with "
                             "+ or {m,} is)", what, re);
    return 0;
}

static int atom_at(const tok_pattern *p, const char *s, size_t n, size_t i, size_t *len)
{
    uint32_t cp;
    *len = eng_utf8_decode(s + i, n - i, &cp);
    return p->cp == 0 ? eng_uc_is_space(cp) : cp == p->cp;
}

int tok_pattern_find(const tok_pattern *p, const char *s, size_t n, size_t from, size_t *ms,
                     size_t *me)
{
    if (p->kind == TOK_PAT_LITERAL) {
        if (p->lit_n > n || from > n - p->lit_n)
            return 0;
        const char *hit = memmem(s + from, n - from, p->lit, p->lit_n);
        if (!hit)
            return 0;
        *ms = (size_t)(hit - s);
        *me = *ms + p->lit_n;
        return 1;
    }
    size_t i = from;
    while (i < n) {
        size_t k;
        if (!atom_at(p, s, n, i, &k)) {
            i += k;
            continue;
        }
        /* A greedy run: any start inside a run that is too short gives a shorter one. */
        size_t start = i, count = 0;
        while (i < n && atom_at(p, s, n, i, &k)) {
            i += k;
            count++;
        }
        if (count >= p->min) {
            *ms = start;
            *me = i;
            return 1;
        }
    }
    return 0;
}
