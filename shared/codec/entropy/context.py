"""Checkerboard context: the second half of a tile's y symbols coded with their neighbours' help.

A hyperprior alone predicts every y symbol from z. With a checkerboard context (He et al. 2021,
"Checkerboard context model for efficient learned image compression") the anchors, the symbols
at (i + j) even, are coded first with the hyperprior's tables; the other half is then coded with
tables and means refined from the already-decoded anchors around each of them. Both halves
decode in parallel (two passes, not one per symbol), as design decision 1 asks.

Like the hyper-synthesis, this network picks probability tables, so it runs on integers only
(lsic.codec.entropy.int_hyper): layer 0 is a 5x5 convolution over the anchors' dequantized values
(fixed point, every non-anchor zero), the rest are 1x1 convolutions over the hyper-synthesis's
output and that context, and the result is added to the hyper-synthesis's output. Only the
non-anchor positions are computed, the only ones whose parameters it changes.
"""

from __future__ import annotations

import numpy as np

from lsic.codec.entropy.int_hyper import ACT_LIMIT, IntLayer, finish_layer
from lsic.codec.entropy.int_matmul import IntWeights, byte_planes, matmul_planes, padded_planes, planes_needed

CONTEXT_KINDS = ("checkerboard",)  # model.json "architecture.context"; absent: hyperprior only


def anchor_mask(h: int, w: int) -> np.ndarray:
    """(h, w) bool: True at the anchors, the positions coded first ((i + j) even)."""
    i, j = np.indices((h, w))
    return (i + j) % 2 == 0


def anchor_taps(k: int) -> np.ndarray:
    """(k, k) bool: the taps of a k x k kernel that land on anchors when centred on a
    non-anchor, those with dy + dx odd. The other taps only ever meet zeros."""
    dy, dx = np.indices((k, k)) - k // 2
    return (dy + dx) % 2 == 1


def _taps(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (dy, dx) of the anchor taps."""
    dy, dx = np.indices((k, k)) - k // 2
    odd = anchor_taps(k)
    return dy[odd], dx[odd]


_MATRICES: dict[int, tuple[IntLayer, IntWeights]] = {}  # by layer identity: built once per package


def _context_weights(layer: IntLayer) -> IntWeights:
    """The context convolution's weights on the anchor taps only, rows in (tap, C_in) order."""
    cached = _MATRICES.get(id(layer))
    if cached is None or cached[0] is not layer:
        k = layer.weight.shape[2]
        dy, dx = _taps(k)
        w = layer.weight[:, :, dy + k // 2, dx + k // 2].astype(np.int64)  # (C_out, C_in, taps)
        cached = (layer, IntWeights.from_matrix(w.transpose(2, 1, 0).reshape(-1, w.shape[0])))
        _MATRICES[id(layer)] = cached
    return cached[1]


def _anchor_columns(planes: np.ndarray, k: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Byte planes (p, B, H, W, C) of the anchors -> (p, B*K, taps*C) the anchor-tap
    neighbourhoods of the K non-anchor positions of each tile."""
    p, b, _, _, c = planes.shape
    r = k // 2
    xp = padded_planes(planes, (r, r, r, r))
    dy, dx = _taps(k)
    out = np.stack([xp[:, :, rows + a + r, cols + b_ + r] for a, b_ in zip(dy, dx, strict=True)], axis=3)
    return out.reshape(p, b * rows.size, len(dy) * c)


def _pointwise(x: np.ndarray, layer: IntLayer) -> np.ndarray:
    """A 1x1 integer convolution over (K, C_in) -> (K, C_out)."""
    return finish_layer(matmul_planes(byte_planes(x, planes_needed(x)), layer.gemm.weights), layer)


def run_int_context(hyper_out: np.ndarray, anchors_fx: np.ndarray, layers: list[IntLayer]) -> np.ndarray:
    """Integer hyper output (2M, H, W) and anchors (M, H, W), both fixed point with non-anchors
    of `anchors_fx` zero -> the hyper output with its non-anchor positions refined. A batch of
    tiles of one size, (B, 2M, H, W) and (B, M, H, W), runs as one.

    Only the non-anchor positions are computed, and the 5x5 convolution only on its 12 taps that
    reach anchors: a third of the full convolution's work.
    """
    if hyper_out.ndim == 3:
        return run_int_context(hyper_out[None], anchors_fx[None], layers)[0]
    ctx, *params = layers
    b, _, h, w = anchors_fx.shape
    rows, cols = np.nonzero(~anchor_mask(h, w))
    x = np.clip(anchors_fx.astype(np.int64), -ACT_LIMIT, ACT_LIMIT).transpose(0, 2, 3, 1)
    columns = _anchor_columns(byte_planes(x, planes_needed(x)), ctx.weight.shape[2], rows, cols)
    c = finish_layer(matmul_planes(columns, _context_weights(ctx)), ctx)
    known = hyper_out[:, :, rows, cols].transpose(0, 2, 1).reshape(b * rows.size, -1)
    x = np.concatenate([known.astype(np.int64), c], axis=1)
    for layer in params:
        x = _pointwise(x, layer)
    out = hyper_out.astype(np.int64, copy=True)
    out[:, :, rows, cols] += x.reshape(b, rows.size, -1).transpose(0, 2, 1)
    return out
