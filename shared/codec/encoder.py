"""The torch-free encoder: int8 ONNX analysis transform + deterministic entropy path.

This is what runs on edge devices: numpy, ONNX Runtime and constriction, no PyTorch.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort

from lsic.codec.bitstream import (
    DEFAULT_LIMITS,
    TILE_CODED,
    TILE_SAME_AS_PREVIOUS,
    Container,
    TileEntry,
)
from lsic.codec.entropy.latents import encode_tile
from lsic.codec.errors import InputImageError, ModelError, UsageError
from lsic.codec.image_io import to_rgb8
from lsic.codec.package import STRIDE, ModelPackage, load_package
from lsic.codec.quality_map import check as check_map
from lsic.codec.quality_map import gains_for
from lsic.codec.threads import single_threaded_blas
from lsic.codec.tiling import DEFAULT_TILE, Tile
from lsic.codec.windows import Window, analysis_windows, cut_window, tile_latents


def make_session(path: str, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


ANALYSIS_FILES = {"int8": "analysis.int8.onnx", "fp32": "analysis.fp32.onnx"}  # by precision


class Encoder:
    """Encodes RGB frames into .lsic containers with one model package.

    The analysis runs over windows of several tiles with a halo (lsic.codec.windows), so the
    latents at tile borders are those of the whole frame; each tile is then entropy-coded on
    its own. Parallel over windows: each of `threads` workers takes a window through analysis
    (a single-threaded ONNX Runtime run) and its tiles' entropy path. Memory holds `threads`
    windows in flight.
    """

    def __init__(self, model: str | ModelPackage = "default", threads: int = 2, precision: str = "int8") -> None:
        if precision not in ANALYSIS_FILES:
            raise UsageError(f"unknown analysis precision {precision!r}; known: {', '.join(ANALYSIS_FILES)}")
        self.pkg = model if isinstance(model, ModelPackage) else load_package(model)
        if self.pkg.decode_only:
            raise ModelError(
                f"{self.pkg.root} is a retired build of model '{self.pkg.id}': it decodes, it does not encode"
            )
        self.session = make_session(str(self.pkg.path(ANALYSIS_FILES[precision])), 1)
        single_threaded_blas()
        self.workers = max(1, threads)
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="lsic-encode")

    def analyse_tile(self, tile: np.ndarray, op: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One padded RGB tile or window (H, W, 3) uint8 -> gained latent y (M, H/16, W/16) and z.

        op: the operating point (0-based), or a gain per latent position (M, H/16, W/16)."""
        x = tile.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        gain = self.pkg.gain(op)[:, None, None] if isinstance(op, int) else op
        y, z = self.session.run(["y", "z"], {"x": x, "gain": np.ascontiguousarray(gain[None], dtype=np.float32)})
        return y[0], z[0]

    def analyse(self, tiles: list[np.ndarray], op: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Padded RGB tiles -> (y, z) per tile, in parallel."""
        return list(self.pool.map(lambda t: self.analyse_tile(t, op), tiles))

    def window_latents(self, rgb: np.ndarray, window: Window, header: Container) -> list[tuple[Tile, np.ndarray, np.ndarray]]:
        """(tile, y, z) of each tile of one window: the window is cut and analysed once."""
        pixels = cut_window(rgb, window)
        gain = gains_for(self.pkg.arrays["gain"], header, window.as_tile(), pixels.shape[0], pixels.shape[1])
        y, z = self.analyse_tile(pixels, header.quality - 1 if header.quality_map is None else gain)
        return [(t, *tile_latents(window, y, z, t, STRIDE)) for t in window.tiles]

    def encode_tiles(self, rgb: np.ndarray, tiles: Iterable[Tile], header: Container) -> dict[int, bytes]:
        """Payloads of the given tiles; each window is cut only when a worker takes it."""

        def encode_window(window: Window) -> list[tuple[int, bytes]]:
            return [(t.index, encode_tile(self.pkg, y, z)) for t, y, z in self.window_latents(rgb, window, header)]

        windows = analysis_windows(header.grid, tiles, STRIDE, self.workers)
        return {i: payload for done in self.pool.map(encode_window, windows) for i, payload in done}

    def frame_latents(self, rgb: np.ndarray, quality: int, tile_size: int = DEFAULT_TILE) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every tile's (y, z) in tile order, exactly as encode() entropy-codes them (for measurements)."""
        rgb = to_rgb8(rgb)
        header = self.frame_header(rgb, quality, tile_size)
        windows = analysis_windows(header.grid, header.grid.tiles(), STRIDE, self.workers)
        found = {t.index: (y, z) for done in self.pool.map(lambda w: self.window_latents(rgb, w, header), windows) for t, y, z in done}
        return [found[i] for i in sorted(found)]

    def frame_header(self, rgb: np.ndarray, quality: int, tile_size: int) -> Container:
        """The container header of a frame at one quality, its tile size and quality checked."""
        if tile_size <= 0 or tile_size % STRIDE or tile_size > DEFAULT_LIMITS.max_tile:
            raise InputImageError(
                f"tile size must be a multiple of {STRIDE} up to {DEFAULT_LIMITS.max_tile}, got {tile_size}"
            )
        self.pkg.check_quality(quality)
        return Container(rgb.shape[1], rgb.shape[0], tile_size, quality, self.pkg.id, self.pkg.hash)

    def encode(
        self,
        rgb: np.ndarray,
        quality: int,
        tile_size: int = DEFAULT_TILE,
        unchanged: Iterable[int] = (),
        quality_map: np.ndarray | None = None,
    ) -> bytes:
        """Encode an image; tiles listed in `unchanged` are sent as references to the previous frame.

        quality_map: a quality (1..n) per 64x64 block (lsic.codec.quality_map), else `quality`
        everywhere; the header's quality is then the frame's base quality."""
        rgb = to_rgb8(rgb)
        h, w = rgb.shape[:2]
        header = self.frame_header(rgb, quality, tile_size)
        if quality_map is not None:
            header.quality_map = check_map(quality_map, w, h, self.pkg.n_rates)
        header.set_coding(two_pass=bool(self.pkg.context_layers))
        grid = header.grid
        skip = set(unchanged)
        payloads = self.encode_tiles(rgb, [t for t in grid.tiles() if t.index not in skip], header)
        header.tiles = [
            TileEntry(TILE_SAME_AS_PREVIOUS) if t.index in skip else TileEntry(TILE_CODED, payloads[t.index])
            for t in grid.tiles()
        ]
        return header.to_bytes()
