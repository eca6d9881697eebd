"""The .lsic container: layout, checks and the errors a damaged file gets."""

from __future__ import annotations

import pytest

from lsic.codec.bitstream import FLAG_TWO_PASS, MAGIC, TILE_CODED, VERSION, Container, TileEntry, parse
from lsic.codec.errors import BitstreamError, ChecksumError, TruncatedBitstreamError, UnsupportedVersionError

LAYOUTS = [1, VERSION]  # the fixed-width header of versions 1 to 3, and the compact one encoders write


def make(version: int = VERSION, tiles: int = 6) -> bytes:
    entries = [TileEntry(TILE_CODED, bytes([i]) * (4 * (i + 1))) for i in range(tiles)]
    return Container(700, 500, 256, 3, "default", b"\x11" * 32, entries, version=version).to_bytes()


@pytest.mark.parametrize("version", LAYOUTS)
def test_round_trip_header_and_tiles(version):
    p = parse(make(version))
    assert (p.header.width, p.header.height, p.header.tile_size, p.header.quality) == (700, 500, 256, 3)
    assert p.header.model_id == "default" and p.header.model_hash == b"\x11" * (32 if version < 4 else 8)
    assert [p.tile_payload(i) for i in range(6)] == [bytes([i]) * (4 * (i + 1)) for i in range(6)]
    info = p.info()
    assert info["tiles"] == {"cols": 3, "rows": 2, "count": 6}
    assert info["tile_table"][2]["length"] == 12


@pytest.mark.parametrize("version", LAYOUTS)
def test_every_truncation_is_a_truncation_error(version):
    data = make(version)
    for n in range(len(data)):
        with pytest.raises((TruncatedBitstreamError, ChecksumError, BitstreamError)):
            parse(data[:n])
    with pytest.raises(TruncatedBitstreamError):
        parse(data[:-1])


@pytest.mark.parametrize("version", LAYOUTS)
def test_corrupt_header_and_tile_are_checksum_errors(version):
    data = bytearray(make(version))
    data[10] ^= 1
    with pytest.raises(ChecksumError):
        parse(bytes(data))
    data = bytearray(make(version))
    data[-1] ^= 0x80
    p = parse(bytes(data))
    with pytest.raises(ChecksumError, match="tile 5"):
        p.tile_payload(5)
    assert p.tile_payload(0)  # the other tiles still decode


@pytest.mark.parametrize("version", LAYOUTS)
def test_magic_and_newer_version_refused(version):
    data = bytearray(make(version))
    assert data[:4] == MAGIC
    with pytest.raises(BitstreamError, match="magic"):
        parse(b"JUNK" + bytes(data[4:]))
    data[4] = 99
    with pytest.raises(UnsupportedVersionError, match="newer"):
        parse(bytes(data))


def test_trailing_garbage_refused():
    with pytest.raises(BitstreamError, match="unexpected bytes"):
        parse(make() + b"x")


def test_compact_header_is_smaller_and_its_integers_are_checked():
    """Version 4 spends 119 - 63 bytes on this 6-tile frame's header where versions 1 to 3 spent
    119 (a fixed camera's predicted frame is a few hundred bytes); its integers are refused when
    they run past the data, past 32 bits or are padded."""
    assert (parse(make(1)).info()["header_bytes"], parse(make()).info()["header_bytes"]) == (119, 63)
    head = MAGIC + bytes([VERSION, 0])
    with pytest.raises(TruncatedBitstreamError, match="width"):
        parse(head + b"\x80\x80")
    with pytest.raises(BitstreamError, match="longer than"):
        parse(head + b"\x80" * 6)
    with pytest.raises(BitstreamError, match="out of range"):
        parse(head + b"\xff\xff\xff\xff\x7f")
    with pytest.raises(BitstreamError, match="shortest form"):
        parse(head + b"\x81\x00")


@pytest.mark.parametrize("model", ["default", "lite"])
def test_coding_passes_in_the_header_must_match_the_model(model, decoder):
    """A context model's frames say y comes in two passes, a hyperprior-only model's in one; a
    stream claiming the other is refused with a clear error, not decoded into garbage."""
    from lsic.codec.encoder import Encoder
    from lsic.codec.package import load_package

    from ..conftest import natural_image

    pkg = load_package(model)
    data = Encoder(pkg).encode(natural_image(64, 64), quality=4)
    p = parse(data)
    assert p.header.version == VERSION == p.info()["format_version"]
    assert p.header.two_pass == bool(pkg.context_layers)
    h = p.header
    tiles = [TileEntry(k, p.tile_payload(i)) for i, k in enumerate(p.kinds)]
    wrong = Container(h.width, h.height, h.tile_size, h.quality, h.model_id, h.model_hash, tiles, h.version,
                      h.flags ^ FLAG_TWO_PASS)
    with pytest.raises(BitstreamError, match="does not match"):
        decoder.decode(wrong.to_bytes())
    legacy_wrong = Container(h.width, h.height, h.tile_size, h.quality, h.model_id, pkg.hash, tiles,
                             1 if pkg.context_layers else 2)
    with pytest.raises(BitstreamError, match="does not match"):
        decoder.decode(legacy_wrong.to_bytes())
    assert decoder.decode(data).rgb.shape == (64, 64, 3)


@pytest.mark.parametrize("model", ["default", "lite"])
def test_frames_in_the_earlier_layout_decode_to_the_same_pixels(model, decoder):
    """Archives written before version 4 (fixed-width header, full model hash) stay readable."""
    import numpy as np

    from lsic.codec.encoder import Encoder
    from lsic.codec.package import load_package

    from ..conftest import natural_image

    pkg = load_package(model)
    data = Encoder(pkg).encode(natural_image(96, 80), quality=3)
    p = parse(data)
    h = p.header
    tiles = [TileEntry(k, p.tile_payload(i)) for i, k in enumerate(p.kinds)]
    legacy = Container(h.width, h.height, h.tile_size, h.quality, h.model_id, pkg.hash, tiles,
                       2 if pkg.context_layers else 1).to_bytes()
    assert len(legacy) > len(data)
    np.testing.assert_array_equal(decoder.decode(legacy).rgb, decoder.decode(data).rgb)


def test_compact_header_claiming_a_huge_frame_is_refused_before_allocating():
    """A well-formed version-4 header (valid checksum) that claims a 2^20 x 2^20 frame with a
    one-entry tile table is refused from its header alone."""
    import struct

    from lsic.codec.bitstream import _put_varint, crc32c
    from lsic.codec.errors import FrameLimitError

    head = bytearray(MAGIC + bytes([VERSION, 0]))
    for value in (1 << 20, 1 << 20, 1024 // 64):
        _put_varint(head, value)
    head += bytes([3]) + b"\x11" * 8 + bytes([7]) + b"default"
    _put_varint(head, 1)
    _put_varint(head, 0)  # one empty tile
    data = bytes(head) + struct.pack("<I", crc32c(bytes(head)))
    with pytest.raises(FrameLimitError, match="exceeds the limit"):
        parse(data)
