/*
 * tokenizer_t5.c - the Unigram model of SentencePiece tokenizers (T5), as tokenizers runs it.
 *
 * A word (one pre-tokenized piece, e.g. "▁photo") is segmented by Viterbi over a byte trie of
 * the pieces: at each character boundary every piece that starts there is a candidate with its
 * log-probability score; a character no single-character piece covers gets the unknown piece
 * with score min(score) - 10 (sentencepiece's kUnkPenalty). Ties keep the first candidate found
 * (shorter pieces are found first). Adjacent unknown characters are fused into one <unk>.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/text/tokenizer_internal.h"
#include "engine/text/unicode.h"

struct tok_unigram {
    const char **piece;
    size_t *piece_n;
    double *score;
    int32_t n;
    tok_strmap ids;   /* piece -> id (the last of duplicates, as tokenizers' HashMap) */
    tok_u64map edges; /* (node << 8 | byte) -> (child, unused) */
    int32_t *node_id; /* id of the piece ending at a node, -1 */
    size_t n_nodes, cap_nodes;
    double min_score;
    int32_t unk_id;
};

static int32_t new_node(tok_unigram *u)
{
    if (u->n_nodes == u->cap_nodes) {
        size_t cap = u->cap_nodes ? u->cap_nodes * 2 : 4096;
        int32_t *v = realloc(u->node_id, cap * sizeof *v);
        if (!v)
            return -1;
        u->node_id = v;
        u->cap_nodes = cap;
    }
    u->node_id[u->n_nodes] = -1;
    return (int32_t)u->n_nodes++;
}

static int trie_insert(tok_unigram *u, const char *s, size_t n, int32_t id)
{
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t key = (uint64_t)node << 8 | (unsigned char)s[i];
        const tok_u64map_slot *e = tok_u64map_get(&u->edges, key);
        if (e) {
            node = e->a;
            continue;
        }
        int32_t child = new_node(u);
        if (child < 0 || tok_u64map_put(&u->edges, key, child, 0) != 0)
            return ENG_ENOMEM;
        node = child;
    }
    if (n)
        u->node_id[node] = id;
    return 0;
}

void tok_unigram_free(tok_unigram *u)
{
    if (!u)
        return;
    free(u->piece);
    free(u->piece_n);
    free(u->score);
    tok_strmap_free(&u->ids);
    tok_u64map_free(&u->edges);
    free(u->node_id);
    free(u);
}

int tok_unigram_from_json(tok_unigram **out, json_t *model, tok_arena *a, eng_error *err)
{
    static const char label[] = "model";
    json_t *vocab = json_object_get(model, "vocab");
    json_t *unk = json_object_get(model, "unk_id");
    *out = NULL;
    if (!json_is_array(vocab) || json_array_size(vocab) == 0 || json_array_size(vocab) >= INT32_MAX)
        return eng_error_set(err, ENG_EFORMAT, "%s: Unigram \"vocab\" must be a non-empty array "
                             "of [piece, score]", label);
    if (json_is_true(json_object_get(model, "byte_fallback")))
        return eng_error_set(err, ENG_EUNSUPPORTED, "%s: Unigram byte_fallback is not supported",
                             label);
    if (!json_is_integer(unk) || json_integer_value(unk) < 0 ||
        (size_t)json_integer_value(unk) >= json_array_size(vocab))
        return eng_error_set(err, ENG_EFORMAT, "%s: Unigram \"unk_id\" must be an index into "
                             "the vocabulary", label);
    tok_unigram *u = calloc(1, sizeof *u);
    if (!u)
        return eng_error_set(err, ENG_ENOMEM, "%s: out of memory", label);
    u->n = (int32_t)json_array_size(vocab);
    u->unk_id = (int32_t)json_integer_value(unk);
    u->piece = malloc(u->n * sizeof *u->piece);
    u->piece_n = malloc(u->n * sizeof *u->piece_n);
    u->score = malloc(u->n * sizeof *u->score);
    if (!u->piece || !u->piece_n || !u->score || new_node(u) != 0)
        goto nomem;
    u->min_score = INFINITY;
    for (int32_t i = 0; i < u->n; i++) {
        json_t *e = json_array_get(vocab, (size_t)i);
        json_t *p = json_array_get(e, 0), *sc = json_array_get(e, 1);
        if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_string(p) ||
            !json_is_number(sc)) {
            tok_unigram_free(u);
            return eng_error_set(err, ENG_EFORMAT, "%s: vocab entry %d is not [piece, score]",
                                 label, (int)i);
        }
        size_t n = json_string_length(p);
        const char *s = tok_arena_strndup(a, json_string_value(p), n);
        if (!s)
            goto nomem;
        u->piece[i] = s;
        u->piece_n[i] = n;
        u->score[i] = json_number_value(sc);
        if (u->score[i] < u->min_score)
            u->min_score = u->score[i];
        if (tok_strmap_put(&u->ids, s, n, i) != 0 || trie_insert(u, s, n, i) != 0)
            goto nomem;
    }
    /* A duplicated piece resolves to its last id in the trie too. */
    for (size_t k = 0; k < u->n_nodes; k++)
        if (u->node_id[k] >= 0)
            tok_strmap_get(&u->ids, u->piece[u->node_id[k]], u->piece_n[u->node_id[k]],
                           &u->node_id[k]);
    *out = u;
    return 0;
nomem:
    tok_unigram_free(u);
    return eng_error_set(err, ENG_ENOMEM, "%s: out of memory", label);
}

int tok_unigram_token_id(const tok_unigram *u, const char *s, size_t n, int32_t *id)
{
    return tok_strmap_get(&u->ids, s, n, id);
}

int32_t tok_unigram_vocab_size(const tok_unigram *u)
{
    return u->n;
}

typedef struct best {
    double score;
    size_t start; /* SIZE_MAX: not reached yet */
    int32_t id;
} best;

static void relax(best *b, size_t start, double score, int32_t id)
{
    if (b->start == SIZE_MAX || score > b->score) {
        b->score = score;
        b->start = start;
        b->id = id;
    }
}

/* Appends the id of s[b..e) as tokenizers' Unigram::tokenize does (a fused unknown run is unk). */
static int emit(const tok_unigram *u, const char *s, size_t b, size_t e, int32_t **ids,
                size_t *n_ids, size_t *cap)
{
    int32_t id;
    if (!tok_strmap_get(&u->ids, s + b, e - b, &id))
        id = u->unk_id;
    return tok_ids_push(ids, n_ids, cap, id);
}

int tok_unigram_encode_word(const tok_unigram *u, const char *s, size_t n, int32_t **ids,
                            size_t *n_ids, size_t *cap)
{
    if (n == 0)
        return 0;
    best *bp = malloc((n + 1) * sizeof *bp);
    size_t *cuts = malloc((n + 1) * sizeof *cuts);
    int rc = ENG_ENOMEM;
    if (!bp || !cuts)
        goto done;
    for (size_t i = 0; i <= n; i++)
        bp[i] = (best){0.0, SIZE_MAX, -1};
    bp[0].start = 0;
    double unk_score = u->min_score - 10.0;
    for (size_t st = 0; st < n;) {
        uint32_t cp;
        size_t mblen = eng_utf8_decode(s + st, n - st, &cp);
        double here = bp[st].score;
        int single = 0;
        int32_t node = 0;
        for (size_t i = st; i < n; i++) {
            const tok_u64map_slot *e =
                tok_u64map_get(&u->edges, (uint64_t)node << 8 | (unsigned char)s[i]);
            if (!e)
                break;
            node = e->a;
            int32_t id = u->node_id[node];
            if (id < 0)
                continue;
            relax(&bp[i + 1], st, u->score[id] + here, id);
            if (i + 1 - st == mblen)
                single = 1;
        }
        if (!single)
            relax(&bp[st + mblen], st, unk_score + here, u->unk_id);
        st += mblen;
    }
    /* Walk back from the end; cuts[] collects boundaries, unknown runs fused. */
    size_t nc = 0, e = n;
    cuts[nc++] = n;
    while (e > 0) {
        size_t st = bp[e].start;
        int unk = bp[e].id == u->unk_id;
        int prev_unk = st > 0 && bp[st].id == u->unk_id;
        if (!(unk && prev_unk))
            cuts[nc++] = st;
        e = st;
    }
    rc = 0;
    for (size_t k = nc - 1; k > 0; k--)
        ENG_TRY_DONE(emit(u, s, cuts[k], cuts[k - 1], ids, n_ids, cap));
done:
    free(bp);
    free(cuts);
    return rc;
}
