"""Regions of interest and privacy masks on the edge: masks leave no detail, and nothing
masked ever reaches the encoder or the cloud."""

from __future__ import annotations

import cv2
import grpc
import numpy as np
import pytest

from lsic.codec.errors import UsageError
from lsic.edge.regions import InterestFinder, PrivacyMasker, parse_boxes, parse_polygons
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc

from ..conftest import natural_image
from .conftest import EdgeRun


def masked_psnr(a, b, mask):
    mse = np.mean((a.astype(float) - b.astype(float))[mask] ** 2)
    return 10 * np.log10(255**2 / mse)


def test_a_face_is_found_and_obscured():
    from skimage import data

    img = data.astronaut()
    out, regions = PrivacyMasker({"faces"}).apply(img)
    assert [r.kind for r in regions] == ["face"]
    x, y, w, h = regions[0].box
    mask = np.zeros(img.shape[:2], bool)
    mask[y : y + h, x : x + w] = True
    assert masked_psnr(out, img, mask) <= 20.0, "no recoverable detail"
    assert np.array_equal(out[~mask], img[~mask]), "nothing else touched"


@pytest.mark.parametrize("method", ["pixelate", "fill"])
def test_polygons_are_obscured(method):
    img = natural_image(240, 320)
    (poly,) = parse_polygons("60,40 200,50 180,200 70,180")
    out, regions = PrivacyMasker({"polygons"}, [poly], method).apply(img)
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(mask, [poly], 1)
    assert masked_psnr(out, img, mask.astype(bool)) <= 20.0
    assert regions[0].kind == "polygon"


def test_settings_are_checked():
    assert parse_boxes("0,0,64,64:2.5;10,10,20,20") == [((0, 0, 64, 64), 2.5), ((10, 10, 20, 20), 3.0)]
    for bad in ("1,2,3", "a,b,c,d"):
        with pytest.raises(UsageError):
            parse_boxes(bad)
    with pytest.raises(UsageError):
        parse_polygons("1,2 3,4")


def test_motion_regions_follow_what_moved():
    finder = InterestFinder({"motion"})
    img = natural_image(192, 256)
    assert finder.find(img) == []
    moved = img.copy()
    moved[64:128, 128:192] = 255 - moved[64:128, 128:192]
    assert [r.box for r, _ in finder.find(moved)] == [(128, 64, 64, 64)]


def test_masked_pixels_never_reach_the_cloud(cloud, tmp_path):
    """The agent masks before it encodes: the archive's reconstruction inside the polygon is as
    far from the original as the mask itself, and the frame reports what was masked."""
    token = cloud.add_device("cam-mask")
    folder = tmp_path / "frames"
    folder.mkdir()
    img = natural_image(256, 384)
    cv2.imwrite(str(folder / "a.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    run = EdgeRun(cloud, token, "cam-mask", tmp_path / "spool", "--source", str(folder), "--max-frames", "1",
                  "--mask", "polygons", "--mask-polygons", "100,50 300,60 280,220 110,200", "--timeout", "60")
    code, _ = run.wait(120)
    assert code == 0, run.log.read_text()[-2000:]
    with grpc.insecure_channel(cloud.address) as ch:
        md = (("authorization", f"Bearer {cloud.operator_token()}"),)
        archive = pb_grpc.ArchiveStub(ch)
        key = pb.FrameKey(device_id="cam-mask", stream_id="main", sequence=0)
        info = archive.GetFrame(key, metadata=md)
        png = archive.Reconstruct(pb.ReconstructRequest(key=key), metadata=md, timeout=60).png
    rec = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.array([[100, 50], [300, 60], [280, 220], [110, 200]], np.int32)], 1)
    assert masked_psnr(rec, img, mask.astype(bool)) <= 20.0
    assert masked_psnr(rec, img, ~mask.astype(bool)) > 24.0, "the rest is coded as usual"
    assert [(r.kind, r.masked) for r in info.regions] == [("polygon", True)]


def test_rate_control_holds_its_budget_with_people_raised(cloud, video, tmp_path):
    token = cloud.add_device("cam-roi")
    run = EdgeRun(cloud, token, "cam-roi", tmp_path / "spool", "--source", str(video), "--max-frames", "40",
                  "--target-kbps", "300", "--roi", "people", "--roi-steps", "3", "--timeout", "120")
    code, summary = run.wait(200)
    assert code == 0, run.log.read_text()[-2000:]
    assert 0 < summary["achieved_kbps"] <= 300 * 1.1
    with grpc.insecure_channel(cloud.address) as ch:
        md = (("authorization", f"Bearer {cloud.operator_token()}"),)
        frames = pb_grpc.ArchiveStub(ch).ListFrames(pb.ListFramesRequest(device_id="cam-roi"), metadata=md).frames
    assert sum(r.kind == "person" for f in frames for r in f.regions) >= 20, "people found and reported"
