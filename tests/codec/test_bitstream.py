"""The .lsic container: layout, checks and the errors a damaged file gets."""

from __future__ import annotations

import pytest

from lsic.codec.bitstream import MAGIC, TILE_CODED, Container, TileEntry, parse
from lsic.codec.errors import BitstreamError, ChecksumError, TruncatedBitstreamError, UnsupportedVersionError


def make(tiles: int = 6) -> bytes:
    entries = [TileEntry(TILE_CODED, bytes([i]) * (4 * (i + 1))) for i in range(tiles)]
    return Container(700, 500, 256, 3, "default", b"\x11" * 32, entries).to_bytes()


def test_round_trip_header_and_tiles():
    p = parse(make())
    assert (p.header.width, p.header.height, p.header.tile_size, p.header.quality) == (700, 500, 256, 3)
    assert p.header.model_id == "default" and p.header.model_hash == b"\x11" * 32
    assert [p.tile_payload(i) for i in range(6)] == [bytes([i]) * (4 * (i + 1)) for i in range(6)]
    info = p.info()
    assert info["tiles"] == {"cols": 3, "rows": 2, "count": 6}
    assert info["tile_table"][2]["length"] == 12


def test_every_truncation_is_a_truncation_error():
    data = make()
    for n in range(len(data)):
        with pytest.raises((TruncatedBitstreamError, ChecksumError, BitstreamError)):
            parse(data[:n])
    with pytest.raises(TruncatedBitstreamError):
        parse(data[:-1])


def test_corrupt_header_and_tile_are_checksum_errors():
    data = bytearray(make())
    data[10] ^= 1
    with pytest.raises(ChecksumError):
        parse(bytes(data))
    data = bytearray(make())
    data[-1] ^= 0x80
    p = parse(bytes(data))
    with pytest.raises(ChecksumError, match="tile 5"):
        p.tile_payload(5)
    assert p.tile_payload(0)  # the other tiles still decode


def test_magic_and_newer_version_refused():
    data = bytearray(make())
    assert data[:4] == MAGIC
    with pytest.raises(BitstreamError, match="magic"):
        parse(b"JUNK" + bytes(data[4:]))
    data[4] = 99
    with pytest.raises(UnsupportedVersionError, match="newer"):
        parse(bytes(data))


def test_trailing_garbage_refused():
    with pytest.raises(BitstreamError, match="unexpected bytes"):
        parse(make() + b"x")


@pytest.mark.parametrize("model", ["default", "lite"])
def test_format_version_must_match_the_models_coding_passes(model, decoder):
    """A context model writes version 2 (y in two passes), a hyperprior-only one version 1; a
    stream claiming the other is refused with a clear error, not decoded into garbage."""
    from lsic.codec.encoder import Encoder
    from lsic.codec.package import load_package

    from ..conftest import natural_image

    pkg = load_package(model)
    data = Encoder(pkg).encode(natural_image(64, 64), quality=4)
    p = parse(data)
    assert p.header.version == (2 if pkg.context_layers else 1) == p.info()["format_version"]
    h = p.header
    tiles = [TileEntry(k, p.tile_payload(i)) for i, k in enumerate(p.kinds)]
    wrong = Container(h.width, h.height, h.tile_size, h.quality, h.model_id, h.model_hash, tiles, 3 - h.version)
    with pytest.raises(BitstreamError, match="does not match"):
        decoder.decode(wrong.to_bytes())
    assert decoder.decode(data).rgb.shape == (64, 64, 3)
