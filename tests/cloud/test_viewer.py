"""The web viewer in a real headless Chromium, driven by Playwright: the newest-first frame list
updating live, deep zoom (OpenSeadragon), overlays for bits and regions, region reconstruction
by drag, and saving. The tests check what is on screen: pixels of screenshots."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request

import cv2
import grpc
import numpy as np
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
    regions = [pb.Region(x=64, y=64, width=192, height=128, kind="face", masked=True),
               pb.Region(x=448, y=256, width=192, height=192, kind="person")]
    with grpc.insecure_channel(cloud.address) as ch:
        stub = pb_grpc.IngestStub(ch)
        for seq in range(3):
            data = encoder.encode(natural_image(512, 768), 3 + seq)
            rec = pb.FrameRecord(stream_id="main", sequence=seq, capture_time_us=1_700_000_000_000_000 + seq,
                                 bitstream=data, regions=regions if seq == 2 else [])
            stub.PutFrame(rec, metadata=(("authorization", f"Bearer {token}"),), timeout=30)
    cloud.token = token
    yield cloud, f"http://127.0.0.1:{port}"
    cloud.stop()


def test_viewer_api_needs_the_operator_token(viewer):
    cloud, base = viewer
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"{base}/api/devices", timeout=10)
    assert exc.value.code == 401
    req = urllib.request.Request(f"{base}/api/devices", headers={"Authorization": f"Bearer {cloud.operator_token()}"})
    assert b"cam-web" in urllib.request.urlopen(req, timeout=10).read()


@pytest.fixture()
def page(viewer):
    pytest.importorskip("playwright")
    if CHROMIUM is None:
        pytest.skip("Chromium not installed (make system-deps installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                                                    "--disable-background-networking"])
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        yield pg
        browser.close()


def shot(page, selector: str) -> np.ndarray:
    png = page.locator(selector).screenshot()
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def open_viewer(page, viewer, overlay: str, seq: int = 2) -> None:
    cloud, base = viewer
    page.goto(f"{base}/?token={cloud.operator_token()}&device=cam-web&stream=main&seq={seq}&overlay={overlay}")
    page.wait_for_function(f"document.body.dataset.shown === '{seq}'", timeout=30_000)
    page.wait_for_timeout(1500)  # tiles drawn


def count(img: np.ndarray, rgb: tuple[int, int, int], tol: int = 40) -> int:
    return int(np.all(np.abs(img.astype(int) - rgb) <= tol, axis=2).sum())


@pytest.mark.browser
def test_frames_newest_first_deep_zoom_and_region_overlays(page, viewer):
    open_viewer(page, viewer, "regions")
    assert page.locator(".thumb figcaption").first.inner_text().startswith("#2")
    assert page.locator(".thumb").count() == 3
    assert "frame #2  768x512" in page.inner_text("#meta") and "face (masked)" in page.inner_text("#meta")
    img = shot(page, "#osd")
    assert img.std() > 20, "the frame is drawn"
    assert count(img, (255, 0, 255)) > 200, "the masked region's magenta outline"
    assert count(img, (0, 229, 255)) > 200, "the person's cyan outline"
    box = page.locator("#osd").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -600)  # zoom in: OpenSeadragon fetches the full-resolution level
    page.wait_for_timeout(1500)
    zoomed = shot(page, "#osd")
    assert np.abs(zoomed.astype(int) - img).mean() > 10


@pytest.mark.browser
def test_bits_overlay_shows_where_the_bits_went(page, viewer):
    open_viewer(page, viewer, "")
    plain = shot(page, "#osd")
    open_viewer(page, viewer, "bits")
    bits = shot(page, "#osd")
    assert np.abs(bits.astype(int) - plain).mean() > 15, "the heatmap is drawn over the frame"
    purple = lambda img: (img[:, :, 2].astype(int) - img[:, :, 1]).mean()  # noqa: E731
    assert purple(bits) - purple(plain) > 10, "the inferno colours of the heatmap"


@pytest.mark.browser
def test_region_by_drag_and_save(page, viewer, tmp_path):
    open_viewer(page, viewer, "")
    page.click("#select")
    box = page.locator("#osd").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.4)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.6, steps=5)
    page.mouse.up()
    page.wait_for_selector("#region-info", timeout=30_000)
    info = page.inner_text("#region-info")
    assert "tiles decoded" in info and int(info.split(":")[1].split()[0]) <= 4
    with page.expect_download() as download:
        page.click("#save")
    path = tmp_path / "saved.png"
    download.value.save_as(path)
    assert cv2.imread(str(path)).shape == (512, 768, 3)


@pytest.mark.browser
def test_the_list_updates_while_a_stream_runs(page, viewer, encoder):
    cloud, _ = viewer
    open_viewer(page, viewer, "")
    with grpc.insecure_channel(cloud.address) as ch:
        rec = pb.FrameRecord(stream_id="main", sequence=3, capture_time_us=1_700_000_000_000_003,
                             bitstream=encoder.encode(natural_image(512, 768), 2))
        pb_grpc.IngestStub(ch).PutFrame(rec, metadata=(("authorization", f"Bearer {cloud.token}"),), timeout=30)
    page.wait_for_function("document.body.dataset.shown === '3'", timeout=20_000)
    assert page.locator(".thumb figcaption").first.inner_text().startswith("#3")
    assert page.locator(".thumb").count() == 4


def test_bits_map_from_the_archive_api(viewer):
    cloud, _ = viewer
    with grpc.insecure_channel(cloud.address) as ch:
        key = pb.FrameKey(device_id="cam-web", stream_id="main", sequence=1)
        r = pb_grpc.ArchiveStub(ch).GetBitsMap(key, metadata=(("authorization", f"Bearer {cloud.operator_token()}"),))
    img = cv2.imdecode(np.frombuffer(r.png, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (512, 768, 3) and r.max_bits_per_pixel > r.mean_bits_per_pixel > 0


@pytest.mark.parametrize(
    "query, status, says",
    [
        ("/api/frame.png?device=cam-web&stream=main", 400, "seq is required"),
        ("/api/frame.png?device=cam-web&stream=main&seq=abc", 400, "seq must be a whole number"),
        ("/api/frame.png?device=cam-web&stream=main&seq=99999999999999999999999", 400, "seq must be 0.."),
        ("/api/frame.png?device=cam-web&stream=main&seq=9223372036854775807", 404, "no such frame"),
        ("/api/frame.png?device=cam-web&stream=main&seq=0&x=0&y=0&w=100000000&h=100000000", 400, "w must be 0..768"),
        ("/api/frame.png?device=cam-web&stream=main&seq=0&x=700&y=0&w=100&h=100", 400, "not inside the 768x512"),
        ("/api/frame.png?device=cam-web&stream=main&seq=0&w=-10&h=10", 400, "w must be 0..768"),
        ("/api/frame.png?device=cam-web&stream=main&seq=0&downscale=3", 400, "downscale must be one of"),
        ("/api/bits.png?device=cam-web", 400, "seq is required"),
        ("/api/frames?device=cam-web&limit=0", 400, "limit must be 1..1000"),
    ],
)
def test_malformed_viewer_requests_get_a_status_and_a_reason(viewer, query, status, says):
    cloud, base = viewer
    req = urllib.request.Request(base + query, headers={"Authorization": f"Bearer {cloud.operator_token()}"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == status
    assert says in json.loads(exc.value.read())["error"]
