"""The cloud service process: gRPC (ingest, archive, admin, health, reflection), decode worker,
Prometheus metrics and a small web viewer, over SQLite/PostgreSQL metadata and local/S3 blobs."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from lsic.cli_support import on_stop_signals
from lsic.cloud import metrics
from lsic.cloud.archive import AdminService, ArchiveService
from lsic.cloud.auth import Authenticator, load_or_create_operator_token
from lsic.cloud.budgets import BudgetInterceptor, Budgets
from lsic.cloud.call_errors import ErrorInterceptor
from lsic.cloud.errors import ConfigError
from lsic.cloud.ingest import IngestLimits, IngestService
from lsic.cloud.reconstruct import Reconstructor
from lsic.cloud.storage.blobs import open_blobs
from lsic.cloud.storage.encryption import Keyring
from lsic.cloud.storage.metadata import open_metadata
from lsic.codec.bitstream import FrameLimits
from lsic.codec.decoder import Decoder
from lsic.codec.errors import LsicError, UsageError
from lsic.codec.synthesis import PRECISIONS
from lsic.lifetime import end_with_parent
from lsic.tls import server_credentials
from lsic.v1 import lsic_pb2, lsic_pb2_grpc

log = logging.getLogger("lsic.cloud")
MAX_MESSAGE = 32 * 1024 * 1024


@dataclass
class ServerConfig:
    listen: str = "127.0.0.1:50051"
    data: Path = Path(".lsic-data")
    insecure: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    metadata_url: str = ""
    blob_url: str = ""
    metrics_port: int = 0  # /metrics, /healthz, /readyz (ops_http)
    metrics_host: str = "127.0.0.1"
    http_port: int = 0  # the web viewer
    http_host: str = "127.0.0.1"
    # Each open ingest stream holds a thread for its lifetime, so the pool bounds concurrent
    # streams; calls beyond it are refused (RESOURCE_EXHAUSTED) instead of queueing unseen.
    workers: int = 512
    decode: bool = True
    decode_backend: str = "auto"
    decode_device: str = "auto"
    decode_threads: int = 0
    decode_precision: str = "auto"  # a key of lsic.codec.synthesis.PRECISIONS
    decode_processes: int | None = None  # the decode worker's entropy processes (None: one per core)
    max_message_bytes: int = MAX_MESSAGE
    limits: IngestLimits = field(default_factory=IngestLimits)
    budgets: Budgets = field(default_factory=Budgets)
    blob_key_file: str | None = None  # encryption at rest (else $LSIC_BLOB_KEYS, else none)
    recon_cache_mb: int = 2048
    disk_reserve_mb: int = 1024


def start_decode_process(cfg: ServerConfig) -> subprocess.Popen:
    """The decode worker runs as its own, lower-priority process: decoding never starves ingest
    (acknowledgement latency) of CPU or of the interpreter lock, and lags instead."""
    cmd = [
        sys.executable,
        "-m",
        "lsic.cloud.cli",
        "decode",
        "--data",
        str(cfg.data),
        "--metadata",
        cfg.metadata_url,
        "--blobs",
        cfg.blob_url,
        "--decode-backend",
        cfg.decode_backend,
        "--decode-device",
        cfg.decode_device,
        "--decode-threads",
        str(cfg.decode_threads),
        "--decode-precision",
        cfg.decode_precision,
        *(["--decode-processes", str(cfg.decode_processes)] if cfg.decode_processes is not None else []),
        "--nice",
        "19",
        *(["--metrics-host", cfg.metrics_host, "--metrics-port", str(cfg.metrics_port + 1)] if cfg.metrics_port else []),
        "--owner",  # this server's workers share leases across restarts; another server's do not
        f"{socket.gethostname()}:{os.getpid()}",
        "--recon-cache-mb",
        str(cfg.recon_cache_mb),
        "--disk-reserve-mb",
        str(cfg.disk_reserve_mb),
        *frame_limit_args(cfg.limits.frame),
        *(["--blob-key-file", cfg.blob_key_file] if cfg.blob_key_file else []),
    ]
    # the worker ends with the service, so no orphan decodes beside a restarted one
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=os.environ.copy(), preexec_fn=partial(end_with_parent, os.getpid()))


def frame_limit_args(limits: FrameLimits) -> list[str]:
    return [
        "--max-frame-pixels", str(limits.max_pixels), "--max-frame-side", str(limits.max_side),
        "--max-tile", str(limits.max_tile),
    ]


def is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class CloudServer:
    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        cfg.data.mkdir(parents=True, exist_ok=True)
        self.operator_token = load_or_create_operator_token(cfg.data)
        self.store = open_metadata(cfg.metadata_url, cfg.data)
        self.blobs = open_blobs(cfg.blob_url, cfg.data, Keyring.from_settings(cfg.blob_key_file))
        self.auth = Authenticator(self.store, self.operator_token)
        self.decoder = Decoder(
            backend=cfg.decode_backend,
            device=cfg.decode_device,
            threads=cfg.decode_threads,
            half=PRECISIONS[cfg.decode_precision],
            limits=cfg.limits.frame,
        )
        self.recon = Reconstructor(self.store, self.blobs, self.decoder)
        self.decode_proc: subprocess.Popen | None = None
        self.ingest = IngestService(self.store, self.blobs, self.auth, cfg.limits)
        opts = [
            ("grpc.max_receive_message_length", cfg.max_message_bytes),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.so_reuseport", 0),  # a second server on a taken port fails instead of sharing it
        ]
        cfg.budgets.calls = cfg.workers
        self.budgets = BudgetInterceptor(cfg.budgets)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=cfg.workers),
            options=opts,
            maximum_concurrent_rpcs=cfg.workers,
            interceptors=[self.budgets, ErrorInterceptor()],  # budgets first: a refused call does no work
        )
        lsic_pb2_grpc.add_IngestServicer_to_server(self.ingest, self.server)
        lsic_pb2_grpc.add_ArchiveServicer_to_server(ArchiveService(self.store, self.recon, self.auth), self.server)
        lsic_pb2_grpc.add_AdminServicer_to_server(AdminService(self.store, self.auth), self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._add_reflection()
        self.port = self._bind()
        self.stopped = threading.Event()
        self.stopping = False
        self.http = None
        self.ops = None

    def _add_reflection(self) -> None:
        try:
            from grpc_reflection.v1alpha import reflection
        except ImportError:
            return
        names = [lsic_pb2.DESCRIPTOR.services_by_name[n].full_name for n in ("Ingest", "Archive", "Admin")]
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], self.server
        )

    def _bind(self) -> int:
        cfg = self.cfg
        if cfg.insecure:
            if not is_loopback(cfg.listen):
                raise ConfigError(f"--insecure is allowed only on a loopback address, not {cfg.listen}")
            log.warning("serving without TLS on %s (--insecure: for localhost and tests only)", cfg.listen)
            return self._checked_port(lambda: self.server.add_insecure_port(cfg.listen))
        try:
            creds = server_credentials(cfg.tls_cert, cfg.tls_key, cfg.client_ca)
        except UsageError as exc:
            raise ConfigError(str(exc)) from None
        return self._checked_port(lambda: self.server.add_secure_port(cfg.listen, creds))

    def _checked_port(self, bind) -> int:
        try:
            port = bind()
        except RuntimeError:
            port = 0
        if not port:
            raise ConfigError(f"cannot listen on {self.cfg.listen}: the address is in use or not available here")
        return port

    def start(self) -> None:
        self.server.start()
        if self.cfg.decode:
            self.decode_proc = start_decode_process(self.cfg)
            threading.Thread(target=self._supervise_decode, name="lsic-decode-supervisor", daemon=True).start()
        threading.Thread(target=self._watch_decode_queue, name="lsic-queue-metrics", daemon=True).start()
        if self.cfg.metrics_port:
            from lsic.cloud.ops_http import start_ops_server

            self.ops = start_ops_server(
                self.cfg.metrics_host,
                self.cfg.metrics_port,
                metrics.REGISTRY,
                live=lambda: "stopping" if self.stopping else None,
                ready=[self.store.ping, self.blobs.ping],
            )
        if self.cfg.http_port:
            from lsic.cloud.web import start_web

            self.http = start_web(self, self.cfg.http_host, self.cfg.http_port)
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={"listen": self.cfg.listen, "port": self.port, "data": str(self.cfg.data)})

    def _supervise_decode(self) -> None:
        """Restart the decode worker whenever it exits, waiting longer after each quick exit
        (1 s doubling to a minute; a worker that ran a minute or more is restarted at once)."""
        wait = 1.0
        while not self.stopped.is_set():
            proc = self.decode_proc
            started = time.monotonic()
            code = proc.wait() if proc is not None else 0
            if self.stopped.is_set() or self.stopping:
                return
            if time.monotonic() - started > 60:
                wait = 1.0
            metrics.DECODE_WORKER_RESTARTS.inc()
            log.error("decode worker exited; restarting", extra={"exit_code": code, "restart_in_s": wait})
            if self.stopped.wait(wait) or self.stopping:
                return
            wait = min(wait * 2, 60.0)
            self.decode_proc = start_decode_process(self.cfg)

    def _watch_decode_queue(self) -> None:
        """Decode progress as metrics of this process (the worker is another process)."""
        from lsic.cloud.storage.metadata import STATE_NAMES, now_us

        counts: dict[int, int] = {}
        turn = 0
        while not self.stopped.wait(2.0):
            try:
                oldest = self.store.oldest_waiting()
                waiting = self.store.count_pending()
                if turn % 15 == 0:  # the per-state counts scan every stored frame: every 30 s, not 2
                    counts = self.store.count_by_state()
                turn += 1
            except LsicError as exc:
                log.warning("decode metrics not updated", extra={"reason": str(exc)})
                continue
            except Exception:  # the store is closing
                return
            metrics.DECODE_QUEUE.set(waiting)
            metrics.DECODE_LAG.set((now_us() - oldest.received_us) / 1e6 if oldest else 0.0)
            for state, name in STATE_NAMES.items():
                metrics.FRAMES_BY_STATE.labels(name).set(counts.get(state, 0))

    def stop(self, grace: float = 5.0) -> None:
        self.stopping = True
        self.budgets.stop()
        self.health.enter_graceful_shutdown()
        if self.decode_proc and self.decode_proc.poll() is None:
            self.decode_proc.terminate()
            try:
                self.decode_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.decode_proc.kill()
        self.server.stop(grace).wait()
        for httpd in (self.http, self.ops):
            if httpd:
                httpd.shutdown()
        self.store.close()
        self.stopped.set()

    def serve_forever(self) -> None:
        self.start()
        on_stop_signals(lambda: threading.Thread(target=self.stop, daemon=True).start())
        self.stopped.wait()
