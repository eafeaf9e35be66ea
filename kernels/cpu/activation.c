/*
 * activation.c - element-wise activations (SiLU, GELU tanh/erf, quick GELU) and the row-wise
 * softmax. Element-wise ops read x[i] before writing y[i], so y may equal x.
 */
#include "kernels/cpu/k_cpu.h"
#include "kernels/cpu/k_cpu_internal.h"

#include <math.h>


/* A transcendental per element: threads pay from a few ten thousand elements. */
#define K_ACT_PAR_MIN (1 << 15)

/*
 * x * sigmoid(x) written as x / (1 + e^-x): one exp and no intermediate that can reach inf / inf
 * (as x e^x / (1 + e^x) does for large x). For very negative x the denominator overflows to
 * inf and the result is -0, the right limit.
 */
void k_cpu_silu(float *y, const float *x, int64_t n)
{
    K_OMP_PARALLEL_FOR(n > K_ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] / (1.0f + expf(-x[i]));
}

/*
 * 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3): PyTorch's approximate="tanh". Since
 * 0.5 (1 + tanh(u)) = sigmoid(2u), it is computed as x / (1 + e^(-2u)): the same function
 * without the cancellation of 1 + tanh(u) for negative x, where the textbook form loses every
 * digit (and rounds to 0 from x ~ -5). Once x^3 overflows the result is x or -0, as it should be.
 */
void k_cpu_gelu_tanh(float *y, const float *x, int64_t n)
{
    const float k0 = 2.0f * 0.7978845608028654f; /* 2 sqrt(2 / pi) */
    const float k1 = 0.044715f;
    K_OMP_PARALLEL_FOR(n > K_ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = v / (1.0f + expf(-k0 * (v + k1 * v * v * v)));
    }
}

/* 0.5 x (1 + erf(x / sqrt 2)), the exact GELU, as 0.5 x erfc(-x / sqrt 2): erfc keeps its
 * relative accuracy in the negative tail, where 1 + erf cancels. */
void k_cpu_gelu_erf(float *y, const float *x, int64_t n)
{
    const float r = 0.7071067811865476f; /* 1 / sqrt(2) */
    K_OMP_PARALLEL_FOR(n > K_ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = 0.5f * v * erfcf(-v * r);
    }
}

/* x * sigmoid(1.702 x), CLIP's activation; same overflow-safe form as SiLU. */
void k_cpu_quick_gelu(float *y, const float *x, int64_t n)
{
    K_OMP_PARALLEL_FOR(n > K_ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

/*
 * Subtracting the row max keeps every exponent <= 0, so nothing overflows and the largest term
 * is exactly 1 (the sum is >= 1: no division by zero). The exponentials are parked in y and
 * summed in double; in place is safe because x[j] is read before y[j] is written.
 */
void k_cpu_softmax(float *y, const float *x, int64_t M, int64_t N)
{
    if (N <= 0)
        return;
    K_OMP_PARALLEL_FOR(M * N > K_ACT_PAR_MIN)
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * N;
        float *yr = y + m * N;
        float mx = xr[0];
        for (int64_t j = 1; j < N; j++)
            mx = xr[j] > mx ? xr[j] : mx;
        double s = 0.0;
        for (int64_t j = 0; j < N; j++) {
            float e = expf(xr[j] - mx);
            yr[j] = e;
            s += e;
        }
        float inv = (float)(1.0 / s);
        for (int64_t j = 0; j < N; j++)
            yr[j] *= inv;
    }
}
