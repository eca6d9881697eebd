"""Temporal coding: keyframes, predicted frames that code only changed blocks, bit-exact latents
between the int8 edge encoder and the decoder, and explicit errors for missing references."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from lsic.codec.bitstream import TILE_CODED, TILE_PREDICTED, TILE_SAME_AS_PREVIOUS, parse
from lsic.codec.decoder import Decoder
from lsic.codec.encoder import Encoder
from lsic.codec.errors import BitstreamError, MissingReferenceError, ReferenceMismatchError
from lsic.codec.metrics import psnr
from lsic.codec.video import VideoEncoder, VideoSettings


def scene(n: int, w: int = 320, h: int = 192) -> list[np.ndarray]:
    """A fixed camera: a textured still background, a small square walking across it, sensor noise."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.stack([128 + 60 * np.sin(xx / 9.0), 128 + 50 * np.cos(yy / 7.0), 100 + 0.3 * xx], -1)
    out = []
    for i in range(n):
        f = background + rng.normal(0, 1.0, background.shape)
        x = 20 + 24 * i
        f[60:100, x : x + 30] = (230, 40, 40)
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def coded():
    frames = scene(8)
    video = VideoEncoder(Encoder("default", threads=2), tile_size=128, settings=VideoSettings(keyframe_interval=6))
    out = []
    for f in frames:
        c = video.encode(f, 6)
        out.append((c, {i: (m.state.z.copy(), m.state.y_fx.copy()) for i, m in video.memory.items()}))
    return frames, out


def decode_in_order(decoder: Decoder, datas: list[bytes]):
    latents, outs = None, []
    for d in datas:
        o = decoder.decode(d, latents=latents)
        latents = o.latents
        outs.append(o)
    return outs


def test_keyframes_by_interval_and_few_blocks_coded_in_between(coded):
    _, out = coded
    keys = [c.keyframe for c, _ in out]
    assert keys == [True, False, False, False, False, False, True, False]
    for c, _ in out:
        p = parse(c.data)
        kinds = set(p.kinds)
        assert kinds == {TILE_CODED} if c.keyframe else TILE_PREDICTED in kinds <= {TILE_PREDICTED, TILE_SAME_AS_PREVIOUS}
        held = [n for k, n in zip(p.kinds, p.lengths, strict=True) if k == TILE_SAME_AS_PREVIOUS]
        assert all(n == 4 for n in held), "a tile that codes nothing holds its reference's digest alone"
        if not c.keyframe:
            assert 0 < c.coded_blocks <= c.blocks // 3, "only the blocks the square crossed are coded"
            assert len(c.data) < len(out[0][0].data) / 2


def test_edge_and_decoder_latents_are_bit_exact_and_frames_reconstruct(coded):
    frames, out = coded
    outs = decode_in_order(Decoder(backend="onnx"), [c.data for c, _ in out])
    for (_, edge_states), o, f in zip(out, outs, frames, strict=True):
        for i, (z, y_fx) in edge_states.items():
            assert np.array_equal(o.latents[i].z, z) and np.array_equal(o.latents[i].y_fx, y_fx)
        assert psnr(o.rgb, f) > 24, "the moving square and the background both come through"
    square = [psnr(o.rgb[60:100, 20 + 24 * k : 50 + 24 * k], f[60:100, 20 + 24 * k : 50 + 24 * k])
              for k, (o, f) in enumerate(zip(outs, frames, strict=True))]
    assert min(square) > 22, "the square is coded where it moved to"


def test_predicted_frame_without_or_with_the_wrong_reference_is_refused(coded):
    _, out = coded
    dec = Decoder(backend="onnx")
    with pytest.raises(MissingReferenceError, match="previous frame"):
        dec.decode(out[2][0].data)
    first = dec.decode(out[0][0].data)
    with pytest.raises(ReferenceMismatchError):
        dec.decode(out[2][0].data, latents=first.latents)  # frame 1 skipped


def test_region_of_a_predicted_frame_touches_only_its_tiles(coded):
    _, out = coded
    dec = Decoder(backend="onnx")
    full = decode_in_order(dec, [c.data for c, _ in out[:3]])[-1]
    # 90 px: farther than REGION_REACH from the border of the 128 px tile, so no neighbour is read
    key = dec.decode(out[0][0].data, region=(0, 0, 90, 90))
    one = dec.decode(out[1][0].data, region=(0, 0, 90, 90), latents=key.latents)
    two = dec.decode(out[2][0].data, region=(0, 0, 90, 90), latents=one.latents)
    assert set(two.latents) == {0}
    assert np.array_equal(two.rgb, full.rgb[:90, :90])
    near = dec.decode(out[0][0].data, region=(0, 0, 100, 100))
    assert set(near.latents) == {0, 1, 3, 4}, "within reach of the borders, the neighbours' latents are read"


def test_noise_alone_codes_nothing_but_a_lighting_change_is_coded():
    rng = np.random.default_rng(11)
    still = scene(1)[0].astype(np.float64)
    video = VideoEncoder(Encoder("default", threads=2), tile_size=128)
    assert video.encode(still.astype(np.uint8), 5).keyframe
    for _ in range(3):
        noisy = np.clip(still + rng.normal(0, 3.0, still.shape), 0, 255).astype(np.uint8)
        assert video.encode(noisy, 5).coded_blocks == 0, "fresh sensor noise is not worth bits"
    brighter = video.encode(np.clip(still + 14, 0, 255).astype(np.uint8), 5)
    assert brighter.keyframe or brighter.coded_blocks > brighter.blocks // 2


def test_a_frame_that_codes_nothing_is_small_and_still_checks_its_reference():
    """A still scene's predicted frame holds every tile: a few bytes a tile, and decoded against
    another frame's latents it is refused, not shown as that frame."""
    rng = np.random.default_rng(5)
    still = scene(1)[0].astype(np.float64)
    video = VideoEncoder(Encoder("default", threads=2), tile_size=128)
    key = video.encode(still.astype(np.uint8), 5).data
    quiet = video.encode(np.clip(still + rng.normal(0, 2.0, still.shape), 0, 255).astype(np.uint8), 5)
    p = parse(quiet.data)
    assert quiet.coded_blocks == 0 and set(p.kinds) == {TILE_SAME_AS_PREVIOUS}
    assert len(quiet.data) < 60 + 5 * len(p.kinds)
    dec = Decoder(backend="onnx")
    first = dec.decode(key)
    held = dec.decode(quiet.data, latents=first.latents)
    np.testing.assert_array_equal(held.rgb, first.rgb)
    other = dec.decode(VideoEncoder(Encoder("default", threads=2), tile_size=128).encode(255 - scene(1)[0], 5).data)
    with pytest.raises(ReferenceMismatchError):
        dec.decode(quiet.data, latents=other.latents)


def test_scene_change_makes_a_keyframe():
    frames = scene(2)
    video = VideoEncoder(Encoder("default", threads=2), tile_size=128)
    assert video.encode(frames[0], 4).keyframe
    assert video.encode(255 - frames[1], 4).keyframe, "most blocks changed"
    assert not video.encode(255 - frames[1], 4).keyframe


def test_damaged_predicted_tiles_fail_with_typed_errors(coded):
    _, out = coded
    dec = Decoder(backend="onnx")
    key = dec.decode(out[0][0].data)
    parsed = parse(out[1][0].data)
    rng = np.random.default_rng(3)
    for _ in range(30):
        buf = bytearray(out[1][0].data)
        pos = int(rng.integers(parsed.offsets[0], len(buf)))
        buf[pos] ^= 1 << int(rng.integers(8))
        with pytest.raises(BitstreamError):
            dec.decode(bytes(buf), latents=key.latents)


def test_cli_decode_of_a_predicted_frame_says_what_it_needs(coded, tmp_path):
    _, out = coded
    path = tmp_path / "p.lsic"
    path.write_bytes(out[1][0].data)
    r = subprocess.run([sys.executable, "-m", "lsic.codec.cli", "decode", str(path), "-o", str(tmp_path / "p.png")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 15 and "lsic: error:" in r.stderr and "previous frame" in r.stderr
    assert "Traceback" not in r.stderr


def test_shipped_model_has_a_temporal_prior_fitted_on_held_out_rate():
    from lsic.codec.package import load_package

    pkg = load_package("default")
    assert pkg.temporal is not None
    report = pkg.meta["temporal_prior"]
    assert report["rate_saving_held_out"] > 0.005, "the prior saves bits on pairs it was not fitted on"


def test_refitting_the_prior_keeps_earlier_frames_decoding(coded, tmp_path, monkeypatch):
    """A new prior is a new build; predicted frames the earlier build wrote decode as before."""
    import shutil

    from lsic.codec import package
    from lsic.codec.image_io import write_rgb
    from lsic.codec.networks.temporal_fit import fit_package

    frames, out = coded
    before = decode_in_order(Decoder(backend="onnx"), [c.data for c, _ in out[:3]])
    models = tmp_path / "models"
    shutil.copytree(package.load_package("default").root, models / "default")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(5)
    for i in range(3):
        write_rgb(photos / f"{i}.png", np.clip(rng.normal(120, 40, (300, 320, 3)), 0, 255).astype(np.uint8))
    monkeypatch.setenv("LSIC_MODELS", str(models))
    monkeypatch.setattr(package, "_LOADED", {})
    old = package.load_package_dir(models / "default").hash
    report = fit_package(models / "default", photos, pairs=12, qualities="6")
    assert report["trained_on"].startswith("10 synthetic pairs")
    new = package.load_package_dir(models / "default")
    assert new.hash != old and new.temporal is not None
    assert list((models / "retired").glob("default-*")), "the build whose prior was replaced is kept decode-only"
    fit_package(models / "default", photos, pairs=12, qualities="6", parts="z")
    z_only = package.load_package_dir(models / "default")
    assert np.array_equal(z_only.temporal.weights, new.temporal.weights), "--parts z keeps the prior of y"
    assert z_only.temporal.z_tables.shape == (z_only.n_rates, int(z_only.architecture["N"]))
    new = z_only
    after = decode_in_order(Decoder(backend="onnx"), [c.data for c, _ in out[:3]])
    for b, a in zip(before, after, strict=True):
        assert np.array_equal(b.rgb, a.rgb)
    video = VideoEncoder(Encoder("default", threads=2), tile_size=128)
    datas = [video.encode(f, 6).data for f in frames[:3]]
    assert new.is_build(parse(datas[1]).header.model_hash)
    again = decode_in_order(Decoder(backend="onnx"), datas)
    assert psnr(again[-1].rgb, frames[2]) > 24


def test_position_bits_of_coded_positions_match_the_whole_tile_count():
    """A predicted tile counts bits only where it codes: the numbers the whole-tile count gives
    there (to float rounding: numpy may sum the channels in another order), zero elsewhere."""
    from lsic.codec.entropy.latents import TileSymbols, position_bits
    from lsic.codec.package import load_package

    pkg = load_package("default")
    rng = np.random.default_rng(3)
    y = rng.integers(-40, 41, (96, 16, 16))
    index = rng.integers(0, 64, (96, 16, 16)).astype(np.int32)
    s = TileSymbols(rng.integers(-3, 4, (64, 4, 4)), y, index, np.zeros_like(y))
    at = rng.random((16, 16)) < 0.1
    got = position_bits(pkg, s, at)
    np.testing.assert_allclose(got, np.where(at, position_bits(pkg, s), 0.0), rtol=1e-12, atol=0)
    assert not got[~at].any()


def test_predicted_frames_in_format_3_decode_to_the_same_pixels(coded):
    """Archives from before format 4 (fixed-width header, full model hash, predicted tiles'
    masks padded to 4 bytes, a tile that codes nothing as a predicted one with an empty mask)
    decode to exactly what their format-4 twins decode to."""
    from lsic.codec.bitstream import Container, TileEntry
    from lsic.codec.package import load_package

    _, out = coded
    pkg = load_package("default")
    legacy = []
    for c, _ in out[:4]:
        p = parse(c.data)
        h = p.header
        tiles = []
        for i, kind in enumerate(p.kinds):
            payload = p.tile_payload(i)
            grid = h.grid.tiles()[i]
            blocks = -(-grid.h // 64) * -(-grid.w // 64)
            if kind == TILE_SAME_AS_PREVIOUS:  # format 3 held a tile as a predicted one coding nothing
                kind, payload = TILE_PREDICTED, payload + bytes(-(-blocks // 8))
            if kind == TILE_PREDICTED:
                mask = np.unpackbits(np.frombuffer(payload, np.uint8, -(-blocks // 8), 4))[:blocks]
                k = int(mask.sum())
                end = 4 + -(-blocks // 8) + 2 * k + -(-k // 8)  # the z modes of this build's prior
                payload = payload[:end] + b"\0" * (-end % 4) + payload[end:]
            tiles.append(TileEntry(kind, payload))
        legacy.append(Container(h.width, h.height, h.tile_size, h.quality, h.model_id, pkg.hash, tiles, 3, h.flags)
                      .to_bytes())
    assert sum(map(len, legacy)) > sum(len(c.data) for c, _ in out[:4])
    new = decode_in_order(Decoder(), [c.data for c, _ in out[:4]])
    old = decode_in_order(Decoder(), legacy)
    for a, b in zip(new, old, strict=True):
        np.testing.assert_array_equal(a.rgb, b.rgb)


def z_modes_of(data: bytes) -> list[bool]:
    """The z mode of every coded block of a predicted frame (True: coded as a difference)."""
    from lsic.codec.entropy.predicted import read_head

    p = parse(data)
    modes: list[bool] = []
    for t, kind in zip(p.header.grid.tiles(), p.kinds, strict=True):
        if kind == TILE_PREDICTED:
            _, _, _, z_diff = read_head(p.tile_payload(t.index), -(-t.h // 64), -(-t.w // 64), False, True)
            modes += z_diff.tolist()
    return modes


def test_blocks_coded_again_code_z_as_its_difference(coded):
    """A block the stream already coded at its quality keeps most of its z: the shipped prior codes
    it as a difference; a block first changed since the keyframe keeps the factorized prior."""
    from lsic.codec.package import load_package

    assert load_package("default").temporal.z_tables is not None
    _, out = coded
    modes = [m for c, _ in out if not c.keyframe for m in z_modes_of(c.data)]
    assert any(modes) and not all(modes), modes
    report = load_package("default").meta["temporal_prior"]["z"]
    assert report["rate_saving_held_out"] > 0.1, "differences save z bits on pairs the tables were not fitted on"


def test_z_modes_with_bits_past_the_blocks_are_refused():
    from lsic.codec.entropy.predicted import read_head

    head = b"\0\0\0\0" + bytes([0b10000000]) + bytes([0xFF, 0xFF])  # 2x2 blocks, one coded, all its positions
    assert read_head(head + bytes([0b10000000]), 2, 2, False, True)[3].tolist() == [True]
    with pytest.raises(BitstreamError, match="z modes have bits set past"):
        read_head(head + bytes([0b11000000]), 2, 2, False, True)
    with pytest.raises(BitstreamError, match="shorter than its z modes"):
        read_head(head, 2, 2, False, True)


@pytest.mark.parametrize("model", ["hq", "lite"])
def test_every_package_codes_predicted_frames_with_its_prior_bit_exactly(model):
    from lsic.codec.package import load_package

    assert load_package(model).temporal.z_tables is not None
    frames = scene(4)
    video = VideoEncoder(Encoder(model, threads=2), tile_size=128)
    datas, states = [], []
    for f in frames:
        datas.append(video.encode(f, 4).data)
        states.append({i: m.state.z.copy() for i, m in video.memory.items()})
    outs = decode_in_order(Decoder(backend="onnx"), datas)
    for o, edge, f in zip(outs, states, frames, strict=True):
        assert all(np.array_equal(o.latents[i].z, z) for i, z in edge.items())
        assert psnr(o.rgb, f) > 22


def test_bits_map_of_a_predicted_frame_shows_the_coded_blocks(coded):
    """Against its reference the map is the exact cost of each coded position (it adds up to the
    tiles' entropy-coded bytes); read alone, the tiles' bytes spread over the positions they code."""
    from lsic.codec.bits_map import bits_per_pixel

    _, out = coded
    outs = decode_in_order(Decoder(backend="onnx"), [c.data for c, _ in out[:2]])
    data = out[1][0].data
    p = parse(data)
    exact = bits_per_pixel(data, outs[0].latents)
    alone = bits_per_pixel(data)
    payload_bits = 8 * sum(n for k, n in zip(p.kinds, p.lengths, strict=True) if k == TILE_PREDICTED)
    assert np.array_equal(exact > 0, alone > 0) and 0 < (alone > 0).mean() < 0.5, "only the coded blocks"
    assert np.isclose(alone.sum() * 256, payload_bits)
    assert 0.7 * payload_bits < exact.sum() * 256 < payload_bits, "the symbols' bits, without the masks and rANS flush"
