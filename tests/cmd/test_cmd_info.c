/*
 * test_cmd_info.c - `tttd info`: builds a tiny diffusers folder in a temp dir (model_index.json,
 * transformer, vae, text_encoder, scheduler, tokenizer; weights written with eng_st_writer),
 * checks the text and JSON reports, then breaks the folder in the ways a user would (truncated
 * safetensors, corrupt JSON, a missing component folder, ...) and checks for exit status 1 and
 * one error line naming the file.
 */
#include <criterion/criterion.h>

#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/io/safetensors.h"
#include "cmd/cmd_info.h"
#include "tests/common/test_util.h"

static char model[64];
static char pbuf[512];

/* <model>/rel */
static const char *at(const char *rel)
{
    snprintf(pbuf, sizeof pbuf, "%s/%s", model, rel);
    return pbuf;
}

static void put(const char *rel, const char *text)
{
    FILE *f = fopen(at(rel), "wb");
    cr_assert_not_null(f, "%s", pbuf);
    fputs(text, f);
    fclose(f);
}

static void mkdir_in(const char *rel)
{
    cr_assert_eq(mkdir(at(rel), 0755), 0, "%s", pbuf);
}

static void rm_tree(const char *p)
{
    tu_rmtree(p);
}

/* Three tensors, one per float dtype: 256 + 16 + 6 = 278 parameters, 1024 + 32 + 12 bytes. */
static void write_transformer_weights(void)
{
    static float w[256];
    static uint16_t b[16], x[6];
    eng_st_writer *wr = NULL;
    eng_error err = {0};
    cr_assert_eq(eng_st_writer_init(&wr, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_st_writer_add(wr, "pos_embed.proj.weight", ENG_DTYPE_F32,
                                   ENG_SHAPE(16, 4, 2, 2), w, &err),
                 0, "%s", err.msg);
    cr_assert_eq(eng_st_writer_add(wr, "proj_out.bias", ENG_DTYPE_F16, ENG_SHAPE(16), b, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(eng_st_writer_add(wr, "transformer_blocks.0.attn.w1", ENG_DTYPE_BF16,
                                   ENG_SHAPE(2, 3), x, &err),
                 0, "%s", err.msg);
    cr_assert_eq(
        eng_st_writer_write(wr, at("transformer/diffusion_pytorch_model.safetensors"), &err), 0,
        "%s", err.msg);
    eng_st_writer_free(wr);
}

static void write_vae_weights(void)
{
    static float s[3];
    eng_st_writer *wr = NULL;
    eng_error err = {0};
    cr_assert_eq(eng_st_writer_init(&wr, &err), 0, "%s", err.msg);
    cr_assert_eq(
        eng_st_writer_add(wr, "decoder.conv_out.bias", ENG_DTYPE_F32, ENG_SHAPE(3), s, &err), 0,
        "%s", err.msg);
    cr_assert_eq(eng_st_writer_write(wr, at("vae/diffusion_pytorch_model.safetensors"), &err), 0,
                 "%s", err.msg);
    eng_st_writer_free(wr);
}

static void setup(void)
{
    snprintf(model, sizeof model, "/tmp/tttd_info_XXXXXX");
    cr_assert_not_null(mkdtemp(model));
    put("model_index.json",
        "{\"_class_name\": \"StableDiffusion3Pipeline\", \"_diffusers_version\": \"0.31.0\","
        " \"image_encoder\": [null, null],"
        " \"scheduler\": [\"diffusers\", \"FlowMatchEulerDiscreteScheduler\"],"
        " \"text_encoder\": [\"transformers\", \"CLIPTextModelWithProjection\"],"
        " \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"],"
        " \"transformer\": [\"diffusers\", \"SD3Transformer2DModel\"],"
        " \"vae\": [\"diffusers\", \"AutoencoderKL\"]}");
    mkdir_in("transformer");
    put("transformer/config.json",
        "{\"_class_name\": \"SD3Transformer2DModel\", \"num_layers\": 2,"
        " \"num_attention_heads\": 2, \"attention_head_dim\": 8, \"caption_projection_dim\": 16,"
        " \"joint_attention_dim\": 32, \"pooled_projection_dim\": 8, \"in_channels\": 4,"
        " \"out_channels\": 4, \"pos_embed_max_size\": 16, \"sample_size\": 8,"
        " \"dual_attention_layers\": [0], \"qk_norm\": \"rms_norm\","
        " \"ttt\": {\"preset\": \"sd35-t5\"}}");
    write_transformer_weights();
    mkdir_in("vae");
    put("vae/config.json",
        "{\"_class_name\": \"AutoencoderKL\", \"block_out_channels\": [8, 16],"
        " \"latent_channels\": 4, \"norm_num_groups\": 4, \"scaling_factor\": 1.5305,"
        " \"shift_factor\": 0.0609, \"use_quant_conv\": false, \"use_post_quant_conv\": false}");
    write_vae_weights();
    mkdir_in("text_encoder");
    put("text_encoder/config.json",
        "{\"architectures\": [\"CLIPTextModelWithProjection\"], \"model_type\": "
        "\"clip_text_model\","
        " \"hidden_size\": 32, \"intermediate_size\": 64, \"num_hidden_layers\": 2,"
        " \"num_attention_heads\": 4, \"projection_dim\": 32, \"hidden_act\": \"quick_gelu\","
        " \"bos_token_id\": 0, \"eos_token_id\": 2, \"pad_token_id\": 1}");
    mkdir_in("scheduler");
    put("scheduler/scheduler_config.json",
        "{\"_class_name\": \"FlowMatchEulerDiscreteScheduler\", \"num_train_timesteps\": 1000,"
        " \"shift\": 3.0}");
    mkdir_in("tokenizer");
    put("tokenizer/vocab.json", "{}");
    put("tokenizer/merges.txt", "#version: 0.2\n");
}

static void teardown(void)
{
    rm_tree(model);
}

TestSuite(cmd_info, .init = setup, .fini = teardown);

typedef struct run_result {
    int status;
    char *out;
    char *err;
} run_result;

/* Runs cmd_info with the given arguments (after "info"), capturing both streams. */
static run_result run(int n, ...)
{
    char *argv[8] = {"info"};
    run_result r = {0};
    size_t olen = 0, elen = 0;
    va_list ap;

    cr_assert(n < 8);
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        argv[i + 1] = va_arg(ap, char *);
    va_end(ap);
    FILE *out = open_memstream(&r.out, &olen);
    FILE *err = open_memstream(&r.err, &elen);
    cr_assert(out && err);
    r.status = cmd_info(n + 1, argv, out, err);
    fclose(out);
    fclose(err);
    return r;
}

static void run_free(run_result *r)
{
    free(r->out);
    free(r->err);
}

#define assert_has(hay, needle)                                                                    \
    cr_assert(strstr((hay), (needle)), "\"%s\" not in:\n%s", (needle), (hay))

/* Status 1, nothing on out, exactly one line on err holding every fragment. */
static void assert_fails(run_result *r, const char *frag1, const char *frag2)
{
    cr_assert_eq(r->status, 1, "status %d, err: %s", r->status, r->err);
    cr_assert_str_empty(r->out);
    assert_has(r->err, "tttd info: ");
    assert_has(r->err, frag1);
    if (frag2)
        assert_has(r->err, frag2);
    char *nl = strchr(r->err, '\n');
    cr_assert(nl && nl[1] == '\0', "not one line: %s", r->err);
}

Test(cmd_info, text_report)
{
    run_result r = run(1, model);
    cr_assert_eq(r.status, 0, "err: %s", r.err);
    cr_assert_str_empty(r.err);
    assert_has(r.out, "pipeline: StableDiffusion3Pipeline (diffusers 0.31.0), 5 components");
    assert_has(r.out, "T5 tokens (max_sequence_length): 256 (diffusers' default)\n");
    assert_has(r.out, "transformer: diffusers SD3Transformer2DModel");
    assert_has(r.out, "blocks 2, heads 2 x 8 (width 16), patch 2, channels 4 -> 4");
    assert_has(r.out, "qk_norm rms_norm, dual attention blocks: 0\n");
    assert_has(r.out, "ttt: sd35-t5, 3 modules (attn: 0-1; attn2: 0)");
    assert_has(r.out, "weights: 1 file, 3 tensors, 278 parameters, 1.04 KiB;");
    assert_has(r.out, "F32 1 F16 1 BF16 1");
    assert_has(r.out, "vae: diffusers AutoencoderKL");
    assert_has(r.out, "block_out_channels [8, 16]");
    assert_has(r.out, "scaling_factor 1.5305, shift_factor 0.0609");
    assert_has(r.out, "weights: 1 file, 1 tensor, 3 parameters, 12 bytes; F32 1\n");
    assert_has(r.out, "text_encoder: transformers CLIPTextModelWithProjection");
    assert_has(r.out, "layers 2, hidden 32, heads 4 x 8");
    assert_has(r.out, "weights: no *.safetensors files");
    assert_has(r.out, "scheduler: diffusers FlowMatchEulerDiscreteScheduler");
    assert_has(r.out, "shift 3");
    assert_has(r.out, "tokenizer: transformers CLIPTokenizer");
    assert_has(r.out, "files: vocab.json, merges.txt\n");
    assert_has(r.out, "total: 281 parameters");
    cr_assert_null(strstr(r.out, "image_encoder"));
    run_free(&r);
}

Test(cmd_info, json_report)
{
    json_error_t je;
    run_result r = run(2, "--json", model);
    cr_assert_eq(r.status, 0, "err: %s", r.err);
    json_t *root = json_loads(r.out, 0, &je);
    cr_assert_not_null(root, "not JSON (%s):\n%s", je.text, r.out);
    cr_assert_str_eq(json_string_value(json_object_get(root, "class_name")),
                     "StableDiffusion3Pipeline");
    cr_assert_eq(json_integer_value(json_object_get(root, "parameters")), 281);
    cr_assert_eq(json_integer_value(json_object_get(root, "max_sequence_length")), 256);
    json_t *comps = json_object_get(root, "components");
    cr_assert_eq(json_object_size(comps), 5);
    json_t *tr = json_object_get(comps, "transformer");
    json_t *w = json_object_get(tr, "weights");
    cr_assert_eq(json_integer_value(json_object_get(w, "parameters")), 278);
    cr_assert_eq(json_integer_value(json_object_get(w, "tensors")), 3);
    cr_assert_eq(json_integer_value(json_object_get(w, "bytes")), 1068);
    cr_assert_eq(json_integer_value(json_object_get(w, "files")), 1);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(w, "dtypes"), "BF16")), 1);
    json_t *cfg = json_object_get(tr, "config");
    cr_assert_eq(json_integer_value(json_object_get(cfg, "num_layers")), 2);
    cr_assert_str_eq(json_string_value(json_object_get(cfg, "qk_norm")), "rms_norm");
    json_t *mods = json_object_get(json_object_get(cfg, "ttt"), "modules");
    cr_assert_eq(json_array_size(mods), 3);
    cr_assert_str_eq(json_string_value(json_array_get(mods, 0)), "transformer_blocks.0.attn2");
    cr_assert(json_is_null(json_object_get(json_object_get(comps, "text_encoder"), "weights")));
    json_t *tok = json_object_get(json_object_get(comps, "tokenizer"), "files");
    cr_assert_eq(json_array_size(tok), 2);
    cr_assert_float_eq(
        json_real_value(json_object_get(
            json_object_get(json_object_get(comps, "scheduler"), "config"), "shift")),
        3.0, 0.0);
    json_decref(root);
    run_free(&r);
}

Test(cmd_info, single_component_folder)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/transformer/", model); /* a trailing slash is fine */
    run_result r = run(1, dir);
    cr_assert_eq(r.status, 0, "err: %s", r.err);
    assert_has(r.out, "transformer: SD3Transformer2DModel");
    assert_has(r.out, "278 parameters");
    cr_assert_null(strstr(r.out, "pipeline:"));
    run_free(&r);

    snprintf(dir, sizeof dir, "%s/scheduler", model);
    r = run(2, dir, "--json");
    cr_assert_eq(r.status, 0, "err: %s", r.err);
    assert_has(r.out, "\"FlowMatchEulerDiscreteScheduler\"");
    run_free(&r);

    /* A config without "_class_name": the SD3 folder name tells the class. */
    put("transformer/config.json",
        "{\"num_layers\": 2, \"num_attention_heads\": 2, \"attention_head_dim\": 8,"
        " \"caption_projection_dim\": 16}");
    snprintf(dir, sizeof dir, "%s/transformer", model);
    r = run(1, dir);
    cr_assert_eq(r.status, 0, "err: %s", r.err);
    assert_has(r.out, "transformer: SD3Transformer2DModel");
    assert_has(r.out, "ttt: none");
    run_free(&r);
}

Test(cmd_info, large_counts_are_readable)
{
    /* A 3000 x 1000 BF16 tensor: 3,000,000 parameters, 6,000,000 bytes. */
    uint16_t *x = calloc(3000000, sizeof *x);
    eng_st_writer *wr = NULL;
    eng_error err = {0};
    cr_assert_not_null(x);
    cr_assert_eq(eng_st_writer_init(&wr, &err), 0, "%s", err.msg);
    cr_assert_eq(eng_st_writer_add(wr, "big", ENG_DTYPE_BF16, ENG_SHAPE(3000, 1000), x, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(eng_st_writer_write(wr, at("vae/diffusion_pytorch_model.safetensors"), &err), 0,
                 "%s", err.msg);
    eng_st_writer_free(wr);
    free(x);
    run_result r = run(1, model);
    cr_assert_eq(r.status, 0, "err: %s", r.err);
    assert_has(r.out, "1 tensor, 3,000,000 (3.00 M) parameters, 5.72 MiB; BF16 1\n");
    assert_has(r.out, "total: 3,000,278 (3.00 M) parameters, 5.72 MiB\n");
    run_free(&r);
}

Test(cmd_info, usage)
{
    run_result r = run(1, "--help");
    cr_assert_eq(r.status, 0);
    assert_has(r.out, "usage: tttd info MODEL_DIR [--json]");
    cr_assert_str_empty(r.err);
    run_free(&r);

    r = run(0);
    cr_assert_eq(r.status, 2);
    assert_has(r.err, "missing MODEL_DIR");
    cr_assert_str_empty(r.out);
    run_free(&r);

    r = run(2, model, "--yaml");
    cr_assert_eq(r.status, 2);
    assert_has(r.err, "unknown option --yaml");
    run_free(&r);

    r = run(2, model, model);
    cr_assert_eq(r.status, 2);
    run_free(&r);
}

Test(cmd_info, missing_folder)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/nowhere", model);
    run_result r = run(1, dir);
    assert_fails(&r, dir, "No such file");
    run_free(&r);
}

Test(cmd_info, missing_model_index)
{
    cr_assert_eq(remove(at("model_index.json")), 0);
    run_result r = run(1, model);
    assert_fails(&r, at("model_index.json"), "not found");
    run_free(&r);
}

Test(cmd_info, corrupt_model_index)
{
    put("model_index.json", "{\"_class_name\": \"StableDiffusion3Pipeline\", \"vae\": [");
    run_result r = run(1, model);
    assert_fails(&r, at("model_index.json"), "invalid JSON");
    run_free(&r);
}

Test(cmd_info, component_folder_missing)
{
    char vae[512];
    snprintf(vae, sizeof vae, "%s", at("vae"));
    rm_tree(vae);
    run_result r = run(2, "--json", model);
    assert_fails(&r, vae, "missing");
    assert_has(r.err, "model_index.json");
    run_free(&r);
}

Test(cmd_info, corrupt_component_config)
{
    put("transformer/config.json", "{\"num_layers\": 2,, }");
    run_result r = run(1, model);
    assert_fails(&r, at("transformer/config.json"), "invalid JSON");
    run_free(&r);

    put("text_encoder/config.json", "{\"hidden_size\": 32}");
    put("transformer/config.json",
        "{\"num_layers\": 2, \"num_attention_heads\": 2, \"attention_head_dim\": 8,"
        " \"caption_projection_dim\": 16}");
    r = run(1, model);
    assert_fails(&r, at("text_encoder/config.json"), "missing required key \"intermediate_size\"");
    run_free(&r);
}

Test(cmd_info, truncated_safetensors)
{
    char st[512];
    struct stat sb;
    snprintf(st, sizeof st, "%s", at("transformer/diffusion_pytorch_model.safetensors"));
    cr_assert_eq(stat(st, &sb), 0);
    cr_assert_eq(truncate(st, sb.st_size - 100), 0);
    run_result r = run(1, model);
    assert_fails(&r, st, NULL);
    run_free(&r);
}

Test(cmd_info, garbage_safetensors)
{
    char st[512];
    snprintf(st, sizeof st, "%s", at("vae/diffusion_pytorch_model.safetensors"));
    put("vae/diffusion_pytorch_model.safetensors", "this is not a safetensors file at all");
    run_result r = run(1, model);
    assert_fails(&r, st, NULL);
    run_free(&r);
}
