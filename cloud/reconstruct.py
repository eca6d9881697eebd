"""Reconstruction: decode stored bitstreams into frames, regions and a viewing pyramid.

Bitstreams are the archive; reconstructions are a cache that can be rebuilt at any time. A tile
sent as "unchanged" takes its pixels from the most recent earlier frame of the stream in which
that tile was coded (or from that frame's cached reconstruction).
"""

from __future__ import annotations

import logging
import threading
import time

import cv2
import numpy as np

from lsic.cloud import metrics
from lsic.cloud.storage.metadata import FrameRow, SqlMetadataStore
from lsic.codec.bitstream import TILE_SAME_AS_PREVIOUS, parse
from lsic.codec.decoder import DecodedFrame, DecodeJob, Decoder
from lsic.codec.errors import BitstreamError, LsicError, RegionError
from lsic.codec.image_io import encode_image
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


class Reconstructor:
    def __init__(self, store: SqlMetadataStore, blobs, decoder: Decoder) -> None:
        self.store, self.blobs, self.decoder = store, blobs, decoder
        self.lock = threading.Lock()  # one decode at a time: the decoder holds one model/device

    def bitstream(self, row: FrameRow) -> bytes:
        data = self.blobs.get(row.blob_key)
        if data is None:
            raise BitstreamError(f"bitstream of frame {row.seq} is missing from the blob store")
        return data

    def cached(self, row: FrameRow, level: int = 1) -> np.ndarray | None:
        data = self.blobs.get(recon_key(row, level)) if row.decoded == 1 else None
        return decode_png(data) if data else None

    def reference_tile(self, row: FrameRow, index: int, grid: Grid) -> np.ndarray:
        """Pixels of tile `index` as last coded before `row` in its stream (walks back)."""
        t = grid.tiles()[index]
        r = self.store.previous_frame(row)
        while r is not None:
            full = self.cached(r)
            if full is not None and full.shape[:2] == (grid.height, grid.width):
                return full[t.y : t.y + t.h, t.x : t.x + t.w]
            data = self.bitstream(r)
            if parse(data).kinds[index] != TILE_SAME_AS_PREVIOUS:
                return self.decoder.decode(data, region=(t.x, t.y, t.w, t.h)).tiles[index]
            r = self.store.previous_frame(r)
        raise BitstreamError(f"frame {row.seq}: tile {index} refers to a frame that is not in the archive")

    def decode(self, row: FrameRow, region: tuple[int, int, int, int] | None = None) -> DecodedFrame:
        data = self.bitstream(row)
        parsed = parse(data)
        grid = parsed.header.grid
        x, y, w, h = region or (0, 0, grid.width, grid.height)
        previous = {
            t.index: self.reference_tile(row, t.index, grid)
            for t in grid.tiles_in(x, y, w, h)
            if parsed.kinds[t.index] == TILE_SAME_AS_PREVIOUS
        }
        with self.lock:
            return self.decoder.decode(data, region=(x, y, w, h), previous=previous)

    def store_pyramid(self, row: FrameRow, rgb: np.ndarray) -> None:
        for level in PYRAMID:
            self.blobs.put(recon_key(row, level), encode_image(downscale(rgb, level), ".png"))

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


class DecodeWorker(threading.Thread):
    """Decodes stored frames in arrival order into the reconstruction cache and pyramid, a
    batch of frames at a time with their tiles batched together through the synthesis."""

    def __init__(
        self, store: SqlMetadataStore, recon: Reconstructor, poll_s: float = 0.2, batch_frames: int = 16
    ) -> None:
        super().__init__(name="lsic-decode", daemon=True)
        self.store, self.recon, self.poll_s, self.batch_frames = store, recon, poll_s, batch_frames
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def run(self) -> None:
        while not self.stopping.is_set():
            batch = self.store.pending_decode(self.batch_frames)
            if not batch:
                self.wake.wait(self.poll_s)
                self.wake.clear()
                continue
            self.decode_batch(sorted(batch, key=lambda r: (r.device_id, r.stream_id, r.seq)))

    def decode_batch(self, rows: list[FrameRow]) -> None:
        t0 = time.perf_counter()
        done: dict[tuple[str, str, int], DecodedFrame] = {}
        jobs, ok_rows = [], []
        for row in rows:
            try:
                data = self.recon.bitstream(row)
            except LsicError as exc:
                self.fail(row, exc)
                continue
            jobs.append(DecodeJob(data, previous=self._previous(row, done), on_done=self._keeper(row, done)))
            ok_rows.append(row)
        with self.recon.lock:
            results = self.recon.decoder.decode_many(jobs)
        for row, result in zip(ok_rows, results, strict=True):
            if isinstance(result, LsicError):
                self.fail(row, result)
                continue
            self.recon.store_pyramid(row, result.rgb)
            self.store.mark_decoded(row, 1)
        if ok_rows:
            metrics.DECODE_LATENCY.observe((time.perf_counter() - t0) / len(ok_rows))

    @staticmethod
    def _keeper(row: FrameRow, done: dict):
        return lambda frame: done.__setitem__((row.device_id, row.stream_id, row.seq), frame)

    def _previous(self, row: FrameRow, done: dict):
        """Reference tiles from the frame just before in this batch, else from the archive."""

        def resolve(indexes: list[int]) -> dict[int, np.ndarray]:
            before = done.get((row.device_id, row.stream_id, row.seq - 1))
            if before is not None:
                return before.tiles
            grid = parse(self.recon.bitstream(row)).header.grid
            return {i: self.recon.reference_tile(row, i, grid) for i in indexes}

        return resolve

    def fail(self, row: FrameRow, exc: LsicError) -> None:
        self.store.mark_decoded(row, -1)
        log.error(
            "frame cannot be decoded",
            extra={"device": row.device_id, "stream": row.stream_id, "seq": row.seq, "reason": str(exc)},
        )
