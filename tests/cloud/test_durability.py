"""kill -9 during ingest: every acknowledged frame is present and decodable afterwards, and no
partially written blob is ever visible."""

from __future__ import annotations

import threading
import time

import grpc

from lsic.codec.bitstream import parse
from lsic.testing import CloudProcess
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc

from ..conftest import natural_image


def test_acknowledged_frames_survive_kill_9(tmp_path, encoder, decoder):
    data_dir = tmp_path / "data"
    cloud = CloudProcess(data_dir, extra=["--no-decode"]).start()
    token = cloud.add_device("cam-k")
    frame = encoder.encode(natural_image(256, 384), 3)
    acked: list[int] = []

    def send():
        with grpc.insecure_channel(cloud.address) as ch:
            stub = pb_grpc.IngestStub(ch)
            recs = (pb.FrameRecord(stream_id="main", sequence=i, bitstream=frame) for i in range(100_000))
            try:
                for ack in stub.StreamFrames(recs, metadata=(("authorization", f"Bearer {token}"),)):
                    if ack.status == pb.FrameAck.STORED:
                        acked.append(ack.sequence)
            except grpc.RpcError:
                pass

    t = threading.Thread(target=send)
    t.start()
    deadline = time.time() + 60
    while len(acked) < 40 and time.time() < deadline:
        time.sleep(0.05)
    cloud.kill()
    t.join(30)
    assert len(acked) >= 40
    # A crash may leave a temporary file behind, never a partial blob under a frame's name.
    names = [b.name for b in (data_dir / "blobs").rglob("*") if b.is_file()]
    assert all(n.endswith(".lsic") or n.startswith(".tmp-") for n in names)
    cloud2 = CloudProcess(data_dir, port=cloud.port, extra=["--no-decode"]).start()
    try:
        with grpc.insecure_channel(cloud2.address) as ch:
            archive = pb_grpc.ArchiveStub(ch)
            md = (("authorization", f"Bearer {cloud2.operator_token()}"),)
            stored = {
                f.key.sequence
                for f in archive.ListFrames(pb.ListFramesRequest(device_id="cam-k", limit=10000), metadata=md).frames
            }
            assert set(acked) <= stored
            for seq in acked[-3:]:
                got = archive.GetBitstream(
                    pb.FrameKey(device_id="cam-k", stream_id="main", sequence=seq), metadata=md
                ).bitstream
                assert got == frame
            # every stored blob is complete: it parses and its tiles pass their checksums
            for path in (data_dir / "blobs" / "frames").rglob("*.lsic"):
                p = parse(path.read_bytes())
                for i in range(len(p.kinds)):
                    p.tile_payload(i)
        assert decoder.decode(frame).rgb.shape == (256, 384, 3)
    finally:
        cloud2.stop()
