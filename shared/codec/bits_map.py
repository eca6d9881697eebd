"""Where the bits went: a frame's cost per 16x16 block, from the probabilities the decoder used.

Every symbol's probability is known to the decoder (the tables the integer networks picked), so
its cost is exact: -log2 p, plus raw bits for escapes. Summed per latent position (a z symbol
shared by its 4x4 positions), divided by the 256 pixels a position covers: bits per pixel,
block by block. Reference tiles cost nothing.
"""

from __future__ import annotations

import cv2
import numpy as np

from lsic.codec.bitstream import TILE_CODED, parse
from lsic.codec.decoder import tile_symbols
from lsic.codec.entropy.latents import position_bits
from lsic.codec.package import package_for_header


def bits_per_pixel(data: bytes) -> np.ndarray:
    """(ceil(H/16), ceil(W/16)) bits per pixel of each 16x16 block of the frame."""
    parsed = parse(data)
    pkg = package_for_header(parsed.header)
    h, w = parsed.header.height, parsed.header.width
    out = np.zeros((-(-h // 16), -(-w // 16)))
    for t in parsed.header.grid.tiles():
        if parsed.kinds[t.index] != TILE_CODED:
            continue
        bits = position_bits(pkg, tile_symbols(pkg, parsed, t)) / 256.0
        rows, cols = -(-t.h // 16), -(-t.w // 16)
        out[t.y // 16 : t.y // 16 + rows, t.x // 16 : t.x // 16 + cols] = bits[:rows, :cols]
    return out


def heatmap(bpp: np.ndarray, width: int, height: int, scale: float | None = None) -> tuple[np.ndarray, float]:
    """The map as an RGB image of the frame's size (inferno colours, 0 black to `scale` yellow;
    default scale: the frame's largest value). Returns (image, scale)."""
    scale = float(scale or max(float(bpp.max()), 1e-6))
    levels = np.clip(bpp / scale * 255.0, 0, 255).astype(np.uint8)
    big = cv2.resize(levels, (16 * bpp.shape[1], 16 * bpp.shape[0]), interpolation=cv2.INTER_NEAREST)[:height, :width]
    return cv2.cvtColor(cv2.applyColorMap(big, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB), scale
