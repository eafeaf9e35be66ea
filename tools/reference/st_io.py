"""st_io.py - a minimal safetensors reader and writer for the PyTorch reference.

The `safetensors` package is not installed on the reference machine, so this module reads and
writes the format directly: an 8-byte little-endian header length, a JSON header mapping each
tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (plus an optional
"__metadata__" object of strings), then the raw little-endian data.

The writer is deterministic, so that `make fixtures` run twice gives byte-identical files:
header keys in name order, compact JSON, tensors laid out in name order with no gaps, the header
padded with spaces to a multiple of 8 bytes (as the reference implementation and
engine/io/safetensors_write.c do).
"""
import json
import struct

import numpy as np
import torch

# safetensors dtype name -> (numpy little-endian dtype, torch dtype). BF16 has no numpy dtype:
# it is read as uint16 and widened by hand.
_DTYPES = {
    "F64": ("<f8", torch.float64),
    "F32": ("<f4", torch.float32),
    "F16": ("<f2", torch.float16),
    "BF16": ("<u2", torch.bfloat16),
    "I64": ("<i8", torch.int64),
    "I32": ("<i4", torch.int32),
    "I16": ("<i2", torch.int16),
    "I8": ("<i1", torch.int8),
    "U8": ("<u1", torch.uint8),
}
_BY_TORCH = {tdt: name for name, (_, tdt) in _DTYPES.items()}


def _to_bytes(t):
    """Raw little-endian bytes of a CPU tensor in its own dtype."""
    t = t.detach().to("cpu").contiguous()
    name = _BY_TORCH.get(t.dtype)
    if name is None:
        raise ValueError("dtype %s has no safetensors name" % t.dtype)
    if name == "BF16":
        return name, t.view(torch.int16).numpy().astype("<i2").tobytes()
    return name, t.numpy().astype(_DTYPES[name][0]).tobytes()


def dumps(tensors, metadata=None):
    """The bytes of a safetensors file holding tensors (a dict name -> torch.Tensor)."""
    header = {}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        if name == "__metadata__":
            raise ValueError("a tensor cannot be named __metadata__")
        dtype, raw = _to_bytes(tensors[name])
        header[name] = {
            "dtype": dtype,
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def save(path, tensors, metadata=None):
    with open(path, "wb") as f:
        f.write(dumps(tensors, metadata))


def loads(blob):
    """(tensors, metadata) from the bytes of a safetensors file; tensors keep the file's order."""
    if len(blob) < 8:
        raise ValueError("safetensors: file shorter than its 8-byte header length")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise ValueError("safetensors: header length %d runs past the end of the file" % n)
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    metadata = header.pop("__metadata__", None) or {}
    tensors = {}
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        np_dt, t_dt = _DTYPES[e["dtype"]]
        begin, end = e["data_offsets"]
        count = int(np.prod(e["shape"], dtype=np.int64))
        if end - begin != count * np.dtype(np_dt).itemsize or end > len(data):
            raise ValueError("safetensors: %s: data_offsets do not match its shape" % name)
        arr = np.frombuffer(data[begin:end], dtype=np_dt).reshape(e["shape"]).copy()
        if e["dtype"] == "BF16":
            t = torch.from_numpy(arr.astype(np.int16)).view(torch.bfloat16)
        else:
            t = torch.from_numpy(arr.astype(np_dt[1:]))
        tensors[name] = t.to(t_dt)
    return tensors, metadata


def load(path):
    """The tensors of a safetensors file (a dict name -> torch.Tensor)."""
    with open(path, "rb") as f:
        return loads(f.read())[0]
