"""The plain-HTTP servers of a cloud process (web viewer; metrics and health), bounded so that no
client can hold them: a connection silent for IDLE_S is closed, one address holds at most
PER_PEER connections and everyone together MAX_CONNECTIONS; beyond that a new connection gets
503 at once (counted in lsic_calls_refused_total{budget="http"})."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lsic.cloud import metrics
from lsic.cloud.errors import ConfigError

log = logging.getLogger("lsic.cloud.http")
IDLE_S = 15.0
PER_PEER = 16
MAX_CONNECTIONS = 128
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class BoundedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        handler.timeout = IDLE_S  # StreamRequestHandler sets it on each connection's socket
        self.lock = threading.Lock()
        self.open_by_peer: dict[str, int] = defaultdict(int)
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address) -> None:
        peer = client_address[0]
        with self.lock:
            full = sum(self.open_by_peer.values()) >= MAX_CONNECTIONS or self.open_by_peer[peer] >= PER_PEER
            if not full:
                self.open_by_peer[peer] += 1
        if full:
            metrics.CALLS_REFUSED.labels("http").inc()
            with contextlib.suppress(OSError):
                request.sendall(BUSY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)  # a thread for the connection
        except BaseException:
            self._release(peer)
            raise

    def process_request_thread(self, request: socket.socket, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(client_address[0])

    def _release(self, peer: str) -> None:
        with self.lock:
            self.open_by_peer[peer] -= 1
            if not self.open_by_peer[peer]:
                del self.open_by_peer[peer]


def serve_http(host: str, port: int, handler: type[BaseHTTPRequestHandler], what: str) -> BoundedHTTPServer:
    """`handler` served on host:port in a thread of its own; ConfigError if the port cannot be had."""
    try:
        httpd = BoundedHTTPServer((host, port), handler)
    except OSError as exc:
        raise ConfigError(f"cannot serve {what} on {host}:{port}: {exc.strerror}") from exc
    threading.Thread(target=httpd.serve_forever, name=f"lsic-http-{port}", daemon=True).start()
    return httpd
