"""The .lsic container: versioned, self-describing, checksummed (docs/bitstream.md).

Header, then the tile table, then the header CRC32C, then the tile payloads back to back. Every
tile has its own check (its CRC32C, or a held tile's reference digest), so a damaged tile is
detected and the others still decode. Encoders write version 4, whose header spends
variable-length integers and an 8-byte build id where versions 1 to 3 spent fixed 32-bit fields
and the full 32-byte hash: a fixed camera's predicted frame is a few hundred bytes, and those 46
bytes were a tenth of it. Decoders read 1 to 4.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import google_crc32c
import numpy as np

from lsic.codec.errors import (
    BitstreamError,
    ChecksumError,
    FrameLimitError,
    TruncatedBitstreamError,
    UnsupportedVersionError,
)
from lsic.codec.tiling import Grid

MAGIC = b"LSIC"
VERSION = 4  # the newest format this decoder reads, and the one encoders write
# Version 2: the tile payloads code y in two passes, the second with a checkerboard context
# (models whose model.json architecture has "context"). Hyperprior-only models keep writing
# version 1, bit for bit as before.
VERSION_TWO_PASS = 2
# Version 3: the flags byte says how y is coded (FLAG_TWO_PASS) and which header extensions
# follow the model id (FLAG_QUALITY_MAP). Written only when an extension is present, so a frame
# without one is a version 1 or 2 stream, bit for bit.
VERSION_FLAGS = 3
FLAG_TWO_PASS = 0x01
FLAG_QUALITY_MAP = 0x02
# The frame is predicted from the previous frame of its stream: its tiles may be of kind
# TILE_PREDICTED (lsic.codec.entropy.predicted).
FLAG_PREDICTED = 0x04
FLAGS_KNOWN = FLAG_TWO_PASS | FLAG_QUALITY_MAP | FLAG_PREDICTED
# Version 4: the flags of version 3, a compact header (unsigned LEB128 integers, the first
# BUILD_BYTES of the model hash, each tile's kind and length in one integer, no checksum for an
# empty tile). Written for every frame.
VERSION_COMPACT = 4
BUILD_BYTES = 8
HELD_BYTES = 4  # a held tile's payload: the CRC32C digest of the reference state it keeps
HASH_BYTES = 32
MAP_BLOCK = 64  # pixels per quality-map cell: one position of z, 4x4 of y
MAP_STEPS = 4  # map levels per quality: level v is quality 1 + (v - 1) / MAP_STEPS


def max_map_level(n_rates: int) -> int:
    """The top quality-map level of a model with n_rates operating points (its top quality)."""
    return MAP_STEPS * (n_rates - 1) + 1


_FIXED = struct.Struct("<4sBBIIHB32sB")  # magic ver flags width height tile quality hash id_len
_TILE = struct.Struct("<BII")  # kind, length, crc32c
_COMPACT_FIXED = struct.Struct("<4sBB")  # magic ver flags, then LEB128 integers
MAX_DIM = 1 << 20
_VARINT_BYTES = 5  # enough for any 32-bit value


def _put_varint(out: bytearray, value: int) -> None:
    """Unsigned LEB128: seven bits a byte, low first, the top bit set on all but the last."""
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _get_varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """(value, position after it); TruncatedBitstreamError if data ends inside it, BitstreamError
    for one longer than a 32-bit value needs or padded with a zero byte."""
    value = 0
    for i in range(_VARINT_BYTES):
        if pos + i >= len(data):
            raise TruncatedBitstreamError(f"bitstream ends inside its {what}")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise BitstreamError(f"damaged header: its {what} is not in its shortest form")
            if value >> 32:
                raise BitstreamError(f"damaged header: its {what} ({value}) is out of range")
            return value, pos + i + 1
    raise BitstreamError(f"damaged header: its {what} is longer than {_VARINT_BYTES} bytes")


@dataclass(frozen=True)
class FrameLimits:
    """The largest frame a decoder or the service takes on, checked from the header alone.

    The defaults hold the largest frames real cameras and drones make (a 100 MP aerial frame is
    11664x8750) while bounding what one bitstream can make a decoder allocate: the output image
    (max_pixels x 3 bytes) and, per tile in flight, activations that grow with the tile's area.
    """

    max_pixels: int = 1 << 27  # 134 MP
    max_side: int = 1 << 15
    max_tile: int = 1024

    def check(self, width: int, height: int, tile: int) -> None:
        if width * height > self.max_pixels or max(width, height) > self.max_side:
            raise FrameLimitError(
                f"frame {width}x{height} exceeds the limit ({self.max_pixels} pixels, {self.max_side} per side)"
            )
        if tile > self.max_tile:
            raise FrameLimitError(f"tile size {tile} exceeds the limit ({self.max_tile})")


DEFAULT_LIMITS = FrameLimits()

TILE_CODED = 0
TILE_SAME_AS_PREVIOUS = 1  # unchanged since the previous frame of the stream: reuse its pixels
# only the blocks that changed are coded, merged into the previous frame's latents (needs FLAG_PREDICTED)
TILE_PREDICTED = 2
TILE_KINDS = (TILE_CODED, TILE_SAME_AS_PREVIOUS, TILE_PREDICTED)
KIND_NAMES = {TILE_CODED: "coded", TILE_SAME_AS_PREVIOUS: "same_as_previous", TILE_PREDICTED: "predicted"}


def crc32c(data: bytes) -> int:
    return google_crc32c.value(data)


@dataclass
class TileEntry:
    kind: int
    payload: bytes = b""


@dataclass
class Container:
    width: int
    height: int
    tile_size: int
    quality: int  # 1..n_rates
    model_id: str
    model_hash: bytes
    tiles: list[TileEntry] = field(default_factory=list)
    version: int = 1
    flags: int = 0
    # quality (1..n) per MAP_BLOCK x MAP_BLOCK block of the frame, rows x cols; None: `quality` everywhere
    quality_map: np.ndarray | None = None

    @property
    def grid(self) -> Grid:
        return Grid(self.width, self.height, self.tile_size)

    @property
    def two_pass(self) -> bool:
        """y coded in two passes (checkerboard context)."""
        return self.version == VERSION_TWO_PASS or (self.version >= VERSION_FLAGS and bool(self.flags & FLAG_TWO_PASS))

    @property
    def predicted(self) -> bool:
        """Decoding needs the previous frame of the stream (its latents)."""
        return self.version >= VERSION_FLAGS and bool(self.flags & FLAG_PREDICTED)

    @property
    def holds_latents(self) -> bool:
        """Tiles of kind TILE_SAME_AS_PREVIOUS keep the previous frame's latents, not only its
        pixels, and carry the reference's digest (a predicted frame of format 4)."""
        return self.predicted and self.version >= VERSION_COMPACT

    @property
    def aligned_payloads(self) -> bool:
        """Predicted tiles pad their masks to 4 bytes before the entropy-coded stream (format 3;
        format 4 does not)."""
        return self.version < VERSION_COMPACT

    @property
    def map_shape(self) -> tuple[int, int]:
        return -(-self.height // MAP_BLOCK), -(-self.width // MAP_BLOCK)

    def set_coding(self, two_pass: bool, predicted: bool = False) -> None:
        """Version and flags for a frame coded now: y in one or two passes, with or without a
        quality map, intra or predicted from the previous frame."""
        self.version = VERSION
        self.flags = (
            (FLAG_TWO_PASS if two_pass else 0)
            | (FLAG_QUALITY_MAP if self.quality_map is not None else 0)
            | (FLAG_PREDICTED if predicted else 0)
        )

    def to_bytes(self) -> bytes:
        mid = self.model_id.encode()
        if len(mid) > 255:
            raise BitstreamError("model id longer than 255 bytes")
        if len(self.tiles) != len(self.grid):
            raise BitstreamError("tile count does not match the tile grid")
        flags = self.flags if self.version >= VERSION_FLAGS else 0
        if self.quality_map is not None:
            if self.version < VERSION_FLAGS or not flags & FLAG_QUALITY_MAP:
                raise BitstreamError("a quality map needs format version 3 or 4 with FLAG_QUALITY_MAP")
            if self.quality_map.shape != self.map_shape:
                raise BitstreamError(f"quality map is {self.quality_map.shape}, the frame needs {self.map_shape}")
        qmap = b""
        if self.quality_map is not None:
            qmap = zlib.compress(np.ascontiguousarray(self.quality_map, dtype=np.uint8).tobytes(), 9)
        head = self._compact_head(mid, flags, qmap) if self.version >= VERSION_COMPACT else self._fixed_head(mid, flags, qmap)
        head += struct.pack("<I", crc32c(bytes(head)))
        return bytes(head) + b"".join(t.payload for t in self.tiles)

    def _fixed_head(self, mid: bytes, flags: int, qmap: bytes) -> bytearray:
        """Versions 1 to 3: fixed-width fields, the full model hash."""
        if len(self.model_hash) != HASH_BYTES:
            raise BitstreamError(f"format version {self.version} carries the {HASH_BYTES}-byte model hash")
        head = bytearray(
            _FIXED.pack(
                MAGIC, self.version, flags, self.width, self.height, self.tile_size, self.quality, self.model_hash,
                len(mid),
            )
        )
        head += mid
        if qmap:
            head += struct.pack("<I", len(qmap)) + qmap
        head += struct.pack("<I", len(self.tiles))
        for t in self.tiles:
            head += _TILE.pack(t.kind, len(t.payload), crc32c(t.payload))
        return head

    def _compact_head(self, mid: bytes, flags: int, qmap: bytes) -> bytearray:
        """Version 4: LEB128 integers, the build id (the hash's first BUILD_BYTES)."""
        if len(self.model_hash) not in (BUILD_BYTES, HASH_BYTES) or self.tile_size % 64:
            raise BitstreamError("model hash not 8 or 32 bytes, or tile size not a multiple of 64")
        head = bytearray(_COMPACT_FIXED.pack(MAGIC, self.version, flags))
        for value in (self.width, self.height, self.tile_size // 64):
            _put_varint(head, value)
        head.append(self.quality)
        head += self.model_hash[:BUILD_BYTES]
        head.append(len(mid))
        head += mid
        if qmap:
            _put_varint(head, len(qmap))
            head += qmap
        _put_varint(head, len(self.tiles))
        for t in self.tiles:
            _put_varint(head, len(t.payload) << 2 | t.kind)
            if _has_crc(t.kind, len(t.payload)):
                head += struct.pack("<I", crc32c(t.payload))
        return head


@dataclass
class ParsedContainer:
    """A parsed header with lazy, checked access to tile payloads."""

    header: Container
    data: bytes
    offsets: list[int]
    lengths: list[int]
    crcs: list[int | None]  # None: a held tile's digest, checked against the reference instead
    kinds: list[int]

    def from_latents(self, i: int) -> bool:
        """Tile i is rebuilt from the previous frame's latents: predicted, or held (format 4)."""
        kind = self.kinds[i]
        return kind == TILE_PREDICTED or (kind == TILE_SAME_AS_PREVIOUS and self.header.holds_latents)

    def reuses_pixels(self, i: int) -> bool:
        """Tile i is the previous frame's reconstruction, taken as it is (no latents)."""
        return self.kinds[i] == TILE_SAME_AS_PREVIOUS and not self.header.holds_latents

    def tile_payload(self, i: int) -> bytes:
        payload = self.data[self.offsets[i] : self.offsets[i] + self.lengths[i]]
        if self.crcs[i] is not None and crc32c(payload) != self.crcs[i]:
            raise ChecksumError(f"tile {i}: checksum mismatch (corrupted data)")
        return payload

    def info(self) -> dict:
        h = self.header
        return {
            "format_version": h.version,
            "width": h.width,
            "height": h.height,
            "tile_size": h.tile_size,
            "tiles": {"cols": h.grid.cols, "rows": h.grid.rows, "count": len(self.kinds)},
            "quality": h.quality,
            **({"quality_map": (1 + (h.quality_map - 1) / MAP_STEPS).tolist()} if h.quality_map is not None else {}),
            "predicted": h.predicted,
            "model_id": h.model_id,
            "model_hash": h.model_hash.hex(),
            "bytes": len(self.data),
            "header_bytes": self.offsets[0] if self.offsets else len(self.data),
            "bpp": round(8 * len(self.data) / (h.width * h.height), 6),
            "tile_table": [
                {
                    "index": i,
                    "kind": KIND_NAMES[k],
                    "offset": o,
                    "length": n,
                    "crc32c": None if c is None else f"{c:08x}",
                }
                for i, (k, o, n, c) in enumerate(zip(self.kinds, self.offsets, self.lengths, self.crcs, strict=True))
            ],
        }


def _read_quality_map(data: bytes, pos: int, n: int, width: int, height: int) -> np.ndarray:
    """The zlib-packed quality map (n bytes at pos); its exact unpacked size is known, so a claim
    of more (a decompression bomb) is refused without inflating it."""
    rows, cols = -(-height // MAP_BLOCK), -(-width // MAP_BLOCK)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data[pos : pos + n], rows * cols + 1)
    except zlib.error as exc:
        raise BitstreamError(f"quality map is not valid zlib data ({exc})") from exc
    if len(raw) != rows * cols or not inflater.eof:
        raise BitstreamError(f"quality map does not hold {rows}x{cols} cells")
    qmap = np.frombuffer(raw, dtype=np.uint8).reshape(rows, cols)
    if qmap.min() < 1:
        raise BitstreamError("quality map holds a quality of 0")
    return qmap


@dataclass
class _Head:
    """What a header says, read but not yet validated (the two layouts' common result)."""

    version: int
    flags: int
    width: int
    height: int
    tile: int
    quality: int
    model_hash: bytes
    model_id_bytes: bytes
    map_span: tuple[int, int] | None  # (position, length) of the packed quality map
    table: list[tuple[int, int, int | None]]  # (kind, length, crc32c or None: not checked) per tile
    end: int  # where the payloads start


def _read_fixed(data: bytes, version: int) -> _Head:
    """Versions 1 to 3 (docs/bitstream.md), header checksum verified."""
    if len(data) < _FIXED.size:
        raise TruncatedBitstreamError(f"bitstream is {len(data)} bytes, shorter than a header")
    _, _, flags, width, height, tile, quality, mhash, id_len = _FIXED.unpack_from(data, 0)
    pos = _FIXED.size
    if len(data) < pos + id_len + 4:
        raise TruncatedBitstreamError("bitstream ends inside its header")
    model_id = data[pos : pos + id_len]
    pos += id_len
    flags = flags if version >= VERSION_FLAGS else 0
    map_span = None
    if flags & FLAG_QUALITY_MAP:
        if len(data) < pos + 4:
            raise TruncatedBitstreamError("bitstream ends inside its quality map")
        n = struct.unpack_from("<I", data, pos)[0]
        map_span = (pos + 4, n)
        pos += 4 + n
    if len(data) < pos + 4:
        raise TruncatedBitstreamError("bitstream ends inside its header")
    (n_tiles,) = struct.unpack_from("<I", data, pos)
    pos += 4
    table_end = pos + n_tiles * _TILE.size
    if len(data) < table_end + 4:
        raise TruncatedBitstreamError("bitstream ends inside its tile table")
    _check_head_crc(data, table_end)
    table = [_TILE.unpack_from(data, pos + i * _TILE.size) for i in range(n_tiles)]
    return _Head(version, flags, width, height, tile, quality, mhash, model_id, map_span, table, table_end + 4)


def _read_compact(data: bytes) -> _Head:
    """Version 4 (docs/bitstream.md), header checksum verified."""
    if len(data) < _COMPACT_FIXED.size:
        raise TruncatedBitstreamError(f"bitstream is {len(data)} bytes, shorter than a header")
    _, version, flags = _COMPACT_FIXED.unpack_from(data, 0)
    width, pos = _get_varint(data, _COMPACT_FIXED.size, "width")
    height, pos = _get_varint(data, pos, "height")
    tile_units, pos = _get_varint(data, pos, "tile size")
    if len(data) < pos + 2 + BUILD_BYTES:
        raise TruncatedBitstreamError("bitstream ends inside its header")
    quality = data[pos]
    mhash = data[pos + 1 : pos + 1 + BUILD_BYTES]
    id_len = data[pos + 1 + BUILD_BYTES]
    pos += 2 + BUILD_BYTES
    if len(data) < pos + id_len:
        raise TruncatedBitstreamError("bitstream ends inside its header")
    model_id = data[pos : pos + id_len]
    pos += id_len
    map_span = None
    if flags & FLAG_QUALITY_MAP:
        n, pos = _get_varint(data, pos, "quality map length")
        if len(data) < pos + n:
            raise TruncatedBitstreamError("bitstream ends inside its quality map")
        map_span = (pos, n)
        pos += n
    n_tiles, pos = _get_varint(data, pos, "tile count")
    if n_tiles > len(data) - pos:  # every entry takes at least a byte
        raise TruncatedBitstreamError("bitstream ends inside its tile table")
    table = []
    for _ in range(n_tiles):
        packed, pos = _get_varint(data, pos, "tile table entry")
        crc = None
        if _has_crc(packed & 3, packed >> 2):
            if len(data) < pos + 4:
                raise TruncatedBitstreamError("bitstream ends inside its tile table")
            (crc,) = struct.unpack_from("<I", data, pos)
            pos += 4
        table.append((packed & 3, packed >> 2, crc))
    if len(data) < pos + 4:
        raise TruncatedBitstreamError("bitstream ends inside its tile table")
    _check_head_crc(data, pos)
    return _Head(version, flags, width, height, tile_units * 64, quality, mhash, model_id, map_span, table, pos + 4)


def _has_crc(kind: int, length: int) -> bool:
    """Format 4 gives a tile entry its payload's CRC32C unless there is nothing to check: an
    empty payload, or a held tile's reference digest (a damaged one fails as a mismatch)."""
    return length > 0 and kind != TILE_SAME_AS_PREVIOUS


def _check_head_crc(data: bytes, end: int) -> None:
    (head_crc,) = struct.unpack_from("<I", data, end)
    if crc32c(data[:end]) != head_crc:
        raise ChecksumError("header checksum mismatch (corrupted header)")


def parse(data: bytes, limits: FrameLimits | None = DEFAULT_LIMITS) -> ParsedContainer:
    """Parse and validate header and tile table; payloads are checked when read.

    limits: the largest frame accepted (FrameLimitError beyond it); None for a bitstream whose
    size was already checked (a decoder's worker processes).
    """
    if not data:
        raise TruncatedBitstreamError("bitstream is empty (0 bytes)")
    if data[:4] != MAGIC[: len(data[:4])]:
        raise BitstreamError("not an LSIC bitstream (bad magic)")
    if len(data) < 5:
        raise TruncatedBitstreamError(f"bitstream is {len(data)} bytes, shorter than a header")
    version = data[4]
    if version > VERSION:
        raise UnsupportedVersionError(f"bitstream format version {version} is newer than this decoder ({VERSION})")
    if version < 1:
        raise BitstreamError(f"invalid format version {version}")
    h = _read_compact(data) if version >= VERSION_COMPACT else _read_fixed(data, version)
    try:
        model_id = h.model_id_bytes.decode()
    except UnicodeDecodeError as exc:
        raise BitstreamError("model id is not valid text") from exc
    if h.flags & ~FLAGS_KNOWN:
        raise BitstreamError(f"unknown header flags {h.flags:#04x}")
    if not (0 < h.width <= MAX_DIM and 0 < h.height <= MAX_DIM) or h.tile % 64 or not h.tile:
        raise BitstreamError(f"invalid geometry {h.width}x{h.height}, tile {h.tile}")
    if limits is not None:
        limits.check(h.width, h.height, h.tile)
    quality_map = None if h.map_span is None else _read_quality_map(data, *h.map_span, h.width, h.height)
    header = Container(h.width, h.height, h.tile, h.quality, model_id, h.model_hash, version=h.version,
                       flags=h.flags, quality_map=quality_map)
    if len(h.table) != len(header.grid):
        raise BitstreamError(f"tile table has {len(h.table)} entries, the grid needs {len(header.grid)}")
    kinds, lengths, crcs, offsets = [], [], [], []
    off = h.end
    for i, (kind, length, crc) in enumerate(h.table):
        if kind not in TILE_KINDS or (kind == TILE_PREDICTED and not h.flags & FLAG_PREDICTED):
            raise BitstreamError(f"tile {i}: unknown kind {kind}")
        if kind == TILE_SAME_AS_PREVIOUS and h.version >= VERSION_COMPACT:
            held = HELD_BYTES if h.flags & FLAG_PREDICTED else 0
            if length != held:
                raise BitstreamError(f"tile {i}: a tile the same as the previous frame's holds {held} bytes, not {length}")
        kinds.append(kind)
        lengths.append(length)
        crcs.append(crc)
        offsets.append(off)
        off += length
    if off > len(data):
        raise TruncatedBitstreamError(f"bitstream truncated: {len(data)} bytes, tile table needs {off}")
    if off < len(data):
        raise BitstreamError(f"{len(data) - off} unexpected bytes after the last tile")
    return ParsedContainer(header, data, offsets, lengths, crcs, kinds)
