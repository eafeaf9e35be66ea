/*
 * dev/attention.cu - the attention kernel versions side by side: each checked against the CPU
 * reference (kernels/cpu/attention.c) on fresh random data, then timed with CUDA events.
 *
 *   build/dev/attention [--B 2] [--N 4429] [--h 24] [--d 64] [--check-N 300] [--reps 20]
 *
 * Shapes: q, k, v, o [B, N, h*d], bf16 storage, fp32 softmax. Versions:
 *   1  the production kernel k_cuda_attention_kernel picks for the shape (kernels/cuda/attention.cu)
 *   2  the cuBLAS path of the same file (scores, softmax, P v), forced through ctx.tuning
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

/* Runs version v on device buffers; 0 or -1. */
static int run_version(int v, k_cuda_ctx *ctx, void *o, const void *q, const void *k,
                       const void *vv, int64_t B, int64_t N, int64_t h, int64_t d)
{
    ctx->tuning.attn_force_gemm = v == 2;
    int rc = k_cuda_attention(ctx, K_BF16, o, q, k, vv, NULL, B, N, N, h, d, 1.0f / sqrtf((float)d), 0);
    ctx->tuning.attn_force_gemm = 0;
    return rc;
}

static const char *version_name(int v, const k_cuda_ctx *ctx, int64_t B, int64_t h, int64_t d)
{
    if (v == 2)
        return "cuBLAS scores + softmax + P v";
    return k_cuda_attention_kernel(ctx, B, h, d) == K_ATTN_GEMM ? "production (gemm for this shape)"
                                                                 : "production fused online softmax";
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

static int check_version(int v, k_cuda_ctx *ctx, int64_t B, int64_t n, int64_t h, int64_t d)
{
    const int64_t count = B * n * h * d;
    std::vector<float> host[3], ref(count), got(count);
    void *dev[3], *o;
    make_inputs(count, host, dev);
    CHECK_CUDA(cudaMalloc(&o, count * 2));
    CHECK_CUDA(cudaMemset(o, 0xff, count * 2)); /* NaN: every element must be written */
    if (run_version(v, ctx, o, dev[0], dev[1], dev[2], B, n, h, d)) {
        fprintf(stderr, "version %d: %s\n", v, k_cuda_last_error());
        return -1;
    }
    std::vector<uint16_t> bits(count);
    CHECK_CUDA(cudaMemcpy(bits.data(), o, count * 2, cudaMemcpyDeviceToHost));
    k_cpu_bf16_to_f32(got.data(), bits.data(), count);
    if (k_cpu_attention(ref.data(), host[0].data(), host[1].data(), host[2].data(), NULL, B, n, n,
                        h, d, 1.0f / sqrtf((float)d), 0))
        return -1;
    double num = 0, den = 0;
    int nan = 0;
    for (int64_t i = 0; i < count; i++) {
        nan |= !isfinite(got[i]);
        num += (got[i] - ref[i]) * (double)(got[i] - ref[i]);
        den += ref[i] * (double)ref[i];
    }
    double nmse = num / (den > 0 ? den : 1);
    int ok = !nan && nmse <= 1e-4;
    printf("  check v%d at N=%lld: nMSE %.2e%s %s\n", v, (long long)n, nmse, nan ? " (NaN)" : "",
           ok ? "ok" : "FAIL");
    for (int t = 0; t < 3; t++)
        CHECK_CUDA(cudaFree(dev[t]));
    CHECK_CUDA(cudaFree(o));
    return ok ? 0 : -1;
}

static double time_version(int v, k_cuda_ctx *ctx, int64_t B, int64_t N, int64_t h, int64_t d, int reps)
{
    const int64_t count = B * N * h * d;
    std::vector<float> host[3];
    void *dev[3], *o;
    make_inputs(count, host, dev);
    CHECK_CUDA(cudaMalloc(&o, count * 2));
    cudaEvent_t a, b;
    CHECK_CUDA(cudaEventCreate(&a));
    CHECK_CUDA(cudaEventCreate(&b));
    std::vector<float> ms;
    for (int r = 0; r < reps + 3; r++) {
        CHECK_CUDA(cudaEventRecord(a, ctx->stream));
        if (run_version(v, ctx, o, dev[0], dev[1], dev[2], B, N, h, d))
            return -1;
        CHECK_CUDA(cudaEventRecord(b, ctx->stream));
        CHECK_CUDA(cudaEventSynchronize(b));
        float t;
        CHECK_CUDA(cudaEventElapsedTime(&t, a, b));
        if (r >= 3)
            ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    for (int t = 0; t < 3; t++)
        CHECK_CUDA(cudaFree(dev[t]));
    CHECK_CUDA(cudaFree(o));
    CHECK_CUDA(cudaEventDestroy(a));
    CHECK_CUDA(cudaEventDestroy(b));
    return ms[ms.size() / 2];
}

int main(int argc, char **argv)
{
    long long B = 2, N = 4429, h = 24, d = 64, check_n = 300, reps = 20;
    for (int i = 1; i + 1 < argc; i += 2) {
        long long *dst = !strcmp(argv[i], "--B") ? &B : !strcmp(argv[i], "--N") ? &N
                       : !strcmp(argv[i], "--h") ? &h : !strcmp(argv[i], "--d") ? &d
                       : !strcmp(argv[i], "--check-N") ? &check_n : !strcmp(argv[i], "--reps") ? &reps
                       : NULL;
        if (!dst || (*dst = atoll(argv[i + 1])) <= 0) {
            fprintf(stderr, "usage: %s [--B n] [--N n] [--h n] [--d n] [--check-N n] [--reps n]\n", argv[0]);
            return 2;
        }
    }
    k_cuda_ctx ctx;
    if (k_cuda_ctx_init(&ctx, 0)) {
        fprintf(stderr, "%s\n", k_cuda_last_error());
        return 1;
    }
    printf("attention B=%lld N=%lld h=%lld d=%lld bf16\n", B, N, h, d);
    int fails = 0;
    for (int v = 1; v <= 2; v++) {
        if (check_version(v, &ctx, B, check_n, h, d)) {
            fails++;
            continue;
        }
        double ms = time_version(v, &ctx, B, N, h, d, (int)reps);
        double tflops = 4.0 * B * h * (double)N * N * d / (ms * 1e-3) / 1e12;
        printf("v%d %-34s %9.3f ms %7.1f TFLOP/s\n", v, version_name(v, &ctx, B, h, d), ms, tflops);
    }
    k_cuda_ctx_free(&ctx);
    return fails ? 1 : 0;
}
