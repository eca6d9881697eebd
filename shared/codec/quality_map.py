"""Quality maps: one operating point per 64x64 block, so a frame spends its bits where they matter.

A model's operating points differ only by a gain vector on the latent (y * gain before rounding,
y_hat * inverse gain after), so quality can change from one latent position to the next: the
encoder multiplies each position by the gain of its block's quality, the decoder by the inverse
gain. The entropy path is untouched (it codes whatever integers it is given, exactly as before);
the map travels in the header (format version 3, docs/bitstream.md), one byte per 64x64 block.

A map cell is a quality in quarter steps, level v = 1 + 4 (q - 1): between two operating points
the gains are interpolated geometrically (as the variable-rate model was designed for, Cui et
al. 2021), which gives a frame's rate four times finer control than whole qualities.

Maps come from boxes (`lsic encode --roi x,y,w,h[:steps]`), from a grey image (`--quality-map`),
or on the edge from detectors (lsic.edge.roi).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lsic.codec.bitstream import MAP_BLOCK, Container, max_map_level
from lsic.codec.bitstream import MAP_STEPS as STEPS
from lsic.codec.errors import InputImageError, OperatingPointError
from lsic.codec.tiling import Tile

Box = tuple[int, int, int, int]  # x, y, w, h in pixels




def map_shape(width: int, height: int) -> tuple[int, int]:
    return -(-height // MAP_BLOCK), -(-width // MAP_BLOCK)


def levels(quality: float | np.ndarray, n_rates: int) -> np.ndarray:
    """Quality (1..n, fractional allowed) -> map level 1..STEPS*(n-1)+1."""
    q = np.clip(np.asarray(quality, dtype=np.float64), 1, n_rates)
    return np.rint(1 + STEPS * (q - 1)).astype(np.uint8)


def qualities(level: np.ndarray) -> np.ndarray:
    """Map levels -> qualities (1..n, in quarter steps)."""
    return 1 + (np.asarray(level, dtype=np.float64) - 1) / STEPS


def from_boxes(width: int, height: int, base: float, boxes: list[tuple[Box, float]], n_rates: int) -> np.ndarray:
    """A map at quality `base`, raised by `steps` qualities in every block a box touches."""
    q = np.full(map_shape(width, height), float(base))
    for (x, y, w, h), steps in boxes:
        x0, y0 = max(0, x) // MAP_BLOCK, max(0, y) // MAP_BLOCK
        x1, y1 = -(-min(width, x + w) // MAP_BLOCK), -(-min(height, y + h) // MAP_BLOCK)
        if x1 > x0 and y1 > y0:
            q[y0:y1, x0:x1] = np.maximum(q[y0:y1, x0:x1], base + steps)
    return levels(q, n_rates)


def from_image(path: str | Path, width: int, height: int, n_rates: int) -> np.ndarray:
    """A grey image (any size) whose brightness 0..255 maps to qualities 1..n, block by block."""
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        raise InputImageError(f"{path}: not a readable quality-map image")
    rows, cols = map_shape(width, height)
    small = cv2.resize(grey, (cols, rows), interpolation=cv2.INTER_AREA).astype(np.float64)
    return levels(1 + small / 255.0 * (n_rates - 1), n_rates)


def check(qmap: np.ndarray, width: int, height: int, n_rates: int) -> np.ndarray:
    qmap = np.asarray(qmap)
    if qmap.shape != map_shape(width, height):
        raise OperatingPointError(f"quality map is {qmap.shape}, a {width}x{height} frame needs {map_shape(width, height)}")
    if qmap.min() < 1 or qmap.max() > max_map_level(n_rates):
        raise OperatingPointError(f"quality map levels must be 1..{max_map_level(n_rates)}")
    return qmap.astype(np.uint8)


def tile_levels(qmap: np.ndarray, tile: Tile, padded_h: int, padded_w: int) -> np.ndarray:
    """Map level of every latent position (16x16 pixels) of a padded tile; positions in the
    padding take the nearest block inside the frame."""
    rows = np.minimum((tile.y + 16 * np.arange(padded_h // 16)) // MAP_BLOCK, qmap.shape[0] - 1)
    cols = np.minimum((tile.x + 16 * np.arange(padded_w // 16)) // MAP_BLOCK, qmap.shape[1] - 1)
    return qmap[np.ix_(rows, cols)]


def interpolated(table: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Gains (or inverse gains) at map levels: table rows, geometric between neighbours.
    table (n, M), level (...) -> (..., M)."""
    pos = qualities(level) - 1
    lo = np.minimum(np.floor(pos).astype(np.int64), table.shape[0] - 1)
    hi = np.minimum(lo + 1, table.shape[0] - 1)
    frac = (pos - lo)[..., None]
    logs = np.log(table.astype(np.float64))
    return np.exp(logs[lo] * (1 - frac) + logs[hi] * frac).astype(np.float32)


def gains_for(table: np.ndarray, header: Container, tile: Tile, padded_h: int, padded_w: int) -> np.ndarray:
    """A gain (or inverse gain) table (n, M) for one tile: (M, 1, 1) with one quality, (M, h, w)
    with a map."""
    if header.quality_map is None:
        return table[header.quality - 1].astype(np.float32)[:, None, None]
    return interpolated(table, tile_levels(header.quality_map, tile, padded_h, padded_w)).transpose(2, 0, 1)
