"""The cloud service process: gRPC (ingest, archive, admin, health, reflection), decode worker,
Prometheus metrics and a small web viewer, over SQLite/PostgreSQL metadata and local/S3 blobs."""

from __future__ import annotations

import ipaddress
import logging
import os
import subprocess
import sys
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from lsic.cli_support import on_stop_signals
from lsic.cloud.archive import AdminService, ArchiveService
from lsic.cloud.auth import Authenticator, load_or_create_operator_token
from lsic.cloud.ingest import IngestLimits, IngestService
from lsic.cloud.reconstruct import Reconstructor
from lsic.cloud.storage.blobs import open_blobs
from lsic.cloud.storage.metadata import open_metadata
from lsic.codec.decoder import Decoder
from lsic.codec.synthesis import PRECISIONS
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
    metrics_port: int = 0
    http_port: int = 0
    # Each open ingest stream holds a thread for its lifetime, so the pool bounds concurrent
    # streams; calls beyond it are refused (RESOURCE_EXHAUSTED) instead of queueing unseen.
    workers: int = 512
    decode: bool = True
    decode_backend: str = "auto"
    decode_device: str = "auto"
    decode_threads: int = 0
    decode_precision: str = "auto"  # a key of lsic.codec.synthesis.PRECISIONS
    max_message_bytes: int = MAX_MESSAGE
    limits: IngestLimits = field(default_factory=IngestLimits)


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
        "--nice",
        "19",
    ]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=os.environ.copy())


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
        self.blobs = open_blobs(cfg.blob_url, cfg.data)
        self.auth = Authenticator(self.store, self.operator_token)
        self.decoder = Decoder(
            backend=cfg.decode_backend,
            device=cfg.decode_device,
            threads=cfg.decode_threads,
            half=PRECISIONS[cfg.decode_precision],
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
        ]
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=cfg.workers), options=opts, maximum_concurrent_rpcs=cfg.workers
        )
        lsic_pb2_grpc.add_IngestServicer_to_server(self.ingest, self.server)
        lsic_pb2_grpc.add_ArchiveServicer_to_server(ArchiveService(self.store, self.recon, self.auth), self.server)
        lsic_pb2_grpc.add_AdminServicer_to_server(AdminService(self.store, self.auth), self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._add_reflection()
        self.port = self._bind()
        self.stopped = threading.Event()
        self.http = None

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
                raise SystemExit(f"--insecure is allowed only on a loopback address, not {cfg.listen}")
            log.warning("serving without TLS on %s (--insecure: for localhost and tests only)", cfg.listen)
            return self.server.add_insecure_port(cfg.listen)
        if not (cfg.tls_cert and cfg.tls_key):
            raise SystemExit("TLS needs --tls-cert and --tls-key (or --insecure on localhost)")
        ca = cfg.client_ca.read_bytes() if cfg.client_ca else None
        creds = grpc.ssl_server_credentials(
            [(cfg.tls_key.read_bytes(), cfg.tls_cert.read_bytes())],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )
        return self.server.add_secure_port(cfg.listen, creds)

    def start(self) -> None:
        self.server.start()
        if self.cfg.decode:
            self.decode_proc = start_decode_process(self.cfg)
        threading.Thread(target=self._watch_decode_queue, name="lsic-queue-metrics", daemon=True).start()
        if self.cfg.metrics_port:
            from prometheus_client import start_http_server

            from lsic.cloud.metrics import REGISTRY

            start_http_server(self.cfg.metrics_port, addr="127.0.0.1", registry=REGISTRY)
        if self.cfg.http_port:
            from lsic.cloud.web import start_web

            self.http = start_web(self, self.cfg.http_port)
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={"listen": self.cfg.listen, "port": self.port, "data": str(self.cfg.data)})

    def _watch_decode_queue(self) -> None:
        """Decode lag as metrics of this process (the worker is another process)."""
        from lsic.cloud import metrics
        from lsic.cloud.storage.metadata import now_us

        while not self.stopped.wait(2.0):
            try:
                pending = self.store.pending_decode(1)
                metrics.DECODE_QUEUE.set(self.store.count_pending())
                metrics.DECODE_LAG.set((now_us() - pending[0].received_us) / 1e6 if pending else 0.0)
            except Exception:  # the store is closing
                return

    def stop(self, grace: float = 5.0) -> None:
        self.health.enter_graceful_shutdown()
        if self.decode_proc and self.decode_proc.poll() is None:
            self.decode_proc.terminate()
            try:
                self.decode_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.decode_proc.kill()
        self.server.stop(grace).wait()
        if self.http:
            self.http.shutdown()
        self.store.close()
        self.stopped.set()

    def serve_forever(self) -> None:
        self.start()
        on_stop_signals(lambda: threading.Thread(target=self.stop, daemon=True).start())
        self.stopped.wait()
