/*
 * vae_internal.h - the VAE decoder's layer records, shared by engine/models/vae.c (loading, the decode
 * driver) and engine/models/vae_blocks.c (the resnet, attention and upsampler forwards).
 *
 * Shapes: every activation is one sample, x[1, C, H, W]; tokens of the mid attention are the
 * H*W pixels, t[1, HW, C].
 */
#ifndef TTTD_ENGINE_VAE_INTERNAL_H
#define TTTD_ENGINE_VAE_INTERNAL_H

#include "engine/models/vae.h"
#include "engine/io/weights.h"

#define VAE_NAME_MAX 64

typedef struct vae_conv {
    const eng_tensor *w, *b; /* w[O, I, k, k]; w NULL: absent */
    int pad;
} vae_conv;

typedef struct vae_norm {
    const eng_tensor *w, *b; /* [C] */
} vae_norm;

typedef struct vae_resnet {
    char name[VAE_NAME_MAX]; /* "decoder.up_blocks.1.resnets.0" */
    int cin, cout;
    vae_norm norm1, norm2;
    vae_conv conv1, conv2;
    vae_conv shortcut; /* 1x1 conv_shortcut when cin != cout, else w NULL */
} vae_resnet;

typedef struct vae_attn {
    char name[VAE_NAME_MAX];
    int c;
    vae_norm norm;
    const eng_tensor *qw, *qb, *kw, *kb, *vw, *vb, *ow, *ob; /* [C, C], [C] */
} vae_attn;

typedef struct vae_up_block {
    int nres;         /* layers_per_block + 1 */
    vae_resnet *res;  /* owned */
    int has_upsampler;
    char up_name[VAE_NAME_MAX];
    vae_conv up; /* upsamplers.0.conv (3x3), after the nearest 2x */
} vae_up_block;

struct eng_vae {
    eng_vae_config cfg;
    eng_backend *be;
    eng_dtype dtype;
    eng_weights *weights;
    int groups;
    vae_conv post_quant; /* w NULL unless use_post_quant_conv */
    vae_conv conv_in;
    vae_resnet mid_res[2];
    int has_attn;
    vae_attn attn;
    vae_up_block *up; /* cfg.num_blocks */
    vae_norm norm_out;
    vae_conv conv_out;
};

/*
 * The forwards. Each consumes *x (an owned tensor: it is freed) and replaces it with the layer's
 * output (owned); on failure *x is freed too and left empty. Errors name the layer.
 */
int vae_resnet_forward(const eng_vae *v, const vae_resnet *r, eng_tensor *x, eng_error *err);
int vae_attn_forward(const eng_vae *v, const vae_attn *a, eng_tensor *x, eng_error *err);
int vae_upsample_forward(const eng_vae *v, const vae_up_block *u, eng_tensor *x, eng_error *err);
/* y = conv(x) into a new owned tensor of O channels; x is consumed as above. */
int vae_conv_forward(const eng_vae *v, const vae_conv *c, const char *name, eng_tensor *x,
                     eng_error *err);
/* x = conv_out(SiLU(GroupNorm(x))), consuming x. */
int vae_out_forward(const eng_vae *v, eng_tensor *x, eng_error *err);

#endif
