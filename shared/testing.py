"""Real servers on loopback for the demos, tests and benchmarks: the cloud service as its own
process, a throw-away PostgreSQL cluster (Debian's postgresql) and an S3-compatible server (moto)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cloud_python() -> str:
    """The Python of the cloud's install (it can decode; an edge install cannot)."""
    exe = os.environ.get("LSIC_CLOUD_BIN")
    return str(Path(exe).parent / "python") if exe else sys.executable


def cloud_command() -> list[str]:
    """The service command: $LSIC_CLOUD_BIN (e.g. the full install's lsic-cloud) or this Python."""
    exe = os.environ.get("LSIC_CLOUD_BIN")
    if exe:
        return [exe]
    found = shutil.which("lsic-cloud", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "lsic.cloud.cli"]


def tls_credentials(ca: Path, client_dir: Path | None = None) -> grpc.ChannelCredentials:
    """Channel credentials trusting `ca`; with client_dir, its client.crt/client.key for mTLS."""
    key = (client_dir / "client.key").read_bytes() if client_dir else None
    cert = (client_dir / "client.crt").read_bytes() if client_dir else None
    return grpc.ssl_channel_credentials(root_certificates=ca.read_bytes(), private_key=key, certificate_chain=cert)


def wait_serving_tls(address: str, ca: Path, client_dir: Path | None = None, timeout: float = 60.0) -> None:
    wait_serving(address, timeout, channel=grpc.secure_channel(address, tls_credentials(ca, client_dir)))


def wait_serving(
    address: str, timeout: float = 60.0, proc: subprocess.Popen | None = None, channel: grpc.Channel | None = None
) -> None:
    deadline = time.monotonic() + timeout
    with channel or grpc.insecure_channel(address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"cloud service exited with {proc.returncode}")
            try:
                r = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"cloud service at {address} not serving after {timeout}s")


class CloudProcess:
    """`lsic-cloud serve` on a loopback port (plaintext unless tls), as a separate process."""

    def __init__(
        self,
        data: Path,
        port: int | None = None,
        extra: list[str] | None = None,
        log: Path | None = None,
        tls: bool = False,
    ) -> None:
        self.data, self.port = data, port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.extra = extra or []
        self.tls = tls
        self.log_path = log or data.parent / f"cloud-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0, ready=None) -> CloudProcess:
        mode = [] if self.tls else ["--insecure"]
        cmd = [*cloud_command(), "serve", *mode, "--listen", self.address, "--data", str(self.data), *self.extra]
        self.data.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if ready is not None:
            ready()
        else:
            wait_serving(self.address, timeout, self.proc)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def decode_worker_pid(self) -> int | None:
        """The pid of the service's decode worker (a child of any of its threads), None if none runs."""
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                try:
                    if b"decode" in Path(f"/proc/{child}/cmdline").read_bytes():
                        return int(child)
                except OSError:  # it exited meanwhile
                    continue
        return None

    def operator_token(self) -> str:
        return (self.data / "operator.token").read_text().strip()

    def cli(self, *args: str, ca: Path | None = None, client: Path | None = None) -> str:
        security = ["--ca", str(ca)] if ca else ["--insecure"]
        if client:
            security += ["--client-cert", str(client / "client.crt"), "--client-key", str(client / "client.key")]
        cmd = [*cloud_command(), *args, "--server", self.address, "--data", str(self.data), *security]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout.strip()

    def add_device(self, device_id: str, ca: Path | None = None, client: Path | None = None) -> str:
        return self.cli("device", "add", device_id, ca=ca, client=client)

    def _archive(self, call: str, request, timeout: float = 60.0):
        from lsic.v1 import lsic_pb2_grpc as pb_grpc

        with grpc.insecure_channel(self.address) as ch:
            md = (("authorization", f"Bearer {self.operator_token()}"),)
            return getattr(pb_grpc.ArchiveStub(ch), call)(request, metadata=md, timeout=timeout)

    def wait_decoded(self, device_id: str, stream_id: str, count: int, timeout: float = 300.0) -> list:
        """The stream's first `count` frames (FrameInfo) once the decode worker has finished them."""
        from lsic.v1 import lsic_pb2 as pb

        deadline = time.monotonic() + timeout
        while True:
            req = pb.ListFramesRequest(device_id=device_id, stream_id=stream_id, limit=count)
            frames = list(self._archive("ListFrames", req).frames)
            if len(frames) >= count and all(f.decode_state != "waiting" for f in frames):
                return frames
            if time.monotonic() > deadline:
                raise TimeoutError(f"{device_id}/{stream_id}: {len(frames)} frames, not all {count} decoded")
            time.sleep(0.5)

    def reconstruct(self, device_id: str, stream_id: str, seq: int) -> np.ndarray:
        """A frame as the archive API reconstructs it (RGB)."""
        import cv2

        from lsic.v1 import lsic_pb2 as pb

        key = pb.FrameKey(device_id=device_id, stream_id=stream_id, sequence=seq)
        png = self._archive("Reconstruct", pb.ReconstructRequest(key=key), timeout=300).png
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    def __enter__(self) -> CloudProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _pg_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class PostgresServer:
    """A throw-away PostgreSQL cluster (Debian's postgresql package) on a loopback port."""

    def __init__(self) -> None:
        bindir = _pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="lsic-pg-"))
        os.chmod(self.root, 0o777)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> PostgresServer:
        data = self.root / "data"
        subprocess.run(
            _as_postgres([str(self.bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "lsic"]),
            check=True,
            capture_output=True,
        )
        cmd = [
            str(self.bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(self.port),
            "-k",
            str(self.root),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=on",
        ]
        self.proc = subprocess.Popen(
            _as_postgres(cmd), stdout=subprocess.DEVNULL, stderr=(self.root / "log").open("wb")
        )
        import psycopg

        deadline = time.time() + 30
        while True:
            try:
                psycopg.connect(self.dsn, connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError((self.root / "log").read_text()[-2000:]) from None
                time.sleep(0.2)

    @property
    def dsn(self) -> str:
        return f"postgresql://lsic@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        shutil.rmtree(self.root, ignore_errors=True)


class S3Server:
    """moto's S3-compatible server on a loopback port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
        self.proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        import urllib.request

        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)
                return self
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def fill_disk(path: Path) -> None:
    """Write zeros into `path` until its file system has no room left (a real full disk for tests
    and the chaos benchmark; free it again by deleting the file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        for block in (1 << 20, 4096, 512):
            try:
                while True:
                    os.write(fd, b"\0" * block)
            except OSError:
                pass
    finally:
        os.close(fd)
