"""Temporal coding for fixed cameras: keyframes, then frames that code only the blocks that changed.

A keyframe codes every tile as a still image would; a scheduled one at the top quality by
default: what it codes stays on screen wherever the scene does not move, for the whole
interval, while its cost is shared by every frame of it. The frames after it are predicted
(lsic.codec.entropy.predicted): each 16x16 block (one y position) is either coded, merged into
the previous frame's latents, or kept as it was. The choice is a rate-distortion one, made on the edge without a decoder:
keeping a block costs the squared error between the frame and what was last coded there (the
cloud still shows that) plus that coding's own error; coding it costs the error of coding now
and about the bits it took last time. The coding errors are those model.json measured on Kodak
per quality, so sensor noise alone does not make a block worth re-coding at a lower quality
than the keyframe's. A block is coded when lambda times the error removed outweighs the bits,
lambda being the one each operating point was trained with (model.json), scaled by
`rd_scale`.

Comparing with what was last *coded* (not with the previous frame) keeps slow drift from
accumulating. Keyframes come every `keyframe_interval` frames and on a scene change (most
blocks changed), so any frame decodes from its nearest keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lsic.codec.bitstream import (
    MAP_BLOCK,
    TILE_CODED,
    TILE_PREDICTED,
    TILE_SAME_AS_PREVIOUS,
    Container,
    TileEntry,
    max_map_level,
)
from lsic.codec.encoder import Encoder
from lsic.codec.entropy.latents import encode_symbols, position_bits, quantize
from lsic.codec.entropy.predicted import LatentState, encode_predicted, held_tile, intra_state
from lsic.codec.errors import InputImageError
from lsic.codec.image_io import to_rgb8
from lsic.codec.package import STRIDE, ModelPackage
from lsic.codec.quality_map import STEPS, gains_for, qualities, tile_levels
from lsic.codec.quality_map import check as check_map
from lsic.codec.tiling import DEFAULT_TILE, Tile, cut

BLOCK = 16  # one y position: the unit a predicted frame codes or keeps


@dataclass
class VideoSettings:
    keyframe_interval: int = 250  # frames from one keyframe to the next (x264's default too)
    scene_change: float = 0.6  # a frame with more than this share of its blocks changed is a keyframe
    rd_scale: float = 2.5  # multiplies lambda: above 1 codes more blocks (higher quality, more bits)
    # Qualities added to scheduled keyframes (the first, every interval, after a cut), up to the
    # top one (by default they are at the top): what such a keyframe codes stays on screen
    # wherever the scene does not move, for the whole interval, while its cost is shared by
    # every frame of it. A scene change is coded at the frame's quality: a moving camera makes
    # one of most frames.
    keyframe_boost: int = 10
    # Share of the coding error at the frame's quality a block's change must exceed to be coded:
    # re-coding a block trades its change for a fresh coding error about as large, so changes
    # well under that error buy little.
    min_change: float = 0.5

    def floor(self, noise: float, mse_now: np.ndarray | float, mse_shown: np.ndarray | float) -> np.ndarray | float:
        """What a block's change (per pixel) must exceed before coding it removes error: the noise,
        the extra error of coding at a lower quality than what is shown was coded at, and
        `min_change` of the coding error at the frame's quality."""
        return noise + (mse_now - mse_shown) + self.min_change * mse_now


@dataclass
class CodedFrame:
    data: bytes
    keyframe: bool
    blocks: int  # 16x16 blocks in the frame
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


def coding_mse(pkg: ModelPackage) -> np.ndarray:
    """Mean squared error per pixel and channel (0..255) that coding at each quality (1..n) is
    expected to leave: model.json's Kodak PSNR per quality; a flat 0 without one."""
    psnr = (pkg.meta.get("kodak") or {}).get("psnr_rgb") or []
    if len(psnr) != pkg.n_rates:
        return np.zeros(pkg.n_rates)
    return 255.0**2 / 10.0 ** (np.asarray(psnr, dtype=np.float64) / 10.0)


def block_change(pixels: np.ndarray, shown: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 16x16 block (H/16, W/16): the mean squared difference per pixel and channel, and the
    part of it that is not a shift of the block's mean (what noise contributes)."""
    ph, pw = pixels.shape[:2]
    diff = (pixels.astype(np.float32) - shown.astype(np.float32)).reshape(ph // BLOCK, BLOCK, pw // BLOCK, BLOCK, 3)
    mse = (diff * diff).mean(axis=(1, 3, 4))
    shift = diff.mean(axis=(1, 3))
    return mse, mse - (shift * shift).mean(axis=-1)


def worth_coding(change: np.ndarray, lam: np.ndarray | float, bits: np.ndarray, floor: np.ndarray | float) -> np.ndarray:
    """The 16x16 blocks to code: where lambda times the squared error coding would remove
    outweighs the bits it is expected to take. Keeping a block leaves its `change` since it was
    last coded (block_change against the pixels coded then); `floor` (per pixel) is the part of
    that change coding cannot remove: sensor noise, which the codec does not reproduce, and the
    extra error of coding at a lower quality than the block was coded at."""
    return lam * BLOCK * BLOCK * (change - floor) > bits


def noise_floor(variations: list[np.ndarray]) -> float:
    """Sensor noise in a frame's change, per pixel: the median block's change beyond a shift of
    its mean. On a fixed camera what moves covers the smaller part of the picture (a frame where
    most blocks move is a scene change, coded as a keyframe), and a lighting change shifts block
    means, which coding does remove."""
    return float(np.median(np.concatenate([v.ravel() for v in variations]))) if variations else 0.0


@dataclass
class _TileChange:
    """A tile of a predicted frame with blocks worth coding."""

    coded: np.ndarray  # (4h, 4w) the 16x16 blocks to code
    padded: np.ndarray  # the tile cut from the frame
    mse: np.ndarray  # (4h, 4w) the coding error expected at this frame's quality


@dataclass
class _TileMemory:
    """What the edge keeps of one tile: the decoder's state, the pixels last coded in each block,
    and what each block cost then."""

    state: LatentState
    pixels: np.ndarray  # padded tile, uint8 (H, W, 3)
    block_bits: np.ndarray  # (4h, 4w) per 16x16 block
    block_mse: np.ndarray  # (4h, 4w) the coding error expected where each block was last coded


class VideoEncoder:
    """Encodes the frames of one stream in order; the cloud decodes them in the same order."""

    def __init__(self, encoder: Encoder, tile_size: int = DEFAULT_TILE, settings: VideoSettings | None = None) -> None:
        self.encoder, self.pkg, self.tile_size = encoder, encoder.pkg, tile_size
        self.settings = settings or VideoSettings()
        self.lambdas = rd_lambdas(self.pkg)
        self.mse = coding_mse(self.pkg)
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
        scheduled = self.next_is_keyframe((h, w))
        changed = {} if scheduled else self._changed_blocks(rgb, header)
        n_blocks = _blocks(header)
        n_changed = sum(int(c.coded.sum()) for c in changed.values())
        key = scheduled or n_changed > self.settings.scene_change * n_blocks
        if scheduled:
            header.quality = min(self.pkg.n_rates, quality + self.settings.keyframe_boost)
            if header.quality_map is not None:
                raised = header.quality_map.astype(np.int32) + STEPS * self.settings.keyframe_boost
                header.quality_map = np.minimum(raised, max_map_level(self.pkg.n_rates)).astype(np.uint8)
        frame = self._keyframe(rgb, header) if key else self._predicted(header, changed)
        self.since_key = 0 if key else self.since_key + 1
        self.shape, self._force = (h, w), False
        return CodedFrame(frame, key, n_blocks, n_blocks if key else n_changed)

    def _per_block(self, values: np.ndarray, header: Container, tile: Tile, ph: int, pw: int) -> np.ndarray:
        """A per-quality value (lambda, expected error) for each 16x16 block of a padded tile: the
        frame's quality, or the quality map's, interpolated geometrically between qualities."""
        if header.quality_map is None:
            return np.full((ph // BLOCK, pw // BLOCK), values[header.quality - 1])
        q = qualities(tile_levels(header.quality_map, tile, ph, pw))
        lo = np.floor(q).astype(int)
        hi = np.minimum(lo + 1, len(values))
        frac = q - lo
        logs = np.log(np.maximum(values, 1e-12))
        return np.exp(logs[lo - 1] * (1 - frac) + logs[hi - 1] * frac)

    def _changed_blocks(self, rgb: np.ndarray, header: Container) -> dict[int, _TileChange]:
        """Blocks worth coding, per tile (only tiles with at least one)."""
        tiles = list(header.grid.tiles())
        padded = [cut(rgb, t, STRIDE) for t in tiles]
        changes = [block_change(p, self.memory[t.index].pixels) for t, p in zip(tiles, padded, strict=True)]
        noise = noise_floor([v for _, v in changes])
        out = {}
        for t, p, (change, _) in zip(tiles, padded, changes, strict=True):
            mem = self.memory[t.index]
            ph, pw = p.shape[:2]
            lam = self.settings.rd_scale * self._per_block(self.lambdas, header, t, ph, pw)
            here = self._per_block(self.mse, header, t, ph, pw)
            coded = worth_coding(change, lam, mem.block_bits, self.settings.floor(noise, here, mem.block_mse))
            if coded.any():
                out[t.index] = _TileChange(coded, p, here)
        return out

    def _analyse(self, padded: np.ndarray, header: Container, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
        gain = gains_for(self.pkg.arrays["gain"], header, tile, padded.shape[0], padded.shape[1])
        op = header.quality - 1 if header.quality_map is None else gain
        return self.encoder.analyse_tile(padded, op)

    def _keyframe(self, rgb: np.ndarray, header: Container) -> bytes:
        header.set_coding(two_pass=bool(self.pkg.context_layers))

        def one(tile: Tile) -> tuple[int, bytes]:
            padded = cut(rgb, tile, STRIDE)
            s = quantize(self.pkg, *self._analyse(padded, header, tile))
            ph, pw = padded.shape[:2]
            mse = self._per_block(self.mse, header, tile, ph, pw)
            # cut() may return a view of the frame: the memory keeps its own copy
            self.memory[tile.index] = _TileMemory(intra_state(s), padded.copy(), position_bits(self.pkg, s), mse)
            return tile.index, encode_symbols(self.pkg, s)

        self.memory = {}
        payloads = dict(self.encoder.pool.map(one, header.grid.tiles()))
        header.tiles = [TileEntry(TILE_CODED, payloads[t.index]) for t in header.grid.tiles()]
        return header.to_bytes()

    def _predicted(self, header: Container, changed: dict[int, _TileChange]) -> bytes:
        header.set_coding(two_pass=bool(self.pkg.context_layers), predicted=True)

        def one(tile: Tile) -> tuple[int, TileEntry]:
            mem = self.memory[tile.index]
            c = changed.get(tile.index)
            if c is None:
                return tile.index, TileEntry(TILE_SAME_AS_PREVIOUS, held_tile(mem.state))
            analysed = self._analyse(c.padded, header, tile)
            p = encode_predicted(self.pkg, *analysed, mem.state, c.coded, header.quality)
            at = np.kron(c.coded, np.ones((BLOCK, BLOCK), dtype=bool))
            mem.pixels[at] = c.padded[at]
            mem.block_bits = np.where(c.coded, p.position_bits, mem.block_bits)
            mem.block_mse = np.where(c.coded, c.mse, mem.block_mse)
            mem.state = p.state
            return tile.index, TileEntry(TILE_PREDICTED, p.payload)

        entries = dict(self.encoder.pool.map(one, header.grid.tiles()))
        header.tiles = [entries[t.index] for t in header.grid.tiles()]
        return header.to_bytes()


def _blocks(header: Container) -> int:
    """16x16 blocks of the frame's padded tiles."""
    return sum((-(-t.h // MAP_BLOCK)) * (-(-t.w // MAP_BLOCK)) * 16 for t in header.grid.tiles())
