"""TLS between edge and cloud: the server certificate is verified, client certificates are
optional (mutual TLS), and a server the agent cannot verify gets no frames."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lsic.testing import CloudProcess, cloud_command, free_port, wait_serving_tls

from .conftest import archive_frames


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other-ca"):
        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN=LSIC test {ca}",
            "-keyout",
            str(d / f"{ca}.key"),
            "-out",
            str(d / f"{ca}.crt"),
        )
    ext = d / "san.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, ca in (("server", "ca"), ("client", "ca")):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            str(d / f"{name}.key"),
            "-out",
            str(d / f"{name}.csr"),
        )
        openssl(
            "x509",
            "-req",
            "-in",
            str(d / f"{name}.csr"),
            "-CA",
            str(d / f"{ca}.crt"),
            "-CAkey",
            str(d / f"{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(ext),
            "-out",
            str(d / f"{name}.crt"),
        )
    return d


def start_tls_cloud(tmp_path: Path, pki: Path, mutual: bool) -> CloudProcess:
    extra = [
        "--tls-cert",
        str(pki / "server.crt"),
        "--tls-key",
        str(pki / "server.key"),
        "--decode-backend",
        "onnx",
        "--no-decode",
    ]
    if mutual:
        extra += ["--client-ca", str(pki / "ca.crt")]
    cloud = CloudProcess(tmp_path / "cloud", port=free_port(), extra=extra, tls=True)
    cloud.start(ready=lambda: wait_serving_tls(cloud.address, pki / "ca.crt", pki if mutual else None))
    return cloud


def edge(cloud: CloudProcess, token: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "lsic.edge.cli",
        "run",
        "--source",
        "builtin",
        "--server",
        cloud.address,
        "--device-id",
        "cam-tls",
        "--token",
        token,
        "--spool",
        str(tmp_path / "spool"),
        "--max-frames",
        "3",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("mutual", [False, True])
def test_frames_flow_over_verified_tls(tmp_path, pki, mutual):
    cloud = start_tls_cloud(tmp_path, pki, mutual)
    try:
        token = cloud.add_device("cam-tls", ca=pki / "ca.crt", client=pki if mutual else None)
        client = ["--client-cert", str(pki / "client.crt"), "--client-key", str(pki / "client.key")] if mutual else []
        r = edge(cloud, token, tmp_path, "--ca", str(pki / "ca.crt"), "--timeout", "60", *client)
        assert r.returncode == 0, r.stderr[-2000:]
        assert len(archive_frames(cloud, "cam-tls", ca=pki / "ca.crt", client=pki if mutual else None)) == 3
    finally:
        cloud.stop()


def test_unverifiable_server_gets_nothing(tmp_path, pki):
    cloud = start_tls_cloud(tmp_path, pki, mutual=False)
    try:
        token = cloud.add_device("cam-tls", ca=pki / "ca.crt")
        r = edge(cloud, token, tmp_path, "--ca", str(pki / "other-ca.crt"), "--timeout", "8")
        assert r.returncode == 1 and '"acknowledged": 0' in r.stdout
        assert "link down" in r.stderr
    finally:
        cloud.stop()


def test_insecure_refused_for_a_remote_server(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "lsic.edge.cli",
        "run",
        "--server",
        "192.0.2.10:50051",
        "--device-id",
        "x",
        "--token",
        "x:y",
        "--insecure",
        "--spool",
        str(tmp_path / "spool"),
        "--max-frames",
        "1",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "loopback" in (r.stderr + r.stdout)


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--ca", "{d}/missing.crt"], "--ca {d}/missing.crt: No such file or directory"),
        (["--ca", "{d}/server.csr.txt"], "not a PEM file"),
        (["--ca", "{d}/ca.crt", "--client-cert", "{d}/client.crt"], "--client-cert and --client-key go together"),
    ],
)
def test_tls_files_that_cannot_work_are_refused_before_anything_is_captured(tmp_path, pki, flags, says):
    """Not a sender thread that dies (or gRPC aborting the process) while frames pile up."""
    (pki / "server.csr.txt").write_text("not a certificate\n")
    cmd = [sys.executable, "-m", "lsic.edge.cli", "run", "--server", "192.0.2.10:50051", "--device-id", "x",
           "--token", "x:y", "--spool", str(tmp_path / "spool"), *(f.format(d=pki) for f in flags)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and says.format(d=pki) in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "spool").exists() or not list((tmp_path / "spool").rglob("*.rec"))


def test_a_service_given_a_file_that_is_not_a_certificate_says_which(tmp_path, pki):
    (pki / "server.csr.txt").write_text("not a certificate\n")
    serve = subprocess.run(
        [*cloud_command(), "serve", "--data", str(tmp_path / "d"), "--listen", f"127.0.0.1:{free_port()}",
         "--tls-cert", str(pki / "server.csr.txt"), "--tls-key", str(pki / "server.key")],
        capture_output=True, text=True, timeout=60,
    )
    assert serve.returncode == 25 and "--tls-cert" in serve.stderr and "not a PEM file" in serve.stderr
