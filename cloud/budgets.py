"""Concurrency budgets and idle timeouts, so no client can take the service's call slots.

Every open call holds one of the server's threads. Calls are counted by kind: health checks
(quick, unauthenticated: load balancers and probes must get through any flood), other anonymous
calls (reflection, health watches), device (ingest) and operator (archive, admin), and by peer
address. A call beyond its kind's budget or its peer's is refused at once with
RESOURCE_EXHAUSTED, so a flood of anonymous streams can never take the threads devices need.
Streaming calls that send nothing for longer than their kind's idle timeout are cancelled, and
anonymous calls have a lifetime cap as well.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc

from lsic.cloud import metrics
from lsic.cloud.handlers import rewrap

log = logging.getLogger("lsic.cloud.budgets")

ANONYMOUS, HEALTH, DEVICE, OPERATOR = "anonymous", "health", "device", "operator"


@dataclass
class Budgets:
    calls: int = 512  # the server's threads: every open call holds one
    anonymous: int = 16  # reflection and health watches together
    health: int = 32  # health checks (unary, answered at once)
    operator: int = 64
    per_peer: int = 256  # one address's calls of any kind
    anonymous_per_peer: int = 4
    # kind -> seconds a stream may stay silent
    idle_s: dict[str, float] = field(default_factory=lambda: {DEVICE: 300.0, OPERATOR: 300.0})
    anonymous_lifetime_s: float = 60.0

    def idle(self, kind: str) -> float:
        return self.idle_s.get(kind, 10.0)

    def limit(self, kind: str) -> int:
        """Devices get every thread the other kinds cannot take."""
        return {ANONYMOUS: self.anonymous, HEALTH: self.health, OPERATOR: self.operator}.get(
            kind, max(1, self.calls - self.anonymous - self.health - self.operator)
        )


def kind_of(method: str) -> str:
    if method.startswith("/lsic.v1.Ingest/"):
        return DEVICE
    if method.startswith(("/lsic.v1.Archive/", "/lsic.v1.Admin/")):
        return OPERATOR
    if method == "/grpc.health.v1.Health/Check":
        return HEALTH
    return ANONYMOUS


def peer_host(context: grpc.ServicerContext) -> str:
    """'ipv4:10.0.0.7:51234' -> '10.0.0.7' (the port changes with every connection)."""
    peer = context.peer() or ""
    return peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer


class _Watch:
    """One open call: when it last received a message, and how to end it."""

    def __init__(self, kind: str, context: grpc.ServicerContext) -> None:
        self.kind, self.context = kind, context
        self.started = self.last = time.monotonic()


class BudgetInterceptor(grpc.ServerInterceptor):
    def __init__(self, budgets: Budgets) -> None:
        self.budgets = budgets
        self.lock = threading.Lock()
        self.by_kind: dict[str, int] = defaultdict(int)
        self.by_peer: dict[tuple[str, str], int] = defaultdict(int)  # (host, kind)
        self.by_host: dict[str, int] = defaultdict(int)
        self.watches: set[_Watch] = set()
        self.stopping = threading.Event()
        threading.Thread(target=self._reaper, name="lsic-idle-reaper", daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()

    # --- admission ---
    def _admit(self, kind: str, context: grpc.ServicerContext) -> tuple[str, str] | None:
        host = peer_host(context)
        b = self.budgets
        with self.lock:
            refused = None
            if self.by_kind[kind] >= b.limit(kind):
                refused = f"too many concurrent {kind} calls ({b.limit(kind)})"
            elif self.by_host[host] >= b.per_peer:
                refused = f"too many concurrent calls from {host} ({b.per_peer})"
            elif kind == ANONYMOUS and self.by_peer[(host, kind)] >= b.anonymous_per_peer:
                refused = f"too many concurrent unauthenticated calls from {host} ({b.anonymous_per_peer})"
            if refused is None:
                self.by_kind[kind] += 1
                self.by_host[host] += 1
                self.by_peer[(host, kind)] += 1
                return host, kind
        metrics.CALLS_REFUSED.labels(kind).inc()
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refused)
        return None

    def _release(self, slot: tuple[str, str]) -> None:
        host, kind = slot
        with self.lock:
            self.by_kind[kind] -= 1
            for counts, key in ((self.by_peer, slot), (self.by_host, host)):
                counts[key] -= 1
                if not counts[key]:
                    del counts[key]

    # --- idle streams ---
    def _watched(self, watch: _Watch, requests: Iterator) -> Iterator:
        for message in requests:
            watch.last = time.monotonic()
            yield message

    def _reaper(self) -> None:
        while not self.stopping.wait(1.0):
            now = time.monotonic()
            with self.lock:
                expired = [
                    w
                    for w in self.watches
                    if now - w.last > self.budgets.idle(w.kind)
                    or (w.kind in (ANONYMOUS, HEALTH) and now - w.started > self.budgets.anonymous_lifetime_s)
                ]
            for w in expired:
                metrics.CALLS_REFUSED.labels(f"{w.kind}-idle").inc()
                log.info("ending an idle call", extra={"kind": w.kind, "peer": w.context.peer()})
                w.context.cancel()

    # --- wrapping the handlers ---
    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails):
        handler = continuation(details)
        if handler is None:
            return None
        kind = kind_of(details.method)
        return rewrap(
            handler,
            lambda behavior, streamed: self._unary(kind, behavior, streamed),
            lambda behavior, streamed: self._streaming(kind, behavior, streamed),
        )

    def _unary(self, kind: str, behavior: Callable, request_streaming: bool = False) -> Callable:
        """A call with one response: watched while its requests stream in, and for its lifetime
        when anonymous (a long reconstruction is work, not idleness)."""

        def run(request, context):
            slot = self._admit(kind, context)
            watch = _Watch(kind, context) if request_streaming or kind in (ANONYMOUS, HEALTH) else None
            if watch is not None:
                with self.lock:
                    self.watches.add(watch)
            try:
                return behavior(self._watched(watch, request) if request_streaming else request, context)
            finally:
                if watch is not None:
                    with self.lock:
                        self.watches.discard(watch)
                self._release(slot)

        return run

    def _streaming(self, kind: str, behavior: Callable, request_streaming: bool) -> Callable:
        def run(request, context):
            slot = self._admit(kind, context)
            watch = _Watch(kind, context)
            with self.lock:
                self.watches.add(watch)
            try:
                responses = behavior(self._watched(watch, request) if request_streaming else request, context)
                for response in responses:
                    watch.last = time.monotonic()
                    yield response
            finally:
                with self.lock:
                    self.watches.discard(watch)
                self._release(slot)

        return run
