"""Store-and-forward transport: stream spooled frames to the cloud, remove each on its ack.

One gRPC stream at a time with a window of frames in flight. Any break (cloud down, network
gone, cloud restart) ends the stream; the sender reconnects with exponential backoff and
jitter and resends everything still in the spool. The cloud's ingest is idempotent, so a frame
resent after a lost acknowledgement is stored once.

A frame leaves the spool only when the cloud stored it or holds the same content (STORED,
DUPLICATE). A CONFLICT (other content under its number) keeps it in spool/conflicts and is
reported as an error. Credentials the cloud refuses (wrong, revoked) are not retried for ever:
after `max_auth_failures` refusals in a row the sender stops with `fatal` set, spool intact.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from lsic.codec.errors import UsageError
from lsic.edge.spool import Spool
from lsic.tls import channel_credentials
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
    max_auth_failures: int = 3  # refused credentials in a row before the sender gives up
    _credentials: grpc.ChannelCredentials | None = field(default=None, init=False, repr=False)

    def credentials(self) -> grpc.ChannelCredentials:
        """The TLS credentials, read and checked the first time (the agent asks before it starts)."""
        if self._credentials is None:
            self._credentials = channel_credentials(self.ca, self.client_cert, self.client_key)
        return self._credentials


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
            raise UsageError(f"--insecure is allowed only for a loopback server, not {opts.server}")
        return grpc.insecure_channel(opts.server, options=options)
    return grpc.secure_channel(opts.server, opts.credentials(), options=options)


@dataclass
class LinkStats:
    acked: int = 0
    duplicates: int = 0
    rejected: int = 0
    bytes_sent: int = 0
    conflicts: int = 0
    reconnects: int = 0
    connected: bool = False
    last_error: str = ""


AUTH_REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


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
        self.fatal: str | None = None  # why the sender gave up (refused credentials); None while it runs
        self._auth_failures = 0

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
                if code in AUTH_REFUSED:
                    self._auth_failures += 1
                    if self._auth_failures >= self.opts.max_auth_failures:
                        self.fatal = (
                            f"the cloud refused this device's credentials {self._auth_failures} times "
                            f"({code.name}: {exc.details()}); check the device id and token"
                        )
                        log.error("credentials refused; giving up", extra={"code": code.name, "detail": exc.details()})
                        self.stopping.set()
                        break
                level = logging.ERROR if code in AUTH_REFUSED else logging.WARNING
                log.log(
                    level,
                    "link down, will retry",
                    extra={"code": code.name, "detail": exc.details(), "retry_in_s": round(backoff, 2)},
                )
            except Exception as exc:  # the sender must outlive what it did not foresee (a disk error, a bug)
                self.stats.connected = False
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.error("sender failed, will retry", exc_info=exc, extra={"retry_in_s": round(backoff, 2)})
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
                loaded = self.spool.load(seq)
                if loaded is None:
                    continue
                with self._lock:
                    self._in_flight[seq] = time.monotonic()
                self.stats.bytes_sent += loaded[1]
                yield loaded[0]

    def _sync(self, stub: pb_grpc.IngestStub, md) -> None:
        """An unsynced (new) spool asks where its stream stands before sending anything."""
        if self.spool.synced:
            return
        try:
            state = stub.GetStreamState(pb.StreamStateRequest(stream_id=self.spool.stream_id), metadata=md, timeout=30)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            log.warning("the cloud cannot report stream positions; numbering from this device's spool")
            self.spool.rebase(0)
            return
        self._auth_failures = 0
        shift = self.spool.rebase(state.next_sequence)
        log.info(
            "stream position from the cloud",
            extra={"stream": self.spool.stream_id, "next_sequence": state.next_sequence, "renumbered_by": shift},
        )

    def _session(self) -> None:
        with make_channel(self.opts) as channel:
            stub = pb_grpc.IngestStub(channel)
            with self._lock:
                self._in_flight.clear()
            md = (("authorization", f"Bearer {self.opts.token}"),)
            self._sync(stub, md)
            self._call = stub.StreamFrames(self._requests(), metadata=md)
            for ack in self._call:
                self.stats.connected = True
                self._auth_failures = 0
                # The frame leaves the spool before it leaves the in-flight set: the other way
                # round, the request thread could see it pending and not in flight, and send it
                # again (seen under load: one extra DUPLICATE ack in 200 frames).
                if ack.status in (pb.FrameAck.STORED, pb.FrameAck.DUPLICATE):
                    if self.spool.ack(ack.sequence):
                        self.stats.acked += 1
                        self.stats.duplicates += ack.status == pb.FrameAck.DUPLICATE
                elif ack.status == pb.FrameAck.CONFLICT:
                    self.spool.conflict(ack.sequence, ack.message)
                    self.stats.conflicts += 1
                    log.error(
                        "the cloud holds other content under this frame's number; kept in spool/conflicts",
                        extra={"seq": ack.sequence, "reason": ack.message},
                    )
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
