"""Ingest: authenticate, validate, write bitstream then metadata durably, then acknowledge."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from lsic.cloud import metrics
from lsic.cloud.auth import Authenticator
from lsic.cloud.storage.metadata import FrameRow, SqlMetadataStore, now_us
from lsic.codec.bitstream import TILE_CODED, TILE_SAME_AS_PREVIOUS, parse
from lsic.codec.errors import LsicError
from lsic.codec.package import package_for_header
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc

log = logging.getLogger("lsic.cloud.ingest")
STREAM_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class IngestLimits:
    frames_per_second: float = 60.0  # per device, sustained
    burst: int = 120
    streams_per_device: int = 8


class Rejected(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def status_of(exc: LsicError) -> grpc.StatusCode:
    return grpc.StatusCode[exc.grpc_status]


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens: dict[str, float] = defaultdict(lambda: float(burst))
        self.stamp: dict[str, float] = {}
        self.lock = threading.Lock()

    def take(self, key: str) -> bool:
        with self.lock:
            now = time.monotonic()
            last = self.stamp.get(key, now)
            self.stamp[key] = now
            self.tokens[key] = min(self.burst, self.tokens[key] + (now - last) * self.rate)
            if self.tokens[key] < 1:
                return False
            self.tokens[key] -= 1
            return True


class IngestService(pb_grpc.IngestServicer):
    def __init__(
        self, store: SqlMetadataStore, blobs, auth: Authenticator, limits: IngestLimits, on_stored=None
    ) -> None:
        self.store, self.blobs, self.auth, self.limits = store, blobs, auth, limits
        self.bucket = TokenBucket(limits.frames_per_second, limits.burst)
        self.open_streams: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()
        self.on_stored = on_stored

    def validate(self, device_id: str, rec: pb.FrameRecord) -> FrameRow:
        if rec.device_id and rec.device_id != device_id:
            raise Rejected(
                grpc.StatusCode.PERMISSION_DENIED, f"device {device_id} may not write streams of {rec.device_id}"
            )
        if not STREAM_ID_RE.match(rec.stream_id):
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, f"invalid stream id {rec.stream_id!r}")
        try:
            parsed = parse(rec.bitstream)
            for i, kind in enumerate(parsed.kinds):
                if kind == TILE_CODED:
                    parsed.tile_payload(i)  # checks the tile's CRC32C
            # devices not yet upgraded still send the previous build, which the cloud keeps retired
            package_for_header(parsed.header)
        except LsicError as exc:
            raise Rejected(status_of(exc), str(exc)) from exc
        h = parsed.header
        refs = sum(1 for k in parsed.kinds if k == TILE_SAME_AS_PREVIOUS)
        return FrameRow(
            device_id=device_id,
            stream_id=rec.stream_id,
            seq=int(rec.sequence),
            capture_us=int(rec.capture_time_us),
            received_us=now_us(),
            width=h.width,
            height=h.height,
            quality=h.quality,
            model_id=h.model_id,
            bytes=len(rec.bitstream),
            raw_bytes=int(rec.raw_bytes),
            tiles=len(parsed.kinds),
            ref_tiles=refs,
            blob_key=f"frames/{device_id}/{rec.stream_id}/{int(rec.sequence):012d}.lsic",
        )

    def store_frame(self, device_id: str, rec: pb.FrameRecord) -> pb.FrameAck:
        """Validate and durably store one record; never raises for a bad record."""
        t0 = time.perf_counter()
        ack = pb.FrameAck(stream_id=rec.stream_id, sequence=rec.sequence)
        try:
            if not self.bucket.take(device_id):
                raise Rejected(grpc.StatusCode.RESOURCE_EXHAUSTED, "per-device frame rate limit exceeded")
            row = self.validate(device_id, rec)
            if self.store.get_frame(device_id, row.stream_id, row.seq) is not None:
                ack.status = pb.FrameAck.DUPLICATE
                metrics.DUPLICATES.inc()
            else:
                self.blobs.put(row.blob_key, rec.bitstream)  # durable before the metadata row
                inserted = self.store.insert_frame(row)
                ack.status = pb.FrameAck.STORED if inserted else pb.FrameAck.DUPLICATE
                if inserted:
                    metrics.FRAMES_IN.labels(device_id).inc()
                    metrics.BYTES_IN.inc(len(rec.bitstream))
                    if self.on_stored:
                        self.on_stored()
                else:
                    metrics.DUPLICATES.inc()
        except Rejected as r:
            ack.status, ack.code, ack.message = pb.FrameAck.REJECTED, r.code.value[0], r.message
            metrics.REJECTED.labels(r.code.name).inc()
            log.warning(
                "frame rejected",
                extra={
                    "device": device_id,
                    "stream": rec.stream_id,
                    "seq": rec.sequence,
                    "code": r.code.name,
                    "reason": r.message,
                },
            )
        except LsicError as exc:  # storage full and the like
            code = status_of(exc)
            ack.status, ack.code, ack.message = pb.FrameAck.REJECTED, code.value[0], str(exc)
            metrics.REJECTED.labels(code.name).inc()
            log.error("frame not stored", extra={"device": device_id, "seq": rec.sequence, "reason": str(exc)})
        metrics.ACK_LATENCY.observe(time.perf_counter() - t0)
        return ack

    def StreamFrames(
        self, request_iterator: Iterator[pb.FrameRecord], context: grpc.ServicerContext
    ) -> Iterator[pb.FrameAck]:
        device_id = self.auth.device(context)
        with self.lock:
            if self.open_streams[device_id] >= self.limits.streams_per_device:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many concurrent streams for this device")
            self.open_streams[device_id] += 1
        metrics.ACTIVE_STREAMS.inc()
        try:
            for rec in request_iterator:
                yield self.store_frame(device_id, rec)
        finally:
            metrics.ACTIVE_STREAMS.dec()
            with self.lock:
                self.open_streams[device_id] -= 1

    def PutFrame(self, request: pb.FrameRecord, context: grpc.ServicerContext) -> pb.FrameAck:
        device_id = self.auth.device(context)
        ack = self.store_frame(device_id, request)
        if ack.status == pb.FrameAck.REJECTED:
            code = next(c for c in grpc.StatusCode if c.value[0] == ack.code)
            context.abort(code, ack.message)
        return ack
