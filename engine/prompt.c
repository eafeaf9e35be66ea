/*
 * prompt.c - the SD3 prompt encoder (engine/prompt.h): loads CLIP-L, CLIP-G, T5 and their
 * tokenizers from a pipeline folder, and turns a batch of prompts into the transformer's context
 * tokens and pooled vector as diffusers' StableDiffusion3Pipeline.encode_prompt does.
 *
 * The joins (channel concatenation, zero padding, token concatenation) run through eng_op_* so
 * that they stay on the backend: a channel concatenation of [R, a] and [R, b] row-major blocks is
 * eng_op_concat_tokens on the same memory seen as [R, a, 1] and [R, b, 1].
 */
#include "engine/prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/models/clip.h"
#include "engine/core/log.h"
#include "engine/models/t5.h"
#include "engine/text/tokenizer.h"

struct eng_prompt_encoder {
    eng_backend *be;
    eng_dtype dtype;
    eng_clip *clip_l, *clip_g; /* NULL: zeros */
    eng_t5 *t5;                /* NULL: zeros */
    eng_tokenizer *tok_l, *tok_g, *tok_t5;
    int clip_len, t5_len;
    int joint_dim, pooled_dim;
    int hidden_l, hidden_g; /* channel widths of the two CLIPs' parts of the context */
    int proj_l, proj_g;     /* widths of their pooled parts */
};

/* ---- loading ---- */

/* 1 when model_index lists the component and its folder exists; a listed but absent folder is
 * read as missing, with a warning, as the brief for tttd asks (diffusers would fail instead). */
static int component_present(const char *model_dir, const eng_model_index *idx, const char *name,
                             char *path, size_t len)
{
    snprintf(path, len, "%s/%s", model_dir, name);
    if (!eng_model_index_find(idx, name))
        return 0;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        LOG_WARN("%s: model_index.json lists %s but the folder is absent; using zeros", path, name);
        return 0;
    }
    return 1;
}

/* Adds the folder to a loader's message unless the message names it already. */
static int name_folder(int rc, eng_error *err, const char *path)
{
    if (rc && err && !strstr(err->msg, path))
        eng_error_prefix(err, "%s", path);
    return rc;
}

static int load_tokenizer(eng_tokenizer **out, const char *model_dir, const eng_model_index *idx,
                          const char *name, const char *user, eng_error *err)
{
    char path[4096];
    if (!component_present(model_dir, idx, name, path, sizeof path))
        return eng_error_set(err, ENG_ENOTFOUND,
                             "%s: %s needs its tokenizer, but model_index.json does not list it "
                             "or the folder is absent",
                             path, user);
    return name_folder(eng_tokenizer_load(out, path, err), err, path);
}

static int load_clip(eng_prompt_encoder *e, eng_clip **m, eng_tokenizer **tok, const char *dir,
                     const eng_model_index *idx, const char *enc_name, const char *tok_name,
                     eng_error *err)
{
    char path[4096];
    if (!component_present(dir, idx, enc_name, path, sizeof path))
        return 0;
    ENG_TRY(name_folder(eng_clip_load(m, path, e->be, e->dtype, err), err, path));
    const eng_clip_text_config *c = eng_clip_get_config(*m);
    if (c->max_position_embeddings < e->clip_len)
        return eng_error_set(err, ENG_EFORMAT,
                             "%s: max_position_embeddings %d is shorter than the %d tokens "
                             "the pipeline's CLIP tokenizer pads to",
                             path, c->max_position_embeddings, e->clip_len);
    if (*tok) /* tokenizer/ is read up front (it fixes the CLIP length) */
        return 0;
    return load_tokenizer(tok, dir, idx, tok_name, enc_name, err);
}

/* diffusers' tokenizer_max_length: tokenizer/'s model_max_length, 77 without the tokenizer. */
static int pick_clip_len(const eng_prompt_encoder *e, const char *dir, eng_error *err)
{
    int n = e->tok_l ? eng_tokenizer_model_max_length(e->tok_l) : 0;
    if (n == 0)
        return ENG_PROMPT_CLIP_LEN; /* no model_max_length in the folder: CLIP's own 77 */
    if (n < 2 || n > 4096)
        return eng_error_set(err, ENG_EFORMAT,
                             "%s/tokenizer: model_max_length %d is not a usable CLIP length", dir,
                             n);
    return n;
}

/* The CLIP widths, derived for a missing CLIP from the transformer's pooled_projection_dim. */
static int pick_widths(eng_prompt_encoder *e, const char *dir, eng_error *err)
{
    const eng_clip_text_config *l = e->clip_l ? eng_clip_get_config(e->clip_l) : NULL;
    const eng_clip_text_config *g = e->clip_g ? eng_clip_get_config(e->clip_g) : NULL;
    int P = e->pooled_dim;
    if (l && g) {
        e->hidden_l = l->hidden_size, e->proj_l = l->projection_dim;
        e->hidden_g = g->hidden_size, e->proj_g = g->projection_dim;
    } else if (l || g) {
        const eng_clip_text_config *c = l ? l : g;
        int other = P - c->projection_dim;
        if (other <= 0)
            return eng_error_set(
                err, ENG_EFORMAT,
                "%s: cannot stand in zeros for the missing %s: the present CLIP's projection_dim "
                "%d leaves no room in the transformer's pooled_projection_dim %d",
                dir, l ? "text_encoder_2 (CLIP-G)" : "text_encoder (CLIP-L)", c->projection_dim,
                P);
        if (l) { /* CLIP-G's zeros are part of the padding */
            e->hidden_l = l->hidden_size, e->proj_l = l->projection_dim;
            e->hidden_g = 0, e->proj_g = other;
        } else {
            e->hidden_l = other, e->proj_l = other;
            e->hidden_g = g->hidden_size, e->proj_g = g->projection_dim;
        }
    } else {
        /* Both missing: the whole CLIP part and the pooled vector are zeros; how they split
         * does not matter. */
        e->hidden_l = 0, e->hidden_g = 0;
        e->proj_l = 0, e->proj_g = P;
    }
    if (e->proj_l + e->proj_g != P)
        return eng_error_set(err, ENG_EFORMAT,
                             "%s: text_encoder projection_dim %d + text_encoder_2 projection_dim "
                             "%d != the transformer's pooled_projection_dim %d",
                             dir, e->proj_l, e->proj_g, P);
    /* diffusers' F.pad would cut wider CLIP states (a negative pad); no SD3 model has them, and
     * our reference refuses them too. */
    if (e->hidden_l + e->hidden_g > e->joint_dim)
        return eng_error_set(err, ENG_EUNSUPPORTED,
                             "%s: the CLIP hidden sizes %d + %d exceed the transformer's "
                             "joint_attention_dim %d",
                             dir, e->hidden_l, e->hidden_g, e->joint_dim);
    return 0;
}

int eng_prompt_encoder_load(eng_prompt_encoder **out, const char *model_dir,
                            const eng_model_index *idx, int joint_dim, int pooled_dim,
                            eng_backend *be, eng_dtype dtype, eng_error *err)
{
    char path[4096];
    int rc = 0;
    if (!out)
        return eng_error_set(err, ENG_EINVAL, "prompt encoder: NULL output");
    *out = NULL;
    if (!model_dir || !idx || !be || joint_dim < 1 || pooled_dim < 1)
        return eng_error_set(err, ENG_EINVAL, "prompt encoder: bad arguments");
    eng_prompt_encoder *e = calloc(1, sizeof *e);
    if (!e)
        return eng_error_set(err, ENG_ENOMEM, "prompt encoder: out of memory");
    e->be = be, e->dtype = dtype;
    e->joint_dim = joint_dim, e->pooled_dim = pooled_dim;
    e->t5_len = ENG_PROMPT_T5_LEN;

    /* tokenizer/ fixes the CLIP length for both CLIPs (and for T5's zeros), as in diffusers,
     * so it is read whenever present, even without its encoder. */
    if (component_present(model_dir, idx, "tokenizer", path, sizeof path))
        ENG_TRY_DONE(name_folder(eng_tokenizer_load(&e->tok_l, path, err), err, path));
    e->clip_len = pick_clip_len(e, model_dir, err);
    if (e->clip_len < 0) {
        rc = e->clip_len;
        goto done;
    }
    ENG_TRY_DONE(
        load_clip(e, &e->clip_l, &e->tok_l, model_dir, idx, "text_encoder", "tokenizer", err));
    ENG_TRY_DONE(
        load_clip(e, &e->clip_g, &e->tok_g, model_dir, idx, "text_encoder_2", "tokenizer_2", err));
    ENG_TRY_DONE(pick_widths(e, model_dir, err));

    if (component_present(model_dir, idx, "text_encoder_3", path, sizeof path)) {
        ENG_TRY_DONE(name_folder(eng_t5_load(&e->t5, path, be, dtype, err), err, path));
        if (eng_t5_get_config(e->t5)->d_model != joint_dim) {
            rc = eng_error_set(err, ENG_EFORMAT,
                               "%s: d_model %d != the transformer's joint_attention_dim %d", path,
                               eng_t5_get_config(e->t5)->d_model, joint_dim);
            goto done;
        }
        ENG_TRY_DONE(
            load_tokenizer(&e->tok_t5, model_dir, idx, "tokenizer_3", "text_encoder_3", err));
    }
done:
    if (rc)
        eng_prompt_encoder_free(e);
    else
        *out = e;
    return rc;
}

int eng_prompt_ctx_len_of(const char *model_dir, const eng_model_index *idx, int t5_len,
                          eng_error *err)
{
    char path[4096];
    if (!model_dir || !idx || t5_len < 0 || t5_len > ENG_PROMPT_T5_MAX_LEN)
        return eng_error_set(err, ENG_EINVAL, "prompt context length: bad arguments");
    eng_prompt_encoder e = {0};
    if (component_present(model_dir, idx, "tokenizer", path, sizeof path)) {
        int rc = name_folder(eng_tokenizer_load(&e.tok_l, path, err), err, path);
        if (rc)
            return rc;
    }
    int L = pick_clip_len(&e, model_dir, err);
    eng_tokenizer_free(e.tok_l);
    return L < 0 ? L : L + t5_len;
}

void eng_prompt_encoder_free(eng_prompt_encoder *e)
{
    if (!e)
        return;
    eng_clip_free(e->clip_l);
    eng_clip_free(e->clip_g);
    eng_t5_free(e->t5);
    eng_tokenizer_free(e->tok_l);
    eng_tokenizer_free(e->tok_g);
    eng_tokenizer_free(e->tok_t5);
    free(e);
}

int eng_prompt_has_clip_l(const eng_prompt_encoder *e) { return e->clip_l != NULL; }
int eng_prompt_has_clip_g(const eng_prompt_encoder *e) { return e->clip_g != NULL; }
int eng_prompt_has_t5(const eng_prompt_encoder *e) { return e->t5 != NULL; }
int eng_prompt_clip_len(const eng_prompt_encoder *e) { return e->clip_len; }
int eng_prompt_t5_len(const eng_prompt_encoder *e) { return e->t5_len; }

int eng_prompt_ctx_len(const eng_prompt_encoder *e) { return e->clip_len + e->t5_len; }

int eng_prompt_set_t5_len(eng_prompt_encoder *e, int t5_len, eng_error *err)
{
    if (!e)
        return eng_error_set(err, ENG_EINVAL, "max_sequence_length: NULL encoder");
    if (t5_len < (e->t5 ? 1 : 0) || t5_len > ENG_PROMPT_T5_MAX_LEN)
        return eng_error_set(err, ENG_EINVAL,
                             "max_sequence_length = %d is out of range [%d, %d] (%s)", t5_len,
                             e->t5 ? 1 : 0, ENG_PROMPT_T5_MAX_LEN,
                             e->t5 ? "diffusers' limit; 0 only without T5" : "diffusers' limit");
    e->t5_len = t5_len;
    return 0;
}

/* ---- encoding ---- */

/* An owned tensor of zeros (all-zero bits are +0 in every float dtype). */
static int zeros_init(eng_tensor *t, eng_backend *be, eng_dtype dt, int ndim, const int64_t *shape,
                      eng_error *err)
{
    ENG_TRY(eng_tensor_init(t, be, dt, ndim, shape, err));
    void *z = calloc(1, eng_tensor_nbytes(t) ? eng_tensor_nbytes(t) : 1);
    if (!z) {
        eng_tensor_free(t);
        return eng_error_set(err, ENG_ENOMEM, "prompt encoder: out of memory");
    }
    int rc = eng_tensor_upload(t, z, err);
    free(z);
    if (rc)
        eng_tensor_free(t);
    return rc;
}

/* One part of a channel concatenation: rows [R, w] of t, or zeros when t is NULL. */
typedef struct chan_part {
    const eng_tensor *t;
    int64_t w;
} chan_part;

/*
 * out [R, W] (any shape of R * W elements) = the parts side by side along channels, then
 * zero-padded to W. The parts' widths add up to at most W (checked at load).
 */
static int join_channels(eng_tensor *out, int64_t R, int64_t W, const chan_part *parts, int n,
                         eng_backend *be, eng_dtype dt, eng_error *err)
{
    chan_part p[4];
    int k = 0;
    int64_t total = 0;
    for (int i = 0; i <= n && k < 4; i++) {
        chan_part c = i < n ? parts[i] : (chan_part){NULL, 0};
        if (i == n) { /* the padding */
            c.w = W - total > 0 ? W - total : 0;
        }
        if (c.w <= 0)
            continue;
        if (!c.t && k > 0 && !p[k - 1].t) /* adjacent zeros merge */
            p[k - 1].w += c.w;
        else
            p[k++] = c;
        total += c.w;
    }
    if (total > W) /* pick_widths keeps this from happening */
        return eng_error_set(err, ENG_EINVAL, "prompt encoder: parts of %lld channels exceed %lld",
                             (long long)total, (long long)W);
    eng_tensor acc = {0}, next = {0}, zero = {0};
    int rc = 0;
    if (k == 1 && !p[0].t) { /* all zeros */
        ENG_TRY_DONE(zeros_init(&zero, be, dt, 2, (const int64_t[]){R, W}, err));
        ENG_TRY_DONE(eng_op_convert(out, &zero, err));
        goto done; /* nothing to join */
    }
    /* acc holds the parts joined so far, as [R, width, 1]; a borrowed view of the first. */
    int64_t width = 0;
    for (int i = 0; i < k; i++) {
        eng_tensor part;
        if (p[i].t) {
            part = eng_tensor_view(p[i].t->data, be, dt, 3, (const int64_t[]){R, p[i].w, 1});
        } else {
            ENG_TRY_DONE(zeros_init(&zero, be, dt, 3, (const int64_t[]){R, p[i].w, 1}, err));
            part = zero;
            part.owned = 0;
        }
        if (i == 0) {
            acc = part;
            acc.owned = zero.owned; /* a zero first part moves into acc */
            zero = (eng_tensor){0};
        } else {
            int last_fits = (i == k - 1 && width + p[i].w == W);
            eng_tensor view_out = eng_tensor_view(out->data, be, dt, 3,
                                                  (const int64_t[]){R, width + p[i].w, 1});
            if (last_fits)
                next = view_out;
            else
                ENG_TRY_DONE(eng_tensor_init(&next, be, dt, 3,
                                             (const int64_t[]){R, width + p[i].w, 1}, err));
            ENG_TRY_DONE(eng_op_concat_tokens(&next, &acc, &part, err));
            eng_tensor_free(&acc);
            acc = next;
            next = (eng_tensor){0};
        }
        width += p[i].w;
        eng_tensor_free(&zero);
    }
    if (acc.data != out->data) { /* a single part as wide as out */
        eng_tensor o = eng_tensor_view(out->data, be, dt, 3, (const int64_t[]){R, W, 1});
        ENG_TRY_DONE(eng_op_convert(&o, &acc, err));
    }
done:
    eng_tensor_free(&next);
    eng_tensor_free(&acc);
    eng_tensor_free(&zero);
    return rc;
}

/* ids [n, len] of every prompt (host). */
static int tokenize_all(const eng_tokenizer *tok, const char *const *prompts, int n, int len,
                        int32_t *ids, eng_error *err)
{
    for (int i = 0; i < n; i++) {
        int rc = eng_tokenizer_encode(tok, prompts[i], ids + (int64_t)i * len, len, NULL, err);
        if (rc) {
            eng_error_prefix(err, "prompt %d", i);
            return rc;
        }
    }
    return 0;
}

static int run_clip(eng_prompt_encoder *e, eng_clip *m, const eng_tokenizer *tok,
                    const char *const *prompts, int n, int32_t *ids, eng_tensor *hidden,
                    eng_tensor *pooled, eng_error *err)
{
    const eng_clip_text_config *c = eng_clip_get_config(m);
    int L = e->clip_len;
    ENG_TRY(tokenize_all(tok, prompts, n, L, ids, err));
    ENG_TRY(
        eng_tensor_init(hidden, e->be, e->dtype, 3, (const int64_t[]){n, L, c->hidden_size}, err));
    ENG_TRY(
        eng_tensor_init(pooled, e->be, e->dtype, 2, (const int64_t[]){n, c->projection_dim}, err));
    eng_tensor t_ids = eng_tensor_view(ids, NULL, ENG_DTYPE_I32, 2, (const int64_t[]){n, L});
    /* hidden_states[-2]: diffusers' clip_skip None. */
    return eng_clip_encode(m, &t_ids, 2, hidden, pooled, err);
}

int eng_prompt_encode(eng_prompt_encoder *e, const char *const *prompts, int n, eng_tensor *ctx,
                      eng_tensor *pooled, eng_error *err)
{
    if (ctx)
        memset(ctx, 0, sizeof *ctx);
    if (pooled)
        memset(pooled, 0, sizeof *pooled);
    if (!e || !prompts || !ctx || !pooled)
        return eng_error_set(err, ENG_EINVAL, "encode prompts: NULL argument");
    if (n < 1)
        return eng_error_set(err, ENG_EINVAL, "encode prompts: n = %d, expected >= 1", n);
    for (int i = 0; i < n; i++)
        if (!prompts[i])
            return eng_error_set(err, ENG_EINVAL, "encode prompts: prompt %d is NULL", i);

    const int L = e->clip_len, D = e->joint_dim, P = e->pooled_dim;
    const int T = e->t5_len;
    eng_tensor hl = {0}, pl = {0}, hg = {0}, pg = {0}, clip = {0}, t5 = {0};
    int rc = 0;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n * (size_t)(L > T ? L : T));
    if (!ids)
        return eng_error_set(err, ENG_ENOMEM, "encode prompts: out of memory");

    if (e->clip_l)
        ENG_TRY_DONE(run_clip(e, e->clip_l, e->tok_l, prompts, n, ids, &hl, &pl, err));
    if (e->clip_g)
        ENG_TRY_DONE(run_clip(e, e->clip_g, e->tok_g, prompts, n, ids, &hg, &pg, err));

    /* clip = pad(cat([clip_l, clip_g], -1), D) [n, L, D]; pooled = cat([pooled_l, pooled_g]). */
    ENG_TRY_DONE(eng_tensor_init(&clip, e->be, e->dtype, 3, (const int64_t[]){n, L, D}, err));
    {
        chan_part parts[2] = {{e->clip_l ? &hl : NULL, e->hidden_l},
                              {e->clip_g ? &hg : NULL, e->hidden_g}};
        ENG_TRY_DONE(join_channels(&clip, (int64_t)n * L, D, parts, 2, e->be, e->dtype, err));
    }
    ENG_TRY_DONE(eng_tensor_init(pooled, e->be, e->dtype, 2, (const int64_t[]){n, P}, err));
    {
        chan_part parts[2] = {{e->clip_l ? &pl : NULL, e->proj_l},
                              {e->clip_g ? &pg : NULL, e->proj_g}};
        ENG_TRY_DONE(join_channels(pooled, n, P, parts, 2, e->be, e->dtype, err));
    }
    eng_tensor_free(&hl); /* T5 may want the memory */
    eng_tensor_free(&hg);
    eng_tensor_free(&pl);
    eng_tensor_free(&pg);

    /* T5's last_hidden_state [n, T, D], or diffusers' zeros of the same shape without it. */
    if (e->t5) {
        ENG_TRY_DONE(tokenize_all(e->tok_t5, prompts, n, T, ids, err));
        ENG_TRY_DONE(eng_tensor_init(&t5, e->be, e->dtype, 3, (const int64_t[]){n, T, D}, err));
        eng_tensor t_ids = eng_tensor_view(ids, NULL, ENG_DTYPE_I32, 2, (const int64_t[]){n, T});
        ENG_TRY_DONE(eng_t5_encode(e->t5, &t_ids, &t5, err));
    } else if (T > 0) {
        ENG_TRY_DONE(zeros_init(&t5, e->be, e->dtype, 3, (const int64_t[]){n, T, D}, err));
    }
    if (T == 0) {
        *ctx = clip; /* no T5 rows: the context is the CLIP part alone */
        clip = (eng_tensor){0};
    } else {
        ENG_TRY_DONE(eng_tensor_init(ctx, e->be, e->dtype, 3, (const int64_t[]){n, L + T, D}, err));
        ENG_TRY_DONE(eng_op_concat_tokens(ctx, &clip, &t5, err));
    }
done:
    eng_tensor_free(&hl);
    eng_tensor_free(&hg);
    eng_tensor_free(&pl);
    eng_tensor_free(&pg);
    eng_tensor_free(&clip);
    eng_tensor_free(&t5);
    free(ids);
    if (rc) {
        eng_tensor_free(ctx);
        eng_tensor_free(pooled);
        eng_error_prefix(err, "encode prompts");
    }
    return rc;
}

int eng_prompt_tokenize(const eng_prompt_encoder *e, const char *prompt, int32_t *ids_l,
                        int32_t *ids_g, int32_t *ids_t5, eng_error *err)
{
    if (!e || !prompt)
        return eng_error_set(err, ENG_EINVAL, "tokenize: NULL argument");
    if (ids_l && e->tok_l)
        ENG_TRY(eng_tokenizer_encode(e->tok_l, prompt, ids_l, e->clip_len, NULL, err));
    if (ids_g && e->tok_g)
        ENG_TRY(eng_tokenizer_encode(e->tok_g, prompt, ids_g, e->clip_len, NULL, err));
    if (ids_t5 && e->tok_t5)
        ENG_TRY(eng_tokenizer_encode(e->tok_t5, prompt, ids_t5, e->t5_len, NULL, err));
    return 0;
}
