"""Reconstruction: decode stored bitstreams into frames, regions and a viewing pyramid.

Bitstreams are the archive; reconstructions are a cache that can be rebuilt at any time. A tile
sent as "unchanged" takes its pixels from the most recent earlier frame of the stream in which
that tile was coded (or from that frame's cached reconstruction). A predicted frame (temporal
coding) needs the latents of the frame just before it in its stream: they come from a cache of
recently decoded latents, or are rebuilt by entropy-decoding forward from the nearest keyframe,
so any frame can be decoded on its own (only the tiles asked for, for a region).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from lsic.cloud import metrics
from lsic.cloud.errors import BlobMissingError, BlobStoreError, StorageFullError
from lsic.cloud.storage.metadata import DECODED, FAILED, QUARANTINED, STATE_NAMES, FrameRow, SqlMetadataStore, now_us
from lsic.codec.bitstream import TILE_CODED, parse
from lsic.codec.decoder import DecodedFrame, DecodeJob, Decoder, coded_tile, predicted_tile
from lsic.codec.entropy.predicted import LatentState
from lsic.codec.errors import BitstreamError, LsicError, MissingReferenceError, RegionError
from lsic.codec.image_io import encode_image
from lsic.codec.tile_pool import usable_cores
from lsic.codec.tiling import Grid

log = logging.getLogger("lsic.cloud.decode")
PYRAMID = (1, 2, 4, 8)


def recon_key(row: FrameRow, level: int = 1) -> str:
    return f"recon/{row.device_id}/{row.stream_id}/{row.seq:012d}.x{level}.png"


def downscale(rgb: np.ndarray, level: int) -> np.ndarray:
    if level == 1:
        return rgb
    size = (max(1, rgb.shape[1] // level), max(1, rgb.shape[0] // level))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def decode_png(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


FrameKey = tuple[str, str, int]


def pyramid_pngs(row: FrameRow, rgb: np.ndarray) -> dict[str, bytes]:
    """A frame's reconstruction at every PYRAMID level, as PNG files by their blob key."""
    return {recon_key(row, level): encode_image(downscale(rgb, level), ".png") for level in PYRAMID}


def frame_key(row: FrameRow) -> FrameKey:
    return row.device_id, row.stream_id, row.seq


class LatentCache:
    """Latents of recently decoded frames by (device, stream, seq) and tile, within a byte cap:
    the reference of the next predicted frame is almost always the frame decoded just before."""

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        self.max_bytes = max_bytes
        self.frames: OrderedDict[FrameKey, dict[int, LatentState]] = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()

    @staticmethod
    def _size(states: dict[int, LatentState]) -> int:
        return sum(s.z.nbytes + s.y_fx.nbytes + (s.y_hat.nbytes if s.y_hat is not None else 0) for s in states.values())

    def get(self, key: FrameKey, indexes: list[int]) -> dict[int, LatentState] | None:
        with self.lock:
            states = self.frames.get(key)
            if states is None or any(i not in states or states[i].y_hat is None for i in indexes):
                return None
            self.frames.move_to_end(key)
            return {i: states[i] for i in indexes}

    def put(self, key: FrameKey, states: dict[int, LatentState]) -> None:
        with self.lock:
            old = self.frames.pop(key, None)
            merged = {**(old or {}), **states}
            self.bytes += self._size(merged) - (self._size(old) if old else 0)
            self.frames[key] = merged
            while self.bytes > self.max_bytes and len(self.frames) > 1:
                _, dropped = self.frames.popitem(last=False)
                self.bytes -= self._size(dropped)


class Reconstructor:
    def __init__(self, store: SqlMetadataStore, blobs, decoder: Decoder) -> None:
        self.store, self.blobs, self.decoder = store, blobs, decoder
        self.lock = threading.Lock()  # one decode at a time: the decoder holds one model/device
        self.latents = LatentCache()

    def bitstream(self, row: FrameRow) -> bytes:
        data = self.blobs.get(row.blob_key)
        if data is None:
            raise BlobMissingError(f"the bitstream of frame {row.device_id}/{row.stream_id}/{row.seq} is missing "
                                   "from the blob store")
        return data

    def cached(self, row: FrameRow, level: int = 1) -> np.ndarray | None:
        data = self.blobs.get(recon_key(row, level)) if row.decoded == DECODED else None
        return decode_png(data) if data else None

    def reference_tile(self, row: FrameRow, index: int, grid: Grid) -> np.ndarray:
        """Pixels of tile `index` as last coded before `row` in its stream (walks back). The frame
        that coded it may itself be predicted: it decodes with its own references."""
        t = grid.tiles()[index]
        r = self.store.previous_frame(row)
        while r is not None:
            full = self.cached(r)
            if full is not None and full.shape[:2] == (grid.height, grid.width):
                return full[t.y : t.y + t.h, t.x : t.x + t.w]
            if not parse(self.bitstream(r)).reuses_pixels(index):
                result = self.decoder.decode_many([self.decode_job(r, (t.x, t.y, t.w, t.h))])[0]
                if isinstance(result, LsicError):
                    raise result
                return result.tiles[index]
            r = self.store.previous_frame(r)
        raise BitstreamError(f"frame {row.seq}: tile {index} refers to a frame that is not in the archive")

    def reference_latents(self, row: FrameRow, indexes: list[int], grid: Grid) -> dict[int, LatentState]:
        """Latents of the given tiles of the frame just before `row` in its stream: cached, or
        entropy-decoded forward from the nearest keyframe (no synthesis). MissingReferenceError
        when a frame of that chain is not in the archive."""
        chain: list[FrameRow] = []
        found: dict[int, LatentState] = {}
        r = row
        while True:
            prev = self.store.previous_frame(r)
            if prev is None or prev.seq != r.seq - 1:
                raise MissingReferenceError(
                    f"frame {r.seq} of {row.device_id}/{row.stream_id} is predicted from frame {r.seq - 1}, "
                    "which is not in the archive"
                )
            cached = self.latents.get(frame_key(prev), indexes)
            if cached is not None:
                found = cached
                break
            chain.append(prev)
            if not parse(self.bitstream(prev)).header.predicted:
                break  # a keyframe: decodes on its own
            r = prev
        tiles = grid.tiles()
        for r in reversed(chain):
            parsed = parse(self.bitstream(r))
            if parsed.header.grid != grid:
                raise MissingReferenceError(f"frame {r.seq} has another size than the frames predicted from it")
            pkg = self.decoder.package_for(parsed)
            states = {}
            for i in indexes:
                if parsed.kinds[i] == TILE_CODED:
                    states[i] = coded_tile(pkg, parsed, tiles[i])
                elif parsed.from_latents(i):
                    states[i] = predicted_tile(pkg, parsed, tiles[i], found[i])
                else:
                    raise MissingReferenceError(f"frame {r.seq}: tile {i} keeps pixels, not latents, to predict from")
            found = states
            self.latents.put(frame_key(r), states)
        return found

    def decode(self, row: FrameRow, region: tuple[int, int, int, int] | None = None) -> DecodedFrame:
        """The frame, or the tiles a region touches; reference tiles and latents come from
        earlier frames, looked up only if the decoder meets them."""
        job = self.decode_job(row, region)
        with self.lock:
            result = self.decoder.decode_many([job])[0]
        if isinstance(result, LsicError):
            raise result
        return result

    def decode_job(self, row: FrameRow, region: tuple[int, int, int, int] | None) -> DecodeJob:
        """A stored frame's decode, with the callbacks that find its reference pixels and latents."""

        def references(indexes: list[int], grid: Grid) -> dict[int, np.ndarray]:
            return {i: self.reference_tile(row, i, grid) for i in indexes}

        return DecodeJob(self.bitstream(row), region, references, latents=self.latents_before(row),
                         on_latents=lambda states: self.latents.put(frame_key(row), states))

    def latents_before(self, row: FrameRow):
        return lambda indexes, grid: self.reference_latents(row, indexes, grid)

    def bits_map(self, row: FrameRow) -> tuple[bytes, float, float]:
        """The frame's where-the-bits-go heatmap as PNG, its scale and its mean (bits per pixel)."""
        from lsic.codec.bits_map import bits_per_pixel, heatmap

        bpp = bits_per_pixel(self.bitstream(row), self.latents_before(row))  # asked only for predicted tiles
        image, scale = heatmap(bpp, row.width, row.height)
        return encode_image(image, ".png"), scale, float(bpp.mean())

    def render(self, row: FrameRow, region: tuple[int, int, int, int] | None, scale: int = 1) -> tuple[np.ndarray, int]:
        """A frame or region at 1/scale resolution, and how many tiles had to be decoded.

        Whole frames come from the pyramid when the decode worker has filled it; regions and
        frames not decoded yet are decoded on demand from only the tiles they touch.
        """
        if scale not in PYRAMID:
            raise RegionError(f"downscale must be one of {PYRAMID}, got {scale}")
        if region is None:
            cached = self.cached(row, scale)
            if cached is not None:
                return cached, 0
        frame = self.decode(row, region)
        return downscale(frame.rgb, scale), len(frame.tiles)


@dataclass
class DecodeSettings:
    """How a decode worker claims work and how much disk its reconstructions may take."""

    owner: str  # lease holder name; a worker restarted under the same name takes its frames back at once
    batch_frames: int = 16
    lease_s: float = 120.0
    poll_s: float = 0.2
    cache_bytes: int = 2 << 30  # cap on the reconstruction cache (derived data, rebuilt on demand)
    reserve_bytes: int = 1 << 30  # free space the cache never takes: it belongs to incoming bitstreams
    # A predicted frame whose reference is not stored yet (two ingest replicas can store a
    # stream's frames out of order) waits this long after it was received, tried again every
    # REFERENCE_RETRY_S; then it is marked failed, saying which frame is missing.
    reference_wait_s: float = 60.0
    # Store a batch while the next one decodes: None where the synthesis runs on a GPU. On a CPU
    # the synthesis's threads would share the cores with the PNG encoding (measured: the drain
    # rate halves), so there a batch is stored before the next one decodes.
    store_overlap: bool | None = None


# Failures of the stores, not of a frame: the worker hands its batch back and waits (PAUSE_S).
RETRY_LATER = (StorageFullError, BlobStoreError)
REFERENCE_RETRY_S = 2.0  # how soon a frame waiting for its reference is tried again
MAX_ATTEMPTS = 2  # a frame whose worker died this many times while holding it is quarantined
PAUSE_S = (1.0, 30.0)  # first and longest wait while the disk is full


class DecodeWorker:
    """Decodes stored frames into the reconstruction cache and pyramid: leased batches, tiles of
    a batch's frames through the synthesis together. No frame can stop it: each failure marks
    that frame failed with its reason, and a frame that killed the worker process twice is
    quarantined instead of decoded a third time. A full disk pauses it."""

    def __init__(self, store: SqlMetadataStore, recon: Reconstructor, settings: DecodeSettings) -> None:
        self.store, self.recon, self.settings = store, recon, settings
        self.stopping = threading.Event()
        self._pause = PAUSE_S[0]
        self._png_threads = ThreadPoolExecutor(usable_cores(), thread_name_prefix="png")
        # A decoded batch is stored (pyramids written, results committed) in this thread while
        # the next batch decodes; at most one batch waits to be stored.
        self._storer = ThreadPoolExecutor(1, thread_name_prefix="store")
        self._storing: Future | None = None
        self._recent: dict[tuple[str, str, int], DecodedFrame] = {}  # the batch being stored
        overlap = settings.store_overlap
        self.overlap = recon.decoder.synthesis_on_gpu() if overlap is None else overlap
        self.heartbeat = time.monotonic()  # the loop's last turn (liveness)

    def stop(self) -> None:
        self.stopping.set()

    def stuck(self) -> str | None:
        """Liveness: why the loop has not turned for longer than a lease, or None."""
        idle = time.monotonic() - self.heartbeat
        return f"no turn of the decode loop for {idle:.0f} s" if idle > self.settings.lease_s else None

    def run(self) -> None:
        cfg = self.settings
        while not self.stopping.is_set():
            self.heartbeat = time.monotonic()
            try:
                rows = self.store.claim_decode(cfg.owner, cfg.batch_frames, cfg.lease_s)
            except LsicError as exc:  # the database is unreachable or full: wait, do not exit
                log.error("cannot claim frames to decode", extra={"reason": str(exc)})
                self.stopping.wait(self._next_pause())
                continue
            if not rows:
                self.wait_stored()
                self.stopping.wait(cfg.poll_s)
                continue
            try:
                self.step(rows, wait=not self.overlap)
            except LsicError as exc:  # the database went away mid-batch: the leases bring the frames back
                self._storing = None
                log.error("decode batch interrupted", extra={"reason": str(exc)})
                self.stopping.wait(self._next_pause())
        self.wait_stored()

    def step(self, rows: list[FrameRow], wait: bool = True) -> None:
        """Decode one claimed batch: quarantine, single retries, then the rest batched. wait:
        return once the batch is stored; else it is stored while the next one decodes."""
        batch = []
        for row in rows:
            if row.decode_attempts > MAX_ATTEMPTS:
                self.finish(row, QUARANTINED, f"stopped a decode worker {MAX_ATTEMPTS} times; set aside")
            elif row.decode_attempts == MAX_ATTEMPTS:
                self.wait_stored()  # nothing else is in flight if this frame stops the worker again
                self.decode_batch([row])  # it was in a batch when a worker died: alone this time
            else:
                batch.append(row)
        if batch:
            self.decode_batch(sorted(batch, key=lambda r: (r.device_id, r.stream_id, r.seq)), wait)

    def wait_stored(self) -> None:
        """Until the batch being stored is (its errors raised here)."""
        if self._storing is not None:
            storing, self._storing = self._storing, None
            storing.result()
            self._recent = {}

    def decode_batch(self, rows: list[FrameRow], wait: bool = True) -> None:
        t0 = time.perf_counter()
        done: dict[tuple[str, str, int], DecodedFrame] = {}
        loaded = []
        for row in rows:
            try:
                loaded.append((row, self.recon.bitstream(row)))
            except RETRY_LATER as exc:
                self.pause(rows, str(exc))
                return
            except LsicError as exc:
                self.finish(row, FAILED, str(exc))
        ok_rows = [row for row, _ in loaded]
        jobs = [
            DecodeJob(
                data,
                previous=self._previous(row, done),
                on_done=self._keeper(row, done),
                latents=self.recon.latents_before(row),
                on_latents=self._latents_keeper(row) if keep else None,
            )
            for (row, data), keep in zip(loaded, _latents_needed(loaded), strict=True)
        ]
        results = self._decode(jobs)
        # PNG encoding costs a good part of a CPU decode and more than a GPU's: the batch's
        # pyramids are encoded in threads (OpenCV lets go of the GIL) while frames are stored.
        pngs = {
            i: self._png_threads.submit(pyramid_pngs, row, result.rgb)
            for i, (row, result) in enumerate(zip(ok_rows, results, strict=True))
            if not isinstance(result, Exception)
        }
        self.wait_stored()
        self._storing = self._storer.submit(self._store, ok_rows, results, pngs, t0)
        self._recent = done
        if wait:
            self.wait_stored()

    def _store(self, ok_rows: list[FrameRow], results: list, pngs: dict[int, Future], t0: float) -> None:
        """Commit a decoded batch frame by frame: pyramids written, results, and the leases of
        the frames still to commit renewed whenever a quarter of a lease has passed since the
        batch began (t0, when it was claimed)."""
        renewed = t0
        for i, (row, result) in enumerate(zip(ok_rows, results, strict=True)):
            waited = now_us() - row.received_us
            if isinstance(result, MissingReferenceError) and waited < self.settings.reference_wait_s * 1e6:
                self.store.defer_decode(row, self.settings.owner, REFERENCE_RETRY_S)  # its reference may be on its way
                continue
            if isinstance(result, RETRY_LATER):  # a reference's bitstream could not be read just now
                self.pause(ok_rows[i:], str(result))
                return
            if isinstance(result, Exception):
                self.finish(row, FAILED, _reason(result))
                continue
            try:
                size = self.make_room_and_store(row, pngs[i].result())
            except RETRY_LATER as exc:
                self.pause(ok_rows[i:], str(exc))
                return
            except LsicError as exc:
                self.finish(row, FAILED, str(exc))
                continue
            self.finish(row, DECODED, recon_bytes=size)
            if time.perf_counter() - renewed > self.settings.lease_s / 4:
                self.store.renew_lease(self.settings.owner, ok_rows[i + 1 :], self.settings.lease_s)
                renewed = time.perf_counter()
        self._pause = PAUSE_S[0]
        if ok_rows:
            metrics.DECODE_LATENCY.observe((time.perf_counter() - t0) / len(ok_rows))

    def _decode(self, jobs: list[DecodeJob]) -> list[DecodedFrame | Exception]:
        """The batch decoded together; if that fails as a whole (out of memory, a library error),
        each frame alone, so only the frame at fault fails."""
        try:
            with self.recon.lock:
                return list(self.recon.decoder.decode_many(jobs))
        except Exception as exc:
            if len(jobs) == 1:
                return [exc]
            log.warning("batch decode failed; decoding its frames one by one", extra={"reason": _reason(exc)})
        out: list[DecodedFrame | Exception] = []
        for job in jobs:
            try:
                with self.recon.lock:
                    out.append(self.recon.decoder.decode_many([job])[0])
            except Exception as exc:
                out.append(exc)
        return out

    def make_room_and_store(self, row: FrameRow, pyramid: dict[str, bytes]) -> int:
        """Write the frame's pyramid (pyramid_pngs) within the cache's cap and above the disk's
        reserve, evicting the oldest reconstructions first; StorageFullError when even that leaves
        no room."""
        size = sum(map(len, pyramid.values()))
        cfg = self.settings
        while True:
            free = self.recon.blobs.free_bytes()
            over_cap = self.store.cache_bytes() + size > cfg.cache_bytes
            low = free is not None and free - size < cfg.reserve_bytes
            if not (over_cap or low):
                break
            oldest = self.store.oldest_cached(8)
            if not oldest:
                if low:
                    raise StorageFullError(f"{free} bytes free, under the {cfg.reserve_bytes}-byte reserve")
                break  # one frame larger than the whole cap: kept until the next one
            for old in oldest:
                for level in PYRAMID:
                    self.recon.blobs.delete(recon_key(old, level))
                self.store.mark_evicted(old)
        for key, png in pyramid.items():
            self.recon.blobs.put(key, png)
        return size

    def pause(self, rows: list[FrameRow], reason: str) -> None:
        """Give the batch's remaining frames back and wait: the disk is full (and nothing the
        worker may delete would help), or the blob store does not answer. Either says nothing
        about the frames, which are decoded once it passes."""
        for row in rows:
            self.store.release_decode(row, self.settings.owner)
        wait = self._next_pause()
        log.error("decoding paused", extra={"reason": reason, "retry_in_s": wait})
        metrics.DECODE_PAUSED.set(1)
        self.stopping.wait(wait)
        metrics.DECODE_PAUSED.set(0)

    def _next_pause(self) -> float:
        wait, self._pause = self._pause, min(self._pause * 2, PAUSE_S[1])
        return wait

    def finish(self, row: FrameRow, state: int, error: str | None = None, recon_bytes: int = 0) -> None:
        where = {"device": row.device_id, "stream": row.stream_id, "seq": row.seq}
        if not self.store.finish_decode(row, self.settings.owner, state, error, recon_bytes):
            log.warning("lease lost before the result was committed", extra=where)
            return
        log.debug("frame finished", extra={**where, "state": STATE_NAMES[state], "owner": self.settings.owner})
        metrics.FRAMES_FINISHED.labels(STATE_NAMES[state]).inc()
        if state in (FAILED, QUARANTINED):
            log.error("frame cannot be decoded", extra={**where, "state": STATE_NAMES[state], "reason": error})

    def _latents_keeper(self, row: FrameRow):
        key = frame_key(row)
        return lambda states: self.recon.latents.put(key, states)

    @staticmethod
    def _keeper(row: FrameRow, done: dict):
        return lambda frame: done.__setitem__((row.device_id, row.stream_id, row.seq), frame)

    def _previous(self, row: FrameRow, done: dict):
        """Reference tiles from the frame just before, in this batch or the one being stored, else
        from the archive."""

        recent = self._recent

        def resolve(indexes: list[int], grid: Grid) -> dict[int, np.ndarray]:
            key = (row.device_id, row.stream_id, row.seq - 1)
            before = done.get(key) or recent.get(key)
            if before is not None:
                return before.tiles
            return {i: self.recon.reference_tile(row, i, grid) for i in indexes}

        return resolve


def _latents_needed(loaded: list[tuple[FrameRow, bytes]]) -> list[bool]:
    """Which frames of a batch (sorted by stream and sequence) keep their latents: predicted
    frames (they have them at no cost, and their successors are predicted from them) and frames
    whose successor in the batch is predicted. Tiles decoded in the tile processes then send their
    latents back only where a frame will be predicted from them; a predicted frame whose reference
    was not kept rebuilds it from the archive."""
    predicted = []
    for _, data in loaded:
        try:
            predicted.append(parse(data).header.predicted)
        except LsicError:  # the decode reports it
            predicted.append(False)
    keep = list(predicted)
    for i in range(len(loaded) - 1):
        (row, _), (after, _) = loaded[i], loaded[i + 1]
        same_stream = (row.device_id, row.stream_id, row.seq + 1) == (after.device_id, after.stream_id, after.seq)
        keep[i] = keep[i] or (same_stream and predicted[i + 1])
    return keep


def _reason(exc: BaseException) -> str:
    """A failure as one line for the archive: typed errors by message, the rest by type too."""
    if isinstance(exc, LsicError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory while decoding"
    return f"{type(exc).__name__}: {exc}"[:500]
