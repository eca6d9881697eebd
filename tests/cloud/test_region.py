"""A region of a stitched 8192x8192 frame is reconstructed from only the tiles it touches."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from lsic.codec.bench.tiling import big_image
from lsic.codec.metrics import psnr
from lsic.testing import CloudProcess
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc


@pytest.mark.slow
def test_region_of_8192_frame_decodes_only_touched_tiles(tmp_path, encoder):
    img = big_image(8192)
    data = encoder.encode(img, 2)
    cloud = CloudProcess(tmp_path / "data", extra=["--no-decode", "--decode-backend", "onnx"]).start()
    try:
        token = cloud.add_device("drone")
        with grpc.insecure_channel(cloud.address, options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
            rec = pb.FrameRecord(stream_id="survey", sequence=0, bitstream=data)
            ack = pb_grpc.IngestStub(ch).PutFrame(rec, metadata=(("authorization", f"Bearer {token}"),), timeout=60)
            assert ack.status == pb.FrameAck.STORED
            archive = pb_grpc.ArchiveStub(ch)
            md = (("authorization", f"Bearer {cloud.operator_token()}"),)
            key = pb.FrameKey(device_id="drone", stream_id="survey", sequence=0)
            info = archive.GetFrame(key, metadata=md)
            assert (info.width, info.height, info.tiles) == (8192, 8192, 1024)
            # 1000x600 window straddling tile borders: 5 columns x 4 rows of 256-pixel tiles
            r = archive.Reconstruct(
                pb.ReconstructRequest(key=key, x=4000, y=3000, width=1000, height=600), metadata=md, timeout=120
            )
            assert (r.width, r.height) == (1000, 600)
            assert r.tiles_decoded == 20
            import cv2

            out = cv2.cvtColor(cv2.imdecode(np.frombuffer(r.png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            ref = img[3000:3600, 4000:5000]
            assert psnr(out, ref) > 15
    finally:
        cloud.stop()
