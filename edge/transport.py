"""Store-and-forward transport: stream spooled frames to the cloud, remove each on its ack.

One gRPC stream at a time with a window of frames in flight. Any break (cloud down, network
gone, cloud restart) ends the stream; the sender reconnects with exponential backoff and
jitter and resends everything still in the spool. The cloud's ingest is idempotent, so a frame
resent after a lost acknowledgement is stored once.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from lsic.edge.spool import Spool
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc

log = logging.getLogger("lsic.edge.transport")
RETRY_LATER = {
    grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
    grpc.StatusCode.UNAVAILABLE.value[0],
    grpc.StatusCode.INTERNAL.value[0],
}


@dataclass
class LinkOptions:
    server: str
    device_id: str
    token: str
    insecure: bool = False
    ca: Path | None = None  # CA that signed the server certificate (default: system roots)
    client_cert: Path | None = None
    client_key: Path | None = None
    window: int = 32
    max_backoff_s: float = 30.0


def is_loopback_target(server: str) -> bool:
    host = server.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_channel(opts: LinkOptions) -> grpc.Channel:
    options = [
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ("grpc.enable_retries", 0),
    ]
    if opts.insecure:
        if not is_loopback_target(opts.server):
            raise SystemExit(f"--insecure is allowed only for a loopback server, not {opts.server}")
        return grpc.insecure_channel(opts.server, options=options)
    creds = grpc.ssl_channel_credentials(
        root_certificates=opts.ca.read_bytes() if opts.ca else None,
        private_key=opts.client_key.read_bytes() if opts.client_key else None,
        certificate_chain=opts.client_cert.read_bytes() if opts.client_cert else None,
    )
    return grpc.secure_channel(opts.server, creds, options=options)


@dataclass
class LinkStats:
    acked: int = 0
    duplicates: int = 0
    rejected: int = 0
    bytes_sent: int = 0
    reconnects: int = 0
    connected: bool = False
    last_error: str = ""


class Sender(threading.Thread):
    def __init__(self, spool: Spool, opts: LinkOptions) -> None:
        super().__init__(name="lsic-sender", daemon=True)
        self.spool, self.opts = spool, opts
        self.stats = LinkStats()
        self.stopping = threading.Event()
        self.acked_event = threading.Condition()
        self._in_flight: dict[int, float] = {}
        self._lock = threading.Lock()
        self._call = None

    def stop(self) -> None:
        self.stopping.set()
        call = self._call
        if call is not None:
            call.cancel()
        with self.spool.cond:
            self.spool.cond.notify_all()

    def run(self) -> None:
        backoff = 0.5
        while not self.stopping.is_set():
            try:
                self._session()
                backoff = 0.5
            except grpc.RpcError as exc:
                code = exc.code()
                if self.stopping.is_set() or code == grpc.StatusCode.CANCELLED:
                    break
                self.stats.connected = False
                self.stats.last_error = f"{code.name}: {exc.details()}"
                level = (
                    logging.ERROR
                    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
                    else logging.WARNING
                )
                log.log(
                    level,
                    "link down, will retry",
                    extra={"code": code.name, "detail": exc.details(), "retry_in_s": round(backoff, 2)},
                )
            self.stats.reconnects += 1
            self.stopping.wait(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self.opts.max_backoff_s)

    def _requests(self):
        while not self.stopping.is_set():
            with self._lock:
                room = self.opts.window - len(self._in_flight)
                todo = [s for s in self.spool.pending() if s not in self._in_flight][: max(0, room)]
            if not todo:
                with self.spool.cond:
                    self.spool.cond.wait(0.2)
                continue
            for seq in todo:
                data = self.spool.read(seq)
                if data is None:
                    continue
                with self._lock:
                    self._in_flight[seq] = time.monotonic()
                self.stats.bytes_sent += len(data)
                yield pb.FrameRecord.FromString(data)

    def _session(self) -> None:
        with make_channel(self.opts) as channel:
            stub = pb_grpc.IngestStub(channel)
            with self._lock:
                self._in_flight.clear()
            md = (("authorization", f"Bearer {self.opts.token}"),)
            self._call = stub.StreamFrames(self._requests(), metadata=md)
            for ack in self._call:
                self.stats.connected = True
                # The frame leaves the spool before it leaves the in-flight set: the other way
                # round, the request thread could see it pending and not in flight, and send it
                # again (seen under load: one extra DUPLICATE ack in 200 frames).
                if ack.status in (pb.FrameAck.STORED, pb.FrameAck.DUPLICATE):
                    if self.spool.ack(ack.sequence):
                        self.stats.acked += 1
                        self.stats.duplicates += ack.status == pb.FrameAck.DUPLICATE
                elif ack.code in RETRY_LATER:
                    log.warning("frame deferred by the cloud", extra={"seq": ack.sequence, "reason": ack.message})
                    self.stopping.wait(0.5)
                else:
                    self.spool.reject(ack.sequence, f"{ack.code}: {ack.message}")
                    self.stats.rejected += 1
                    log.error(
                        "frame rejected by the cloud; kept in spool/rejected",
                        extra={"seq": ack.sequence, "code": ack.code, "reason": ack.message},
                    )
                with self._lock:
                    self._in_flight.pop(ack.sequence, None)
                with self.spool.cond:
                    self.spool.cond.notify_all()
