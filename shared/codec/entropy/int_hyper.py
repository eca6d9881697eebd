"""Integer hyper-synthesis: the network that picks each latent's probability table.

Encoder and decoder must pick the same table for every symbol, on any hardware. So this network
runs on integers only: integer weights, integer activations, integer shifts, integer table index
out (Ballé et al. 2019, "Integer networks for data compression"). The arithmetic is carried out
in float64 BLAS for speed, which is exact here: every weight is below 2^11, every activation is
clamped below 2^20, no fan-in exceeds 2^14 and every bias is below 2^50, so every product and
partial sum is an integer below 2^53 and no summation order can round.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

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
        """Bias plus the rounding half of the right shift, as exact float64 integers."""
        half = (1 << (self.shift - 1)) if self.shift > 0 else 0
        return (self.bias + half).astype(np.float64)

    @functools.cached_property
    def kernels(self) -> dict[tuple[int, int], _Kernel]:
        """Float64 weight matrices built once per package, not once per tile."""
        return layer_kernels(self)

    def check(self) -> None:
        _, c_in, k, _ = self.weight.shape
        too_wide = c_in * k * k > MAX_FAN_IN or np.abs(self.bias).max(initial=0) >= MAX_BIAS
        if too_wide or np.abs(self.weight).max(initial=0) >= (1 << WEIGHT_BITS):
            raise ValueError("integer layer outside the exact float64 range")


def im2col(x: np.ndarray, kh: int, kw: int, pads: tuple[int, int, int, int]) -> tuple[np.ndarray, int, int]:
    """(C, H, W) -> (C*kh*kw, H_out*W_out) patches of a stride-1 convolution.

    pads = (top, bottom, left, right) zero padding.
    """
    c, h, w = x.shape
    top, bottom, left, right = pads
    xp = np.zeros((c, h + top + bottom, w + left + right), dtype=x.dtype)  # np.pad costs more on small arrays
    xp[:, top : top + h, left : left + w] = x
    ho, wo = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    s0, s1, s2 = xp.strides
    cols = np.lib.stride_tricks.as_strided(xp, (c, kh, kw, ho, wo), (s0, s1, s2, s1, s2))
    return cols.reshape(c * kh * kw, ho * wo), ho, wo


@dataclass(frozen=True)
class _Kernel:
    """A stride-1 convolution ready for im2col: float64 weight matrix, kernel size, paddings."""

    matrix: np.ndarray  # (C_out, C_in*kh*kw) float64, exact copies of the integer weights
    kh: int
    kw: int
    pads: tuple[int, int, int, int]


def _conv(x: np.ndarray, kernel: _Kernel) -> np.ndarray:
    """Exact integer convolution in float64 (see module docstring)."""
    cols, ho, wo = im2col(x, kernel.kh, kernel.kw, kernel.pads)
    return (kernel.matrix @ cols).reshape(-1, ho, wo)


def _kernel(w: np.ndarray, pads: tuple[int, int, int, int]) -> _Kernel:
    c_out, _, kh, kw = w.shape
    return _Kernel(np.ascontiguousarray(w.reshape(c_out, -1), dtype=np.float64), kh, kw, pads)


# Polyphase split of the transposed convolution (k=5, s=2, p=2, output_padding=1): output
# phase r along an axis uses the direct-conv taps r, r+2, ... on the original input, with
# these (before, after) paddings. Four small convolutions instead of one on a zero-stuffed
# input that is three-quarters zeros.
_PHASE_PADS = {0: (1, 1), 1: (0, 1)}


def layer_kernels(layer: IntLayer) -> dict[tuple[int, int], _Kernel]:
    """The stride-1 convolutions of a layer by output phase ((0, 0) only without upsampling)."""
    w = layer.weight
    k = w.shape[2]
    if layer.upsample != 2:
        return {(0, 0): _kernel(w, (k // 2, k // 2, k // 2, k // 2))}
    return {
        (ry, rx): _kernel(w[:, :, ry::2, rx::2], (*_PHASE_PADS[ry], *_PHASE_PADS[rx])) for ry in (0, 1) for rx in (0, 1)
    }


def _layer(x: np.ndarray, layer: IntLayer) -> np.ndarray:
    kernels = layer.kernels
    c_out = layer.weight.shape[0]
    if layer.upsample == 2:
        _, h, wd = x.shape
        acc = np.empty((c_out, 2 * h, 2 * wd), dtype=np.float64)
        for (ry, rx), kernel in kernels.items():
            acc[:, ry::2, rx::2] = _conv(x, kernel)
    else:
        acc = _conv(x, kernels[(0, 0)])
    return finish_layer(acc, layer)


def finish_layer(acc: np.ndarray, layer: IntLayer) -> np.ndarray:
    """Accumulators (C_out, ...) of a layer's products -> its integer outputs, in place.

    Bias, then a rounding right shift floor((acc + bias + 2^(s-1)) / 2^s): every sum is an
    integer below 2^53 and 2^-s is a power of two, so each step is exact. Then the integer
    LeakyReLU and the activation clamp.
    """
    acc += layer.offset.reshape(-1, *([1] * (acc.ndim - 1)))
    if layer.shift > 0:
        acc *= 2.0**-layer.shift
        np.floor(acc, out=acc)
    if layer.leaky:
        negative = acc < 0
        acc[negative] = np.floor(acc[negative] * (LEAKY_NUM / (1 << LEAKY_SHIFT)))
    np.clip(acc, -ACT_LIMIT, ACT_LIMIT, out=acc)
    return acc


def run_int_hyper(z_hat: np.ndarray, layers: list[IntLayer]) -> np.ndarray:
    """Integer z_hat (N, h, w) -> integer outputs (2M, 4h, 4w) with ACT_FRAC_BITS fraction."""
    x = np.clip(z_hat.astype(np.float64), -ACT_LIMIT, ACT_LIMIT)
    for layer in layers:
        x = _layer(x, layer)
    return x.astype(np.int64)


def scale_indexes(scales_fx: np.ndarray, thresholds_fx: np.ndarray) -> np.ndarray:
    """Table index per symbol: how many scale-table boundaries lie strictly below the scale."""
    return np.searchsorted(thresholds_fx, scales_fx, side="left").astype(np.int32)


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
