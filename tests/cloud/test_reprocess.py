"""Bulk reprocessing on a local Ray cluster that the test starts: a device's range exported as
PNG, re-encoded with another model, resumed after an interruption."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from lsic.codec.bitstream import parse
from lsic.codec.decoder import Decoder
from lsic.codec.image_io import read_rgb
from lsic.testing import CloudProcess, cloud_command, free_port
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc

from ..conftest import natural_image

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a Ray cluster starts for the module


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    exe = Path(sys.executable).parent / "ray"
    port = free_port()
    tmp = Path("/tmp") / f"lsic-ray-{port}"  # Ray's socket paths must stay short
    cmd = [str(exe), "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
           f"--temp-dir={tmp}", "--disable-usage-stats"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    yield f"127.0.0.1:{port}"
    subprocess.run([str(exe), "stop", "--force"], capture_output=True, timeout=120)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def archive(tmp_path_factory, encoder):
    data = tmp_path_factory.mktemp("reprocess") / "data"
    cloud = CloudProcess(data, extra=["--no-decode"]).start()
    token = cloud.add_device("cam-bulk")
    images = [natural_image(160 + 16 * (i % 3), 224) for i in range(12)]
    with grpc.insecure_channel(cloud.address) as ch:
        recs = [pb.FrameRecord(stream_id="main", sequence=i, capture_time_us=10_000 + i, bitstream=encoder.encode(im, 4))
                for i, im in enumerate(images)]
        acks = list(pb_grpc.IngestStub(ch).StreamFrames(iter(recs), metadata=(("authorization", f"Bearer {token}"),)))
    assert all(a.status == pb.FrameAck.STORED for a in acks)
    cloud.stop()  # reprocessing reads the archive directly, with no service running
    yield data, images, [r.bitstream for r in recs]


def reprocess(data: Path, cluster: str, *args: str) -> dict:
    cmd = [*cloud_command(), "reprocess", *args, "--device", "cam-bulk", "--data", str(data), "--ray-address",
           cluster, "--chunk", "3"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_export_a_range_as_png_resuming_where_it_stopped(archive, ray_cluster, tmp_path):
    data, _, streams = archive
    out = tmp_path / "png"
    first = reprocess(data, ray_cluster, "png", "--out", str(out), "--max-frames", "5")
    assert first["done"] == 5
    with (out / "done.jsonl").open("a") as manifest:  # a run killed while writing its manifest
        manifest.write('{"device": "cam-bulk", "str')
    rest = reprocess(data, ray_cluster, "png", "--out", str(out), "--from-us", "10000", "--to-us", "10012")
    assert rest == {**rest, "frames": 12, "skipped": 5, "done": 7, "failed": 0}
    pngs = sorted((out / "cam-bulk" / "main").glob("*.png"))
    assert len(pngs) == 12
    dec = Decoder(backend="onnx")
    for i in (0, 7, 11):  # the archive's own reconstruction (ONNX and torch synthesis round alike but for ±1)
        diff = np.abs(read_rgb(pngs[i]).astype(int) - dec.decode(streams[i]).rgb)
        assert diff.max() <= 1 and diff.mean() < 0.01


def test_reencode_with_another_model_package(archive, ray_cluster, tmp_path):
    data, images, _ = archive
    out = tmp_path / "lite"
    summary = reprocess(data, ray_cluster, "reencode", "--out", str(out), "--model", "lite", "--quality", "5")
    assert summary["done"] == 12
    files = sorted((out / "cam-bulk" / "main").glob("*.lsic"))
    assert len(files) == 12 and parse(files[4].read_bytes()).header.model_id == "lite"
    assert Decoder(backend="onnx").decode(files[4].read_bytes()).rgb.shape == images[4].shape


@pytest.mark.parametrize(
    "args, code, says",
    [
        (["reencode", "--model", "nosuch"], 9, "unknown model 'nosuch'"),
        (["reencode", "--model", "lite", "--quality", "11"], 11, "quality must be 1..10 for model lite"),
        (["png", "--device", "cam-none"], 2, "no device 'cam-none' is registered"),
        (["png", "--chunk", "0"], 2, "--chunk: must be 1 or more"),
        (["png"], 2, "no Ray cluster answers at 127.0.0.1:1"),
    ],
)
def test_a_job_that_cannot_run_is_refused_at_once(archive, tmp_path, args, code, says):
    data, _, _ = archive
    cmd = [*cloud_command(), "reprocess", "--device", "cam-bulk", *args, "--data", str(data), "--out",
           str(tmp_path / "out"), "--ray-address", "127.0.0.1:1"]  # no cluster there
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == code and says in r.stderr and "Traceback" not in r.stderr
