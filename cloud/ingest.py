"""Ingest: authenticate, validate, claim the key, write the bitstream, mark it stored, acknowledge.

The order is what makes an acknowledgement safe under racing requests and crashes:
1. the (device, stream, sequence) row is inserted as a claim; the primary key picks one winner;
2. the winner writes the bitstream under a name derived from its content, which no request with
   other content can write;
3. the row is marked stored, and only then is the frame answered STORED.
A request that finds the key taken compares content hashes: the same content already stored is
DUPLICATE, other content is CONFLICT (never accepted, never silently dropped), and a claim still
being written is answered "retry" (UNAVAILABLE) unless its request died, when it is taken over.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc

from lsic.cloud import metrics
from lsic.cloud.auth import Authenticator, shown
from lsic.cloud.call_errors import status_of
from lsic.cloud.errors import FrameBusyError
from lsic.cloud.frames import regions_json
from lsic.cloud.storage.metadata import MAX_SEQUENCE, FrameRow, SqlMetadataStore, now_us
from lsic.codec.bitstream import DEFAULT_LIMITS, TILE_SAME_AS_PREVIOUS, FrameLimits, parse
from lsic.codec.errors import LsicError
from lsic.codec.package import package_for_header
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc

log = logging.getLogger("lsic.cloud.ingest")
STREAM_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_REGIONS = 256


@dataclass
class IngestLimits:
    frames_per_second: float = 60.0  # per device, sustained
    burst: int = 120
    streams_per_device: int = 8
    frame: FrameLimits = field(default_factory=lambda: DEFAULT_LIMITS)
    claim_stale_s: float = 30.0  # a claim this old whose request never finished can be taken over


class Rejected(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


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


def blob_key(device_id: str, stream_id: str, seq: int, sha256: str) -> str:
    """Where a frame's bitstream lives: only a request with this exact content writes this name."""
    return f"frames/{device_id}/{stream_id}/{seq:020d}-{sha256[:32]}.lsic"


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
                grpc.StatusCode.PERMISSION_DENIED, f"device {device_id} may not write streams of {shown(rec.device_id)}"
            )
        if not STREAM_ID_RE.fullmatch(rec.stream_id):
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, f"invalid stream id {shown(rec.stream_id)}")
        if len(rec.regions) > MAX_REGIONS or any(len(r.kind) > 16 for r in rec.regions):
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_REGIONS} regions, kinds of 16 characters")
        if rec.sequence > MAX_SEQUENCE:
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, f"sequence {rec.sequence} is above {MAX_SEQUENCE}")
        try:
            parsed = parse(rec.bitstream, self.limits.frame)
            for i, kind in enumerate(parsed.kinds):
                if kind != TILE_SAME_AS_PREVIOUS:
                    parsed.tile_payload(i)  # checks the tile's CRC32C
            # devices not yet upgraded still send the previous build, which the cloud keeps retired
            package_for_header(parsed.header)
        except LsicError as exc:
            raise Rejected(status_of(exc), str(exc)) from exc
        h = parsed.header
        refs = sum(1 for k in parsed.kinds if k == TILE_SAME_AS_PREVIOUS)
        sha = hashlib.sha256(rec.bitstream).hexdigest()
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
            blob_key=blob_key(device_id, rec.stream_id, int(rec.sequence), sha),
            content_sha256=sha,
            regions=regions_json(rec.regions),
        )

    def _write(self, row: FrameRow, data: bytes) -> None:
        """Blob, then the row marked stored; a failed blob write frees the key again."""
        try:
            self.blobs.put(row.blob_key, data)
        except LsicError:
            self.store.release_claim(row)
            raise
        self.store.mark_stored(row)

    def _store(self, row: FrameRow, data: bytes) -> int:
        held = self.store.claim_frame(row)
        if held is None:
            self._write(row, data)
            return pb.FrameAck.STORED
        if held.content_sha256 is None:  # stored before content hashes were kept
            old = self.blobs.get(held.blob_key)
            same = old is not None and hashlib.sha256(old).hexdigest() == row.content_sha256
        else:
            same = held.content_sha256 == row.content_sha256
        if not same:
            return pb.FrameAck.CONFLICT
        if held.stored:
            return pb.FrameAck.DUPLICATE
        if self.store.take_over_claim(row, now_us() - int(self.limits.claim_stale_s * 1e6)):
            log.warning("took over an abandoned claim", extra={"device": row.device_id, "seq": row.seq})
            self._write(row, data)
            return pb.FrameAck.STORED
        raise FrameBusyError(f"frame {row.stream_id}/{row.seq} is being stored by another request; retry")

    def store_frame(self, device_id: str, rec: pb.FrameRecord) -> pb.FrameAck:
        """Validate and durably store one record; never raises, whatever goes wrong with it."""
        t0 = time.perf_counter()
        ack = pb.FrameAck(stream_id=rec.stream_id[:64], sequence=rec.sequence)
        try:
            if not self.bucket.take(device_id):
                raise Rejected(grpc.StatusCode.RESOURCE_EXHAUSTED, "per-device frame rate limit exceeded")
            row = self.validate(device_id, rec)
            ack.status = self._store(row, rec.bitstream)
            if ack.status == pb.FrameAck.STORED:
                metrics.FRAMES_IN.labels(device_id).inc()
                metrics.BYTES_IN.inc(len(rec.bitstream))
                if self.on_stored:
                    self.on_stored()
            elif ack.status == pb.FrameAck.DUPLICATE:
                metrics.DUPLICATES.inc()
            else:
                ack.code = grpc.StatusCode.ALREADY_EXISTS.value[0]
                ack.message = f"{rec.stream_id}/{rec.sequence} holds different content; this frame was not stored"
                metrics.CONFLICTS.inc()
                log.error("sequence conflict", extra={"device": device_id, "stream": rec.stream_id, "seq": rec.sequence})
        except Rejected as r:
            self._refuse(ack, r.code, r.message, device_id, rec)
        except LsicError as exc:  # storage full, database unavailable, a busy key
            self._refuse(ack, status_of(exc), str(exc), device_id, rec)
        except Exception as exc:  # a bug must cost one frame its acknowledgement, not the stream
            log.exception("frame not stored", extra={"device": device_id, "seq": rec.sequence})
            self._refuse(ack, grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__})", device_id, rec)
        metrics.ACK_LATENCY.observe(time.perf_counter() - t0)
        return ack

    @staticmethod
    def _refuse(ack: pb.FrameAck, code: grpc.StatusCode, message: str, device_id: str, rec: pb.FrameRecord) -> None:
        ack.status, ack.code, ack.message = pb.FrameAck.REJECTED, code.value[0], message
        metrics.REJECTED.labels(code.name).inc()
        log.warning(
            "frame refused",
            extra={"device": device_id, "stream": shown(rec.stream_id), "seq": rec.sequence, "code": code.name,
                   "reason": message},
        )

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

    def GetStreamState(self, request: pb.StreamStateRequest, context: grpc.ServicerContext) -> pb.StreamState:
        device_id = self.auth.device(context)
        if not STREAM_ID_RE.fullmatch(request.stream_id):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid stream id {shown(request.stream_id)}")
        last = self.store.stream_position(device_id, request.stream_id)  # LsicError: cloud.call_errors
        return pb.StreamState(
            stream_id=request.stream_id, exists=last is not None, next_sequence=0 if last is None else last + 1
        )
