"""Integer hyper-synthesis: the network that picks each latent's probability table.

Encoder and decoder must pick the same table for every symbol, on any hardware. So this network
runs on integers only: integer weights, integer activations, integer shifts, integer table index
out (Ballé et al. 2019, "Integer networks for data compression"). The products run as 8-bit
integer GEMMs on byte digits of both operands (lsic.codec.entropy.int_matmul), everything else in
int64: exact by construction, with every weight below 2^11, every activation clamped below 2^20
and no fan-in above 2^14. Activations are held channels-last, the layout the GEMMs take.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from lsic.codec.entropy.int_matmul import (
    IntWeights,
    byte_planes,
    matmul_planes,
    one_digit_columns,
    padded_planes,
    planes_needed,
)

WEIGHT_BITS = 11  # |w| < 2^11
ACT_LIMIT = (1 << 20) - 1  # activations clamped to +-ACT_LIMIT
ACT_FRAC_BITS = 8  # hidden activations and outputs carry 8 fractional bits
MAX_FAN_IN = 1 << 14
MAX_BIAS = 1 << 50
LEAKY_NUM, LEAKY_SHIFT = 41, 12  # LeakyReLU slope 41/4096 ~ 0.01


@dataclass(frozen=True)
class IntLayer:
    """One integer convolution: weights (C_out, C_in, k, k) as stored integers."""

    weight: np.ndarray  # int32, already flipped/transposed to a direct convolution
    bias: np.ndarray  # int64, at scale 2^(w_frac + in_frac)
    shift: int  # right shift from accumulator scale to output scale
    upsample: int  # 2 for a transposed stride-2 convolution, 1 for a plain one
    leaky: bool  # LeakyReLU after the layer

    @functools.cached_property
    def offset(self) -> np.ndarray:
        """Bias plus the rounding half of the right shift."""
        half = (1 << (self.shift - 1)) if self.shift > 0 else 0
        return self.bias.astype(np.int64) + half

    @functools.cached_property
    def gemm(self) -> _Gemm:
        """The layer as one stride-1 convolution over a window, built once per package."""
        return layer_gemm(self)

    def check(self) -> None:
        _, c_in, k, _ = self.weight.shape
        too_wide = c_in * k * k > MAX_FAN_IN or np.abs(self.bias).max(initial=0) >= MAX_BIAS
        if too_wide or np.abs(self.weight).max(initial=0) >= (1 << WEIGHT_BITS):
            raise ValueError("integer layer outside the exact integer range")


@dataclass(frozen=True)
class _Gemm:
    """A layer as a stride-1 convolution: weights over a (kh, kw, C_in) window whose columns are
    the output phases side by side ((0,0), (0,1), (1,0), (1,1) for an upsampling layer)."""

    weights: IntWeights
    kh: int
    kw: int
    pads: tuple[int, int, int, int]  # (top, bottom, left, right)
    phases: int  # 1, or 4 for a stride-2 transposed convolution


def _window_matrix(w: np.ndarray) -> np.ndarray:
    """Weights (C_out, C_in, kh, kw) -> (kh*kw*C_in, C_out), rows in the columns' order."""
    c_out = w.shape[0]
    return w.transpose(2, 3, 1, 0).reshape(-1, c_out)


# Polyphase split of the transposed convolution (k=5, s=2, p=2, output_padding=1): output
# phase r along an axis uses the direct-conv taps r, r+2, ... on the original input, with
# these (before, after) paddings. The phases share one 3-tap window (the shorter phase padded
# with zero weights), so a layer is one GEMM instead of a convolution over a zero-stuffed input
# that is three-quarters zeros.
_PHASE_PADS = {0: (1, 1), 1: (0, 1)}


def layer_gemm(layer: IntLayer) -> _Gemm:
    w = layer.weight.astype(np.int64)
    k = w.shape[2]
    if layer.upsample != 2:
        return _Gemm(IntWeights.from_matrix(_window_matrix(w)), k, k, (k // 2,) * 4, 1)
    top = max(p[0] for p in _PHASE_PADS.values())
    size = top + max(p[1] for p in _PHASE_PADS.values()) + 1
    columns = []
    for ry in (0, 1):
        for rx in (0, 1):
            sub = w[:, :, ry::2, rx::2]
            window = np.zeros((*w.shape[:2], size, size), dtype=np.int64)
            oy, ox = top - _PHASE_PADS[ry][0], top - _PHASE_PADS[rx][0]
            window[:, :, oy : oy + sub.shape[2], ox : ox + sub.shape[3]] = sub
            columns.append(_window_matrix(window))
    pads = (top, size - 1 - top, top, size - 1 - top)
    return _Gemm(IntWeights.from_matrix(np.concatenate(columns, axis=1)), size, size, pads, 4)


def one_digit_layer(weight: np.ndarray, upsample: int, taps: np.ndarray | None = None) -> np.ndarray:
    """A layer's integer weights (C_out, C_in, k, k) rounded so that every GEMM column the layer
    runs as is in the one-digit form (int_matmul.one_digit_columns): a column per output channel,
    and per output phase of an upsampling layer (its taps ry::2, rx::2). taps: (k, k) the taps
    that are used (the context's anchor taps); the others are left as they are."""
    w = weight.astype(np.int64)
    k = w.shape[2]
    used = np.ones((k, k), dtype=bool) if taps is None else taps
    groups = []
    for ry, rx in ((0, 0), (0, 1), (1, 0), (1, 1)) if upsample == 2 else ((0, 0),):
        phase = np.zeros((k, k), dtype=bool)
        phase[ry :: upsample, rx :: upsample] = True
        groups.append(phase & used)
    out = w.copy()
    for g in groups:
        cols = w[:, :, g].reshape(w.shape[0], -1).T  # (C_in * taps, C_out)
        out[:, :, g] = one_digit_columns(cols).T.reshape(w.shape[0], w.shape[1], -1)
    return out.astype(weight.dtype)


def window_columns(planes: np.ndarray, kh: int, kw: int, pads: tuple[int, int, int, int]) -> np.ndarray:
    """Byte planes (p, B, H, W, C) -> (p, B*H_out*W_out, kh*kw*C) patches of a stride-1
    convolution, padded with a zero activation's digits."""
    p, b, _, _, c = planes.shape
    xp = padded_planes(planes, pads)
    ho, wo = xp.shape[2] - kh + 1, xp.shape[3] - kw + 1
    s0, s1, s2, s3, s4 = xp.strides
    cols = np.lib.stride_tricks.as_strided(xp, (p, b, ho, wo, kh, kw, c), (s0, s1, s2, s3, s2, s3, s4))
    return cols.reshape(p, b * ho * wo, kh * kw * c)


def _layer(x: np.ndarray, layer: IntLayer) -> np.ndarray:
    """Activations (B, H, W, C_in) int64 -> the layer's outputs (B, H', W', C_out) int64."""
    g = layer.gemm
    b, h, w, _ = x.shape
    p = planes_needed(x)
    acc = matmul_planes(window_columns(byte_planes(x, p), g.kh, g.kw, g.pads), g.weights)
    c_out = layer.weight.shape[0]
    if g.phases == 4:
        acc = acc.reshape(b, h, w, 2, 2, c_out).transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, c_out)
    else:
        acc = acc.reshape(b, h, w, c_out)
    return finish_layer(acc, layer)


def finish_layer(acc: np.ndarray, layer: IntLayer) -> np.ndarray:
    """Accumulators (..., C_out) int64 of a layer's products -> its integer outputs, in place.

    Bias, then a rounding right shift floor((acc + bias + 2^(s-1)) / 2^s), then the integer
    LeakyReLU floor(41 x / 4096) and the activation clamp.
    """
    acc += layer.offset
    if layer.shift > 0:
        acc >>= layer.shift
    if layer.leaky:  # x for x >= 0, floor(41 x / 4096) >= x below
        np.maximum(acc, (acc * LEAKY_NUM) >> LEAKY_SHIFT, out=acc)
    np.clip(acc, -ACT_LIMIT, ACT_LIMIT, out=acc)
    return acc


def run_int_hyper(z_hat: np.ndarray, layers: list[IntLayer]) -> np.ndarray:
    """Integer z_hat (N, h, w) -> integer outputs (2M, 4h, 4w) with ACT_FRAC_BITS fraction; or a
    batch of tiles of one size, (B, N, h, w) -> (B, 2M, 4h, 4w), at the cost of fewer, larger
    GEMMs."""
    batch = z_hat if z_hat.ndim == 4 else z_hat[None]
    x = np.clip(batch.astype(np.int64), -ACT_LIMIT, ACT_LIMIT).transpose(0, 2, 3, 1)
    for layer in layers:
        x = _layer(x, layer)
    out = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return out if z_hat.ndim == 4 else out[0]


class ScaleIndexer:
    """Table index per symbol: how many scale-table boundaries lie strictly below its scale.

    The scales are integers, so the answer for every scale between the first and the last
    boundary is looked up in a table built once per package (a binary search per symbol cost
    more than the rest of table selection).
    """

    def __init__(self, thresholds_fx: np.ndarray) -> None:
        self.low = int(thresholds_fx[0])
        self.high = int(thresholds_fx[-1]) + 1
        self.table = np.searchsorted(thresholds_fx, np.arange(self.low, self.high + 1), side="left").astype(np.int32)

    def __call__(self, scales_fx: np.ndarray) -> np.ndarray:
        return self.table[np.clip(scales_fx, self.low, self.high) - self.low]


def layers_from_arrays(arrays: dict[str, np.ndarray], prefix: str = "hs") -> list[IntLayer]:
    """Rebuild integer layers from a model package's tables.npz: the hyper-synthesis ("hs") or
    the checkerboard context ("cx", lsic.codec.entropy.context)."""
    layers = []
    i = 0
    while f"{prefix}{i}_w" in arrays:
        meta = arrays[f"{prefix}{i}_meta"]
        layer = IntLayer(
            weight=arrays[f"{prefix}{i}_w"].astype(np.int32),
            bias=arrays[f"{prefix}{i}_b"].astype(np.int64),
            shift=int(meta[0]),
            upsample=int(meta[1]),
            leaky=bool(meta[2]),
        )
        layer.check()
        layers.append(layer)
        i += 1
    return layers
