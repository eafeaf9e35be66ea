/*
 * mmdit_sai.c - the SAI single-file layout of an SD3-family MMDiT (Stability AI's reference
 * code, "model.diffusion_model.*"): where each diffusers tensor lives in it, and the model
 * config derived from its tensor shapes. The map is the one of diffusers'
 * convert_sd3_transformer_checkpoint_to_diffusers (loaders/single_file_utils.py):
 *   x_embedder.proj -> pos_embed.proj, pos_embed -> pos_embed.pos_embed,
 *   t_embedder.mlp.{0,2} / y_embedder.mlp.{0,2} -> time_text_embed.{timestep,text}_embedder
 *   .linear_{1,2}, context_embedder -> context_embedder, final_layer.linear -> proj_out,
 *   final_layer.adaLN_modulation.1 -> norm_out.linear (halves swapped);
 *   joint_blocks.<i>.x_block / context_block: attn.qkv (fused on dim 0) -> attn.to_{q,k,v} /
 *   attn.add_{q,k,v}_proj, attn.ln_{q,k} -> attn.norm_{q,k} / attn.norm_added_{q,k},
 *   attn.proj -> attn.to_out.0 / attn.to_add_out, x_block.attn2.{qkv,ln_q,ln_k,proj} -> attn2.*,
 *   adaLN_modulation.1 -> norm1.linear / norm1_context.linear (halves swapped in the last block,
 *   whose context adaLN is diffusers' AdaLayerNormContinuous), mlp.fc{1,2} -> ff(_context)
 *   .net.0.proj / .net.2.
 * SAI's adaLN_modulation of the final layer and of the last context block store (shift, scale);
 * diffusers' AdaLayerNormContinuous reads (scale, shift). SAI files carry no TTT parameters.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/models/mmdit_internal.h"

#define NAME_MAX_LEN 256

/* ---- the SAI name map ---- */

enum { SWAP_NO = 0, SWAP_YES = 1, SWAP_IF_LAST = 2 };

typedef struct sai_rule {
    const char *diffusers; /* name prefix (after "transformer_blocks.<i>." for block rules) */
    const char *sai;       /* replaces it (after "joint_blocks.<i>.") */
    int qkv;               /* -1, or the row block (0 q, 1 k, 2 v) of a fused qkv */
    int swap;
} sai_rule;

static const sai_rule top_rules[] = {
    {"pos_embed.pos_embed", "pos_embed", -1, SWAP_NO},
    {"pos_embed.proj.", "x_embedder.proj.", -1, SWAP_NO},
    {"time_text_embed.timestep_embedder.linear_1.", "t_embedder.mlp.0.", -1, SWAP_NO},
    {"time_text_embed.timestep_embedder.linear_2.", "t_embedder.mlp.2.", -1, SWAP_NO},
    {"time_text_embed.text_embedder.linear_1.", "y_embedder.mlp.0.", -1, SWAP_NO},
    {"time_text_embed.text_embedder.linear_2.", "y_embedder.mlp.2.", -1, SWAP_NO},
    {"context_embedder.", "context_embedder.", -1, SWAP_NO},
    {"proj_out.", "final_layer.linear.", -1, SWAP_NO},
    {"norm_out.linear.", "final_layer.adaLN_modulation.1.", -1, SWAP_YES},
};

static const sai_rule block_rules[] = {
    {"attn.to_q.", "x_block.attn.qkv.", 0, SWAP_NO},
    {"attn.to_k.", "x_block.attn.qkv.", 1, SWAP_NO},
    {"attn.to_v.", "x_block.attn.qkv.", 2, SWAP_NO},
    {"attn.add_q_proj.", "context_block.attn.qkv.", 0, SWAP_NO},
    {"attn.add_k_proj.", "context_block.attn.qkv.", 1, SWAP_NO},
    {"attn.add_v_proj.", "context_block.attn.qkv.", 2, SWAP_NO},
    {"attn.norm_q.", "x_block.attn.ln_q.", -1, SWAP_NO},
    {"attn.norm_k.", "x_block.attn.ln_k.", -1, SWAP_NO},
    {"attn.norm_added_q.", "context_block.attn.ln_q.", -1, SWAP_NO},
    {"attn.norm_added_k.", "context_block.attn.ln_k.", -1, SWAP_NO},
    {"attn.to_out.0.", "x_block.attn.proj.", -1, SWAP_NO},
    {"attn.to_add_out.", "context_block.attn.proj.", -1, SWAP_NO},
    {"attn2.to_q.", "x_block.attn2.qkv.", 0, SWAP_NO},
    {"attn2.to_k.", "x_block.attn2.qkv.", 1, SWAP_NO},
    {"attn2.to_v.", "x_block.attn2.qkv.", 2, SWAP_NO},
    {"attn2.norm_q.", "x_block.attn2.ln_q.", -1, SWAP_NO},
    {"attn2.norm_k.", "x_block.attn2.ln_k.", -1, SWAP_NO},
    {"attn2.to_out.0.", "x_block.attn2.proj.", -1, SWAP_NO},
    {"norm1.linear.", "x_block.adaLN_modulation.1.", -1, SWAP_NO},
    {"norm1_context.linear.", "context_block.adaLN_modulation.1.", -1, SWAP_IF_LAST},
    {"ff.net.0.proj.", "x_block.mlp.fc1.", -1, SWAP_NO},
    {"ff.net.2.", "x_block.mlp.fc2.", -1, SWAP_NO},
    {"ff_context.net.0.proj.", "context_block.mlp.fc1.", -1, SWAP_NO},
    {"ff_context.net.2.", "context_block.mlp.fc2.", -1, SWAP_NO},
};

static const sai_rule *match_rule(const sai_rule *rules, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strncmp(name, rules[i].diffusers, strlen(rules[i].diffusers)) == 0)
            return &rules[i];
    return NULL;
}

int mmdit_sai_source(const eng_transformer_config *cfg, const char *prefix, const char *name,
                     int ndim, const int64_t *shape, eng_weight_src *src, char *buf, size_t len,
                     eng_error *err)
{
    const sai_rule *r;
    int block = -1, used = 0;
    const char *rest = name;

    if (strncmp(name, "transformer_blocks.", 19) == 0) {
        block = atoi(name + 19);
        rest = strchr(name + 19, '.');
        rest = rest ? rest + 1 : "";
        r = match_rule(block_rules, sizeof block_rules / sizeof *block_rules, rest);
    } else {
        r = match_rule(top_rules, sizeof top_rules / sizeof *top_rules, name);
    }
    if (!r)
        return eng_error_set(err, ENG_EUNSUPPORTED,
                             "mmdit: tensor \"%s\" has no place in the SAI single-file layout "
                             "(TTT parameters are read from the diffusers layout only)",
                             name);
    if (block >= 0)
        used = snprintf(buf, len, "%sjoint_blocks.%d.", prefix, block);
    else
        used = snprintf(buf, len, "%s", prefix);
    snprintf(buf + used, len - (size_t)used, "%s%s", r->sai, rest + strlen(r->diffusers));

    memset(src, 0, sizeof *src);
    src->name = buf;
    src->ndim = ndim;
    memcpy(src->shape, shape, (size_t)ndim * sizeof *shape);
    if (r->qkv >= 0) {
        eng_tensor v = eng_tensor_view(NULL, NULL, ENG_DTYPE_F32, ndim, shape);
        src->shape[0] *= 3;
        src->offset = r->qkv * eng_tensor_numel(&v);
    }
    src->swap_halves = r->swap == SWAP_YES ||
                       (r->swap == SWAP_IF_LAST && block == cfg->num_layers - 1);
    return 0;
}

/* ---- the SAI layout's config, derived from its shapes ---- */

/* The SAI tensor prefix+name, which must exist with rank ndim. */
static int sai_tensor(const eng_safetensors *st, const char *path, const char *prefix,
                      const char *name, int ndim, const eng_st_tensor **out, eng_error *err)
{
    char full[NAME_MAX_LEN];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    *out = eng_safetensors_find(st, full);
    if (!*out)
        return eng_error_set(err, ENG_ENOTFOUND, "%s: SAI checkpoint lacks tensor \"%s\"", path,
                             full);
    if ((*out)->ndim != ndim)
        return eng_error_set(err, ENG_EFORMAT, "%s: tensor \"%s\" has rank %d, expected %d", path,
                             full, (*out)->ndim, ndim);
    return 0;
}

/*
 * As diffusers derives it for a single file: num_layers = 1 + the largest joint_blocks index,
 * dual_attention_layers = the blocks with x_block.attn2, qk_norm "rms_norm" when ln_q weights
 * exist; widths from x_embedder (C, in_channels, patch), context_embedder (joint_attention_dim),
 * y_embedder (pooled_projection_dim), final_layer (out_channels) and pos_embed
 * (pos_embed_max_size = sqrt(numel / C)). The head dim is ln_q's length when there is one, else
 * 64 (every SAI MMDiT uses 64-wide heads), and heads = C / head_dim. sample_size, unused by the
 * forward pass, takes diffusers' default 128.
 */
int mmdit_sai_config(const eng_safetensors *st, const char *path, const char *prefix,
                     eng_transformer_config *cfg, eng_error *err)
{
    const eng_st_tensor *xe, *ce, *ye, *fl, *pe, *lnq;
    uint8_t dual[ENG_CONFIG_MAX_LAYERS] = {0};
    size_t plen = strlen(prefix);
    int layers = 0;

    ENG_TRY(sai_tensor(st, path, prefix, "x_embedder.proj.weight", 4, &xe, err));
    ENG_TRY(sai_tensor(st, path, prefix, "context_embedder.weight", 2, &ce, err));
    ENG_TRY(sai_tensor(st, path, prefix, "y_embedder.mlp.0.weight", 2, &ye, err));
    ENG_TRY(sai_tensor(st, path, prefix, "final_layer.linear.weight", 2, &fl, err));
    ENG_TRY(sai_tensor(st, path, prefix, "pos_embed", 3, &pe, err));

    for (size_t i = 0; i < eng_safetensors_count(st); i++) {
        const char *n = eng_safetensors_at(st, i)->name;
        if (strncmp(n, prefix, plen) != 0 || strncmp(n + plen, "joint_blocks.", 13) != 0 ||
            !isdigit((unsigned char)n[plen + 13]))
            continue;
        char *end;
        long b = strtol(n + plen + 13, &end, 10);
        if (b >= layers)
            layers = b >= 100000 ? 100000 : (int)b + 1;
        if (b < ENG_CONFIG_MAX_LAYERS && strncmp(end, ".x_block.attn2.", 15) == 0)
            dual[b] = 1;
    }
    if (layers == 0)
        return eng_error_set(err, ENG_ENOTFOUND, "%s: SAI checkpoint has no %sjoint_blocks.*",
                             path, prefix);

    int64_t C = xe->shape[0], p = xe->shape[2], d = 64;
    if (xe->shape[3] != p || p < 1)
        return eng_error_set(err, ENG_EFORMAT, "%s: %sx_embedder.proj.weight has non-square "
                             "patches %lldx%lld", path, prefix, (long long)p,
                             (long long)xe->shape[3]);
    if (sai_tensor(st, path, prefix, "joint_blocks.0.x_block.attn.ln_q.weight", 1, &lnq, NULL))
        lnq = NULL;
    else
        d = lnq->shape[0];
    int64_t rows = fl->shape[0], pos = pe->shape[1] * pe->shape[2], M = 0;
    while ((M + 1) * (M + 1) * C <= pos)
        M++;
    if (d < 1 || C % d || rows % (p * p) || M * M * C != pos || pe->shape[0] != 1)
        return eng_error_set(err, ENG_EFORMAT,
                             "%s: SAI shapes do not fit an MMDiT (width %lld, head dim %lld, "
                             "final_layer rows %lld, pos_embed %lld values)",
                             path, (long long)C, (long long)d, (long long)rows, (long long)pos);

    char json[4096];
    int n = snprintf(json, sizeof json,
                     "{\"_class_name\": \"SD3Transformer2DModel\", \"sample_size\": 128, "
                     "\"patch_size\": %lld, \"in_channels\": %lld, \"out_channels\": %lld, "
                     "\"num_layers\": %d, \"attention_head_dim\": %lld, "
                     "\"num_attention_heads\": %lld, \"joint_attention_dim\": %lld, "
                     "\"caption_projection_dim\": %lld, \"pooled_projection_dim\": %lld, "
                     "\"pos_embed_max_size\": %lld, \"qk_norm\": %s, \"dual_attention_layers\": [",
                     (long long)p, (long long)xe->shape[1], (long long)(rows / (p * p)), layers,
                     (long long)d, (long long)(C / d), (long long)ce->shape[1],
                     (long long)ce->shape[0], (long long)ye->shape[1], (long long)M,
                     lnq ? "\"rms_norm\"" : "null");
    for (int b = 0, first = 1; b < ENG_CONFIG_MAX_LAYERS; b++)
        if (dual[b]) {
            n += snprintf(json + n, sizeof json - (size_t)n, first ? "%d" : ", %d", b);
            first = 0;
        }
    snprintf(json + n, sizeof json - (size_t)n, "]}");
    return eng_config_parse_transformer(json, strlen(json), path, cfg, err);
}

/* "model.diffusion_model." (a full SAI checkpoint) or "" (the transformer alone). */
int mmdit_sai_prefix(const eng_safetensors *st, const char *path, const char **prefix,
                     eng_error *err)
{
    static const char *const prefixes[] = {"model.diffusion_model.", ""};
    char name[NAME_MAX_LEN];
    for (size_t i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "%sx_embedder.proj.weight", prefixes[i]);
        if (eng_safetensors_find(st, name)) {
            *prefix = prefixes[i];
            return 0;
        }
    }
    return eng_error_set(err, ENG_EFORMAT,
                         "%s: not an SAI single-file SD3 checkpoint (no tensor "
                         "model.diffusion_model.x_embedder.proj.weight); a diffusers transformer "
                         "is a folder with config.json",
                         path);
}
