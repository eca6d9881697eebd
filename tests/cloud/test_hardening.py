"""The cloud service against racing writers, hostile clients and a bad day in production, over
real gRPC on loopback: nothing acknowledged is lost, and nobody stalls it for everyone."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2_grpc

from lsic.codec.bitstream import TILE_SAME_AS_PREVIOUS, Container, TileEntry
from lsic.testing import CloudProcess, cloud_command, fill_disk, free_port
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc

from ..conftest import natural_image


def md(token: str):
    return (("authorization", f"Bearer {token}"),)


def record(seq: int, data: bytes, stream: str = "main") -> pb.FrameRecord:
    return pb.FrameRecord(stream_id=stream, sequence=seq, capture_time_us=1_000_000 + seq % 1000, bitstream=data)


@pytest.fixture(scope="module")
def frames(encoder):
    """Eight different small bitstreams."""
    return [encoder.encode(natural_image(64 + 8 * i, 96), 3) for i in range(8)]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    data = tmp_path_factory.mktemp("hardening") / "data"
    port = free_port()
    c = CloudProcess(data, extra=["--decode-backend", "onnx", "--metrics-port", str(port)]).start()
    c.metrics_port = port
    yield c
    c.stop()


def metric(cloud, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{cloud.metrics_port}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def put_many(cloud, token: str, recs: list[pb.FrameRecord]) -> list[pb.FrameAck]:
    """Each record on its own channel and stream, all at once; their acknowledgements."""

    def put(rec):
        with grpc.insecure_channel(cloud.address) as ch:
            return next(pb_grpc.IngestStub(ch).StreamFrames(iter([rec]), metadata=md(token), timeout=30))

    with ThreadPoolExecutor(len(recs)) as pool:
        return list(pool.map(put, recs))


def test_racing_writers_of_one_key_one_wins_and_the_archive_holds_its_content(cloud, frames):
    token = cloud.add_device("cam-race")
    before = metric(cloud, "lsic_frames_conflict_total")
    for seq in range(5):
        acks = put_many(cloud, token, [record(seq, frames[i]) for i in range(8)])
        winners = [i for i, a in enumerate(acks) if a.status == pb.FrameAck.STORED]
        assert len(winners) == 1 and sum(a.status == pb.FrameAck.CONFLICT for a in acks) == 7
        with grpc.insecure_channel(cloud.address) as ch:
            key = pb.FrameKey(device_id="cam-race", stream_id="main", sequence=seq)
            stored = pb_grpc.ArchiveStub(ch).GetBitstream(key, metadata=md(cloud.operator_token())).bitstream
        assert stored == frames[winners[0]], "what is stored is what was answered STORED"
    assert metric(cloud, "lsic_frames_conflict_total") - before == 35


def test_racing_copies_of_one_frame_are_stored_once(cloud, frames):
    token = cloud.add_device("cam-copies")
    acks = put_many(cloud, token, [record(0, frames[0]) for _ in range(8)])
    statuses = Counter(a.status for a in acks)
    assert statuses[pb.FrameAck.STORED] == 1
    # the others: the same content already stored, or "being stored, retry" (never CONFLICT)
    assert statuses[pb.FrameAck.STORED] + statuses[pb.FrameAck.DUPLICATE] + statuses[pb.FrameAck.REJECTED] == 8
    assert all(a.code == grpc.StatusCode.UNAVAILABLE.value[0] for a in acks if a.status == pb.FrameAck.REJECTED)
    again = put_many(cloud, token, [record(0, frames[0])])
    assert again[0].status == pb.FrameAck.DUPLICATE


def oversized(width: int, height: int, tile: int) -> bytes:
    """A small, well-formed bitstream whose header claims a huge frame (every tile a reference)."""
    from lsic.codec.package import load_package

    pkg = load_package("default")
    n = -(-width // tile) * -(-height // tile)
    return Container(
        width, height, tile, 3, pkg.id, pkg.hash, [TileEntry(TILE_SAME_AS_PREVIOUS)] * n, version=2
    ).to_bytes()


def test_oversized_claims_are_refused_before_anything_is_allocated(cloud, frames, tmp_path):
    token = cloud.add_device("cam-huge")
    claims = [oversized(1 << 20, 1 << 20, 65472), oversized(65472, 65472, 1024), oversized(8192, 8192, 8192)]
    assert len(claims[0]) < 4000
    with grpc.insecure_channel(cloud.address) as ch:
        stream = pb_grpc.IngestStub(ch).StreamFrames(
            iter([record(i, c) for i, c in enumerate(claims)] + [record(3, frames[0])]), metadata=md(token), timeout=30
        )
        acks = list(stream)
    assert [a.status for a in acks[:3]] == [pb.FrameAck.REJECTED] * 3
    assert all(a.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "limit" in a.message for a in acks[:3])
    assert acks[3].status == pb.FrameAck.STORED, "the stream goes on"
    path = tmp_path / "huge.lsic"
    for claim in claims:
        path.write_bytes(claim)
        r = subprocess.run(
            ["lsic", "decode", str(path), "-o", str(tmp_path / "x.png")], capture_output=True, text=True, timeout=60,
            env={**os.environ, "PATH": str(Path(cloud_command()[0]).parent) + os.pathsep + os.environ["PATH"]},
        )
        assert r.returncode == 14 and "exceeds the limit" in r.stderr and "Traceback" not in r.stderr


def test_exact_validation_and_bounded_messages(cloud, frames):
    token = cloud.add_device("cam-valid")
    with grpc.insecure_channel(cloud.address) as ch:
        recs = [
            record(0, frames[0], stream="ok\n"),
            record(1, frames[0], stream="x" * 100_000),
            record(1 << 63, frames[0]),
            record(2, frames[0]),
        ]
        acks = list(pb_grpc.IngestStub(ch).StreamFrames(iter(recs), metadata=md(token), timeout=30))
    assert [a.status for a in acks] == [pb.FrameAck.REJECTED] * 3 + [pb.FrameAck.STORED]
    assert all(a.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] for a in acks[:3])
    assert all(len(a.message) < 200 for a in acks)
    assert not (cloud.data / "blobs" / "frames" / "cam-valid" / "ok\n").exists()
    with pytest.raises(subprocess.CalledProcessError) as exc:
        cloud.cli("device", "add", "cam\n")
    assert "invalid device id" in exc.value.stderr


def test_archive_requests_beyond_any_frame_get_a_status_and_a_reason(cloud, frames):
    token = cloud.add_device("cam-keys")
    with grpc.insecure_channel(cloud.address) as ch:
        assert pb_grpc.IngestStub(ch).PutFrame(record(0, frames[7]), metadata=md(token), timeout=30).status == (
            pb.FrameAck.STORED
        )
        archive, op = pb_grpc.ArchiveStub(ch), md(cloud.operator_token())
        for seq in ((1 << 63) - 1, 1 << 63, (1 << 64) - 1):
            with pytest.raises(grpc.RpcError) as exc:
                archive.GetFrame(pb.FrameKey(device_id="cam-keys", stream_id="main", sequence=seq), metadata=op)
            assert exc.value.code() == grpc.StatusCode.NOT_FOUND, seq
        listed = archive.ListFrames(pb.ListFramesRequest(device_id="cam-keys", after_sequence=(1 << 64) - 1),
                                    metadata=op, timeout=10)
        assert list(listed.frames) == []
        key = pb.FrameKey(device_id="cam-keys", stream_id="main", sequence=0)
        t0 = time.monotonic()
        for region in ((0, 0, 4_000_000_000, 4_000_000_000), (100, 0, 64, 64)):  # the frame is 96x120
            with pytest.raises(grpc.RpcError) as exc:
                archive.Reconstruct(pb.ReconstructRequest(key=key, x=region[0], y=region[1], width=region[2],
                                                          height=region[3]), metadata=op, timeout=30)
            assert exc.value.code() == grpc.StatusCode.OUT_OF_RANGE and "not inside the 96x120 image" in (
                exc.value.details()
            )
        assert time.monotonic() - t0 < 10, "refused before anything was allocated"
    bad = subprocess.run([*cloud_command(), "frames", "get", "--device", "cam-keys", "--seq", "-1"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--seq: must be 0.." in bad.stderr and "Traceback" not in bad.stderr


def test_a_bitstream_lost_from_the_blob_store_is_data_loss_by_name(cloud, frames):
    token = cloud.add_device("cam-lost")
    with grpc.insecure_channel(cloud.address) as ch:
        assert pb_grpc.IngestStub(ch).PutFrame(record(0, frames[6]), metadata=md(token), timeout=30).status == (
            pb.FrameAck.STORED
        )
        (blob,) = (cloud.data / "blobs" / "frames" / "cam-lost" / "main").glob("*.lsic")
        blob.unlink()
        key = pb.FrameKey(device_id="cam-lost", stream_id="main", sequence=0)
        with pytest.raises(grpc.RpcError) as exc:
            pb_grpc.ArchiveStub(ch).GetBitstream(key, metadata=md(cloud.operator_token()), timeout=30)
    assert exc.value.code() == grpc.StatusCode.DATA_LOSS
    assert exc.value.details() == "the bitstream of frame cam-lost/main/0 is missing from the blob store"


def test_idle_http_connections_from_one_address_cannot_take_the_metrics_port(cloud):
    """Prometheus and the kubelet keep their answers while one address holds connections open."""
    import socket

    from lsic.cloud.http_server import PER_PEER

    def connect(source: str) -> socket.socket:
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(5)
        s.connect(("127.0.0.1", cloud.metrics_port))
        return s

    idle = [connect("127.0.0.2") for _ in range(PER_PEER)]
    try:
        time.sleep(0.5)
        extra = connect("127.0.0.2")
        assert extra.recv(100).startswith(b"HTTP/1.1 503"), "refused at once, not left hanging"
        extra.close()
        assert urllib.request.urlopen(f"http://127.0.0.1:{cloud.metrics_port}/readyz", timeout=5).status == 200
        assert metric(cloud, 'lsic_calls_refused_total{budget="http"}') >= 1
    finally:
        for s in idle:
            s.close()
    time.sleep(0.5)
    again = connect("127.0.0.2")
    again.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
    assert again.recv(100).startswith(b"HTTP/1.0 200")
    again.close()


def test_files_holding_secrets_are_the_owners_alone(cloud):
    for name in ("metadata.db", "operator.token"):
        mode = stat.S_IMODE((cloud.data / name).stat().st_mode)
        assert mode == 0o600, f"{name} is {oct(mode)}"


def test_a_second_service_on_a_taken_port_refuses_clearly(cloud, tmp_path):
    cmd = [*cloud_command(), "serve", "--insecure", "--listen", cloud.address, "--data", str(tmp_path / "d2")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 25 and "cannot listen on" in r.stderr and "Traceback" not in r.stderr


def test_anonymous_stream_floods_do_not_starve_devices(cloud, frames):
    """512 reflection streams that never send: all but a few are refused at once, those few are
    cut after 10 s of silence, and a device is answered in its usual time throughout."""
    token = cloud.add_device("cam-flood")
    release = threading.Event()
    codes: list[str] = []

    def silent():
        release.wait(60)
        yield from ()

    def open_stream(channel):
        try:
            list(reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(silent(), timeout=60))
            codes.append("OK")
        except grpc.RpcError as exc:
            codes.append(exc.code().name)

    channels = [grpc.insecure_channel(cloud.address) for _ in range(8)]
    threads = [threading.Thread(target=open_stream, args=(channels[i % 8],)) for i in range(512)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        latencies = []
        with grpc.insecure_channel(cloud.address) as ch:
            stub = pb_grpc.IngestStub(ch)
            for seq in range(20):
                t0 = time.perf_counter()
                assert stub.PutFrame(record(seq, frames[0]), metadata=md(token), timeout=10).status == pb.FrameAck.STORED
                latencies.append(time.perf_counter() - t0)
        assert max(latencies) < 1.0
        deadline = time.time() + 30
        while len(codes) < 512 and time.time() < deadline:
            time.sleep(0.5)
        counts = Counter(codes)
        assert counts["RESOURCE_EXHAUSTED"] >= 500 and counts["CANCELLED"] == 512 - counts["RESOURCE_EXHAUSTED"]
    finally:
        release.set()
        for t in threads:
            t.join(10)
        for c in channels:
            c.close()


def test_a_frame_that_cannot_be_decoded_is_marked_failed_and_decoding_goes_on(cloud, frames, encoder):
    """A frame whose reference tiles have no earlier frame fails with its reason, visible in the
    archive; the frames after it are decoded."""
    token = cloud.add_device("cam-fail")
    refs = encoder.encode(natural_image(128, 192), 3, unchanged={0, 1})
    with grpc.insecure_channel(cloud.address) as ch:
        stub = pb_grpc.IngestStub(ch)
        acks = list(stub.StreamFrames(iter([record(0, refs), record(1, frames[1])]), metadata=md(token), timeout=30))
        assert [a.status for a in acks] == [pb.FrameAck.STORED] * 2
        archive = pb_grpc.ArchiveStub(ch)
        deadline = time.time() + 120
        while time.time() < deadline:
            infos = archive.ListFrames(pb.ListFramesRequest(device_id="cam-fail"), metadata=md(cloud.operator_token()))
            states = [f.decode_state for f in infos.frames]
            if "waiting" not in states:
                break
            time.sleep(0.3)
    assert states == ["failed", "decoded"]
    assert "not in the archive" in infos.frames[0].decode_error


def test_a_killed_decode_worker_is_restarted_and_decoding_goes_on(cloud, frames):
    token = cloud.add_device("cam-restart")
    first = cloud.decode_worker_pid()
    os.kill(first, 9)
    with grpc.insecure_channel(cloud.address) as ch:
        stub = pb_grpc.IngestStub(ch)
        recs = [record(i, frames[i % 8]) for i in range(6)]
        assert all(a.status == pb.FrameAck.STORED for a in stub.StreamFrames(iter(recs), metadata=md(token)))
        archive = pb_grpc.ArchiveStub(ch)
        deadline = time.time() + 120
        while time.time() < deadline:
            infos = archive.ListFrames(pb.ListFramesRequest(device_id="cam-restart"), metadata=md(cloud.operator_token()))
            if all(f.decode_state == "decoded" for f in infos.frames):
                break
            time.sleep(0.5)
    assert [f.decode_state for f in infos.frames] == ["decoded"] * 6
    assert cloud.decode_worker_pid() != first
    assert metric(cloud, "lsic_decode_worker_restarts_total") >= 1


def test_a_full_disk_refuses_frames_one_by_one_and_nothing_stops(small_disk, frames):
    port = free_port()
    extra = ["--decode-backend", "onnx", "--metrics-port", str(port), "--recon-cache-mb", "1", "--disk-reserve-mb", "2"]
    cloud = CloudProcess(small_disk / "data", extra=extra, log=small_disk.parent / "cloud.log").start()
    cloud.metrics_port = port
    try:
        token = cloud.add_device("cam-full")
        worker = cloud.decode_worker_pid()
        ack = iter([])
        requests: list[pb.FrameRecord] = []
        lock = threading.Condition()

        def feed():
            i = 0
            while True:
                with lock:
                    while len(requests) <= i:
                        lock.wait()
                    rec = requests[i]
                if rec is None:
                    return
                yield rec
                i += 1

        def send(rec):
            with lock:
                requests.append(rec)
                lock.notify_all()
            return next(ack)

        with grpc.insecure_channel(cloud.address) as ch:
            ack = pb_grpc.IngestStub(ch).StreamFrames(feed(), metadata=md(token), timeout=120)
            assert all(send(record(i, frames[i % 8])).status == pb.FrameAck.STORED for i in range(10))
            fill_disk(small_disk / "filler")
            full = [send(record(10 + i, frames[i % 8])) for i in range(5)]
            assert all(a.status == pb.FrameAck.REJECTED for a in full)
            assert all(a.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] for a in full), [a.message for a in full]
            (small_disk / "filler").unlink()
            assert all(send(record(10 + i, frames[i % 8])).status == pb.FrameAck.STORED for i in range(5)), (
                "the same stream stores again once there is room"
            )
            with lock:
                requests.append(None)
                lock.notify_all()
        wait_decoded(cloud, "cam-full", 15)
        assert cloud.decode_worker_pid() == worker, "the decode worker paused; it did not exit"
        recon = sum(p.stat().st_size for p in (small_disk / "data" / "blobs" / "recon").rglob("*.png"))
        assert recon <= (1 << 20) + 200_000, "the reconstruction cache keeps to its cap"
    finally:
        cloud.stop()


def wait_decoded(cloud, device: str, n: int, timeout: float = 120) -> list:
    with grpc.insecure_channel(cloud.address) as ch:
        archive = pb_grpc.ArchiveStub(ch)
        deadline = time.time() + timeout
        while time.time() < deadline:
            infos = archive.ListFrames(pb.ListFramesRequest(device_id=device), metadata=md(cloud.operator_token()))
            if len(infos.frames) == n and all(f.decode_state in ("decoded", "evicted") for f in infos.frames):
                return list(infos.frames)
            time.sleep(0.5)
    raise TimeoutError(f"{device}: {n} frames not decoded in {timeout}s")
