"""Where the transforms run: windows of several tiles with a halo from their neighbours.

Tiles are independent in the bitstream (each has its own rANS stream and hyperprior), which
gives random access, region decoding and damage isolation. They need not be independent in the
pixels: the analysis transform sees a window of up to WINDOW x WINDOW pixels of whole tiles plus ANALYSIS_HALO
pixels of their neighbours, and the synthesis reads the latents of a window plus
SYNTHESIS_HALO latent rows and columns of the neighbouring tiles. Each latent then depends on
the pixels around it as if the whole frame had been transformed at once, and the tile borders
leave no seams. The halos cover the transforms' reach (a latent reads 30 pixels beyond its
16x16 block, a pixel 2 latents), so a tile's pixels do not depend on how the frame was cut into
windows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from lsic.codec.tiling import Grid, Tile, padded_size

WINDOW = 1024  # pixels per window side (without the halo): 4 x 4 tiles of 256 px
ANALYSIS_HALO = 64  # pixels; a multiple of the stride of z, so the window's z grid lines up with the tiles'
SYNTHESIS_HALO = 2  # latents (32 pixels): how far a decoded pixel reads
REGION_REACH = 16 * SYNTHESIS_HALO  # a region this close to a tile border also decodes the neighbour
LATENT = 16  # pixels per latent position
HYPER = 64  # pixels per position of z


@dataclass(frozen=True)
class Window:
    """A rectangle of the padded frame (pixels, or latents for synthesis) and the tiles whose
    results it produces."""

    tiles: tuple[Tile, ...]
    x0: int
    y0: int
    x1: int
    y1: int

    def as_tile(self) -> Tile:
        """The rectangle as a tile, for code that takes one (gains per latent position)."""
        return Tile(-1, self.x0, self.y0, self.x1 - self.x0, self.y1 - self.y0)


def padded_frame(grid: Grid, stride: int) -> tuple[int, int]:
    """(height, width) of the frame padded as its tiles are: each tile to a multiple of stride."""
    last_w = grid.width - (grid.cols - 1) * grid.tile
    last_h = grid.height - (grid.rows - 1) * grid.tile
    return (grid.rows - 1) * grid.tile + padded_size(last_h, stride), (grid.cols - 1) * grid.tile + padded_size(
        last_w, stride
    )


def tile_extent(tile: Tile, stride: int) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 of a tile padded to a multiple of stride, in frame pixels."""
    return tile.x, tile.y, tile.x + padded_size(tile.w, stride), tile.y + padded_size(tile.h, stride)


def span(grid: Grid) -> int:
    """Tiles per window side: windows stay near WINDOW pixels whatever the tile size, which
    bounds the transforms' activations as one tile used to."""
    return max(1, WINDOW // grid.tile)


def blocks(grid: Grid, tiles: Iterable[Tile]) -> list[list[Tile]]:
    """Tiles grouped into span x span blocks of the grid, in row-major block order."""
    out: dict[tuple[int, int], list[Tile]] = {}
    n = span(grid)
    for t in tiles:
        out.setdefault(((t.y // grid.tile) // n, (t.x // grid.tile) // n), []).append(t)
    return [out[k] for k in sorted(out)]


def _bands(grid: Grid, tiles: list[Tile], parts: int) -> list[list[Tile]]:
    """Tiles in horizontal bands of whole tile rows, at least `parts` bands where rows allow."""
    rows = sorted({t.y // grid.tile for t in tiles})
    per = max(1, -(-len(rows) // max(1, parts)))
    bands = [set(rows[i : i + per]) for i in range(0, len(rows), per)]
    return [[t for t in tiles if t.y // grid.tile in band] for band in bands]


def analysis_windows(grid: Grid, tiles: Iterable[Tile], stride: int, workers: int = 1) -> list[Window]:
    """Pixel windows of the padded frame that cover the given tiles, each with its halo (clipped
    to the frame). A frame of few blocks is cut into bands of tile rows so that `workers`
    threads each get a window."""
    tiles = list(tiles)
    groups = blocks(grid, tiles)
    if len(groups) < workers:
        groups = [b for g in groups for b in _bands(grid, g, -(-workers // len(groups)))]
    frame_h, frame_w = padded_frame(grid, stride)
    out = []
    for group in groups:
        extents = [tile_extent(t, stride) for t in group]
        x0 = max(0, min(e[0] for e in extents) - ANALYSIS_HALO)
        y0 = max(0, min(e[1] for e in extents) - ANALYSIS_HALO)
        x1 = min(frame_w, max(e[2] for e in extents) + ANALYSIS_HALO)
        y1 = min(frame_h, max(e[3] for e in extents) + ANALYSIS_HALO)
        out.append(Window(tuple(group), x0, y0, x1, y1))
    return out


def cut_window(rgb: np.ndarray, window: Window) -> np.ndarray:
    """A window's pixels; the part beyond the image repeats its last row and column, as the
    padding of a tile does."""
    h, w = rgb.shape[:2]
    core = rgb[window.y0 : min(window.y1, h), window.x0 : min(window.x1, w)]
    ph, pw = window.y1 - window.y0 - core.shape[0], window.x1 - window.x0 - core.shape[1]
    if ph or pw:
        core = np.pad(core, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return core


def tile_latents(window: Window, y: np.ndarray, z: np.ndarray, tile: Tile, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """The y and z of one tile, cut from its window's."""
    x0, y0, x1, y1 = tile_extent(tile, stride)
    ly = y[:, (y0 - window.y0) // LATENT : (y1 - window.y0) // LATENT, (x0 - window.x0) // LATENT : (x1 - window.x0) // LATENT]
    lz = z[:, (y0 - window.y0) // HYPER : (y1 - window.y0) // HYPER, (x0 - window.x0) // HYPER : (x1 - window.x0) // HYPER]
    return np.ascontiguousarray(ly), np.ascontiguousarray(lz)


def synthesis_windows(
    grid: Grid, tiles: list[Tile], decoded: Iterator[tuple[Tile, np.ndarray]], stride: int
) -> Iterator[tuple[Window, np.ndarray]]:
    """(window, latent input) for every block of `tiles` (row-major), as `decoded` yields their
    latents (in the same order). A window's input holds its tiles' latents and SYNTHESIS_HALO
    rows and columns of every neighbour among `tiles` (zeros where a neighbour is not among
    them); it is clipped to the rectangle `tiles` span. The window's rectangle is in latents.
    Only the latents of about span + 2 tile rows are held at once."""
    if not tiles:
        return
    by_index = {t.index: t for t in tiles}
    extents = {t.index: tuple(v // LATENT for v in tile_extent(t, stride)) for t in tiles}
    bx0 = min(e[0] for e in extents.values())
    by0 = min(e[1] for e in extents.values())
    bx1 = max(e[2] for e in extents.values())
    by1 = max(e[3] for e in extents.values())
    present: dict[int, np.ndarray] = {}
    last_row, done = -1, False
    source = iter(decoded)
    n = span(grid)
    for block in blocks(grid, tiles):
        band_end = (block[0].y // grid.tile) // n * n + n  # first tile row below the band
        while not done and last_row <= band_end:
            try:
                t, y_hat = next(source)
            except StopIteration:
                done = True
                break
            present[t.index], last_row = y_hat, t.y // grid.tile
        e = [extents[t.index] for t in block]
        x0, y0 = max(bx0, min(v[0] for v in e) - SYNTHESIS_HALO), max(by0, min(v[1] for v in e) - SYNTHESIS_HALO)
        x1, y1 = min(bx1, max(v[2] for v in e) + SYNTHESIS_HALO), min(by1, max(v[3] for v in e) + SYNTHESIS_HALO)
        channels = next(iter(present.values())).shape[0]
        latent = np.zeros((channels, y1 - y0, x1 - x0), dtype=np.float32)
        for index, y_hat in present.items():
            tx0, ty0, tx1, ty1 = extents[index]
            ix0, iy0, ix1, iy1 = max(tx0, x0), max(ty0, y0), min(tx1, x1), min(ty1, y1)
            if ix0 < ix1 and iy0 < iy1:
                latent[:, iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = y_hat[:, iy0 - ty0 : iy1 - ty0, ix0 - tx0 : ix1 - tx0]
        yield Window(tuple(block), x0, y0, x1, y1), latent
        keep_from = band_end - n - 1  # the band's top halo row stays
        for index in [i for i in present if by_index[i].y // grid.tile < keep_from]:
            del present[index]
    for _ in source:  # let the source finish (it may report its tiles' latents when done)
        pass


def window_tile_pixels(window: Window, rgb: np.ndarray, tile: Tile) -> np.ndarray:
    """One tile's pixels (true size) out of a synthesized window (rgb of the window's latents)."""
    ox, oy = LATENT * window.x0, LATENT * window.y0
    return rgb[tile.y - oy : tile.y - oy + tile.h, tile.x - ox : tile.x - ox + tile.w]
