/*
 * fuzz_config.c - libFuzzer target for the JSON config files a model folder or an operator
 * supplies: the component configs of engine/config*.c (transformer, VAE, CLIP text, T5,
 * scheduler), model_index.json, *.safetensors.index.json (engine/safetensors.c) and the
 * daemon's --config file (server/options.c).
 *
 * The first input byte picks the parser (its value modulo 8), the rest is the file's text.
 * Checked on every input: a parser either fails with a negative ENG_E* code (or -1 for the
 * options) and a message that names the file, or succeeds with a result inside the bounds its
 * header documents (derived fields consistent, TTT and dual-attention maps inside num_layers,
 * component names that cannot leave the model folder, every tensor of an index readable and
 * found by name, every option inside its table bounds; the options fail with -1, or with -2
 * for an unreadable key file).
 * Seeds: tests/fuzz/corpus/config/ (the first byte of each seed is its parser's number).
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/io/config.h"
#include "engine/io/safetensors.h"
#include "cmd/cmd_serve.h"
#include "server/options.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { K_TRANSFORMER, K_VAE, K_CLIP, K_T5, K_SCHEDULER, K_INDEX, K_ST_INDEX, K_OPTIONS, K_COUNT };

/* A failure must carry a known code and a message that starts with the label. */
static void check_failure(int rc, const eng_error *err, const char *label)
{
    FUZZ_CHECK(rc <= ENG_EINVAL && rc >= ENG_ECANCELED);
    FUZZ_CHECK(err->code == rc);
    FUZZ_CHECK(err->msg[0] != '\0');
    FUZZ_CHECK(strncmp(err->msg, label, strlen(label)) == 0);
}

static void check_transformer(const eng_transformer_config *c)
{
    FUZZ_CHECK(c->num_layers >= 1 && c->num_layers <= ENG_CONFIG_MAX_LAYERS);
    FUZZ_CHECK(c->patch_size >= 1 && c->in_channels >= 1 && c->out_channels >= 1);
    FUZZ_CHECK(c->num_attention_heads >= 1 && c->attention_head_dim >= 1);
    FUZZ_CHECK((int64_t)c->num_attention_heads * c->attention_head_dim == c->inner_dim);
    FUZZ_CHECK(c->inner_dim == c->caption_projection_dim && c->inner_dim % 4 == 0);
    FUZZ_CHECK(c->joint_attention_dim >= 1 && c->pooled_projection_dim >= 1);
    FUZZ_CHECK(c->sample_size >= 1 && c->pos_embed_max_size >= 1);
    int dual = 0, ttt = 0;
    for (int i = 0; i < ENG_CONFIG_MAX_LAYERS; i++) {
        FUZZ_CHECK(c->dual_attention[i] <= 1 && c->ttt_attn[i] <= 1 && c->ttt_attn2[i] <= 1);
        if (i >= c->num_layers)
            FUZZ_CHECK(!c->dual_attention[i] && !c->ttt_attn[i] && !c->ttt_attn2[i]);
        FUZZ_CHECK(!c->ttt_attn2[i] || c->dual_attention[i]);
        dual += c->dual_attention[i];
        ttt += c->ttt_attn[i] + c->ttt_attn2[i];
    }
    FUZZ_CHECK(dual == c->num_dual_attention_layers && ttt == c->num_ttt_modules);
    FUZZ_CHECK(c->ttt_preset != ENG_TTT_PRESET_NONE || ttt == 0);
    FUZZ_CHECK(eng_ttt_preset_name(c->ttt_preset) != NULL);
}

static void check_vae(const eng_vae_config *c)
{
    FUZZ_CHECK(c->num_blocks >= 1 && c->num_blocks <= ENG_CONFIG_MAX_VAE_BLOCKS);
    FUZZ_CHECK(c->in_channels >= 1 && c->out_channels >= 1 && c->latent_channels >= 1);
    FUZZ_CHECK(c->layers_per_block >= 1 && c->norm_num_groups >= 1 && c->sample_size >= 1);
    for (int i = 0; i < c->num_blocks; i++)
        FUZZ_CHECK(c->block_out_channels[i] >= 1 &&
                   c->block_out_channels[i] % c->norm_num_groups == 0);
    FUZZ_CHECK(c->scaling_factor == c->scaling_factor && c->shift_factor == c->shift_factor);
}

static void check_clip(const eng_clip_text_config *c)
{
    FUZZ_CHECK(c->hidden_size >= 1 && c->num_attention_heads >= 1 && c->num_hidden_layers >= 1);
    FUZZ_CHECK(c->hidden_size % c->num_attention_heads == 0);
    FUZZ_CHECK(c->head_dim * c->num_attention_heads == c->hidden_size);
    FUZZ_CHECK(c->intermediate_size >= 1 && c->projection_dim >= 1 && c->vocab_size >= 1);
    FUZZ_CHECK(c->max_position_embeddings >= 1 && c->layer_norm_eps > 0);
    FUZZ_CHECK(eng_config_act_name(c->hidden_act) != NULL);
}

static void check_t5(const eng_t5_config *c)
{
    FUZZ_CHECK(c->d_model >= 1 && c->d_kv >= 1 && c->d_ff >= 1 && c->num_layers >= 1);
    FUZZ_CHECK(c->num_heads >= 1 && c->vocab_size >= 1);
    FUZZ_CHECK(c->relative_attention_num_buckets >= 1 && c->relative_attention_max_distance >= 1);
    FUZZ_CHECK(c->layer_norm_epsilon > 0);
    FUZZ_CHECK(memchr(c->feed_forward_proj, '\0', sizeof c->feed_forward_proj) != NULL);
    FUZZ_CHECK(c->is_gated_act == 0 || c->is_gated_act == 1);
    FUZZ_CHECK(eng_config_act_name(c->dense_act_fn) != NULL);
}

static void check_scheduler(const eng_scheduler_config *c)
{
    FUZZ_CHECK(c->num_train_timesteps >= 1 && c->shift > 0);
    FUZZ_CHECK(c->shift_terminal >= 0 && c->shift_terminal < 1);
    FUZZ_CHECK(!c->use_dynamic_shifting ||
               (c->base_shift == c->base_shift && c->max_shift == c->max_shift));
    FUZZ_CHECK(c->time_shift_type == ENG_TIME_SHIFT_EXPONENTIAL ||
               c->time_shift_type == ENG_TIME_SHIFT_LINEAR);
}

static void check_index(const eng_model_index *idx)
{
    FUZZ_CHECK(idx->class_name != NULL);
    FUZZ_CHECK(idx->max_sequence_length >= 0 && idx->max_sequence_length <= 512);
    for (size_t i = 0; i < idx->num_components; i++) {
        const eng_component *c = &idx->components[i];
        FUZZ_CHECK(c->name && c->library && c->class_name);
        FUZZ_CHECK(c->name[0] && strcmp(c->name, ".") && strcmp(c->name, ".."));
        FUZZ_CHECK(!strchr(c->name, '/') && !strchr(c->name, '\\'));
        FUZZ_CHECK(eng_model_index_find(idx, c->name) != NULL);
    }
}

/* Two shards beside the index: a.safetensors (a.w) and b.safetensors (b.w, b.x). */
static void write_shard(const char *name, const char *header, size_t data_bytes)
{
    char path[PATH_MAX];
    uint8_t buf[512] = {0};
    size_t hl = strlen(header);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < data_bytes; i++)
        buf[8 + hl + i] = (uint8_t)(i * 7 + 1);
    fuzz_file(name, buf, 8 + hl + data_bytes, path, sizeof path);
}

static void fuzz_st_index(const uint8_t *text, size_t n)
{
    static int shards_written;
    char path[PATH_MAX];
    if (!shards_written) {
        write_shard("a.safetensors",
                    "{\"a.w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
        write_shard("b.safetensors",
                    "{\"b.w\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
                    "\"b.x\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12);
        shards_written = 1;
    }
    fuzz_file("model.safetensors.index.json", text, n, path, sizeof path);
    eng_safetensors *st = NULL;
    eng_error err = {0};
    int rc = eng_safetensors_open(&st, path, &err);
    if (rc != 0) {
        FUZZ_CHECK(st == NULL);
        FUZZ_CHECK(rc <= ENG_EINVAL && rc >= ENG_ECANCELED && err.msg[0]);
        FUZZ_CHECK(strstr(err.msg, "model.safetensors.index.json") != NULL);
        return;
    }
    size_t count = eng_safetensors_count(st);
    FUZZ_CHECK(count <= 3);
    volatile uint8_t sum = 0;
    for (size_t i = 0; i < count; i++) {
        const eng_st_tensor *t = eng_safetensors_at(st, i);
        FUZZ_CHECK(eng_safetensors_find(st, t->name) == t);
        for (size_t k = 0; k < t->nbytes; k++)
            sum = (uint8_t)(sum + ((const uint8_t *)t->data)[k]);
    }
    (void)sum;
    eng_safetensors_close(st);
}

static void fuzz_options(const uint8_t *text, size_t n)
{
    char path[PATH_MAX];
    fuzz_file("tttd.json", text, n, path, sizeof path);
    char *argv[] = {"serve", "--config", path, NULL};
    char *envp[] = {NULL};
    srv_options o;
    char *err = NULL;
    size_t errlen = 0;
    FILE *errout = open_memstream(&err, &errlen);
    FUZZ_CHECK(errout != NULL);
    /* -1: the daemon may start; 2: a bad option; 1: an unreadable key file (never 0: no --help). */
    int rc = cmd_serve_options(&o, 3, argv, envp, errout, errout);
    fclose(errout);
    FUZZ_CHECK(rc == -1 || rc == 1 || rc == 2);
    if (rc != -1) {
        FUZZ_CHECK(errlen > 0 && memchr(err, '\n', errlen) != NULL);
    } else {
        FUZZ_CHECK(o.config && strcmp(o.config, path) == 0);
        FUZZ_CHECK(o.port >= 0 && o.port <= 65535);
        FUZZ_CHECK(o.workers >= 1 && o.max_batch >= 1 && o.max_queue >= 1);
        FUZZ_CHECK(o.max_n >= 1 && o.max_n <= o.max_queue);
        FUZZ_CHECK(o.readyz_queue_mark >= 1 && o.readyz_queue_mark <= o.max_queue);
        FUZZ_CHECK(o.max_body >= 64 && o.max_width >= 16 && o.max_height >= 16);
        FUZZ_CHECK(o.max_pixels >= 256 && o.max_steps >= 1);
        FUZZ_CHECK(o.request_timeout_ms >= 1 && o.sse_ping_ms >= 10 && o.max_connections >= 4);
        FUZZ_CHECK(o.host != NULL);
        FUZZ_CHECK(o.n_models == o.model.n);
        for (int i = 0; i < o.n_models; i++) {
            FUZZ_CHECK(o.models[i].name[0] && o.models[i].dir[0]);
            for (int j = 0; j < i; j++)
                FUZZ_CHECK(strcmp(o.models[i].name, o.models[j].name) != 0);
        }
        for (int i = 0; i < o.keys.n; i++)
            FUZZ_CHECK(o.keys.v[i][0] != '\0');
    }
    srv_options_free(&o);
    free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int kind = data[0] % K_COUNT;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    eng_error err = {0};
    int rc;
    switch (kind) {
    case K_TRANSFORMER: {
        eng_transformer_config c;
        rc = eng_config_parse_transformer(text, n, "transformer/config.json", &c, &err);
        if (rc)
            check_failure(rc, &err, "transformer/config.json");
        else
            check_transformer(&c);
        break;
    }
    case K_VAE: {
        eng_vae_config c;
        rc = eng_config_parse_vae(text, n, "vae/config.json", &c, &err);
        if (rc)
            check_failure(rc, &err, "vae/config.json");
        else
            check_vae(&c);
        break;
    }
    case K_CLIP: {
        eng_clip_text_config c;
        rc = eng_config_parse_clip_text(text, n, "text_encoder/config.json", &c, &err);
        if (rc)
            check_failure(rc, &err, "text_encoder/config.json");
        else
            check_clip(&c);
        break;
    }
    case K_T5: {
        eng_t5_config c;
        rc = eng_config_parse_t5(text, n, "text_encoder_3/config.json", &c, &err);
        if (rc)
            check_failure(rc, &err, "text_encoder_3/config.json");
        else
            check_t5(&c);
        break;
    }
    case K_SCHEDULER: {
        eng_scheduler_config c;
        rc = eng_config_parse_scheduler(text, n, "scheduler/scheduler_config.json", &c, &err);
        if (rc)
            check_failure(rc, &err, "scheduler/scheduler_config.json");
        else
            check_scheduler(&c);
        break;
    }
    case K_INDEX: {
        eng_model_index idx;
        rc = eng_model_index_parse(text, n, "model_index.json", &idx, &err);
        if (rc)
            check_failure(rc, &err, "model_index.json");
        else
            check_index(&idx);
        eng_model_index_free(&idx);
        break;
    }
    case K_ST_INDEX:
        fuzz_st_index(data + 1, n);
        break;
    default:
        fuzz_options(data + 1, n);
        break;
    }
    return 0;
}
