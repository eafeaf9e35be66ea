"""rng.py - the project's seeded normal generator (engine/core/rng.h), in plain Python integers.

Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel Random Numbers: As Easy as 1, 2, 3",
SC11) with Box-Muller, exactly as the engine specifies it:

  key     = (seed & 0xffffffff, seed >> 32)              seed a 64-bit unsigned integer
  counter = (i & 0xffffffff, i >> 32, 0, 0)              block i = 0, 1, 2, ...
  block i -> r0, r1, r2, r3 (uint32)
  n[4i+0], n[4i+1] from (r0, r1); n[4i+2], n[4i+3] from (r2, r3), by Box-Muller in double:
      u1 = (r0 + 1.0) / 2^32   (in (0, 1], so the log is finite)
      u2 = r1 / 2^32           (in [0, 1))
      rad = sqrt(-2 ln u1);  n0 = rad cos(2 pi u2);  n1 = rad sin(2 pi u2)
  each rounded to float32 (round to nearest even).

2 pi u2 is evaluated as (2 * pi) * u2; doubling is exact, so any grouping gives the same double.
Python's math module calls the C library's log/sqrt/cos/sin, so on one libm this matches C.

A sample's initial latent [C, H, W] (row-major) takes the first C*H*W normals of its own seed.
"""
import math
import struct

M0 = 0xD2511F53
M1 = 0xCD9E8D57
W0 = 0x9E3779B9
W1 = 0xBB67AE85
MASK32 = 0xFFFFFFFF
TWO_POW_32 = 4294967296.0

# Random123's published Philox4x32-10 known-answer vectors (its tests/kat_vectors, quoted by
# TensorFlow's stateful_random_ops test and Random123-Boost's test_philox.cpp):
# (counter, key, output).
KAT_VECTORS = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def philox4x32_10(counter, key):
    """The 4 uint32 outputs of Philox4x32-10 for a 4-word counter and a 2-word key."""
    c0, c1, c2, c3 = (int(v) & MASK32 for v in counter)
    k0, k1 = (int(v) & MASK32 for v in key)
    for rnd in range(10):
        if rnd > 0:  # the key is bumped between rounds: after each of the first 9
            k0 = (k0 + W0) & MASK32
            k1 = (k1 + W1) & MASK32
        p0 = M0 * c0  # 64-bit products: hi = p >> 32, lo = p & MASK32
        p1 = M1 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0, p1 & MASK32, (p0 >> 32) ^ c3 ^ k1, p0 & MASK32)
    return c0, c1, c2, c3


def block(seed, i):
    """The 4 uint32 of block i for a seed."""
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    return philox4x32_10((i & MASK32, (i >> 32) & MASK32, 0, 0), (seed & MASK32, seed >> 32))


def _to_f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def box_muller(ra, rb):
    """Two normals (float32 values as Python floats) from two uint32."""
    u1 = (ra + 1.0) / TWO_POW_32
    u2 = rb / TWO_POW_32
    rad = math.sqrt(-2.0 * math.log(u1))
    ang = (2.0 * math.pi) * u2
    return _to_f32(rad * math.cos(ang)), _to_f32(rad * math.sin(ang))


def normals(seed, count):
    """The first count normals of a seed, a list of float32 values held as Python floats."""
    out = []
    i = 0
    while len(out) < count:
        r0, r1, r2, r3 = block(seed, i)
        out.extend(box_muller(r0, r1))
        out.extend(box_muller(r2, r3))
        i += 1
    return out[:count]


def latent(seed, shape):
    """A torch float32 tensor of the given shape filled row-major with the seed's normals."""
    import torch

    n = 1
    for s in shape:
        n *= s
    return torch.tensor(normals(seed, n), dtype=torch.float32).reshape(shape)


def self_check():
    """Raises AssertionError when the Philox core misses a known-answer vector."""
    for ctr, key, want in KAT_VECTORS:
        got = philox4x32_10(ctr, key)
        assert got == want, "Philox4x32-10 KAT: counter %s key %s gave %s, want %s" % (
            [hex(v) for v in ctr], [hex(v) for v in key], [hex(v) for v in got],
            [hex(v) for v in want])


if __name__ == "__main__":
    self_check()
    print("Philox4x32-10 known-answer vectors: ok")
    print("seed 0, first 8 normals:", ["%.7f" % v for v in normals(0, 8)])
