"""Temporal coding for fixed cameras: keyframes, then frames that code only the blocks that changed.

A keyframe codes every tile as a still image would. The frames after it are predicted
(lsic.codec.entropy.predicted): each 64x64 block is either coded, merged into the previous
frame's latents, or kept as it was. The choice is a rate-distortion one, made on the edge
without a decoder: keeping a block costs the squared error between the frame and what was last
coded there (the cloud still shows that), coding it costs about the bits it took last time. A
block is coded when lambda * that error outweighs those bits, lambda being the one each
operating point was trained with (model.json), so higher qualities refresh more eagerly.

Comparing with what was last *coded* (not with the previous frame) keeps slow drift from
accumulating. Keyframes come every `keyframe_interval` frames and on a scene change (most
blocks changed), so any frame decodes from its nearest keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lsic.codec.bitstream import (
    FLAG_PREDICTED,
    FLAG_QUALITY_MAP,
    FLAG_TWO_PASS,
    MAP_BLOCK,
    TILE_CODED,
    TILE_PREDICTED,
    VERSION_FLAGS,
    VERSION_TWO_PASS,
    Container,
    TileEntry,
)
from lsic.codec.encoder import Encoder
from lsic.codec.entropy.latents import encode_symbols, position_bits, quantize
from lsic.codec.entropy.predicted import LatentState, encode_predicted, intra_state, unchanged_tile
from lsic.codec.errors import InputImageError
from lsic.codec.image_io import to_rgb8
from lsic.codec.package import STRIDE, ModelPackage
from lsic.codec.quality_map import check as check_map
from lsic.codec.quality_map import gains_for, qualities, tile_levels
from lsic.codec.tiling import DEFAULT_TILE, Tile, cut

BLOCK = MAP_BLOCK  # one z position


@dataclass
class VideoSettings:
    keyframe_interval: int = 250  # frames from one keyframe to the next (x264's default too)
    scene_change: float = 0.6  # a frame with more than this share of its blocks changed is a keyframe
    rd_scale: float = 1.0  # multiplies lambda: above 1 codes more blocks (higher quality, more bits)


@dataclass
class CodedFrame:
    data: bytes
    keyframe: bool
    blocks: int  # 64x64 blocks in the frame
    coded_blocks: int  # blocks coded in this frame (all of them in a keyframe)


def rd_lambdas(pkg: ModelPackage) -> np.ndarray:
    """Lambda of each quality (1..n) in bits per unit of squared error on 0..255, per pixel and
    channel: model.json's training lambdas, extrapolated geometrically to untrained points."""
    points = pkg.meta.get("operating_points") or []
    known = {p["quality"]: p["lambda"] for p in points if p.get("lambda")}
    n = pkg.n_rates
    if not known:
        return 0.013 * 1.93 ** (np.arange(1, n + 1) - 6.0)
    qs = sorted(known)
    ratio = (known[qs[-1]] / known[qs[0]]) ** (1 / max(1, qs[-1] - qs[0])) if len(qs) > 1 else 1.93
    out = []
    for q in range(1, n + 1):
        near = min(qs, key=lambda k: abs(k - q))
        out.append(known[near] * ratio ** (q - near))
    return np.asarray(out, dtype=np.float64)


@dataclass
class _TileMemory:
    """What the edge keeps of one tile: the decoder's state, the pixels last coded in each block,
    and what each block cost then."""

    state: LatentState
    pixels: np.ndarray  # padded tile, uint8 (H, W, 3)
    block_bits: np.ndarray  # (h, w)


class VideoEncoder:
    """Encodes the frames of one stream in order; the cloud decodes them in the same order."""

    def __init__(self, encoder: Encoder, tile_size: int = DEFAULT_TILE, settings: VideoSettings | None = None) -> None:
        self.encoder, self.pkg, self.tile_size = encoder, encoder.pkg, tile_size
        self.settings = settings or VideoSettings()
        self.lambdas = rd_lambdas(self.pkg)
        self.memory: dict[int, _TileMemory] = {}
        self.shape: tuple[int, int] | None = None
        self.since_key = 0
        self._force = True

    def force_keyframe(self) -> None:
        """The next frame is a keyframe (the stream was cut: frames dropped, a new connection)."""
        self._force = True

    def next_is_keyframe(self, shape: tuple[int, int]) -> bool:
        """Whether the next frame will be a keyframe by schedule (a scene change is found only
        while encoding it)."""
        return self._force or shape != self.shape or self.since_key + 1 >= self.settings.keyframe_interval

    def encode(self, rgb: np.ndarray, quality: int, quality_map: np.ndarray | None = None) -> CodedFrame:
        rgb = to_rgb8(rgb)
        h, w = rgb.shape[:2]
        self.pkg.check_quality(quality)
        if self.tile_size <= 0 or self.tile_size % STRIDE:
            raise InputImageError(f"tile size must be a multiple of {STRIDE}, got {self.tile_size}")
        header = Container(w, h, self.tile_size, quality, self.pkg.id, self.pkg.hash)
        if quality_map is not None:
            header.quality_map = check_map(quality_map, w, h, self.pkg.n_rates)
        key = self.next_is_keyframe((h, w))
        changed = {} if key else self._changed_blocks(rgb, header)
        n_blocks = _blocks(header)
        n_changed = sum(int(c.sum()) for c in changed.values())
        if not key and n_changed > self.settings.scene_change * n_blocks:
            key = True
        frame = self._keyframe(rgb, header) if key else self._predicted(rgb, header, changed)
        self.since_key = 0 if key else self.since_key + 1
        self.shape, self._force = (h, w), False
        return CodedFrame(frame, key, n_blocks, n_blocks if key else n_changed)

    def _lambda(self, header: Container, tile: Tile, ph: int, pw: int) -> np.ndarray:
        """Lambda per block of a padded tile (the quality map's, or the frame's quality)."""
        if header.quality_map is None:
            return np.full((ph // BLOCK, pw // BLOCK), self.lambdas[header.quality - 1])
        q = qualities(tile_levels(header.quality_map, tile, ph, pw)[::4, ::4])
        lo = np.floor(q).astype(int)
        hi = np.minimum(lo + 1, len(self.lambdas))
        frac = q - lo
        logs = np.log(self.lambdas)
        return np.exp(logs[lo - 1] * (1 - frac) + logs[hi - 1] * frac)

    def _changed_blocks(self, rgb: np.ndarray, header: Container) -> dict[int, np.ndarray]:
        """Blocks worth coding, per tile (only tiles with at least one)."""
        out = {}
        scale = self.settings.rd_scale
        for t in header.grid.tiles():
            mem = self.memory[t.index]
            padded = cut(rgb, t, STRIDE)
            ph, pw = padded.shape[:2]
            diff = (padded.astype(np.int32) - mem.pixels.astype(np.int32)) ** 2
            sse = diff.reshape(ph // BLOCK, BLOCK, pw // BLOCK, BLOCK, 3).sum(axis=(1, 3, 4)) / 3.0
            coded = scale * self._lambda(header, t, ph, pw) * sse > mem.block_bits
            if coded.any():
                out[t.index] = coded
        return out

    def _analyse(self, rgb: np.ndarray, header: Container, tile: Tile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        padded = cut(rgb, tile, STRIDE)
        gain = gains_for(self.pkg.arrays["gain"], header, tile, padded.shape[0], padded.shape[1])
        op = header.quality - 1 if header.quality_map is None else gain
        y, z = self.encoder.analyse_tile(padded, op)
        return padded, y, z

    def _keyframe(self, rgb: np.ndarray, header: Container) -> bytes:
        _set_version(header, self.pkg, predicted=False)

        def one(tile: Tile) -> tuple[int, bytes]:
            padded, y, z = self._analyse(rgb, header, tile)
            s = quantize(self.pkg, y, z)
            bits = _block_sums(position_bits(self.pkg, s))
            self.memory[tile.index] = _TileMemory(intra_state(s), padded.copy(), bits)  # cut() may return a view
            return tile.index, encode_symbols(self.pkg, s)

        self.memory = {}
        payloads = dict(self.encoder.pool.map(one, header.grid.tiles()))
        header.tiles = [TileEntry(TILE_CODED, payloads[t.index]) for t in header.grid.tiles()]
        return header.to_bytes()

    def _predicted(self, rgb: np.ndarray, header: Container, changed: dict[int, np.ndarray]) -> bytes:
        _set_version(header, self.pkg, predicted=True)

        def one(tile: Tile) -> tuple[int, bytes]:
            mem = self.memory[tile.index]
            coded = changed.get(tile.index)
            if coded is None:
                return tile.index, unchanged_tile(mem.state)
            padded, y, z = self._analyse(rgb, header, tile)
            p = encode_predicted(self.pkg, y, z, mem.state, coded)
            at = np.kron(coded, np.ones((BLOCK, BLOCK), dtype=bool))
            mem.pixels[at] = padded[at]
            mem.block_bits = np.where(coded, p.block_bits, mem.block_bits)
            mem.state = p.state
            return tile.index, p.payload

        payloads = dict(self.encoder.pool.map(one, header.grid.tiles()))
        header.tiles = [TileEntry(TILE_PREDICTED, payloads[t.index]) for t in header.grid.tiles()]
        return header.to_bytes()


def _set_version(header: Container, pkg: ModelPackage, predicted: bool) -> None:
    two_pass = bool(pkg.context_layers)
    if predicted or header.quality_map is not None:
        header.version = VERSION_FLAGS
        header.flags = (
            (FLAG_TWO_PASS if two_pass else 0)
            | (FLAG_QUALITY_MAP if header.quality_map is not None else 0)
            | (FLAG_PREDICTED if predicted else 0)
        )
    else:
        header.version = VERSION_TWO_PASS if two_pass else 1


def _blocks(header: Container) -> int:
    return sum((-(-t.h // BLOCK)) * (-(-t.w // BLOCK)) for t in header.grid.tiles())


def _block_sums(per_position: np.ndarray) -> np.ndarray:
    """(4h, 4w) per latent position -> (h, w) per 64x64 block."""
    h, w = per_position.shape[0] // 4, per_position.shape[1] // 4
    return per_position.reshape(h, 4, w, 4).sum(axis=(1, 3))
