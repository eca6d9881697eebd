"""The tile grid: independent tiles give random access, region decoding and bounded memory.

Tiles are coded independently; each is padded (edge replication) to a multiple of the model's
stride before coding and cropped back after decoding. The transforms run over windows of several
tiles (lsic.codec.windows), so decoded tiles meet without seams; only where a tile reused from
the previous frame meets a decoded one are the few pixels on either side of the border smoothed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lsic.codec.errors import RegionError

DEFAULT_TILE = 256
SEAM_RADIUS = 4  # chosen by measurement: flattens the error peak at seams (docs/benchmarks.md)


@dataclass(frozen=True)
class Tile:
    index: int
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Grid:
    width: int
    height: int
    tile: int

    @property
    def cols(self) -> int:
        return max(1, -(-self.width // self.tile))

    @property
    def rows(self) -> int:
        return max(1, -(-self.height // self.tile))

    def __len__(self) -> int:
        return self.cols * self.rows

    def tiles(self) -> list[Tile]:
        out = []
        for r in range(self.rows):
            for c in range(self.cols):
                x, y = c * self.tile, r * self.tile
                out.append(
                    Tile(r * self.cols + c, x, y, min(self.tile, self.width - x), min(self.tile, self.height - y))
                )
        return out

    def tiles_in(self, x: int, y: int, w: int, h: int) -> list[Tile]:
        """Tiles that a window touches (the only ones a region decode needs)."""
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > self.width or y + h > self.height:
            raise RegionError(f"region {x},{y},{w},{h} is not inside the {self.width}x{self.height} image")
        c0, c1 = x // self.tile, (x + w - 1) // self.tile
        r0, r1 = y // self.tile, (y + h - 1) // self.tile
        all_tiles = self.tiles()
        return [all_tiles[r * self.cols + c] for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]


def padded_size(n: int, stride: int) -> int:
    return max(stride, -(-n // stride) * stride)


def cut(img: np.ndarray, tile: Tile, stride: int) -> np.ndarray:
    """A tile's pixels, padded by edge replication to a multiple of the stride."""
    core = img[tile.y : tile.y + tile.h, tile.x : tile.x + tile.w]
    ph, pw = padded_size(tile.h, stride) - tile.h, padded_size(tile.w, stride) - tile.w
    if ph or pw:
        core = np.pad(core, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return core


def place(out: np.ndarray, tile: Tile, pixels: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """Copy a decoded tile (cropped to its true size) into the window at x0,y0.

    Returns the tile's pixels: a view into `out` when the tile lies inside the window, so a
    full decode holds each pixel once.
    """
    h, w = out.shape[:2]
    ix0, iy0 = max(tile.x, x0), max(tile.y, y0)
    ix1, iy1 = min(tile.x + tile.w, x0 + w), min(tile.y + tile.h, y0 + h)
    if ix0 >= ix1 or iy0 >= iy1:  # a neighbour decoded for its latents only
        return pixels
    out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = pixels[iy0 - tile.y : iy1 - tile.y, ix0 - tile.x : ix1 - tile.x]
    inside = tile.x >= x0 and tile.y >= y0 and tile.x + tile.w <= x0 + w and tile.y + tile.h <= y0 + h
    if inside:
        return out[tile.y - y0 : tile.y - y0 + tile.h, tile.x - x0 : tile.x - x0 + tile.w]
    return pixels


def smooth_seams(img: np.ndarray, grid: Grid, x0: int, y0: int, rough: Callable[[int, int], bool]) -> None:
    """Blend the pixels next to the tile borders between two tiles that `rough(a, b)` says were
    not synthesized together (a reused tile beside a decoded one), to hide blocking (in place)."""
    h, w = img.shape[:2]
    r = SEAM_RADIUS
    for row in range(grid.rows):
        for col in range(grid.cols):
            here = row * grid.cols + col
            top, bottom = row * grid.tile - y0, min(grid.height, (row + 1) * grid.tile) - y0
            left, right = col * grid.tile - x0, min(grid.width, (col + 1) * grid.tile) - x0
            if col and r <= left <= w - r and rough(here - 1, here):
                _blend(img[max(0, top) : max(0, bottom)], left, r, axis=1)
            if row and r <= top <= h - r and rough(here - grid.cols, here):
                _blend(img[:, max(0, left) : max(0, right)], top, r, axis=0)


def _blend(img: np.ndarray, c: int, r: int, axis: int) -> None:
    """Pull the 2r pixels around a seam towards the straight ramp between the band's ends,
    most strongly at the seam."""
    if r <= 0:
        return
    shape = [-1 if a == axis else 1 for a in range(3)]
    band = np.take(img, range(c - r, c + r), axis=axis).astype(np.float32)
    left = np.take(band, [0], axis=axis)
    right = np.take(band, [2 * r - 1], axis=axis)
    ramp = (np.arange(2 * r, dtype=np.float32) / (2 * r - 1)).reshape(shape)
    linear = left * (1 - ramp) + right * ramp
    distance = np.abs(np.arange(2 * r, dtype=np.float32) - (r - 0.5))
    weight = np.clip(1.0 - distance / r, 0.0, 1.0).reshape(shape)
    idx = [slice(None)] * 3
    idx[axis] = slice(c - r, c + r)
    img[tuple(idx)] = np.clip(np.rint(band * (1 - weight) + linear * weight), 0, 255).astype(np.uint8)
