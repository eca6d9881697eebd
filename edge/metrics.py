"""Prometheus metrics of the edge agent (served with --metrics-port)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

REGISTRY = CollectorRegistry()
FRAMES_ENCODED = Counter("lsic_edge_frames_encoded_total", "Frames encoded and spooled", registry=REGISTRY)
FRAMES_DROPPED = Counter("lsic_edge_frames_dropped_total", "Frames dropped", ["reason"], registry=REGISTRY)
BYTES_ENCODED = Counter("lsic_edge_bytes_encoded_total", "Bitstream bytes produced", registry=REGISTRY)
QUEUE_DEPTH = Gauge("lsic_edge_spool_depth", "Frames waiting in the spool for an acknowledgement", registry=REGISTRY)
SOURCE_RECONNECTS = Counter(
    "lsic_edge_source_reconnects_total", "Times a live source (camera, stream) stopped and was reopened",
    registry=REGISTRY,
)
