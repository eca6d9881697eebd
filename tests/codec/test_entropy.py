"""The deterministic entropy path: integer tables, rANS with escapes, integer hyper-synthesis,
and bit-exact agreement between encoder and decoders on 200+ tiles."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lsic.codec.entropy.coder import LatentCodec
from lsic.codec.entropy.context import anchor_mask, run_int_context
from lsic.codec.entropy.int_hyper import run_int_hyper
from lsic.codec.entropy.latents import decode_tile, encode_tile, quantize
from lsic.codec.entropy.tables import TOTAL, quantize_pmf
from lsic.codec.package import STRIDE, load_package
from lsic.codec.tiling import Tile, cut, padded_size

from ..conftest import REPO, natural_image


def test_quantized_tables_sum_to_total_and_keep_every_symbol():
    pmf = np.array([1e-12, 0.2, 0.5, 0.3, 0.0])
    f = quantize_pmf(pmf, 1e-9)
    assert f.sum() == TOTAL and f.min() >= 1 and len(f) == 6
    pkg = load_package("default")
    a = pkg.arrays
    for freqs, lengths in ((a["y_freqs"], a["y_lengths"]), (a["z_freqs"], a["z_lengths"])):
        for row, n in zip(freqs, lengths, strict=True):
            assert row[:n].sum() == TOTAL and row[:n].min() >= 1


def test_coder_round_trip_with_escapes(rng):
    pkg = load_package("default")
    codec: LatentCodec = pkg.latent_codec
    n, m = pkg.architecture["N"], pkg.architecture["M"]
    z = rng.integers(-3, 4, size=(n, 2, 3))
    z[0, 0, 0] = 900_000  # far outside any table: escaped
    y = rng.integers(-5, 6, size=(m, 8, 12))
    y[1, 2, 3] = -1_000_000
    idx = rng.integers(0, 64, size=y.shape).astype(np.int32)
    payload = codec.encode(z, [(y, idx)])
    dec = codec.decoder(payload)
    assert np.array_equal(dec.decode_z(z.shape), z)
    assert np.array_equal(dec.decode_y(idx), y)
    dec.finish()


@pytest.mark.parametrize("model", ["default", "hq", "lite"])
def test_integer_hyper_synthesis_matches_the_export_machine_bit_for_bit(model):
    pkg = load_package(model)
    with np.load(pkg.path("selftest.npz")) as ref:
        out = run_int_hyper(ref["z_fx"], pkg.hyper_layers)
        assert out.dtype == np.int64
        assert np.array_equal(out, ref["output"])
        if pkg.context_layers:  # the checkerboard context's integer network, too
            refined = run_int_context(out, ref["ctx_anchors_fx"], pkg.context_layers)
            assert np.array_equal(refined, ref["ctx_output"])
            anchors = anchor_mask(*out.shape[1:])
            assert np.array_equal(refined[:, anchors], out[:, anchors]), "anchors keep the hyperprior's tables"


def tile_corpus(kodak_files: list[Path]) -> list[np.ndarray]:
    """200+ tiles: Kodak crops plus extremes (flat, noise, text, saturated, tiny, odd sizes)."""
    import cv2

    rng = np.random.default_rng(7)
    tiles = []
    for f in kodak_files:
        img = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
        for _ in range(8):
            y, x = rng.integers(0, img.shape[0] - 128), rng.integers(0, img.shape[1] - 128)
            tiles.append(img[y : y + 128, x : x + 128])
    for value in (0, 128, 255):
        tiles.append(np.full((64, 64, 3), value, np.uint8))
    for size in ((64, 64), (128, 192), (1, 1), (3, 70), (65, 63), (200, 17)):
        tiles.append(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8))
    for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 0, 255), (0, 255, 255)):
        t = np.zeros((64, 128, 3), np.uint8)
        t[:, ::2] = color
        tiles.append(t)
    text = np.full((128, 256, 3), 255, np.uint8)
    cv2.putText(text, "LSIC 0123 edge/cloud", (4, 70), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    tiles.append(text)
    tiles.append(natural_image(77, 131))
    return tiles


@pytest.fixture(scope="module")
def corpus_streams(kodak, encoder):
    streams = []
    for t in tile_corpus(kodak):
        streams.append(encoder.encode(t, 1 + len(streams) % 8, tile_size=256))
    return streams


def symbols_digest(streams: list[bytes]) -> str:
    from lsic.codec.decoder import Decoder

    d = Decoder(backend="onnx")
    h = hashlib.sha256()
    for s in streams:
        for sym in d.symbols(s):
            for arr in (sym.z, sym.y, sym.index, sym.means_fx):
                h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
    return h.hexdigest()


def test_encoder_and_decoder_agree_on_every_symbol_of_200_tiles(kodak, corpus_streams, encoder):
    """Integers the encoder sent == integers the decoder recovers, for every symbol of every tile."""
    from lsic.codec.decoder import Decoder

    tiles = tile_corpus(kodak)
    assert len(corpus_streams) == len(tiles) >= 200
    decoder = Decoder(backend="onnx")
    for i, (img, data) in enumerate(zip(tiles, corpus_streams, strict=True)):
        got = decoder.symbols(data)
        assert len(got) == 1
        tile = Tile(0, 0, 0, img.shape[1], img.shape[0])
        ((y, z),) = encoder.analyse([cut(img, tile, STRIDE)], i % 8)
        sent = quantize(encoder.pkg, y, z)
        for a, b in (
            (sent.z, got[0].z),
            (sent.y, got[0].y),
            (sent.index, got[0].index),
            (sent.means_fx, got[0].means_fx),
        ):
            assert np.array_equal(a, b), f"tile {i}"


@pytest.mark.torch
def test_torch_free_decoder_process_agrees_with_this_process(corpus_streams, tmp_path):
    """Symbols decoded here (torch installed) and in the edge-only environment agree."""
    edge_python = os.environ.get("LSIC_EDGE_PYTHON") or str(REPO / ".venv-edge" / "bin" / "python")
    if not Path(edge_python).exists():
        pytest.skip("edge-only environment not built (make setup-edge)")
    for i, s in enumerate(corpus_streams):
        (tmp_path / f"{i:04d}.lsic").write_bytes(s)
    code = (
        f"import sys, pathlib; sys.path.insert(0, {str(REPO)!r});"
        "from tests.codec.test_entropy import symbols_digest;"
        f"print(symbols_digest([p.read_bytes() for p in sorted(pathlib.Path({str(tmp_path)!r}).glob('*.lsic'))]))"
    )
    out = subprocess.run([edge_python, "-c", code], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == symbols_digest(corpus_streams)


def test_quantize_then_decode_gives_the_encoders_integers(encoder, kodak):
    """Decoder's integers == encoder's integers, tile by tile (the real guarantee)."""
    import cv2

    pkg = encoder.pkg
    img = cv2.cvtColor(cv2.imread(str(kodak[3])), cv2.COLOR_BGR2RGB)
    for q in (1, 4, 8):
        tile = Tile(0, 0, 0, 256, 256)
        ((y, z),) = encoder.analyse([cut(img, tile, STRIDE)], q - 1)
        sent = quantize(pkg, y, z)
        payload = encode_tile(pkg, y, z)
        got = decode_tile(pkg, payload, padded_size(256, STRIDE), padded_size(256, STRIDE))
        for a, b in ((sent.z, got.z), (sent.y, got.y), (sent.index, got.index), (sent.means_fx, got.means_fx)):
            assert np.array_equal(a, b)


def test_tiles_decoded_as_a_batch_match_each_alone_and_a_bad_one_is_refused(encoder, kodak):
    """decode_tiles runs the integer networks once for several tiles: the same integers as one
    tile at a time, and a damaged payload in the batch is a BitstreamError, not wrong tiles."""
    import cv2

    from lsic.codec.entropy.latents import decode_tiles
    from lsic.codec.errors import BitstreamError

    pkg = encoder.pkg
    img = cv2.cvtColor(cv2.imread(str(kodak[5])), cv2.COLOR_BGR2RGB)
    tiles = [Tile(i, 256 * (i % 3), 256 * (i // 3), 256, 256) for i in range(4)]
    payloads = [encode_tile(pkg, y, z) for y, z in encoder.analyse([cut(img, t, STRIDE) for t in tiles], 5)]
    size = padded_size(256, STRIDE)
    batch = decode_tiles(pkg, payloads, size, size)
    for payload, got in zip(payloads, batch, strict=True):
        alone = decode_tile(pkg, payload, size, size)
        for a, b in ((alone.z, got.z), (alone.y, got.y), (alone.index, got.index), (alone.means_fx, got.means_fx)):
            assert np.array_equal(a, b)
    damaged = payloads[2][:-8]
    with pytest.raises(BitstreamError):
        decode_tiles(pkg, [payloads[0], damaged, payloads[1]], size, size)
