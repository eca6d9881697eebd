"""The edge agent: capture -> rate control -> int8 encode (temporal for video) -> spool -> send.

Capture and encoding run in the main loop; a sender thread drains the spool over gRPC. The
agent runs without PyTorch.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from lsic.codec import quality_map
from lsic.codec.encoder import Encoder
from lsic.codec.tiling import DEFAULT_TILE
from lsic.codec.video import VideoEncoder, VideoSettings
from lsic.edge import metrics
from lsic.edge.ratecontrol import RateController
from lsic.edge.regions import InterestFinder, PrivacyMasker, Region
from lsic.edge.sources import SourceOptions, frames
from lsic.edge.spool import Spool
from lsic.edge.transport import LinkOptions, Sender
from lsic.v1 import lsic_pb2 as pb

log = logging.getLogger("lsic.edge")


@dataclass
class AgentConfig:
    source: str
    link: LinkOptions
    stream_id: str = "main"
    model: str = "default"
    quality: int = 6
    target_kbps: float = 0.0
    tile_size: int = DEFAULT_TILE
    threads: int = 2
    max_frames: int = 0  # stop once this many frames are acknowledged (0: run until the source ends)
    timeout_s: float = 0.0  # with max_frames: give up after this long (exit non-zero)
    spool_dir: Path = Path(".lsic-spool")
    spool_max_mb: float = 512.0
    spool_policy: str = "drop-oldest"
    temporal: bool = False  # keyframes, then only the blocks that changed (lsic.codec.video)
    keyframe_interval: int = 250
    status_every_s: float = 5.0
    source_opts: SourceOptions = field(default_factory=SourceOptions)
    interest: InterestFinder | None = None  # regions coded at a higher quality
    masker: PrivacyMasker | None = None  # regions obscured before anything is encoded


@dataclass
class AgentReport:
    captured: int = 0
    encoded: int = 0
    acknowledged: int = 0
    dropped_rate: int = 0
    dropped_spool: int = 0
    rejected: int = 0
    conflicts: int = 0
    error: str = ""  # why the agent stopped early (refused credentials)
    raw_bytes: int = 0
    coded_bytes: int = 0
    keyframes: int = 0
    blocks: int = 0
    coded_blocks: int = 0
    seconds: float = 0.0
    achieved_kbps: float = 0.0
    encode_seconds: float = 0.0

    @property
    def fps(self) -> float:
        return self.encoded / self.seconds if self.seconds else 0.0

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.coded_bytes if self.coded_bytes else 0.0

    def as_dict(self) -> dict:
        import resource

        d = dict(vars(self))
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        d.update(fps=round(self.fps, 2), compression_ratio=round(self.ratio, 1), peak_rss_mib=round(peak_mib, 1))
        return d


def _region(r: Region, masked: bool = False) -> pb.Region:
    x, y, w, h = (max(0, int(v)) for v in r.box)
    return pb.Region(x=x, y=y, width=w, height=h, kind=r.kind, masked=masked)


def _numbered(rec: pb.FrameRecord, seq: int) -> bytes:
    rec.sequence = seq
    return rec.SerializeToString()


class Agent:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.encoder = Encoder(cfg.model, threads=cfg.threads)
        self.spool = Spool(cfg.spool_dir, cfg.stream_id, int(cfg.spool_max_mb * 1024 * 1024), cfg.spool_policy)
        self.sender = Sender(self.spool, cfg.link)
        self.rate = RateController(self.encoder.pkg.n_rates, cfg.quality, cfg.target_kbps)
        self.video = (
            VideoEncoder(self.encoder, cfg.tile_size, VideoSettings(cfg.keyframe_interval)) if cfg.temporal else None
        )
        self._frames_lost = 0  # frames the cloud will never store: dropped, rejected, in conflict
        self.stopping = threading.Event()
        self.report = AgentReport()
        self.on_frame = None  # optional callback (seq, frame, bitstream), e.g. for quality reports

    def stop(self) -> None:
        self.stopping.set()

    def encode_frame(self, frame, quality: int) -> tuple[bytes, list[pb.Region], bool]:
        """Mask, find the regions of interest, encode. The frame's pixels are masked in place
        first, so nothing after this point (the encoder, on_frame) sees what was masked."""
        regions: list[pb.Region] = []
        if self.cfg.masker is not None:
            frame.rgb, masked = self.cfg.masker.apply(frame.rgb)
            regions += [_region(r, masked=True) for r in masked]
        h, w = frame.rgb.shape[:2]
        qmap = None
        if self.cfg.interest is not None:
            found = self.cfg.interest.find(frame.rgb)
            if found:
                boxes = [(r.box, steps) for r, steps in found]
                qmap = quality_map.from_boxes(w, h, quality, boxes, self.encoder.pkg.n_rates)
                regions += [_region(r) for r, _ in found]
        t0 = time.perf_counter()
        r = self.report
        if self.video is None:
            data, predicted = self.encoder.encode(frame.rgb, quality, self.cfg.tile_size, quality_map=qmap), False
            r.keyframes, r.blocks, r.coded_blocks = r.keyframes + 1, r.blocks + 1, r.coded_blocks + 1
        else:
            stats = self.spool.stats
            lost = stats.dropped + stats.rejected + stats.conflicts
            if lost != self._frames_lost:  # the cloud will miss a reference: start afresh
                self._frames_lost = lost
                self.video.force_keyframe()
            coded = self.video.encode(frame.rgb, quality, qmap)
            data, predicted = coded.data, not coded.keyframe
            r.keyframes += coded.keyframe
            r.blocks, r.coded_blocks = r.blocks + coded.blocks, r.coded_blocks + coded.coded_blocks
        r.encode_seconds += time.perf_counter() - t0
        return data, regions, predicted

    def status(self) -> dict:
        r = self.report
        r.acknowledged = self.sender.stats.acked
        r.dropped_spool = self.spool.stats.dropped
        r.rejected = self.spool.stats.rejected
        r.conflicts = self.spool.stats.conflicts
        r.error = self.sender.fatal or ""
        r.achieved_kbps = round(self.rate.achieved_kbps(), 1)
        metrics.QUEUE_DEPTH.set(len(self.spool))
        return {
            "fps": round(r.fps, 2),
            "kbps": r.achieved_kbps,
            "queue": len(self.spool),
            "acked": r.acknowledged,
            "ratio": round(r.ratio, 1),
            "connected": self.sender.stats.connected,
            "dropped": r.dropped_rate + r.dropped_spool,
        }

    def run(self) -> AgentReport:
        cfg = self.cfg
        self.sender.start()
        start = time.monotonic()
        last_status = start
        first_frame = None  # frames/s counts from the first frame, not from opening the source
        try:
            # under a bit-rate budget a video file plays at its own frame rate, as a camera would
            source_opts = replace(cfg.source_opts, file_rate=cfg.source_opts.file_rate or cfg.target_kbps > 0)
            for frame in frames(cfg.source, source_opts, self.stopping):
                if self.stopping.is_set() or self.sender.fatal:
                    break
                if first_frame is None:
                    first_frame = time.monotonic()
                self.report.captured += 1
                now = time.monotonic()
                temporal = self.video is not None
                keyframe = not temporal or self.video.next_is_keyframe(frame.rgb.shape[:2])
                decision = self.rate.decide(now, keyframe, temporal)
                if decision.quality == 0:
                    self.report.dropped_rate += 1
                    metrics.FRAMES_DROPPED.labels("rate").inc()
                    continue
                data, regions, predicted = self.encode_frame(frame, decision.quality)
                rec = pb.FrameRecord(
                    stream_id=cfg.stream_id,
                    capture_time_us=frame.capture_time_us,
                    bitstream=data,
                    raw_bytes=frame.rgb.nbytes,
                    regions=regions,
                )
                if not self.spool.make_room(rec.ByteSize() + 10, self.stopping):  # + the sequence's varint
                    break
                seq = self.spool.append(lambda n, rec=rec: _numbered(rec, n), self.stopping)
                if seq is None:  # the disk is full (spool.append): dropped and counted, or stopping
                    if not self.stopping.is_set():
                        metrics.FRAMES_DROPPED.labels("disk-full").inc()
                    continue
                self.rate.record(now, decision.quality, 8 * len(data), predicted)
                r = self.report
                r.encoded += 1
                r.raw_bytes += frame.rgb.nbytes
                r.coded_bytes += len(data)
                metrics.FRAMES_ENCODED.inc()
                metrics.BYTES_ENCODED.inc(len(data))
                if self.on_frame:
                    self.on_frame(seq, frame, data)
                r.seconds = time.monotonic() - first_frame
                if time.monotonic() - last_status >= cfg.status_every_s:
                    log.info("status", extra=self.status())
                    last_status = time.monotonic()
                if cfg.max_frames and r.encoded >= cfg.max_frames:
                    break
            if first_frame is not None:
                self.report.seconds = time.monotonic() - first_frame
            self._drain(start)
        finally:
            self.sender.stop()
            self.sender.join(timeout=5)
            log.info("status", extra={**self.status(), "final": True})
        return self.report

    def _drain(self, start: float) -> None:
        """Wait until the spool is empty (everything acknowledged), the timeout, or a stop."""
        cfg = self.cfg
        last = time.monotonic()
        while len(self.spool) and not self.stopping.is_set() and not self.sender.fatal:
            if cfg.timeout_s and time.monotonic() - start > cfg.timeout_s:
                log.error("timed out waiting for acknowledgements", extra={"unacknowledged": len(self.spool)})
                return
            if time.monotonic() - last >= cfg.status_every_s:
                log.info("draining", extra=self.status())
                last = time.monotonic()
            time.sleep(0.1)
