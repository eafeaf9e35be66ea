/*
 * dev/ttt.cu - the TTT op's versions side by side: each checked against the CPU reference
 * (kernels/cpu/ttt.c) on fresh random data, then timed with CUDA events.
 *
 *   build/dev/ttt [--B 2] [--h 24] [--d 64] [--N 0] [--check-N 1001] [--reps 20]
 *
 * Shapes: q, k, v, o [B, N, h*d], w1, w2 [h, d, d], bf16 storage. Versions:
 *   1  the path k_cuda_ttt_kernel picks for the shape (the fused tensor-core kernels of
 *      kernels/cuda/ttt_fused.cu at d = 32 / 64)
 *   2  the cuBLAS path of kernels/cuda/ttt.cu, forced through ctx.tuning.ttt_kernel
 * The check runs at N = --check-N (the CPU reference is slow at full size), the timing at --N,
 * or with --N 0 (the default) at SD3.5's 4429 and 16717 tokens (1024 and 2048 px). GB/s counts
 * q, k, v read and o written once (the memory floor); TFLOP/s counts the seven N x d x d
 * products per head.
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
static float uniform(float a) /* xorshift64*, in [-a, a) */
{
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return a * ((float)((rng * 2685821657736338717ull) >> 40) / (float)(1 << 23) - 1.0f);
}

/* Runs version v on device buffers; 0 or -1. */
static int run_version(int v, k_cuda_ctx *ctx, void *const *dev, int64_t B, int64_t N, int64_t h,
                       int64_t d)
{
    ctx->tuning.ttt_kernel = v == 2 ? K_TTT_CUBLAS : 0;
    int rc = k_cuda_ttt(ctx, K_BF16, dev[5], dev[0], dev[1], dev[2], dev[3], dev[4], B, N, h, d);
    ctx->tuning.ttt_kernel = 0;
    return rc;
}

static const char *version_name(int v, const k_cuda_ctx *ctx, int64_t B, int64_t N, int64_t h,
                                int64_t d)
{
    if (v == 2)
        return "cuBLAS fp32 (forced)";
    return k_cuda_ttt_kernel(ctx, K_BF16, B, N, h, d, 1) == K_TTT_FUSED
               ? "production: fused bf16 mma"
               : "production: cuBLAS for this shape";
}

/*
 * Random bf16 q, k, v [B, N, h*d] and w1, w2 [h, d, d] at the scales the model feeds (as
 * tests/gpu/test_gpu_ops.c), on the device (dev[0..4]; dev[5] the output, poisoned with NaN),
 * and the fp32 values they hold on the host.
 */
static void make_inputs(int64_t B, int64_t N, int64_t h, int64_t d, std::vector<float> host[5],
                        void *dev[6])
{
    const int64_t act = B * N * h * d, w = h * d * d;
    const int64_t count[5] = {act, act, act, w, w};
    const float scale[5] = {1.7f, 1.7f, 1.0f, 0.35f, 0.35f};
    for (int t = 0; t < 5; t++) {
        std::vector<uint16_t> bits(count[t]);
        host[t].resize(count[t]);
        for (int64_t i = 0; i < count[t]; i++)
            host[t][i] = uniform(scale[t]);
        k_cpu_f32_to_bf16(bits.data(), host[t].data(), count[t]);
        k_cpu_bf16_to_f32(host[t].data(), bits.data(), count[t]);
        CHECK_CUDA(cudaMalloc(&dev[t], count[t] * 2));
        CHECK_CUDA(cudaMemcpy(dev[t], bits.data(), count[t] * 2, cudaMemcpyHostToDevice));
    }
    CHECK_CUDA(cudaMalloc(&dev[5], act * 2));
    CHECK_CUDA(cudaMemset(dev[5], 0xff, act * 2));
}

static void free_inputs(void *dev[6])
{
    for (int t = 0; t < 6; t++)
        CHECK_CUDA(cudaFree(dev[t]));
}

static int check_version(int v, k_cuda_ctx *ctx, int64_t B, int64_t N, int64_t h, int64_t d)
{
    const int64_t count = B * N * h * d;
    std::vector<float> host[5], ref(count), got(count);
    std::vector<uint16_t> bits(count);
    void *dev[6];
    make_inputs(B, N, h, d, host, dev);
    if (run_version(v, ctx, dev, B, N, h, d)) {
        fprintf(stderr, "version %d: %s\n", v, k_cuda_last_error());
        return -1;
    }
    CHECK_CUDA(cudaStreamSynchronize(ctx->stream)); /* non-blocking: cudaMemcpy won't wait */
    CHECK_CUDA(cudaMemcpy(bits.data(), dev[5], count * 2, cudaMemcpyDeviceToHost));
    k_cpu_bf16_to_f32(got.data(), bits.data(), count);
    if (k_cpu_ttt(ref.data(), host[0].data(), host[1].data(), host[2].data(), host[3].data(),
                  host[4].data(), B, N, h, d))
        return -1;
    double num = 0, den = 0, maxd = 0;
    int nan = 0;
    for (int64_t i = 0; i < count; i++) {
        nan |= !isfinite(got[i]);
        const double e = (double)got[i] - ref[i];
        num += e * e;
        den += ref[i] * (double)ref[i];
        maxd = fabs(e) > maxd ? fabs(e) : maxd;
    }
    double nmse = num / (den > 0 ? den : 1);
    int ok = !nan && nmse <= 1e-4;
    printf("  check v%d at B=%lld N=%lld: nMSE %.2e max|d| %.2e%s %s\n", v, (long long)B,
           (long long)N, nmse, maxd, nan ? " (NaN)" : "", ok ? "ok" : "FAIL");
    free_inputs(dev);
    return ok ? 0 : -1;
}

/* The median time of reps runs in ms, or -1. */
static double time_version(int v, k_cuda_ctx *ctx, int64_t B, int64_t N, int64_t h, int64_t d,
                           int reps)
{
    std::vector<float> host[5];
    void *dev[6];
    make_inputs(B, N, h, d, host, dev);
    cudaEvent_t a, b;
    CHECK_CUDA(cudaEventCreate(&a));
    CHECK_CUDA(cudaEventCreate(&b));
    std::vector<float> ms;
    for (int r = 0; r < reps + 3; r++) {
        CHECK_CUDA(cudaEventRecord(a, ctx->stream));
        if (run_version(v, ctx, dev, B, N, h, d)) {
            fprintf(stderr, "version %d: %s\n", v, k_cuda_last_error());
            return -1;
        }
        CHECK_CUDA(cudaEventRecord(b, ctx->stream));
        CHECK_CUDA(cudaEventSynchronize(b));
        float t;
        CHECK_CUDA(cudaEventElapsedTime(&t, a, b));
        if (r >= 3)
            ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    free_inputs(dev);
    CHECK_CUDA(cudaEventDestroy(a));
    CHECK_CUDA(cudaEventDestroy(b));
    return ms[ms.size() / 2];
}

int main(int argc, char **argv)
{
    long long B = 2, N = 0, h = 24, d = 64, check_n = 1001, reps = 20;
    for (int i = 1; i < argc; i++) {
        long long *dst = !strcmp(argv[i], "--B") ? &B : !strcmp(argv[i], "--N") ? &N
                       : !strcmp(argv[i], "--h") ? &h : !strcmp(argv[i], "--d") ? &d
                       : !strcmp(argv[i], "--check-N") ? &check_n : !strcmp(argv[i], "--reps") ? &reps
                       : NULL;
        if (!dst || i + 1 >= argc || (*dst = atoll(argv[++i])) < (dst == &N ? 0 : 1)) {
            fprintf(stderr, "usage: %s [--B n] [--N n (0: 4429 and 16717)] [--h n] [--d n] "
                            "[--check-N n] [--reps n]\n", argv[0]);
            return 2;
        }
    }
    k_cuda_ctx ctx;
    if (k_cuda_ctx_init(&ctx, 0)) {
        fprintf(stderr, "%s\n", k_cuda_last_error());
        return 1;
    }
    const long long Ns[2] = {N ? N : 4429, 16717};
    const int nN = N ? 1 : 2;
    printf("ttt B=%lld h=%lld d=%lld bf16, %d SMs\n", B, h, d, ctx.sm_count);
    int fails = 0;
    for (int v = 1; v <= 2; v++) {
        if (check_version(v, &ctx, B, check_n, h, d) || check_version(v, &ctx, 1, 77, h, d)) {
            fails++;
            continue;
        }
        for (int i = 0; i < nN; i++) {
            const double ms = time_version(v, &ctx, B, Ns[i], h, d, (int)reps);
            if (ms < 0) {
                fails++;
                continue;
            }
            const double bytes = 4.0 * B * Ns[i] * h * d * 2;
            const double flops = 14.0 * B * h * Ns[i] * d * d;
            printf("v%d %-34s N=%-6lld %9.4f ms %8.1f GB/s %7.1f TFLOP/s\n", v,
                   version_name(v, &ctx, B, Ns[i], h, d), Ns[i], ms, bytes / (ms * 1e-3) / 1e9,
                   flops / (ms * 1e-3) / 1e12);
        }
    }
    k_cuda_ctx_free(&ctx);
    return fails ? 1 : 0;
}
