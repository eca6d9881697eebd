"""The torch-free encoder: int8 ONNX analysis transform + deterministic entropy path.

This is what runs on edge devices: numpy, ONNX Runtime and constriction, no PyTorch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort

from lsic.codec.bitstream import TILE_CODED, TILE_SAME_AS_PREVIOUS, Container, TileEntry
from lsic.codec.entropy.latents import encode_tile
from lsic.codec.errors import InputImageError
from lsic.codec.image_io import to_rgb8
from lsic.codec.package import STRIDE, ModelPackage, load_package
from lsic.codec.threads import single_threaded_blas
from lsic.codec.tiling import DEFAULT_TILE, Grid, Tile, cut

ANALYSIS_BATCH = 8  # tiles per ONNX Runtime call


def make_session(path: str, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


class Encoder:
    """Encodes RGB frames into .lsic containers with one model package."""

    def __init__(self, model: str | ModelPackage = "default", threads: int = 2, precision: str = "int8") -> None:
        self.pkg = model if isinstance(model, ModelPackage) else load_package(model)
        name = "analysis.int8.onnx" if precision == "int8" else "analysis.fp32.onnx"
        self.session = make_session(str(self.pkg.path(name)), threads)
        single_threaded_blas()
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="lsic-entropy")

    def analyse(self, tiles: list[np.ndarray], op: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Padded RGB tiles -> (y, z) per tile; tiles of one shape go through in one batch."""
        gain = self.pkg.gain(op)[None, :, None, None]
        by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, t in enumerate(tiles):
            by_shape[t.shape[:2]].append(i)
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(tiles)
        for idxs in by_shape.values():
            for start in range(0, len(idxs), ANALYSIS_BATCH):  # bounded batches bound memory
                chunk = idxs[start : start + ANALYSIS_BATCH]
                x = np.stack([tiles[i] for i in chunk]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
                y, z = self.session.run(["y", "z"], {"x": x, "gain": gain})
                for k, i in enumerate(chunk):
                    out[i] = (y[k], z[k])
        return out  # type: ignore[return-value]

    def encode_tiles(self, rgb: np.ndarray, tiles: Iterable[Tile], op: int, chunk: int = 16) -> dict[int, bytes]:
        """Payloads of the given tiles; tiles go through in chunks so memory stays bounded."""
        tiles = list(tiles)
        payloads: dict[int, bytes] = {}
        for start in range(0, len(tiles), chunk):
            part = tiles[start : start + chunk]
            results = self.analyse([cut(rgb, t, STRIDE) for t in part], op)
            coded = self.pool.map(lambda yz: encode_tile(self.pkg, *yz), results)
            payloads.update({t.index: p for t, p in zip(part, coded, strict=True)})
        return payloads

    def encode(
        self, rgb: np.ndarray, quality: int, tile_size: int = DEFAULT_TILE, unchanged: Iterable[int] = ()
    ) -> bytes:
        """Encode an image; tiles listed in `unchanged` are sent as references to the previous frame."""
        rgb = to_rgb8(rgb)
        if tile_size <= 0 or tile_size % STRIDE:
            raise InputImageError(f"tile size must be a positive multiple of {STRIDE}, got {tile_size}")
        op = self.pkg.check_quality(quality)
        h, w = rgb.shape[:2]
        grid = Grid(w, h, tile_size)
        skip = set(unchanged)
        payloads = self.encode_tiles(rgb, [t for t in grid.tiles() if t.index not in skip], op)
        entries = [
            TileEntry(TILE_SAME_AS_PREVIOUS) if t.index in skip else TileEntry(TILE_CODED, payloads[t.index])
            for t in grid.tiles()
        ]
        return Container(w, h, tile_size, quality, self.pkg.id, self.pkg.hash, entries).to_bytes()
