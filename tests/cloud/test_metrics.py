"""Operators can scrape Prometheus metrics and check health."""

from __future__ import annotations

import time
import urllib.error
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


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_health_and_metrics_of_the_service_and_its_decode_worker(tmp_path, encoder):
    """The operations port answers /healthz and /readyz in plain HTTP, so a kubelet can probe a
    TLS-only service; the decode worker serves its own beside it (PORT+1)."""
    port = free_port()
    cloud = CloudProcess(tmp_path / "data", extra=["--metrics-port", str(port), "--decode-backend", "onnx"]).start()
    try:
        assert get(f"http://127.0.0.1:{port}/healthz") == (200, '{"ok": true, "problems": []}')
        assert get(f"http://127.0.0.1:{port}/readyz")[0] == 200
        assert get(f"http://127.0.0.1:{port}/nothing")[0] == 404
        token = cloud.add_device("cam-h")
        with grpc.insecure_channel(cloud.address) as ch:
            rec = pb.FrameRecord(stream_id="main", sequence=0, bitstream=encoder.encode(natural_image(64, 64), 1))
            pb_grpc.IngestStub(ch).PutFrame(rec, metadata=(("authorization", f"Bearer {token}"),), timeout=10)
        deadline = time.time() + 60
        text = ""
        while 'lsic_decode_frames_finished_total{state="decoded"} 1.0' not in text and time.time() < deadline:
            time.sleep(0.5)
            text = get(f"http://127.0.0.1:{port + 1}/metrics")[1]
        assert 'lsic_decode_frames_finished_total{state="decoded"} 1.0' in text
        assert get(f"http://127.0.0.1:{port + 1}/readyz")[0] == 200
    finally:
        cloud.stop()
