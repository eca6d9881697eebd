"""The .lsic container: versioned, self-describing, checksummed (docs/bitstream.md).

All integers little-endian. Header, then the tile table, then the header CRC32C, then the tile
payloads back to back. Every tile has its own CRC32C, so a damaged tile is detected and the
others still decode.
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
VERSION = 3  # the newest format this decoder reads
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
MAP_BLOCK = 64  # pixels per quality-map cell: one position of z, 4x4 of y
MAP_STEPS = 4  # map levels per quality: level v is quality 1 + (v - 1) / MAP_STEPS


def max_map_level(n_rates: int) -> int:
    """The top quality-map level of a model with n_rates operating points (its top quality)."""
    return MAP_STEPS * (n_rates - 1) + 1


_FIXED = struct.Struct("<4sBBIIHB32sB")  # magic ver flags width height tile quality hash id_len
_TILE = struct.Struct("<BII")  # kind, length, crc32c
MAX_DIM = 1 << 20


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
    def map_shape(self) -> tuple[int, int]:
        return -(-self.height // MAP_BLOCK), -(-self.width // MAP_BLOCK)

    def to_bytes(self) -> bytes:
        mid = self.model_id.encode()
        if len(mid) > 255 or len(self.model_hash) != 32:
            raise BitstreamError("model id too long or model hash not 32 bytes")
        if len(self.tiles) != len(self.grid):
            raise BitstreamError("tile count does not match the tile grid")
        flags = self.flags if self.version >= VERSION_FLAGS else 0
        if self.quality_map is not None:
            if self.version < VERSION_FLAGS or not flags & FLAG_QUALITY_MAP:
                raise BitstreamError("a quality map needs format version 3 with FLAG_QUALITY_MAP")
            if self.quality_map.shape != self.map_shape:
                raise BitstreamError(f"quality map is {self.quality_map.shape}, the frame needs {self.map_shape}")
        head = bytearray(
            _FIXED.pack(
                MAGIC, self.version, flags, self.width, self.height, self.tile_size, self.quality, self.model_hash,
                len(mid),
            )
        )
        head += mid
        if self.quality_map is not None:
            packed = zlib.compress(np.ascontiguousarray(self.quality_map, dtype=np.uint8).tobytes(), 9)
            head += struct.pack("<I", len(packed)) + packed
        head += struct.pack("<I", len(self.tiles))
        for t in self.tiles:
            head += _TILE.pack(t.kind, len(t.payload), crc32c(t.payload))
        head += struct.pack("<I", crc32c(bytes(head)))
        return bytes(head) + b"".join(t.payload for t in self.tiles)


@dataclass
class ParsedContainer:
    """A parsed header with lazy, checked access to tile payloads."""

    header: Container
    data: bytes
    offsets: list[int]
    lengths: list[int]
    crcs: list[int]
    kinds: list[int]

    def tile_payload(self, i: int) -> bytes:
        payload = self.data[self.offsets[i] : self.offsets[i] + self.lengths[i]]
        if crc32c(payload) != self.crcs[i]:
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
                    "crc32c": f"{c:08x}",
                }
                for i, (k, o, n, c) in enumerate(zip(self.kinds, self.offsets, self.lengths, self.crcs, strict=True))
            ],
        }


def _read_quality_map(data: bytes, pos: int, width: int, height: int) -> np.ndarray:
    """The zlib-packed quality map after the model id; its exact unpacked size is known, so a
    claim of more (a decompression bomb) is refused without inflating it."""
    rows, cols = -(-height // MAP_BLOCK), -(-width // MAP_BLOCK)
    (n,) = struct.unpack_from("<I", data, pos)
    pos += 4
    if len(data) < pos + n:
        raise TruncatedBitstreamError("bitstream ends inside its quality map")
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


def parse(data: bytes, limits: FrameLimits | None = DEFAULT_LIMITS) -> ParsedContainer:
    """Parse and validate header and tile table; payloads are checked when read.

    limits: the largest frame accepted (FrameLimitError beyond it); None for a bitstream whose
    size was already checked (a decoder's worker processes).
    """
    if data[:4] != MAGIC[: len(data[:4])] or not data:
        raise BitstreamError("not an LSIC bitstream (bad magic)")
    if len(data) < _FIXED.size:
        raise TruncatedBitstreamError(f"bitstream is {len(data)} bytes, shorter than a header")
    magic, version, flags, width, height, tile, quality, mhash, id_len = _FIXED.unpack_from(data, 0)
    if magic != MAGIC:
        raise BitstreamError("not an LSIC bitstream (bad magic)")
    if version > VERSION:
        raise UnsupportedVersionError(f"bitstream format version {version} is newer than this decoder ({VERSION})")
    if version < 1:
        raise BitstreamError(f"invalid format version {version}")
    pos = _FIXED.size
    need = pos + id_len + 4
    if len(data) < need:
        raise TruncatedBitstreamError("bitstream ends inside its header")
    try:
        model_id = data[pos : pos + id_len].decode()
    except UnicodeDecodeError as exc:
        raise BitstreamError("model id is not valid text") from exc
    pos += id_len
    if version < VERSION_FLAGS:
        flags = 0
    elif flags & ~FLAGS_KNOWN:
        raise BitstreamError(f"unknown header flags {flags:#04x}")
    map_at = None
    if flags & FLAG_QUALITY_MAP:  # skipped until the header checksum is verified
        if len(data) < pos + 4:
            raise TruncatedBitstreamError("bitstream ends inside its quality map")
        map_at = pos
        pos += 4 + struct.unpack_from("<I", data, pos)[0]
    if len(data) < pos + 4:
        raise TruncatedBitstreamError("bitstream ends inside its header")
    (n_tiles,) = struct.unpack_from("<I", data, pos)
    pos += 4
    table_end = pos + n_tiles * _TILE.size
    if len(data) < table_end + 4:
        raise TruncatedBitstreamError("bitstream ends inside its tile table")
    (head_crc,) = struct.unpack_from("<I", data, table_end)
    if crc32c(data[:table_end]) != head_crc:
        raise ChecksumError("header checksum mismatch (corrupted header)")
    if not (0 < width <= MAX_DIM and 0 < height <= MAX_DIM) or tile % 64 or not tile:
        raise BitstreamError(f"invalid geometry {width}x{height}, tile {tile}")
    if limits is not None:
        limits.check(width, height, tile)
    quality_map = None if map_at is None else _read_quality_map(data, map_at, width, height)
    header = Container(width, height, tile, quality, model_id, mhash, version=version, flags=flags,
                       quality_map=quality_map)
    if n_tiles != len(header.grid):
        raise BitstreamError(f"tile table has {n_tiles} entries, the grid needs {len(header.grid)}")
    kinds, lengths, crcs, offsets = [], [], [], []
    off = table_end + 4
    for i in range(n_tiles):
        kind, length, crc = _TILE.unpack_from(data, pos + i * _TILE.size)
        if kind not in TILE_KINDS or (kind == TILE_PREDICTED and not flags & FLAG_PREDICTED):
            raise BitstreamError(f"tile {i}: unknown kind {kind}")
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
