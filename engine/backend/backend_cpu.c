/*
 * backend_cpu.c - the CPU backend: fills eng_backend with host memory and the
 * kernels of kernels/cpu. Arguments arrive checked by engine/backend/ops.c; this file
 * only unwraps tensors into pointers and dims. The CPU computes in F32; other
 * dtypes are storage formats here, reached through convert.
 */
#include "engine/backend/backend.h"
#include "kernels/cpu/k_cpu.h"

#include <stdlib.h>
#include <string.h>

static void *cpu_alloc(eng_backend *be, size_t nbytes)
{
    (void)be;
    /* 64-byte alignment suits AVX-512 loads and cache lines. */
    size_t rounded = (nbytes + 63) & ~(size_t)63;
    return aligned_alloc(64, rounded ? rounded : 64);
}

static void cpu_free(eng_backend *be, void *ptr)
{
    (void)be;
    free(ptr);
}

static int cpu_copy(eng_backend *be, void *dst, const void *src, size_t nbytes)
{
    (void)be;
    if (nbytes)
        memmove(dst, src, nbytes);
    return 0;
}

static int cpu_synchronize(eng_backend *be)
{
    (void)be;
    return 0;
}

static void cpu_destroy(eng_backend *be)
{
    free(be);
}

static int need_f32(const char *op, const eng_tensor *t, eng_error *err)
{
    if (t->dtype == ENG_DTYPE_F32)
        return 0;
    return eng_error_set(err, ENG_EUNSUPPORTED,
                         "%s: the CPU backend computes in F32, got %s (convert first)", op,
                         eng_dtype_name(t->dtype));
}

#define F(t) ((float *)(t)->data)
#define CF(t) ((const float *)(t)->data)
#define OPT(t) ((t) ? CF(t) : NULL)

static int64_t rows_of(const eng_tensor *t)
{
    int64_t last = t->ndim ? t->shape[t->ndim - 1] : 1;
    return last ? eng_tensor_numel(t) / last : 0;
}

static int64_t last_of(const eng_tensor *t)
{
    return t->ndim ? t->shape[t->ndim - 1] : 1;
}

static int cpu_convert(eng_backend *be, eng_tensor *y, const eng_tensor *x, eng_error *err)
{
    int64_t n = eng_tensor_numel(x);
    (void)be;
    if (x->dtype == y->dtype) {
        memmove(y->data, x->data, eng_tensor_nbytes(x));
        return 0;
    }
    if (x->dtype == ENG_DTYPE_F32 && y->dtype == ENG_DTYPE_BF16)
        k_cpu_f32_to_bf16(y->data, x->data, n);
    else if (x->dtype == ENG_DTYPE_F32 && y->dtype == ENG_DTYPE_F16)
        k_cpu_f32_to_f16(y->data, x->data, n);
    else if (x->dtype == ENG_DTYPE_BF16 && y->dtype == ENG_DTYPE_F32)
        k_cpu_bf16_to_f32(y->data, x->data, n);
    else if (x->dtype == ENG_DTYPE_F16 && y->dtype == ENG_DTYPE_F32)
        k_cpu_f16_to_f32(y->data, x->data, n);
    else {
        /* Half to half: through F32 in chunks, so no large scratch buffer is needed. */
        float buf[1024];
        for (int64_t i = 0; i < n; i += 1024) {
            int64_t m = n - i < 1024 ? n - i : 1024;
            const uint16_t *src = (const uint16_t *)x->data + i;
            uint16_t *dst = (uint16_t *)y->data + i;
            if (x->dtype == ENG_DTYPE_BF16)
                k_cpu_bf16_to_f32(buf, src, m);
            else
                k_cpu_f16_to_f32(buf, src, m);
            if (y->dtype == ENG_DTYPE_BF16)
                k_cpu_f32_to_bf16(dst, buf, m);
            else
                k_cpu_f32_to_f16(dst, buf, m);
        }
    }
    (void)err;
    return 0;
}

static int cpu_linear(eng_backend *be, eng_tensor *y, const eng_tensor *x, const eng_tensor *w,
                      const eng_tensor *b, eng_error *err)
{
    (void)be;
    ENG_TRY(need_f32("linear", y, err));
    k_cpu_linear(F(y), CF(x), CF(w), OPT(b), rows_of(x), last_of(x), w->shape[0]);
    return 0;
}

static int cpu_layer_norm(eng_backend *be, eng_tensor *y, const eng_tensor *x, const eng_tensor *w,
                          const eng_tensor *b, float eps, eng_error *err)
{
    (void)be;
    ENG_TRY(need_f32("layer_norm", y, err));
    k_cpu_layer_norm(F(y), CF(x), OPT(w), OPT(b), rows_of(x), last_of(x), eps);
    return 0;
}

static int cpu_rms_norm(eng_backend *be, eng_tensor *y, const eng_tensor *x, const eng_tensor *w,
                        float eps, eng_error *err)
{
    (void)be;
    ENG_TRY(need_f32("rms_norm", y, err));
    k_cpu_rms_norm(F(y), CF(x), OPT(w), rows_of(x), last_of(x), eps);
    return 0;
}

static int cpu_group_norm(eng_backend *be, eng_tensor *y, const eng_tensor *x, const eng_tensor *w,
                          const eng_tensor *b, int groups, float eps, eng_error *err)
{
    (void)be;
    ENG_TRY(need_f32("group_norm", y, err));
    int64_t B = x->shape[0], C = x->shape[1];
    int64_t S = (B && C) ? eng_tensor_numel(x) / (B * C) : 0;
    k_cpu_group_norm(F(y), CF(x), OPT(w), OPT(b), B, C, S, groups, eps);
    return 0;
}

static int cpu_act(eng_backend *be, eng_tensor *y, const eng_tensor *x, eng_act kind,
                   eng_error *err)
{
    (void)be;
    ENG_TRY(need_f32("act", y, err));
    int64_t n = eng_tensor_numel(x);
    switch (kind) {
    case ENG_ACT_SILU: k_cpu_silu(F(y), CF(x), n); break;
    case ENG_ACT_GELU_TANH: k_cpu_gelu_tanh(F(y), CF(x), n); break;
    case ENG_ACT_GELU_ERF: k_cpu_gelu_erf(F(y), CF(x), n); break;
    case ENG_ACT_QUICK_GELU: k_cpu_quick_gelu(F(y), CF(x), n); break;
    }
    return 0;
}

static int cpu_softmax(eng_backend *be, eng_tensor *y, const eng_tensor *x, eng_error *err)
{
    (void)be;
    ENG_TRY(need_f32("softmax", y, err));
    k_cpu_softmax(F(y), CF(x), rows_of(x), last_of(x));
    return 0;
}

static int cpu_binary(eng_backend *be, eng_tensor *y, const eng_tensor *a, const eng_tensor *b,
                      eng_binop op, eng_error *err)
{
    (void)be;
    ENG_TRY(need_f32(op == ENG_BIN_MUL ? "mul" : "add", y, err));
    int64_t n = eng_tensor_numel(a), nb = eng_tensor_numel(b);
    if (n == 0)
        return 0;
    if (op == ENG_BIN_MUL)
        k_cpu_mul(F(y), CF(a), CF(b), n, nb);
    else
        k_cpu_add(F(y), CF(a), CF(b), n, nb);
    return 0;
}

static int cpu_scale(eng_backend *be, eng_tensor *y, const eng_tensor *x, float s, eng_error *err)
{
    (void)be;
    ENG_TRY(need_f32("scale", y, err));
    k_cpu_scale(F(y), CF(x), s, eng_tensor_numel(x));
    return 0;
}

static int cpu_modulate(eng_backend *be, eng_tensor *y, const eng_tensor *x,
                        const eng_tensor *scale, const eng_tensor *shift, eng_error *err)
{
    (void)be;
    ENG_TRY(need_f32("modulate", y, err));
    k_cpu_modulate(F(y), CF(x), CF(scale), CF(shift), x->shape[0], x->shape[1], x->shape[2]);
    return 0;
}

static int cpu_gated_add(eng_backend *be, eng_tensor *y, const eng_tensor *x,
                         const eng_tensor *gate, eng_error *err)
{
    (void)be;
    ENG_TRY(need_f32("gated_add", y, err));
    k_cpu_gated_add(F(y), CF(x), CF(gate), x->shape[0], x->shape[1], x->shape[2]);
    return 0;
}

static int cpu_concat_tokens(eng_backend *be, eng_tensor *y, const eng_tensor *a,
                             const eng_tensor *b, eng_error *err)
{
    (void)be;
    ENG_TRY(need_f32("concat_tokens", y, err));
    k_cpu_concat_tokens(F(y), CF(a), CF(b), a->shape[0], a->shape[1], b->shape[1], a->shape[2]);
    return 0;
}

static int cpu_split_tokens(eng_backend *be, eng_tensor *a, eng_tensor *b, const eng_tensor *y,
                            eng_error *err)
{
    (void)be;
    ENG_TRY(need_f32("split_tokens", y, err));
    k_cpu_split_tokens(F(a), F(b), CF(y), a->shape[0], a->shape[1], b->shape[1], a->shape[2]);
    return 0;
}

static int cpu_conv2d(eng_backend *be, eng_tensor *y, const eng_tensor *x, const eng_tensor *w,
                      const eng_tensor *b, const eng_conv2d_params *p, eng_error *err)
{
    (void)be;
    ENG_TRY(need_f32("conv2d", y, err));
    k_conv2d_shape s = {
        .B = x->shape[0], .C_in = x->shape[1], .H = x->shape[2], .W = x->shape[3],
        .C_out = w->shape[0], .kh = w->shape[2], .kw = w->shape[3],
        .stride_h = p->stride_h, .stride_w = p->stride_w,
        .pad_h = p->pad_h, .pad_w = p->pad_w, .groups = p->groups,
        .H_out = y->shape[2], .W_out = y->shape[3],
    };
    if (k_cpu_conv2d(F(y), CF(x), CF(w), OPT(b), &s))
        return eng_error_set(err, ENG_ENOMEM, "conv2d: cannot allocate im2col scratch");
    return 0;
}

static int cpu_upsample_nearest2x(eng_backend *be, eng_tensor *y, const eng_tensor *x,
                                  eng_error *err)
{
    (void)be;
    ENG_TRY(need_f32("upsample_nearest2x", y, err));
    k_cpu_upsample_nearest2x(F(y), CF(x), x->shape[0] * x->shape[1], x->shape[2], x->shape[3]);
    return 0;
}

static int cpu_attention(eng_backend *be, eng_tensor *o, const eng_tensor *q, const eng_tensor *k,
                         const eng_tensor *v, const eng_tensor *bias,
                         const eng_attention_params *p, eng_error *err)
{
    (void)be;
    ENG_TRY(need_f32("attention", o, err));
    int64_t h = p->heads, d = q->shape[2] / p->heads;
    if (k_cpu_attention(F(o), CF(q), CF(k), CF(v), OPT(bias), q->shape[0], q->shape[1],
                        k->shape[1], h, d, p->scale, p->causal))
        return eng_error_set(err, ENG_ENOMEM, "attention: cannot allocate score scratch");
    return 0;
}

static int cpu_embedding(eng_backend *be, eng_tensor *y, const eng_tensor *table,
                         const eng_tensor *ids, eng_error *err)
{
    (void)be;
    ENG_TRY(need_f32("embedding", y, err));
    int64_t bad = k_cpu_embedding(F(y), CF(table), (const int32_t *)ids->data,
                                  eng_tensor_numel(ids), table->shape[0], table->shape[1]);
    if (bad >= 0)
        return eng_error_set(err, ENG_EINVAL, "embedding: ids[%lld] = %d outside [0, %lld)",
                             (long long)bad, (int)((const int32_t *)ids->data)[bad],
                             (long long)table->shape[0]);
    return 0;
}

static int cpu_transpose(eng_backend *be, eng_tensor *y, const eng_tensor *x, eng_error *err)
{
    (void)be;
    ENG_TRY(need_f32("transpose", y, err));
    k_cpu_transpose(F(y), CF(x), x->shape[0], x->shape[1], x->shape[2]);
    return 0;
}

static int cpu_permute(eng_backend *be, eng_tensor *y, const eng_tensor *x, const int *perm,
                       eng_error *err)
{
    (void)be;
    (void)err;
    k_cpu_permute(y->data, x->data, x->ndim, x->shape, perm, (int)eng_dtype_size(x->dtype));
    return 0;
}

static int cpu_ttt(eng_backend *be, eng_tensor *o, const eng_tensor *q, const eng_tensor *k,
                   const eng_tensor *v, const eng_tensor *w1, const eng_tensor *w2, int heads,
                   eng_error *err)
{
    (void)be;
    ENG_TRY(need_f32("ttt", o, err));
    if (k_cpu_ttt(F(o), CF(q), CF(k), CF(v), CF(w1), CF(w2), q->shape[0], q->shape[1], heads,
                  q->shape[2] / heads))
        return eng_error_set(err, ENG_ENOMEM, "ttt: cannot allocate scratch");
    return 0;
}

static int cpu_ttt_local(eng_backend *be, eng_tensor *q2, eng_tensor *k2, const eng_tensor *q,
                         const eng_tensor *k, const eng_tensor *qw, const eng_tensor *qb,
                         const eng_tensor *kw, const eng_tensor *kb, int gh, int gw, float eps,
                         eng_error *err)
{
    (void)be;
    ENG_TRY(need_f32("ttt_local", q2, err));
    if (k_cpu_ttt_local(F(q2), F(k2), CF(q), CF(k), CF(qw), CF(qb), CF(kw), CF(kb), q->shape[0],
                        q->shape[1], q->shape[2], gh, gw, eps))
        return eng_error_set(err, ENG_ENOMEM, "ttt_local: cannot allocate scratch");
    return 0;
}

eng_backend *eng_backend_cpu_create(eng_error *err)
{
    eng_backend *be = calloc(1, sizeof *be);
    if (!be) {
        eng_error_set(err, ENG_ENOMEM, "cannot allocate the CPU backend");
        return NULL;
    }
    be->name = "cpu";
    be->kind = ENG_DEVICE_CPU;
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->copy_in = cpu_copy;
    be->copy_out = cpu_copy;
    be->synchronize = cpu_synchronize;
    be->destroy = cpu_destroy;
    be->convert = cpu_convert;
    be->linear = cpu_linear;
    be->layer_norm = cpu_layer_norm;
    be->rms_norm = cpu_rms_norm;
    be->group_norm = cpu_group_norm;
    be->act = cpu_act;
    be->softmax = cpu_softmax;
    be->binary = cpu_binary;
    be->scale = cpu_scale;
    be->modulate = cpu_modulate;
    be->gated_add = cpu_gated_add;
    be->concat_tokens = cpu_concat_tokens;
    be->split_tokens = cpu_split_tokens;
    be->conv2d = cpu_conv2d;
    be->upsample_nearest2x = cpu_upsample_nearest2x;
    be->attention = cpu_attention;
    be->embedding = cpu_embedding;
    be->transpose = cpu_transpose;
    be->permute = cpu_permute;
    be->ttt = cpu_ttt;
    be->ttt_local = cpu_ttt_local;
    return be;
}
