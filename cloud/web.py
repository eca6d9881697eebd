"""A small web viewer for operators: devices, streams, frame thumbnails from the pyramid, a frame
view, and region reconstruction at full resolution (only the touched tiles are decoded).

Served beside the gRPC service (`serve --http-port`, loopback unless `--http-host` says otherwise). Every request needs the
operator token: `Authorization: Bearer ...`, or once as `/?token=...`, which sets a cookie.
"""

from __future__ import annotations

import hmac
import json
import logging
from http import cookies
from http.server import BaseHTTPRequestHandler
from importlib import resources
from urllib.parse import parse_qs, urlparse

from lsic.cloud.auth import hash_token
from lsic.cloud.call_errors import logged
from lsic.cloud.frames import frame_info, frame_summary
from lsic.cloud.http_server import BoundedHTTPServer, serve_http
from lsic.cloud.storage.metadata import MAX_SEQUENCE
from lsic.codec.errors import LsicError, UsageError
from lsic.codec.image_io import encode_image

log = logging.getLogger("lsic.cloud.web")
COOKIE = "lsic_operator"
# An LsicError's gRPC status as an HTTP status, as Google's API design guide maps them.
HTTP_STATUS = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400, "NOT_FOUND": 404,
               "RESOURCE_EXHAUSTED": 429, "UNAVAILABLE": 503}


VENDOR = {
    "/vendor/openseadragon.min.js": resources.files("lsic.cloud").joinpath("web/vendor/openseadragon.min.js").read_bytes()
}


def make_handler(server):  # server: lsic.cloud.server.CloudServer
    store, recon, operator_hash = server.store, server.recon, hash_token(server.operator_token)
    page = resources.files("lsic.cloud").joinpath("web/index.html").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # structured logs instead of stderr lines
            log.debug("http", extra={"request": fmt % args})

        def _token(self, query: dict) -> tuple[str | None, bool]:
            if "token" in query:
                return query["token"][0], True
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                return auth[7:], False
            jar = cookies.SimpleCookie(self.headers.get("Cookie", ""))
            return (jar[COOKIE].value if COOKIE in jar else None), False

        def _send(self, code: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, obj, code: int = 200) -> None:
            self._send(code, json.dumps(obj).encode(), "application/json")

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path in VENDOR:  # published library code: no token needed
                self._send(200, VENDOR[url.path], "text/javascript; charset=utf-8")
                return
            q = parse_qs(url.query)
            token, from_query = self._token(q)
            if not token or not hmac.compare_digest(hash_token(token), operator_hash):
                if url.path == "/":
                    self._send(
                        401,
                        b"<!doctype html><title>LSIC</title><p>Open /?token=OPERATOR_TOKEN (see the data folder's operator.token).",
                        "text/html",
                    )
                else:
                    self._json({"error": "operator token required"}, 401)
                return
            try:
                self.route(
                    url.path,
                    q,
                    page,
                    {"Set-Cookie": f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"} if from_query else None,
                )
            except LsicError as exc:
                self._json({"error": str(exc)}, HTTP_STATUS.get(exc.grpc_status, 500))
            except Exception as exc:  # the client gets a status and a reference, the log the trace
                self._json({"error": f"internal error (the service log has it as ref {logged(exc, url.path)})"}, 500)

        def route(self, path: str, q: dict, page: bytes, extra: dict | None) -> None:
            arg = lambda name, default=None: q.get(name, [default])[0]  # noqa: E731

            def number(name: str, default: int | None = None, low: int = 0, high: int = MAX_SEQUENCE) -> int:
                text = arg(name)
                if text is None:
                    if default is None:
                        raise UsageError(f"{name} is required")
                    return default
                try:
                    value = int(text)
                except ValueError:
                    raise UsageError(f"{name} must be a whole number, got {text[:32]!r}") from None
                if not low <= value <= high:
                    raise UsageError(f"{name} must be {low}..{high}, got {value}")
                return value

            if path == "/":
                self._send(200, page, "text/html; charset=utf-8", extra)
            elif path == "/api/devices":
                self._json(
                    [
                        {"device_id": d.device_id, "revoked": bool(d.revoked), "frames": n}
                        for d, n in store.list_devices()
                    ]
                )
            elif path == "/api/streams":
                self._json(
                    [
                        {"stream_id": s, "frames": n, "first": a, "last": b}
                        for s, n, a, b in store.list_streams(arg("device"))
                    ]
                )
            elif path == "/api/frames":
                rows = store.list_frames(
                    arg("device"),
                    arg("stream", ""),
                    limit=number("limit", 200, low=1, high=1000),
                    after_seq=number("after", -1, low=-1),
                    newest_first=arg("newest") == "1",
                )
                self._json([frame_summary(frame_info(r)) for r in rows])
            elif path == "/api/bits.png":
                row = store.get_frame(arg("device", ""), arg("stream", "main"), number("seq"))
                if row is None:
                    self._json({"error": "no such frame"}, 404)
                    return
                png, scale, mean = recon.bits_map(row)
                self._send(200, png, "image/png", {"X-Max-Bits-Per-Pixel": f"{scale:.4f}",
                                                   "X-Mean-Bits-Per-Pixel": f"{mean:.4f}"})
            elif path == "/api/frame.png":
                row = store.get_frame(arg("device", ""), arg("stream", "main"), number("seq"))
                if row is None:
                    self._json({"error": "no such frame"}, 404)
                    return
                side = max(row.width, row.height)
                w, h = number("w", 0, high=side), number("h", 0, high=side)
                region = (number("x", 0, high=side), number("y", 0, high=side), w, h) if w and h else None
                rgb, tiles = recon.render(row, region, number("downscale", 1, low=1, high=8))
                self._send(200, encode_image(rgb, ".png"), "image/png", {"X-Tiles-Decoded": str(tiles)})
            else:
                self._json({"error": "not found"}, 404)

    return Handler


def start_web(server, host: str, port: int) -> BoundedHTTPServer:
    httpd = serve_http(host, port, make_handler(server), "the web viewer")
    log.info("web viewer", extra={"url": f"http://{host}:{httpd.server_address[1]}/"})
    return httpd
