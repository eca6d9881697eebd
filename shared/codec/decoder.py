"""The decoder: container -> checked tiles -> entropy path -> batched synthesis -> stitched RGB.

Region decoding touches only the tiles a window intersects. Tiles marked "same as previous"
reuse the previous frame's decoded tile, which the caller passes in.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from lsic.codec.bitstream import TILE_SAME_AS_PREVIOUS, ParsedContainer, parse
from lsic.codec.entropy.latents import TileSymbols, decode_tile
from lsic.codec.errors import BitstreamError, ModelHashError, OperatingPointError
from lsic.codec.package import STRIDE, ModelPackage, load_package
from lsic.codec.synthesis import make_synthesis, to_rgb8
from lsic.codec.tiling import Tile, padded_size, place, smooth_seams

BATCH = 8


@dataclass
class DecodedFrame:
    rgb: np.ndarray  # the requested window
    tiles: dict[int, np.ndarray]  # decoded tiles (cropped to their true size), by index
    region: tuple[int, int, int, int]


class Decoder:
    def __init__(self, backend: str = "auto", device: str = "auto", threads: int = 0) -> None:
        self.backend, self.device, self.threads = backend, device, threads
        self._synth: dict[str, object] = {}

    def package_for(self, parsed: ParsedContainer) -> ModelPackage:
        h = parsed.header
        pkg = load_package(h.model_id)
        if pkg.hash != h.model_hash:
            raise ModelHashError(f"bitstream was made by a different build of model '{h.model_id}' (hash mismatch)")
        pkg.check_quality(h.quality) if h.quality >= 1 else None
        if not 1 <= h.quality <= pkg.n_rates:
            raise OperatingPointError(f"bitstream quality {h.quality} is not an operating point of {h.model_id}")
        return pkg

    def synthesis(self, pkg: ModelPackage):
        s = self._synth.get(pkg.id)
        if s is None:
            s = make_synthesis(pkg, self.backend, self.device, self.threads)
            self._synth[pkg.id] = s
        return s

    def tile_symbols(self, parsed: ParsedContainer, pkg: ModelPackage, tile: Tile) -> TileSymbols:
        payload = parsed.tile_payload(tile.index)
        return decode_tile(pkg, payload, padded_size(tile.h, STRIDE), padded_size(tile.w, STRIDE))

    def symbols(self, data: bytes) -> list[TileSymbols | None]:
        """All decoded integers of every coded tile (None for reference tiles)."""
        parsed = parse(data)
        pkg = self.package_for(parsed)
        return [
            None if parsed.kinds[t.index] == TILE_SAME_AS_PREVIOUS else self.tile_symbols(parsed, pkg, t)
            for t in parsed.header.grid.tiles()
        ]

    def decode(
        self,
        data: bytes,
        region: tuple[int, int, int, int] | None = None,
        previous: dict[int, np.ndarray] | None = None,
    ) -> DecodedFrame:
        """Decode the tiles a region (default: the whole image) touches, streaming in batches."""
        parsed = parse(data)
        pkg = self.package_for(parsed)
        grid = parsed.header.grid
        x, y, w, h = region if region else (0, 0, grid.width, grid.height)
        needed = grid.tiles_in(x, y, w, h)
        inv_gain = pkg.inv_gain(parsed.header.quality - 1)[:, None, None]
        out = np.zeros((h, w, 3), dtype=np.uint8)
        tiles: dict[int, np.ndarray] = {}
        pending: dict[tuple[int, int], list[tuple[Tile, np.ndarray]]] = defaultdict(list)
        synth = self.synthesis(pkg)

        def flush(group: list[tuple[Tile, np.ndarray]]) -> None:
            x_hat = synth.run(np.stack([yh for _, yh in group]))
            for (t, _), img in zip(group, x_hat, strict=True):
                tiles[t.index] = place(out, t, to_rgb8(img)[: t.h, : t.w], x, y)
            group.clear()

        for t in needed:
            if parsed.kinds[t.index] == TILE_SAME_AS_PREVIOUS:
                if not previous or t.index not in previous:
                    raise BitstreamError(f"tile {t.index} refers to the previous frame, which is not available")
                tiles[t.index] = place(out, t, previous[t.index], x, y)
                continue
            s = self.tile_symbols(parsed, pkg, t)
            group = pending[s.y.shape[1:]]
            group.append((t, s.y_hat() * inv_gain))
            if len(group) == BATCH:
                flush(group)
        for group in pending.values():
            if group:
                flush(group)
        smooth_seams(out, grid, x, y)
        return DecodedFrame(out, tiles, (x, y, w, h))


def decode_file_info(data: bytes) -> dict:
    return parse(data).info()
