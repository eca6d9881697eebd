from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from lsic.testing import CloudProcess
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc

EDGE = [sys.executable, "-m", "lsic.edge.cli", "run"]


class EdgeRun:
    """An `lsic-edge run` process against a cloud on loopback."""

    def __init__(self, cloud: CloudProcess, token: str, device: str, spool: Path, *args: str) -> None:
        cmd = [
            *EDGE,
            "--server",
            cloud.address,
            "--device-id",
            device,
            "--token",
            token,
            "--insecure",
            "--spool",
            str(spool),
            "--status-every",
            "1",
            *args,
        ]
        self.log = spool.parent / f"edge-{time.monotonic_ns()}.log"
        spool.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self.log.open("wb"), text=True, start_new_session=True
        )

    def wait(self, timeout: float = 300) -> tuple[int, dict]:
        out, _ = self.proc.communicate(timeout=timeout)
        summary = {}
        for line in out.splitlines():
            if line.startswith('{"summary"'):
                summary = json.loads(line)["summary"]
        return self.proc.returncode, summary

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def archive_frames(cloud: CloudProcess, device: str, ca: Path | None = None, client: Path | None = None) -> list:
    from lsic.testing import tls_credentials

    channel = (
        grpc.secure_channel(cloud.address, tls_credentials(ca, client)) if ca else grpc.insecure_channel(cloud.address)
    )
    with channel as ch:
        md = (("authorization", f"Bearer {cloud.operator_token()}"),)
        return list(
            pb_grpc.ArchiveStub(ch)
            .ListFrames(pb.ListFramesRequest(device_id=device, limit=10000), metadata=md, timeout=30)
            .frames
        )


def wait_for_frames(cloud: CloudProcess, device: str, n: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if len(archive_frames(cloud, device)) >= n:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{n} frames not stored within {timeout}s")


@pytest.fixture()
def cloud(tmp_path):
    c = CloudProcess(tmp_path / "cloud", extra=["--decode-backend", "onnx"]).start()
    yield c
    c.stop()
