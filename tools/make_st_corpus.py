#!/usr/bin/env python3
"""make_st_corpus.py - writes the seed corpus of tests/fuzz/fuzz_safetensors.c.

Small safetensors images, valid and broken, into tests/fuzz/corpus/safetensors/
(or the folder given as the first argument). Standard library only; the
header layout follows the format's public description: 8-byte little-endian
header length, JSON header, data section.
"""
import json
import os
import struct
import sys


def image(header, data=b"", pad=True, hlen=None):
    """A file image from a header (dict or raw str) and data bytes."""
    text = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    raw = text.encode("utf-8")
    if pad:
        raw += b" " * (-len(raw) % 8)
    n = len(raw) if hlen is None else hlen
    return struct.pack("<Q", n) + raw + data


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


SEEDS = {
    # Valid.
    "valid_f32": image({"w": entry("F32", [2, 2], 0, 16)}, f32(1, 2, 3, 4)),
    "valid_mixed": image(
        {
            "__metadata__": {"format": "pt", "note": "seed"},
            "a.weight": entry("F32", [3], 0, 12),
            "ids": entry("I32", [2], 12, 20),
            "b.half": entry("F16", [2, 1], 20, 24),
            "c.bf16": entry("BF16", [3], 24, 30),
            "empty": entry("BF16", [0, 4], 30, 30),
            "scalar": entry("F16", [], 30, 32),
        },
        f32(1.5, -2, 0.25) + struct.pack("<2i", 7, -1)
        + bytes.fromhex("003c00c0") + bytes.fromhex("803f0040c0bf") + bytes.fromhex("0038"),
    ),
    "valid_gaps_odd": image(
        {"x": entry("BF16", [2], 1, 5), "y": entry("F32", [1], 9, 13)}, bytes(range(13)), pad=False
    ),
    "valid_empty": image({}),
    # Broken.
    "bad_json": image('{"w": {"dtype": "F32", "shape": [1], ', f32(1)),
    "not_object": image("[1, 2, 3]"),
    "entry_not_object": image('{"w": 5}'),
    "dtype_f64": image({"w": entry("F64", [1], 0, 8)}, bytes(8)),
    "dtype_unknown": image({"w": entry("Q7", [1], 0, 4)}, bytes(4)),
    "shape_negative": image('{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', bytes(4)),
    "rank7": image({"w": entry("F32", [1] * 7, 0, 4)}, bytes(4)),
    "size_mismatch": image({"w": entry("F32", [3], 0, 8)}, bytes(8)),
    "end_beyond": image({"w": entry("F32", [4], 0, 16)}, bytes(8)),
    "begin_after_end": image({"w": entry("F32", [0], 8, 4)}, bytes(8)),
    "overlap": image({"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)}, bytes(12)),
    "numel_overflow": image({"w": entry("F32", [2**40, 2**40, 2**40], 0, 0)}),
    "meta_not_string": image({"__metadata__": {"k": 1}}),
    "hlen_beyond_file": image({"w": entry("F32", [1], 0, 4)}, bytes(4), hlen=4096),
    "hlen_zero": image("{}", hlen=0),
    "short": b"\x10\x00\x00",
}


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests/fuzz/corpus/safetensors")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        assert len(data) < 4096, name
        with open(os.path.join(out, name + ".safetensors"), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(SEEDS), out))


if __name__ == "__main__":
    main()
