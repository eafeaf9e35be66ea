/*
 * mmdit_internal.h - the inside of an eng_mmdit, shared by mmdit.c (the forward pass),
 * mmdit_load.c (loading and binding the weights) and mmdit_block.c (the joint blocks and their
 * attention, softmax or TTT), and the stages of the forward pass exposed one by one so that
 * tests can check each against the reference.
 *
 * Shapes: B = batch, Ni = image tokens (gh x gw patch grid, row-major), Nt = text tokens,
 * N = Ni + Nt, C = inner_dim, h = heads, d = head dim. Weights are borrowed from m->weights.
 */
#ifndef TTTD_ENGINE_MMDIT_INTERNAL_H
#define TTTD_ENGINE_MMDIT_INTERNAL_H

#include "engine/backend/arena.h"
#include "engine/models/mmdit.h"
#include "engine/io/weights.h"

typedef const eng_tensor *wt; /* a borrowed weight; NULL where the model has none */

/* One attention module: a joint "attn" (image + text streams) or an image-only "attn2". */
typedef struct mmdit_attn {
    wt q_w, q_b, k_w, k_b, v_w, v_b;      /* to_q, to_k, to_v (image stream) */
    wt aq_w, aq_b, ak_w, ak_b, av_w, av_b; /* add_{q,k,v}_proj (text stream); NULL in attn2 */
    wt norm_q, norm_k, norm_aq, norm_ak;   /* per-head RMSNorm weights [d]; NULL without qk_norm */
    wt out_w, out_b;                       /* to_out.0 */
    wt aout_w, aout_b;                     /* to_add_out; NULL in attn2 and context_pre_only */
    int ttt;                               /* 1: TTT attention with the tensors below */
    wt w1, w2;                             /* [h, d, d] */
    wt qconv_w, qconv_b, kconv_w, kconv_b; /* [C, 1, 3, 3], [C] */
} mmdit_attn;

typedef struct mmdit_block {
    int dual;     /* MMDiT-X: SD35AdaLayerNormZeroX (9 chunks) and attn2 */
    int pre_only; /* context_pre_only (the last block): AdaLayerNormContinuous on the context */
    wt norm1_w, norm1_b;   /* [6C or 9C, C] */
    wt norm1c_w, norm1c_b; /* [6C, C], or [2C, C] (scale, shift) when pre_only */
    mmdit_attn attn, attn2;
    wt ff1_w, ff1_b, ff2_w, ff2_b;     /* ff.net.0.proj [4C, C], ff.net.2 [C, 4C] */
    wt ffc1_w, ffc1_b, ffc2_w, ffc2_b; /* ff_context; NULL when pre_only */
} mmdit_block;

/*
 * A forward recorded as a backend graph (mmdit_forward.c) for one input shape: the staging tensors
 * it reads and writes (the caller's tensors are copied in and out around a replay, so one graph
 * serves every request of its shape) and the arena block it was recorded on.
 */
typedef enum mmdit_graph_state {
    MMDIT_GRAPH_FRESH = 0,   /* the next forward of this shape runs eagerly on the staging */
    MMDIT_GRAPH_WARM = 1,    /* warmed up (arena, plans and scratch sized): the next one records */
    MMDIT_GRAPH_READY = 2,   /* recorded: forwards replay it */
    MMDIT_GRAPH_FAILED = -1, /* recording failed: this shape runs eagerly */
} mmdit_graph_state;

typedef struct mmdit_graph {
    int64_t B, H, W, Nt;                   /* the key */
    mmdit_graph_state state;
    void *graph;                           /* the backend's graph, once READY */
    eng_tensor x, tfeat, ctx, pooled, out; /* staging; tfeat is F32 [B, 256] */
    void *arena_base;                      /* the arena block the graph uses */
    size_t arena_cap;
    uint64_t mem_gen;                      /* the backend's memory generation at recording */
    uint64_t last_use;
} mmdit_graph;

/* Shapes kept at once; the least recently used is dropped for a new one. */
#define MMDIT_GRAPHS 4

struct eng_mmdit {
    eng_transformer_config cfg;
    eng_backend *be;
    eng_dtype dtype;
    eng_weights *weights;
    eng_arena arena;

    wt pos_embed;              /* [1, M*M, C] */
    wt patch_w, patch_b;       /* pos_embed.proj: [C, in, p, p], [C] */
    wt t1_w, t1_b, t2_w, t2_b; /* time_text_embed.timestep_embedder.linear_{1,2} */
    wt p1_w, p1_b, p2_w, p2_b; /* time_text_embed.text_embedder.linear_{1,2} */
    wt ctx_w, ctx_b;           /* context_embedder */
    wt out_norm_w, out_norm_b; /* norm_out.linear [2C, C]: (scale, shift) */
    wt proj_w, proj_b;         /* proj_out [p*p*out, C] */
    mmdit_block *blocks;       /* num_layers */

    int graphs_on;                       /* record and replay forwards where the backend can */
    mmdit_graph graphs[MMDIT_GRAPHS];
    uint64_t graph_clock;
};

/* Channels of the sinusoidal timestep features (diffusers' Timesteps(256, ...)). */
#define MMDIT_TIME_CHANNELS 256

/* ---- mmdit.c: the forward on device inputs ---- */

/* The forward of eng_mmdit_forward with the timestep features tfeat (F32 [B, 256] on m's
 * backend) in place of the host timesteps; no host copy, allocation or wait once the arena holds
 * the shape (so that it can be recorded as a graph). */
int mmdit_forward_body(eng_mmdit *m, const eng_tensor *x, const eng_tensor *tfeat,
                       const eng_tensor *ctx, const eng_tensor *pooled, eng_tensor *out,
                       eng_error *err);
/* f[B, 256] = diffusers' sinusoidal features of the B host timesteps t. */
void mmdit_time_features(const float *t, int64_t B, float *f);
/* tfeat: a new F32 arena tensor [B, 256] holding the features of the host timesteps t. */
int mmdit_upload_features(eng_mmdit *m, eng_tensor *tfeat, const float *t, int64_t B,
                          eng_error *err);

/* ---- mmdit_load.c ---- */


/* Binds m's weights by name after eng_weights_load (the same walk that declared them). */
int mmdit_bind(eng_mmdit *m, eng_error *err);

/* ---- mmdit_sai.c: the SAI single-file layout ---- */

/* "model.diffusion_model." (a full SAI checkpoint) or "" (the transformer alone); ENG_EFORMAT
 * when st is no SAI MMDiT checkpoint. */
int mmdit_sai_prefix(const eng_safetensors *st, const char *path, const char **prefix,
                     eng_error *err);
/* The config derived from the SAI tensor shapes (validated as config.json would be). */
int mmdit_sai_config(const eng_safetensors *st, const char *path, const char *prefix,
                     eng_transformer_config *cfg, eng_error *err);
/* Where the SAI layout keeps the diffusers tensor `name` of the given shape: src (whose name
 * is written to buf). */
int mmdit_sai_source(const eng_transformer_config *cfg, const char *prefix, const char *name,
                     int ndim, const int64_t *shape, eng_weight_src *src, char *buf, size_t len,
                     eng_error *err);

/* ---- mmdit_block.c ---- */

/* y = x W^T + b into a new arena tensor of x's shape with the last dim O. */
int mmdit_linear(eng_mmdit *m, eng_tensor *y, const eng_tensor *x, wt w, wt b, eng_error *err);
/*
 * Chunk j of an adaLN modulation: mod[B, C] = silu_temb[B, C] . W[jC:(j+1)C]^T + b[jC:(j+1)C]
 * (the rows of chunk j are contiguous in W, so this is one linear over weight views).
 */
int mmdit_mod_chunk(eng_mmdit *m, eng_tensor *mod, const eng_tensor *silu_temb, wt w, wt b, int j,
                    eng_error *err);
/*
 * One attention module on normalised, modulated inputs: x [B, Ni, C] (image tokens on a gh x gw
 * grid) and, for a joint module, c [B, Nt, C] (NULL for attn2). out_x [B, Ni, C] gets to_out.0;
 * out_c [B, Nt, C] gets to_add_out when the module has one (else it is left untouched, and may
 * be NULL). Both outputs are arena tensors the caller made.
 */
int mmdit_attention(eng_mmdit *m, const mmdit_attn *a, const eng_tensor *x, const eng_tensor *c,
                    int gh, int gw, eng_tensor *out_x, eng_tensor *out_c, eng_error *err);

/* ---- the forward pass stage by stage (mmdit.c, mmdit_block.c) ---- */

/* temb [B, C] = timestep_embedder(sinusoid(t)) + text_embedder(pooled[B, pooled_dim]). */
int eng_mmdit_time_embed(eng_mmdit *m, const float *t, const eng_tensor *pooled, eng_tensor *temb,
                         eng_error *err);
/* hidden [B, Ni, C] = patch embedding of x [B, in, H, W] + the centre-cropped pos_embed. */
int eng_mmdit_patch_embed(eng_mmdit *m, const eng_tensor *x, eng_tensor *hidden, eng_error *err);
/* context [B, Nt, C] = context_embedder(ctx [B, Nt, joint_attention_dim]). */
int eng_mmdit_context_embed(eng_mmdit *m, const eng_tensor *ctx, eng_tensor *context,
                            eng_error *err);
/*
 * Joint block i, in place: hidden [B, Ni, C] on a gh x gw grid, context [B, Nt, C], temb [B, C].
 * The last block (context_pre_only) leaves context untouched: diffusers discards its output.
 */
int eng_mmdit_block(eng_mmdit *m, int i, eng_tensor *hidden, eng_tensor *context,
                    const eng_tensor *temb, int gh, int gw, eng_error *err);
/* out [B, out_channels, gh*p, gw*p] = unpatchify(proj_out(norm_out(hidden, temb))). */
int eng_mmdit_final(eng_mmdit *m, const eng_tensor *hidden, const eng_tensor *temb, int gh, int gw,
                    eng_tensor *out, eng_error *err);

#endif
