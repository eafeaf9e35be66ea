/*
 * rng.c - Philox4x32-10 and the Box-Muller normals of engine/core/rng.h (the definition is there).
 *
 * Every normal is a pure function of (seed, index), so the loops below may run in any order or
 * in parallel and still give the same numbers.
 */
#include "engine/core/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* Below this many normals, starting threads costs more than it saves. */
#define RNG_PARALLEL_MIN 65536

void eng_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        if (round < 9) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

/* The four normals of block i of seed (key already split). */
static void normal_block(const uint32_t key[2], uint64_t i, float n[4])
{
    const uint32_t ctr[4] = {(uint32_t)i, (uint32_t)(i >> 32), 0, 0};
    uint32_t r[4];
    eng_philox4x32_10(ctr, key, r);
    /* 2^-32; u1 is never 0, so log(u1) is finite. All three products below are exact. */
    const double inv32 = 1.0 / 4294967296.0;
    const double two_pi = 6.283185307179586;
    for (int pair = 0; pair < 2; pair++) {
        double u1 = ((double)r[2 * pair] + 1.0) * inv32;
        double u2 = (double)r[2 * pair + 1] * inv32;
        double rad = sqrt(-2.0 * log(u1));
        double theta = two_pi * u2;
        n[2 * pair] = (float)(rad * cos(theta));
        n[2 * pair + 1] = (float)(rad * sin(theta));
    }
}

void eng_rng_normal(uint64_t seed, uint64_t offset, float *out, int64_t n)
{
    if (n <= 0)
        return;
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint64_t first = offset / 4, last = (offset + (uint64_t)n - 1) / 4;
    int64_t nblocks = (int64_t)(last - first) + 1;

    /* Block by block, writing only the part of each block inside [offset, offset + n). */
#pragma omp parallel for schedule(static) if (n >= RNG_PARALLEL_MIN)
    for (int64_t bi = 0; bi < nblocks; bi++) {
        uint64_t blk = first + (uint64_t)bi;
        float v[4];
        normal_block(key, blk, v);
        for (int j = 0; j < 4; j++) {
            uint64_t idx = blk * 4 + (uint64_t)j;
            if (idx >= offset && idx - offset < (uint64_t)n)
                out[idx - offset] = v[j];
        }
    }
}

void eng_rng_latents_seeds(float *out, int64_t B, int64_t C, int64_t H, int64_t W,
                           const uint64_t *seeds)
{
    int64_t per = C * H * W;
    for (int64_t b = 0; b < B; b++)
        eng_rng_normal(seeds[b], 0, out + b * per, per);
}

void eng_rng_latents(float *out, int64_t B, int64_t C, int64_t H, int64_t W, uint64_t seed)
{
    int64_t per = C * H * W;
    for (int64_t b = 0; b < B; b++)
        eng_rng_normal(seed + (uint64_t)b, 0, out + b * per, per);
}
