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

from lsic.codec.entropy.int_hyper import ACT_LIMIT, IntLayer, finish_layer, im2col

CONTEXT_KINDS = ("checkerboard",)  # model.json "architecture.context"; absent: hyperprior only


def anchor_mask(h: int, w: int) -> np.ndarray:
    """(h, w) bool: True at the anchors, the positions coded first ((i + j) even)."""
    i, j = np.indices((h, w))
    return (i + j) % 2 == 0


def _matrix(layer: IntLayer) -> np.ndarray:
    """The layer's weights as a float64 (C_out, C_in*k*k) matrix, built once per package."""
    return layer.kernels[(0, 0)].matrix


def run_int_context(hyper_out: np.ndarray, anchors_fx: np.ndarray, layers: list[IntLayer]) -> np.ndarray:
    """Integer hyper output (2M, H, W) and anchors (M, H, W), both fixed point with non-anchors
    of `anchors_fx` zero -> the hyper output with its non-anchor positions refined.

    Exact for the same reason as run_int_hyper: integer operands below 2^53 in float64.
    """
    ctx, *params = layers
    _, h, w = anchors_fx.shape
    k = ctx.weight.shape[2]
    others = ~anchor_mask(h, w).reshape(-1)
    x = np.clip(anchors_fx.astype(np.float64), -ACT_LIMIT, ACT_LIMIT)
    cols, _, _ = im2col(x, k, k, (k // 2,) * 4)
    c = finish_layer(_matrix(ctx) @ cols[:, others], ctx)
    hyper = hyper_out.reshape(hyper_out.shape[0], -1)[:, others].astype(np.float64)
    x = np.concatenate([hyper, c])
    for layer in params:
        x = finish_layer(_matrix(layer) @ x, layer)
    out = hyper_out.astype(np.int64, copy=True).reshape(hyper_out.shape[0], -1)
    out[:, others] += x.astype(np.int64)
    return out.reshape(hyper_out.shape)
