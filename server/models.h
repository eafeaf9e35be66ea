/*
 * models.h - the server's table of served models: name, folder, and what the HTTP layer needs to
 * know about each before any worker has loaded it (size rules, defaults, attention kind), read
 * from the folder's transformer/ and vae/ configs.
 *
 * Not thread-safe to build; read-only (any thread) afterwards.
 */
#ifndef TTTD_SERVER_MODELS_H
#define TTTD_SERVER_MODELS_H

#include <stddef.h>
#include <stdint.h>

#include "server/options.h"

typedef struct srv_model {
    char *name, *dir;
    int cell;      /* width and height are multiples of this: VAE scale x patch size */
    int max_side;  /* pos_embed_max_size patches of cell pixels */
    int default_width, default_height; /* sample_size x VAE scale, as diffusers */
    int attention_modules, ttt_modules;
    int64_t created; /* Unix seconds when the server read it */
} srv_model;

typedef struct srv_models {
    srv_model *v;
    int n;
} srv_models;

/*
 * The default model folder when no --model is given: $TTTD_MODELS_DIR/default, else the shipped
 * models/default (the embedded model), else tests/fixtures/tiny_model (random weights: noise),
 * each looked for in the working directory and then beside the binary (BUILD/.., BUILD/../..,
 * BIN/../share/tttd); the first folder holding a model_index.json. Not thread-safe (a static
 * buffer): call it at start-up.
 */
const char *srv_models_default_dir(void);

/*
 * Reads each spec's configs into out (specs may be NULL with n = 0: the default model under the
 * name "default"). Returns 0, or -1 with a message naming the folder and file in err.
 */
int srv_models_init(srv_models *out, const srv_model_spec *specs, int n, char *err,
                    size_t errlen);
void srv_models_free(srv_models *m);
/* The index of the model named name, or -1. */
int srv_models_find(const srv_models *m, const char *name);

#endif
