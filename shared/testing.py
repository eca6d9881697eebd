"""Running a real cloud service process on loopback: used by the demo, tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cloud_command() -> list[str]:
    """The service command: $LSIC_CLOUD_BIN (e.g. the full install's lsic-cloud) or this Python."""
    exe = os.environ.get("LSIC_CLOUD_BIN")
    if exe:
        return [exe]
    found = shutil.which("lsic-cloud", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "lsic.cloud.cli"]


def wait_serving(address: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as ch:
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
    """`lsic-cloud serve --insecure` on a loopback port, as a separate process."""

    def __init__(
        self, data: Path, port: int | None = None, extra: list[str] | None = None, log: Path | None = None
    ) -> None:
        self.data, self.port = data, port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.extra = extra or []
        self.log_path = log or data.parent / f"cloud-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> CloudProcess:
        cmd = [*cloud_command(), "serve", "--insecure", "--listen", self.address, "--data", str(self.data), *self.extra]
        self.data.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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

    def operator_token(self) -> str:
        return (self.data / "operator.token").read_text().strip()

    def cli(self, *args: str) -> str:
        cmd = [*cloud_command(), *args, "--server", self.address, "--data", str(self.data), "--insecure"]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout.strip()

    def add_device(self, device_id: str) -> str:
        return self.cli("device", "add", device_id)

    def __enter__(self) -> CloudProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
