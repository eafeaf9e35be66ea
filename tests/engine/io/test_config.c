/*
 * test_config.c - the config loaders: SD3.5's real config files, diffusers / transformers
 * defaults for omitted keys, every required key reported by name when missing, wrong types and
 * ranges, the TTT map (presets, explicit lists, bad module names) and model_index.json.
 *
 * Each test writes its JSON into a fresh mkdtemp folder (removed afterwards).
 */
#include <criterion/criterion.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/io/config.h"
#include "tests/common/test_util.h"

/* ---- SD3.5 files, as diffusers / transformers saved them ---- */

static const char *const MEDIUM_TRANSFORMER =
    "{\"_class_name\": \"SD3Transformer2DModel\", \"_diffusers_version\": \"0.31.0.dev0\","
    " \"attention_head_dim\": 64, \"caption_projection_dim\": 1536,"
    " \"dual_attention_layers\": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],"
    " \"in_channels\": 16, \"joint_attention_dim\": 4096, \"num_attention_heads\": 24,"
    " \"num_layers\": 24, \"out_channels\": 16, \"patch_size\": 2,"
    " \"pooled_projection_dim\": 2048, \"pos_embed_max_size\": 384, \"qk_norm\": \"rms_norm\","
    " \"sample_size\": 128}";

static const char *const LARGE_TRANSFORMER =
    "{\"_class_name\": \"SD3Transformer2DModel\", \"_diffusers_version\": \"0.31.0.dev0\","
    " \"attention_head_dim\": 64, \"caption_projection_dim\": 2432, \"in_channels\": 16,"
    " \"joint_attention_dim\": 4096, \"num_attention_heads\": 38, \"num_layers\": 38,"
    " \"out_channels\": 16, \"patch_size\": 2, \"pooled_projection_dim\": 2048,"
    " \"pos_embed_max_size\": 192, \"qk_norm\": \"rms_norm\", \"sample_size\": 128}";

static const char *const SD35_VAE =
    "{\"_class_name\": \"AutoencoderKL\", \"_diffusers_version\": \"0.31.0.dev0\","
    " \"act_fn\": \"silu\", \"block_out_channels\": [128, 256, 512, 512],"
    " \"down_block_types\": [\"DownEncoderBlock2D\", \"DownEncoderBlock2D\","
    " \"DownEncoderBlock2D\", \"DownEncoderBlock2D\"], \"force_upcast\": true, \"in_channels\": 3,"
    " \"latent_channels\": 16, \"latents_mean\": null, \"latents_std\": null,"
    " \"layers_per_block\": 2, \"mid_block_add_attention\": true, \"norm_num_groups\": 32,"
    " \"out_channels\": 3, \"sample_size\": 1024, \"scaling_factor\": 1.5305,"
    " \"shift_factor\": 0.0609, \"up_block_types\": [\"UpDecoderBlock2D\", \"UpDecoderBlock2D\","
    " \"UpDecoderBlock2D\", \"UpDecoderBlock2D\"], \"use_post_quant_conv\": false,"
    " \"use_quant_conv\": false}";

static const char *const SD35_CLIP_L =
    "{\"architectures\": [\"CLIPTextModelWithProjection\"], \"attention_dropout\": 0.0,"
    " \"bos_token_id\": 0, \"dropout\": 0.0, \"eos_token_id\": 2, \"hidden_act\": \"quick_gelu\","
    " \"hidden_size\": 768, \"initializer_factor\": 1.0, \"initializer_range\": 0.02,"
    " \"intermediate_size\": 3072, \"layer_norm_eps\": 1e-05, \"max_position_embeddings\": 77,"
    " \"model_type\": \"clip_text_model\", \"num_attention_heads\": 12, \"num_hidden_layers\": 12,"
    " \"pad_token_id\": 1, \"projection_dim\": 768, \"torch_dtype\": \"float16\","
    " \"transformers_version\": \"4.41.2\", \"vocab_size\": 49408}";

static const char *const SD35_CLIP_G =
    "{\"architectures\": [\"CLIPTextModelWithProjection\"], \"attention_dropout\": 0.0,"
    " \"bos_token_id\": 0, \"dropout\": 0.0, \"eos_token_id\": 2, \"hidden_act\": \"gelu\","
    " \"hidden_size\": 1280, \"initializer_factor\": 1.0, \"initializer_range\": 0.02,"
    " \"intermediate_size\": 5120, \"layer_norm_eps\": 1e-05, \"max_position_embeddings\": 77,"
    " \"model_type\": \"clip_text_model\", \"num_attention_heads\": 20, \"num_hidden_layers\": 32,"
    " \"pad_token_id\": 1, \"projection_dim\": 1280, \"torch_dtype\": \"float16\","
    " \"transformers_version\": \"4.41.2\", \"vocab_size\": 49408}";

static const char *const SD35_T5 =
    "{\"architectures\": [\"T5EncoderModel\"], \"classifier_dropout\": 0.0, \"d_ff\": 10240,"
    " \"d_kv\": 64, \"d_model\": 4096, \"decoder_start_token_id\": 0,"
    " \"dense_act_fn\": \"gelu_new\", \"dropout_rate\": 0.1, \"eos_token_id\": 1,"
    " \"feed_forward_proj\": \"gated-gelu\", \"initializer_factor\": 1.0,"
    " \"is_encoder_decoder\": true, \"is_gated_act\": true, \"layer_norm_epsilon\": 1e-06,"
    " \"model_type\": \"t5\", \"num_decoder_layers\": 24, \"num_heads\": 64, \"num_layers\": 24,"
    " \"output_past\": true, \"pad_token_id\": 0, \"relative_attention_max_distance\": 128,"
    " \"relative_attention_num_buckets\": 32, \"tie_word_embeddings\": false,"
    " \"torch_dtype\": \"float16\", \"transformers_version\": \"4.41.2\", \"use_cache\": true,"
    " \"vocab_size\": 32128}";

static const char *const SD35_SCHEDULER =
    "{\"_class_name\": \"FlowMatchEulerDiscreteScheduler\","
    " \"_diffusers_version\": \"0.31.0.dev0\", \"num_train_timesteps\": 1000, \"shift\": 3.0}";

static const char *const SD35_MODEL_INDEX =
    "{\"_class_name\": \"StableDiffusion3Pipeline\", \"_diffusers_version\": \"0.31.0.dev0\","
    " \"feature_extractor\": [null, null], \"image_encoder\": [null, null],"
    " \"scheduler\": [\"diffusers\", \"FlowMatchEulerDiscreteScheduler\"],"
    " \"text_encoder\": [\"transformers\", \"CLIPTextModelWithProjection\"],"
    " \"text_encoder_2\": [\"transformers\", \"CLIPTextModelWithProjection\"],"
    " \"text_encoder_3\": [\"transformers\", \"T5EncoderModel\"],"
    " \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"],"
    " \"tokenizer_2\": [\"transformers\", \"CLIPTokenizer\"],"
    " \"tokenizer_3\": [\"transformers\", \"T5TokenizerFast\"],"
    " \"transformer\": [\"diffusers\", \"SD3Transformer2DModel\"],"
    " \"vae\": [\"diffusers\", \"AutoencoderKL\"]}";

/* ---- temp folder and file helpers ---- */

static char tmpdir[64];
static char pathbuf[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tttd_cfg_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
    tu_rmtree(tmpdir);
}

TestSuite(config, .init = setup, .fini = teardown);

/* Writes text to <tmpdir>/name; returns the path (valid until the next call). */
static const char *put(const char *name, const char *text)
{
    snprintf(pathbuf, sizeof pathbuf, "%s/%s", tmpdir, name);
    FILE *f = fopen(pathbuf, "wb");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return pathbuf;
}

/*
 * Writes base with key set to the JSON value (or deleted when value is NULL) to
 * <tmpdir>/config.json and returns the path.
 */
static const char *put_mod(const char *base, const char *key, const char *value)
{
    json_error_t je;
    json_t *root = json_loads(base, 0, &je);
    cr_assert_not_null(root, "base JSON: %s", je.text);
    if (value) {
        json_t *v = json_loads(value, JSON_DECODE_ANY, &je);
        cr_assert_not_null(v, "value JSON %s: %s", value, je.text);
        json_object_set_new(root, key, v);
    } else {
        json_object_del(root, key);
    }
    char *text = json_dumps(root, 0);
    json_decref(root);
    const char *p = put("config.json", text);
    free(text);
    return p;
}

/* Fails unless rc is code and the message holds every given fragment. */
#define expect_error(rc, err, code, ...)                                                           \
    do {                                                                                           \
        const char *frags_[] = {__VA_ARGS__};                                                      \
        int rc_ = (rc);                                                                            \
        cr_assert_eq(rc_, (code), "rc %d, expected %d (%s)", rc_, (code), (err).msg);              \
        for (size_t f_ = 0; f_ < sizeof frags_ / sizeof frags_[0]; f_++)                           \
            cr_assert(strstr((err).msg, frags_[f_]), "message \"%s\" lacks \"%s\"", (err).msg,     \
                      frags_[f_]);                                                                 \
    } while (0)

static int count_flags(const uint8_t *f, int n)
{
    int c = 0;
    for (int i = 0; i < n; i++)
        c += f[i] != 0;
    return c;
}

/* ---- transformer ---- */

Test(config, transformer_sd35_medium)
{
    eng_transformer_config c;
    eng_error err = {0};
    int rc = eng_config_load_transformer(put("config.json", MEDIUM_TRANSFORMER), &c, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_eq(c.num_layers, 24);
    cr_assert_eq(c.num_attention_heads, 24);
    cr_assert_eq(c.attention_head_dim, 64);
    cr_assert_eq(c.inner_dim, 1536);
    cr_assert_eq(c.caption_projection_dim, 1536);
    cr_assert_eq(c.joint_attention_dim, 4096);
    cr_assert_eq(c.pooled_projection_dim, 2048);
    cr_assert_eq(c.pos_embed_max_size, 384);
    cr_assert_eq(c.sample_size, 128);
    cr_assert_eq(c.patch_size, 2);
    cr_assert_eq(c.in_channels, 16);
    cr_assert_eq(c.out_channels, 16);
    cr_assert_eq(c.qk_norm, ENG_QK_NORM_RMS);
    cr_assert_eq(c.num_dual_attention_layers, 13);
    for (int i = 0; i < 24; i++)
        cr_assert_eq(c.dual_attention[i], i <= 12, "block %d", i);
    cr_assert_eq(c.ttt_preset, ENG_TTT_PRESET_NONE);
    cr_assert_eq(c.num_ttt_modules, 0);
}

Test(config, transformer_sd35_large)
{
    eng_transformer_config c;
    eng_error err = {0};
    int rc = eng_config_load_transformer(put("config.json", LARGE_TRANSFORMER), &c, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_eq(c.num_layers, 38);
    cr_assert_eq(c.inner_dim, 2432);
    cr_assert_eq(c.pos_embed_max_size, 192);
    cr_assert_eq(c.num_dual_attention_layers, 0);
}

Test(config, transformer_defaults)
{
    eng_transformer_config c;
    eng_error err = {0};
    const char *min = "{\"num_layers\": 18, \"num_attention_heads\": 18, "
                      "\"attention_head_dim\": 64, \"caption_projection_dim\": 1152}";
    int rc = eng_config_load_transformer(put("config.json", min), &c, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_eq(c.sample_size, 128);
    cr_assert_eq(c.patch_size, 2);
    cr_assert_eq(c.in_channels, 16);
    cr_assert_eq(c.out_channels, 16);
    cr_assert_eq(c.joint_attention_dim, 4096);
    cr_assert_eq(c.pooled_projection_dim, 2048);
    cr_assert_eq(c.pos_embed_max_size, 96);
    cr_assert_eq(c.qk_norm, ENG_QK_NORM_NONE);
    cr_assert_eq(c.num_dual_attention_layers, 0);
    cr_assert_eq(c.num_ttt_modules, 0);
    cr_assert_eq(c.inner_dim, 1152);
}

Test(config, transformer_out_channels_null_is_in_channels)
{
    eng_transformer_config c;
    eng_error err = {0};
    const char *j = "{\"num_layers\": 2, \"num_attention_heads\": 2, \"attention_head_dim\": 8, "
                    "\"caption_projection_dim\": 16, \"in_channels\": 4, \"out_channels\": null, "
                    "\"qk_norm\": null, \"dual_attention_layers\": [1, 1]}";
    int rc = eng_config_parse_transformer(j, strlen(j), "mem.json", &c, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_eq(c.out_channels, 4);
    cr_assert_eq(c.qk_norm, ENG_QK_NORM_NONE);
    cr_assert_eq(c.num_dual_attention_layers, 1);
    cr_assert(c.dual_attention[1] && !c.dual_attention[0]);
}

Test(config, transformer_unknown_keys_ignored)
{
    eng_transformer_config c;
    eng_error err = {0};
    const char *p = put_mod(MEDIUM_TRANSFORMER, "_name_or_path", "{\"nested\": [1, 2]}");
    cr_assert_eq(eng_config_load_transformer(p, &c, &err), 0, "%s", err.msg);
    p = put_mod(MEDIUM_TRANSFORMER, "some_future_option", "\"x\"");
    cr_assert_eq(eng_config_load_transformer(p, &c, &err), 0, "%s", err.msg);
}

Test(config, transformer_missing_required_keys)
{
    static const char *const keys[] = {"num_layers", "num_attention_heads", "attention_head_dim",
                                       "caption_projection_dim"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        eng_transformer_config c;
        eng_error err = {0};
        char want[96];
        const char *p = put_mod(MEDIUM_TRANSFORMER, keys[i], NULL);
        int rc = eng_config_load_transformer(p, &c, &err);
        snprintf(want, sizeof want, "missing required key \"%s\"", keys[i]);
        expect_error(rc, err, ENG_ENOTFOUND, want, p);
    }
}

Test(config, transformer_message_names_the_path_as_given)
{
    eng_transformer_config c;
    eng_error err = {0};
    char cwd[512], sub[300];
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    snprintf(sub, sizeof sub, "%s/transformer", tmpdir);
    cr_assert_eq(mkdir(sub, 0755), 0);
    put_mod(MEDIUM_TRANSFORMER, "num_layers", NULL);
    snprintf(sub, sizeof sub, "%s/transformer/config.json", tmpdir);
    cr_assert_eq(rename(pathbuf, sub), 0);
    cr_assert_eq(chdir(tmpdir), 0);
    int rc = eng_config_load_transformer("transformer/config.json", &c, &err);
    cr_assert_eq(chdir(cwd), 0);
    cr_assert_eq(rc, ENG_ENOTFOUND);
    cr_assert_str_eq(err.msg, "transformer/config.json: missing required key \"num_layers\"");
}

Test(config, transformer_wrong_types)
{
    static const struct {
        const char *key, *value, *frag;
    } cases[] = {
        {"num_layers", "\"24\"", "key \"num_layers\" must be an integer, not a string"},
        {"patch_size", "2.0", "key \"patch_size\" must be an integer, not a real number"},
        {"in_channels", "null", "key \"in_channels\" must be an integer, not null"},
        {"sample_size", "true", "key \"sample_size\" must be an integer, not a boolean"},
        {"qk_norm", "5", "key \"qk_norm\" must be a string"},
        {"dual_attention_layers", "\"0-12\"", "key \"dual_attention_layers\" must be an array"},
        {"dual_attention_layers", "[0, \"1\"]",
         "key \"dual_attention_layers[1]\" must be an integer"},
        {"ttt", "\"all\"", "key \"ttt\" must be an object, not a string"},
        {"ttt", "{\"preset\": 1}", "key \"ttt.preset\" must be a string"},
        {"ttt", "{\"modules\": \"transformer_blocks.0.attn\"}",
         "key \"ttt.modules\" must be an array"},
        {"ttt", "{\"modules\": [3]}", "key \"ttt.modules[0]\" must be a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        eng_transformer_config c;
        eng_error err = {0};
        const char *p = put_mod(MEDIUM_TRANSFORMER, cases[i].key, cases[i].value);
        int rc = eng_config_load_transformer(p, &c, &err);
        expect_error(rc, err, ENG_EFORMAT, cases[i].frag, p);
    }
}

Test(config, transformer_out_of_range)
{
    static const struct {
        const char *key, *value, *frag;
    } cases[] = {
        {"patch_size", "0", "key \"patch_size\" = 0 is out of range [1, 64]"},
        {"num_layers", "0", "key \"num_layers\" = 0 is out of range"},
        {"num_layers", "1000", "key \"num_layers\" = 1000 is out of range [1, 128]"},
        {"num_attention_heads", "-3", "key \"num_attention_heads\" = -3 is out of range"},
        {"dual_attention_layers", "[0, 24]", "dual_attention_layers[1]\" = 24 is not a block"},
        {"dual_attention_layers", "[-1]", "dual_attention_layers[0]\" = -1 is not a block"},
        {"caption_projection_dim", "1024", "caption_projection_dim\" = 1024 must equal"},
        {"num_layers", "99999999999999", "out of range"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        eng_transformer_config c;
        eng_error err = {0};
        const char *p = put_mod(MEDIUM_TRANSFORMER, cases[i].key, cases[i].value);
        int rc = eng_config_load_transformer(p, &c, &err);
        expect_error(rc, err, ENG_EFORMAT, cases[i].frag, p);
    }
}

Test(config, transformer_unsupported_values)
{
    eng_transformer_config c;
    eng_error err = {0};
    const char *p = put_mod(MEDIUM_TRANSFORMER, "qk_norm", "\"layer_norm\"");
    expect_error(eng_config_load_transformer(p, &c, &err), err, ENG_EUNSUPPORTED, "qk_norm");
    p = put_mod(MEDIUM_TRANSFORMER, "qk_norm", "\"banana\"");
    expect_error(eng_config_load_transformer(p, &c, &err), err, ENG_EFORMAT, "\"banana\"");
    p = put_mod(MEDIUM_TRANSFORMER, "_class_name", "\"FluxTransformer2DModel\"");
    expect_error(eng_config_load_transformer(p, &c, &err), err, ENG_EUNSUPPORTED,
                 "FluxTransformer2DModel");
    p = put_mod(MEDIUM_TRANSFORMER, "pos_embed_max_size", "null");
    expect_error(eng_config_load_transformer(p, &c, &err), err, ENG_EUNSUPPORTED,
                 "pos_embed_max_size");
}

Test(config, transformer_inner_dim_multiple_of_4)
{
    eng_transformer_config c;
    eng_error err = {0};
    const char *j = "{\"num_layers\": 1, \"num_attention_heads\": 3, \"attention_head_dim\": 3, "
                    "\"caption_projection_dim\": 9}";
    int rc = eng_config_parse_transformer(j, strlen(j), "t.json", &c, &err);
    expect_error(rc, err, ENG_EFORMAT, "t.json: ", "multiple of 4");
}

/* ---- the TTT map ---- */

Test(config, ttt_preset_sd35_t5_medium)
{
    eng_transformer_config c;
    eng_error err = {0};
    const char *p = put_mod(MEDIUM_TRANSFORMER, "ttt", "{\"preset\": \"sd35-t5\"}");
    cr_assert_eq(eng_config_load_transformer(p, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.ttt_preset, ENG_TTT_PRESET_SD35_T5);
    cr_assert_eq(c.num_ttt_modules, 18);
    cr_assert_eq(count_flags(c.ttt_attn2, 24), 13);
    cr_assert_eq(count_flags(c.ttt_attn, 24), 5);
    for (int i = 0; i < 24; i++) {
        cr_assert_eq(c.ttt_attn2[i], i <= 12, "attn2 of block %d", i);
        cr_assert_eq(c.ttt_attn[i], i >= 19, "attn of block %d", i);
    }
    cr_assert_str_eq(eng_ttt_preset_name(c.ttt_preset), "sd35-t5");
}

Test(config, ttt_preset_sd35_t5_large)
{
    eng_transformer_config c;
    eng_error err = {0};
    const char *p = put_mod(LARGE_TRANSFORMER, "ttt", "{\"preset\": \"sd35-t5\"}");
    cr_assert_eq(eng_config_load_transformer(p, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.num_ttt_modules, 5);
    for (int i = 0; i < 38; i++)
        cr_assert_eq(c.ttt_attn[i], i >= 33, "attn of block %d", i);
    cr_assert_eq(count_flags(c.ttt_attn2, 38), 0);
}

Test(config, ttt_preset_all_and_none)
{
    eng_transformer_config c;
    eng_error err = {0};
    const char *p = put_mod(MEDIUM_TRANSFORMER, "ttt", "{\"preset\": \"all\"}");
    cr_assert_eq(eng_config_load_transformer(p, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.ttt_preset, ENG_TTT_PRESET_ALL);
    cr_assert_eq(c.num_ttt_modules, 37);
    cr_assert_eq(count_flags(c.ttt_attn, 24), 24);
    cr_assert_eq(count_flags(c.ttt_attn2, 24), 13);
    cr_assert_eq(c.ttt_attn2[13], 0);

    p = put_mod(MEDIUM_TRANSFORMER, "ttt", "{\"preset\": \"none\", \"comment\": \"x\"}");
    cr_assert_eq(eng_config_load_transformer(p, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.ttt_preset, ENG_TTT_PRESET_NONE);
    cr_assert_eq(c.num_ttt_modules, 0);

    p = put_mod(MEDIUM_TRANSFORMER, "ttt", "null");
    cr_assert_eq(eng_config_load_transformer(p, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.num_ttt_modules, 0);
}

Test(config, ttt_explicit_modules)
{
    eng_transformer_config c;
    eng_error err = {0};
    const char *p = put_mod(MEDIUM_TRANSFORMER, "ttt",
                            "{\"modules\": [\"transformer_blocks.0.attn2\", "
                            "\"transformer_blocks.19.attn\", \"transformer_blocks.23.attn\", "
                            "\"transformer_blocks.12.attn2\", \"transformer_blocks.3.attn\"]}");
    cr_assert_eq(eng_config_load_transformer(p, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.ttt_preset, ENG_TTT_PRESET_CUSTOM);
    cr_assert_eq(c.num_ttt_modules, 5);
    cr_assert(c.ttt_attn2[0] && c.ttt_attn2[12] && !c.ttt_attn2[1]);
    cr_assert(c.ttt_attn[19] && c.ttt_attn[23] && c.ttt_attn[3] && !c.ttt_attn[0]);

    p = put_mod(MEDIUM_TRANSFORMER, "ttt", "{\"modules\": []}");
    cr_assert_eq(eng_config_load_transformer(p, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.num_ttt_modules, 0);
}

Test(config, ttt_bad_modules)
{
    static const struct {
        const char *value, *frag;
    } cases[] = {
        {"{\"modules\": [\"transformer_blocks.24.attn\"]}",
         "\"transformer_blocks.24.attn\": no block 24"},
        {"{\"modules\": [\"transformer_blocks.13.attn2\"]}",
         "\"transformer_blocks.13.attn2\": block 13 has no attn2"},
        {"{\"modules\": [\"transformer_blocks.01.attn\"]}",
         "\"transformer_blocks.01.attn\" is not a module name"},
        {"{\"modules\": [\"transformer_blocks.1.attn3\"]}",
         "\"transformer_blocks.1.attn3\" is not a module name"},
        {"{\"modules\": [\"blocks.1.attn\"]}", "\"blocks.1.attn\" is not a module name"},
        {"{\"modules\": [\"transformer_blocks..attn\"]}", "is not a module name"},
        {"{\"modules\": [\"transformer_blocks.-1.attn\"]}", "is not a module name"},
        {"{\"modules\": [\"transformer_blocks.1.attn \"]}", "is not a module name"},
        {"{\"modules\": [\"transformer_blocks.99999999999.attn\"]}", "is not a module name"},
        {"{\"modules\": [\"transformer_blocks.2.attn\", \"transformer_blocks.2.attn\"]}",
         "\"transformer_blocks.2.attn\" is listed twice"},
        {"{\"preset\": \"fast\"}", "\"ttt.preset\" = \"fast\" is not a preset"},
        {"{\"preset\": \"all\", \"modules\": []}", "not both"},
        {"{}", "must have \"preset\" or \"modules\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        eng_transformer_config c;
        eng_error err = {0};
        const char *p = put_mod(MEDIUM_TRANSFORMER, "ttt", cases[i].value);
        int rc = eng_config_load_transformer(p, &c, &err);
        expect_error(rc, err, ENG_EFORMAT, cases[i].frag, p);
    }
}

/* ---- files ---- */

Test(config, missing_file_and_bad_json)
{
    eng_transformer_config c;
    eng_error err = {0};
    char p[300];
    snprintf(p, sizeof p, "%s/nope/config.json", tmpdir);
    expect_error(eng_config_load_transformer(p, &c, &err), err, ENG_ENOTFOUND, p);

    const char *q = put("config.json", "{\"num_layers\": 24,");
    expect_error(eng_config_load_transformer(q, &c, &err), err, ENG_EFORMAT, q, "invalid JSON",
                 "line 1");
    q = put("config.json", "[1, 2]");
    expect_error(eng_config_load_transformer(q, &c, &err), err, ENG_EFORMAT, q,
                 "top level must be an object");
    q = put("config.json", "{} trailing");
    expect_error(eng_config_load_transformer(q, &c, &err), err, ENG_EFORMAT, "invalid JSON");
    expect_error(eng_config_parse_transformer("{", 1, "buf", &c, &err), err, ENG_EFORMAT,
                 "buf: invalid JSON");
}

Test(config, class_name_peek)
{
    char buf[64];
    eng_error err = {0};
    cr_assert_eq(eng_config_class_name(put("a.json", MEDIUM_TRANSFORMER), buf, sizeof buf, &err),
                 0);
    cr_assert_str_eq(buf, "SD3Transformer2DModel");
    cr_assert_eq(eng_config_class_name(put("b.json", SD35_T5), buf, sizeof buf, &err), 0);
    cr_assert_str_eq(buf, "T5EncoderModel");
    cr_assert_eq(
        eng_config_class_name(put("c.json", "{\"model_type\": \"t5\"}"), buf, sizeof buf, &err), 0);
    cr_assert_str_eq(buf, "t5");
    const char *p = put("d.json", "{\"x\": 1}");
    expect_error(eng_config_class_name(p, buf, sizeof buf, &err), err, ENG_ENOTFOUND, p);
}

/* ---- VAE ---- */

Test(config, vae_sd35)
{
    eng_vae_config c;
    eng_error err = {0};
    cr_assert_eq(eng_config_load_vae(put("config.json", SD35_VAE), &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.in_channels, 3);
    cr_assert_eq(c.out_channels, 3);
    cr_assert_eq(c.latent_channels, 16);
    cr_assert_eq(c.num_blocks, 4);
    cr_assert(c.block_out_channels[0] == 128 && c.block_out_channels[1] == 256 &&
              c.block_out_channels[2] == 512 && c.block_out_channels[3] == 512);
    cr_assert_eq(c.layers_per_block, 2);
    cr_assert_eq(c.norm_num_groups, 32);
    cr_assert_eq(c.sample_size, 1024);
    cr_assert_float_eq(c.scaling_factor, 1.5305, 1e-12);
    cr_assert_float_eq(c.shift_factor, 0.0609, 1e-12);
    cr_assert_eq(c.use_quant_conv, 0);
    cr_assert_eq(c.use_post_quant_conv, 0);
    cr_assert_eq(c.mid_block_add_attention, 1);
    cr_assert_eq(c.force_upcast, 1);
}

Test(config, vae_defaults)
{
    eng_vae_config c;
    eng_error err = {0};
    const char *j =
        "{\"block_out_channels\": [64], \"latent_channels\": 4, \"shift_factor\": null}";
    cr_assert_eq(eng_config_parse_vae(j, strlen(j), "vae.json", &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.in_channels, 3);
    cr_assert_eq(c.out_channels, 3);
    cr_assert_eq(c.layers_per_block, 1);
    cr_assert_eq(c.norm_num_groups, 32);
    cr_assert_eq(c.sample_size, 32);
    cr_assert_float_eq(c.scaling_factor, 0.18215, 1e-12);
    cr_assert_float_eq(c.shift_factor, 0.0, 0.0);
    cr_assert_eq(c.use_quant_conv, 1);
    cr_assert_eq(c.use_post_quant_conv, 1);
    cr_assert_eq(c.mid_block_add_attention, 1);
}

Test(config, vae_errors)
{
    static const struct {
        const char *key, *value;
        int code;
        const char *frag;
    } cases[] = {
        {"block_out_channels", NULL, ENG_ENOTFOUND, "missing required key \"block_out_channels\""},
        {"latent_channels", NULL, ENG_ENOTFOUND, "missing required key \"latent_channels\""},
        {"block_out_channels", "[]", ENG_EFORMAT, "\"block_out_channels\" has 0 entries"},
        {"block_out_channels", "128", ENG_EFORMAT, "\"block_out_channels\" must be an array"},
        {"block_out_channels", "[128, 256, 500, 512]", ENG_EFORMAT,
         "block_out_channels[2] = 500 is not a multiple of norm_num_groups = 32"},
        {"block_out_channels", "[128, \"256\", 512, 512]", ENG_EFORMAT, "block_out_channels[1]"},
        {"scaling_factor", "0", ENG_EFORMAT, "\"scaling_factor\" = 0 is out of range"},
        {"scaling_factor", "\"1.5\"", ENG_EFORMAT, "\"scaling_factor\" must be a number"},
        {"use_quant_conv", "0", ENG_EFORMAT, "\"use_quant_conv\" must be a boolean"},
        {"act_fn", "\"relu\"", ENG_EUNSUPPORTED, "\"act_fn\" = \"relu\""},
        {"up_block_types", "[\"UpDecoderBlock2D\"]", ENG_EFORMAT, "\"up_block_types\" has 1"},
        {"down_block_types",
         "[\"DownEncoderBlock2D\", \"DownEncoderBlock2D\", \"AttnDownEncoderBlock2D\", "
         "\"DownEncoderBlock2D\"]",
         ENG_EUNSUPPORTED, "down_block_types[2]\" = \"AttnDownEncoderBlock2D\""},
        {"_class_name", "\"AutoencoderTiny\"", ENG_EUNSUPPORTED, "AutoencoderTiny"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        eng_vae_config c;
        eng_error err = {0};
        const char *p = put_mod(SD35_VAE, cases[i].key, cases[i].value);
        int rc = eng_config_load_vae(p, &c, &err);
        expect_error(rc, err, cases[i].code, cases[i].frag, p);
    }
}

/* ---- CLIP ---- */

Test(config, clip_sd35_l_and_g)
{
    eng_clip_text_config c;
    eng_error err = {0};
    cr_assert_eq(eng_config_load_clip_text(put("l.json", SD35_CLIP_L), &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.hidden_size, 768);
    cr_assert_eq(c.intermediate_size, 3072);
    cr_assert_eq(c.projection_dim, 768);
    cr_assert_eq(c.num_hidden_layers, 12);
    cr_assert_eq(c.num_attention_heads, 12);
    cr_assert_eq(c.head_dim, 64);
    cr_assert_eq(c.max_position_embeddings, 77);
    cr_assert_eq(c.vocab_size, 49408);
    cr_assert_eq(c.hidden_act, ENG_ACT_QUICK_GELU);
    cr_assert_float_eq(c.layer_norm_eps, 1e-5, 1e-15);
    cr_assert_eq(c.bos_token_id, 0);
    cr_assert_eq(c.eos_token_id, 2);
    cr_assert_eq(c.pad_token_id, 1);

    cr_assert_eq(eng_config_load_clip_text(put("g.json", SD35_CLIP_G), &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.hidden_size, 1280);
    cr_assert_eq(c.intermediate_size, 5120);
    cr_assert_eq(c.projection_dim, 1280);
    cr_assert_eq(c.num_hidden_layers, 32);
    cr_assert_eq(c.num_attention_heads, 20);
    cr_assert_eq(c.head_dim, 64);
    cr_assert_eq(c.hidden_act, ENG_ACT_GELU_ERF);
}

Test(config, clip_defaults)
{
    eng_clip_text_config c;
    eng_error err = {0};
    const char *j = "{\"hidden_size\": 512, \"intermediate_size\": 2048, \"projection_dim\": 512,"
                    " \"num_hidden_layers\": 12, \"num_attention_heads\": 8}";
    cr_assert_eq(eng_config_parse_clip_text(j, strlen(j), "c.json", &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.vocab_size, 49408);
    cr_assert_eq(c.max_position_embeddings, 77);
    cr_assert_eq(c.hidden_act, ENG_ACT_QUICK_GELU);
    cr_assert_float_eq(c.layer_norm_eps, 1e-5, 1e-15);
    cr_assert_eq(c.pad_token_id, 1);
    cr_assert_eq(c.bos_token_id, 49406);
    cr_assert_eq(c.eos_token_id, 49407);
}

Test(config, clip_errors)
{
    static const struct {
        const char *key, *value;
        int code;
        const char *frag;
    } cases[] = {
        {"hidden_size", NULL, ENG_ENOTFOUND, "missing required key \"hidden_size\""},
        {"intermediate_size", NULL, ENG_ENOTFOUND, "missing required key \"intermediate_size\""},
        {"num_hidden_layers", NULL, ENG_ENOTFOUND, "missing required key \"num_hidden_layers\""},
        {"num_attention_heads", NULL, ENG_ENOTFOUND,
         "missing required key \"num_attention_heads\""},
        {"projection_dim", NULL, ENG_ENOTFOUND, "missing required key \"projection_dim\""},
        {"hidden_act", "\"selu\"", ENG_EUNSUPPORTED, "\"hidden_act\" = \"selu\""},
        {"hidden_act", "7", ENG_EFORMAT, "\"hidden_act\" must be a string"},
        {"num_attention_heads", "7", ENG_EFORMAT, "not a multiple of num_attention_heads = 7"},
        {"layer_norm_eps", "0", ENG_EFORMAT, "\"layer_norm_eps\" = 0 is out of range"},
        {"eos_token_id", "49408", ENG_EFORMAT, "\"eos_token_id\" = 49408 is out of range"},
        {"model_type", "\"clip_vision_model\"", ENG_EUNSUPPORTED, "clip_vision_model"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        eng_clip_text_config c;
        eng_error err = {0};
        const char *p = put_mod(SD35_CLIP_L, cases[i].key, cases[i].value);
        int rc = eng_config_load_clip_text(p, &c, &err);
        expect_error(rc, err, cases[i].code, cases[i].frag, p);
    }
}

Test(config, clip_activations_and_null_ids)
{
    eng_clip_text_config c;
    eng_error err = {0};
    cr_assert_eq(
        eng_config_load_clip_text(put_mod(SD35_CLIP_L, "hidden_act", "\"gelu_new\""), &c, &err), 0,
        "%s", err.msg);
    cr_assert_eq(c.hidden_act, ENG_ACT_GELU_TANH);
    cr_assert_eq(eng_config_load_clip_text(put_mod(SD35_CLIP_L, "pad_token_id", "null"), &c, &err),
                 0, "%s", err.msg);
    cr_assert_eq(c.pad_token_id, -1);
    cr_assert_str_eq(eng_config_act_name(ENG_ACT_QUICK_GELU), "quick_gelu");
    cr_assert_str_eq(eng_config_act_name(ENG_ACT_GELU_ERF), "gelu");
}

/* ---- T5 ---- */

Test(config, t5_sd35)
{
    eng_t5_config c;
    eng_error err = {0};
    cr_assert_eq(eng_config_load_t5(put("config.json", SD35_T5), &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.vocab_size, 32128);
    cr_assert_eq(c.d_model, 4096);
    cr_assert_eq(c.d_kv, 64);
    cr_assert_eq(c.d_ff, 10240);
    cr_assert_eq(c.num_layers, 24);
    cr_assert_eq(c.num_heads, 64);
    cr_assert_eq(c.relative_attention_num_buckets, 32);
    cr_assert_eq(c.relative_attention_max_distance, 128);
    cr_assert_float_eq(c.layer_norm_epsilon, 1e-6, 1e-16);
    cr_assert_str_eq(c.feed_forward_proj, "gated-gelu");
    cr_assert_eq(c.is_gated_act, 1);
    cr_assert_eq(c.dense_act_fn, ENG_ACT_GELU_TANH);
    cr_assert_eq(c.pad_token_id, 0);
    cr_assert_eq(c.eos_token_id, 1);
}

Test(config, t5_defaults_and_feed_forward_proj)
{
    eng_t5_config c;
    eng_error err = {0};
    /* transformers' default feed_forward_proj is "relu", which tttd has no kernel for. */
    const char *j = "{\"d_model\": 512, \"d_kv\": 64, \"d_ff\": 2048, \"num_layers\": 6, "
                    "\"num_heads\": 8}";
    expect_error(eng_config_parse_t5(j, strlen(j), "t5.json", &c, &err), err, ENG_EUNSUPPORTED,
                 "t5.json: key \"feed_forward_proj\" = \"relu\" is not a supported activation");
    j = "{\"d_model\": 512, \"d_kv\": 64, \"d_ff\": 2048, \"num_layers\": 6, "
        "\"num_heads\": 8, \"feed_forward_proj\": \"gated-gelu\"}";
    cr_assert_eq(eng_config_parse_t5(j, strlen(j), "t5.json", &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.vocab_size, 32128);
    cr_assert_eq(c.relative_attention_num_buckets, 32);
    cr_assert_eq(c.relative_attention_max_distance, 128);
    cr_assert_float_eq(c.layer_norm_epsilon, 1e-6, 1e-16);
    cr_assert_eq(c.pad_token_id, 0);
    cr_assert_eq(c.eos_token_id, 1);

    /* Without dense_act_fn / is_gated_act in the file, both come from feed_forward_proj. */
    const char *base = "{\"d_model\": 512, \"d_kv\": 64, \"d_ff\": 2048, \"num_layers\": 6, "
                       "\"num_heads\": 8}";
    cr_assert_eq(eng_config_load_t5(put_mod(base, "feed_forward_proj", "\"gated-gelu\""), &c, &err),
                 0, "%s", err.msg);
    cr_assert(c.is_gated_act && c.dense_act_fn == ENG_ACT_GELU_TANH);
    cr_assert_eq(eng_config_load_t5(put_mod(base, "feed_forward_proj", "\"gated-silu\""), &c, &err),
                 0, "%s", err.msg);
    cr_assert(c.is_gated_act && c.dense_act_fn == ENG_ACT_SILU);
    cr_assert_eq(eng_config_load_t5(put_mod(base, "feed_forward_proj", "\"gelu\""), &c, &err), 0,
                 "%s", err.msg);
    cr_assert(!c.is_gated_act && c.dense_act_fn == ENG_ACT_GELU_ERF);
    /* A file's dense_act_fn overrides the derived one, as in transformers. */
    cr_assert_eq(eng_config_load_t5(put_mod(SD35_T5, "dense_act_fn", "\"gelu\""), &c, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(c.dense_act_fn, ENG_ACT_GELU_ERF);
}

Test(config, t5_errors)
{
    static const struct {
        const char *key, *value;
        int code;
        const char *frag;
    } cases[] = {
        {"d_model", NULL, ENG_ENOTFOUND, "missing required key \"d_model\""},
        {"d_kv", NULL, ENG_ENOTFOUND, "missing required key \"d_kv\""},
        {"d_ff", NULL, ENG_ENOTFOUND, "missing required key \"d_ff\""},
        {"num_layers", NULL, ENG_ENOTFOUND, "missing required key \"num_layers\""},
        {"num_heads", NULL, ENG_ENOTFOUND, "missing required key \"num_heads\""},
        {"feed_forward_proj", "\"gated-gelu-x\"", ENG_EFORMAT, "is not \"ACT\" or \"gated-ACT\""},
        {"feed_forward_proj", "\"fancy-gelu\"", ENG_EFORMAT, "is not \"ACT\" or \"gated-ACT\""},
        {"dense_act_fn", "\"mish\"", ENG_EUNSUPPORTED, "\"dense_act_fn\" = \"mish\""},
        {"d_ff", "10240.5", ENG_EFORMAT, "\"d_ff\" must be an integer"},
        {"is_gated_act", "\"yes\"", ENG_EFORMAT, "\"is_gated_act\" must be a boolean"},
        {"model_type", "\"bert\"", ENG_EUNSUPPORTED, "\"bert\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        eng_t5_config c;
        eng_error err = {0};
        const char *p = put_mod(SD35_T5, cases[i].key, cases[i].value);
        int rc = eng_config_load_t5(p, &c, &err);
        expect_error(rc, err, cases[i].code, cases[i].frag, p);
    }
}

/* ---- scheduler ---- */

Test(config, scheduler_sd35)
{
    eng_scheduler_config c;
    eng_error err = {0};
    cr_assert_eq(eng_config_load_scheduler(put("scheduler_config.json", SD35_SCHEDULER), &c, &err),
                 0, "%s", err.msg);
    cr_assert_eq(c.num_train_timesteps, 1000);
    cr_assert_float_eq(c.shift, 3.0, 0.0);
    cr_assert_eq(c.use_dynamic_shifting, 0);
    cr_assert_float_eq(c.base_shift, 0.5, 0.0);
    cr_assert_float_eq(c.max_shift, 1.15, 0.0);
    cr_assert_eq(c.base_image_seq_len, 256);
    cr_assert_eq(c.max_image_seq_len, 4096);
    cr_assert_eq(c.invert_sigmas, 0);
    cr_assert_float_eq(c.shift_terminal, 0.0, 0.0);
    cr_assert_eq(c.time_shift_type, ENG_TIME_SHIFT_EXPONENTIAL);
}

Test(config, scheduler_defaults_and_nulls)
{
    eng_scheduler_config c;
    eng_error err = {0};
    cr_assert_eq(eng_config_parse_scheduler("{}", 2, "s.json", &c, &err), 0, "%s", err.msg);
    cr_assert_float_eq(c.shift, 1.0, 0.0);
    cr_assert_eq(c.num_train_timesteps, 1000);
    const char *j = "{\"base_shift\": null, \"max_shift\": null, \"shift_terminal\": null, "
                    "\"time_shift_type\": \"linear\", \"use_karras_sigmas\": false, "
                    "\"shift\": 3}";
    cr_assert_eq(eng_config_parse_scheduler(j, strlen(j), "s.json", &c, &err), 0, "%s", err.msg);
    cr_assert(isnan(c.base_shift) && isnan(c.max_shift));
    cr_assert_float_eq(c.shift, 3.0, 0.0);
    cr_assert_eq(c.time_shift_type, ENG_TIME_SHIFT_LINEAR);
    const char *d = "{\"use_dynamic_shifting\": true, \"shift_terminal\": 0.02}";
    cr_assert_eq(eng_config_parse_scheduler(d, strlen(d), "s.json", &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.use_dynamic_shifting, 1);
    cr_assert_float_eq(c.shift_terminal, 0.02, 0.0);
}

Test(config, scheduler_errors)
{
    static const struct {
        const char *key, *value;
        int code;
        const char *frag;
    } cases[] = {
        {"use_karras_sigmas", "true", ENG_EUNSUPPORTED, "\"use_karras_sigmas\" = true"},
        {"use_exponential_sigmas", "true", ENG_EUNSUPPORTED, "\"use_exponential_sigmas\""},
        {"use_beta_sigmas", "true", ENG_EUNSUPPORTED, "\"use_beta_sigmas\""},
        {"stochastic_sampling", "true", ENG_EUNSUPPORTED, "\"stochastic_sampling\""},
        {"use_karras_sigmas", "1", ENG_EFORMAT, "\"use_karras_sigmas\" must be a boolean"},
        {"time_shift_type", "\"cosine\"", ENG_EFORMAT, "\"time_shift_type\" = \"cosine\""},
        {"shift", "0", ENG_EFORMAT, "\"shift\" = 0 is out of range"},
        {"shift", "\"3.0\"", ENG_EFORMAT, "\"shift\" must be a number, not a string"},
        {"shift_terminal", "1.0", ENG_EFORMAT, "\"shift_terminal\" = 1 must be below 1"},
        {"num_train_timesteps", "0", ENG_EFORMAT, "\"num_train_timesteps\" = 0"},
        {"_class_name", "\"EulerDiscreteScheduler\"", ENG_EUNSUPPORTED, "EulerDiscreteScheduler"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        eng_scheduler_config c;
        eng_error err = {0};
        const char *p = put_mod(SD35_SCHEDULER, cases[i].key, cases[i].value);
        int rc = eng_config_load_scheduler(p, &c, &err);
        expect_error(rc, err, cases[i].code, cases[i].frag, p);
    }
}

Test(config, scheduler_dynamic_shifting_needs_shifts)
{
    eng_scheduler_config c;
    eng_error err = {0};
    const char *j = "{\"use_dynamic_shifting\": true, \"base_shift\": null}";
    expect_error(eng_config_parse_scheduler(j, strlen(j), "s.json", &c, &err), err, ENG_EFORMAT,
                 "base_shift and max_shift");
    j = "{\"use_dynamic_shifting\": true, \"base_image_seq_len\": 4096}";
    expect_error(eng_config_parse_scheduler(j, strlen(j), "s.json", &c, &err), err, ENG_EFORMAT,
                 "max_image_seq_len");
}

/* ---- model_index.json ---- */

Test(config, model_index_sd35)
{
    eng_model_index m;
    eng_error err = {0};
    cr_assert_eq(eng_model_index_load(put("model_index.json", SD35_MODEL_INDEX), &m, &err), 0, "%s",
                 err.msg);
    cr_assert_str_eq(m.class_name, "StableDiffusion3Pipeline");
    cr_assert_str_eq(m.diffusers_version, "0.31.0.dev0");
    cr_assert_eq(m.num_components, 9); /* feature_extractor and image_encoder are absent */
    const eng_component *t = eng_model_index_find(&m, "transformer");
    cr_assert_not_null(t);
    cr_assert_str_eq(t->library, "diffusers");
    cr_assert_str_eq(t->class_name, "SD3Transformer2DModel");
    cr_assert_str_eq(eng_model_index_find(&m, "text_encoder_3")->class_name, "T5EncoderModel");
    cr_assert_str_eq(eng_model_index_find(&m, "tokenizer_3")->class_name, "T5TokenizerFast");
    cr_assert_null(eng_model_index_find(&m, "image_encoder"));
    cr_assert_null(eng_model_index_find(&m, "feature_extractor"));
    cr_assert_str_eq(m.components[0].name, "scheduler"); /* file order */
    eng_model_index_free(&m);
    cr_assert_null(m.components);
    eng_model_index_free(&m);
    eng_model_index_free(NULL);
}

Test(config, model_index_nulls_and_options)
{
    eng_model_index m;
    eng_error err = {0};
    const char *j = "{\"_class_name\": \"StableDiffusion3Pipeline\", \"text_encoder_3\": null,"
                    " \"image_encoder\": [\"transformers\", null],"
                    " \"force_zeros_for_empty_prompt\": true, \"some_list\": [1, 2, 3],"
                    " \"vae\": [\"diffusers\", \"AutoencoderKL\"]}";
    cr_assert_eq(eng_model_index_parse(j, strlen(j), "mi.json", &m, &err), 0, "%s", err.msg);
    cr_assert_null(m.diffusers_version);
    cr_assert_eq(m.max_sequence_length, 256, "diffusers' default without tttd's key");
    cr_assert_eq(m.num_components, 1);
    cr_assert_str_eq(m.components[0].name, "vae");
    eng_model_index_free(&m);
}

Test(config, model_index_errors)
{
    eng_model_index m;
    eng_error err = {0};
    const char *p = put_mod(SD35_MODEL_INDEX, "_class_name", NULL);
    expect_error(eng_model_index_load(p, &m, &err), err, ENG_ENOTFOUND,
                 "missing required key \"_class_name\"", p);
    cr_assert_null(m.components);
    p = put_mod(SD35_MODEL_INDEX, "_class_name", "[1]");
    expect_error(eng_model_index_load(p, &m, &err), err, ENG_EFORMAT,
                 "\"_class_name\" must be a string");
    p = put_mod(SD35_MODEL_INDEX, "..", "[\"diffusers\", \"AutoencoderKL\"]");
    expect_error(eng_model_index_load(p, &m, &err), err, ENG_EFORMAT,
                 "\"..\" is not a folder name");
    cr_assert_null(m.components);
    p = put_mod(SD35_MODEL_INDEX, "a/b", "[\"diffusers\", \"AutoencoderKL\"]");
    expect_error(eng_model_index_load(p, &m, &err), err, ENG_EFORMAT, "\"a/b\"");
    p = put("model_index.json", "{\"_class_name\": \"X\", ");
    expect_error(eng_model_index_load(p, &m, &err), err, ENG_EFORMAT, p, "invalid JSON");
}
