/*
 * dev/attention.cu - the attention kernel versions side by side: each checked against the CPU
 * reference (kernels/cpu/attention.c) on fresh random data, then timed with CUDA events.
 *
 *   build/dev/attention [--B 2] [--N 4429] [--h 24] [--d 64] [--causal 0] [--check-N 300]
 *                       [--reps 20]
 *
 * Shapes: q, k, v, o [B, N, h*d], bf16 storage, fp32 softmax. Versions:
 *   1  the path k_cuda_attention_kernel picks for the shape (kernels/cuda/attention.cu)
 *   2  the cuBLAS path of the same file (scores, softmax, P v), forced through ctx.tuning
 *   3  the fused online-softmax kernel of the same file (d = 32 or 64), forced likewise
 *   4  cuDNN's fused flash attention (attention_cudnn.cu), called directly so that a shape it
 *      has no plan for shows as such instead of falling back
 * One table: time (median), TFLOP/s (4 B h N^2 d flops, half that when causal), the nMSE against
 * the CPU reference at N = --check-N, and the nMSE at the timed N against version 2's output.
 * A new kernel under development gets the next number here (its own __global__ code in this
 * file), is checked and timed beside the others, and moves into kernels/cuda/ with a row in the
 * dispatch function and in tests/kernels/cuda/test_gpu_ops.c once it wins.
 * The check runs at N = --check-N (the CPU reference is slow at full size); the timing at --N.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>
#include <algorithm>

extern "C" {
#include "kernels/cpu/k_cpu.h"
}
#include "kernels/cuda/k_cuda.h"

#define CHECK_CUDA(call)                                                                     \
    do {                                                                                     \
        cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess) {                                                             \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,                    \
                    cudaGetErrorString(e_));                                                 \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float uniform(void) /* xorshift64*, in [-1, 1) */
{
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return (float)((rng * 2685821657736338717ull) >> 40) / (float)(1 << 23) - 1.0f;
}

#define N_VERSIONS 4

/* Runs version v on device buffers: 0, -1 on an error, 1 when the version cannot run the shape. */
static int run_version(int v, k_cuda_ctx *ctx, void *o, const void *q, const void *k,
                       const void *vv, int64_t B, int64_t N, int64_t h, int64_t d, int causal)
{
    const float scale = 1.0f / sqrtf((float)d);
    if (v == 4) /* straight to cuDNN: no silent fallback */
        return k_cuda_attention_cudnn(ctx, K_BF16, o, q, k, vv, B, N, N, h, d, scale, causal);
    if (v == 3 && d != 32 && d != 64)
        return 1;
    ctx->tuning.attn_kernel = v == 2 ? K_ATTN_GEMM
                            : v == 3 ? (d == 32 ? K_ATTN_FUSED_D32 : K_ATTN_FUSED_D64)
                                     : K_ATTN_AUTO;
    int rc = k_cuda_attention(ctx, K_BF16, o, q, k, vv, NULL, B, N, N, h, d, scale, causal);
    ctx->tuning.attn_kernel = K_ATTN_AUTO;
    return rc;
}

static const char *version_name(int v, const k_cuda_ctx *ctx, int64_t B, int64_t N, int64_t h,
                                int64_t d, int causal)
{
    switch (v) {
    case 2:
        return "gemm: cuBLAS scores + softmax + P v";
    case 3:
        return "fused online softmax (fp32 cores)";
    case 4:
        return "cuDNN fused flash attention";
    }
    switch (k_cuda_attention_kernel(ctx, K_BF16, 0, causal, B, N, N, h, d)) {
    case K_ATTN_CUDNN:
        return "production (cudnn for this shape)";
    case K_ATTN_GEMM:
        return "production (gemm for this shape)";
    default:
        return "production (fused for this shape)";
    }
}

/* Random bf16 q, k, v of [B, n, h*d] on the device, the fp32 values they hold on the host. */
static void make_inputs(int64_t count, std::vector<float> host[3], void *dev[3])
{
    std::vector<uint16_t> bits(count);
    for (int t = 0; t < 3; t++) {
        host[t].resize(count);
        for (int64_t i = 0; i < count; i++)
            host[t][i] = uniform();
        k_cpu_f32_to_bf16(bits.data(), host[t].data(), count);
        k_cpu_bf16_to_f32(host[t].data(), bits.data(), count);
        CHECK_CUDA(cudaMalloc(&dev[t], count * 2));
        CHECK_CUDA(cudaMemcpy(dev[t], bits.data(), count * 2, cudaMemcpyHostToDevice));
    }
}

/* nMSE of got against ref (bf16 bits against fp32 values), and whether all are finite. */
static double nmse_of(const uint16_t *got_bits, const float *ref, int64_t count, int *nan)
{
    std::vector<float> got(count);
    k_cpu_bf16_to_f32(got.data(), got_bits, count);
    double num = 0, den = 0;
    *nan = 0;
    for (int64_t i = 0; i < count; i++) {
        *nan |= !isfinite(got[i]);
        num += (got[i] - ref[i]) * (double)(got[i] - ref[i]);
        den += ref[i] * (double)ref[i];
    }
    return num / (den > 0 ? den : 1);
}

/* Version v at N = n against the CPU reference: the nMSE, -1 when v cannot run it, -2 on NaN. */
static double check_version(int v, k_cuda_ctx *ctx, int64_t B, int64_t n, int64_t h, int64_t d,
                            int causal)
{
    const int64_t count = B * n * h * d;
    std::vector<float> host[3], ref(count);
    std::vector<uint16_t> bits(count);
    void *dev[3], *o;
    make_inputs(count, host, dev);
    CHECK_CUDA(cudaMalloc(&o, count * 2));
    CHECK_CUDA(cudaMemsetAsync(o, 0xff, count * 2, ctx->stream)); /* NaN: every element must be written */
    int rc = run_version(v, ctx, o, dev[0], dev[1], dev[2], B, n, h, d, causal);
    if (rc < 0) {
        fprintf(stderr, "version %d: %s\n", v, k_cuda_last_error());
        exit(1);
    }
    double nmse = -1;
    if (rc == 0) {
        /* ctx->stream is non-blocking: a plain cudaMemcpy would not wait for it. */
        CHECK_CUDA(cudaStreamSynchronize(ctx->stream));
        CHECK_CUDA(cudaMemcpy(bits.data(), o, count * 2, cudaMemcpyDeviceToHost));
        if (k_cpu_attention(ref.data(), host[0].data(), host[1].data(), host[2].data(), NULL, B, n,
                            n, h, d, 1.0f / sqrtf((float)d), causal)) {
            fprintf(stderr, "k_cpu_attention failed\n");
            exit(1);
        }
        int nan;
        nmse = nmse_of(bits.data(), ref.data(), count, &nan);
        if (nan)
            nmse = -2;
    }
    for (int t = 0; t < 3; t++)
        CHECK_CUDA(cudaFree(dev[t]));
    CHECK_CUDA(cudaFree(o));
    return nmse;
}

/* Times every version at N on the same inputs (median of reps) and compares each output with
 * the gemm version's (fp32 scores through cuBLAS: the GPU reference at sizes the CPU is too slow
 * for). ms[v] < 0: version v cannot run the shape. */
static void time_versions(k_cuda_ctx *ctx, int64_t B, int64_t N, int64_t h, int64_t d, int causal,
                          int reps, double ms_out[N_VERSIONS + 1], double vs_gemm[N_VERSIONS + 1])
{
    const int64_t count = B * N * h * d;
    std::vector<float> host[3], gemm(count);
    std::vector<uint16_t> bits(count);
    void *dev[3], *o;
    make_inputs(count, host, dev);
    CHECK_CUDA(cudaMalloc(&o, count * 2));
    cudaEvent_t a, b;
    CHECK_CUDA(cudaEventCreate(&a));
    CHECK_CUDA(cudaEventCreate(&b));
    const int order[N_VERSIONS] = {2, 1, 3, 4}; /* gemm first: the others are compared with it */
    for (int i = 0; i < N_VERSIONS; i++) {
        int v = order[i];
        std::vector<float> ms;
        ms_out[v] = vs_gemm[v] = -1;
        CHECK_CUDA(cudaMemsetAsync(o, 0xff, count * 2, ctx->stream));
        int rc = run_version(v, ctx, o, dev[0], dev[1], dev[2], B, N, h, d, causal);
        if (rc < 0) {
            fprintf(stderr, "version %d: %s\n", v, k_cuda_last_error());
            exit(1);
        }
        if (rc > 0)
            continue;
        CHECK_CUDA(cudaStreamSynchronize(ctx->stream)); /* non-blocking: cudaMemcpy won't wait */
        CHECK_CUDA(cudaMemcpy(bits.data(), o, count * 2, cudaMemcpyDeviceToHost));
        if (v == 2) {
            k_cpu_bf16_to_f32(gemm.data(), bits.data(), count);
        } else {
            int nan;
            vs_gemm[v] = nmse_of(bits.data(), gemm.data(), count, &nan);
            if (nan)
                vs_gemm[v] = INFINITY;
        }
        for (int r = 0; r < reps + 3; r++) {
            CHECK_CUDA(cudaEventRecord(a, ctx->stream));
            if (run_version(v, ctx, o, dev[0], dev[1], dev[2], B, N, h, d, causal)) {
                fprintf(stderr, "version %d: %s\n", v, k_cuda_last_error());
                exit(1);
            }
            CHECK_CUDA(cudaEventRecord(b, ctx->stream));
            CHECK_CUDA(cudaEventSynchronize(b));
            float t;
            CHECK_CUDA(cudaEventElapsedTime(&t, a, b));
            if (r >= 3)
                ms.push_back(t);
        }
        std::sort(ms.begin(), ms.end());
        ms_out[v] = ms[ms.size() / 2];
    }
    for (int t = 0; t < 3; t++)
        CHECK_CUDA(cudaFree(dev[t]));
    CHECK_CUDA(cudaFree(o));
    CHECK_CUDA(cudaEventDestroy(a));
    CHECK_CUDA(cudaEventDestroy(b));
}

int main(int argc, char **argv)
{
    long long B = 2, N = 4429, h = 24, d = 64, check_n = 300, reps = 20, causal = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        long long *dst = !strcmp(argv[i], "--B") ? &B : !strcmp(argv[i], "--N") ? &N
                       : !strcmp(argv[i], "--h") ? &h : !strcmp(argv[i], "--d") ? &d
                       : !strcmp(argv[i], "--check-N") ? &check_n : !strcmp(argv[i], "--reps") ? &reps
                       : !strcmp(argv[i], "--causal") ? &causal : NULL;
        if (!dst || (*dst = atoll(argv[i + 1])) < (dst == &causal ? 0 : 1)) {
            fprintf(stderr, "usage: %s [--B n] [--N n] [--h n] [--d n] [--causal 0|1] "
                            "[--check-N n] [--reps n]\n", argv[0]);
            return 2;
        }
    }
    k_cuda_ctx ctx;
    if (k_cuda_ctx_init(&ctx, 0)) {
        fprintf(stderr, "%s\n", k_cuda_last_error());
        return 1;
    }
    printf("attention B=%lld N=%lld h=%lld d=%lld%s bf16; check at N=%lld against the CPU,\n"
           "timing at N=%lld (median of %lld), \"vs gemm\": nMSE at N against the gemm version\n",
           B, N, h, d, causal ? " causal" : "", check_n, N, reps);
    double ms[N_VERSIONS + 1], vs_gemm[N_VERSIONS + 1];
    time_versions(&ctx, B, N, h, d, (int)causal, (int)reps, ms, vs_gemm);
    /* Causal attention computes about half the scores. */
    const double flop = 4.0 * B * h * (double)N * N * d * (causal ? 0.5 : 1.0);
    int fails = 0;
    printf("%-3s %-36s %10s %9s %12s %10s\n", "v", "path", "ms", "TFLOP/s", "nMSE (CPU)",
           "vs gemm");
    for (int v = 1; v <= N_VERSIONS; v++) {
        double nmse = check_version(v, &ctx, B, check_n, h, d, (int)causal);
        const char *name = version_name(v, &ctx, B, N, h, d, (int)causal);
        if (nmse == -1 || ms[v] < 0) {
            printf("v%-2d %-36s cannot run this shape: %s\n", v, name, k_cuda_last_error());
            continue;
        }
        int ok = nmse >= 0 && nmse <= 1e-4 && vs_gemm[v] <= 1e-4;
        fails += !ok;
        printf("v%-2d %-36s %10.3f %9.1f %12.2e %10.2e %s\n", v, name, ms[v],
               flop / (ms[v] * 1e-3) / 1e12, nmse, v == 2 ? 0.0 : vs_gemm[v], ok ? "ok" : "FAIL");
    }
    k_cuda_ctx_free(&ctx);
    return fails ? 1 : 0;
}
