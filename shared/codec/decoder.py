"""The decoder: container -> checked tiles -> entropy path -> batched synthesis -> stitched RGB.

The synthesis runs over windows of several tiles with a halo of their neighbours' latents
(lsic.codec.windows), so tile borders leave no seams. Region decoding touches only the tiles a
region intersects, and a neighbour when the region comes within a few pixels of its border. Tiles marked "same as previous"
reuse the previous frame's decoded tile, which the caller passes in. Predicted tiles (temporal
coding, lsic.codec.entropy.predicted) merge their coded blocks into the previous frame's latents,
which the caller passes in too; the decoder hands back each frame's latents for the next one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from lsic.codec.bitstream import (
    DEFAULT_LIMITS,
    TILE_CODED,
    TILE_SAME_AS_PREVIOUS,
    FrameLimits,
    ParsedContainer,
    parse,
)
from lsic.codec.entropy.latents import TileSymbols, decode_tiles
from lsic.codec.entropy.predicted import LatentState, decode_held, decode_predicted, intra_state
from lsic.codec.errors import BitstreamError, LsicError, MissingReferenceError
from lsic.codec.package import STRIDE, ModelPackage, package_for_header
from lsic.codec.quality_map import gains_for
from lsic.codec.synthesis import check_device, make_synthesis, synthesis_on_gpu
from lsic.codec.tile_pool import CHUNK, TilePool
from lsic.codec.tiling import DEFAULT_TILE, Grid, Tile, padded_size, place, smooth_seams
from lsic.codec.windows import REGION_REACH, Window, synthesis_windows, window_tile_pixels


@dataclass
class DecodedFrame:
    rgb: np.ndarray  # the requested window
    tiles: dict[int, np.ndarray]  # decoded tiles (cropped to their true size), by index
    region: tuple[int, int, int, int]
    latents: dict[int, LatentState] = field(default_factory=dict)  # decoded tiles' latents (from a pool only for a job with on_latents)


class Decoder:
    def __init__(
        self,
        backend: str = "auto",
        device: str = "auto",
        threads: int = 0,
        half: bool | None = None,
        pool: TilePool | None = None,
        limits: FrameLimits = DEFAULT_LIMITS,
    ) -> None:
        """pool: worker processes that entropy-decode tiles while this process runs the synthesis
        (decode_many overlaps the two); None decodes tiles in this process, as the batches need them.
        limits: the largest frame this decoder takes on (FrameLimitError beyond, before allocating)."""
        check_device(backend, device)
        self.backend, self.device, self.threads, self.half = backend, device, threads, half
        self.pool, self.limits = pool, limits
        self._synth: dict[str, object] = {}

    def synthesis_on_gpu(self) -> bool:
        return synthesis_on_gpu(self.backend, self.device)

    def package_for(self, parsed: ParsedContainer) -> ModelPackage:
        return package_for_header(parsed.header)  # the current build or a retired one

    def synthesis(self, pkg: ModelPackage):
        s = self._synth.get(pkg.id)
        if s is None:
            s = make_synthesis(pkg, self.backend, self.device, self.threads, self.half)
            self._synth[pkg.id] = s
        return s

    def symbols(self, data: bytes) -> list[TileSymbols | None]:
        """All decoded integers of every coded tile (None for reference tiles)."""
        parsed = parse(data, self.limits)
        pkg = self.package_for(parsed)
        tiles = parsed.header.grid.tiles()
        coded = [t for t in tiles if parsed.kinds[t.index] == TILE_CODED]
        decoded = dict(zip((t.index for t in coded), tiles_symbols(pkg, parsed, coded), strict=True))
        return [decoded.get(t.index) for t in tiles]

    def decode(
        self,
        data: bytes,
        region: tuple[int, int, int, int] | None = None,
        previous: dict[int, np.ndarray] | Callable[[list[int], Grid], dict[int, np.ndarray]] | None = None,
        latents: Latents | None = None,
    ) -> DecodedFrame:
        """Decode the tiles a region (default: the whole image) touches. latents: the previous
        frame's (for a predicted frame); the result's `latents` are this frame's."""
        result = self.decode_many([DecodeJob(data, region, previous, latents=latents)])[0]
        if isinstance(result, LsicError):
            raise result
        return result

    def decode_many(self, jobs: list[DecodeJob], batch: int | None = None) -> list[DecodedFrame | LsicError]:
        """Decode several frames, batching their tiles together through the synthesis transform
        (across frames and streams: what keeps a GPU busy). Jobs finish in order, so a job's
        `previous` callable may use frames finished before it. A bad frame yields its error
        and does not stop the others. batch: 256x256 tiles per synthesis call (None: what the
        synthesis backend runs best at)."""
        states: list[_JobState | LsicError] = []
        pending: dict[tuple[str, tuple[int, ...]], list[tuple[_JobState, Window, np.ndarray]]] = defaultdict(list)

        def flush(key: tuple[str, tuple[int, ...]]) -> None:
            group = pending.pop(key)
            rgb = group[0][0].synth.run_rgb8(np.stack([latent for _, _, latent in group]))
            for (st, window, _), img in zip(group, rgb, strict=True):
                for t in window.tiles:
                    st.tiles[t.index] = place(st.out, t, window_tile_pixels(window, img, t).copy(), st.x, st.y)

        started: list[_JobState | LsicError] = []
        for job in jobs:  # with a pool, every job's tiles are queued before the first is awaited
            try:
                started.append(self._start(job))
            except LsicError as exc:
                started.append(exc)
        for st in started:
            if isinstance(st, LsicError):
                states.append(st)
                continue
            try:
                for window, latent in synthesis_windows(st.grid, st.decoded, st.coded, STRIDE):
                    key = (st.pkg.id, latent.shape)
                    pending[key].append((st, window, latent))
                    budget = (batch or st.synth.batch) * DEFAULT_TILE * DEFAULT_TILE // 256  # latent positions
                    if len(pending[key]) * latent.shape[1] * latent.shape[2] >= budget:
                        flush(key)
                states.append(st)
            except LsicError as exc:
                states.append(exc)
        for key in list(pending):
            flush(key)
        return [st if isinstance(st, LsicError) else self._finish(st) for st in states]

    def _start(self, job: DecodeJob) -> _JobState:
        parsed = parse(job.data, self.limits)
        pkg = self.package_for(parsed)
        grid = parsed.header.grid
        x, y, w, h = job.region if job.region else (0, 0, grid.width, grid.height)
        needed = _with_neighbours(grid, x, y, w, h)  # refuses a region outside the image before allocating it
        st = _JobState(job, pkg, self.synthesis(pkg), grid, x, y, np.zeros((h, w, 3), dtype=np.uint8))
        st.refs = [t for t in needed if parsed.reuses_pixels(t.index)]
        coded = [t for t in needed if not parsed.reuses_pixels(t.index)]
        st.decoded = coded
        if self.pool is not None and not parsed.header.predicted:
            # queued now, so every job's tiles are queued before the first is awaited
            st.coded = self._pooled(st, _PooledTiles(self.pool, job.data, coded, job.on_latents is not None))
        else:  # lazy: tiles are entropy-decoded as the batches take them, so memory stays bounded
            st.coded = self._in_process(st, parsed, coded)
        return st

    @staticmethod
    def _pooled(st: _JobState, tiles: _PooledTiles) -> Iterator[tuple[Tile, np.ndarray]]:
        """(tile, y_hat) of an intra-coded frame's tiles from the pool; their latents too when the
        job wants them (a predicted next frame merges into them)."""
        keep = tiles.with_latents
        for t, out in tiles:
            if keep:
                st.latents[t.index] = LatentState(out.z.astype(np.int64), out.y_fx.astype(np.int64), out.y_hat)
                out = out.y_hat
            yield t, out
        if keep:
            st.job.on_latents(st.latents)

    def _in_process(self, st: _JobState, parsed: ParsedContainer, tiles: list[Tile]) -> Iterator[tuple[Tile, np.ndarray]]:
        """(tile, y_hat) of coded and predicted tiles, keeping each tile's latents in st.latents;
        the previous frame's latents are asked for once, when the first predicted tile needs them."""
        refs: dict[int, LatentState] | None = None
        for t in tiles:
            if parsed.from_latents(t.index):
                if refs is None:
                    wanted = [u.index for u in tiles if parsed.from_latents(u.index)]
                    refs = resolve_latents(st.job.latents, wanted, st.grid)
                ref = refs.get(t.index)
                if ref is None or ref.y_hat is None:
                    raise MissingReferenceError(
                        f"tile {t.index} is predicted from the previous frame of the stream, which is not available"
                    )
                state = predicted_tile(st.pkg, parsed, t, ref)
            else:
                state = coded_tile(st.pkg, parsed, t)
            st.latents[t.index] = state
            yield t, state.y_hat
        if st.job.on_latents is not None:
            st.job.on_latents(st.latents)

    def _finish(self, st: _JobState) -> DecodedFrame | LsicError:
        if st.refs:
            prev = st.job.previous
            if callable(prev):
                try:
                    prev = prev([t.index for t in st.refs], st.grid)
                except LsicError as exc:
                    return exc
            for t in st.refs:
                if not prev or t.index not in prev:
                    return BitstreamError(f"tile {t.index} refers to the previous frame, which is not available")
                st.tiles[t.index] = place(st.out, t, prev[t.index], st.x, st.y)
            reused = {t.index for t in st.refs}  # a seam between a decoded tile and a reused one
            smooth_seams(st.out, st.grid, st.x, st.y, lambda a, b: (a in reused) != (b in reused))
        frame = DecodedFrame(st.out, st.tiles, (st.x, st.y, st.out.shape[1], st.out.shape[0]), st.latents)
        if st.job.on_done:
            st.job.on_done(frame)
        return frame


def _with_neighbours(grid: Grid, x: int, y: int, w: int, h: int) -> list[Tile]:
    """The tiles a region touches, and those whose latents its pixels read: the neighbours of
    any side that lies within REGION_REACH pixels of a tile border. Raises RegionError for a
    region outside the image."""
    grid.tiles_in(x, y, w, h)
    x0, y0 = max(0, x - REGION_REACH), max(0, y - REGION_REACH)
    x1, y1 = min(grid.width, x + w + REGION_REACH), min(grid.height, y + h + REGION_REACH)
    return grid.tiles_in(x0, y0, x1 - x0, y1 - y0)


def tiles_symbols(pkg: ModelPackage, parsed: ParsedContainer, tiles: list[Tile]) -> list[TileSymbols]:
    """The decoded integers of coded tiles (raises BitstreamError). Tiles of one padded size
    are decoded together, CHUNK at a time: their integer networks run as one batch."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, t in enumerate(tiles):
        groups[(padded_size(t.h, STRIDE), padded_size(t.w, STRIDE))].append(i)
    decoded: dict[int, TileSymbols] = {}
    for (h, w), members in groups.items():
        for start in range(0, len(members), CHUNK):
            batch = members[start : start + CHUNK]
            symbols = decode_tiles(pkg, [parsed.tile_payload(tiles[i].index) for i in batch], h, w)
            decoded.update(zip(batch, symbols, strict=True))
    return [decoded[i] for i in range(len(tiles))]


def tile_symbols(pkg: ModelPackage, parsed: ParsedContainer, tile: Tile) -> TileSymbols:
    """The decoded integers of one coded tile (raises BitstreamError)."""
    return tiles_symbols(pkg, parsed, [tile])[0]


def dequantize(pkg: ModelPackage, parsed: ParsedContainer, tile: Tile, symbols: TileSymbols) -> np.ndarray:
    """y_hat of a coded tile as the synthesis reads it: its integers, times the inverse gain of
    the frame's quality or, with a quality map, of each position's."""
    h, w = symbols.y.shape[1:]
    return symbols.y_hat() * gains_for(pkg.arrays["inv_gain"], parsed.header, tile, 16 * h, 16 * w)


def dequantized_tiles(pkg: ModelPackage, parsed: ParsedContainer, tiles: list[Tile]) -> list[np.ndarray]:
    """y_hat of coded tiles as the synthesis reads them (dequantize)."""
    return [dequantize(pkg, parsed, t, s) for t, s in zip(tiles, tiles_symbols(pkg, parsed, tiles), strict=True)]


def coded_tile(pkg: ModelPackage, parsed: ParsedContainer, tile: Tile) -> LatentState:
    """The latents of an intra-coded tile, y_hat dequantized."""
    symbols = tile_symbols(pkg, parsed, tile)
    return intra_state(symbols, dequantize(pkg, parsed, tile, symbols))


def predicted_tile(pkg: ModelPackage, parsed: ParsedContainer, tile: Tile, ref: LatentState) -> LatentState:
    """The latents of a predicted tile (its coded blocks merged into `ref`, the same tile of the
    previous frame) or of a held one (`ref` itself); ReferenceMismatchError if `ref` is not the
    one it was coded against."""
    if parsed.kinds[tile.index] == TILE_SAME_AS_PREVIOUS:
        return decode_held(parsed.tile_payload(tile.index), ref)
    h, w = ref.y_fx.shape[1:]
    inv_gain = gains_for(pkg.arrays["inv_gain"], parsed.header, tile, 16 * h, 16 * w)
    header = parsed.header
    prior = pkg.temporal_of(header.model_hash)
    return decode_predicted(
        pkg, parsed.tile_payload(tile.index), ref, inv_gain, prior, header.aligned_payloads, header.quality
    ).state


Latents = dict[int, LatentState] | Callable[[list[int], Grid], dict[int, LatentState]]


def resolve_latents(source: Latents | None, indexes: list[int], grid: Grid) -> dict[int, LatentState]:
    """The latents of the given tiles of the previous frame, from a dict or a callable."""
    if source is None:
        return {}
    return source(indexes, grid) if callable(source) else source


class _PooledTiles:
    """(tile, y_hat or its LatentState) in tile order from a pool, at most `window` tasks of one frame in flight: the
    first are queued at once (so frames overlap), the rest as earlier ones are taken, so memory
    is bounded by the tiles in flight, not by the frame. A worker's bitstream error is raised here."""

    def __init__(self, pool: TilePool, data: bytes, tiles: list[Tile], with_latents: bool = False) -> None:
        self.pool, self.data, self.with_latents = pool, data, with_latents
        self.chunks = [tiles[i : i + CHUNK] for i in range(0, len(tiles), CHUNK)]
        self.window = 2 * pool.workers
        self.futures = [self._submit(c) for c in self.chunks[: self.window]]

    def _submit(self, chunk: list[Tile]) -> Future:
        return self.pool.submit_chunk(self.data, [t.index for t in chunk], self.with_latents)

    def __iter__(self) -> Iterator[tuple[Tile, object]]:
        for i, chunk in enumerate(self.chunks):
            result = self.futures[i].result()
            self.futures[i] = None  # type: ignore[call-overload]
            if i + self.window < len(self.chunks):
                self.futures.append(self._submit(self.chunks[i + self.window]))
            if isinstance(result, LsicError):
                raise result
            yield from zip(chunk, result, strict=True)


@dataclass
class DecodeJob:
    data: bytes
    region: tuple[int, int, int, int] | None = None
    # the previous frame's tiles, or a callable giving them for a list of tile indexes of this grid
    # (called only when the frame has reference tiles in the decoded window)
    previous: dict[int, np.ndarray] | Callable[[list[int], Grid], dict[int, np.ndarray]] | None = None
    on_done: Callable[[DecodedFrame], None] | None = None
    # the previous frame's latents by tile (or a callable giving them), for predicted tiles
    latents: Latents | None = None
    # called with this frame's latents by tile once its tiles are entropy-decoded (before the
    # next job's), so the next frame of a stream in the same batch can be predicted from them
    on_latents: Callable[[dict[int, LatentState]], None] | None = None


@dataclass
class _JobState:
    job: DecodeJob
    pkg: ModelPackage
    synth: object
    grid: Grid
    x: int
    y: int
    out: np.ndarray
    tiles: dict[int, np.ndarray] = field(default_factory=dict)
    refs: list[Tile] = field(default_factory=list)
    latents: dict[int, LatentState] = field(default_factory=dict)
    coded: Iterator[tuple[Tile, np.ndarray]] = field(default_factory=lambda: iter(()))
    decoded: list[Tile] = field(default_factory=list)  # the tiles `coded` yields, in its order


def decode_file_info(data: bytes) -> dict:
    return parse(data).info()
