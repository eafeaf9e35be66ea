/*
 * tokenizer.c - the tokenizer front: reading a tokenizer folder (which files, which kind, the
 * special tokens of its configs) and encoding (added tokens, normalizers, pre-tokenizers, model,
 * truncation, special tokens, padding).
 *
 * Encoding follows tokenizers' Tokenizer::encode: added tokens that are not "normalized" are cut
 * out of the raw text first; each remaining chunk is normalized on its own, then "normalized"
 * added tokens are cut out of it; the pre-tokenizers split what is left into words and the model
 * turns each word into ids. Truncation keeps the first max_len - (specials) ids, so encoding
 * stops as soon as that many ids exist: a 1 MB prompt costs its normalization, not its BPE.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/text/tokenizer_internal.h"
#include "engine/core/fsutil.h"
#include "engine/text/unicode.h"

/* ---- added tokens ---- */

int tok_lookup(const eng_tokenizer *t, const char *s, int32_t *id)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < t->n_added; i++) {
        if (t->added[i].n == n && memcmp(t->added[i].content, s, n) == 0) {
            *id = t->added[i].id;
            return 1;
        }
    }
    if (t->bpe)
        return tok_bpe_token_id(t->bpe, s, n, id);
    if (t->unigram)
        return tok_unigram_token_id(t->unigram, s, n, id);
    return 0;
}

int tok_add_token(eng_tokenizer *t, const char *content, int32_t id, int lstrip, int rstrip,
                  int single_word, int normalized, int special, eng_error *err)
{
    size_t n = strlen(content);
    if (n == 0)
        return eng_error_set(err, ENG_EFORMAT, "an added token with empty content");
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].n == n && memcmp(t->added[i].content, content, n) == 0)
            return 0;
    if (t->n_added == t->cap_added) {
        size_t cap = t->cap_added ? t->cap_added * 2 : 16;
        tok_added *v = realloc(t->added, cap * sizeof *v);
        if (!v)
            return eng_error_set(err, ENG_ENOMEM, "added tokens: out of memory");
        t->added = v;
        t->cap_added = cap;
    }
    const char *c = tok_arena_strndup(&t->arena, content, n);
    if (!c)
        return eng_error_set(err, ENG_ENOMEM, "added tokens: out of memory");
    t->added[t->n_added++] = (tok_added){c, n, c, n, id, lstrip, rstrip, single_word, normalized,
                                         special};
    if (id >= t->vocab_size)
        t->vocab_size = id + 1;
    return 0;
}

/* A token value of a config: "text" or {"content": "text", "lstrip": ..., ...}. */
static int add_config_token(eng_tokenizer *t, json_t *v, int32_t id, const char *label,
                            eng_error *err)
{
    const char *content = json_is_string(v) ? json_string_value(v)
                                            : json_string_value(json_object_get(v, "content"));
    if (!content) {
        if (json_is_null(v))
            return 0;
        return eng_error_set(err, ENG_EFORMAT, "%s: a special token is neither a string nor "
                             "{\"content\": ...}", label);
    }
#define FLAG(k, d)                                                                               \
    (json_is_boolean(json_object_get(v, k)) ? json_is_true(json_object_get(v, k)) : (d))
    if (id < 0 && !tok_lookup(t, content, &id))
        id = t->vocab_size; /* transformers appends a token the vocabulary lacks */
    return tok_add_token(t, content, id, FLAG("lstrip", 0), FLAG("rstrip", 0),
                         FLAG("single_word", 0), FLAG("normalized", 0), FLAG("special", 1), err);
#undef FLAG
}

static const char *const special_keys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                           "pad_token", "cls_token", "mask_token"};

static int add_config_tokens(eng_tokenizer *t, json_t *cfg, const char *label, eng_error *err)
{
    const char *k;
    json_t *v;
    json_t *dec = json_object_get(cfg, "added_tokens_decoder");
    json_object_foreach(dec, k, v) {
        char *end;
        errno = 0;
        long id = strtol(k, &end, 10);
        if (*end || errno || id < 0 || id >= INT32_MAX)
            return eng_error_set(err, ENG_EFORMAT, "%s: added_tokens_decoder key \"%s\" is not "
                                 "an id", label, k);
        ENG_TRY(add_config_token(t, v, (int32_t)id, label, err));
    }
    for (size_t i = 0; i < sizeof special_keys / sizeof special_keys[0]; i++) {
        json_t *tok = json_object_get(cfg, special_keys[i]);
        if (tok)
            ENG_TRY(add_config_token(t, tok, -1, label, err));
    }
    static const char *const lists[] = {"additional_special_tokens", "extra_special_tokens"};
    for (size_t i = 0; i < 2; i++) {
        json_t *l = json_object_get(cfg, lists[i]), *e;
        size_t j;
        if (json_is_array(l)) {
            json_array_foreach(l, j, e) ENG_TRY(add_config_token(t, e, -1, label, err));
        } else if (json_is_object(l)) {
            json_object_foreach(l, k, e) ENG_TRY(add_config_token(t, e, -1, label, err));
        }
    }
    return 0;
}

/* The content of a config's token key, or NULL. */
static const char *config_token(json_t *cfg, const char *key)
{
    json_t *v = json_object_get(cfg, key);
    if (json_is_string(v))
        return json_string_value(v);
    return json_string_value(json_object_get(v, "content"));
}

/* Normalized added tokens are searched for in normalized text, so normalize them once here. */
static int normalize_added(eng_tokenizer *t, eng_error *err)
{
    tok_buf b = {0};
    for (size_t i = 0; i < t->n_added; i++) {
        tok_added *a = &t->added[i];
        if (!a->normalized)
            continue;
        if (tok_normalize(t->norms, t->n_norms, a->content, a->n, &b) != 0) {
            tok_buf_free(&b);
            return eng_error_set(err, ENG_ENOMEM, "added tokens: out of memory");
        }
        char *m = tok_arena_strndup(&t->arena, b.p ? b.p : "", b.n);
        if (!m) {
            tok_buf_free(&b);
            return eng_error_set(err, ENG_ENOMEM, "added tokens: out of memory");
        }
        a->match = m;
        a->match_n = b.n;
    }
    tok_buf_free(&b);
    return 0;
}

/* ---- loading ---- */


/* Loads dir/name as a JSON object into *out (NULL when the file is absent). */
static int load_json(const char *dir, const char *name, json_t **out, eng_error *err)
{
    char path[4096];
    json_error_t je;
    *out = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!eng_is_file(path))
        return 0;
    *out = json_load_file(path, 0, &je);
    if (!*out)
        return eng_error_set(err, ENG_EFORMAT, "%s: line %d: %s", path, je.line, je.text);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return eng_error_set(err, ENG_EFORMAT, "%s: not a JSON object", path);
    }
    return 0;
}

/* Builds t from what tokenizer.json describes (tokenizer_json.c reads it; path names it). */
static int from_desc(eng_tokenizer *t, tok_desc *d, const char *path, eng_error *err)
{
    t->kind = d->kind;
    t->bpe = d->bpe;
    t->unigram = d->unigram;
    t->norms = d->norms;
    t->n_norms = d->n_norms;
    t->pretoks = d->pretoks;
    t->n_pretoks = d->n_pretoks;
    t->prefix = d->prefix;
    t->n_prefix = d->n_prefix;
    t->suffix = d->suffix;
    t->n_suffix = d->n_suffix;
    for (size_t i = 0; i < d->n_added; i++) {
        const tok_added *a = &d->added[i];
        int rc = tok_add_token(t, a->content, a->id, a->lstrip, a->rstrip, a->single_word,
                               a->normalized, a->special, err);
        if (rc) {
            eng_error_prefix(err, "%s", path);
            return rc;
        }
    }
    return 0;
}

static int load_model(eng_tokenizer *t, const char *dir, eng_error *err)
{
    char p1[4096], p2[4096];
    snprintf(p1, sizeof p1, "%s/tokenizer.json", dir);
    if (eng_is_file(p1)) {
        json_t *root;
        tok_desc d;
        ENG_TRY(load_json(dir, "tokenizer.json", &root, err));
        int rc = tok_json_load(&d, root, p1, &t->arena, err);
        json_decref(root);
        ENG_TRY(rc);
        return from_desc(t, &d, p1, err);
    }
    snprintf(p1, sizeof p1, "%s/vocab.json", dir);
    snprintf(p2, sizeof p2, "%s/merges.txt", dir);
    if (eng_is_file(p1) && eng_is_file(p2)) {
        t->kind = ENG_TOKENIZER_BPE;
        ENG_TRY(tok_bpe_from_files(&t->bpe, p1, p2, &t->arena, err));
        return tok_clip_default_pipeline(t, err);
    }
    snprintf(p1, sizeof p1, "%s/spiece.model", dir);
    if (eng_is_file(p1))
        return eng_error_set(err, ENG_EUNSUPPORTED, "%s: only spiece.model, no tokenizer.json "
                             "(save the tokenizer with transformers to get one)", dir);
    return eng_error_set(err, ENG_ENOTFOUND, "%s: no tokenizer.json, nor vocab.json with "
                         "merges.txt", dir);
}

/* The vocab.json layout has no post-processor in a file: CLIP puts bos and eos around. */
static int clip_specials(eng_tokenizer *t, json_t *cfg, json_t *map, eng_error *err)
{
    const char *names[3] = {"bos_token", "eos_token", "unk_token"};
    const char *defs[3] = {"<|startoftext|>", "<|endoftext|>", "<|endoftext|>"};
    int32_t ids[3];
    for (int i = 0; i < 3; i++) {
        const char *s = config_token(cfg, names[i]);
        if (!s)
            s = config_token(map, names[i]);
        if (!s)
            s = defs[i];
        if (!tok_lookup(t, s, &ids[i]))
            return eng_error_set(err, ENG_EFORMAT, "%s \"%s\" is not in the vocabulary",
                                 names[i], s);
    }
    t->prefix = tok_arena_alloc(&t->arena, sizeof *t->prefix);
    t->suffix = tok_arena_alloc(&t->arena, sizeof *t->suffix);
    if (!t->prefix || !t->suffix)
        return eng_error_set(err, ENG_ENOMEM, "out of memory");
    t->prefix[0] = ids[0];
    t->suffix[0] = ids[1];
    t->n_prefix = t->n_suffix = 1;
    tok_bpe_set_unk(t->bpe, ids[2]);
    return 0;
}

/*
 * The post-processor's ids are numbers in tokenizer.json, checked against nothing when they are
 * read (the added tokens and configs that fix the vocabulary size come later): each must name a
 * token, or encoding would hand the text encoders an id past their embedding table.
 */
static int check_special_ids(const eng_tokenizer *t, eng_error *err)
{
    for (size_t i = 0; i < t->n_prefix + t->n_suffix; i++) {
        int32_t id = i < t->n_prefix ? t->prefix[i] : t->suffix[i - t->n_prefix];
        if (id < 0 || id >= t->vocab_size)
            return eng_error_set(err, ENG_EFORMAT, "tokenizer.json: post_processor: special "
                                 "token id %d is outside the vocabulary (%d tokens)",
                                 (int)id, (int)t->vocab_size);
    }
    return 0;
}

int eng_tokenizer_load(eng_tokenizer **out, const char *dir, eng_error *err)
{
    json_t *cfg = NULL, *map = NULL;
    int from_vocab;
    char probe[4096];
    *out = NULL;
    if (!dir)
        return eng_error_set(err, ENG_EINVAL, "eng_tokenizer_load: no folder");
    eng_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return eng_error_set(err, ENG_ENOMEM, "tokenizer: out of memory");
    snprintf(probe, sizeof probe, "%s/tokenizer.json", dir);
    from_vocab = !eng_is_file(probe);
    int rc = 0;
    ENG_TRY_DONE(load_model(t, dir, err));
    ENG_TRY_DONE(load_json(dir, "tokenizer_config.json", &cfg, err));
    ENG_TRY_DONE(load_json(dir, "special_tokens_map.json", &map, err));
    int32_t model_n = t->bpe ? tok_bpe_vocab_size(t->bpe) : tok_unigram_vocab_size(t->unigram);
    if (model_n > t->vocab_size)
        t->vocab_size = model_n;
    ENG_TRY_DONE(add_config_tokens(t, cfg, "tokenizer_config.json", err));
    ENG_TRY_DONE(add_config_tokens(t, map, "special_tokens_map.json", err));
    if (from_vocab)
        ENG_TRY_DONE(clip_specials(t, cfg, map, err));
    const char *pad = config_token(cfg, "pad_token");
    if (!pad)
        pad = config_token(map, "pad_token");
    if (!pad)
        pad = t->kind == ENG_TOKENIZER_BPE ? "<|endoftext|>" : "<pad>";
    if (!tok_lookup(t, pad, &t->pad_id))
        ENG_TRY_DONE(eng_error_set(err, ENG_EFORMAT, "pad token \"%s\" is not in the vocabulary",
                                   pad));
    json_t *mml = json_object_get(cfg, "model_max_length");
    if (json_is_integer(mml) && json_integer_value(mml) > 0 && json_integer_value(mml) < INT32_MAX)
        t->model_max_length = (int)json_integer_value(mml);
    ENG_TRY_DONE(normalize_added(t, err));
    ENG_TRY_DONE(check_special_ids(t, err));
    *out = t;
done:
    json_decref(cfg);
    json_decref(map);
    if (rc) {
        eng_tokenizer_free(t);
        if (err && strncmp(err->msg, dir, strlen(dir)) != 0)
            eng_error_prefix(err, "%s", dir);
    }
    return rc;
}

void eng_tokenizer_free(eng_tokenizer *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_norms; i++)
        if (t->norms[i].kind == TOK_NORM_PRECOMPILED)
            tok_charsmap_free(t->norms[i].charsmap);
    tok_bpe_free(t->bpe);
    tok_unigram_free(t->unigram);
    free(t->added);
    tok_arena_free(&t->arena);
    free(t);
}

eng_tokenizer_kind eng_tokenizer_kind_of(const eng_tokenizer *t)
{
    return t->kind;
}

int eng_tokenizer_model_max_length(const eng_tokenizer *t)
{
    return t->model_max_length;
}

int32_t eng_tokenizer_pad_id(const eng_tokenizer *t)
{
    return t->pad_id;
}

int32_t eng_tokenizer_vocab_size(const eng_tokenizer *t)
{
    return t->vocab_size;
}
