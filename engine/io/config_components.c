/*
 * config_components.c - the configs of the components around the transformer: AutoencoderKL,
 * CLIPTextModelWithProjection, T5EncoderModel and FlowMatchEulerDiscreteScheduler, and the
 * activation names of transformers (see config.h for defaults and required keys).
 */
#include "engine/io/config.h"
#include "engine/io/config_json.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- activations ---- */

static const struct {
    const char *name;
    eng_act act;
} act_names[] = {
    {"gelu", ENG_ACT_GELU_ERF},
    {"gelu_new", ENG_ACT_GELU_TANH},
    {"gelu_pytorch_tanh", ENG_ACT_GELU_TANH},
    {"gelu_fast", ENG_ACT_GELU_TANH},
    {"quick_gelu", ENG_ACT_QUICK_GELU},
    {"silu", ENG_ACT_SILU},
    {"swish", ENG_ACT_SILU},
};

const char *eng_config_act_name(eng_act act)
{
    switch (act) {
    case ENG_ACT_SILU: return "silu";
    case ENG_ACT_GELU_TANH: return "gelu_tanh";
    case ENG_ACT_GELU_ERF: return "gelu";
    case ENG_ACT_QUICK_GELU: return "quick_gelu";
    }
    return "?";
}

/* Maps the activation name held by key (value name) to an eng_act; unknown is unsupported. */
static eng_act cfg_act(eng_cfg *r, const char *key, const char *name)
{
    for (size_t i = 0; i < sizeof act_names / sizeof act_names[0]; i++)
        if (strcmp(name, act_names[i].name) == 0)
            return act_names[i].act;
    eng_cfg_fail(r, ENG_EUNSUPPORTED,
                 "key \"%s\" = \"%s\" is not a supported activation (gelu, gelu_new, "
                 "gelu_pytorch_tanh, gelu_fast, quick_gelu, silu, swish)",
                 key, name);
    return ENG_ACT_GELU_ERF;
}

/* ---- AutoencoderKL ---- */

/* An optional list of block type names: one per block, each equal to want. */
static void vae_block_types(eng_cfg *r, const char *key, const char *want, int n)
{
    json_t *v = json_object_get(r->root, key), *e;
    size_t i;

    if (!v)
        return;
    if (!json_is_array(v)) {
        eng_cfg_type_error(r, key, "an array", v);
        return;
    }
    if (json_array_size(v) != (size_t)n) {
        eng_cfg_fail(r, ENG_EFORMAT, "key \"%s\" has %zu entries, block_out_channels has %d", key,
                     json_array_size(v), n);
        return;
    }
    json_array_foreach (v, i, e) {
        const char *s = json_string_value(e);
        if (!s) {
            eng_cfg_fail(r, ENG_EFORMAT, "key \"%s[%zu]\" must be a string, not %s", key, i,
                         eng_cfg_json_kind(e));
            return;
        }
        if (strcmp(s, want) != 0) {
            eng_cfg_fail(r, ENG_EUNSUPPORTED, "key \"%s[%zu]\" = \"%s\" is not supported (\"%s\")",
                         key, i, s, want);
            return;
        }
    }
}

static int parse_vae(eng_cfg *r, void *dst)
{
    eng_vae_config *c = dst;
    size_t i;
    json_t *e;

    memset(c, 0, sizeof *c);
    eng_cfg_expect_class(r, "_class_name", "AutoencoderKL");
    json_t *blocks = eng_cfg_get(r, "block_out_channels", ENG_CFG_REQ);
    if (blocks && !json_is_array(blocks))
        eng_cfg_type_error(r, "block_out_channels", "an array", blocks);
    if (r->rc)
        return r->rc;
    if (json_array_size(blocks) < 1 || json_array_size(blocks) > ENG_CONFIG_MAX_VAE_BLOCKS)
        return eng_cfg_fail(r, ENG_EFORMAT, "key \"block_out_channels\" has %zu entries (1 to %d)",
                            json_array_size(blocks), ENG_CONFIG_MAX_VAE_BLOCKS);
    json_array_foreach (blocks, i, e) {
        if (!json_is_integer(e) || json_integer_value(e) < 1 || json_integer_value(e) > 65536)
            return eng_cfg_fail(r, ENG_EFORMAT,
                                "key \"block_out_channels[%zu]\" must be an integer in [1, 65536]",
                                i);
        c->block_out_channels[i] = (int)json_integer_value(e);
    }
    c->num_blocks = (int)json_array_size(blocks);
    c->latent_channels = eng_cfg_int(r, "latent_channels", ENG_CFG_REQ, 4, 1, 4096);
    c->in_channels = eng_cfg_int(r, "in_channels", ENG_CFG_OPT, 3, 1, 4096);
    c->out_channels = eng_cfg_int(r, "out_channels", ENG_CFG_OPT, 3, 1, 4096);
    c->layers_per_block = eng_cfg_int(r, "layers_per_block", ENG_CFG_OPT, 1, 1, 64);
    c->norm_num_groups = eng_cfg_int(r, "norm_num_groups", ENG_CFG_OPT, 32, 1, 65536);
    c->sample_size = eng_cfg_int(r, "sample_size", ENG_CFG_OPT, 32, 1, 1 << 20);
    c->scaling_factor = eng_cfg_num(r, "scaling_factor", ENG_CFG_OPT, 0.18215, 0.0, 1e6, 1);
    c->shift_factor = eng_cfg_is_null(r, "shift_factor")
                          ? 0.0
                          : eng_cfg_num(r, "shift_factor", ENG_CFG_OPT, 0.0, -1e6, 1e6, 0);
    c->use_quant_conv = eng_cfg_bool(r, "use_quant_conv", ENG_CFG_OPT, 1);
    c->use_post_quant_conv = eng_cfg_bool(r, "use_post_quant_conv", ENG_CFG_OPT, 1);
    c->mid_block_add_attention = eng_cfg_bool(r, "mid_block_add_attention", ENG_CFG_OPT, 1);
    c->force_upcast = eng_cfg_bool(r, "force_upcast", ENG_CFG_OPT, 1);
    const char *act = eng_cfg_str(r, "act_fn", ENG_CFG_OPT, "silu");
    if (!r->rc && strcmp(act, "silu") != 0)
        eng_cfg_fail(r, ENG_EUNSUPPORTED, "key \"act_fn\" = \"%s\" is not supported (\"silu\")",
                     act);
    vae_block_types(r, "down_block_types", "DownEncoderBlock2D", c->num_blocks);
    vae_block_types(r, "up_block_types", "UpDecoderBlock2D", c->num_blocks);
    if (r->rc)
        return r->rc;
    for (int b = 0; b < c->num_blocks; b++)
        if (c->block_out_channels[b] % c->norm_num_groups != 0)
            return eng_cfg_fail(
                r, ENG_EFORMAT,
                "block_out_channels[%d] = %d is not a multiple of norm_num_groups = %d", b,
                c->block_out_channels[b], c->norm_num_groups);
    return 0;
}

int eng_config_load_vae(const char *path, eng_vae_config *out, eng_error *err)
{
    return eng_cfg_load_file(path, parse_vae, out, err);
}

int eng_config_parse_vae(const char *text, size_t len, const char *label, eng_vae_config *out,
                         eng_error *err)
{
    return eng_cfg_load_text(text, len, label, parse_vae, out, err);
}

/* ---- CLIPTextModelWithProjection ---- */

/* A token id: null reads as -1; otherwise in [0, vocab_size). */
static int cfg_token_id(eng_cfg *r, const char *key, int def, int vocab_size)
{
    if (eng_cfg_is_null(r, key))
        return -1;
    return eng_cfg_int(r, key, ENG_CFG_OPT, def, 0, vocab_size - 1);
}

static int parse_clip_text(eng_cfg *r, void *dst)
{
    eng_clip_text_config *c = dst;

    memset(c, 0, sizeof *c);
    eng_cfg_expect_class(r, "model_type", "clip_text_model");
    c->hidden_size = eng_cfg_int(r, "hidden_size", ENG_CFG_REQ, 1, 1, 1 << 16);
    c->intermediate_size = eng_cfg_int(r, "intermediate_size", ENG_CFG_REQ, 1, 1, 1 << 18);
    c->num_hidden_layers = eng_cfg_int(r, "num_hidden_layers", ENG_CFG_REQ, 1, 1, 256);
    c->num_attention_heads = eng_cfg_int(r, "num_attention_heads", ENG_CFG_REQ, 1, 1, 1024);
    c->projection_dim = eng_cfg_int(r, "projection_dim", ENG_CFG_REQ, 1, 1, 1 << 16);
    c->vocab_size = eng_cfg_int(r, "vocab_size", ENG_CFG_OPT, 49408, 1, 1 << 24);
    c->max_position_embeddings =
        eng_cfg_int(r, "max_position_embeddings", ENG_CFG_OPT, 77, 1, 1 << 16);
    const char *act = eng_cfg_str(r, "hidden_act", ENG_CFG_OPT, "quick_gelu");
    if (!r->rc)
        c->hidden_act = cfg_act(r, "hidden_act", act);
    c->layer_norm_eps = eng_cfg_num(r, "layer_norm_eps", ENG_CFG_OPT, 1e-5, 0.0, 1.0, 1);
    if (r->rc)
        return r->rc;
    c->pad_token_id = cfg_token_id(r, "pad_token_id", 1, c->vocab_size);
    c->bos_token_id = cfg_token_id(r, "bos_token_id", 49406, c->vocab_size);
    c->eos_token_id = cfg_token_id(r, "eos_token_id", 49407, c->vocab_size);
    if (r->rc)
        return r->rc;
    if (c->hidden_size % c->num_attention_heads != 0)
        return eng_cfg_fail(
            r, ENG_EFORMAT,
            "key \"hidden_size\" = %d is not a multiple of num_attention_heads = %d",
            c->hidden_size, c->num_attention_heads);
    c->head_dim = c->hidden_size / c->num_attention_heads;
    return 0;
}

int eng_config_load_clip_text(const char *path, eng_clip_text_config *out, eng_error *err)
{
    return eng_cfg_load_file(path, parse_clip_text, out, err);
}

int eng_config_parse_clip_text(const char *text, size_t len, const char *label,
                               eng_clip_text_config *out, eng_error *err)
{
    return eng_cfg_load_text(text, len, label, parse_clip_text, out, err);
}

/* ---- T5EncoderModel ---- */

static int parse_t5(eng_cfg *r, void *dst)
{
    eng_t5_config *c = dst;
    char act[32];

    memset(c, 0, sizeof *c);
    eng_cfg_expect_class(r, "model_type", "t5");
    c->d_model = eng_cfg_int(r, "d_model", ENG_CFG_REQ, 1, 1, 1 << 16);
    c->d_kv = eng_cfg_int(r, "d_kv", ENG_CFG_REQ, 1, 1, 4096);
    c->d_ff = eng_cfg_int(r, "d_ff", ENG_CFG_REQ, 1, 1, 1 << 18);
    c->num_layers = eng_cfg_int(r, "num_layers", ENG_CFG_REQ, 1, 1, 256);
    c->num_heads = eng_cfg_int(r, "num_heads", ENG_CFG_REQ, 1, 1, 1024);
    c->vocab_size = eng_cfg_int(r, "vocab_size", ENG_CFG_OPT, 32128, 1, 1 << 24);
    c->relative_attention_num_buckets =
        eng_cfg_int(r, "relative_attention_num_buckets", ENG_CFG_OPT, 32, 1, 1 << 16);
    c->relative_attention_max_distance =
        eng_cfg_int(r, "relative_attention_max_distance", ENG_CFG_OPT, 128, 1, 1 << 20);
    c->layer_norm_epsilon = eng_cfg_num(r, "layer_norm_epsilon", ENG_CFG_OPT, 1e-6, 0.0, 1.0, 1);
    const char *ffp = eng_cfg_str(r, "feed_forward_proj", ENG_CFG_OPT, "relu");
    if (r->rc)
        return r->rc;
    c->pad_token_id = cfg_token_id(r, "pad_token_id", 0, c->vocab_size);
    c->eos_token_id = cfg_token_id(r, "eos_token_id", 1, c->vocab_size);
    if (r->rc)
        return r->rc;

    /* transformers: "ACT" or "gated-ACT"; "gated-gelu" keeps its historical "gelu_new". */
    if (strlen(ffp) >= sizeof c->feed_forward_proj)
        return eng_cfg_fail(r, ENG_EFORMAT, "key \"feed_forward_proj\" = \"%s\" is too long", ffp);
    snprintf(c->feed_forward_proj, sizeof c->feed_forward_proj, "%s", ffp);
    const char *dash = strchr(ffp, '-');
    if (dash && (strncmp(ffp, "gated-", 6) != 0 || strchr(dash + 1, '-') || !dash[1]))
        return eng_cfg_fail(r, ENG_EFORMAT,
                            "key \"feed_forward_proj\" = \"%s\" is not \"ACT\" or \"gated-ACT\"",
                            ffp);
    c->is_gated_act = dash != NULL;
    snprintf(act, sizeof act, "%s",
             strcmp(ffp, "gated-gelu") == 0 ? "gelu_new"
             : dash                         ? dash + 1
                                            : ffp);
    const char *act_key = "feed_forward_proj";
    const char *dense = eng_cfg_str(r, "dense_act_fn", ENG_CFG_OPT, NULL);
    if (dense) {
        snprintf(act, sizeof act, "%s", dense);
        act_key = "dense_act_fn";
    }
    c->is_gated_act = eng_cfg_bool(r, "is_gated_act", ENG_CFG_OPT, c->is_gated_act);
    if (r->rc)
        return r->rc;
    c->dense_act_fn = cfg_act(r, act_key, act);
    return r->rc;
}

int eng_config_load_t5(const char *path, eng_t5_config *out, eng_error *err)
{
    return eng_cfg_load_file(path, parse_t5, out, err);
}

int eng_config_parse_t5(const char *text, size_t len, const char *label, eng_t5_config *out,
                        eng_error *err)
{
    return eng_cfg_load_text(text, len, label, parse_t5, out, err);
}

/* ---- FlowMatchEulerDiscreteScheduler ---- */

static int parse_scheduler(eng_cfg *r, void *dst)
{
    eng_scheduler_config *c = dst;

    memset(c, 0, sizeof *c);
    eng_cfg_expect_class(r, "_class_name", "FlowMatchEulerDiscreteScheduler");
    c->num_train_timesteps = eng_cfg_int(r, "num_train_timesteps", ENG_CFG_OPT, 1000, 1, 1000000);
    c->shift = eng_cfg_num(r, "shift", ENG_CFG_OPT, 1.0, 0.0, 1e4, 1);
    c->use_dynamic_shifting = eng_cfg_bool(r, "use_dynamic_shifting", ENG_CFG_OPT, 0);
    c->base_shift = eng_cfg_is_null(r, "base_shift")
                        ? NAN
                        : eng_cfg_num(r, "base_shift", ENG_CFG_OPT, 0.5, -1e4, 1e4, 0);
    c->max_shift = eng_cfg_is_null(r, "max_shift")
                       ? NAN
                       : eng_cfg_num(r, "max_shift", ENG_CFG_OPT, 1.15, -1e4, 1e4, 0);
    c->base_image_seq_len = eng_cfg_int(r, "base_image_seq_len", ENG_CFG_OPT, 256, 1, 1 << 30);
    c->max_image_seq_len = eng_cfg_int(r, "max_image_seq_len", ENG_CFG_OPT, 4096, 1, 1 << 30);
    c->invert_sigmas = eng_cfg_bool(r, "invert_sigmas", ENG_CFG_OPT, 0);
    c->shift_terminal = eng_cfg_is_null(r, "shift_terminal")
                            ? 0.0
                            : eng_cfg_num(r, "shift_terminal", ENG_CFG_OPT, 0.0, 0.0, 1.0, 0);
    if (!r->rc && c->shift_terminal >= 1.0)
        eng_cfg_fail(r, ENG_EFORMAT, "key \"shift_terminal\" = %g must be below 1",
                     c->shift_terminal);
    const char *tst = eng_cfg_str(r, "time_shift_type", ENG_CFG_OPT, "exponential");
    if (!r->rc) {
        if (strcmp(tst, "exponential") == 0)
            c->time_shift_type = ENG_TIME_SHIFT_EXPONENTIAL;
        else if (strcmp(tst, "linear") == 0)
            c->time_shift_type = ENG_TIME_SHIFT_LINEAR;
        else
            eng_cfg_fail(r, ENG_EFORMAT,
                         "key \"time_shift_type\" = \"%s\" must be \"exponential\" or \"linear\"",
                         tst);
    }
    eng_cfg_false_only(r, "use_karras_sigmas");
    eng_cfg_false_only(r, "use_exponential_sigmas");
    eng_cfg_false_only(r, "use_beta_sigmas");
    eng_cfg_false_only(r, "stochastic_sampling");
    if (r->rc)
        return r->rc;
    if (c->use_dynamic_shifting) {
        if (isnan(c->base_shift) || isnan(c->max_shift))
            return eng_cfg_fail(r, ENG_EFORMAT,
                                "use_dynamic_shifting needs numbers in base_shift and max_shift");
        if (c->max_image_seq_len <= c->base_image_seq_len)
            return eng_cfg_fail(
                r, ENG_EFORMAT,
                "key \"max_image_seq_len\" = %d must exceed base_image_seq_len = %d",
                c->max_image_seq_len, c->base_image_seq_len);
    }
    return 0;
}

int eng_config_load_scheduler(const char *path, eng_scheduler_config *out, eng_error *err)
{
    return eng_cfg_load_file(path, parse_scheduler, out, err);
}

int eng_config_parse_scheduler(const char *text, size_t len, const char *label,
                               eng_scheduler_config *out, eng_error *err)
{
    return eng_cfg_load_text(text, len, label, parse_scheduler, out, err);
}
