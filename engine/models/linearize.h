/*
 * linearize.h - makes a TTT checkpoint from a softmax SD3 checkpoint (`tttd linearize`).
 *
 * The output is the input model with some attention modules turned into TTT modules
 * (DESIGN.md section 4): every input tensor copied bit for bit, plus four new tensors per TTT
 * module, initialised as the paper's code initialises them (LeapLabTHU/Transformer-to-TTT,
 * DiT5/models.py, class TTTAttention):
 *
 *   <module>.w1, <module>.w2             [h, d, d]     timm trunc_normal_(std=.02): N(0, 0.02^2)
 *                                                      truncated to the ABSOLUTE bounds [-2, 2]
 *                                                      (timm's defaults a=-2, b=2), i.e. 100
 *                                                      standard deviations: in practice a plain
 *                                                      normal. Not truncated at 2 std.
 *   <module>.q_conv.weight, .k_conv.weight [C, 1, 3, 3]  nn.Conv2d's default init, which the
 *   <module>.q_conv.bias,   .k_conv.bias   [C]           paper never overrides: for a depthwise
 *                                                      3x3 conv fan_in = 9, so weight and bias
 *                                                      are both U(-1/3, 1/3).
 *
 * New tensors take the dtype of the module's own <module>.to_q.weight (F32, F16 or BF16; values
 * are drawn in double, rounded to float, then rounded to nearest-even into F16/BF16).
 *
 * ---- Randomness: deterministic for a seed, independent of the map ----
 *
 * Every value comes from the project's normal stream (engine/core/rng.h: eng_rng_normal(seed,
 * offset, ...), Philox4x32-10 + Box-Muller). Each new tensor owns a disjoint region of the
 * stream, 2^40 normals long, starting at
 *
 *     eng_linearize_stream_offset(block, attn2, param) = ((2 * block + attn2) * 8 + param) << 40
 *
 * with param the eng_ttt_param number below (w1 0, w2 1, q_conv.weight 2, q_conv.bias 3,
 * k_conv.weight 4, k_conv.bias 5). So a module's initial values depend only on (seed, module,
 * tensor), never on which other modules are in the map. Inside its region a tensor of n values
 * draws:
 *   - truncated normal (mean m, std s, bounds [a, b]): x_i = m + s * z_i with z_i the normal at
 *     region offset i; an x_i outside [a, b] is redrawn from offset r * n + i in retry round
 *     r = 1, 2, ... (rejection sampling, which gives the truncated normal exactly); after 16
 *     rounds a value still outside is clamped (timm clamps too). For w1/w2 no value is ever
 *     redrawn: a Box-Muller normal from 32-bit uniforms is below 6.7 in magnitude.
 *   - uniform on [lo, hi]: u_i = Phi(z_i) = erfc(-z_i / sqrt 2) / 2 (the normal CDF maps a
 *     standard normal onto a uniform on (0, 1)), x_i = lo + (hi - lo) * u_i, in double.
 *
 * ---- The output folder ----
 *
 * in_dir is either a diffusers pipeline folder (model_index.json listing a "transformer"
 * component in transformer/) or a bare transformer folder (config.json + weights). out_dir gets
 * the same layout:
 *   - every other file and folder of in_dir (other components, README, ...) copied verbatim
 *     (symbolic links are followed and their targets copied; ".git" folders are skipped);
 *   - in the transformer folder, every file except config.json and the weights copied verbatim;
 *   - config.json = the input config with "ttt": {"preset": "sd35-t5" | "all"} or
 *     {"modules": [...]} set (other keys kept as they are, in their order);
 *   - the weights keep the input's file split: each input weight file is written under its own
 *     name with the same tensors, and each module's new tensors go into the file that holds its
 *     <module>.to_q.weight. A *.safetensors.index.json is rewritten with the new tensors in its
 *     weight_map and metadata.total_size grown by their bytes. Weight files the input folder
 *     holds but does not use (e.g. beside an index that does not name them) are not written.
 *     Each written file keeps its input __metadata__ and adds "tttd.linearize.seed" (decimal),
 *     "tttd.linearize.map" (the map as given) and "tttd.linearize.modules" (the modules, comma
 *     separated). Memory: one input file's tensors at a time (the writer copies them).
 *
 * Refused (nothing written): a missing in_dir, model_index.json without a transformer, missing
 * config.json or weights (errors name the file); an input whose config already has a non-empty
 * TTT map; a map that selects no module or names a module the config does not have (the message
 * names it); a module whose <module>.to_q.weight is missing or not [C, *]; a new tensor name the
 * input already holds; an out_dir that exists and is not empty (unless force); an out_dir that
 * is in_dir, or inside it, or holds it.
 *
 * Not thread-safe with respect to the folders it writes; keeps no global state.
 */
#ifndef TTTD_ENGINE_LINEARIZE_H
#define TTTD_ENGINE_LINEARIZE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/io/config.h"
#include "engine/core/error.h"
#include "engine/backend/tensor.h"

/* The new tensors of one TTT module; the value is also its stream number (see above). */
typedef enum eng_ttt_param {
    ENG_TTT_W1 = 0,
    ENG_TTT_W2 = 1,
    ENG_TTT_Q_CONV_WEIGHT = 2,
    ENG_TTT_Q_CONV_BIAS = 3,
    ENG_TTT_K_CONV_WEIGHT = 4,
    ENG_TTT_K_CONV_BIAS = 5,
    ENG_TTT_NUM_PARAMS = 6,
} eng_ttt_param;

/* "w1", "w2", "q_conv.weight", "q_conv.bias", "k_conv.weight", "k_conv.bias". */
const char *eng_ttt_param_suffix(eng_ttt_param p);

/* The shape of param p for a model with cfg's heads and head dim; returns ndim. */
int eng_ttt_param_shape(const eng_transformer_config *cfg, eng_ttt_param p,
                        int64_t shape[ENG_MAX_DIMS]);

/* Start of the stream region of one tensor (block < ENG_CONFIG_MAX_LAYERS, attn2 0 or 1). */
uint64_t eng_linearize_stream_offset(int block, int attn2, eng_ttt_param p);

/* Truncated normal, as documented above: n values from the region starting at offset. */
void eng_linearize_trunc_normal(uint64_t seed, uint64_t offset, float *out, int64_t n, double mean,
                                double std, double a, double b);
/* Uniform on [lo, hi], as documented above. */
void eng_linearize_uniform(uint64_t seed, uint64_t offset, float *out, int64_t n, double lo,
                           double hi);

/*
 * The initial float32 values of param p of module (block, attn2), numel(shape) values into out:
 * what eng_linearize writes (before rounding to the weight dtype).
 */
int eng_linearize_init_param(const eng_transformer_config *cfg, uint64_t seed, int block,
                             int attn2, eng_ttt_param p, float *out, int64_t n, eng_error *err);

/*
 * Resolves a map ("sd35-t5", "all", or comma-separated module names such as
 * "transformer_blocks.0.attn2,transformer_blocks.2.attn"; spaces around names are ignored) against
 * a transformer config text: sets its "ttt" key and validates the result with
 * eng_config_parse_transformer (label names the file in messages). On success *out_text is the
 * new config JSON (indent 2, keys in input order, trailing newline; free() it) and *out_cfg its
 * parsed form. An input that already has a non-empty map, or a map selecting no module, is
 * ENG_EINVAL.
 */
int eng_linearize_resolve_map(const char *config_text, size_t len, const char *label,
                              const char *map, char **out_text, eng_transformer_config *out_cfg,
                              eng_error *err);

typedef struct eng_linearize_opts {
    const char *map; /* as for eng_linearize_resolve_map; required */
    uint64_t seed;
    int force; /* 1: out_dir may exist and hold files; same-named files are replaced, and
                  weight files (*.safetensors, *.safetensors.index.json) already in its
                  transformer folder are removed first so stale shards cannot mix in */
} eng_linearize_opts;

typedef struct eng_linearize_report {
    int is_pipeline;            /* 1: in_dir was a pipeline folder */
    eng_transformer_config cfg; /* the output config; ttt_attn / ttt_attn2 list the modules */
    int num_modules;
    eng_dtype dtype;          /* dtype of the new tensors (of the first module) */
    uint64_t new_tensors;     /* 6 per module */
    uint64_t new_params;      /* 2*h*d*d + 20*C per module */
    uint64_t copied_tensors;  /* inherited tensors written */
    uint64_t copied_params;   /* their parameter count */
    int weight_files;         /* safetensors files written */
    uint64_t other_files;     /* files copied verbatim */
} eng_linearize_report;

/* Module i of the map in block order (attn before attn2): "transformer_blocks.3.attn2". */
int eng_linearize_module_name(const eng_transformer_config *cfg, int i, char *buf, size_t len,
                              int *block, int *attn2);

/*
 * Runs the whole conversion described at the top of this file. rep may be NULL. Returns 0 or a
 * negative code; after a failure past validation out_dir may hold a partial result (the
 * message says which file failed).
 */
int eng_linearize(const char *in_dir, const char *out_dir, const eng_linearize_opts *opts,
                  eng_linearize_report *rep, eng_error *err);

#endif
