/*
 * config.c - model_index.json and the SD3Transformer2DModel config, with tttd's TTT map
 * (see config.h for the rules and the "ttt" key). The other components' configs are read in
 * config_components.c; the JSON readers are in config_json.c.
 */
#include "engine/io/config.h"
#include "engine/io/config_json.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* ---- model_index.json ---- */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* A component name becomes a folder name: nothing that could leave the model folder. */
static int component_name_ok(const char *s)
{
    return s[0] != '\0' && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 && !strchr(s, '/') &&
           !strchr(s, '\\');
}

static int parse_model_index(eng_cfg *r, void *dst)
{
    eng_model_index *m = dst;
    const char *key;
    json_t *v;

    const char *cls = eng_cfg_str(r, "_class_name", ENG_CFG_REQ, NULL);
    const char *ver = eng_cfg_is_null(r, "_diffusers_version")
                          ? NULL
                          : eng_cfg_str(r, "_diffusers_version", ENG_CFG_OPT, NULL);
    m->max_sequence_length = eng_cfg_int(r, "_tttd_max_sequence_length", ENG_CFG_OPT, 256, 0, 512);
    if (r->rc)
        return r->rc;
    m->class_name = dup_str(cls);
    m->diffusers_version = ver ? dup_str(ver) : NULL;
    m->components = calloc(json_object_size(r->root) + 1, sizeof *m->components);
    if (!m->class_name || (ver && !m->diffusers_version) || !m->components)
        return eng_cfg_fail(r, ENG_ENOMEM, "out of memory");

    json_object_foreach (r->root, key, v) {
        if (key[0] == '_' || !json_is_array(v) || json_array_size(v) != 2)
            continue;
        json_t *lib = json_array_get(v, 0), *cl = json_array_get(v, 1);
        if (!(json_is_string(lib) || json_is_null(lib)) ||
            !(json_is_string(cl) || json_is_null(cl)))
            continue; /* not a [library, class] pair: a pipeline option */
        if (json_is_null(lib) || json_is_null(cl))
            continue; /* the pipeline has no such component */
        if (!component_name_ok(key))
            return eng_cfg_fail(r, ENG_EFORMAT, "component name \"%s\" is not a folder name", key);
        eng_component *c = &m->components[m->num_components];
        c->name = dup_str(key);
        c->library = dup_str(json_string_value(lib));
        c->class_name = dup_str(json_string_value(cl));
        m->num_components++;
        if (!c->name || !c->library || !c->class_name)
            return eng_cfg_fail(r, ENG_ENOMEM, "out of memory");
    }
    return 0;
}

static int model_index_done(int rc, eng_model_index *out)
{
    if (rc)
        eng_model_index_free(out);
    return rc;
}

int eng_model_index_load(const char *path, eng_model_index *out, eng_error *err)
{
    memset(out, 0, sizeof *out);
    return model_index_done(eng_cfg_load_file(path, parse_model_index, out, err), out);
}

int eng_model_index_parse(const char *text, size_t len, const char *label, eng_model_index *out,
                          eng_error *err)
{
    memset(out, 0, sizeof *out);
    return model_index_done(eng_cfg_load_text(text, len, label, parse_model_index, out, err), out);
}

const eng_component *eng_model_index_find(const eng_model_index *idx, const char *name)
{
    for (size_t i = 0; idx && i < idx->num_components; i++)
        if (strcmp(idx->components[i].name, name) == 0)
            return &idx->components[i];
    return NULL;
}

void eng_model_index_free(eng_model_index *idx)
{
    if (!idx)
        return;
    for (size_t i = 0; idx->components && i < idx->num_components; i++) {
        free(idx->components[i].name);
        free(idx->components[i].library);
        free(idx->components[i].class_name);
    }
    free(idx->components);
    free(idx->class_name);
    free(idx->diffusers_version);
    memset(idx, 0, sizeof *idx);
}

/* ---- SD3Transformer2DModel ---- */

const char *eng_ttt_preset_name(eng_ttt_preset p)
{
    switch (p) {
    case ENG_TTT_PRESET_NONE: return "none";
    case ENG_TTT_PRESET_ALL: return "all";
    case ENG_TTT_PRESET_SD35_T5: return "sd35-t5";
    case ENG_TTT_PRESET_CUSTOM: return "custom";
    }
    return "?";
}

/* Parses "transformer_blocks.<i>.attn" or "...attn2"; returns 0 or -1 when s is no such name. */
static int parse_module_name(const char *s, int *block, int *is_attn2)
{
    static const char prefix[] = "transformer_blocks.";
    long v = 0;
    int digits = 0;

    if (strncmp(s, prefix, sizeof prefix - 1) != 0)
        return -1;
    s += sizeof prefix - 1;
    if (s[0] == '0' && isdigit((unsigned char)s[1]))
        return -1; /* leading zero */
    for (; isdigit((unsigned char)*s); s++) {
        if (++digits > 6)
            return -1;
        v = v * 10 + (*s - '0');
    }
    if (digits == 0)
        return -1;
    if (strcmp(s, ".attn") == 0)
        *is_attn2 = 0;
    else if (strcmp(s, ".attn2") == 0)
        *is_attn2 = 1;
    else
        return -1;
    *block = (int)v;
    return 0;
}

static void ttt_preset_expand(eng_transformer_config *c, eng_ttt_preset p)
{
    int n = c->num_layers;
    for (int i = 0; i < n; i++) {
        c->ttt_attn[i] = p == ENG_TTT_PRESET_ALL || (p == ENG_TTT_PRESET_SD35_T5 && i >= n - 5);
        c->ttt_attn2[i] =
            c->dual_attention[i] && (p == ENG_TTT_PRESET_ALL || p == ENG_TTT_PRESET_SD35_T5);
    }
}

static int ttt_modules(eng_cfg *r, eng_transformer_config *c, json_t *mods)
{
    size_t i;
    json_t *m;

    if (!json_is_array(mods)) {
        eng_cfg_type_error(r, "ttt.modules", "an array", mods);
        return r->rc;
    }
    json_array_foreach (mods, i, m) {
        int block, attn2;
        const char *s = json_string_value(m);
        if (!s)
            return eng_cfg_fail(r, ENG_EFORMAT, "key \"ttt.modules[%zu]\" must be a string, not %s",
                                i, eng_cfg_json_kind(m));
        if (parse_module_name(s, &block, &attn2) != 0)
            return eng_cfg_fail(
                r, ENG_EFORMAT,
                "TTT module \"%s\" is not a module name (expected "
                "\"transformer_blocks.<i>.attn\" or \"transformer_blocks.<i>.attn2\")",
                s);
        if (block >= c->num_layers)
            return eng_cfg_fail(r, ENG_EFORMAT, "TTT module \"%s\": no block %d (num_layers is %d)",
                                s, block, c->num_layers);
        if (attn2 && !c->dual_attention[block])
            return eng_cfg_fail(r, ENG_EFORMAT,
                                "TTT module \"%s\": block %d has no attn2 (not in "
                                "dual_attention_layers)",
                                s, block);
        uint8_t *flag = attn2 ? &c->ttt_attn2[block] : &c->ttt_attn[block];
        if (*flag)
            return eng_cfg_fail(r, ENG_EFORMAT, "TTT module \"%s\" is listed twice", s);
        *flag = 1;
    }
    return 0;
}

static int parse_ttt(eng_cfg *r, eng_transformer_config *c)
{
    json_t *t = json_object_get(r->root, "ttt");

    c->ttt_preset = ENG_TTT_PRESET_NONE;
    if (!t || json_is_null(t))
        return 0;
    if (!json_is_object(t)) {
        eng_cfg_type_error(r, "ttt", "an object", t);
        return r->rc;
    }
    json_t *preset = json_object_get(t, "preset"), *mods = json_object_get(t, "modules");
    if (preset && mods)
        return eng_cfg_fail(r, ENG_EFORMAT,
                            "key \"ttt\" must have \"preset\" or \"modules\", not both");
    if (!preset && !mods)
        return eng_cfg_fail(r, ENG_EFORMAT, "key \"ttt\" must have \"preset\" or \"modules\"");
    if (mods) {
        c->ttt_preset = ENG_TTT_PRESET_CUSTOM;
        ENG_TRY(ttt_modules(r, c, mods));
    } else {
        const char *p = json_string_value(preset);
        if (!p) {
            eng_cfg_type_error(r, "ttt.preset", "a string", preset);
            return r->rc;
        }
        if (strcmp(p, "none") == 0)
            c->ttt_preset = ENG_TTT_PRESET_NONE;
        else if (strcmp(p, "all") == 0)
            c->ttt_preset = ENG_TTT_PRESET_ALL;
        else if (strcmp(p, "sd35-t5") == 0)
            c->ttt_preset = ENG_TTT_PRESET_SD35_T5;
        else
            return eng_cfg_fail(r, ENG_EFORMAT,
                                "key \"ttt.preset\" = \"%s\" is not a preset (none, all, sd35-t5)",
                                p);
        ttt_preset_expand(c, c->ttt_preset);
    }
    c->num_ttt_modules = 0;
    for (int i = 0; i < c->num_layers; i++)
        c->num_ttt_modules += c->ttt_attn[i] + c->ttt_attn2[i];
    return 0;
}

static void parse_qk_norm(eng_cfg *r, eng_transformer_config *c)
{
    /* diffusers' Attention knows these; tttd implements only the per-head RMSNorm. */
    static const char *const other[] = {"layer_norm", "fp32_layer_norm", "layer_norm_across_heads",
                                        "rms_norm_across_heads", "l2"};
    const char *s =
        eng_cfg_is_null(r, "qk_norm") ? NULL : eng_cfg_str(r, "qk_norm", ENG_CFG_OPT, NULL);

    c->qk_norm = ENG_QK_NORM_NONE;
    if (!s)
        return;
    if (strcmp(s, "rms_norm") == 0) {
        c->qk_norm = ENG_QK_NORM_RMS;
        return;
    }
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        if (strcmp(s, other[i]) == 0) {
            eng_cfg_fail(r, ENG_EUNSUPPORTED,
                         "key \"qk_norm\" = \"%s\" is not supported (null or "
                         "\"rms_norm\")",
                         s);
            return;
        }
    eng_cfg_fail(r, ENG_EFORMAT,
                 "key \"qk_norm\" = \"%s\" is not a known norm (null or \"rms_norm\")", s);
}

static void parse_dual_attention(eng_cfg *r, eng_transformer_config *c)
{
    json_t *v = json_object_get(r->root, "dual_attention_layers"), *e;
    size_t i;

    if (!v || json_is_null(v))
        return;
    if (!json_is_array(v)) {
        eng_cfg_type_error(r, "dual_attention_layers", "an array", v);
        return;
    }
    json_array_foreach (v, i, e) {
        if (!json_is_integer(e)) {
            eng_cfg_fail(r, ENG_EFORMAT,
                         "key \"dual_attention_layers[%zu]\" must be an integer, not %s", i,
                         eng_cfg_json_kind(e));
            return;
        }
        json_int_t b = json_integer_value(e);
        if (b < 0 || b >= c->num_layers) {
            eng_cfg_fail(
                r, ENG_EFORMAT,
                "key \"dual_attention_layers[%zu]\" = %lld is not a block (num_layers is %d)", i,
                (long long)b, c->num_layers);
            return;
        }
        c->dual_attention[b] = 1; /* diffusers tests membership, so repeats are harmless */
    }
    for (int b = 0; b < c->num_layers; b++)
        c->num_dual_attention_layers += c->dual_attention[b];
}

static int parse_transformer(eng_cfg *r, void *dst)
{
    eng_transformer_config *c = dst;

    memset(c, 0, sizeof *c);
    eng_cfg_expect_class(r, "_class_name", "SD3Transformer2DModel");
    c->num_layers = eng_cfg_int(r, "num_layers", ENG_CFG_REQ, 1, 1, ENG_CONFIG_MAX_LAYERS);
    c->num_attention_heads = eng_cfg_int(r, "num_attention_heads", ENG_CFG_REQ, 1, 1, 1024);
    c->attention_head_dim = eng_cfg_int(r, "attention_head_dim", ENG_CFG_REQ, 4, 1, 1024);
    c->caption_projection_dim =
        eng_cfg_int(r, "caption_projection_dim", ENG_CFG_REQ, 4, 1, 1 << 20);
    c->sample_size = eng_cfg_int(r, "sample_size", ENG_CFG_OPT, 128, 1, 1 << 16);
    c->patch_size = eng_cfg_int(r, "patch_size", ENG_CFG_OPT, 2, 1, 64);
    c->in_channels = eng_cfg_int(r, "in_channels", ENG_CFG_OPT, 16, 1, 4096);
    c->out_channels = eng_cfg_is_null(r, "out_channels")
                          ? c->in_channels
                          : eng_cfg_int(r, "out_channels", ENG_CFG_OPT, 16, 1, 4096);
    c->joint_attention_dim = eng_cfg_int(r, "joint_attention_dim", ENG_CFG_OPT, 4096, 1, 1 << 20);
    c->pooled_projection_dim =
        eng_cfg_int(r, "pooled_projection_dim", ENG_CFG_OPT, 2048, 1, 1 << 20);
    if (eng_cfg_is_null(r, "pos_embed_max_size"))
        eng_cfg_fail(r, ENG_EUNSUPPORTED, "key \"pos_embed_max_size\" = null is not supported");
    c->pos_embed_max_size = eng_cfg_int(r, "pos_embed_max_size", ENG_CFG_OPT, 96, 1, 1 << 16);
    parse_qk_norm(r, c);
    if (r->rc)
        return r->rc;
    parse_dual_attention(r, c);
    if (r->rc)
        return r->rc;

    c->inner_dim = c->num_attention_heads * c->attention_head_dim;
    if (c->caption_projection_dim != c->inner_dim)
        return eng_cfg_fail(r, ENG_EFORMAT,
                            "key \"caption_projection_dim\" = %d must equal num_attention_heads x "
                            "attention_head_dim = %d x %d = %d",
                            c->caption_projection_dim, c->num_attention_heads,
                            c->attention_head_dim, c->inner_dim);
    if (c->inner_dim % 4 != 0)
        return eng_cfg_fail(r, ENG_EFORMAT,
                            "num_attention_heads x attention_head_dim = %d must be a multiple of 4 "
                            "(2-D sin-cos position embedding)",
                            c->inner_dim);
    return parse_ttt(r, c);
}

int eng_config_load_transformer(const char *path, eng_transformer_config *out, eng_error *err)
{
    return eng_cfg_load_file(path, parse_transformer, out, err);
}

int eng_config_parse_transformer(const char *text, size_t len, const char *label,
                                 eng_transformer_config *out, eng_error *err)
{
    return eng_cfg_load_text(text, len, label, parse_transformer, out, err);
}

int eng_vae_config_scale(const eng_vae_config *c)
{
    return 1 << (c->num_blocks - 1);
}

int eng_config_default_side(const eng_transformer_config *tc, int vae_scale)
{
    return tc->sample_size * vae_scale;
}
