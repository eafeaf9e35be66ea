/*
 * linearize_init.c - the initialisation of the new TTT tensors and the TTT map of
 * `tttd linearize` (see linearize.h: the random stream layout, the distributions, the map forms).
 */
#include "engine/models/linearize.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/core/rng.h"

#define STREAM_SHIFT 40  /* each tensor owns 2^40 normals of the stream */
#define TRUNC_ROUNDS 16  /* redraw rounds of the truncated normal before clamping */

/* ---- initialisation ---- */

static const char *const param_suffix[ENG_TTT_NUM_PARAMS] = {
    "w1", "w2", "q_conv.weight", "q_conv.bias", "k_conv.weight", "k_conv.bias",
};

const char *eng_ttt_param_suffix(eng_ttt_param p)
{
    return (unsigned)p < ENG_TTT_NUM_PARAMS ? param_suffix[p] : "?";
}

int eng_ttt_param_shape(const eng_transformer_config *cfg, eng_ttt_param p,
                        int64_t shape[ENG_MAX_DIMS])
{
    int64_t h = cfg->num_attention_heads, d = cfg->attention_head_dim, c = cfg->inner_dim;
    switch (p) {
    case ENG_TTT_W1:
    case ENG_TTT_W2:
        shape[0] = h, shape[1] = d, shape[2] = d;
        return 3;
    case ENG_TTT_Q_CONV_WEIGHT:
    case ENG_TTT_K_CONV_WEIGHT:
        shape[0] = c, shape[1] = 1, shape[2] = 3, shape[3] = 3;
        return 4;
    default:
        shape[0] = c;
        return 1;
    }
}

static int64_t shape_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    return n;
}

uint64_t eng_linearize_stream_offset(int block, int attn2, eng_ttt_param p)
{
    return (((uint64_t)(2 * block + (attn2 ? 1 : 0)) * 8) + (uint64_t)p) << STREAM_SHIFT;
}

void eng_linearize_trunc_normal(uint64_t seed, uint64_t offset, float *out, int64_t n, double mean,
                                double std, double a, double b)
{
    eng_rng_normal(seed, offset, out, n);
    for (int64_t i = 0; i < n; i++) {
        double x = mean + std * (double)out[i];
        /* Rejection: round r redraws from offset + r * n + i, a place no other element uses. */
        for (uint64_t r = 1; (x < a || x > b) && r <= TRUNC_ROUNDS; r++) {
            float z;
            eng_rng_normal(seed, offset + r * (uint64_t)n + (uint64_t)i, &z, 1);
            x = mean + std * (double)z;
        }
        x = x < a ? a : x > b ? b : x;
        out[i] = (float)x;
    }
}

void eng_linearize_uniform(uint64_t seed, uint64_t offset, float *out, int64_t n, double lo,
                           double hi)
{
    eng_rng_normal(seed, offset, out, n);
    for (int64_t i = 0; i < n; i++) {
        double u = 0.5 * erfc(-(double)out[i] / sqrt(2.0)); /* the normal CDF: uniform on (0, 1) */
        out[i] = (float)(lo + (hi - lo) * u);
    }
}

int eng_linearize_init_param(const eng_transformer_config *cfg, uint64_t seed, int block,
                             int attn2, eng_ttt_param p, float *out, int64_t n, eng_error *err)
{
    int64_t shape[ENG_MAX_DIMS];
    if ((unsigned)p >= ENG_TTT_NUM_PARAMS || block < 0 || block >= ENG_CONFIG_MAX_LAYERS)
        return eng_error_set(err, ENG_EINVAL, "linearize: bad TTT parameter %d of block %d", (int)p,
                             block);
    int ndim = eng_ttt_param_shape(cfg, p, shape);
    if (shape_numel(ndim, shape) != n)
        return eng_error_set(err, ENG_EINVAL, "linearize: %s wants %lld values, not %lld",
                             param_suffix[p], (long long)shape_numel(ndim, shape), (long long)n);
    uint64_t off = eng_linearize_stream_offset(block, attn2, p);
    if (p == ENG_TTT_W1 || p == ENG_TTT_W2) {
        /* timm trunc_normal_(std=.02) with its default, absolute, bounds a=-2, b=2. */
        eng_linearize_trunc_normal(seed, off, out, n, 0.0, 0.02, -2.0, 2.0);
    } else {
        /* nn.Conv2d's reset_parameters: weight kaiming_uniform_(a=sqrt 5) and bias both give
         * U(-1/sqrt(fan_in), 1/sqrt(fan_in)); a depthwise 3x3 kernel has fan_in 1 * 3 * 3. */
        double bound = 1.0 / sqrt(9.0);
        eng_linearize_uniform(seed, off, out, n, -bound, bound);
    }
    return 0;
}

/* ---- the map ---- */

int eng_linearize_module_name(const eng_transformer_config *cfg, int i, char *buf, size_t len,
                              int *block, int *attn2)
{
    int k = 0;
    for (int b = 0; b < cfg->num_layers; b++)
        for (int a = 0; a < 2; a++) {
            if (!(a ? cfg->ttt_attn2[b] : cfg->ttt_attn[b]) || k++ != i)
                continue;
            if (block)
                *block = b;
            if (attn2)
                *attn2 = a;
            snprintf(buf, len, "transformer_blocks.%d.%s", b, a ? "attn2" : "attn");
            return 0;
        }
    return ENG_ENOTFOUND;
}

/* The "ttt" object for a map: a preset, or the comma-separated list as "modules". */
static int map_to_json(const char *map, json_t **out, eng_error *err)
{
    *out = NULL;
    if (!map || !*map)
        return eng_error_set(err, ENG_EINVAL, "TTT map is empty (sd35-t5, all, or module names)");
    if (strcmp(map, "sd35-t5") == 0 || strcmp(map, "all") == 0) {
        *out = json_pack("{s:s}", "preset", map);
        return *out ? 0 : eng_error_set(err, ENG_ENOMEM, "TTT map: out of memory");
    }
    if (strcmp(map, "none") == 0)
        return eng_error_set(err, ENG_EINVAL, "TTT map \"none\" selects no module");
    json_t *mods = json_array();
    if (!mods)
        return eng_error_set(err, ENG_ENOMEM, "TTT map: out of memory");
    for (const char *s = map;;) {
        const char *e = strchr(s, ',');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        while (n && (*s == ' ' || *s == '\t'))
            s++, n--;
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        if (n == 0) {
            json_decref(mods);
            return eng_error_set(err, ENG_EINVAL, "TTT map \"%s\": empty module name", map);
        }
        json_array_append_new(mods, json_stringn(s, n));
        if (!e)
            break;
        s = e + 1;
    }
    *out = json_pack("{s:o}", "modules", mods);
    return *out ? 0 : eng_error_set(err, ENG_ENOMEM, "TTT map: out of memory");
}

int eng_linearize_resolve_map(const char *config_text, size_t len, const char *label,
                              const char *map, char **out_text, eng_transformer_config *out_cfg,
                              eng_error *err)
{
    eng_transformer_config in_cfg;
    json_error_t je;
    json_t *root = NULL, *ttt = NULL;
    char *text = NULL;
    int rc = 0;

    *out_text = NULL;
    /* The input must be a valid softmax config on its own. */
    ENG_TRY(eng_config_parse_transformer(config_text, len, label, &in_cfg, err));
    if (in_cfg.num_ttt_modules > 0)
        return eng_error_set(err, ENG_EINVAL,
                             "%s: already has a TTT map (preset \"%s\", %d modules); linearize "
                             "takes a softmax model",
                             label, eng_ttt_preset_name(in_cfg.ttt_preset), in_cfg.num_ttt_modules);
    ENG_TRY(map_to_json(map, &ttt, err));
    root = json_loadb(config_text, len, 0, &je);
    if (!root) { /* parsed above, so only memory can fail here */
        json_decref(ttt);
        return eng_error_set(err, ENG_EFORMAT, "%s: %s", label, je.text);
    }
    json_object_set_new(root, "ttt", ttt); /* replaces a null in place, else appends */
    char *dump = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    size_t n = dump ? strlen(dump) : 0;
    text = dump ? malloc(n + 2) : NULL;
    if (!text) {
        free(dump);
        return eng_error_set(err, ENG_ENOMEM, "%s: out of memory", label);
    }
    memcpy(text, dump, n);
    text[n] = '\n';
    text[n + 1] = '\0';
    free(dump);
    /* config.c is the one judge of a map: it names a bad module exactly as it would on load. */
    ENG_TRY_DONE(eng_config_parse_transformer(text, n + 1, "TTT map", out_cfg, err));
    if (out_cfg->num_ttt_modules == 0)
        rc = eng_error_set(err, ENG_EINVAL, "TTT map \"%s\" selects no module of %s", map, label);
done:
    if (rc)
        free(text);
    else
        *out_text = text;
    return rc;
}
