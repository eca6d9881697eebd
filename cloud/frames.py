"""A stored frame as the API describes it (FrameInfo), and as JSON for the CLI and the viewer.

One description of a frame, derived once: FrameRow (the database) -> FrameInfo (the API) ->
a flat dict (JSON), so the CLI and the web viewer show the same fields under the same names.
"""

from __future__ import annotations

import json

from lsic.cloud.storage.metadata import DECODED, STATE_NAMES, FrameRow
from lsic.v1 import lsic_pb2 as pb

REGION_FIELDS = ("x", "y", "width", "height", "kind", "masked")


def regions_json(regions) -> str | None:
    """A frame's reported regions as stored (JSON), None for none."""
    rows = [{k: getattr(r, k) for k in REGION_FIELDS} for r in regions]
    return json.dumps(rows) if rows else None


def frame_info(row: FrameRow) -> pb.FrameInfo:
    return pb.FrameInfo(
        key=pb.FrameKey(device_id=row.device_id, stream_id=row.stream_id, sequence=row.seq),
        capture_time_us=row.capture_us,
        received_time_us=row.received_us,
        width=row.width,
        height=row.height,
        quality=row.quality,
        model_id=row.model_id,
        bytes=row.bytes,
        raw_bytes=row.raw_bytes,
        tiles=row.tiles,
        reference_tiles=row.ref_tiles,
        decoded=row.decoded == DECODED,
        decode_state=STATE_NAMES.get(row.decoded, "unknown"),
        decode_error=row.decode_error or "",
        regions=[pb.Region(**r) for r in json.loads(row.regions or "[]")],
    )


def frame_summary(info: pb.FrameInfo) -> dict:
    """FrameInfo as a flat JSON object."""
    return {
        "stream": info.key.stream_id,
        "seq": info.key.sequence,
        "capture_time_us": info.capture_time_us,
        "width": info.width,
        "height": info.height,
        "quality": info.quality,
        "model": info.model_id,
        "bytes": info.bytes,
        "reference_tiles": info.reference_tiles,
        "decoded": info.decoded,
        "decode_state": info.decode_state,
        "decode_error": info.decode_error,
        "regions": [{k: getattr(r, k) for k in REGION_FIELDS} for r in info.regions],
    }
