"""The cloud service over real gRPC on loopback: each bad input gets its own status while the
service stays up; ingest is idempotent; archive queries and reconstruction work."""

from __future__ import annotations

import time

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lsic.codec.bitstream import Container, TileEntry, parse
from lsic.v1 import lsic_pb2 as pb

from ..conftest import natural_image


@pytest.fixture(scope="module")
def frame(encoder):
    return encoder.encode(natural_image(300, 520), 4)


@pytest.fixture(scope="module")
def device(cloud):
    return cloud.add_device("cam-a")


def md(token):
    return (("authorization", f"Bearer {token}"),)


def put(stubs, token, data, seq, stream="main", **kw):
    return stubs[0].PutFrame(
        pb.FrameRecord(stream_id=stream, sequence=seq, capture_time_us=1_000 + seq, bitstream=data, **kw),
        metadata=md(token),
        timeout=30,
    )


def status_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as exc:
        call()
    return exc.value.code()


def test_store_and_duplicate(stubs, device, frame):
    assert put(stubs, device, frame, 0).status == pb.FrameAck.STORED
    assert put(stubs, device, frame, 0).status == pb.FrameAck.DUPLICATE


def test_no_credentials(stubs, frame):
    rec = pb.FrameRecord(stream_id="main", sequence=1, bitstream=frame)
    assert status_of(lambda: stubs[0].PutFrame(rec, timeout=10)) == grpc.StatusCode.UNAUTHENTICATED
    assert status_of(lambda: put(stubs, "cam-a:wrong", frame, 1)) == grpc.StatusCode.UNAUTHENTICATED


def test_revoked_device(cloud, stubs, frame):
    token = cloud.add_device("cam-revoked")
    assert put(stubs, token, frame, 0).status == pb.FrameAck.STORED
    cloud.cli("device", "revoke", "cam-revoked")
    assert status_of(lambda: put(stubs, token, frame, 1)) == grpc.StatusCode.UNAUTHENTICATED


def test_another_devices_stream(stubs, device, frame):
    assert status_of(lambda: put(stubs, device, frame, 5, device_id="cam-other")) == grpc.StatusCode.PERMISSION_DENIED


def test_oversized_message(stubs, device):
    big = b"LSIC" + bytes(5 * 1024 * 1024)  # the test service allows 4 MiB
    assert status_of(lambda: put(stubs, device, big, 6)) == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_corrupted_tile(stubs, device, frame):
    bad = bytearray(frame)
    bad[-5] ^= 0x10
    assert status_of(lambda: put(stubs, device, bytes(bad), 7)) == grpc.StatusCode.DATA_LOSS


def test_unknown_model(stubs, device, frame):
    p = parse(frame)
    h = p.header
    tiles = [TileEntry(k, p.data[o : o + n]) for k, o, n in zip(p.kinds, p.offsets, p.lengths, strict=True)]
    other = Container(h.width, h.height, h.tile_size, h.quality, "mystery-model", h.model_hash, tiles, h.version).to_bytes()
    assert status_of(lambda: put(stubs, device, other, 8)) == grpc.StatusCode.NOT_FOUND


def test_malformed_message(cloud, device):
    with grpc.insecure_channel(cloud.address) as ch:
        raw = ch.unary_unary("/lsic.v1.Ingest/PutFrame", request_serializer=None, response_deserializer=None)
        code = status_of(lambda: raw(b"\xff\xff\xff\xff\x0f garbage", metadata=md(device), timeout=10))
    assert code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)


def test_invalid_stream_and_not_a_bitstream(stubs, device, frame):
    assert status_of(lambda: put(stubs, device, frame, 9, stream="../etc")) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(lambda: put(stubs, device, b"hello", 10)) == grpc.StatusCode.INVALID_ARGUMENT


def test_operator_calls_need_operator_credentials(stubs, device):
    assert (
        status_of(lambda: stubs[1].ListDevices(pb.ListDevicesRequest(), timeout=10)) == grpc.StatusCode.UNAUTHENTICATED
    )
    assert (
        status_of(lambda: stubs[1].ListDevices(pb.ListDevicesRequest(), metadata=md(device), timeout=10))
        == grpc.StatusCode.PERMISSION_DENIED
    )


def test_service_still_healthy_after_all_that(channel):
    r = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert r.status == health_pb2.HealthCheckResponse.SERVING


def test_stream_ingest_list_reconstruct_region(cloud, stubs, operator_md, encoder, tmp_path):
    token = cloud.add_device("cam-b")
    img = natural_image(512, 768)
    data = encoder.encode(img, 6)
    recs = [pb.FrameRecord(stream_id="s1", sequence=i, capture_time_us=10_000 * i, bitstream=data) for i in range(5)]
    acks = list(stubs[0].StreamFrames(iter(recs + recs[:2]), metadata=md(token), timeout=60))
    assert [a.status for a in acks] == [pb.FrameAck.STORED] * 5 + [pb.FrameAck.DUPLICATE] * 2
    frames = (
        stubs[1]
        .ListFrames(
            pb.ListFramesRequest(device_id="cam-b", from_time_us=10_000, to_time_us=40_000), metadata=operator_md
        )
        .frames
    )
    assert [f.key.sequence for f in frames] == [1, 2, 3]
    key = pb.FrameKey(device_id="cam-b", stream_id="s1", sequence=2)
    region = stubs[1].Reconstruct(
        pb.ReconstructRequest(key=key, x=300, y=100, width=100, height=60), metadata=operator_md, timeout=60
    )
    assert (region.width, region.height, region.tiles_decoded) == (100, 60, 1)
    full = stubs[1].Reconstruct(pb.ReconstructRequest(key=key, downscale=2), metadata=operator_md, timeout=60)
    assert (full.width, full.height) == (384, 256)
    assert stubs[1].GetBitstream(key, metadata=operator_md).bitstream == data
    # the background decoder fills the reconstruction cache
    deadline = time.time() + 60
    while time.time() < deadline and not stubs[1].GetFrame(key, metadata=operator_md).decoded:
        time.sleep(0.3)
    assert stubs[1].GetFrame(key, metadata=operator_md).decoded
    # and the operator CLI reaches the same archive
    out = tmp_path / "f.png"
    cloud.cli(
        "frames", "get", "--device", "cam-b", "--stream", "s1", "--seq", "2", "-o", str(out), "--region", "0,0,64,32"
    )
    assert cv2.imread(str(out)).shape == (32, 64, 3)
    listing = cloud.cli("frames", "ls", "--device", "cam-b", "--json")
    assert '"seq": 4' in listing


def test_unchanged_tiles_reuse_the_previous_reconstruction(cloud, stubs, operator_md, encoder):
    token = cloud.add_device("cam-ref")
    img = natural_image(256, 512)
    moved = img.copy()
    moved[:, :256] = np.roll(img[:, :256], 7, axis=1)
    frames = [encoder.encode(img, 5), encoder.encode(moved, 5, unchanged={1}), encoder.encode(img, 5, unchanged={1})]
    recs = [pb.FrameRecord(stream_id="fixed", sequence=i, bitstream=f) for i, f in enumerate(frames)]
    assert all(
        a.status == pb.FrameAck.STORED for a in stubs[0].StreamFrames(iter(recs), metadata=md(token), timeout=30)
    )

    def png(seq, region=(0, 0, 0, 0)):
        key = pb.FrameKey(device_id="cam-ref", stream_id="fixed", sequence=seq)
        x, y, w, h = region
        r = stubs[1].Reconstruct(
            pb.ReconstructRequest(key=key, x=x, y=y, width=w, height=h), metadata=operator_md, timeout=60
        )
        return cv2.imdecode(np.frombuffer(r.png, np.uint8), cv2.IMREAD_COLOR)

    first = png(0)
    # on demand, before the decode worker got there, and after it did
    assert np.array_equal(png(2, (300, 0, 200, 256)), first[:, 300:500])
    deadline = time.time() + 60
    key = pb.FrameKey(device_id="cam-ref", stream_id="fixed", sequence=2)
    while time.time() < deadline and not stubs[1].GetFrame(key, metadata=operator_md).decoded:
        time.sleep(0.3)
    assert np.array_equal(png(2)[:, 300:], first[:, 300:])
