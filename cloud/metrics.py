"""Prometheus metrics of the cloud service."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

FRAMES_IN = Counter("lsic_frames_ingested_total", "Frames durably stored", ["device"], registry=REGISTRY)
DUPLICATES = Counter("lsic_frames_duplicate_total", "Frames received again and not rewritten", registry=REGISTRY)
BYTES_IN = Counter("lsic_bytes_ingested_total", "Bitstream bytes durably stored", registry=REGISTRY)
CONFLICTS = Counter(
    "lsic_frames_conflict_total", "Frames sent again under a used sequence number with other content", registry=REGISTRY
)
FRAMES_BY_STATE = Gauge(
    "lsic_frames_by_decode_state",
    "Stored frames by decode state (waiting, decoded, evicted, failed, quarantined)",
    ["state"],
    registry=REGISTRY,
)
DECODE_WORKER_RESTARTS = Counter(
    "lsic_decode_worker_restarts_total", "Decode worker processes restarted after they exited", registry=REGISTRY
)
CALLS_REFUSED = Counter(
    "lsic_calls_refused_total", "Calls refused by a concurrency budget or idle timeout", ["budget"], registry=REGISTRY
)
CALLS_FAILED = Counter(
    "lsic_calls_failed_total", "Calls ended by an unexpected error (INTERNAL; the log has the trace)", ["method"],
    registry=REGISTRY,
)
REJECTED = Counter("lsic_frames_rejected_total", "Frames rejected", ["code"], registry=REGISTRY)
ERRORS = Counter("lsic_rpc_errors_total", "Calls ended with an error status", ["method", "code"], registry=REGISTRY)
ACK_LATENCY = Histogram(
    "lsic_ack_latency_seconds",
    "Receipt to acknowledgement of a frame",
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
DECODE_LATENCY = Histogram("lsic_decode_seconds", "Decode time of one frame", registry=REGISTRY)
DECODE_QUEUE = Gauge("lsic_decode_queue_depth", "Frames stored but not yet decoded", registry=REGISTRY)
DECODE_LAG = Gauge("lsic_decode_lag_seconds", "Age of the oldest frame waiting to be decoded", registry=REGISTRY)
ACTIVE_STREAMS = Gauge("lsic_active_streams", "Open ingest streams", registry=REGISTRY)

# The decode worker's own (served on its --metrics-port)
FRAMES_FINISHED = Counter(
    "lsic_decode_frames_finished_total", "Frames this worker finished, by result", ["state"], registry=REGISTRY
)
DECODE_PAUSED = Gauge(
    "lsic_decode_paused", "1 while this worker waits for disk space or for the blob store", registry=REGISTRY
)
