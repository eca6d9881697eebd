"""Exact integer matrix products on ONNX Runtime's 8-bit GEMM kernels.

The integer networks that pick probability tables (int_hyper, context) must give the same
integers on every machine, so their products must be exact. 8-bit integer GEMMs are exact and
run several times the multiply rate of float64 ones, so both operands are split into digits:

- activations, offset to unsigned, into as many bytes as their largest magnitude needs (1 to 3;
  two for what real images produce);
- weights (|w| < 2^11) into two signed 7-bit digits, |digit| <= 64, so that a pair of u8 x s8
  products never saturates the 16-bit adds that CPUs without VNNI use (255 * 64 * 2 < 2^15);
  or into one digit where every column is an integer factor times digits of at most 64 (the
  form `one_digit_columns` gives, in which builds quantize their entropy networks): half the
  products, each column's sum multiplied back by its factor.

One MatMulInteger call multiplies every byte plane by every weight digit; its int32 sums cannot
overflow (255 * 64 * 2^14 < 2^31 for the largest fan-in a layer may have) and the digits
recombine exactly in int64.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

DIGIT_BITS = 7  # weight digit base 2^7, digits in [-64, 64]
MAX_PLANES = 3  # activations below 2^23 in magnitude


@dataclass(frozen=True)
class IntWeights:
    """A (K, M) integer weight matrix ready for digit products: int8 digits side by side
    (K, n_digits * M), low digit first, the column sums that undo the activations' offset, and
    with one digit, each column's factor."""

    digits: np.ndarray
    column_sums: np.ndarray  # (M,) int64
    m: int
    column_factors: np.ndarray | None = None  # (M,) int64: column j is digits[:, j] * factor[j]

    @property
    def n_digits(self) -> int:
        return self.digits.shape[1] // self.m

    @classmethod
    def from_matrix(cls, w: np.ndarray) -> IntWeights:
        w = np.asarray(w, dtype=np.int64)
        base = 1 << DIGIT_BITS
        factors = np.maximum(np.gcd.reduce(w, axis=0), 1)
        one = w // factors
        if np.abs(one).max(initial=0) <= base // 2:
            return cls(np.ascontiguousarray(one, dtype=np.int8), w.sum(axis=0), w.shape[1], factors)
        low = (w + base // 2) % base - base // 2
        high = (w - low) // base
        if np.abs(high).max(initial=0) > base // 2:
            raise ValueError("integer weights outside the two-digit range")
        digits = np.ascontiguousarray(np.concatenate([low, high], axis=1), dtype=np.int8)
        return cls(digits, w.sum(axis=0), w.shape[1])


def one_digit_columns(w: np.ndarray) -> np.ndarray:
    """Integer weight columns (K, M) -> the nearest columns of the one-digit form: each an
    integer factor (the least that fits) times digits of at most 64 in magnitude. About 7 bits
    per weight with a scale per column, where two digits carry 11 bits with one per layer.
    Columns already in the form are kept, so rounding twice changes nothing."""
    w = np.asarray(w, dtype=np.int64)
    half = 1 << (DIGIT_BITS - 1)
    peak = np.abs(w).max(axis=0, initial=0)
    fits = peak <= half * np.maximum(np.gcd.reduce(w, axis=0), 1)  # already in the form: kept as is
    factors = np.maximum(1, -(-peak // half))
    return np.where(fits, w, np.rint(w / factors).astype(np.int64) * factors)


def planes_needed(x: np.ndarray) -> int:
    """Byte planes that hold x + 2^(8p-1) unsigned: the fewest p with |x| < 2^(8p-1)."""
    peak = int(np.abs(x).max(initial=0))
    for p in range(1, MAX_PLANES + 1):
        if peak < 1 << (8 * p - 1):
            return p
    raise ValueError("activation outside the exact integer range")


def byte_planes(x: np.ndarray, p: int) -> np.ndarray:
    """Integers (...) with |x| < 2^(8p-1) -> (p, ...) uint8 digits of x + 2^(8p-1), low first.
    The result is a strided view."""
    u = x.astype("<i8", order="C") + (1 << (8 * p - 1))  # little-endian, so byte i of each value is digit i
    return np.moveaxis(u.view(np.uint8).reshape(*u.shape, 8)[..., :p], -1, 0)


def padded_planes(planes: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    """Byte planes (p, ..., H, W, C) -> zero-padded (top, bottom, left, right) with a zero
    activation's digits (its top byte is 0x80, the rest 0), for convolution windows."""
    *lead, h, w, c = planes.shape
    top, bottom, left, right = pads
    out = np.zeros((*lead, h + top + bottom, w + left + right, c), dtype=np.uint8)
    out[-1] = 0x80
    out[..., top : top + h, left : left + w, :] = planes
    return out


# One MatMulInteger node, a (uint8 [?, ?]) x b (int8 [?, ?]) -> y (int32), opset 13, serialized
# (make_graph / make_model of the onnx package; tests/codec/test_int_matmul.py rebuilds it): the
# edge install runs it with ONNX Runtime alone, without the onnx package.
MATMUL_INTEGER_MODEL = bytes.fromhex(
    "080812046c7369633a590a180a01610a0162120179220d4d61744d756c496e7465676572120a696e745f6d61746d756c"
    "5a0f0a0161120a0a08080212040a000a005a0f0a0162120a0a08080312040a000a00620f0a0179120a0a08080612040a"
    "000a0042040a00100d"
)
_local = threading.local()  # holds each thread's session


def _session() -> ort.InferenceSession:
    """One single-threaded MatMulInteger session per thread: callers parallelize by tiles."""
    session = getattr(_local, "session", None)
    if session is None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(MATMUL_INTEGER_MODEL, options, providers=["CPUExecutionProvider"])
        _local.session = session
    return session


def matmul_planes(planes: np.ndarray, weights: IntWeights) -> np.ndarray:
    """Byte planes (p, N, K) of offset activations (byte_planes) times the weights -> the exact
    int64 product (N, M) of the activations themselves."""
    p, n, k = planes.shape
    out = _session().run(None, {"a": planes.reshape(p * n, k), "b": weights.digits})[0]
    parts = out.reshape(p, n, weights.n_digits, weights.m)
    acc = parts[:, :, 0].astype(np.int64)  # (p, N, M): the digits recombined plane by plane
    if weights.n_digits == 2:
        high = parts[:, :, 1].astype(np.int64)
        high <<= DIGIT_BITS
        acc += high
    total = acc[0]
    for i in range(1, p):
        acc[i] <<= 8 * i
        total += acc[i]
    if weights.column_factors is not None:
        total *= weights.column_factors
    total -= weights.column_sums << (8 * p - 1)
    return total
