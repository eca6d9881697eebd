"""The operations port of a cloud process: Prometheus metrics and health for orchestrators.

Plain HTTP on its own port, so a kubelet or Prometheus can reach it while gRPC is TLS-only:
- `/metrics`: the process's Prometheus registry;
- `/healthz`: liveness, 200 while the process's main loop is alive;
- `/readyz`: readiness, 200 when it can do its work (its checks pass), else 503 with the reasons.
It binds loopback unless told otherwise (`--metrics-host 0.0.0.0` in a pod).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from lsic.cloud.http_server import BoundedHTTPServer, serve_http

log = logging.getLogger("lsic.cloud.ops")

Check = Callable[[], str | None]  # None when healthy, else why not


def start_ops_server(
    host: str, port: int, registry: CollectorRegistry, live: Check, ready: list[Check]
) -> BoundedHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            log.debug("http", extra={"request": fmt % args})

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _status(self, checks: list[Check]) -> None:
            problems = [p for p in (_run(c) for c in checks) if p]
            self._send(503 if problems else 200, json.dumps({"ok": not problems, "problems": problems}).encode(),
                       "application/json")

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._status([live])
            elif path == "/readyz":
                self._status([live, *ready])
            else:
                self._send(404, b'{"error": "not found"}', "application/json")

    httpd = serve_http(host, port, Handler, "metrics and health")
    log.info("metrics and health", extra={"url": f"http://{host}:{httpd.server_address[1]}/metrics"})
    return httpd


def _run(check: Check) -> str | None:
    try:
        return check()
    except Exception as exc:  # a failing check is a problem to report, not a crash
        return f"{type(exc).__name__}: {exc}"
