"""Result files of the PyTorch suite, readable without torch or numpy.

A run's output directory holds:
  status.json       {"meta": {...}, "order": [case...],
                     "cases": {case: {"status": "running"|"ok"|"error",
                                      "error": "Type: message", "seconds": s}}}
                    rewritten (atomically) when a case starts and ends, so a
                    crash or a kill leaves the case it died in as "running".
  <case>.json       {"values": tree}; a tree is a JSON value in which each
                    tensor is {"__tensor__": [dtype, shape, offset, nbytes]}
  <case>.bin        the tensors' bytes (C-contiguous, little-endian) at those
                    offsets

The writer takes Blob objects for tensors (torch_suite.py converts), so this
module never imports torch.
"""
import array
import json
import math
import os
import struct

STATUS_FILE = "status.json"


class Blob:
    """A tensor as raw bytes: dtype name (torch's, without 'torch.'), shape."""

    __slots__ = ("dtype", "shape", "data")

    def __init__(self, dtype, shape, data):
        self.dtype, self.shape, self.data = dtype, list(shape), data


def _encode(value, blobs, offset):
    if isinstance(value, Blob):
        blobs.append(value.data)
        node = {"__tensor__": [value.dtype, value.shape, offset[0], len(value.data)]}
        offset[0] += len(value.data)
        return node
    if isinstance(value, dict):
        return {str(k): _encode(v, blobs, offset) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, blobs, offset) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError("cannot store a result of type %s" % type(value).__name__)


def _write_atomic(path, data, mode="w"):
    tmp = path + ".tmp"
    with open(tmp, mode) as f:
        f.write(data)
    os.replace(tmp, path)


def write_case(outdir, name, values):
    blobs, offset = [], [0]
    tree = _encode(values, blobs, offset)
    _write_atomic(os.path.join(outdir, name + ".bin"), b"".join(blobs), "wb")
    _write_atomic(os.path.join(outdir, name + ".json"), json.dumps({"values": tree}))


def read_case(outdir, name):
    """Returns the value tree with tensors as Tensor objects."""
    with open(os.path.join(outdir, name + ".json")) as f:
        tree = json.load(f)["values"]
    bin_path = os.path.join(outdir, name + ".bin")
    data = b""
    if os.path.exists(bin_path):
        with open(bin_path, "rb") as f:
            data = f.read()
    return _decode(tree, data)


def _decode(node, data):
    if isinstance(node, dict):
        if set(node) == {"__tensor__"}:
            dtype, shape, off, n = node["__tensor__"]
            return Tensor(dtype, shape, data[off:off + n])
        return {k: _decode(v, data) for k, v in node.items()}
    if isinstance(node, list):
        return [_decode(v, data) for v in node]
    return node


def read_status(outdir):
    path = os.path.join(outdir, STATUS_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_status(outdir, status):
    _write_atomic(os.path.join(outdir, STATUS_FILE), json.dumps(status, indent=1))


class Tensor:
    """A stored tensor: bytes plus dtype and shape; decodes to floats on demand."""

    def __init__(self, dtype, shape, data):
        self.dtype, self.shape, self.data = dtype, list(shape), data

    def numel(self):
        n = 1
        for s in self.shape:
            n *= s
        return n

    def is_floating(self):
        return self.dtype in _FLOAT_DECODERS

    def values(self):
        """The elements as Python numbers (floats for floating dtypes)."""
        if self.dtype in _FLOAT_DECODERS:
            return _FLOAT_DECODERS[self.dtype](self.data)
        if self.dtype in _INT_CODES:
            return list(array.array(_INT_CODES[self.dtype], self.data))
        raise ValueError("cannot decode dtype %s" % self.dtype)


def _bf16(data):
    halves = array.array("H", data)
    words = array.array("I", (h << 16 for h in halves))
    return list(array.array("f", words.tobytes()))


def _complex(code):
    def dec(data):
        parts = array.array(code, data)
        return [complex(parts[i], parts[i + 1]) for i in range(0, len(parts), 2)]
    return dec


_FLOAT_DECODERS = {
    "float32": lambda d: list(array.array("f", d)),
    "float64": lambda d: list(array.array("d", d)),
    "float16": lambda d: list(struct.unpack("<%de" % (len(d) // 2), d)),
    "bfloat16": _bf16,
    "complex64": _complex("f"),
    "complex128": _complex("d"),
}
_INT_CODES = {"int64": "q", "int32": "i", "int16": "h", "int8": "b", "uint8": "B", "bool": "B"}
for _code in _INT_CODES.values():
    assert array.array(_code).itemsize in (1, 2, 4, 8)
assert array.array("q").itemsize == 8 and array.array("i").itemsize == 4


def float_errors(native, wooly):
    """(max_abs_err, max_rel_err, nan_mismatch, inf_mismatch) between two equal-length
    sequences of numbers. Relative error is |w - n| / max(|n|, 1e-12)."""
    max_abs = max_rel = 0.0
    nan_mismatch = inf_mismatch = 0
    for n, w in zip(native, wooly):
        if isinstance(n, complex) or isinstance(w, complex):
            d = abs(complex(w) - complex(n))
            ref = abs(complex(n))
        else:
            n_nan, w_nan = math.isnan(n), math.isnan(w)
            if n_nan or w_nan:
                nan_mismatch += n_nan != w_nan
                continue
            if math.isinf(n) or math.isinf(w):
                inf_mismatch += n != w
                continue
            d = abs(w - n)
            ref = abs(n)
        if d > max_abs:
            max_abs = d
        r = d / max(ref, 1e-12)
        if r > max_rel:
            max_rel = r
    return max_abs, max_rel, nan_mismatch, inf_mismatch


def within(native, wooly, rtol, atol):
    """Number of elements outside |w - n| <= atol + rtol*|n| (NaN/inf must match)."""
    bad = 0
    for n, w in zip(native, wooly):
        if isinstance(n, complex) or isinstance(w, complex):
            if not abs(complex(w) - complex(n)) <= atol + rtol * abs(complex(n)):
                bad += 1
            continue
        if math.isnan(n) or math.isnan(w):
            bad += math.isnan(n) != math.isnan(w)
        elif math.isinf(n) or math.isinf(w):
            bad += n != w
        elif not abs(w - n) <= atol + rtol * abs(n):
            bad += 1
    return bad
