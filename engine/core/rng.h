/*
 * rng.h - the project's documented random number generator: Philox4x32-10 counters turned into
 * standard normal floats by Box-Muller. It gives the initial latents of a seeded request, so a
 * seed means the same image on every machine, backend and batch composition. The definition
 * below is complete: anyone can reimplement it (tools/reference/ does, in Python) and get the
 * same numbers bit for bit, up to the last-ulp behaviour of the C library's log/sin/cos, which
 * rounding to float hides in all but (astronomically) rare cases.
 *
 * ---- The definition ----
 *
 * Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
 * SC'11; the Random123 library's philox4x32 with 10 rounds):
 *   state: counter c = (c0, c1, c2, c3), key k = (k0, k1), all uint32.
 *   one round:  (hi0, lo0) = 64-bit product 0xD2511F53 * c0, split into high and low words;
 *               (hi1, lo1) = 64-bit product 0xCD9E8D57 * c2;
 *               c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0).
 *   10 rounds; after each of the first 9 the key is bumped: k0 += 0x9E3779B9, k1 += 0xBB67AE85
 *   (mod 2^32). The output is the final c, (r0, r1, r2, r3).
 *
 * Normals of a 64-bit seed S: key = (S & 0xffffffff, S >> 32); block i = 0, 1, 2, ... runs
 * Philox on counter (i & 0xffffffff, i >> 32, 0, 0) and yields four normals
 *   n[4i + 0], n[4i + 1] from (r0, r1) and n[4i + 2], n[4i + 3] from (r2, r3),
 * each pair (a, b) by Box-Muller in double precision:
 *   u1 = (a + 1.0) / 2^32          (in (0, 1], so the log is finite)
 *   u2 = b / 2^32                  (in [0, 1))
 *   rad = sqrt(-2 ln u1);  first = rad cos(2 pi u2);  second = rad sin(2 pi u2)
 * each rounded to the nearest float.
 *
 * Latents: a sample's initial latent [C, H, W] (row-major) is n[0 .. C*H*W-1] of its own seed;
 * image k of a request with seed S uses seed S + k (mod 2^64).
 *
 * All functions are pure (no state), thread-safe, and run on the host.
 */
#ifndef TTTD_ENGINE_RNG_H
#define TTTD_ENGINE_RNG_H

#include <stdint.h>

/* One Philox4x32-10 block: out = Philox(ctr, key). Exposed for known-answer tests. */
void eng_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* out[j] = normal number (offset + j) of seed, for j in [0, n). n <= 0 writes nothing. */
void eng_rng_normal(uint64_t seed, uint64_t offset, float *out, int64_t n);

/*
 * Fills host memory out [B, C, H, W] with initial latents: sample b takes the first C*H*W normals
 * of seeds[b]. Samples are independent, so a batch made of units of different requests gives
 * each unit the latent it would get alone.
 */
void eng_rng_latents_seeds(float *out, int64_t B, int64_t C, int64_t H, int64_t W,
                           const uint64_t *seeds);

/* As eng_rng_latents_seeds with seeds[b] = seed + b (mod 2^64): the n images of one request. */
void eng_rng_latents(float *out, int64_t B, int64_t C, int64_t H, int64_t W, uint64_t seed);

#endif
