/*
 * cmd_info.c - `tttd info MODEL_DIR [--json]`: reads a model folder's configs and weight headers
 * and prints a summary of each component.
 *
 * Everything is gathered first (gather_*), then rendered as text or JSON, so that a failure
 * anywhere gives exactly one error line and no partial report.
 */
#include "cmd/cmd_info.h"
#include "cmd/args.h"
#include "cmd/cli.h"
#include "engine/core/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/io/config.h"
#include "engine/core/error.h"
#include "engine/io/safetensors.h"
#include "engine/backend/tensor.h"

#define N_DTYPES 4 /* ENG_DTYPE_F32 .. ENG_DTYPE_I32 */

typedef enum comp_kind {
    KIND_OTHER,
    KIND_TRANSFORMER,
    KIND_VAE,
    KIND_CLIP,
    KIND_T5,
    KIND_SCHEDULER,
    KIND_TOKENIZER,
} comp_kind;

/* Files a tokenizer folder may hold (CLIP BPE, T5 Unigram / SentencePiece, and their configs). */
static const char *const tokenizer_files[] = {
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "spiece.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
};
#define N_TOKENIZER_FILES (sizeof tokenizer_files / sizeof tokenizer_files[0])

typedef struct weight_stats {
    int present; /* 0: the folder has no *.safetensors */
    size_t files;
    size_t tensors;
    uint64_t params;
    uint64_t bytes;
    size_t per_dtype[N_DTYPES];
} weight_stats;

typedef struct comp_info {
    const char *name;
    const char *library; /* NULL for a single component folder */
    const char *class_name;
    comp_kind kind;
    union {
        eng_transformer_config tr;
        eng_vae_config vae;
        eng_clip_text_config clip;
        eng_t5_config t5;
        eng_scheduler_config sch;
    } cfg;
    weight_stats w;
    int tok_present[N_TOKENIZER_FILES];
} comp_info;

typedef struct model_info {
    char dir[PATH_MAX];
    eng_model_index index; /* empty for a single component folder */
    int is_pipeline;
    char single_name[PATH_MAX];
    char single_class[128];
    size_t n;
    comp_info *comps;
} model_info;

/* ---- small helpers ---- */

static comp_kind kind_of(const char *class_name)
{
    if (strcmp(class_name, "SD3Transformer2DModel") == 0)
        return KIND_TRANSFORMER;
    if (strcmp(class_name, "AutoencoderKL") == 0)
        return KIND_VAE;
    if (strcmp(class_name, "CLIPTextModelWithProjection") == 0 ||
        strcmp(class_name, "CLIPTextModel") == 0 || strcmp(class_name, "clip_text_model") == 0)
        return KIND_CLIP;
    if (strcmp(class_name, "T5EncoderModel") == 0 || strcmp(class_name, "t5") == 0)
        return KIND_T5;
    if (strcmp(class_name, "FlowMatchEulerDiscreteScheduler") == 0)
        return KIND_SCHEDULER;
    if (strstr(class_name, "Tokenizer"))
        return KIND_TOKENIZER;
    return KIND_OTHER;
}

/* 4721680 -> "4.50 MiB". */
static const char *fmt_bytes(uint64_t v, char *buf, size_t len)
{
    static const char *const unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
    double x = (double)v;
    int u = 0;
    while (x >= 1024.0 && u < 4) {
        x /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%" PRIu64 " bytes", v);
    else
        snprintf(buf, len, "%.2f %s", x, unit[u]);
    return buf;
}

/* 2471632896 -> "2,471,632,896 (2.47 B)"; the short form only from a thousand up. */
static const char *fmt_params(uint64_t v, char *buf, size_t len)
{
    char digits[40];
    double x = (double)v;
    cmd_fmt_count(v, digits, sizeof digits);
    if (v >= 1000000000u)
        snprintf(buf, len, "%s (%.2f B)", digits, x / 1e9);
    else if (v >= 1000000u)
        snprintf(buf, len, "%s (%.2f M)", digits, x / 1e6);
    else if (v >= 1000u)
        snprintf(buf, len, "%s (%.2f K)", digits, x / 1e3);
    else
        snprintf(buf, len, "%s", digits);
    return buf;
}

/* Flags [1 1 1 0 1] -> "0-2, 4"; "none" when no flag is set. */
static const char *fmt_blocks(const uint8_t *flags, int n, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (!flags[i])
            continue;
        int j = i;
        while (j + 1 < n && flags[j + 1])
            j++;
        int w = j > i ? snprintf(buf + o, len - o, "%s%d-%d", o ? ", " : "", i, j)
                      : snprintf(buf + o, len - o, "%s%d", o ? ", " : "", i);
        if (w < 0 || (size_t)w >= len - o)
            break;
        o += (size_t)w;
        i = j;
    }
    if (!o)
        snprintf(buf, len, "none");
    return buf;
}

/* ---- gathering ---- */

static int folder_has_weights(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int found = 0;
    if (!d)
        return 0;
    while (!found && (e = readdir(d)))
        found =
            eng_str_ends_with(e->d_name, ".safetensors") || eng_str_ends_with(e->d_name, ".safetensors.index.json");
    closedir(d);
    return found;
}

static int gather_weights(const char *dir, weight_stats *w, eng_error *err)
{
    eng_safetensors *st = NULL;
    memset(w, 0, sizeof *w);
    if (!folder_has_weights(dir))
        return 0;
    int rc = eng_safetensors_open_dir(&st, dir, err);
    if (rc) {
        if (err && !strstr(err->msg, dir))
            eng_error_prefix(err, "%s", dir);
        return rc;
    }
    size_t n = eng_safetensors_count(st);
    const char **files = calloc(n + 1, sizeof *files);
    if (!files) {
        eng_safetensors_close(st);
        return eng_error_set(err, ENG_ENOMEM, "%s: out of memory", dir);
    }
    w->present = 1;
    for (size_t i = 0; i < n; i++) {
        const eng_st_tensor *t = eng_safetensors_at(st, i);
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++)
            numel *= (uint64_t)t->shape[d];
        w->tensors++;
        w->params += numel;
        w->bytes += t->nbytes;
        if ((unsigned)t->dtype < N_DTYPES)
            w->per_dtype[t->dtype]++;
        size_t f = 0;
        while (f < w->files && strcmp(files[f], t->file) != 0)
            f++;
        if (f == w->files)
            files[w->files++] = t->file;
    }
    free(files);
    eng_safetensors_close(st);
    return 0;
}

static int gather_component(const char *compdir, comp_info *ci, eng_error *err)
{
    char path[PATH_MAX];
    int rc = 0;

    switch (ci->kind) {
    case KIND_TRANSFORMER:
    case KIND_VAE:
    case KIND_CLIP:
    case KIND_T5:
        if ((rc = eng_path_join(path, sizeof path, compdir, "config.json", err)))
            return rc;
        if (ci->kind == KIND_TRANSFORMER)
            rc = eng_config_load_transformer(path, &ci->cfg.tr, err);
        else if (ci->kind == KIND_VAE)
            rc = eng_config_load_vae(path, &ci->cfg.vae, err);
        else if (ci->kind == KIND_CLIP)
            rc = eng_config_load_clip_text(path, &ci->cfg.clip, err);
        else
            rc = eng_config_load_t5(path, &ci->cfg.t5, err);
        return rc ? rc : gather_weights(compdir, &ci->w, err);
    case KIND_SCHEDULER:
        if ((rc = eng_path_join(path, sizeof path, compdir, "scheduler_config.json", err)))
            return rc;
        return eng_config_load_scheduler(path, &ci->cfg.sch, err);
    case KIND_TOKENIZER:
        for (size_t i = 0; i < N_TOKENIZER_FILES; i++) {
            if ((rc = eng_path_join(path, sizeof path, compdir, tokenizer_files[i], err)))
                return rc;
            ci->tok_present[i] = eng_is_file(path);
        }
        return 0;
    case KIND_OTHER: return 0;
    }
    return 0;
}

static int gather_pipeline(model_info *mi, const char *index_path, eng_error *err)
{
    char compdir[PATH_MAX];
    int rc = eng_model_index_load(index_path, &mi->index, err);
    if (rc)
        return rc;
    mi->is_pipeline = 1;
    mi->n = mi->index.num_components;
    mi->comps = calloc(mi->n + 1, sizeof *mi->comps);
    if (!mi->comps)
        return eng_error_set(err, ENG_ENOMEM, "out of memory");
    for (size_t i = 0; i < mi->n; i++) {
        const eng_component *c = &mi->index.components[i];
        comp_info *ci = &mi->comps[i];
        ci->name = c->name;
        ci->library = c->library;
        ci->class_name = c->class_name;
        ci->kind = kind_of(c->class_name);
        if ((rc = eng_path_join(compdir, sizeof compdir, mi->dir, c->name, err)))
            return rc;
        if (!eng_is_dir(compdir))
            return eng_error_set(err, ENG_ENOTFOUND,
                                 "%s: component folder missing (listed in %s as %s)", compdir,
                                 index_path, c->class_name);
        if ((rc = gather_component(compdir, ci, err)))
            return rc;
    }
    return 0;
}

/* The class an SD3 pipeline keeps in a folder of this name (for configs that declare none). */
static const char *class_by_folder(const char *name)
{
    static const char *const map[][2] = {
        {"transformer", "SD3Transformer2DModel"},
        {"vae", "AutoencoderKL"},
        {"text_encoder", "CLIPTextModelWithProjection"},
        {"text_encoder_2", "CLIPTextModelWithProjection"},
        {"text_encoder_3", "T5EncoderModel"},
        {"scheduler", "FlowMatchEulerDiscreteScheduler"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(name, map[i][0]) == 0)
            return map[i][1];
    return NULL;
}

static int gather_single(model_info *mi, const char *config_path, eng_error *err)
{
    const char *base = strrchr(mi->dir, '/');
    snprintf(mi->single_name, sizeof mi->single_name, "%s", base ? base + 1 : mi->dir);
    int rc = eng_config_class_name(config_path, mi->single_class, sizeof mi->single_class, err);
    if (rc == ENG_ENOTFOUND && class_by_folder(mi->single_name)) {
        snprintf(mi->single_class, sizeof mi->single_class, "%s", class_by_folder(mi->single_name));
        rc = 0;
    }
    if (rc)
        return rc;
    mi->n = 1;
    mi->comps = calloc(1, sizeof *mi->comps);
    if (!mi->comps)
        return eng_error_set(err, ENG_ENOMEM, "out of memory");
    mi->comps[0].name = mi->single_name;
    mi->comps[0].class_name = mi->single_class;
    mi->comps[0].kind = kind_of(mi->single_class);
    return gather_component(mi->dir, &mi->comps[0], err);
}

static int gather(model_info *mi, const char *dir, eng_error *err)
{
    char path[PATH_MAX];
    struct stat sb;
    int rc;

    snprintf(mi->dir, sizeof mi->dir, "%s", dir);
    for (size_t n = strlen(mi->dir); n > 1 && mi->dir[n - 1] == '/'; n--)
        mi->dir[n - 1] = '\0';
    if (stat(mi->dir, &sb) != 0) {
        int e = errno;
        return eng_error_set(err, e == ENOENT ? ENG_ENOTFOUND : ENG_EIO, "%s: %s", mi->dir,
                             strerror(e));
    }
    if (!S_ISDIR(sb.st_mode))
        return eng_error_set(err, ENG_EINVAL, "%s: not a folder", mi->dir);
    if ((rc = eng_path_join(path, sizeof path, mi->dir, "model_index.json", err)))
        return rc;
    if (eng_is_file(path))
        return gather_pipeline(mi, path, err);
    static const char *const single[] = {"config.json", "scheduler_config.json"};
    for (size_t i = 0; i < 2; i++) {
        char cpath[PATH_MAX];
        if ((rc = eng_path_join(cpath, sizeof cpath, mi->dir, single[i], err)))
            return rc;
        if (eng_is_file(cpath))
            return gather_single(mi, cpath, err);
    }
    return eng_error_set(err, ENG_ENOTFOUND,
                         "%s: not found (nor config.json: not a diffusers model folder)", path);
}

static void model_info_free(model_info *mi)
{
    free(mi->comps);
    eng_model_index_free(&mi->index);
}

/* ---- text rendering ---- */

static void text_weights(FILE *out, const weight_stats *w)
{
    char a[64], b[40];
    if (!w->present) {
        fprintf(out, "  weights: no *.safetensors files\n");
        return;
    }
    fprintf(out, "  weights: %zu file%s, %zu tensor%s, %s parameters, %s;", w->files,
            w->files == 1 ? "" : "s", w->tensors, w->tensors == 1 ? "" : "s",
            fmt_params(w->params, a, sizeof a), fmt_bytes(w->bytes, b, sizeof b));
    for (int d = 0; d < N_DTYPES; d++)
        if (w->per_dtype[d])
            fprintf(out, " %s %zu", eng_dtype_name((eng_dtype)d), w->per_dtype[d]);
    fputc('\n', out);
}

static void text_transformer(FILE *out, const eng_transformer_config *c)
{
    char b1[1024], b2[1024];
    fprintf(out, "  blocks %d, heads %d x %d (width %d), patch %d, channels %d -> %d\n",
            c->num_layers, c->num_attention_heads, c->attention_head_dim, c->inner_dim,
            c->patch_size, c->in_channels, c->out_channels);
    fprintf(out,
            "  sample_size %d, pos_embed_max_size %d, joint_attention_dim %d, "
            "caption_projection_dim %d, pooled_projection_dim %d\n",
            c->sample_size, c->pos_embed_max_size, c->joint_attention_dim,
            c->caption_projection_dim, c->pooled_projection_dim);
    fprintf(out, "  qk_norm %s, dual attention blocks: %s\n",
            c->qk_norm == ENG_QK_NORM_RMS ? "rms_norm" : "none",
            fmt_blocks(c->dual_attention, c->num_layers, b1, sizeof b1));
    if (c->num_ttt_modules == 0)
        fprintf(out, "  ttt: none (softmax attention everywhere)\n");
    else
        fprintf(out, "  ttt: %s, %d modules (attn: %s; attn2: %s)\n",
                eng_ttt_preset_name(c->ttt_preset), c->num_ttt_modules,
                fmt_blocks(c->ttt_attn, c->num_layers, b1, sizeof b1),
                fmt_blocks(c->ttt_attn2, c->num_layers, b2, sizeof b2));
}

static void text_component(FILE *out, const comp_info *ci)
{
    if (ci->library)
        fprintf(out, "\n%s: %s %s\n", ci->name, ci->library, ci->class_name);
    else
        fprintf(out, "\n%s: %s\n", ci->name, ci->class_name);
    switch (ci->kind) {
    case KIND_TRANSFORMER: text_transformer(out, &ci->cfg.tr); break;
    case KIND_VAE: {
        const eng_vae_config *c = &ci->cfg.vae;
        fprintf(out, "  channels %d -> latent %d -> %d, block_out_channels [", c->in_channels,
                c->latent_channels, c->out_channels);
        for (int i = 0; i < c->num_blocks; i++)
            fprintf(out, "%s%d", i ? ", " : "", c->block_out_channels[i]);
        fprintf(out, "], layers_per_block %d, norm_num_groups %d\n", c->layers_per_block,
                c->norm_num_groups);
        fprintf(out,
                "  scaling_factor %g, shift_factor %g, quant_conv %s, post_quant_conv %s, "
                "sample_size %d\n",
                c->scaling_factor, c->shift_factor, c->use_quant_conv ? "yes" : "no",
                c->use_post_quant_conv ? "yes" : "no", c->sample_size);
        break;
    }
    case KIND_CLIP: {
        const eng_clip_text_config *c = &ci->cfg.clip;
        fprintf(out,
                "  layers %d, hidden %d, heads %d x %d, intermediate %d, projection %d, act %s\n",
                c->num_hidden_layers, c->hidden_size, c->num_attention_heads, c->head_dim,
                c->intermediate_size, c->projection_dim, eng_config_act_name(c->hidden_act));
        fprintf(out, "  vocab %d, positions %d, layer_norm_eps %g, bos %d, eos %d, pad %d\n",
                c->vocab_size, c->max_position_embeddings, c->layer_norm_eps, c->bos_token_id,
                c->eos_token_id, c->pad_token_id);
        break;
    }
    case KIND_T5: {
        const eng_t5_config *c = &ci->cfg.t5;
        fprintf(out, "  layers %d, d_model %d, heads %d x %d, d_ff %d, feed_forward %s (%s%s)\n",
                c->num_layers, c->d_model, c->num_heads, c->d_kv, c->d_ff, c->feed_forward_proj,
                c->is_gated_act ? "gated " : "", eng_config_act_name(c->dense_act_fn));
        fprintf(out,
                "  vocab %d, relative attention buckets %d / max distance %d, "
                "layer_norm_epsilon %g\n",
                c->vocab_size, c->relative_attention_num_buckets,
                c->relative_attention_max_distance, c->layer_norm_epsilon);
        break;
    }
    case KIND_SCHEDULER: {
        const eng_scheduler_config *c = &ci->cfg.sch;
        fprintf(out,
                "  num_train_timesteps %d, shift %g, dynamic shifting %s, time_shift_type %s\n",
                c->num_train_timesteps, c->shift, c->use_dynamic_shifting ? "yes" : "no",
                c->time_shift_type == ENG_TIME_SHIFT_LINEAR ? "linear" : "exponential");
        break;
    }
    case KIND_TOKENIZER: {
        int any = 0;
        fprintf(out, "  files:");
        for (size_t i = 0; i < N_TOKENIZER_FILES; i++)
            if (ci->tok_present[i])
                fprintf(out, "%s %s", any++ ? "," : "", tokenizer_files[i]);
        fprintf(out, "%s\n", any ? "" : " none");
        break;
    }
    case KIND_OTHER: fprintf(out, "  (not read by tttd)\n"); break;
    }
    if (ci->kind == KIND_TRANSFORMER || ci->kind == KIND_VAE || ci->kind == KIND_CLIP ||
        ci->kind == KIND_T5)
        text_weights(out, &ci->w);
}

static void render_text(FILE *out, const model_info *mi)
{
    char a[64], b[40];
    uint64_t params = 0, bytes = 0;

    fprintf(out, "model: %s\n", mi->dir);
    if (mi->is_pipeline)
        fprintf(out, "pipeline: %s (diffusers %s), %zu components\n", mi->index.class_name,
                mi->index.diffusers_version ? mi->index.diffusers_version : "version unknown",
                mi->n);
    if (mi->is_pipeline)
        fprintf(out, "T5 tokens (max_sequence_length): %d%s\n", mi->index.max_sequence_length,
                mi->index.max_sequence_length == 256 ? " (diffusers' default)"
                                                     : " (_tttd_max_sequence_length)");
    for (size_t i = 0; i < mi->n; i++) {
        text_component(out, &mi->comps[i]);
        params += mi->comps[i].w.params;
        bytes += mi->comps[i].w.bytes;
    }
    if (mi->is_pipeline)
        fprintf(out, "\ntotal: %s parameters, %s\n", fmt_params(params, a, sizeof a),
                fmt_bytes(bytes, b, sizeof b));
}

/* ---- JSON rendering ---- */

static json_t *json_blocks(const uint8_t *flags, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        if (flags[i])
            json_array_append_new(a, json_integer(i));
    return a;
}

static json_t *json_transformer(const eng_transformer_config *c)
{
    char name[64];
    json_t *mods = json_array();
    for (int i = 0; i < c->num_layers; i++) {
        if (c->ttt_attn2[i]) {
            snprintf(name, sizeof name, "transformer_blocks.%d.attn2", i);
            json_array_append_new(mods, json_string(name));
        }
        if (c->ttt_attn[i]) {
            snprintf(name, sizeof name, "transformer_blocks.%d.attn", i);
            json_array_append_new(mods, json_string(name));
        }
    }
    return json_pack(
        "{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:s?, s:o, s:{s:s, s:o}}",
        "num_layers", c->num_layers, "num_attention_heads", c->num_attention_heads,
        "attention_head_dim", c->attention_head_dim, "inner_dim", c->inner_dim, "patch_size",
        c->patch_size, "in_channels", c->in_channels, "out_channels", c->out_channels,
        "sample_size", c->sample_size, "pos_embed_max_size", c->pos_embed_max_size,
        "joint_attention_dim", c->joint_attention_dim, "caption_projection_dim",
        c->caption_projection_dim, "pooled_projection_dim", c->pooled_projection_dim, "qk_norm",
        c->qk_norm == ENG_QK_NORM_RMS ? "rms_norm" : NULL, "dual_attention_layers",
        json_blocks(c->dual_attention, c->num_layers), "ttt", "preset",
        eng_ttt_preset_name(c->ttt_preset), "modules", mods);
}

static json_t *json_config(const comp_info *ci)
{
    switch (ci->kind) {
    case KIND_TRANSFORMER: return json_transformer(&ci->cfg.tr);
    case KIND_VAE: {
        const eng_vae_config *c = &ci->cfg.vae;
        json_t *blocks = json_array();
        for (int i = 0; i < c->num_blocks; i++)
            json_array_append_new(blocks, json_integer(c->block_out_channels[i]));
        return json_pack("{s:i, s:i, s:i, s:o, s:i, s:i, s:i, s:f, s:f, s:b, s:b, s:b}",
                         "in_channels", c->in_channels, "out_channels", c->out_channels,
                         "latent_channels", c->latent_channels, "block_out_channels", blocks,
                         "layers_per_block", c->layers_per_block, "norm_num_groups",
                         c->norm_num_groups, "sample_size", c->sample_size, "scaling_factor",
                         c->scaling_factor, "shift_factor", c->shift_factor, "use_quant_conv",
                         c->use_quant_conv, "use_post_quant_conv", c->use_post_quant_conv,
                         "mid_block_add_attention", c->mid_block_add_attention);
    }
    case KIND_CLIP: {
        const eng_clip_text_config *c = &ci->cfg.clip;
        return json_pack(
            "{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:f, s:i, s:i, s:i}", "vocab_size",
            c->vocab_size, "hidden_size", c->hidden_size, "intermediate_size", c->intermediate_size,
            "projection_dim", c->projection_dim, "num_hidden_layers", c->num_hidden_layers,
            "num_attention_heads", c->num_attention_heads, "max_position_embeddings",
            c->max_position_embeddings, "hidden_act", eng_config_act_name(c->hidden_act),
            "layer_norm_eps", c->layer_norm_eps, "bos_token_id", c->bos_token_id, "eos_token_id",
            c->eos_token_id, "pad_token_id", c->pad_token_id);
    }
    case KIND_T5: {
        const eng_t5_config *c = &ci->cfg.t5;
        return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:s, s:b, s:s}",
                         "vocab_size", c->vocab_size, "d_model", c->d_model, "d_kv", c->d_kv,
                         "d_ff", c->d_ff, "num_layers", c->num_layers, "num_heads", c->num_heads,
                         "relative_attention_num_buckets", c->relative_attention_num_buckets,
                         "relative_attention_max_distance", c->relative_attention_max_distance,
                         "layer_norm_epsilon", c->layer_norm_epsilon, "feed_forward_proj",
                         c->feed_forward_proj, "is_gated_act", c->is_gated_act, "dense_act_fn",
                         eng_config_act_name(c->dense_act_fn));
    }
    case KIND_SCHEDULER: {
        const eng_scheduler_config *c = &ci->cfg.sch;
        return json_pack("{s:i, s:f, s:b, s:s, s:b, s:f}", "num_train_timesteps",
                         c->num_train_timesteps, "shift", c->shift, "use_dynamic_shifting",
                         c->use_dynamic_shifting, "time_shift_type",
                         c->time_shift_type == ENG_TIME_SHIFT_LINEAR ? "linear" : "exponential",
                         "invert_sigmas", c->invert_sigmas, "shift_terminal", c->shift_terminal);
    }
    case KIND_TOKENIZER:
    case KIND_OTHER: break;
    }
    return json_null();
}

static json_t *json_weights(const weight_stats *w)
{
    if (!w->present)
        return json_null();
    json_t *dt = json_object();
    for (int d = 0; d < N_DTYPES; d++)
        if (w->per_dtype[d])
            json_object_set_new(dt, eng_dtype_name((eng_dtype)d),
                                json_integer((json_int_t)w->per_dtype[d]));
    return json_pack("{s:I, s:I, s:I, s:I, s:o}", "files", (json_int_t)w->files, "tensors",
                     (json_int_t)w->tensors, "parameters", (json_int_t)w->params, "bytes",
                     (json_int_t)w->bytes, "dtypes", dt);
}

static json_t *json_component(const comp_info *ci)
{
    json_t *o = json_pack("{s:s?, s:s}", "library", ci->library, "class_name", ci->class_name);
    if (ci->kind == KIND_TOKENIZER) {
        json_t *files = json_array();
        for (size_t i = 0; i < N_TOKENIZER_FILES; i++)
            if (ci->tok_present[i])
                json_array_append_new(files, json_string(tokenizer_files[i]));
        json_object_set_new(o, "files", files);
    } else if (ci->kind == KIND_OTHER) {
        json_object_set_new(o, "supported", json_false());
    } else {
        json_object_set_new(o, "config", json_config(ci));
        if (ci->kind != KIND_SCHEDULER)
            json_object_set_new(o, "weights", json_weights(&ci->w));
    }
    return o;
}

static int render_json(FILE *out, const model_info *mi)
{
    uint64_t params = 0, bytes = 0;
    json_t *root = json_pack("{s:s}", "path", mi->dir), *comps = json_object();
    if (root && mi->is_pipeline) {
        json_object_set_new(root, "class_name", json_string(mi->index.class_name));
        json_object_set_new(root, "diffusers_version",
                            mi->index.diffusers_version ? json_string(mi->index.diffusers_version)
                                                        : json_null());
        json_object_set_new(root, "max_sequence_length",
                            json_integer(mi->index.max_sequence_length));
    }
    for (size_t i = 0; i < mi->n; i++) {
        json_object_set_new(comps, mi->comps[i].name, json_component(&mi->comps[i]));
        params += mi->comps[i].w.params;
        bytes += mi->comps[i].w.bytes;
    }
    json_object_set_new(root, "components", comps);
    json_object_set_new(root, "parameters", json_integer((json_int_t)params));
    json_object_set_new(root, "bytes", json_integer((json_int_t)bytes));
    int rc = root ? json_dumpf(root, out, JSON_INDENT(2)) : -1;
    if (rc == 0)
        fputc('\n', out);
    json_decref(root);
    return rc;
}

/* ---- the subcommand ---- */

typedef struct info_args {
    const char *dir;
    int json;
} info_args;

static const cmd_arg info_rows[] = {
    {.name = "MODEL_DIR", .type = CMD_ARG_STR, .flags = CMD_ARG_POSITIONAL,
     .off = offsetof(info_args, dir),
     .help = "a diffusers pipeline folder (model_index.json) or one component folder"},
    {.name = "json", .type = CMD_ARG_FLAG, .hi = 1, .off = offsetof(info_args, json),
     .help = "print one JSON object instead of text"},
};

static const cmd_args_spec info_spec = {
    .prog = "tttd info",
    .about = "Prints the components of a diffusers model folder (model_index.json), or of one "
             "component folder (config.json): each config's key fields, the weights found "
             "(files, tensors, parameters, bytes, dtypes) and the tokenizer files present.",
    .rows = info_rows,
    .n_rows = (int)(sizeof info_rows / sizeof info_rows[0]),
};

int cmd_info(int argc, char **argv, FILE *out, FILE *errout)
{
    info_args a = {0};
    int rc = cmd_args_parse(&info_spec, &a, argc, argv, out, errout);
    if (rc >= 0)
        return rc;
    const char *dir = a.dir;
    int as_json = a.json;

    model_info *mi = calloc(1, sizeof *mi);
    eng_error err = {0};
    int status = 0;
    if (!mi) {
        fprintf(errout, "tttd info: out of memory\n");
        return 1;
    }
    if (gather(mi, dir, &err) != 0) {
        status = cmd_engine_fail(errout, "info", NULL, &err);
    } else if (as_json) {
        if (render_json(out, mi) != 0) {
            fprintf(errout, "tttd info: could not write the JSON report\n");
            status = 1;
        }
    } else {
        render_text(out, mi);
    }
    fflush(out);
    model_info_free(mi);
    free(mi);
    return status;
}
