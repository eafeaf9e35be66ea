/*
 * config.h - the config files of a diffusers model folder as typed, validated structs.
 *
 * Provides loaders for model_index.json (the pipeline's component map) and for the config of each
 * component tttd runs: SD3Transformer2DModel (transformer/config.json), AutoencoderKL
 * (vae/config.json), CLIPTextModelWithProjection (text_encoder/config.json, text_encoder_2/...),
 * T5EncoderModel (text_encoder_3/config.json) and FlowMatchEulerDiscreteScheduler
 * (scheduler/scheduler_config.json).
 *
 * Rules shared by every loader:
 *   - Unknown keys are ignored (the libraries save many that do not change inference).
 *   - A key that diffusers / transformers give a default is optional and gets that same default.
 *     The keys that fix a model's size and whose library default describes some other model
 *     (num_layers, hidden_size, ...) are REQUIRED: both libraries always save them, so their
 *     absence means a damaged or hand-made file. Each struct below marks its required keys.
 *   - A missing required key, a value of the wrong JSON type, a value out of range and a broken
 *     derived invariant are errors whose message names the file (as the caller spelled it) and the
 *     key: `transformer/config.json: missing required key "num_layers"` (ENG_ENOTFOUND),
 *     `...: key "patch_size" must be an integer, not a string` (ENG_EFORMAT),
 *     `...: key "patch_size" = 0 is out of range [1, 16]` (ENG_EFORMAT).
 *   - A valid value that tttd does not implement is ENG_EUNSUPPORTED (use_karras_sigmas: true,
 * ...).
 *   - Integers must be JSON integers; floats may be integers or reals; booleans must be true/false.
 *   - A "_class_name" (diffusers) or "model_type" (transformers) that names another class is
 *     ENG_EUNSUPPORTED; when the key is absent the file is taken to be of the expected class.
 *
 * Every loader has a _load form (reads a file; a missing file is ENG_ENOTFOUND, unreadable
 * ENG_EIO, bad JSON ENG_EFORMAT with line and column) and a _parse form (JSON text in memory;
 * label names it in messages). On failure *out holds no owned memory (free is still allowed).
 *
 * The structs are plain values the caller allocates. Only eng_model_index owns memory (free it
 * with eng_model_index_free). Loaders keep no state and are thread-safe.
 *
 * ---- The TTT map: the "ttt" key of transformer/config.json (tttd's own key) ----
 *
 * Which attention modules of an SD3Transformer2DModel are linearized with Test-Time Training.
 * The key is absent or null for a plain softmax model. Otherwise it is an object with exactly one
 * of two members:
 *
 *   "ttt": {"preset": "sd35-t5"}     a named map:
 *       "none"     no TTT module (same as no "ttt" key);
 *       "all"      every joint "attn" and every "attn2" (the fastest map);
 *       "sd35-t5"  the paper's SD3.5-T5 map: the "attn2" of every dual-attention block, plus the
 *                  joint "attn" of the last five blocks (num_layers-5 .. num_layers-1).
 *                  For SD3.5-Medium (24 blocks, dual attention in 0-12): attn2 of blocks 0-12
 *                  and attn of blocks 19-23, 18 of its 37 attention modules.
 *   "ttt": {"modules": ["transformer_blocks.0.attn2", "transformer_blocks.19.attn", ...]}
 *       an explicit list of module names, as diffusers names the modules:
 *       "transformer_blocks.<i>.attn" (the joint image+text attention of block i) or
 *       "transformer_blocks.<i>.attn2" (the image-only attention of a dual-attention block i).
 *       <i> is a decimal block index without sign or leading zeros. An index >= num_layers, an
 *       "attn2" on a block that is not in dual_attention_layers, or a name listed twice is an
 *       error naming the module. An empty list means no TTT module.
 *
 * Other members of the "ttt" object are ignored. Every module in the map carries four extra
 * tensors in the checkpoint: <module>.w1 and <module>.w2 [heads, head_dim, head_dim] and
 * <module>.q_conv / <module>.k_conv (weight [C, 1, 3, 3] and bias [C]).
 */
#ifndef TTTD_ENGINE_CONFIG_H
#define TTTD_ENGINE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "engine/backend/backend.h"
#include "engine/core/error.h"

/* Most transformer blocks tttd accepts (SD3.5-Large has 38). */
#define ENG_CONFIG_MAX_LAYERS 128
/* Most resolution levels of a VAE (SD3.5 has 4). */
#define ENG_CONFIG_MAX_VAE_BLOCKS 8

/* ---- model_index.json ---- */

typedef struct eng_component {
    char *name;       /* the key, also the component's folder name: "transformer" */
    char *library;    /* "diffusers", "transformers" */
    char *class_name; /* "SD3Transformer2DModel" */
} eng_component;

/*
 * REQUIRED: "_class_name" (a string). Optional: "_diffusers_version". Every other key whose value
 * is a two-element array [library, class] of strings is a component; [null, null], a null in
 * either place, or a null value means the pipeline has no such component and it is left out.
 * Other keys (pipeline options such as "force_zeros_for_empty_prompt") are ignored. A component
 * name that could leave the model folder ("", ".", "..", containing '/' or '\\') is an error.
 */
typedef struct eng_model_index {
    char *class_name;        /* "StableDiffusion3Pipeline" */
    char *diffusers_version; /* NULL when absent */
    size_t num_components;
    eng_component *components; /* present components, in file order */
    /* tttd's "_tttd_max_sequence_length" (diffusers ignores "_" keys): the T5 token count this
     * pipeline was trained with, 0 to 512, 0 only without T5 (no zero rows at all); default 256
     * (ENG_PROMPT_T5_LEN, diffusers' default). */
    int max_sequence_length;
} eng_model_index;

int eng_model_index_load(const char *path, eng_model_index *out, eng_error *err);
int eng_model_index_parse(const char *text, size_t len, const char *label, eng_model_index *out,
                          eng_error *err);
/* The component called name, or NULL when the pipeline has none. */
const eng_component *eng_model_index_find(const eng_model_index *idx, const char *name);
/* Frees the strings and array and zeroes *idx; NULL is a no-op. */
void eng_model_index_free(eng_model_index *idx);

/*
 * The class a config file declares: its "_class_name" (diffusers), else the first entry of
 * "architectures" (transformers), else its "model_type". Copied into buf (cut to len-1 chars).
 * ENG_ENOTFOUND when the file declares none of these.
 */
int eng_config_class_name(const char *path, char *buf, size_t len, eng_error *err);

/* ---- activations (CLIP hidden_act, T5 dense_act_fn) ---- */

/*
 * Activation names are mapped onto backend.h's eng_act: "gelu" -> ENG_ACT_GELU_ERF;
 * "gelu_new", "gelu_pytorch_tanh", "gelu_fast" (all the tanh form) -> ENG_ACT_GELU_TANH;
 * "quick_gelu" -> ENG_ACT_QUICK_GELU; "silu", "swish" -> ENG_ACT_SILU. Any other name
 * ("relu", "selu", ...) is ENG_EUNSUPPORTED: there is no kernel for it.
 */
/* "silu", "gelu_tanh", "gelu", "quick_gelu". */
const char *eng_config_act_name(eng_act act);

/* ---- transformer/config.json: SD3Transformer2DModel ---- */

typedef enum eng_qk_norm {
    ENG_QK_NORM_NONE = 0, /* null */
    ENG_QK_NORM_RMS = 1,  /* "rms_norm": per-head RMSNorm on q and k, eps 1e-6 */
} eng_qk_norm;

typedef enum eng_ttt_preset {
    ENG_TTT_PRESET_NONE = 0,    /* no "ttt" key, null, or {"preset": "none"} */
    ENG_TTT_PRESET_ALL = 1,     /* {"preset": "all"} */
    ENG_TTT_PRESET_SD35_T5 = 2, /* {"preset": "sd35-t5"} */
    ENG_TTT_PRESET_CUSTOM = 3,  /* {"modules": [...]} */
} eng_ttt_preset;

/* "none", "all", "sd35-t5", "custom". */
const char *eng_ttt_preset_name(eng_ttt_preset p);

/*
 * REQUIRED: num_layers [1, ENG_CONFIG_MAX_LAYERS], num_attention_heads, attention_head_dim,
 * caption_projection_dim. Optional, with diffusers' defaults: sample_size 128, patch_size 2,
 * in_channels 16, out_channels 16 (null: in_channels), joint_attention_dim 4096,
 * pooled_projection_dim 2048, pos_embed_max_size 96, dual_attention_layers [] (indices into the
 * blocks, each < num_layers), qk_norm null ("rms_norm"; diffusers' other norms are unsupported),
 * ttt (see the top of this file).
 *
 * Invariants checked: inner_dim = num_attention_heads * attention_head_dim must equal
 * caption_projection_dim (diffusers projects the text tokens to caption_projection_dim and feeds
 * them to blocks of width inner_dim) and be a multiple of 4 (the 2-D sin-cos position embedding).
 * The last block is context_pre_only, as in diffusers.
 */
typedef struct eng_transformer_config {
    int sample_size;
    int patch_size;
    int in_channels;
    int out_channels;
    int num_layers;
    int attention_head_dim;
    int num_attention_heads;
    int inner_dim; /* derived: num_attention_heads * attention_head_dim */
    int joint_attention_dim;
    int caption_projection_dim;
    int pooled_projection_dim;
    int pos_embed_max_size;
    eng_qk_norm qk_norm;
    int num_dual_attention_layers;                 /* blocks with an attn2 */
    uint8_t dual_attention[ENG_CONFIG_MAX_LAYERS]; /* [i]: 1 when block i has attn2 */
    eng_ttt_preset ttt_preset;
    int num_ttt_modules;                      /* derived: modules set below */
    uint8_t ttt_attn[ENG_CONFIG_MAX_LAYERS];  /* [i]: 1 when block i's joint attn is TTT */
    uint8_t ttt_attn2[ENG_CONFIG_MAX_LAYERS]; /* [i]: 1 when block i's attn2 is TTT */
} eng_transformer_config;

int eng_config_load_transformer(const char *path, eng_transformer_config *out, eng_error *err);
int eng_config_parse_transformer(const char *text, size_t len, const char *label,
                                 eng_transformer_config *out, eng_error *err);

/* ---- vae/config.json: AutoencoderKL ---- */

/*
 * REQUIRED: block_out_channels (1 to ENG_CONFIG_MAX_VAE_BLOCKS entries), latent_channels.
 * Optional, with diffusers' defaults: in_channels 3, out_channels 3, layers_per_block 1,
 * norm_num_groups 32 (must divide every block_out_channels entry), sample_size 32,
 * scaling_factor 0.18215, shift_factor null (read as 0), use_quant_conv true,
 * use_post_quant_conv true, mid_block_add_attention true, force_upcast true.
 * act_fn must be "silu"; down_block_types / up_block_types, when given, must hold one
 * "DownEncoderBlock2D" / "UpDecoderBlock2D" per block_out_channels entry.
 */
typedef struct eng_vae_config {
    int in_channels;
    int out_channels;
    int latent_channels;
    int num_blocks;
    int block_out_channels[ENG_CONFIG_MAX_VAE_BLOCKS];
    int layers_per_block;
    int norm_num_groups;
    int sample_size;
    double scaling_factor;
    double shift_factor;
    int use_quant_conv;
    int use_post_quant_conv;
    int mid_block_add_attention;
    int force_upcast;
} eng_vae_config;

int eng_config_load_vae(const char *path, eng_vae_config *out, eng_error *err);
int eng_config_parse_vae(const char *text, size_t len, const char *label, eng_vae_config *out,
                         eng_error *err);

/* Pixels per latent cell: diffusers' vae_scale_factor, 2 ** (len(block_out_channels) - 1). */
int eng_vae_config_scale(const eng_vae_config *c);

/*
 * The side in pixels of the image a model makes when no size is asked for (by a request or
 * `tttd generate`): the transformer's sample_size latent cells of vae_scale pixels each, as
 * diffusers' default_sample_size * vae_scale_factor (1024 for SD3.5). The one place it is worked
 * out.
 */
int eng_config_default_side(const eng_transformer_config *tc, int vae_scale);

/* ---- text_encoder/config.json, text_encoder_2/config.json: CLIPTextModelWithProjection ---- */

/*
 * REQUIRED: hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
 * projection_dim. Optional, with transformers' CLIPTextConfig defaults: vocab_size 49408,
 * max_position_embeddings 77, hidden_act "quick_gelu", layer_norm_eps 1e-5, pad_token_id 1,
 * bos_token_id 49406, eos_token_id 49407 (a null token id reads as -1).
 * hidden_size must be a multiple of num_attention_heads.
 *
 * Note for the pooled output: the SD3 files say eos_token_id 2, which transformers treats as its
 * legacy marker: the pooled token is then the position of the largest input id (argmax), not
 * the first eos_token_id.
 */
typedef struct eng_clip_text_config {
    int vocab_size;
    int hidden_size;
    int intermediate_size;
    int projection_dim;
    int num_hidden_layers;
    int num_attention_heads;
    int head_dim; /* derived: hidden_size / num_attention_heads */
    int max_position_embeddings;
    eng_act hidden_act;
    double layer_norm_eps;
    int bos_token_id;
    int eos_token_id;
    int pad_token_id;
} eng_clip_text_config;

int eng_config_load_clip_text(const char *path, eng_clip_text_config *out, eng_error *err);
int eng_config_parse_clip_text(const char *text, size_t len, const char *label,
                               eng_clip_text_config *out, eng_error *err);

/* ---- text_encoder_3/config.json: T5EncoderModel ---- */

/*
 * REQUIRED: d_model, d_kv, d_ff, num_layers, num_heads. Optional, with transformers' T5Config
 * defaults: vocab_size 32128, relative_attention_num_buckets 32,
 * relative_attention_max_distance 128, layer_norm_epsilon 1e-6, feed_forward_proj "relu",
 * pad_token_id 0, eos_token_id 1 (so a file without feed_forward_proj asks for "relu", which is
 * unsupported). As transformers does, feed_forward_proj "ACT" or "gated-ACT"
 * gives is_gated_act and dense_act_fn = ACT ("gated-gelu" gives "gelu_new"); "dense_act_fn" and
 * "is_gated_act" keys in the file override those.
 */
typedef struct eng_t5_config {
    int vocab_size;
    int d_model;
    int d_kv;
    int d_ff;
    int num_layers;
    int num_heads;
    int relative_attention_num_buckets;
    int relative_attention_max_distance;
    double layer_norm_epsilon;
    char feed_forward_proj[32];
    int is_gated_act;
    eng_act dense_act_fn;
    int pad_token_id;
    int eos_token_id;
} eng_t5_config;

int eng_config_load_t5(const char *path, eng_t5_config *out, eng_error *err);
int eng_config_parse_t5(const char *text, size_t len, const char *label, eng_t5_config *out,
                        eng_error *err);

/* ---- scheduler/scheduler_config.json: FlowMatchEulerDiscreteScheduler ---- */

typedef enum eng_time_shift {
    ENG_TIME_SHIFT_EXPONENTIAL = 0, /* "exponential" */
    ENG_TIME_SHIFT_LINEAR = 1,      /* "linear" */
} eng_time_shift;

/*
 * Every key is optional, with diffusers' defaults: num_train_timesteps 1000, shift 1.0 (the SD3
 * files say 3.0), use_dynamic_shifting false, base_shift 0.5, max_shift 1.15 (null reads as NaN;
 * both must be numbers when use_dynamic_shifting is true), base_image_seq_len 256,
 * max_image_seq_len 4096, invert_sigmas false, shift_terminal null (read as 0: none; otherwise in
 * (0, 1)), time_shift_type "exponential". use_karras_sigmas, use_exponential_sigmas,
 * use_beta_sigmas and stochastic_sampling must be false (true is ENG_EUNSUPPORTED).
 */
typedef struct eng_scheduler_config {
    int num_train_timesteps;
    double shift;
    int use_dynamic_shifting;
    double base_shift;
    double max_shift;
    int base_image_seq_len;
    int max_image_seq_len;
    int invert_sigmas;
    double shift_terminal;
    eng_time_shift time_shift_type;
} eng_scheduler_config;

int eng_config_load_scheduler(const char *path, eng_scheduler_config *out, eng_error *err);
int eng_config_parse_scheduler(const char *text, size_t len, const char *label,
                               eng_scheduler_config *out, eng_error *err);

#endif
