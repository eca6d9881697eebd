"""The web viewer in a real headless Chromium: device list, thumbnails from the pyramid, the
frame view, and a region reconstructed from only the tiles it touches."""

from __future__ import annotations

import shutil
import subprocess
import urllib.error
import urllib.request

import grpc
import pytest

from lsic.testing import CloudProcess, free_port
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc

from ..conftest import natural_image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def viewer(tmp_path_factory, encoder):
    port = free_port()
    cloud = CloudProcess(
        tmp_path_factory.mktemp("web") / "data", extra=["--http-port", str(port), "--decode-backend", "onnx"]
    ).start()
    token = cloud.add_device("cam-web")
    with grpc.insecure_channel(cloud.address) as ch:
        stub = pb_grpc.IngestStub(ch)
        for seq in range(3):
            data = encoder.encode(natural_image(512, 768), 3 + seq)
            stub.PutFrame(
                pb.FrameRecord(
                    stream_id="main", sequence=seq, capture_time_us=1_700_000_000_000_000 + seq, bitstream=data
                ),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=30,
            )
    yield cloud, f"http://127.0.0.1:{port}"
    cloud.stop()


def test_viewer_api_needs_the_operator_token(viewer):
    cloud, base = viewer
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"{base}/api/devices", timeout=10)
    assert exc.value.code == 401
    req = urllib.request.Request(f"{base}/api/devices", headers={"Authorization": f"Bearer {cloud.operator_token()}"})
    assert b"cam-web" in urllib.request.urlopen(req, timeout=10).read()


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (make system-deps installs it)")
def test_viewer_in_headless_chromium(viewer, tmp_path):
    cloud, base = viewer
    url = f"{base}/?token={cloud.operator_token()}&device=cam-web&stream=main&region=300,100,300,200"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=20000",
    ]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert "cam-web (3)" in dom
    assert dom.count('class="thumb"') == 3
    assert "frame #0" in dom and "768x512" in dom
    assert "region 300,100 300x200: 4 tiles decoded" in dom
    shot = tmp_path / "viewer.png"
    subprocess.run(
        [CHROMIUM, *flags, "--window-size=1200,900", f"--screenshot={shot}", url], capture_output=True, timeout=120
    )
    assert shot.stat().st_size > 10_000
