/*
 * backend_cuda.c - the CUDA backend: fills eng_backend with device memory (cudaMalloc, never
 * managed memory), copies on the backend's own stream, and the kernels of kernels/cuda.
 * Arguments arrive checked by engine/backend/ops.c; this file unwraps tensors into pointers and dims,
 * maps dtypes (F32 and BF16 for every float op; convert also handles F16), and turns a kernel
 * failure into ENG_EDEVICE with a message naming the op and the CUDA error.
 *
 * All work of one backend is queued on one non-blocking stream, in order; only copy_out,
 * synchronize, free and destroy wait for it. Every entry point first makes the backend's
 * device current for the calling thread, so a worker thread may be other than the creator.
 *
 * Embedding: ids live on the device, so the kernel cannot report a bad id cheaply; rows whose
 * id is outside [0, V) are written as zeros (the CPU backend reports ENG_EINVAL instead).
 * Callers that hold host ids validate them before upload.
 *
 * Built without CUDA (no TTTD_CUDA), only the two entry points exist and say so.
 */
#include "engine/backend/backend.h"
#include "engine/backend/backend_cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef TTTD_CUDA

#include "kernels/cuda/k_cuda.h"

typedef struct cuda_state {
    k_cuda_ctx k;
    char name[32];
    /* The profiler's timing events (engine/backend/profile.h): created when a profile starts,
     * the pool doubled when a profile outgrows it, kept until the backend is destroyed. */
    cudaEvent_t *events;
    int64_t n_events;
} cuda_state;

static k_cuda_ctx *kctx(eng_backend *be)
{
    return &((cuda_state *)be->ctx)->k;
}

static cudaStream_t stream_of(eng_backend *be)
{
    return kctx(be)->stream;
}

/* Makes be's device current for this thread; 0 or -1 (error recorded). */
static int bind(eng_backend *be)
{
    CUDA_TRY(cudaSetDevice(be->device));
    return 0;
}

static int device_error(eng_error *err, const char *op)
{
    return eng_error_set(err, ENG_EDEVICE, "cuda %s: %s", op, k_cuda_last_error());
}

/* Wraps a launcher call: 0, or ENG_EDEVICE naming the op. */
#define KRUN(op, call) ((bind(be) || (call)) ? device_error(err, (op)) : 0)

static int kdtype(const char *op, const eng_tensor *t, k_dtype *out, eng_error *err)
{
    switch (t->dtype) {
    case ENG_DTYPE_F32: *out = K_F32; return 0;
    case ENG_DTYPE_BF16: *out = K_BF16; return 0;
    default:
        return eng_error_set(err, ENG_EUNSUPPORTED, "cuda %s: dtype %s not supported (F32 or BF16)",
                             op, eng_dtype_name(t->dtype));
    }
}

#define DT(op, t)                                                                                  \
    k_dtype dt = K_F32;                                                                            \
    do {                                                                                           \
        int rc_ = kdtype((op), (t), &dt, err);                                                     \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

#define P(t) ((t) ? (t)->data : NULL)

static int64_t last_of(const eng_tensor *t)
{
    return t->ndim ? t->shape[t->ndim - 1] : 1;
}

static int64_t rows_of(const eng_tensor *t)
{
    int64_t last = last_of(t);
    return last ? eng_tensor_numel(t) / last : 0;
}

/* ---- memory ---- */

static void *cuda_alloc(eng_backend *be, size_t nbytes)
{
    void *p = NULL;
    if (bind(be) || cudaMalloc(&p, nbytes ? nbytes : 1) != cudaSuccess) {
        cudaGetLastError(); /* clear a non-sticky error so that later checks stay meaningful */
        return NULL;
    }
    return p;
}

static void cuda_free(eng_backend *be, void *ptr)
{
    if (!ptr || bind(be))
        return;
    /* Queued kernels may still use the buffer. */
    cudaStreamSynchronize(stream_of(be));
    cudaFree(ptr);
}

static int cuda_copy_in(eng_backend *be, void *dst, const void *host_src, size_t nbytes)
{
    if (!nbytes)
        return 0;
    if (bind(be) ||
        cudaMemcpyAsync(dst, host_src, nbytes, cudaMemcpyHostToDevice, stream_of(be)) != cudaSuccess ||
        cudaStreamSynchronize(stream_of(be)) != cudaSuccess)
        return ENG_EDEVICE;
    return 0;
}

static int cuda_copy_out(eng_backend *be, void *host_dst, const void *src, size_t nbytes)
{
    if (!nbytes)
        return 0;
    if (bind(be) ||
        cudaMemcpyAsync(host_dst, src, nbytes, cudaMemcpyDeviceToHost, stream_of(be)) != cudaSuccess ||
        cudaStreamSynchronize(stream_of(be)) != cudaSuccess)
        return ENG_EDEVICE;
    return 0;
}

static int cuda_synchronize(eng_backend *be)
{
    if (bind(be) || cudaStreamSynchronize(stream_of(be)) != cudaSuccess)
        return ENG_EDEVICE;
    return 0;
}

static void cuda_destroy(eng_backend *be)
{
    if (!be)
        return;
    if (be->ctx) {
        cuda_state *st = be->ctx;
        bind(be);
        for (int64_t i = 0; i < st->n_events; i++)
            cudaEventDestroy(st->events[i]);
        free(st->events);
        k_cuda_ctx_free(kctx(be));
        free(be->ctx);
    }
    free(be);
}

/* ---- the profiler's timing events ---- */

/* Creates events until the pool holds n: 0 or -1 (error recorded). */
static int events_create(cuda_state *st, int64_t n)
{
    for (; st->n_events < n; st->n_events++)
        CUDA_TRY(cudaEventCreate(&st->events[st->n_events]));
    return 0;
}

/* The pool holds at least n events: host work only (no device allocation, no synchronize). */
static int cuda_timer_reserve(eng_backend *be, int64_t n, eng_error *err)
{
    cuda_state *st = be->ctx;
    if (n <= st->n_events)
        return 0;
    cudaEvent_t *ev = realloc(st->events, (size_t)n * sizeof *ev);
    if (!ev)
        return eng_error_set(err, ENG_ENOMEM, "cuda profile: out of memory for %lld events",
                             (long long)n);
    st->events = ev;
    return KRUN("profile (creating events)", events_create(st, n));
}

static int event_record(cuda_state *st, cudaStream_t stream, int64_t i)
{
    CUDA_TRY(cudaEventRecord(st->events[i], stream));
    return 0;
}

/* Records event i on the backend's stream, after everything queued before it. */
static int cuda_timer_record(eng_backend *be, int64_t i, eng_error *err)
{
    cuda_state *st = be->ctx;
    if (i < 0)
        return eng_error_set(err, ENG_EINVAL, "cuda profile: event %lld", (long long)i);
    if (i >= st->n_events) { /* a profile longer than any before: double the pool */
        int64_t n = st->n_events ? 2 * st->n_events : 1024;
        while (n <= i)
            n *= 2;
        ENG_TRY(cuda_timer_reserve(be, n, err));
    }
    return KRUN("profile (recording an event)", event_record(st, stream_of(be), i));
}

static int event_elapsed(cuda_state *st, int64_t a, int64_t b, float *ms)
{
    CUDA_TRY(cudaEventElapsedTime(ms, st->events[a], st->events[b]));
    return 0;
}

/* Milliseconds from event a to event b; both recorded, and the stream synchronized. */
static int cuda_timer_elapsed(eng_backend *be, int64_t a, int64_t b, float *ms, eng_error *err)
{
    cuda_state *st = be->ctx;
    if (a < 0 || b < 0 || a >= st->n_events || b >= st->n_events)
        return eng_error_set(err, ENG_EINVAL, "cuda profile: events %lld, %lld outside the pool "
                             "of %lld", (long long)a, (long long)b, (long long)st->n_events);
    return KRUN("profile (reading an event pair)", event_elapsed(st, a, b, ms));
}

/* ---- graph capture ---- */

static int capture_begin(cudaStream_t s)
{
    /* Thread-local: another worker's allocations on its own thread do not spoil this capture. */
    CUDA_TRY(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    return 0;
}

static int cuda_capture_begin(eng_backend *be, eng_error *err)
{
    return KRUN("graph capture (begin)", capture_begin(stream_of(be)));
}

static uint64_t cuda_memory_generation(eng_backend *be)
{
    return kctx(be)->scratch_generation;
}

static int capture_end(cudaStream_t s, cudaGraphExec_t *exec)
{
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(s, &g);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* an invalidated capture leaves a non-sticky error */
        if (g)
            cudaGraphDestroy(g);
        K_FAIL_RETURN("cudaStreamEndCapture", cudaGetErrorString(e));
    }
    e = cudaGraphInstantiate(exec, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        cudaGetLastError();
        K_FAIL_RETURN("cudaGraphInstantiate", cudaGetErrorString(e));
    }
    return 0;
}

static int cuda_capture_end(eng_backend *be, void **graph, eng_error *err)
{
    cudaGraphExec_t exec = NULL;
    *graph = NULL;
    ENG_TRY(KRUN("graph capture (end)", capture_end(stream_of(be), &exec)));
    *graph = exec;
    return 0;
}

static int graph_launch(cudaStream_t s, void *graph)
{
    CUDA_TRY(cudaGraphLaunch((cudaGraphExec_t)graph, s));
    return 0;
}

static int cuda_graph_launch(eng_backend *be, void *graph, eng_error *err)
{
    return KRUN("graph launch", graph_launch(stream_of(be), graph));
}

static void cuda_graph_free(eng_backend *be, void *graph)
{
    if (!graph || bind(be))
        return;
    cudaStreamSynchronize(stream_of(be)); /* a replay may still be queued */
    cudaGraphExecDestroy((cudaGraphExec_t)graph);
}

/* ---- ops ---- */

static int copy_d2d(eng_backend *be, void *dst, const void *src, size_t nbytes)
{
    if (nbytes)
        CUDA_TRY(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, stream_of(be)));
    return 0;
}

static int cuda_convert(eng_backend *be, eng_tensor *y, const eng_tensor *x, eng_error *err)
{
    k_dtype yt, xt;
    if (x->dtype == y->dtype) /* any dtype, I32 included: a copy */
        return KRUN("convert", copy_d2d(be, y->data, x->data, eng_tensor_nbytes(x)));
    xt = x->dtype == ENG_DTYPE_F32 ? K_F32 : x->dtype == ENG_DTYPE_F16 ? K_F16 : K_BF16;
    yt = y->dtype == ENG_DTYPE_F32 ? K_F32 : y->dtype == ENG_DTYPE_F16 ? K_F16 : K_BF16;
    return KRUN("convert", k_cuda_convert(stream_of(be), y->data, yt, x->data, xt,
                                          eng_tensor_numel(x)));
}

static int cuda_linear(eng_backend *be, eng_tensor *y, const eng_tensor *x, const eng_tensor *w,
                       const eng_tensor *b, eng_error *err)
{
    DT("linear", y);
    if (w->dtype != y->dtype)
        return eng_error_set(err, ENG_EUNSUPPORTED, "cuda linear: weight dtype %s under %s",
                             eng_dtype_name(w->dtype), eng_dtype_name(y->dtype));
    return KRUN("linear", k_cuda_linear(kctx(be), dt, y->data, x->data, w->data, P(b), rows_of(x),
                                        last_of(x), w->shape[0]));
}

static int cuda_linear_gelu(eng_backend *be, eng_tensor *y, const eng_tensor *x,
                            const eng_tensor *w, const eng_tensor *b, eng_error *err)
{
    DT("linear_gelu", y);
    if (w->dtype != y->dtype)
        return eng_error_set(err, ENG_EUNSUPPORTED, "cuda linear_gelu: weight dtype %s under %s",
                             eng_dtype_name(w->dtype), eng_dtype_name(y->dtype));
    return KRUN("linear_gelu", k_cuda_linear_gelu(kctx(be), dt, y->data, x->data, w->data, P(b),
                                                  rows_of(x), last_of(x), w->shape[0]));
}

static int cuda_layer_norm(eng_backend *be, eng_tensor *y, const eng_tensor *x,
                           const eng_tensor *w, const eng_tensor *b, float eps, eng_error *err)
{
    DT("layer_norm", y);
    return KRUN("layer_norm", k_cuda_layer_norm(stream_of(be), dt, y->data, x->data, P(w), P(b),
                                                rows_of(x), last_of(x), eps));
}

static int cuda_rms_norm(eng_backend *be, eng_tensor *y, const eng_tensor *x, const eng_tensor *w,
                         float eps, eng_error *err)
{
    DT("rms_norm", y);
    return KRUN("rms_norm", k_cuda_rms_norm(stream_of(be), dt, y->data, x->data, P(w), rows_of(x),
                                            last_of(x), eps));
}

static int cuda_group_norm(eng_backend *be, eng_tensor *y, const eng_tensor *x,
                           const eng_tensor *w, const eng_tensor *b, int groups, float eps,
                           eng_error *err)
{
    DT("group_norm", y);
    int64_t B = x->shape[0], C = x->shape[1];
    int64_t S = (B && C) ? eng_tensor_numel(x) / (B * C) : 0;
    return KRUN("group_norm", k_cuda_group_norm(stream_of(be), dt, y->data, x->data, P(w), P(b),
                                                B, C, S, groups, eps));
}

static int cuda_act(eng_backend *be, eng_tensor *y, const eng_tensor *x, eng_act kind,
                    eng_error *err)
{
    DT("act", y);
    return KRUN("act", k_cuda_act(stream_of(be), dt, y->data, x->data, eng_tensor_numel(x),
                                  (k_act)kind));
}

static int cuda_softmax(eng_backend *be, eng_tensor *y, const eng_tensor *x, eng_error *err)
{
    DT("softmax", y);
    return KRUN("softmax", k_cuda_softmax(stream_of(be), dt, y->data, x->data, rows_of(x),
                                          last_of(x)));
}

static int cuda_binary(eng_backend *be, eng_tensor *y, const eng_tensor *a, const eng_tensor *b,
                       eng_binop op, eng_error *err)
{
    const char *name = op == ENG_BIN_MUL ? "mul" : "add";
    DT(name, y);
    if (eng_tensor_numel(a) == 0)
        return 0;
    return KRUN(name, k_cuda_binary(stream_of(be), dt, y->data, a->data, b->data,
                                    eng_tensor_numel(a), eng_tensor_numel(b),
                                    op == ENG_BIN_MUL ? 1 : 0));
}

static int cuda_scale(eng_backend *be, eng_tensor *y, const eng_tensor *x, float s,
                      eng_error *err)
{
    DT("scale", y);
    return KRUN("scale", k_cuda_scale(stream_of(be), dt, y->data, x->data, s, eng_tensor_numel(x)));
}

static int cuda_modulate(eng_backend *be, eng_tensor *y, const eng_tensor *x,
                         const eng_tensor *scale, const eng_tensor *shift, eng_error *err)
{
    DT("modulate", y);
    return KRUN("modulate", k_cuda_modulate(stream_of(be), dt, y->data, x->data, scale->data,
                                            shift->data, x->shape[0], x->shape[1], x->shape[2]));
}

static int cuda_norm_modulate(eng_backend *be, eng_tensor *y, const eng_tensor *x,
                              const eng_tensor *scale, const eng_tensor *shift, float eps,
                              eng_error *err)
{
    DT("norm_modulate", y);
    return KRUN("norm_modulate", k_cuda_norm_modulate(stream_of(be), dt, y->data, x->data,
                                                      scale->data, shift->data, x->shape[0],
                                                      x->shape[1], x->shape[2], eps));
}

static int cuda_gated_add(eng_backend *be, eng_tensor *y, const eng_tensor *x,
                          const eng_tensor *gate, eng_error *err)
{
    DT("gated_add", y);
    return KRUN("gated_add", k_cuda_gated_add(stream_of(be), dt, y->data, x->data, gate->data,
                                              x->shape[0], x->shape[1], x->shape[2]));
}

static int cuda_concat_tokens(eng_backend *be, eng_tensor *y, const eng_tensor *a,
                              const eng_tensor *b, eng_error *err)
{
    return KRUN("concat_tokens",
                k_cuda_concat_tokens(stream_of(be), eng_dtype_size(y->dtype), y->data, a->data,
                                     b->data, a->shape[0], a->shape[1], b->shape[1], a->shape[2]));
}

static int cuda_split_tokens(eng_backend *be, eng_tensor *a, eng_tensor *b, const eng_tensor *y,
                             eng_error *err)
{
    return KRUN("split_tokens",
                k_cuda_split_tokens(stream_of(be), eng_dtype_size(y->dtype), a->data, b->data,
                                    y->data, a->shape[0], a->shape[1], b->shape[1], a->shape[2]));
}

static int cuda_conv2d(eng_backend *be, eng_tensor *y, const eng_tensor *x, const eng_tensor *w,
                       const eng_tensor *b, const eng_conv2d_params *p, eng_error *err)
{
    DT("conv2d", y);
    k_conv2d_shape s = {
        .B = x->shape[0], .C_in = x->shape[1], .H = x->shape[2], .W = x->shape[3],
        .C_out = w->shape[0], .kh = w->shape[2], .kw = w->shape[3],
        .stride_h = p->stride_h, .stride_w = p->stride_w,
        .pad_h = p->pad_h, .pad_w = p->pad_w, .groups = p->groups,
        .H_out = y->shape[2], .W_out = y->shape[3],
    };
    return KRUN("conv2d", k_cuda_conv2d(kctx(be), dt, y->data, x->data, w->data, P(b), &s));
}

static int cuda_upsample_nearest2x(eng_backend *be, eng_tensor *y, const eng_tensor *x,
                                   eng_error *err)
{
    DT("upsample_nearest2x", y);
    return KRUN("upsample_nearest2x",
                k_cuda_upsample_nearest2x(stream_of(be), dt, y->data, x->data,
                                          x->shape[0] * x->shape[1], x->shape[2], x->shape[3]));
}

static int cuda_attention(eng_backend *be, eng_tensor *o, const eng_tensor *q,
                          const eng_tensor *k, const eng_tensor *v, const eng_tensor *bias,
                          const eng_attention_params *p, eng_error *err)
{
    DT("attention", o);
    int64_t h = p->heads, d = q->shape[2] / p->heads;
    return KRUN("attention",
                k_cuda_attention(kctx(be), dt, o->data, q->data, k->data, v->data,
                                 bias ? (const float *)bias->data : NULL, q->shape[0], q->shape[1],
                                 k->shape[1], h, d, p->scale, p->causal));
}

static int cuda_embedding(eng_backend *be, eng_tensor *y, const eng_tensor *table,
                          const eng_tensor *ids, eng_error *err)
{
    DT("embedding", y);
    return KRUN("embedding", k_cuda_embedding(stream_of(be), dt, y->data, table->data,
                                              (const int32_t *)ids->data, eng_tensor_numel(ids),
                                              table->shape[0], table->shape[1]));
}

static int cuda_transpose(eng_backend *be, eng_tensor *y, const eng_tensor *x, eng_error *err)
{
    DT("transpose", y);
    return KRUN("transpose", k_cuda_transpose(stream_of(be), dt, y->data, x->data, x->shape[0],
                                              x->shape[1], x->shape[2]));
}

static int cuda_permute(eng_backend *be, eng_tensor *y, const eng_tensor *x, const int *perm,
                        eng_error *err)
{
    /* Any dtype: the kernel moves bits. */
    return KRUN("permute", k_cuda_permute(stream_of(be), eng_dtype_size(x->dtype), y->data,
                                          x->data, x->ndim, x->shape, perm));
}

static int cuda_ttt(eng_backend *be, eng_tensor *o, const eng_tensor *q, const eng_tensor *k,
                    const eng_tensor *v, const eng_tensor *w1, const eng_tensor *w2, int heads,
                    eng_error *err)
{
    DT("ttt", o);
    return KRUN("ttt", k_cuda_ttt(kctx(be), dt, o->data, q->data, k->data, v->data, w1->data,
                                  w2->data, q->shape[0], q->shape[1], heads,
                                  q->shape[2] / heads));
}

static int cuda_ttt_local(eng_backend *be, eng_tensor *q2, eng_tensor *k2, const eng_tensor *q,
                          const eng_tensor *k, const eng_tensor *qw, const eng_tensor *qb,
                          const eng_tensor *kw, const eng_tensor *kb, int gh, int gw, float eps,
                          eng_error *err)
{
    DT("ttt_local", q2);
    return KRUN("ttt_local", k_cuda_ttt_local(kctx(be), dt, q2->data, k2->data, q->data, k->data,
                                              qw->data, qb->data, kw->data, kb->data, q->shape[0],
                                              q->shape[1], q->shape[2], gh, gw, eps));
}

/* ---- construction ---- */

int eng_backend_cuda_available(void)
{
    return 1;
}

void *eng_backend_cuda_stream(eng_backend *be)
{
    return be && be->kind == ENG_DEVICE_CUDA && be->ctx ? (void *)stream_of(be) : NULL;
}

void *eng_backend_cuda_kernels(eng_backend *be)
{
    return be && be->kind == ENG_DEVICE_CUDA && be->ctx ? (void *)kctx(be) : NULL;
}

eng_backend *eng_backend_cuda_create(int device, eng_error *err)
{
    eng_backend *be = NULL;
    cuda_state *st = NULL;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);

    if (e != cudaSuccess) {
        eng_error_set(err, ENG_EDEVICE, "cuda: no usable device: %s", cudaGetErrorString(e));
        return NULL;
    }
    if (device < 0 || device >= count) {
        eng_error_set(err, ENG_EINVAL, "cuda: device %d outside 0..%d", device, count - 1);
        return NULL;
    }
    be = calloc(1, sizeof *be);
    st = calloc(1, sizeof *st);
    if (!be || !st) {
        eng_error_set(err, ENG_ENOMEM, "cannot allocate the CUDA backend");
        goto fail;
    }
    if (k_cuda_ctx_init(&st->k, device)) {
        eng_error_set(err, ENG_EDEVICE, "cuda:%d: %s", device, k_cuda_last_error());
        goto fail;
    }
    snprintf(st->name, sizeof st->name, "cuda:%d", device);
    be->name = st->name;
    be->kind = ENG_DEVICE_CUDA;
    be->device = device;
    be->ctx = st;
    be->alloc = cuda_alloc;
    be->free = cuda_free;
    be->copy_in = cuda_copy_in;
    be->copy_out = cuda_copy_out;
    be->synchronize = cuda_synchronize;
    be->destroy = cuda_destroy;
    be->timer_reserve = cuda_timer_reserve;
    be->timer_record = cuda_timer_record;
    be->timer_elapsed = cuda_timer_elapsed;
    be->capture_begin = cuda_capture_begin;
    be->memory_generation = cuda_memory_generation;
    be->capture_end = cuda_capture_end;
    be->graph_launch = cuda_graph_launch;
    be->graph_free = cuda_graph_free;
    be->convert = cuda_convert;
    be->linear = cuda_linear;
    be->linear_gelu = cuda_linear_gelu;
    be->layer_norm = cuda_layer_norm;
    be->rms_norm = cuda_rms_norm;
    be->group_norm = cuda_group_norm;
    be->act = cuda_act;
    be->softmax = cuda_softmax;
    be->binary = cuda_binary;
    be->scale = cuda_scale;
    be->modulate = cuda_modulate;
    be->norm_modulate = cuda_norm_modulate;
    be->gated_add = cuda_gated_add;
    be->concat_tokens = cuda_concat_tokens;
    be->split_tokens = cuda_split_tokens;
    be->conv2d = cuda_conv2d;
    be->upsample_nearest2x = cuda_upsample_nearest2x;
    be->attention = cuda_attention;
    be->embedding = cuda_embedding;
    be->transpose = cuda_transpose;
    be->permute = cuda_permute;
    be->ttt = cuda_ttt;
    be->ttt_local = cuda_ttt_local;
    return be;

fail:
    free(st);
    free(be);
    return NULL;
}

#else /* built without CUDA */

int eng_backend_cuda_available(void)
{
    return 0;
}

void *eng_backend_cuda_stream(eng_backend *be)
{
    (void)be;
    return NULL;
}

void *eng_backend_cuda_kernels(eng_backend *be)
{
    (void)be;
    return NULL;
}

eng_backend *eng_backend_cuda_create(int device, eng_error *err)
{
    (void)device;
    eng_error_set(err, ENG_EUNSUPPORTED, "cuda: built without CUDA");
    return NULL;
}

#endif
