/*
 * linearize.c - `tttd linearize`: softmax SD3 checkpoint -> TTT checkpoint (see linearize.h for
 * the output layout, the initialisation and the random stream layout; the initialisation and the
 * map are in linearize_init.c).
 *
 * Everything that can be checked is checked before the first byte is written: the folder
 * layout, the config and the map, the anchors of every TTT module and the output folder. Then
 * the other files are copied, the weights written one input file at a time (so memory holds
 * one file's tensors), the index rewritten, and the config written last.
 */
#include "engine/models/linearize.h"
#include "engine/core/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/io/safetensors.h"
#include "kernels/cpu/k_cpu.h"

#define META_PREFIX "tttd.linearize."

/* ---- files and folders (the helpers are in fsutil) ---- */

static int is_weight_file(const char *name)
{
    return eng_str_ends_with(name, ".safetensors") || eng_str_ends_with(name, ".safetensors.index.json");
}

static int skip_transformer(const char *name, int is_folder)
{
    return is_folder && strcmp(name, "transformer") == 0;
}

static int skip_written(const char *name, int is_folder)
{
    return !is_folder && (strcmp(name, "config.json") == 0 || is_weight_file(name));
}

/* With --force: weight files already in the output transformer folder would mix into ours. */
static int remove_stale_weights(const char *dir, eng_error *err)
{
    char p[PATH_MAX];
    struct dirent *e;
    int rc = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0; /* nothing there yet */
    while ((e = readdir(d)) != NULL) {
        if (!is_weight_file(e->d_name))
            continue;
        ENG_TRY_DONE(eng_path_join(p, sizeof p, dir, e->d_name, err));
        if (!eng_is_dir(p) && unlink(p) != 0)
            ENG_TRY_DONE(eng_error_set(err, ENG_EIO, "%s: cannot remove: %s", p, strerror(errno)));
    }
done:
    closedir(d);
    return rc;
}

/* ---- the weights ---- */

static int64_t numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= shape[d];
    return n;
}

typedef struct lin_module {
    char name[64]; /* "transformer_blocks.3.attn2" */
    int block, attn2;
    const eng_st_tensor *anchor; /* <module>.to_q.weight: gives the dtype and the file */
} lin_module;

typedef struct lin_job {
    const eng_linearize_opts *opts;
    char tr_in[PATH_MAX], tr_out[PATH_MAX];
    eng_transformer_config cfg;
    eng_safetensors *st;
    lin_module *mods;
    int nmods;
    char *modules_csv;
    char index_in[PATH_MAX]; /* "" when the weights have no index */
    json_t *index;           /* the input index, grown with the new tensors */
    eng_linearize_report *rep; /* never NULL: the caller's or a scratch one */
} lin_job;

/* The __metadata__ object of a safetensors file (a new reference), or an empty object. */
static json_t *file_metadata(const char *path)
{
    unsigned char len8[8];
    json_t *meta = NULL;
    FILE *f = fopen(path, "rb");
    if (f && fread(len8, 1, 8, f) == 8) {
        uint64_t n = 0;
        for (int i = 7; i >= 0; i--)
            n = n << 8 | len8[i];
        char *hdr = n <= 100000000u ? malloc((size_t)n) : NULL; /* validated on open already */
        if (hdr && fread(hdr, 1, (size_t)n, f) == n) {
            json_t *root = json_loadb(hdr, (size_t)n, 0, NULL);
            meta = json_incref(json_object_get(root, "__metadata__"));
            json_decref(root);
        }
        free(hdr);
    }
    if (f)
        fclose(f);
    if (!json_is_object(meta)) {
        json_decref(meta);
        meta = json_object();
    }
    return meta;
}

/* The name of an input weight file relative to the transformer folder (its index's spelling). */
static const char *rel_name(const lin_job *j, const char *file)
{
    const char *key, *slash = strrchr(file, '/');
    json_t *v;
    json_object_foreach(json_object_get(j->index, "weight_map"), key, v) {
        const char *s = json_string_value(v);
        size_t n = strlen(file), m = s ? strlen(s) : 0;
        if (s && n > m && file[n - m - 1] == '/' && strcmp(file + n - m, s) == 0)
            return s;
    }
    return slash ? slash + 1 : file;
}

static int to_dtype(void *dst, const float *src, int64_t n, eng_dtype dt)
{
    switch (dt) {
    case ENG_DTYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return 0;
    case ENG_DTYPE_F16:
        k_cpu_f32_to_f16(dst, src, n);
        return 0;
    case ENG_DTYPE_BF16:
        k_cpu_f32_to_bf16(dst, src, n);
        return 0;
    default:
        return ENG_EUNSUPPORTED;
    }
}

/* Adds module m's new tensors to w. */
static int add_module(lin_job *j, const lin_module *m, eng_st_writer *w, eng_error *err)
{
    int64_t shape[ENG_MAX_DIMS];
    int64_t cap = (int64_t)j->cfg.num_attention_heads * j->cfg.attention_head_dim *
                  j->cfg.attention_head_dim;
    if (cap < 9LL * j->cfg.inner_dim)
        cap = 9LL * j->cfg.inner_dim;
    float *vals = malloc((size_t)cap * sizeof *vals);
    void *raw = malloc((size_t)cap * sizeof(float));
    int rc = 0;
    if (!vals || !raw)
        ENG_TRY_DONE(eng_error_set(err, ENG_ENOMEM, "%s: out of memory", m->name));
    for (int p = 0; p < ENG_TTT_NUM_PARAMS; p++) {
        char name[128];
        int ndim = eng_ttt_param_shape(&j->cfg, (eng_ttt_param)p, shape);
        int64_t n = numel(ndim, shape);
        snprintf(name, sizeof name, "%s.%s", m->name, eng_ttt_param_suffix(p));
        ENG_TRY_DONE(eng_linearize_init_param(&j->cfg, j->opts->seed, m->block, m->attn2,
                                              (eng_ttt_param)p, vals, n, err));
        ENG_TRY_DONE(to_dtype(raw, vals, n, m->anchor->dtype));
        ENG_TRY_DONE(eng_st_writer_add(w, name, m->anchor->dtype, ndim, shape, raw, err));
        j->rep->new_tensors++;
        j->rep->new_params += (uint64_t)n;
        if (j->index) {
            json_t *wm = json_object_get(j->index, "weight_map");
            json_t *ts = json_object_get(json_object_get(j->index, "metadata"), "total_size");
            json_object_set_new(wm, name, json_string(rel_name(j, m->anchor->file)));
            json_int_t bytes = (json_int_t)((size_t)n * eng_dtype_size(m->anchor->dtype));
            if (json_is_integer(ts))
                json_integer_set(ts, json_integer_value(ts) + bytes);
        }
    }
done:
    free(vals);
    free(raw);
    return rc;
}

/* Writes one output weight file: the tensors of input file `file`, plus the new tensors of the
 * modules anchored there, with the input's metadata and ours. */
static int write_weight_file(lin_job *j, const char *file, eng_error *err)
{
    eng_st_writer *w = NULL;
    char out[PATH_MAX], seed[32];
    const char *rel = rel_name(j, file), *key;
    json_t *meta = NULL, *v;
    int rc = 0;
    ENG_TRY(eng_path_join(out, sizeof out, j->tr_out, rel, err));
    if (strchr(rel, '/')) { /* a shard in a subfolder of the index's folder */
        char sub[PATH_MAX];
        snprintf(sub, sizeof sub, "%.*s", (int)(strrchr(out, '/') - out), out);
        ENG_TRY(eng_mkdir_p(sub, err));
    }
    ENG_TRY(eng_st_writer_init(&w, err));
    for (size_t i = 0; i < eng_safetensors_count(j->st); i++) {
        const eng_st_tensor *t = eng_safetensors_at(j->st, i);
        if (t->file != file)
            continue;
        ENG_TRY_DONE(eng_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, err));
        j->rep->copied_tensors++;
        j->rep->copied_params += (uint64_t)(t->nbytes / eng_dtype_size(t->dtype));
    }
    for (int m = 0; m < j->nmods; m++)
        if (j->mods[m].anchor->file == file)
            ENG_TRY_DONE(add_module(j, &j->mods[m], w, err));
    meta = file_metadata(file);
    json_object_foreach(meta, key, v) {
        if (json_is_string(v) && strncmp(key, META_PREFIX, strlen(META_PREFIX)) != 0)
            ENG_TRY_DONE(eng_st_writer_set_metadata(w, key, json_string_value(v), err));
    }
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)j->opts->seed);
    ENG_TRY_DONE(eng_st_writer_set_metadata(w, META_PREFIX "seed", seed, err));
    ENG_TRY_DONE(eng_st_writer_set_metadata(w, META_PREFIX "map", j->opts->map, err));
    ENG_TRY_DONE(eng_st_writer_set_metadata(w, META_PREFIX "modules", j->modules_csv, err));
    ENG_TRY_DONE(eng_st_writer_write(w, out, err));
    j->rep->weight_files++;
done:
    json_decref(meta);
    eng_st_writer_free(w);
    return rc;
}

/* Finds the modules' anchors and checks that none of the new names is taken. */
static int check_modules(lin_job *j, eng_error *err)
{
    size_t csv_len = 1;
    j->nmods = j->cfg.num_ttt_modules;
    j->mods = calloc((size_t)j->nmods, sizeof *j->mods);
    if (!j->mods)
        return eng_error_set(err, ENG_ENOMEM, "linearize: out of memory");
    for (int i = 0; i < j->nmods; i++) {
        lin_module *m = &j->mods[i];
        char name[128];
        eng_linearize_module_name(&j->cfg, i, m->name, sizeof m->name, &m->block, &m->attn2);
        snprintf(name, sizeof name, "%s.to_q.weight", m->name);
        m->anchor = eng_safetensors_find(j->st, name);
        if (!m->anchor)
            return eng_error_set(err, ENG_ENOTFOUND, "%s: no tensor \"%s\" for TTT module %s",
                                 j->tr_in, name, m->name);
        if (m->anchor->ndim != 2 || m->anchor->shape[0] != j->cfg.inner_dim)
            return eng_error_set(err, ENG_EFORMAT, "%s: tensor \"%s\" is not [%d, *] (inner_dim)",
                                 m->anchor->file, name, j->cfg.inner_dim);
        if (m->anchor->dtype == ENG_DTYPE_I32)
            return eng_error_set(err, ENG_EUNSUPPORTED, "%s: tensor \"%s\" is I32, not a float",
                                 m->anchor->file, name);
        for (int p = 0; p < ENG_TTT_NUM_PARAMS; p++) {
            snprintf(name, sizeof name, "%s.%s", m->name, eng_ttt_param_suffix(p));
            if (eng_safetensors_find(j->st, name))
                return eng_error_set(err, ENG_EINVAL,
                                     "%s: already holds \"%s\"; is it a TTT checkpoint already?",
                                     j->tr_in, name);
        }
        csv_len += strlen(m->name) + 1;
    }
    j->modules_csv = calloc(1, csv_len);
    if (!j->modules_csv)
        return eng_error_set(err, ENG_ENOMEM, "linearize: out of memory");
    for (int i = 0; i < j->nmods; i++) {
        if (i)
            strcat(j->modules_csv, ",");
        strcat(j->modules_csv, j->mods[i].name);
    }
    return 0;
}

/* The input's *.safetensors.index.json, if it has one (open_dir refuses several). */
static int load_index(lin_job *j, eng_error *err)
{
    DIR *d = opendir(j->tr_in);
    struct dirent *e;
    j->index_in[0] = '\0';
    if (!d)
        return eng_error_set(err, ENG_EIO, "%s: cannot open folder: %s", j->tr_in, strerror(errno));
    while ((e = readdir(d)) != NULL)
        if (eng_str_ends_with(e->d_name, ".safetensors.index.json")) {
            eng_path_join(j->index_in, sizeof j->index_in, j->tr_in, e->d_name, NULL);
            break;
        }
    closedir(d);
    if (!j->index_in[0])
        return 0;
    json_error_t je;
    j->index = json_load_file(j->index_in, 0, &je);
    if (!j->index)
        return eng_error_set(err, ENG_EFORMAT, "%s: %s (line %d)", j->index_in, je.text, je.line);
    return 0;
}

/* ---- the conversion ---- */

/* Finds the transformer folder: in_dir/transformer of a pipeline, or in_dir itself. */
static int find_transformer(const char *in_dir, lin_job *j, eng_error *err)
{
    char p[PATH_MAX];
    if (!eng_is_dir(in_dir))
        return eng_error_set(err, ENG_ENOTFOUND, "%s: no such folder", in_dir);
    ENG_TRY(eng_path_join(p, sizeof p, in_dir, "model_index.json", err));
    if (eng_is_file(p)) {
        eng_model_index idx;
        ENG_TRY(eng_model_index_load(p, &idx, err));
        int has = eng_model_index_find(&idx, "transformer") != NULL;
        eng_model_index_free(&idx);
        if (!has)
            return eng_error_set(err, ENG_ENOTFOUND, "%s: the pipeline has no transformer", p);
        j->rep->is_pipeline = 1;
        ENG_TRY(eng_path_join(j->tr_in, sizeof j->tr_in, in_dir, "transformer", err));
        if (!eng_is_dir(j->tr_in))
            return eng_error_set(err, ENG_ENOTFOUND,
                                 "%s: no such folder (model_index.json lists it)", j->tr_in);
        return 0;
    }
    ENG_TRY(eng_path_join(p, sizeof p, in_dir, "config.json", err));
    if (!eng_is_file(p)) {
        char q[PATH_MAX];
        int sub = eng_path_join(q, sizeof q, in_dir, "transformer/config.json", NULL) == 0 && eng_is_file(q);
        return eng_error_set(err, ENG_ENOTFOUND,
                             "%s: neither model_index.json (a pipeline) nor config.json (a "
                             "transformer folder)%s",
                             in_dir, sub ? "; its transformer/ folder is one" : "");
    }
    snprintf(j->tr_in, sizeof j->tr_in, "%s", in_dir);
    return 0;
}

/* Refuses an output folder that is in use or overlaps the input. */
static int check_out_dir(const char *in_dir, const char *out_dir, int force, eng_error *err)
{
    char rin[PATH_MAX], rout[PATH_MAX];
    struct stat sb;
    if (stat(out_dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode))
            return eng_error_set(err, ENG_EINVAL, "%s: exists and is not a folder", out_dir);
        if (!force && !eng_dir_is_empty(out_dir))
            return eng_error_set(err, ENG_EINVAL,
                                 "%s: exists and is not empty (--force writes into it)",
                                 out_dir);
    }
    if (eng_resolve_path(in_dir, rin) != 0 || eng_resolve_path(out_dir, rout) != 0)
        return eng_error_set(err, ENG_EINVAL, "%s: cannot resolve the path", out_dir);
    if (eng_path_within(rout, rin) || eng_path_within(rin, rout))
        return eng_error_set(err, ENG_EINVAL, "%s: overlaps the input folder %s", out_dir, in_dir);
    return 0;
}

/* Writes the updated shard index beside the weight files (same name as the input's). */
static int write_index(lin_job *j, eng_error *err)
{
    char p[PATH_MAX];
    const char *slash = strrchr(j->index_in, '/');
    char *dump = json_dumps(j->index, JSON_INDENT(2) | JSON_SORT_KEYS);
    int rc = 0;
    ENG_TRY_DONE(eng_path_join(p, sizeof p, j->tr_out, slash ? slash + 1 : j->index_in, err));
    if (!dump)
        ENG_TRY_DONE(eng_error_set(err, ENG_ENOMEM, "%s: out of memory", p));
    ENG_TRY_DONE(eng_write_file(p, dump, strlen(dump), err));
done:
    free(dump);
    return rc;
}

static int run(lin_job *j, const char *in_dir, const char *out_dir, eng_error *err)
{
    const eng_linearize_opts *o = j->opts;
    char cfg_in[PATH_MAX], cfg_out[PATH_MAX], *text = NULL, *new_text = NULL;
    size_t len = 0;
    uint64_t other = 0;
    int rc = 0;

    /* Checks, before anything is written. */
    ENG_TRY(find_transformer(in_dir, j, err));
    ENG_TRY(eng_path_join(cfg_in, sizeof cfg_in, j->tr_in, "config.json", err));
    ENG_TRY(eng_read_file(cfg_in, &text, &len, err));
    rc = eng_linearize_resolve_map(text, len, cfg_in, o->map, &new_text, &j->cfg, err);
    free(text);
    ENG_TRY(rc);
    ENG_TRY_DONE(eng_safetensors_open_dir(&j->st, j->tr_in, err));
    ENG_TRY_DONE(load_index(j, err));
    ENG_TRY_DONE(check_modules(j, err));
    ENG_TRY_DONE(check_out_dir(in_dir, out_dir, o->force, err));

    /* The folders and the verbatim copies. */
    if (j->rep->is_pipeline)
        ENG_TRY_DONE(eng_path_join(j->tr_out, sizeof j->tr_out, out_dir, "transformer", err));
    else
        snprintf(j->tr_out, sizeof j->tr_out, "%s", out_dir);
    ENG_TRY_DONE(eng_mkdir_p(j->tr_out, err));
    if (o->force)
        ENG_TRY_DONE(remove_stale_weights(j->tr_out, err));
    if (j->rep->is_pipeline)
        ENG_TRY_DONE(eng_copy_tree(in_dir, out_dir, skip_transformer, &other, err));
    ENG_TRY_DONE(eng_copy_tree(j->tr_in, j->tr_out, skip_written, &other, err));

    /* The weights, one input file at a time, in the order the reader lists them. */
    for (size_t i = 0; i < eng_safetensors_count(j->st); i++) {
        const char *f = eng_safetensors_at(j->st, i)->file;
        int seen = 0;
        for (size_t k = 0; k < i && !seen; k++)
            seen = eng_safetensors_at(j->st, k)->file == f;
        if (!seen)
            ENG_TRY_DONE(write_weight_file(j, f, err));
    }
    if (j->index)
        ENG_TRY_DONE(write_index(j, err));
    /* The config last: a folder whose config has the map is complete. */
    ENG_TRY_DONE(eng_path_join(cfg_out, sizeof cfg_out, j->tr_out, "config.json", err));
    ENG_TRY_DONE(eng_write_file(cfg_out, new_text, strlen(new_text), err));
    j->rep->other_files = other;
    j->rep->cfg = j->cfg;
    j->rep->num_modules = j->nmods;
    j->rep->dtype = j->mods[0].anchor->dtype;
done:
    free(new_text);
    return rc;
}

int eng_linearize(const char *in_dir, const char *out_dir, const eng_linearize_opts *opts,
                  eng_linearize_report *rep, eng_error *err)
{
    lin_job j;
    eng_linearize_report scratch;
    memset(&j, 0, sizeof j);
    if (!in_dir || !out_dir || !opts || !opts->map)
        return eng_error_set(err, ENG_EINVAL, "linearize: input, output and map are required");
    j.opts = opts;
    j.rep = rep ? rep : &scratch;
    memset(j.rep, 0, sizeof *j.rep);
    int rc = run(&j, in_dir, out_dir, err);
    eng_safetensors_close(j.st);
    json_decref(j.index);
    free(j.mods);
    free(j.modules_csv);
    return rc;
}
