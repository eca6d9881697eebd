"""Where the bits went: a frame's cost per 16x16 block, from the probabilities the decoder used.

Every symbol's probability is known to the decoder (the tables the integer networks picked), so
its cost is exact: -log2 p, plus raw bits for escapes. Summed per latent position (a z symbol
shared by its 4x4 positions), divided by the 256 pixels a position covers: bits per pixel,
block by block. Reference and held tiles cost nothing. A predicted tile's tables come from the
previous frame's latents: given them, its cost is exact too; read alone, each of its tile's
bytes is spread evenly over the positions it codes (which its masks say).
"""

from __future__ import annotations

import cv2
import numpy as np

from lsic.codec.bitstream import TILE_CODED, TILE_PREDICTED, ParsedContainer, parse
from lsic.codec.decoder import Latents, resolve_latents, tile_symbols
from lsic.codec.entropy.latents import position_bits
from lsic.codec.entropy.predicted import LatentState, decode_predicted, read_head, z_tables_for
from lsic.codec.package import ModelPackage, package_for_header
from lsic.codec.tiling import Tile


def bits_per_pixel(data: bytes, latents: Latents | None = None) -> np.ndarray:
    """(ceil(H/16), ceil(W/16)) bits per pixel of each 16x16 block of the frame. latents: the
    previous frame's, for a predicted frame (as Decoder.decode takes them); without them its
    tiles' bytes are spread over the positions they code."""
    parsed = parse(data)
    pkg = package_for_header(parsed.header)
    h, w = parsed.header.height, parsed.header.width
    out = np.zeros((-(-h // 16), -(-w // 16)))
    tiles = parsed.header.grid.tiles()
    predicted = [t.index for t in tiles if parsed.kinds[t.index] == TILE_PREDICTED]
    refs = resolve_latents(latents, predicted, parsed.header.grid) if predicted else {}
    for t in tiles:
        if parsed.kinds[t.index] == TILE_CODED:
            bits = position_bits(pkg, tile_symbols(pkg, parsed, t))
        elif parsed.kinds[t.index] == TILE_PREDICTED:
            bits = _predicted_bits(pkg, parsed, t, refs.get(t.index))
        else:
            continue
        rows, cols = -(-t.h // 16), -(-t.w // 16)
        out[t.y // 16 : t.y // 16 + rows, t.x // 16 : t.x // 16 + cols] = bits[:rows, :cols] / 256.0
    return out


def _predicted_bits(pkg: ModelPackage, parsed: ParsedContainer, t: Tile, ref: LatentState | None) -> np.ndarray:
    """(4h, 4w) bits per position of a predicted tile: exact against its reference, else spread."""
    header = parsed.header
    payload = parsed.tile_payload(t.index)
    prior = pkg.temporal_of(header.model_hash)
    if ref is not None:
        return decode_predicted(pkg, payload, ref, 1.0, prior, header.aligned_payloads, header.quality, True).position_bits
    z_modes = z_tables_for(prior, header.quality) is not None
    positions = read_head(payload, -(-t.h // 64), -(-t.w // 64), header.aligned_payloads, z_modes)[1]
    return np.where(positions, 8.0 * len(payload) / max(1, int(positions.sum())), 0.0)


def heatmap(bpp: np.ndarray, width: int, height: int, scale: float | None = None) -> tuple[np.ndarray, float]:
    """The map as an RGB image of the frame's size (inferno colours, 0 black to `scale` yellow;
    default scale: the frame's largest value). Returns (image, scale)."""
    scale = float(scale or max(float(bpp.max()), 1e-6))
    levels = np.clip(bpp / scale * 255.0, 0, 255).astype(np.uint8)
    big = cv2.resize(levels, (16 * bpp.shape[1], 16 * bpp.shape[0]), interpolation=cv2.INTER_NEAREST)[:height, :width]
    return cv2.cvtColor(cv2.applyColorMap(big, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB), scale
