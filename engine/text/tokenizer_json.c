/*
 * tokenizer_json.c - reads a Hugging Face tokenizer.json into a tok_desc (tokenizer_internal.h):
 * the model (BPE or Unigram), normalizer, pre-tokenizer, post-processor and added tokens, as
 * plain data that tokenizer.c builds the tokenizer from.
 *
 * Supported components are those of the SD3 tokenizers and their usual variants:
 *   normalizers     Sequence, NFC, Lowercase, Replace, Strip, Prepend, Precompiled
 *   pre-tokenizers  Sequence, WhitespaceSplit, Metaspace, ByteLevel, Split (CLIP's pattern)
 *   post-processors TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel (no ids),
 *                   Sequence of these
 * Anything else is ENG_EUNSUPPORTED with its type named, never silently skipped.
 */
#include <string.h>

#include "engine/text/tokenizer_internal.h"
#include "engine/text/unicode.h"

/* The Split pattern transformers' CLIPTokenizer uses (TOK_PRE_SPLIT_CLIP). */
static const char clip_pattern[] =
    "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|"
    "[^\\s\\p{L}\\p{N}]+";

static const char *type_of(json_t *o)
{
    return json_string_value(json_object_get(o, "type"));
}

static int bool_or(json_t *o, const char *key, int def)
{
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

/* ---- normalizers ---- */

static int count_norms(json_t *n)
{
    const char *type = type_of(n);
    if (type && strcmp(type, "Sequence") == 0) {
        int total = 0;
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(n, "normalizers"), i, c) total += count_norms(c);
        return total;
    }
    return 1;
}

static int parse_norm(tok_desc *t, json_t *n, tok_arena *a, eng_error *err)
{
    const char *type = type_of(n);
    if (!json_is_object(n) || !type)
        return eng_error_set(err, ENG_EFORMAT, "a normalizer without \"type\"");
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(n, "normalizers");
        if (!json_is_array(list))
            return eng_error_set(err, ENG_EFORMAT, "Sequence normalizer without "
                                 "\"normalizers\"");
        size_t i;
        json_t *c;
        json_array_foreach(list, i, c) {
            ENG_TRY(parse_norm(t, c, a, err));
        }
        return 0;
    }
    tok_norm *nm = &t->norms[t->n_norms];
    memset(nm, 0, sizeof *nm);
    if (strcmp(type, "NFC") == 0) {
        nm->kind = TOK_NORM_NFC;
    } else if (strcmp(type, "Lowercase") == 0) {
        nm->kind = TOK_NORM_LOWERCASE;
    } else if (strcmp(type, "Strip") == 0) {
        nm->kind = TOK_NORM_STRIP;
        nm->left = bool_or(n, "strip_left", 0);
        nm->right = bool_or(n, "strip_right", 0);
    } else if (strcmp(type, "Replace") == 0 || strcmp(type, "Prepend") == 0) {
        int rep = type[0] == 'R';
        json_t *text = json_object_get(n, rep ? "content" : "prepend");
        if (!json_is_string(text))
            return eng_error_set(err, ENG_EFORMAT, "%s normalizer without its "
                                 "string", type);
        nm->kind = rep ? TOK_NORM_REPLACE : TOK_NORM_PREPEND;
        nm->text_n = json_string_length(text);
        nm->text = tok_arena_strndup(a, json_string_value(text), nm->text_n);
        if (!nm->text)
            return eng_error_set(err, ENG_ENOMEM, "out of memory");
        if (rep)
            ENG_TRY(tok_pattern_parse(&nm->pattern, json_object_get(n, "pattern"), a,
                                      "Replace normalizer", err));
    } else if (strcmp(type, "Precompiled") == 0) {
        json_t *map = json_object_get(n, "precompiled_charsmap");
        nm->kind = TOK_NORM_PRECOMPILED;
        if (json_is_string(map)) {
            int rc = tok_charsmap_load(&nm->charsmap, json_string_value(map),
                                       json_string_length(map), err);
            if (rc != 0) {
                eng_error_prefix(err, "Precompiled normalizer");
                return rc;
            }
        } else if (!json_is_null(map)) {
            return eng_error_set(err, ENG_EFORMAT, "Precompiled normalizer "
                                 "without \"precompiled_charsmap\"");
        }
    } else {
        return eng_error_set(err, ENG_EUNSUPPORTED, "normalizer type \"%s\" is "
                             "not supported", type);
    }
    t->n_norms++;
    return 0;
}

/* ---- pre-tokenizers ---- */

static int count_pretoks(json_t *p)
{
    const char *type = type_of(p);
    if (type && strcmp(type, "Sequence") == 0) {
        int total = 0;
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(p, "pretokenizers"), i, c) total += count_pretoks(c);
        return total;
    }
    return 1;
}

static int parse_metaspace(tok_pretok *pt, json_t *p, eng_error *err)
{
    json_t *rep = json_object_get(p, "replacement");
    json_t *scheme = json_object_get(p, "prepend_scheme");
    json_t *aps = json_object_get(p, "add_prefix_space");
    uint32_t cp;
    if (!json_is_string(rep) || json_string_length(rep) == 0 ||
        eng_utf8_decode(json_string_value(rep), json_string_length(rep), &cp) !=
            json_string_length(rep))
        return eng_error_set(err, ENG_EFORMAT, "Metaspace \"replacement\" must be "
                             "one character");
    pt->kind = TOK_PRE_METASPACE;
    pt->replacement = cp;
    pt->split = bool_or(p, "split", 1);
    pt->prepend_scheme = TOK_PREPEND_ALWAYS;
    if (json_is_string(scheme)) {
        const char *s = json_string_value(scheme);
        if (strcmp(s, "always") == 0)
            pt->prepend_scheme = TOK_PREPEND_ALWAYS;
        else if (strcmp(s, "first") == 0)
            pt->prepend_scheme = TOK_PREPEND_FIRST;
        else if (strcmp(s, "never") == 0)
            pt->prepend_scheme = TOK_PREPEND_NEVER;
        else
            return eng_error_set(err, ENG_EFORMAT, "Metaspace prepend_scheme "
                                 "\"%s\"", s);
    }
    /* Older files: add_prefix_space false means never (tokenizers refuses a contradiction). */
    if (json_is_false(aps)) {
        if (json_is_string(scheme) && pt->prepend_scheme != TOK_PREPEND_NEVER)
            return eng_error_set(err, ENG_EFORMAT, "Metaspace add_prefix_space "
                                 "false contradicts prepend_scheme");
        pt->prepend_scheme = TOK_PREPEND_NEVER;
    }
    return 0;
}

static int parse_pretok(tok_desc *t, json_t *p, eng_error *err)
{
    const char *type = type_of(p);
    if (!json_is_object(p) || !type)
        return eng_error_set(err, ENG_EFORMAT, "a pre_tokenizer without \"type\"");
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(p, "pretokenizers");
        if (!json_is_array(list))
            return eng_error_set(err, ENG_EFORMAT, "Sequence pre_tokenizer "
                                 "without \"pretokenizers\"");
        size_t i;
        json_t *c;
        json_array_foreach(list, i, c) {
            ENG_TRY(parse_pretok(t, c, err));
        }
        return 0;
    }
    tok_pretok *pt = &t->pretoks[t->n_pretoks];
    memset(pt, 0, sizeof *pt);
    if (strcmp(type, "WhitespaceSplit") == 0) {
        pt->kind = TOK_PRE_WHITESPACE_SPLIT;
    } else if (strcmp(type, "Metaspace") == 0) {
        ENG_TRY(parse_metaspace(pt, p, err));
    } else if (strcmp(type, "ByteLevel") == 0) {
        pt->kind = TOK_PRE_BYTELEVEL;
        pt->add_prefix_space = bool_or(p, "add_prefix_space", 1);
        pt->use_regex = bool_or(p, "use_regex", 1);
    } else if (strcmp(type, "Split") == 0) {
        const char *re = json_string_value(json_object_get(json_object_get(p, "pattern"), "Regex"));
        const char *behavior = json_string_value(json_object_get(p, "behavior"));
        if (!re || strcmp(re, clip_pattern) != 0 || !behavior ||
            strcmp(behavior, "Removed") != 0 || !bool_or(p, "invert", 0))
            return eng_error_set(err, ENG_EUNSUPPORTED, "Split pre_tokenizer is "
                                 "supported only with CLIP's pattern, Removed, inverted");
        pt->kind = TOK_PRE_SPLIT_CLIP;
    } else {
        return eng_error_set(err, ENG_EUNSUPPORTED, "pre_tokenizer type \"%s\" "
                             "is not supported", type);
    }
    t->n_pretoks++;
    return 0;
}

/* ---- post-processors ---- */

static int push_special(int32_t **v, size_t *n, tok_arena *a, int32_t id)
{
    int32_t *nv = tok_arena_alloc(a, (*n + 1) * sizeof *nv);
    if (!nv)
        return -1;
    if (*n)
        memcpy(nv, *v, *n * sizeof *nv);
    nv[(*n)++] = id;
    *v = nv;
    return 0;
}

/* ["<s>", 0]-style pair of Roberta/BertProcessing. */
static int pair_id(json_t *pair, int32_t *id)
{
    json_t *v = json_array_get(pair, 1);
    if (!json_is_array(pair) || !json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) >= INT32_MAX)
        return -1;
    *id = (int32_t)json_integer_value(v);
    return 0;
}

static int parse_template(tok_desc *t, json_t *p, tok_arena *a, eng_error *err)
{
    json_t *single = json_object_get(p, "single");
    json_t *specials = json_object_get(p, "special_tokens");
    int seen_a = 0;
    size_t i;
    json_t *item;
    if (!json_is_array(single))
        return eng_error_set(err, ENG_EFORMAT, "TemplateProcessing without a "
                             "\"single\" template");
    json_array_foreach(single, i, item) {
        json_t *seq = json_object_get(item, "Sequence");
        json_t *sp = json_object_get(item, "SpecialToken");
        if (seq) {
            if (seen_a++)
                return eng_error_set(err, ENG_EUNSUPPORTED, "a template with "
                                     "the sequence twice");
            continue;
        }
        const char *name = json_string_value(json_object_get(sp, "id"));
        json_t *ids = json_object_get(name ? json_object_get(specials, name) : NULL, "ids");
        if (!name || !json_is_array(ids))
            return eng_error_set(err, ENG_EFORMAT, "template item %zu names no "
                                 "special token with ids", i);
        size_t k;
        json_t *idv;
        json_array_foreach(ids, k, idv) {
            if (!json_is_integer(idv) || json_integer_value(idv) < 0 ||
                json_integer_value(idv) >= INT32_MAX)
                return eng_error_set(err, ENG_EFORMAT, "special token \"%s\" "
                                     "has a bad id", name);
            int32_t id = (int32_t)json_integer_value(idv);
            if (push_special(seen_a ? &t->suffix : &t->prefix, seen_a ? &t->n_suffix : &t->n_prefix,
                             a, id) != 0)
                return eng_error_set(err, ENG_ENOMEM, "out of memory");
        }
    }
    if (!seen_a)
        return eng_error_set(err, ENG_EFORMAT, "the single template has no $A");
    return 0;
}

static int parse_post(tok_desc *t, json_t *p, tok_arena *a, eng_error *err)
{
    const char *type = type_of(p);
    if (!json_is_object(p) || !type)
        return eng_error_set(err, ENG_EFORMAT, "a post_processor without "
                             "\"type\"");
    if (strcmp(type, "Sequence") == 0) {
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(p, "processors"), i, c) {
            ENG_TRY(parse_post(t, c, a, err));
        }
        return 0;
    }
    if (strcmp(type, "ByteLevel") == 0)
        return 0; /* offsets only */
    if (t->n_prefix || t->n_suffix)
        return eng_error_set(err, ENG_EUNSUPPORTED, "two post-processors that "
                             "both add special tokens");
    if (strcmp(type, "TemplateProcessing") == 0)
        return parse_template(t, p, a, err);
    if (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0) {
        int32_t cls, sep;
        if (pair_id(json_object_get(p, "cls"), &cls) != 0 ||
            pair_id(json_object_get(p, "sep"), &sep) != 0)
            return eng_error_set(err, ENG_EFORMAT, "%s needs \"cls\" and \"sep\" "
                                 "as [token, id]", type);
        if (push_special(&t->prefix, &t->n_prefix, a, cls) != 0 ||
            push_special(&t->suffix, &t->n_suffix, a, sep) != 0)
            return eng_error_set(err, ENG_ENOMEM, "out of memory");
        return 0;
    }
    return eng_error_set(err, ENG_EUNSUPPORTED, "post_processor type \"%s\" is "
                         "not supported", type);
}

/* ---- the whole file ---- */

static int parse_added(tok_desc *d, json_t *list, tok_arena *ar, eng_error *err)
{
    size_t i;
    json_t *a;
    if (!list || json_is_null(list))
        return 0;
    if (!json_is_array(list))
        return eng_error_set(err, ENG_EFORMAT, "\"added_tokens\" must be an array");
    d->added = tok_arena_alloc(ar, (json_array_size(list) + 1) * sizeof *d->added);
    if (!d->added)
        return eng_error_set(err, ENG_ENOMEM, "added tokens: out of memory");
    json_array_foreach(list, i, a) {
        json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= INT32_MAX || !json_is_string(content))
            return eng_error_set(err, ENG_EFORMAT, "added token %zu needs an "
                                 "\"id\" and a \"content\"", i);
        /* As tok_add_token reads it: up to the first NUL. */
        size_t n = strlen(json_string_value(content));
        if (n == 0)
            return eng_error_set(err, ENG_EFORMAT, "an added token with empty content");
        const char *c = tok_arena_strndup(ar, json_string_value(content), n);
        if (!c)
            return eng_error_set(err, ENG_ENOMEM, "added tokens: out of memory");
        d->added[d->n_added++] = (tok_added){
            c, n, c, n, (int32_t)json_integer_value(id), bool_or(a, "lstrip", 0),
            bool_or(a, "rstrip", 0), bool_or(a, "single_word", 0), bool_or(a, "normalized", 0),
            bool_or(a, "special", 0)};
    }
    return 0;
}

static void desc_free(tok_desc *d)
{
    for (size_t i = 0; i < d->n_norms; i++)
        if (d->norms[i].kind == TOK_NORM_PRECOMPILED)
            tok_charsmap_free(d->norms[i].charsmap);
    tok_bpe_free(d->bpe);
    tok_unigram_free(d->unigram);
    *d = (tok_desc){0};
}

int tok_json_load(tok_desc *d, json_t *root, const char *path, tok_arena *a, eng_error *err)
{
    json_t *model = json_object_get(root, "model");
    json_t *norm = json_object_get(root, "normalizer");
    json_t *pre = json_object_get(root, "pre_tokenizer");
    json_t *post = json_object_get(root, "post_processor");
    const char *mtype = type_of(model);
    int rc = 0;
    *d = (tok_desc){0};
    if (!json_is_object(model))
        return eng_error_set(err, ENG_EFORMAT, "%s: no \"model\" object", path);
    /* Files from old tokenizers versions leave the model type out; BPE has merges. */
    if (!mtype)
        mtype = json_object_get(model, "merges") ? "BPE" : "Unigram";
    if (strcmp(mtype, "BPE") == 0) {
        d->kind = ENG_TOKENIZER_BPE;
        ENG_TRY_DONE(tok_bpe_from_json(&d->bpe, model, a, err));
    } else if (strcmp(mtype, "Unigram") == 0) {
        d->kind = ENG_TOKENIZER_UNIGRAM;
        ENG_TRY_DONE(tok_unigram_from_json(&d->unigram, model, a, err));
    } else {
        ENG_TRY_DONE(eng_error_set(err, ENG_EUNSUPPORTED, "model type \"%s\" is not supported",
                                   mtype));
    }
    if (norm && !json_is_null(norm)) {
        d->norms = tok_arena_alloc(a, (size_t)count_norms(norm) * sizeof *d->norms);
        if (!d->norms)
            ENG_TRY_DONE(eng_error_set(err, ENG_ENOMEM, "out of memory"));
        ENG_TRY_DONE(parse_norm(d, norm, a, err));
    }
    if (pre && !json_is_null(pre)) {
        d->pretoks = tok_arena_alloc(a, (size_t)count_pretoks(pre) * sizeof *d->pretoks);
        if (!d->pretoks)
            ENG_TRY_DONE(eng_error_set(err, ENG_ENOMEM, "out of memory"));
        ENG_TRY_DONE(parse_pretok(d, pre, err));
    }
    if (post && !json_is_null(post))
        ENG_TRY_DONE(parse_post(d, post, a, err));
    ENG_TRY_DONE(parse_added(d, json_object_get(root, "added_tokens"), a, err));
done:
    if (rc) {
        desc_free(d);
        eng_error_prefix(err, "%s", path);
    }
    return rc;
}
