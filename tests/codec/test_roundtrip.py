"""Encode/decode round trips: geometry for odd sizes, quality ordering, regions, references."""

from __future__ import annotations

import numpy as np
import pytest

from lsic.codec.bitstream import parse
from lsic.codec.errors import BitstreamError, InputImageError, OperatingPointError, RegionError
from lsic.codec.metrics import psnr

from ..conftest import natural_image


@pytest.mark.parametrize("h,w", [(1, 1), (1, 4097), (63, 65), (64, 64), (767, 513)])
def test_sizes_round_trip_with_the_right_geometry(encoder, decoder, h, w):
    img = natural_image(h, w)
    data = encoder.encode(img, 4)
    info = parse(data).info()
    assert (info["width"], info["height"]) == (w, h)
    out = decoder.decode(data).rgb
    assert out.shape == (h, w, 3) and out.dtype == np.uint8


@pytest.mark.slow
def test_4096_square_round_trips(encoder, decoder):
    img = np.tile(natural_image(512, 512), (8, 8, 1))
    data = encoder.encode(img, 2)
    out = decoder.decode(data).rgb
    assert out.shape == (4096, 4096, 3)
    assert psnr(out, img) > 18


def test_higher_quality_costs_more_bits_and_gives_more_psnr(encoder, decoder):
    img = natural_image(256, 384)
    sizes, psnrs = [], []
    for q in (1, 4, 8):
        data = encoder.encode(img, q)
        sizes.append(len(data))
        psnrs.append(psnr(decoder.decode(data).rgb, img))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert psnrs[-1] > psnrs[0]


def test_region_decode_touches_only_needed_tiles_and_matches_full(encoder, decoder):
    img = natural_image(512, 768)
    data = encoder.encode(img, 5)
    full = decoder.decode(data)
    part = decoder.decode(data, region=(300, 100, 100, 60))
    assert len(part.tiles) == 1 and len(full.tiles) == 6
    assert part.rgb.shape == (60, 100, 3)
    # Identical pixels away from seams (seam smoothing needs both neighbours).
    assert np.array_equal(part.rgb[:, :], full.rgb[100:160, 300:400])
    with pytest.raises(RegionError):
        decoder.decode(data, region=(700, 0, 100, 10))


def test_reference_tiles_reuse_the_previous_frame(encoder, decoder):
    img = natural_image(256, 512)
    first = decoder.decode(encoder.encode(img, 4))
    data = encoder.encode(img, 4, unchanged={1})
    assert parse(data).kinds == [0, 1]
    with pytest.raises(BitstreamError, match="previous frame"):
        decoder.decode(data)
    second = decoder.decode(data, previous=first.tiles)
    # the reused tile is the previous frame's, pixel for pixel (away from the smoothed seam)
    assert np.array_equal(second.rgb[:, 256 + 5 :], first.rgb[:, 256 + 5 :])


def test_bad_inputs_get_specific_errors(encoder):
    with pytest.raises(OperatingPointError):
        encoder.encode(natural_image(64, 64), 99)
    with pytest.raises(InputImageError, match="uint16"):
        encoder.encode(np.zeros((8, 8, 3), np.uint16), 1)
    with pytest.raises(InputImageError, match="empty"):
        encoder.encode(np.zeros((0, 8, 3), np.uint8), 1)
    with pytest.raises(InputImageError, match="tile size"):
        encoder.encode(natural_image(64, 64), 1, tile_size=100)


def test_half_precision_synthesis_matches_fp32_quality(encoder):
    """The cloud decodes in fp16 on GPUs by default; its quality must match fp32's."""
    from lsic.codec.decoder import Decoder

    img = natural_image(256, 256)
    data = encoder.encode(img, 8)
    fp32 = Decoder(backend="torch", device="cpu", half=False).decode(data).rgb
    fp16 = Decoder(backend="torch", device="cpu", half=True).decode(data).rgb
    assert abs(psnr(fp16, img) - psnr(fp32, img)) < 0.02
    assert np.abs(fp16.astype(np.int16) - fp32).max() <= 3


def test_a_cpu_decodes_with_onnx_runtime_in_small_batches_and_a_gpu_with_torch(encoder):
    """On a CPU, 'auto' runs the synthesis on ONNX Runtime (the faster there, at 4 tiles a call);
    torch is kept for a GPU. Both give the same picture."""
    pytest.importorskip("torch")
    from lsic.codec.decoder import DecodeJob, Decoder
    from lsic.codec.package import load_package
    from lsic.codec.synthesis import make_synthesis, synthesis_backend

    pkg = load_package("default")
    cpu = make_synthesis(pkg, "auto", "cpu")
    assert (cpu.name, cpu.batch) == ("onnx", 4)
    assert make_synthesis(pkg, "torch", "cpu").batch == 4
    assert synthesis_backend("auto", "cuda") == "torch", "a GPU named is a GPU used"
    assert synthesis_backend("onnx", "cuda") == "onnx", "a backend named is the backend used"

    img = natural_image(512, 768)
    data = [encoder.encode(img, q) for q in (3, 6)]
    auto = Decoder(device="cpu").decode_many([DecodeJob(d) for d in data])
    torch_rgb = [Decoder(backend="torch", device="cpu").decode(d).rgb for d in data]
    for frame, ref in zip(auto, torch_rgb, strict=True):
        assert frame.rgb.shape == img.shape and psnr(frame.rgb, ref) > 45
