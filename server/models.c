/*
 * models.c - the served models' table (see models.h), from each folder's configs.
 */
#include "server/models.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/io/config.h"
#include "engine/core/error.h"

/* dir/rel/model_index.json readable: the folder dir/rel in out (NULL dir: rel itself). */
static int candidate(const char *dir, const char *rel, char *out, size_t outlen)
{
    char index[PATH_MAX];
    int n = dir ? snprintf(out, outlen, "%s/%s", dir, rel) : snprintf(out, outlen, "%s", rel);
    if (n < 0 || (size_t)n >= outlen)
        return 0;
    n = snprintf(index, sizeof index, "%s/model_index.json", out);
    return n > 0 && (size_t)n < sizeof index && access(index, R_OK) == 0;
}

const char *srv_models_default_dir(void)
{
    static char found[PATH_MAX];
    static const char *const rels[] = {"models/default", "tests/fixtures/tiny_model"};
    char exe[PATH_MAX], dirs[3][PATH_MAX + 16];
    int nd = 0;

    /* Where to look, best first: $TTTD_MODELS_DIR/default; then, for each of the shipped model
     * and the tiny test model, the working directory and the binary's source tree (the binary
     * lives in BUILD/ beside models/; an install puts models/ in ../share/tttd). */
    const char *env = getenv("TTTD_MODELS_DIR");
    if (env && *env && candidate(env, "default", found, sizeof found))
        return found;
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(dirs[nd++], sizeof dirs[0], "%s/..", exe);
            snprintf(dirs[nd++], sizeof dirs[0], "%s/../..", exe);
            snprintf(dirs[nd++], sizeof dirs[0], "%s/../share/tttd", exe);
        }
    }
    for (size_t r = 0; r < sizeof rels / sizeof rels[0]; r++) {
        if (candidate(NULL, rels[r], found, sizeof found))
            return found;
        for (int d = 0; d < nd; d++)
            if (candidate(dirs[d], rels[r], found, sizeof found))
                return found;
    }
    return "models/default"; /* nothing found: loading names this folder in its error */
}

static int model_read(srv_model *m, const char *name, const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    eng_transformer_config tc;
    eng_vae_config vc;
    eng_error e = {0};

    m->name = strdup(name);
    m->dir = strdup(dir);
    if (!m->name || !m->dir) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(path, sizeof path, "%s/transformer/config.json", dir);
    if (eng_config_load_transformer(path, &tc, &e))
        goto fail;
    snprintf(path, sizeof path, "%s/vae/config.json", dir);
    if (eng_config_load_vae(path, &vc, &e))
        goto fail;
    int scale = eng_vae_config_scale(&vc);
    m->cell = scale * tc.patch_size;
    m->max_side = tc.pos_embed_max_size * m->cell;
    m->default_width = m->default_height = eng_config_default_side(&tc, scale);
    m->attention_modules = tc.num_layers + tc.num_dual_attention_layers;
    m->ttt_modules = tc.num_ttt_modules;
    m->created = (int64_t)time(NULL);
    return 0;
fail:
    snprintf(err, errlen, "model %s: %s", name, e.msg[0] ? e.msg : eng_strerror(e.code));
    return -1;
}

int srv_models_init(srv_models *out, const srv_model_spec *specs, int n, char *err,
                    size_t errlen)
{
    out->n = 0;
    out->v = calloc((size_t)(n > 0 ? n : 1), sizeof *out->v);
    if (!out->v) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (n == 0) {
        out->n = 1;
        return model_read(&out->v[0], "default", srv_models_default_dir(), err, errlen);
    }
    for (int i = 0; i < n; i++) {
        out->n = i + 1;
        if (model_read(&out->v[i], specs[i].name, specs[i].dir, err, errlen))
            return -1;
    }
    return 0;
}

void srv_models_free(srv_models *m)
{
    for (int i = 0; m->v && i < m->n; i++) {
        free(m->v[i].name);
        free(m->v[i].dir);
    }
    free(m->v);
    m->v = NULL;
    m->n = 0;
}

int srv_models_find(const srv_models *m, const char *name)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->v[i].name, name) == 0)
            return i;
    return -1;
}
