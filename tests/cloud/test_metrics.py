"""Operators can scrape Prometheus metrics and check health."""

from __future__ import annotations

import urllib.request

import grpc

from lsic.testing import CloudProcess, free_port
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc

from ..conftest import natural_image


def test_metrics_endpoint_counts_ingest(tmp_path, encoder):
    port = free_port()
    cloud = CloudProcess(tmp_path / "data", extra=["--metrics-port", str(port), "--no-decode"]).start()
    try:
        token = cloud.add_device("cam-m")
        frame = encoder.encode(natural_image(64, 64), 1)
        with grpc.insecure_channel(cloud.address) as ch:
            stub = pb_grpc.IngestStub(ch)
            md = (("authorization", f"Bearer {token}"),)
            for seq in (0, 1, 1):
                stub.PutFrame(pb.FrameRecord(stream_id="main", sequence=seq, bitstream=frame), metadata=md, timeout=10)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'lsic_frames_ingested_total{device="cam-m"} 2.0' in text
        assert "lsic_frames_duplicate_total 1.0" in text
        assert "lsic_ack_latency_seconds_bucket" in text and "lsic_decode_queue_depth" in text
    finally:
        cloud.stop()
