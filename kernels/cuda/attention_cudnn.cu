/*
 * attention_cudnn.cu - softmax attention through cuDNN 9's fused flash attention (the "Fused
 * Flash Attention fprop" pattern of the graph API), written against the C backend API
 * (cudnn_graph.h): o[B, Nq, h*d] = softmax(scale q k^T, causal mask) v per head, bf16 in and out,
 * fp32 scores and softmax inside, no bias.
 *
 * Layout: tttd's q, k, v, o are [B, N, h*d], a head being a d-wide channel slice; seen as cuDNN's
 * BHSD tensors that is dims {B, h, N, d} with strides {N*h*d, d, h*d, 1} (no copy). The graph
 * takes K transposed, as {B, h, d, Nk} with strides {Nk*h*d, d, 1, h*d}.
 *
 * The graph (every intermediate virtual, fp32 unless named):
 *   S  = matmul(Q, K^T)                          [B, h, Nq, Nk]
 *   S  = S * scale                               scale: a by-value fp32 scalar
 *   S  = select(S, -inf, row >= col)             causal only: GEN_INDEX on axes 2 and 3, CMP_GE
 *   M  = max over keys (S); E = exp(S - M)       [B, h, Nq, 1] and [B, h, Nq, Nk]
 *   L  = sum over keys (E); stats = M + log(L)   stats virtual: inference keeps no softmax stats
 *   P  = E / L                                   bf16 (the second matmul's input type)
 *   O  = matmul(P, V)                            [B, h, Nq, d], bf16
 * cuDNN matches this pattern to its flash-attention engine; the heuristic (mode A) lists engine
 * configs and the first whose execution plan finalizes is kept.
 *
 * Cache: plans are kept in ctx->cudnn (with the cuDNN handle, bound to ctx->stream and made on
 * the first call), keyed by (B, Nq, Nk, h, d, causal, scale, dtype, pointer alignment); a small
 * round-robin table. A key cuDNN builds no plan for is remembered as unsupported, so the caller's
 * fallback costs no second attempt. The workspace a plan asks for comes from ctx->workspace when
 * it fits, else from ctx scratch (grown once); the variant pack (the pointers) is made per call.
 *
 * Failure: anything that goes wrong while building (handle, graph, heuristic, plan) makes the call
 * "unsupported" (return 1, nothing enqueued, the reason in k_cuda_last_error()), and
 * k_cuda_attention runs another path; only a failing execution of a built plan is an error (-1).
 * Built without cuDNN (TTTD_CUDNN undefined) every call is unsupported.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/k_cuda.h"
#include "kernels/cuda/k_cuda_internal.h"

#ifndef TTTD_CUDNN

extern "C" int k_cuda_attention_cudnn(k_cuda_ctx *ctx, k_dtype dt, void *o, const void *q,
                                      const void *k, const void *v, int64_t B, int64_t Nq,
                                      int64_t Nk, int64_t h, int64_t d, float scale, int causal)
{
    (void)ctx, (void)dt, (void)o, (void)q, (void)k, (void)v, (void)B, (void)Nq, (void)Nk;
    (void)h, (void)d, (void)scale, (void)causal;
    k_cuda_set_error(__FILE__, __LINE__, "k_cuda_attention_cudnn", "built without cuDNN");
    return 1;
}

void k_cudnn_attn_free(k_cuda_ctx *ctx)
{
    (void)ctx;
}

#else /* TTTD_CUDNN */

#include <cudnn.h>

#define CA_PLANS 16 /* cached plans per ctx */

/* Tensor ids of the variant pack (the virtual tensors take ids from CA_VIRTUAL on). */
enum { CA_Q = 1, CA_K, CA_V, CA_O, CA_SCALE, CA_NEG_INF, CA_VIRTUAL = 100 };

typedef struct ca_key {
    int64_t B, Nq, Nk, h, d;
    int causal;
    float scale;
    k_dtype dt;
    int align; /* the smallest alignment of q, k, v, o in bytes, at most 16 */
} ca_key;

enum { CA_EMPTY = 0, CA_READY, CA_UNSUPPORTED };

typedef struct ca_plan {
    int state;
    ca_key key;
    cudnnBackendDescriptor_t plan; /* CA_READY */
    cudnnBackendDescriptor_t *keep; /* what the plan was built from, kept alive as long */
    int n_keep;
    int64_t workspace;             /* bytes the plan needs */
    char why[384];                 /* CA_UNSUPPORTED: what failed */
} ca_plan;

struct k_cudnn_attn {
    cudnnHandle_t handle; /* NULL when cudnnCreate failed: every call is unsupported */
    char broken[256];     /* why the handle is missing */
    ca_plan plans[CA_PLANS];
    int next;
};

/* ---- building a graph: one error-accumulating builder ------------------------------------- */

/*
 * Every descriptor made while building is listed here: destroyed when the build fails, kept
 * with the plan when it succeeds. After the first failing call the builder does nothing more, and
 * `why` holds the call and cuDNN's message.
 */
#define CA_MAX_DESC 96
typedef struct ca_builder {
    cudnnBackendDescriptor_t desc[CA_MAX_DESC];
    int n;
    int64_t next_uid;
    cudnnStatus_t status;
    char why[384];
} ca_builder;

static int ca_fail(ca_builder *g, const char *what, cudnnStatus_t st)
{
    if (g->status == CUDNN_STATUS_SUCCESS) {
        char msg[256] = "";
        cudnnGetLastErrorString(msg, sizeof msg);
        g->status = st == CUDNN_STATUS_SUCCESS ? CUDNN_STATUS_INTERNAL_ERROR : st;
        snprintf(g->why, sizeof g->why, "%s: %s%s%s", what, cudnnGetErrorString(st),
                 msg[0] ? ": " : "", msg);
    }
    return -1;
}

#define CA_OK(g) ((g)->status == CUDNN_STATUS_SUCCESS)
#define CA_CALL(g, call)                                                                           \
    do {                                                                                           \
        if (CA_OK(g)) {                                                                            \
            cudnnStatus_t ca_st_ = (call);                                                         \
            if (ca_st_ != CUDNN_STATUS_SUCCESS)                                                    \
                ca_fail((g), #call, ca_st_);                                                       \
        }                                                                                          \
    } while (0)

static cudnnBackendDescriptor_t ca_new(ca_builder *g, cudnnBackendDescriptorType_t type)
{
    cudnnBackendDescriptor_t d = NULL;
    if (!CA_OK(g))
        return NULL;
    if (g->n == CA_MAX_DESC) {
        ca_fail(g, "ca_new", CUDNN_STATUS_INTERNAL_ERROR);
        return NULL;
    }
    CA_CALL(g, cudnnBackendCreateDescriptor(type, &d));
    if (CA_OK(g))
        g->desc[g->n++] = d;
    return d;
}

static void ca_set(ca_builder *g, cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name,
                   cudnnBackendAttributeType_t type, int64_t count, const void *value)
{
    if (!CA_OK(g))
        return;
    cudnnStatus_t st = cudnnBackendSetAttribute(d, name, type, count, value);
    if (st != CUDNN_STATUS_SUCCESS) {
        char what[64];
        snprintf(what, sizeof what, "cudnnBackendSetAttribute(attribute %d)", (int)name);
        ca_fail(g, what, st);
    }
}

static void ca_set_desc(ca_builder *g, cudnnBackendDescriptor_t d,
                        cudnnBackendAttributeName_t name, cudnnBackendDescriptor_t value)
{
    ca_set(g, d, name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &value);
}

static void ca_release(ca_builder *g)
{
    for (int i = g->n - 1; i >= 0; i--)
        cudnnBackendDestroyDescriptor(g->desc[i]);
    g->n = 0;
}

/* A 4-d tensor; uid 0 makes a virtual tensor with the next free id. */
static cudnnBackendDescriptor_t ca_tensor(ca_builder *g, int64_t uid, cudnnDataType_t dt,
                                          const int64_t dim[4], const int64_t stride[4],
                                          int64_t align, bool by_value)
{
    cudnnBackendDescriptor_t t = ca_new(g, CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    bool is_virtual = uid == 0;
    if (is_virtual)
        uid = g->next_uid++;
    ca_set(g, t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt);
    ca_set(g, t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dim);
    ca_set(g, t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, stride);
    ca_set(g, t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    ca_set(g, t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
    ca_set(g, t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual);
    if (by_value)
        ca_set(g, t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value);
    CA_CALL(g, cudnnBackendFinalize(t));
    return t;
}

/* A virtual tensor (an intermediate that never reaches memory) of type dt. */
static cudnnBackendDescriptor_t ca_virtual(ca_builder *g, cudnnDataType_t dt, const int64_t dim[4],
                                           const int64_t stride[4])
{
    return ca_tensor(g, 0, dt, dim, stride, 16, false);
}

/* y = mode(x[, b[, t]]) computed in `prec`; axis >= 0 for GEN_INDEX. Returns the operation. */
static cudnnBackendDescriptor_t ca_pointwise(ca_builder *g, cudnnPointwiseMode_t mode,
                                             cudnnDataType_t prec, cudnnBackendDescriptor_t x,
                                             cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t t,
                                             cudnnBackendDescriptor_t y, int64_t axis)
{
    cudnnBackendDescriptor_t pw = ca_new(g, CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    ca_set(g, pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    ca_set(g, pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec);
    if (axis >= 0)
        ca_set(g, pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis);
    CA_CALL(g, cudnnBackendFinalize(pw));

    cudnnBackendDescriptor_t op = ca_new(g, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    ca_set_desc(g, op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw);
    ca_set_desc(g, op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x);
    if (b)
        ca_set_desc(g, op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b);
    if (t)
        ca_set_desc(g, op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, t);
    ca_set_desc(g, op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y);
    CA_CALL(g, cudnnBackendFinalize(op));
    return op;
}

/* y = reduction of x over the dims where y has extent 1. */
static cudnnBackendDescriptor_t ca_reduce(ca_builder *g, cudnnReduceTensorOp_t mode,
                                          cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y)
{
    cudnnDataType_t prec = CUDNN_DATA_FLOAT;
    cudnnBackendDescriptor_t rd = ca_new(g, CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    ca_set(g, rd, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode);
    ca_set(g, rd, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &prec);
    CA_CALL(g, cudnnBackendFinalize(rd));

    cudnnBackendDescriptor_t op = ca_new(g, CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    ca_set_desc(g, op, CUDNN_ATTR_OPERATION_REDUCTION_DESC, rd);
    ca_set_desc(g, op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x);
    ca_set_desc(g, op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y);
    CA_CALL(g, cudnnBackendFinalize(op));
    return op;
}

/* c = a b (batched over the first two dims), fp32 accumulate. */
static cudnnBackendDescriptor_t ca_matmul(ca_builder *g, cudnnBackendDescriptor_t a,
                                          cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t c)
{
    cudnnDataType_t prec = CUDNN_DATA_FLOAT;
    cudnnBackendDescriptor_t mm = ca_new(g, CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    ca_set(g, mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &prec);
    CA_CALL(g, cudnnBackendFinalize(mm));

    cudnnBackendDescriptor_t op = ca_new(g, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    ca_set_desc(g, op, CUDNN_ATTR_OPERATION_MATMUL_ADESC, a);
    ca_set_desc(g, op, CUDNN_ATTR_OPERATION_MATMUL_BDESC, b);
    ca_set_desc(g, op, CUDNN_ATTR_OPERATION_MATMUL_CDESC, c);
    ca_set_desc(g, op, CUDNN_ATTR_OPERATION_MATMUL_DESC, mm);
    CA_CALL(g, cudnnBackendFinalize(op));
    return op;
}

/* The operation graph of the file's comment, finalized; NULL (g->why set) on failure. */
static cudnnBackendDescriptor_t ca_graph(ca_builder *g, cudnnHandle_t handle, const ca_key *key)
{
    const int64_t B = key->B, Nq = key->Nq, Nk = key->Nk, h = key->h, d = key->d;
    const int64_t align = key->align;
    const cudnnDataType_t io = CUDNN_DATA_BFLOAT16, f32 = CUDNN_DATA_FLOAT;
    const int64_t one[4] = {1, 1, 1, 1};
    const int64_t q_dim[4] = {B, h, Nq, d}, q_str[4] = {Nq * h * d, d, h * d, 1};
    const int64_t kt_dim[4] = {B, h, d, Nk}, kt_str[4] = {Nk * h * d, d, 1, h * d};
    const int64_t v_dim[4] = {B, h, Nk, d}, v_str[4] = {Nk * h * d, d, h * d, 1};
    const int64_t s_dim[4] = {B, h, Nq, Nk}, s_str[4] = {h * Nq * Nk, Nq * Nk, Nk, 1};
    const int64_t r_dim[4] = {B, h, Nq, 1}, r_str[4] = {h * Nq, Nq, 1, 1};
    cudnnBackendDescriptor_t ops[16];
    int n = 0;

    g->next_uid = CA_VIRTUAL;
    cudnnBackendDescriptor_t Q = ca_tensor(g, CA_Q, io, q_dim, q_str, align, false);
    cudnnBackendDescriptor_t Kt = ca_tensor(g, CA_K, io, kt_dim, kt_str, align, false);
    cudnnBackendDescriptor_t V = ca_tensor(g, CA_V, io, v_dim, v_str, align, false);
    cudnnBackendDescriptor_t O = ca_tensor(g, CA_O, io, q_dim, q_str, align, false);
    cudnnBackendDescriptor_t scale = ca_tensor(g, CA_SCALE, f32, one, one, 16, true);

    /* Scores, scaled. */
    cudnnBackendDescriptor_t S = ca_virtual(g, f32, s_dim, s_str);
    ops[n++] = ca_matmul(g, Q, Kt, S);
    cudnnBackendDescriptor_t Ss = ca_virtual(g, f32, s_dim, s_str);
    ops[n++] = ca_pointwise(g, CUDNN_POINTWISE_MUL, f32, S, scale, NULL, Ss, -1);
    S = Ss;

    /* Causal: keep key j <= query i (row >= col), the rest -inf. */
    if (key->causal) {
        cudnnBackendDescriptor_t neg_inf = ca_tensor(g, CA_NEG_INF, f32, one, one, 16, true);
        cudnnBackendDescriptor_t row = ca_virtual(g, CUDNN_DATA_INT32, s_dim, s_str);
        cudnnBackendDescriptor_t col = ca_virtual(g, CUDNN_DATA_INT32, s_dim, s_str);
        cudnnBackendDescriptor_t keep = ca_virtual(g, CUDNN_DATA_BOOLEAN, s_dim, s_str);
        cudnnBackendDescriptor_t Sm = ca_virtual(g, f32, s_dim, s_str);
        ops[n++] = ca_pointwise(g, CUDNN_POINTWISE_GEN_INDEX, f32, S, NULL, NULL, row, 2);
        ops[n++] = ca_pointwise(g, CUDNN_POINTWISE_GEN_INDEX, f32, S, NULL, NULL, col, 3);
        ops[n++] = ca_pointwise(g, CUDNN_POINTWISE_CMP_GE, CUDNN_DATA_BOOLEAN, row, col, NULL,
                                keep, -1);
        ops[n++] = ca_pointwise(g, CUDNN_POINTWISE_BINARY_SELECT, f32, S, neg_inf, keep, Sm, -1);
        S = Sm;
    }

    /* Softmax over keys, with the (virtual) stats the inference pattern carries. */
    cudnnBackendDescriptor_t M = ca_virtual(g, f32, r_dim, r_str);
    cudnnBackendDescriptor_t Z = ca_virtual(g, f32, s_dim, s_str);
    cudnnBackendDescriptor_t E = ca_virtual(g, f32, s_dim, s_str);
    cudnnBackendDescriptor_t L = ca_virtual(g, f32, r_dim, r_str);
    cudnnBackendDescriptor_t logL = ca_virtual(g, f32, r_dim, r_str);
    cudnnBackendDescriptor_t stats = ca_virtual(g, f32, r_dim, r_str);
    cudnnBackendDescriptor_t P = ca_virtual(g, io, s_dim, s_str);
    ops[n++] = ca_reduce(g, CUDNN_REDUCE_TENSOR_MAX, S, M);
    ops[n++] = ca_pointwise(g, CUDNN_POINTWISE_SUB, f32, S, M, NULL, Z, -1);
    ops[n++] = ca_pointwise(g, CUDNN_POINTWISE_EXP, f32, Z, NULL, NULL, E, -1);
    ops[n++] = ca_reduce(g, CUDNN_REDUCE_TENSOR_ADD, E, L);
    ops[n++] = ca_pointwise(g, CUDNN_POINTWISE_LOG, f32, L, NULL, NULL, logL, -1);
    ops[n++] = ca_pointwise(g, CUDNN_POINTWISE_ADD, f32, M, logL, NULL, stats, -1);
    ops[n++] = ca_pointwise(g, CUDNN_POINTWISE_DIV, f32, E, L, NULL, P, -1);

    ops[n++] = ca_matmul(g, P, V, O);

    cudnnBackendDescriptor_t graph = ca_new(g, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    ca_set(g, graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
    ca_set(g, graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, n, ops);
    CA_CALL(g, cudnnBackendFinalize(graph));
    return CA_OK(g) ? graph : NULL;
}

/* An execution plan for one engine config; *plan stays NULL unless it finalizes. */
static cudnnStatus_t ca_plan_try(cudnnHandle_t handle, cudnnBackendDescriptor_t cfg,
                                 cudnnBackendDescriptor_t *plan)
{
    cudnnBackendDescriptor_t pl = NULL;
    cudnnStatus_t st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &pl);
    if (st != CUDNN_STATUS_SUCCESS)
        return st;
    if ((st = cudnnBackendSetAttribute(pl, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1,
                                       &handle)) == CUDNN_STATUS_SUCCESS &&
        (st = cudnnBackendSetAttribute(pl, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                       CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg)) ==
            CUDNN_STATUS_SUCCESS &&
        (st = cudnnBackendFinalize(pl)) == CUDNN_STATUS_SUCCESS) {
        *plan = pl;
        return st;
    }
    cudnnBackendDestroyDescriptor(pl);
    return st;
}

/*
 * Builds the plan for p->key: the heuristic's engine configs in order, the first whose plan
 * finalizes. 0, or -1 with the reason in `why` (the key is then unsupported).
 */
static int ca_plan_build(cudnnHandle_t handle, ca_plan *p, char *why, size_t why_len)
{
    ca_builder g;
    memset(&g, 0, sizeof g);
    cudnnBackendDescriptor_t graph = ca_graph(&g, handle, &p->key);

    cudnnBackendDescriptor_t heur = ca_new(&g, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
    ca_set_desc(&g, heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph);
    ca_set(&g, heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
    CA_CALL(&g, cudnnBackendFinalize(heur));
    int64_t count = 0;
    CA_CALL(&g, cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, NULL));
    if (CA_OK(&g) && count <= 0)
        ca_fail(&g, "heuristic (mode A)", CUDNN_STATUS_NOT_SUPPORTED);
    if (count > 16)
        count = 16;
    cudnnBackendDescriptor_t cfg[16];
    for (int64_t i = 0; i < count; i++)
        cfg[i] = ca_new(&g, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
    int64_t got = 0;
    CA_CALL(&g, cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got, cfg));

    /* The plan outlives the builder: made outside its list. */
    cudnnBackendDescriptor_t plan = NULL;
    cudnnStatus_t last = CUDNN_STATUS_NOT_SUPPORTED;
    char last_msg[256] = "";
    for (int64_t i = 0; CA_OK(&g) && i < got && !plan; i++)
        if ((last = ca_plan_try(handle, cfg[i], &plan)) != CUDNN_STATUS_SUCCESS)
            cudnnGetLastErrorString(last_msg, sizeof last_msg);
    if (CA_OK(&g) && !plan) {
        snprintf(g.why, sizeof g.why, "no plan finalizes (%lld engine configs; last: %s%s%s)",
                 (long long)got, cudnnGetErrorString(last), last_msg[0] ? ": " : "", last_msg);
        g.status = CUDNN_STATUS_NOT_SUPPORTED;
    }
    int64_t ws = 0, nws = 0;
    if (plan)
        CA_CALL(&g, cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                             CUDNN_TYPE_INT64, 1, &nws, &ws));
    /* The graph and the engine config stay alive as long as the plan: whether the backend
     * copies them into it is not promised anywhere. */
    if (CA_OK(&g) && !(p->keep = (cudnnBackendDescriptor_t *)malloc(g.n * sizeof *p->keep)))
        ca_fail(&g, "malloc", CUDNN_STATUS_ALLOC_FAILED);
    if (!CA_OK(&g)) {
        snprintf(why, why_len, "%s", g.why);
        if (plan)
            cudnnBackendDestroyDescriptor(plan);
        ca_release(&g);
        return -1;
    }
    memcpy(p->keep, g.desc, g.n * sizeof *p->keep);
    p->n_keep = g.n;
    p->plan = plan;
    p->workspace = ws;
    return 0;
}

static void ca_plan_release(ca_plan *p)
{
    if (p->plan)
        cudnnBackendDestroyDescriptor(p->plan);
    for (int i = p->n_keep - 1; i >= 0; i--)
        cudnnBackendDestroyDescriptor(p->keep[i]);
    free(p->keep);
    memset(p, 0, sizeof *p);
}

void k_cudnn_attn_free(k_cuda_ctx *ctx)
{
    struct k_cudnn_attn *ca = ctx->cudnn;
    if (!ca)
        return;
    for (int i = 0; i < CA_PLANS; i++)
        ca_plan_release(&ca->plans[i]);
    if (ca->handle)
        cudnnDestroy(ca->handle);
    free(ca);
    ctx->cudnn = NULL;
}

/* ctx's cuDNN state, made on first use; NULL only when out of host memory. */
static struct k_cudnn_attn *ca_state(k_cuda_ctx *ctx)
{
    if (ctx->cudnn)
        return ctx->cudnn;
    struct k_cudnn_attn *ca = (struct k_cudnn_attn *)calloc(1, sizeof *ca);
    if (!ca)
        return NULL;
    cudnnStatus_t st = cudnnCreate(&ca->handle);
    if (st == CUDNN_STATUS_SUCCESS && (st = cudnnSetStream(ca->handle, ctx->stream)) !=
                                          CUDNN_STATUS_SUCCESS) {
        cudnnDestroy(ca->handle);
        ca->handle = NULL;
    }
    if (st != CUDNN_STATUS_SUCCESS) {
        ca->handle = NULL;
        snprintf(ca->broken, sizeof ca->broken, "cudnnCreate/cudnnSetStream: %s",
                 cudnnGetErrorString(st));
    }
    ctx->cudnn = ca;
    return ca;
}

static int ca_align(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    int al = 16;
    while (al > 1 && (a & (uintptr_t)(al - 1)))
        al >>= 1;
    return al;
}

static int ca_key_eq(const ca_key *a, const ca_key *b)
{
    return a->B == b->B && a->Nq == b->Nq && a->Nk == b->Nk && a->h == b->h && a->d == b->d &&
           a->causal == b->causal && a->scale == b->scale && a->dt == b->dt && a->align == b->align;
}

/* The cached entry for key, built on a miss (evicting round-robin); NULL on an error. */
static ca_plan *ca_lookup(k_cuda_ctx *ctx, const ca_key *key)
{
    struct k_cudnn_attn *ca = ca_state(ctx);
    if (!ca) {
        k_cuda_set_error(__FILE__, __LINE__, "k_cuda_attention_cudnn", "out of host memory");
        return NULL;
    }
    for (int i = 0; i < CA_PLANS; i++)
        if (ca->plans[i].state != CA_EMPTY && ca_key_eq(&ca->plans[i].key, key))
            return &ca->plans[i];
    ca_plan *p = &ca->plans[ca->next];
    ca->next = (ca->next + 1) % CA_PLANS;
    if (p->state == CA_READY) {
        /* Work queued on the stream may still run this plan's kernels. */
        cudaError_t e = cudaStreamSynchronize(ctx->stream);
        if (e != cudaSuccess) {
            k_cuda_set_error(__FILE__, __LINE__, "cudaStreamSynchronize", cudaGetErrorString(e));
            return NULL;
        }
    }
    ca_plan_release(p);
    p->key = *key;
    p->state = CA_UNSUPPORTED;
    if (!ca->handle)
        snprintf(p->why, sizeof p->why, "%s", ca->broken);
    else if (ca_plan_build(ca->handle, p, p->why, sizeof p->why) == 0)
        p->state = CA_READY;
    return p;
}

extern "C" int k_cuda_attention_cudnn(k_cuda_ctx *ctx, k_dtype dt, void *o, const void *q,
                                      const void *k, const void *v, int64_t B, int64_t Nq,
                                      int64_t Nk, int64_t h, int64_t d, float scale, int causal)
{
    if (dt != K_BF16) {
        k_cuda_set_error(__FILE__, __LINE__, "k_cuda_attention_cudnn", "BF16 only");
        return 1;
    }
    if (B <= 0 || Nq <= 0 || Nk <= 0 || h <= 0 || d <= 0) {
        k_cuda_set_error(__FILE__, __LINE__, "k_cuda_attention_cudnn", "empty shape");
        return 1;
    }
    ca_key key;
    memset(&key, 0, sizeof key);
    key.B = B, key.Nq = Nq, key.Nk = Nk, key.h = h, key.d = d;
    key.causal = !!causal, key.scale = scale, key.dt = dt;
    int a = ca_align(q), t;
    if ((t = ca_align(k)) < a)
        a = t;
    if ((t = ca_align(v)) < a)
        a = t;
    if ((t = ca_align(o)) < a)
        a = t;
    key.align = a;
    if (a < 16) {
        /* Seen on an H100 (cuDNN 9, 2026-12-07): plans build for such pointers and then compute
         * garbage, so the call goes to the other kernels. */
        k_cuda_set_error(__FILE__, __LINE__, "k_cuda_attention_cudnn",
                         "q, k, v and o must be 16-byte aligned");
        return 1;
    }

    ca_plan *p = ca_lookup(ctx, &key);
    if (!p)
        return -1; /* the error is recorded */
    if (p->state != CA_READY) {
        k_cuda_set_error(__FILE__, __LINE__, "k_cuda_attention_cudnn: no plan", p->why);
        return 1;
    }

    /* Workspace: the cuBLAS one when it fits (same stream, so never in use concurrently). */
    void *ws = NULL;
    if (p->workspace > 0) {
        if ((size_t)p->workspace <= ctx->workspace_size)
            ws = ctx->workspace;
        else if (!(ws = k_cuda_ctx_scratch(ctx, (size_t)p->workspace)))
            return -1;
    }

    /* By-value scalars are read from host memory when the plan is enqueued. The mask value is
     * what cudnn-frontend passes: -inf from cuDNN 9.10, the lowest float before. */
    float scale_v = scale, neg_inf = cudnnGetVersion() >= 91000 ? -INFINITY : -FLT_MAX;
    int64_t uids[6] = {CA_Q, CA_K, CA_V, CA_O, CA_SCALE, CA_NEG_INF};
    void *ptrs[6] = {(void *)q, (void *)k, (void *)v, o, &scale_v, &neg_inf};
    int64_t n = causal ? 6 : 5;
    cudnnBackendDescriptor_t pack = NULL;
    cudnnStatus_t st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack);
    const char *what = "cudnnBackendCreateDescriptor(variant pack)";
    if (st == CUDNN_STATUS_SUCCESS) {
        what = "cudnnBackendSetAttribute(variant pack)";
        if ((st = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS,
                                           CUDNN_TYPE_INT64, n, uids)) == CUDNN_STATUS_SUCCESS &&
            (st = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                                           CUDNN_TYPE_VOID_PTR, n, ptrs)) == CUDNN_STATUS_SUCCESS &&
            (st = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE,
                                           CUDNN_TYPE_VOID_PTR, 1, &ws)) == CUDNN_STATUS_SUCCESS) {
            what = "cudnnBackendFinalize(variant pack)";
            if ((st = cudnnBackendFinalize(pack)) == CUDNN_STATUS_SUCCESS) {
                what = "cudnnBackendExecute";
                st = cudnnBackendExecute(ctx->cudnn->handle, p->plan, pack);
            }
        }
        cudnnBackendDestroyDescriptor(pack);
    }
    if (st != CUDNN_STATUS_SUCCESS) {
        char msg[256] = "", full[400];
        cudnnGetLastErrorString(msg, sizeof msg);
        snprintf(full, sizeof full, "%s%s%s", cudnnGetErrorString(st), msg[0] ? ": " : "", msg);
        k_cuda_set_error(__FILE__, __LINE__, what, full);
        return -1;
    }
    K_LAUNCH_CHECK();
    ctx->attn_cudnn_runs++;
    return 0;
}

#endif /* TTTD_CUDNN */
