"""Quality maps (format version 3) and where-the-bits-go maps."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from lsic.codec import quality_map as qm
from lsic.codec.bits_map import bits_per_pixel
from lsic.codec.bitstream import FLAG_QUALITY_MAP, MAP_BLOCK, parse
from lsic.codec.errors import BitstreamError, OperatingPointError
from lsic.codec.metrics import psnr

from ..conftest import natural_image


@pytest.fixture(scope="module")
def image():
    return natural_image(320, 448)


def test_a_uniform_map_codes_exactly_what_one_quality_does(encoder, image):
    plain = parse(encoder.encode(image, 5))
    mapped_bytes = encoder.encode(image, 5, quality_map=qm.from_boxes(448, 320, 5, [], 10))
    mapped = parse(mapped_bytes)
    assert not plain.header.flags & FLAG_QUALITY_MAP and plain.header.quality_map is None
    assert mapped.header.flags & FLAG_QUALITY_MAP and mapped.header.two_pass
    assert mapped.header.quality_map.shape == (5, 7)
    n = len(plain.kinds)
    assert [plain.tile_payload(i) for i in range(n)] == [mapped.tile_payload(i) for i in range(n)]


def test_a_region_of_interest_is_sharper_than_the_rest(encoder, decoder, image):
    box = (128, 64, 192, 128)
    x, y, w, h = box
    data = encoder.encode(image, 2, quality_map=qm.from_boxes(448, 320, 2, [(box, 5)], 10))
    flat = encoder.encode(image, 2)
    rec, ref = decoder.decode(data).rgb, decoder.decode(flat).rgb
    inside = (slice(y, y + h), slice(x, x + w))
    assert psnr(rec[inside], image[inside]) > psnr(ref[inside], image[inside]) + 2.0
    assert len(data) > len(flat)
    region = decoder.decode(data, region=box).rgb  # region decoding reads the map as well
    assert np.abs(region.astype(int) - rec[inside]).max() <= 1


def test_fractional_qualities_interpolate_the_gains(encoder, image):
    sizes = [len(encoder.encode(image, 4, quality_map=qm.from_boxes(448, 320, q, [], 10))) for q in (4, 4.25, 4.5, 4.75, 5)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 5


def test_damaged_or_hostile_maps_are_refused(encoder, decoder, image):
    good = encoder.encode(image, 4, quality_map=qm.from_boxes(448, 320, 4, [((0, 0, 64, 64), 2)], 10))
    with pytest.raises(OperatingPointError):
        encoder.encode(image, 4, quality_map=np.full((5, 7), 200, np.uint8))
    with pytest.raises(OperatingPointError):
        encoder.encode(image, 4, quality_map=np.ones((2, 2), np.uint8))
    # a map claiming far more cells than the frame has, inflated only up to what it needs
    header = parse(good).header
    id_end = 50 + len(header.model_id)
    bomb = zlib.compress(bytes(10_000_000))
    forged = good[:id_end] + struct.pack("<I", len(bomb)) + bomb
    with pytest.raises(BitstreamError):
        parse(forged)


def test_bits_map_adds_up_to_the_file(encoder, image):
    data = encoder.encode(image, 5)
    bpp = bits_per_pixel(data)
    assert bpp.shape == (320 // 16, 448 // 16)
    file_bpp = 8 * len(data) / (320 * 448)
    assert 0.9 * file_bpp < bpp.mean() <= file_bpp, "the tables' cost is the file, less headers and padding"
    refs = bits_per_pixel(encoder.encode(image, 5, unchanged={0}))
    assert refs[: 256 // 16, : 256 // 16].max() == 0, "a reference tile costs nothing"


def test_cli_roi_and_bits_map(tmp_path):
    import cv2

    src = tmp_path / "in.png"
    cv2.imwrite(str(src), cv2.cvtColor(natural_image(256, 384), cv2.COLOR_RGB2BGR))
    lsic = [sys.executable, "-m", "lsic.codec.cli"]
    out = tmp_path / "roi.lsic"
    subprocess.run([*lsic, "encode", str(src), "-o", str(out), "-q", "2", "--roi", "128,64,128,128:4.5"], check=True,
                   capture_output=True)
    info = json.loads(subprocess.run([*lsic, "info", str(out), "--bits-map", str(tmp_path / "bits.png")],
                                     check=True, capture_output=True, text=True).stdout)
    assert info["format_version"] == 4 and info["quality_map"][1][2] == 6.5 and info["quality_map"][0][0] == 2
    assert cv2.imread(str(tmp_path / "bits.png")).shape == (256, 384, 3)
    bad = subprocess.run([*lsic, "encode", str(src), "--roi", "1,2,3,4:99"], capture_output=True, text=True)
    assert bad.returncode == 2 and "steps must be" in bad.stderr
    assert MAP_BLOCK == 64
