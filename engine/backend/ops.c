/*
 * ops.c - the checked front end of the op set (declared in engine/backend/backend.h).
 *
 * Every eng_op_* function checks that its tensors live on one backend, have
 * consistent dtypes and the shapes the op needs, reports the first mistake by
 * op and argument name, and then calls the backend's op pointer. Backends can
 * therefore assume valid arguments. While the backend is profiling, that call is timed
 * (engine/backend/profile.c).
 */
#include "engine/backend/backend.h"
#include "engine/backend/profile.h"

#include <stdio.h>
#include <string.h>

static int is_float_dtype(eng_dtype dt)
{
    return dt == ENG_DTYPE_F32 || dt == ENG_DTYPE_F16 || dt == ENG_DTYPE_BF16;
}

/* The backend of the first output; every op needs one. */
static int backend_of(const char *op, const char *name, const eng_tensor *t, eng_backend **be,
                      eng_error *err)
{
    if (!t || !t->data)
        return eng_error_set(err, ENG_EINVAL, "%s: %s is NULL or has no data", op, name);
    if (!t->backend)
        return eng_error_set(err, ENG_EINVAL, "%s: %s is not on a backend", op, name);
    *be = t->backend;
    return 0;
}

/*
 * t must exist and live on be. Plain host tensors (backend NULL) are accepted
 * by the CPU backend, whose memory is host memory.
 */
static int on_backend(const char *op, const char *name, const eng_tensor *t, eng_backend *be,
                      eng_error *err)
{
    if (!t || !t->data)
        return eng_error_set(err, ENG_EINVAL, "%s: %s is NULL or has no data", op, name);
    if (t->backend == be || (!t->backend && be->kind == ENG_DEVICE_CPU))
        return 0;
    return eng_error_set(err, ENG_EINVAL, "%s: %s lives on %s, the op runs on %s", op, name,
                         t->backend ? t->backend->name : "the host", be->name);
}

/* t is a float tensor of ref's dtype. */
static int same_float_dtype(const char *op, const char *name, const eng_tensor *t,
                            const eng_tensor *ref, eng_error *err)
{
    if (!is_float_dtype(t->dtype))
        return eng_error_set(err, ENG_EINVAL, "%s: %s has dtype %s, expected a float dtype", op,
                             name, eng_dtype_name(t->dtype));
    if (t->dtype != ref->dtype)
        return eng_error_set(err, ENG_EINVAL, "%s: %s has dtype %s, expected %s", op, name,
                             eng_dtype_name(t->dtype), eng_dtype_name(ref->dtype));
    return 0;
}

/* The usual check of an input: present, on be, same float dtype as y. */
static int input(const char *op, const char *name, const eng_tensor *t, eng_backend *be,
                 const eng_tensor *y, eng_error *err)
{
    ENG_TRY(on_backend(op, name, t, be, err));
    return same_float_dtype(op, name, t, y, err);
}

static int shape_error(const char *op, const char *name, const eng_tensor *t, const char *expected,
                       eng_error *err)
{
    char s[128];
    return eng_error_set(err, ENG_EINVAL, "%s: %s has shape %s, expected %s", op, name,
                         eng_shape_str(t, s, sizeof s), expected);
}

static int want_rank(const char *op, const char *name, const eng_tensor *t, int lo, int hi,
                     eng_error *err)
{
    char want[64];
    if (t->ndim >= lo && t->ndim <= hi)
        return 0;
    if (lo == hi)
        snprintf(want, sizeof want, "rank %d", lo);
    else
        snprintf(want, sizeof want, "rank %d to %d", lo, hi);
    return shape_error(op, name, t, want, err);
}

static int want_same_shape(const char *op, const char *name, const eng_tensor *t,
                           const eng_tensor *ref, const char *ref_name, eng_error *err)
{
    char s[128], want[160];
    if (eng_tensor_same_shape(t, ref))
        return 0;
    snprintf(want, sizeof want, "%s (as %s)", eng_shape_str(ref, s, sizeof s), ref_name);
    return shape_error(op, name, t, want, err);
}

/* A 1-D tensor of n elements (weights, biases). */
static int want_vector(const char *op, const char *name, const eng_tensor *t, int64_t n,
                       eng_error *err)
{
    char want[64];
    if (t->ndim == 1 && t->shape[0] == n)
        return 0;
    snprintf(want, sizeof want, "[%lld]", (long long)n);
    return shape_error(op, name, t, want, err);
}

static int64_t last_dim(const eng_tensor *t)
{
    return t->ndim ? t->shape[t->ndim - 1] : 1;
}

static int unsupported(const char *op, const eng_backend *be, eng_error *err)
{
    return eng_error_set(err, ENG_EUNSUPPORTED, "%s: not implemented on backend %s", op, be->name);
}

/*
 * Returns the backend's op applied to the arguments: ENG_EUNSUPPORTED when the backend lacks
 * it, and timed under `op_kind` while the backend is profiling (engine/backend/profile.h). When
 * it is not, the profiler costs this one branch on be->prof: no clock is read.
 */
#define RETURN_DISPATCH(be, op_kind, opname, ...)                                                  \
    do {                                                                                           \
        if (!(be)->opname)                                                                         \
            return unsupported(#opname, (be), err);                                                \
        if (!(be)->prof)                                                                           \
            return (be)->opname((be), __VA_ARGS__);                                                \
        eng_profiler_begin((be), (op_kind));                                                       \
        int rc_ = (be)->opname((be), __VA_ARGS__);                                                 \
        eng_profiler_end(be);                                                                      \
        return rc_;                                                                                \
    } while (0)

int eng_op_convert(eng_tensor *y, const eng_tensor *x, eng_error *err)
{
    eng_backend *be = NULL;
    ENG_TRY(backend_of("convert", "y", y, &be, err));
    ENG_TRY(on_backend("convert", "x", x, be, err));
    if (eng_tensor_numel(x) != eng_tensor_numel(y))
        return eng_error_set(err, ENG_EINVAL, "convert: x has %lld elements, y has %lld",
                             (long long)eng_tensor_numel(x), (long long)eng_tensor_numel(y));
    if (x->dtype != y->dtype && !(is_float_dtype(x->dtype) && is_float_dtype(y->dtype)))
        return eng_error_set(err, ENG_EINVAL, "convert: cannot convert %s to %s",
                             eng_dtype_name(x->dtype), eng_dtype_name(y->dtype));
    RETURN_DISPATCH(be, ENG_OP_CONVERT, convert, y, x, err);
}

/* Checks shared by linear and linear_gelu. */
static int linear_args(const char *op, eng_backend **bep, eng_tensor *y, const eng_tensor *x,
                       const eng_tensor *w, const eng_tensor *b, eng_error *err)
{
    eng_backend *be = NULL;
    char want[96];
    ENG_TRY(backend_of(op, "y", y, &be, err));
    *bep = be;
    ENG_TRY(input(op, "x", x, be, y, err));
    ENG_TRY(input(op, "w", w, be, y, err));
    ENG_TRY(want_rank(op, "x", x, 1, ENG_MAX_DIMS, err));
    ENG_TRY(want_rank(op, "w", w, 2, 2, err));
    if (w->shape[1] != last_dim(x)) {
        snprintf(want, sizeof want, "[O, %lld] (K = x's last dim)", (long long)last_dim(x));
        return shape_error(op, "w", w, want, err);
    }
    if (b) {
        ENG_TRY(input(op, "b", b, be, y, err));
        ENG_TRY(want_vector(op, "b", b, w->shape[0], err));
    }
    /* y is x with the last dim replaced by O. */
    int ok = y->ndim == x->ndim && last_dim(y) == w->shape[0];
    for (int i = 0; ok && i + 1 < x->ndim; i++)
        ok = y->shape[i] == x->shape[i];
    if (!ok) {
        snprintf(want, sizeof want, "x's shape with the last dim %lld", (long long)w->shape[0]);
        return shape_error(op, "y", y, want, err);
    }
    return 0;
}

int eng_op_linear(eng_tensor *y, const eng_tensor *x, const eng_tensor *w, const eng_tensor *b,
                  eng_error *err)
{
    eng_backend *be = NULL;
    ENG_TRY(linear_args("linear", &be, y, x, w, b, err));
    RETURN_DISPATCH(be, ENG_OP_LINEAR, linear, y, x, w, b, err);
}

int eng_op_linear_gelu(eng_tensor *y, const eng_tensor *x, const eng_tensor *w,
                       const eng_tensor *b, eng_error *err)
{
    eng_backend *be = NULL;
    ENG_TRY(linear_args("linear_gelu", &be, y, x, w, b, err));
    if (!be->linear_gelu) { /* the two ops the fused one stands for */
        ENG_TRY(eng_op_linear(y, x, w, b, err));
        return eng_op_act(y, y, ENG_ACT_GELU_TANH, err);
    }
    RETURN_DISPATCH(be, ENG_OP_LINEAR_GELU, linear_gelu, y, x, w, b, err);
}

/* Checks shared by the row-wise norms over the last dim. */
static int row_norm_args(const char *op, eng_backend **be, eng_tensor *y, const eng_tensor *x,
                         const eng_tensor *w, const eng_tensor *b, float eps, eng_error *err)
{
    ENG_TRY(backend_of(op, "y", y, be, err));
    ENG_TRY(input(op, "x", x, *be, y, err));
    ENG_TRY(want_rank(op, "x", x, 1, ENG_MAX_DIMS, err));
    ENG_TRY(want_same_shape(op, "y", y, x, "x", err));
    if (w) {
        ENG_TRY(input(op, "w", w, *be, y, err));
        ENG_TRY(want_vector(op, "w", w, last_dim(x), err));
    }
    if (b) {
        ENG_TRY(input(op, "b", b, *be, y, err));
        ENG_TRY(want_vector(op, "b", b, last_dim(x), err));
    }
    if (!(eps >= 0.0f))
        return eng_error_set(err, ENG_EINVAL, "%s: eps %g must be >= 0", op, (double)eps);
    return 0;
}

int eng_op_layer_norm(eng_tensor *y, const eng_tensor *x, const eng_tensor *w, const eng_tensor *b,
                      float eps, eng_error *err)
{
    eng_backend *be = NULL;
    ENG_TRY(row_norm_args("layer_norm", &be, y, x, w, b, eps, err));
    RETURN_DISPATCH(be, ENG_OP_LAYER_NORM, layer_norm, y, x, w, b, eps, err);
}

int eng_op_rms_norm(eng_tensor *y, const eng_tensor *x, const eng_tensor *w, float eps,
                    eng_error *err)
{
    eng_backend *be = NULL;
    ENG_TRY(row_norm_args("rms_norm", &be, y, x, w, NULL, eps, err));
    RETURN_DISPATCH(be, ENG_OP_RMS_NORM, rms_norm, y, x, w, eps, err);
}

int eng_op_group_norm(eng_tensor *y, const eng_tensor *x, const eng_tensor *w, const eng_tensor *b,
                      int groups, float eps, eng_error *err)
{
    const char *op = "group_norm";
    eng_backend *be = NULL;
    ENG_TRY(backend_of(op, "y", y, &be, err));
    ENG_TRY(input(op, "x", x, be, y, err));
    ENG_TRY(want_rank(op, "x", x, 2, ENG_MAX_DIMS, err));
    ENG_TRY(want_same_shape(op, "y", y, x, "x", err));
    if (groups <= 0 || x->shape[1] % groups != 0)
        return eng_error_set(err, ENG_EINVAL, "group_norm: %d groups do not divide %lld channels",
                             groups, (long long)x->shape[1]);
    if (w) {
        ENG_TRY(input(op, "w", w, be, y, err));
        ENG_TRY(want_vector(op, "w", w, x->shape[1], err));
    }
    if (b) {
        ENG_TRY(input(op, "b", b, be, y, err));
        ENG_TRY(want_vector(op, "b", b, x->shape[1], err));
    }
    if (!(eps >= 0.0f))
        return eng_error_set(err, ENG_EINVAL, "group_norm: eps %g must be >= 0", (double)eps);
    RETURN_DISPATCH(be, ENG_OP_GROUP_NORM, group_norm, y, x, w, b, groups, eps, err);
}

int eng_op_act(eng_tensor *y, const eng_tensor *x, eng_act kind, eng_error *err)
{
    eng_backend *be = NULL;
    ENG_TRY(backend_of("act", "y", y, &be, err));
    ENG_TRY(input("act", "x", x, be, y, err));
    ENG_TRY(want_same_shape("act", "y", y, x, "x", err));
    if ((unsigned)kind > ENG_ACT_QUICK_GELU)
        return eng_error_set(err, ENG_EINVAL, "act: unknown activation %d", (int)kind);
    RETURN_DISPATCH(be, ENG_OP_ACT, act, y, x, kind, err);
}

int eng_op_softmax(eng_tensor *y, const eng_tensor *x, eng_error *err)
{
    eng_backend *be = NULL;
    ENG_TRY(backend_of("softmax", "y", y, &be, err));
    ENG_TRY(input("softmax", "x", x, be, y, err));
    ENG_TRY(want_rank("softmax", "x", x, 1, ENG_MAX_DIMS, err));
    ENG_TRY(want_same_shape("softmax", "y", y, x, "x", err));
    RETURN_DISPATCH(be, ENG_OP_SOFTMAX, softmax, y, x, err);
}

int eng_op_binary(eng_tensor *y, const eng_tensor *a, const eng_tensor *b, eng_binop bop,
                  eng_error *err)
{
    const char *op = bop == ENG_BIN_MUL ? "mul" : "add";
    eng_backend *be = NULL;
    ENG_TRY(backend_of(op, "y", y, &be, err));
    ENG_TRY(input(op, "a", a, be, y, err));
    ENG_TRY(input(op, "b", b, be, y, err));
    ENG_TRY(want_same_shape(op, "y", y, a, "a", err));
    if ((unsigned)bop > ENG_BIN_MUL)
        return eng_error_set(err, ENG_EINVAL, "binary: unknown op %d", (int)bop);
    /* b must equal a's trailing dims (a's whole shape included). */
    int ok = b->ndim <= a->ndim;
    for (int i = 0; ok && i < b->ndim; i++)
        ok = b->shape[b->ndim - 1 - i] == a->shape[a->ndim - 1 - i];
    if (!ok) {
        char s[128], want[160];
        snprintf(want, sizeof want, "the trailing dims of a %s", eng_shape_str(a, s, sizeof s));
        return shape_error(op, "b", b, want, err);
    }
    RETURN_DISPATCH(be, ENG_OP_BINARY, binary, y, a, b, bop, err);
}

int eng_op_add(eng_tensor *y, const eng_tensor *a, const eng_tensor *b, eng_error *err)
{
    return eng_op_binary(y, a, b, ENG_BIN_ADD, err);
}

int eng_op_mul(eng_tensor *y, const eng_tensor *a, const eng_tensor *b, eng_error *err)
{
    return eng_op_binary(y, a, b, ENG_BIN_MUL, err);
}

int eng_op_scale(eng_tensor *y, const eng_tensor *x, float s, eng_error *err)
{
    eng_backend *be = NULL;
    ENG_TRY(backend_of("scale", "y", y, &be, err));
    ENG_TRY(input("scale", "x", x, be, y, err));
    ENG_TRY(want_same_shape("scale", "y", y, x, "x", err));
    RETURN_DISPATCH(be, ENG_OP_SCALE, scale, y, x, s, err);
}

/* x is [B, N, C] and v is [B, C] (per-sample modulation vectors). */
static int per_sample_vector(const char *op, const char *name, const eng_tensor *v,
                             const eng_tensor *x, eng_error *err)
{
    char want[64];
    if (v->ndim == 2 && v->shape[0] == x->shape[0] && v->shape[1] == x->shape[2])
        return 0;
    snprintf(want, sizeof want, "[%lld, %lld] ([B, C] of x)", (long long)x->shape[0],
             (long long)x->shape[2]);
    return shape_error(op, name, v, want, err);
}

int eng_op_modulate(eng_tensor *y, const eng_tensor *x, const eng_tensor *scale,
                    const eng_tensor *shift, eng_error *err)
{
    const char *op = "modulate";
    eng_backend *be = NULL;
    ENG_TRY(backend_of(op, "y", y, &be, err));
    ENG_TRY(input(op, "x", x, be, y, err));
    ENG_TRY(input(op, "scale", scale, be, y, err));
    ENG_TRY(input(op, "shift", shift, be, y, err));
    ENG_TRY(want_rank(op, "x", x, 3, 3, err));
    ENG_TRY(want_same_shape(op, "y", y, x, "x", err));
    ENG_TRY(per_sample_vector(op, "scale", scale, x, err));
    ENG_TRY(per_sample_vector(op, "shift", shift, x, err));
    RETURN_DISPATCH(be, ENG_OP_MODULATE, modulate, y, x, scale, shift, err);
}

int eng_op_norm_modulate(eng_tensor *y, const eng_tensor *x, const eng_tensor *scale,
                         const eng_tensor *shift, float eps, eng_error *err)
{
    const char *op = "norm_modulate";
    eng_backend *be = NULL;
    ENG_TRY(backend_of(op, "y", y, &be, err));
    ENG_TRY(input(op, "x", x, be, y, err));
    ENG_TRY(input(op, "scale", scale, be, y, err));
    ENG_TRY(input(op, "shift", shift, be, y, err));
    ENG_TRY(want_rank(op, "x", x, 3, 3, err));
    ENG_TRY(want_same_shape(op, "y", y, x, "x", err));
    ENG_TRY(per_sample_vector(op, "scale", scale, x, err));
    ENG_TRY(per_sample_vector(op, "shift", shift, x, err));
    if (!(eps > 0.0f))
        return eng_error_set(err, ENG_EINVAL, "norm_modulate: eps %g, expected > 0", (double)eps);
    if (!be->norm_modulate) { /* the two ops the fused one stands for */
        ENG_TRY(eng_op_layer_norm(y, x, NULL, NULL, eps, err));
        return eng_op_modulate(y, y, scale, shift, err);
    }
    RETURN_DISPATCH(be, ENG_OP_NORM_MODULATE, norm_modulate, y, x, scale, shift, eps, err);
}

int eng_op_gated_add(eng_tensor *y, const eng_tensor *x, const eng_tensor *gate, eng_error *err)
{
    const char *op = "gated_add";
    eng_backend *be = NULL;
    ENG_TRY(backend_of(op, "y", y, &be, err));
    ENG_TRY(input(op, "x", x, be, y, err));
    ENG_TRY(input(op, "gate", gate, be, y, err));
    ENG_TRY(want_rank(op, "x", x, 3, 3, err));
    ENG_TRY(want_same_shape(op, "y", y, x, "x", err));
    ENG_TRY(per_sample_vector(op, "gate", gate, x, err));
    RETURN_DISPATCH(be, ENG_OP_GATED_ADD, gated_add, y, x, gate, err);
}

/* y [B, Na + Nb, C] against a [B, Na, C] and b [B, Nb, C]. */
static int token_parts(const char *op, const eng_tensor *y, const eng_tensor *a,
                       const eng_tensor *b, eng_error *err)
{
    char want[96];
    ENG_TRY(want_rank(op, "a", a, 3, 3, err));
    ENG_TRY(want_rank(op, "b", b, 3, 3, err));
    if (b->shape[0] != a->shape[0] || b->shape[2] != a->shape[2]) {
        snprintf(want, sizeof want, "[%lld, Nb, %lld] (B and C of a)", (long long)a->shape[0],
                 (long long)a->shape[2]);
        return shape_error(op, "b", b, want, err);
    }
    if (y->ndim != 3 || y->shape[0] != a->shape[0] || y->shape[1] != a->shape[1] + b->shape[1] ||
        y->shape[2] != a->shape[2]) {
        snprintf(want, sizeof want, "[%lld, %lld, %lld]", (long long)a->shape[0],
                 (long long)(a->shape[1] + b->shape[1]), (long long)a->shape[2]);
        return shape_error(op, "y", y, want, err);
    }
    return 0;
}

int eng_op_concat_tokens(eng_tensor *y, const eng_tensor *a, const eng_tensor *b, eng_error *err)
{
    eng_backend *be = NULL;
    ENG_TRY(backend_of("concat_tokens", "y", y, &be, err));
    ENG_TRY(input("concat_tokens", "a", a, be, y, err));
    ENG_TRY(input("concat_tokens", "b", b, be, y, err));
    ENG_TRY(token_parts("concat_tokens", y, a, b, err));
    RETURN_DISPATCH(be, ENG_OP_CONCAT_TOKENS, concat_tokens, y, a, b, err);
}

int eng_op_split_tokens(eng_tensor *a, eng_tensor *b, const eng_tensor *y, eng_error *err)
{
    eng_backend *be = NULL;
    ENG_TRY(backend_of("split_tokens", "a", a, &be, err));
    ENG_TRY(input("split_tokens", "b", b, be, a, err));
    ENG_TRY(input("split_tokens", "y", y, be, a, err));
    ENG_TRY(token_parts("split_tokens", y, a, b, err));
    RETURN_DISPATCH(be, ENG_OP_SPLIT_TOKENS, split_tokens, a, b, y, err);
}

int eng_op_conv2d(eng_tensor *y, const eng_tensor *x, const eng_tensor *w, const eng_tensor *b,
                  const eng_conv2d_params *p, eng_error *err)
{
    const char *op = "conv2d";
    eng_backend *be = NULL;
    char want[128];
    ENG_TRY(backend_of(op, "y", y, &be, err));
    ENG_TRY(input(op, "x", x, be, y, err));
    ENG_TRY(input(op, "w", w, be, y, err));
    ENG_TRY(want_rank(op, "x", x, 4, 4, err));
    ENG_TRY(want_rank(op, "w", w, 4, 4, err));
    if (!p || p->stride_h < 1 || p->stride_w < 1 || p->pad_h < 0 || p->pad_w < 0 || p->groups < 1)
        return eng_error_set(err, ENG_EINVAL,
                             "conv2d: parameters need stride >= 1, padding >= 0, groups >= 1");
    int64_t cin = x->shape[1], cout = w->shape[0];
    if (cin % p->groups || cout % p->groups)
        return eng_error_set(err, ENG_EINVAL,
                             "conv2d: %d groups must divide %lld input and %lld output channels",
                             p->groups, (long long)cin, (long long)cout);
    if (w->shape[1] != cin / p->groups) {
        snprintf(want, sizeof want, "[O, %lld, kh, kw] (C_in / groups)",
                 (long long)(cin / p->groups));
        return shape_error(op, "w", w, want, err);
    }
    int64_t kh = w->shape[2], kw = w->shape[3];
    int64_t hp = x->shape[2] + 2 * p->pad_h, wp = x->shape[3] + 2 * p->pad_w;
    if (kh < 1 || kw < 1 || hp < kh || wp < kw)
        return eng_error_set(err, ENG_EINVAL, "conv2d: kernel %lldx%lld larger than padded input %lldx%lld",
                             (long long)kh, (long long)kw, (long long)hp, (long long)wp);
    int64_t ho = (hp - kh) / p->stride_h + 1, wo = (wp - kw) / p->stride_w + 1;
    if (y->ndim != 4 || y->shape[0] != x->shape[0] || y->shape[1] != cout ||
        y->shape[2] != ho || y->shape[3] != wo) {
        snprintf(want, sizeof want, "[%lld, %lld, %lld, %lld]", (long long)x->shape[0],
                 (long long)cout, (long long)ho, (long long)wo);
        return shape_error(op, "y", y, want, err);
    }
    if (b) {
        ENG_TRY(input(op, "b", b, be, y, err));
        ENG_TRY(want_vector(op, "b", b, cout, err));
    }
    RETURN_DISPATCH(be, ENG_OP_CONV2D, conv2d, y, x, w, b, p, err);
}

int eng_op_upsample_nearest2x(eng_tensor *y, const eng_tensor *x, eng_error *err)
{
    const char *op = "upsample_nearest2x";
    eng_backend *be = NULL;
    char want[96];
    ENG_TRY(backend_of(op, "y", y, &be, err));
    ENG_TRY(input(op, "x", x, be, y, err));
    ENG_TRY(want_rank(op, "x", x, 4, 4, err));
    if (y->ndim != 4 || y->shape[0] != x->shape[0] || y->shape[1] != x->shape[1] ||
        y->shape[2] != 2 * x->shape[2] || y->shape[3] != 2 * x->shape[3]) {
        snprintf(want, sizeof want, "[%lld, %lld, %lld, %lld]", (long long)x->shape[0],
                 (long long)x->shape[1], (long long)(2 * x->shape[2]), (long long)(2 * x->shape[3]));
        return shape_error(op, "y", y, want, err);
    }
    RETURN_DISPATCH(be, ENG_OP_UPSAMPLE_NEAREST2X, upsample_nearest2x, y, x, err);
}

int eng_op_attention(eng_tensor *o, const eng_tensor *q, const eng_tensor *k, const eng_tensor *v,
                     const eng_tensor *bias, const eng_attention_params *p, eng_error *err)
{
    const char *op = "attention";
    eng_backend *be = NULL;
    char want[128];
    ENG_TRY(backend_of(op, "o", o, &be, err));
    ENG_TRY(input(op, "q", q, be, o, err));
    ENG_TRY(input(op, "k", k, be, o, err));
    ENG_TRY(input(op, "v", v, be, o, err));
    ENG_TRY(want_rank(op, "q", q, 3, 3, err));
    ENG_TRY(want_rank(op, "k", k, 3, 3, err));
    if (!p || p->heads < 1 || q->shape[2] % p->heads)
        return eng_error_set(err, ENG_EINVAL, "attention: %d heads do not divide %lld channels",
                             p ? p->heads : 0, (long long)q->shape[2]);
    if (k->shape[0] != q->shape[0] || k->shape[2] != q->shape[2]) {
        snprintf(want, sizeof want, "[%lld, Nk, %lld] (B and C of q)", (long long)q->shape[0],
                 (long long)q->shape[2]);
        return shape_error(op, "k", k, want, err);
    }
    ENG_TRY(want_same_shape(op, "v", v, k, "k", err));
    ENG_TRY(want_same_shape(op, "o", o, q, "q", err));
    if (bias) {
        ENG_TRY(on_backend(op, "bias", bias, be, err));
        if (bias->dtype != ENG_DTYPE_F32)
            return eng_error_set(err, ENG_EINVAL, "attention: bias has dtype %s, expected F32",
                                 eng_dtype_name(bias->dtype));
        if (bias->ndim != 3 || bias->shape[0] != p->heads || bias->shape[1] != q->shape[1] ||
            bias->shape[2] != k->shape[1]) {
            snprintf(want, sizeof want, "[%d, %lld, %lld] ([h, Nq, Nk])", p->heads,
                     (long long)q->shape[1], (long long)k->shape[1]);
            return shape_error(op, "bias", bias, want, err);
        }
    }
    if (p->causal && q->shape[1] != k->shape[1])
        return eng_error_set(err, ENG_EINVAL, "attention: causal masking needs Nq == Nk (%lld != %lld)",
                             (long long)q->shape[1], (long long)k->shape[1]);
    RETURN_DISPATCH(be, ENG_OP_ATTENTION, attention, o, q, k, v, bias, p, err);
}

int eng_op_embedding(eng_tensor *y, const eng_tensor *table, const eng_tensor *ids, eng_error *err)
{
    const char *op = "embedding";
    eng_backend *be = NULL;
    char want[128];
    ENG_TRY(backend_of(op, "y", y, &be, err));
    ENG_TRY(input(op, "table", table, be, y, err));
    ENG_TRY(on_backend(op, "ids", ids, be, err));
    ENG_TRY(want_rank(op, "table", table, 2, 2, err));
    if (ids->dtype != ENG_DTYPE_I32)
        return eng_error_set(err, ENG_EINVAL, "embedding: ids have dtype %s, expected I32",
                             eng_dtype_name(ids->dtype));
    int ok = ids->ndim + 1 == y->ndim && last_dim(y) == table->shape[1];
    for (int i = 0; ok && i < ids->ndim; i++)
        ok = y->shape[i] == ids->shape[i];
    if (!ok) {
        snprintf(want, sizeof want, "ids' shape plus a last dim %lld", (long long)table->shape[1]);
        return shape_error(op, "y", y, want, err);
    }
    RETURN_DISPATCH(be, ENG_OP_EMBEDDING, embedding, y, table, ids, err);
}

int eng_op_transpose(eng_tensor *y, const eng_tensor *x, eng_error *err)
{
    eng_backend *be = NULL;
    char want[96];
    ENG_TRY(backend_of("transpose", "y", y, &be, err));
    ENG_TRY(input("transpose", "x", x, be, y, err));
    ENG_TRY(want_rank("transpose", "x", x, 3, 3, err));
    if (y->ndim != 3 || y->shape[0] != x->shape[0] || y->shape[1] != x->shape[2] ||
        y->shape[2] != x->shape[1]) {
        snprintf(want, sizeof want, "[%lld, %lld, %lld]", (long long)x->shape[0],
                 (long long)x->shape[2], (long long)x->shape[1]);
        return shape_error("transpose", "y", y, want, err);
    }
    RETURN_DISPATCH(be, ENG_OP_TRANSPOSE, transpose, y, x, err);
}

int eng_op_permute(eng_tensor *y, const eng_tensor *x, const int *perm, eng_error *err)
{
    eng_backend *be = NULL;
    char want[128];
    int seen[ENG_MAX_DIMS] = {0};
    ENG_TRY(backend_of("permute", "y", y, &be, err));
    ENG_TRY(on_backend("permute", "x", x, be, err));
    if (x->dtype != y->dtype)
        return eng_error_set(err, ENG_EINVAL, "permute: x has dtype %s, y %s",
                             eng_dtype_name(x->dtype), eng_dtype_name(y->dtype));
    if (!perm)
        return eng_error_set(err, ENG_EINVAL, "permute: perm is NULL");
    for (int i = 0; i < x->ndim; i++) {
        if (perm[i] < 0 || perm[i] >= x->ndim || seen[perm[i]]++)
            return eng_error_set(err, ENG_EINVAL,
                                 "permute: perm is not a permutation of 0..%d (perm[%d] = %d)",
                                 x->ndim - 1, i, perm[i]);
    }
    int ok = y->ndim == x->ndim;
    for (int i = 0; ok && i < x->ndim; i++)
        ok = y->shape[i] == x->shape[perm[i]];
    if (!ok) {
        size_t n = (size_t)snprintf(want, sizeof want, "[");
        for (int i = 0; i < x->ndim && n < sizeof want; i++)
            n += (size_t)snprintf(want + n, sizeof want - n, i ? ", %lld" : "%lld",
                                  (long long)x->shape[perm[i]]);
        if (n < sizeof want)
            snprintf(want + n, sizeof want - n, "]");
        return shape_error("permute", "y", y, want, err);
    }
    RETURN_DISPATCH(be, ENG_OP_PERMUTE, permute, y, x, perm, err);
}

int eng_op_ttt(eng_tensor *o, const eng_tensor *q, const eng_tensor *k, const eng_tensor *v,
               const eng_tensor *w1, const eng_tensor *w2, int heads, eng_error *err)
{
    const char *op = "ttt";
    eng_backend *be = NULL;
    char want[96];
    ENG_TRY(backend_of(op, "o", o, &be, err));
    ENG_TRY(input(op, "q", q, be, o, err));
    ENG_TRY(input(op, "k", k, be, o, err));
    ENG_TRY(input(op, "v", v, be, o, err));
    ENG_TRY(input(op, "w1", w1, be, o, err));
    ENG_TRY(input(op, "w2", w2, be, o, err));
    ENG_TRY(want_rank(op, "q", q, 3, 3, err));
    ENG_TRY(want_same_shape(op, "k", k, q, "q", err));
    ENG_TRY(want_same_shape(op, "v", v, q, "q", err));
    ENG_TRY(want_same_shape(op, "o", o, q, "q", err));
    if (heads < 1 || q->shape[2] % heads)
        return eng_error_set(err, ENG_EINVAL, "ttt: %d heads do not divide %lld channels", heads,
                             (long long)q->shape[2]);
    int64_t d = q->shape[2] / heads;
    snprintf(want, sizeof want, "[%d, %lld, %lld] ([h, d, d])", heads, (long long)d, (long long)d);
    if (w1->ndim != 3 || w1->shape[0] != heads || w1->shape[1] != d || w1->shape[2] != d)
        return shape_error(op, "w1", w1, want, err);
    if (w2->ndim != 3 || w2->shape[0] != heads || w2->shape[1] != d || w2->shape[2] != d)
        return shape_error(op, "w2", w2, want, err);
    if (q->shape[1] < 1)
        return eng_error_set(err, ENG_EINVAL, "ttt: needs at least one token");
    RETURN_DISPATCH(be, ENG_OP_TTT, ttt, o, q, k, v, w1, w2, heads, err);
}

int eng_op_ttt_local(eng_tensor *q2, eng_tensor *k2, const eng_tensor *q, const eng_tensor *k,
                     const eng_tensor *qw, const eng_tensor *qb, const eng_tensor *kw,
                     const eng_tensor *kb, int gh, int gw, float eps, eng_error *err)
{
    const char *op = "ttt_local";
    eng_backend *be = NULL;
    char want[96];
    ENG_TRY(backend_of(op, "q2", q2, &be, err));
    ENG_TRY(input(op, "k2", k2, be, q2, err));
    ENG_TRY(input(op, "q", q, be, q2, err));
    ENG_TRY(input(op, "k", k, be, q2, err));
    ENG_TRY(input(op, "qw", qw, be, q2, err));
    ENG_TRY(input(op, "qb", qb, be, q2, err));
    ENG_TRY(input(op, "kw", kw, be, q2, err));
    ENG_TRY(input(op, "kb", kb, be, q2, err));
    ENG_TRY(want_rank(op, "q", q, 3, 3, err));
    ENG_TRY(want_same_shape(op, "k", k, q, "q", err));
    ENG_TRY(want_same_shape(op, "q2", q2, q, "q", err));
    ENG_TRY(want_same_shape(op, "k2", k2, q, "q", err));
    int64_t C = q->shape[2];
    snprintf(want, sizeof want, "[%lld, 1, 3, 3]", (long long)C);
    if (qw->ndim != 4 || qw->shape[0] != C || qw->shape[1] != 1 || qw->shape[2] != 3 ||
        qw->shape[3] != 3)
        return shape_error(op, "qw", qw, want, err);
    ENG_TRY(want_same_shape(op, "kw", kw, qw, "qw", err));
    snprintf(want, sizeof want, "[%lld]", (long long)C);
    if (qb->ndim != 1 || qb->shape[0] != C)
        return shape_error(op, "qb", qb, want, err);
    ENG_TRY(want_same_shape(op, "kb", kb, qb, "qb", err));
    if (gh < 1 || gw < 1 || (int64_t)gh * gw > q->shape[1])
        return eng_error_set(err, ENG_EINVAL, "ttt_local: a %d x %d grid does not fit %lld tokens",
                             gh, gw, (long long)q->shape[1]);
    if (!(eps > 0.0f))
        return eng_error_set(err, ENG_EINVAL, "ttt_local: eps %g, expected > 0", (double)eps);
    if (q2->data == q->data || q2->data == k->data || k2->data == q->data ||
        k2->data == k->data || q2->data == k2->data)
        return eng_error_set(err, ENG_EINVAL, "ttt_local: outputs must not alias inputs");
    RETURN_DISPATCH(be, ENG_OP_TTT_LOCAL, ttt_local, q2, k2, q, k, qw, qb, kw, kb, gh, gw, eps,
                    err);
}

void eng_backend_destroy(eng_backend *be)
{
    if (!be)
        return;
    eng_profiler_discard(be);
    be->destroy(be);
}

int eng_tensor_upload(eng_tensor *dst, const void *host_src, eng_error *err)
{
    if (!dst || !dst->data || !host_src)
        return eng_error_set(err, ENG_EINVAL, "upload: NULL tensor or source");
    if (!dst->backend) {
        memcpy(dst->data, host_src, eng_tensor_nbytes(dst));
        return 0;
    }
    if (dst->backend->copy_in(dst->backend, dst->data, host_src, eng_tensor_nbytes(dst)))
        return eng_error_set(err, ENG_EDEVICE, "upload: copy of %zu bytes to %s failed",
                             eng_tensor_nbytes(dst), dst->backend->name);
    return 0;
}

int eng_tensor_download(const eng_tensor *src, void *host_dst, eng_error *err)
{
    if (!src || !src->data || !host_dst)
        return eng_error_set(err, ENG_EINVAL, "download: NULL tensor or destination");
    if (!src->backend) {
        memcpy(host_dst, src->data, eng_tensor_nbytes(src));
        return 0;
    }
    if (src->backend->copy_out(src->backend, host_dst, src->data, eng_tensor_nbytes(src)))
        return eng_error_set(err, ENG_EDEVICE, "download: copy of %zu bytes from %s failed",
                             eng_tensor_nbytes(src), src->backend->name);
    return 0;
}
