"""The edge agent against the real cloud service on loopback, in the edge-only environment:
store and forward through cloud restarts, agent crashes and a full spool."""

from __future__ import annotations

import subprocess
import time

import grpc
import numpy as np

from lsic.testing import CloudProcess, cloud_python
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc

from .conftest import EdgeRun, archive_frames, wait_for_frames

IN_ORDER = """
import sys
from pathlib import Path

import numpy as np

from lsic.codec.decoder import Decoder

folder, wanted = Path(sys.argv[1]), set(sys.argv[2].split(","))
decoder, latents, keep = Decoder(backend="onnx"), None, {}
for path in sorted(folder.glob("*.lsic")):
    out = decoder.decode(path.read_bytes(), latents=latents)
    latents = out.latents
    if str(int(path.stem)) in wanted:
        keep[path.stem] = out.rgb
np.savez(folder / "frames.npz", **keep)
"""


def assert_complete(frames, n):
    seqs = [f.key.sequence for f in frames]
    assert seqs == list(range(n)), "every frame stored once, in order"
    times = [f.capture_time_us for f in frames]
    assert times == sorted(times) and len(set(times)) == n and times[0] > 1.6e15


def test_200_frames_of_the_clip_stored_decodable_in_order(cloud, video, tmp_path):
    """A video file is coded temporally by default: keyframes, then predicted frames. Seeking
    to any frame through the archive API gives exactly what decoding the stream in order gives,
    bit for bit (the int8 edge encoder and the cloud decoder hold the same latents)."""
    token = cloud.add_device("cam-1")
    run = EdgeRun(
        cloud, token, "cam-1", tmp_path / "spool", "--source", str(video), "--max-frames", "200", "--timeout", "240",
        "--keyframe-interval", "50",
    )
    code, summary = run.wait(300)
    assert code == 0, run.log.read_text()[-3000:]
    assert summary["acknowledged"] == 200 and summary["compression_ratio"] > 50
    assert summary["keyframes"] == 4 and summary["coded_blocks"] < 0.5 * summary["blocks"]
    assert summary["achieved_kbps"] > 20, "the rate is reported at a fixed quality too"
    frames = archive_frames(cloud, "cam-1")
    assert_complete(frames, 200)
    assert (frames[0].width, frames[0].height) == (480, 360)
    seek = {seq: cloud.reconstruct("cam-1", "main", seq) for seq in (137, 0, 99, 199)}  # out of order
    streams = tmp_path / "bitstreams"
    streams.mkdir()
    with grpc.insecure_channel(cloud.address) as ch:
        md = (("authorization", f"Bearer {cloud.operator_token()}"),)
        archive = pb_grpc.ArchiveStub(ch)
        for seq in range(200):
            key = pb.FrameKey(device_id="cam-1", stream_id="main", sequence=seq)
            (streams / f"{seq:05d}.lsic").write_bytes(archive.GetBitstream(key, metadata=md).bitstream)
    # Decoded in order where a decoder is installed (this environment has only the encoder).
    subprocess.run([cloud_python(), "-c", IN_ORDER, str(streams), ",".join(map(str, seek))], check=True, timeout=600)
    with np.load(streams / "frames.npz") as in_order:
        for seq, rgb in seek.items():
            assert np.array_equal(in_order[f"{seq:05d}"], rgb), f"frame {seq}"


def test_cloud_down_for_10s_mid_stream_loses_and_duplicates_nothing(tmp_path, video):
    cloud = CloudProcess(tmp_path / "cloud", extra=["--decode-backend", "onnx", "--no-decode"]).start()
    token = cloud.add_device("cam-2")
    run = EdgeRun(
        cloud,
        token,
        "cam-2",
        tmp_path / "spool",
        "--source",
        str(video),
        "--max-frames",
        "120",
        "--max-fps",
        "15",
        "--timeout",
        "240",
    )
    try:
        wait_for_frames(cloud, "cam-2", 30)
        cloud.kill()
        time.sleep(10)
        cloud = CloudProcess(
            tmp_path / "cloud", port=cloud.port, extra=["--decode-backend", "onnx", "--no-decode"]
        ).start()
        code, summary = run.wait(300)
        assert code == 0, run.log.read_text()[-3000:]
        assert summary["acknowledged"] >= 120
        assert_complete(archive_frames(cloud, "cam-2"), 120)
    finally:
        cloud.stop()


def test_agent_kill_9_and_restart_loses_and_duplicates_nothing(cloud, video, tmp_path):
    token = cloud.add_device("cam-3")
    spool = tmp_path / "spool"
    run = EdgeRun(cloud, token, "cam-3", spool, "--source", str(video), "--max-frames", "300", "--max-fps", "20")
    wait_for_frames(cloud, "cam-3", 20)
    run.kill9()
    before = len(archive_frames(cloud, "cam-3"))
    left = list((spool / "cam-3" / "main").glob("*.rec"))
    run2 = EdgeRun(cloud, token, "cam-3", spool, "--source", str(video), "--max-frames", "30", "--timeout", "120")
    code, _ = run2.wait(200)
    assert code == 0, run2.log.read_text()[-3000:]
    frames = archive_frames(cloud, "cam-3")
    seqs = [f.key.sequence for f in frames]
    assert len(seqs) == len(set(seqs)), "no duplicates"
    assert len(frames) >= before + 30 and len(frames) >= before + len(left)
    gaps = sorted(set(range(max(seqs) + 1)) - set(seqs))
    assert len(gaps) <= 1, f"at most the frame being captured at the kill is missing, got {gaps}"
    assert not list((spool / "cam-3" / "main").glob("*.rec")), "spool drained"


def test_full_spool_drop_oldest_while_cloud_is_down(tmp_path, video):
    cloud = CloudProcess(tmp_path / "cloud", extra=["--decode-backend", "onnx"]).start()
    token = cloud.add_device("cam-4")
    cloud.stop()  # the cloud is down for the whole run
    run = EdgeRun(
        cloud,
        token,
        "cam-4",
        tmp_path / "spool",
        "--source",
        str(video),
        "--max-frames",
        "40",
        "--spool-max-mb",
        "0.05",
        "--timeout",
        "15",
    )
    code, summary = run.wait(120)
    assert code == 1  # frames are left unacknowledged: reported, not hidden
    assert summary["captured"] == 40 and summary["encoded"] == 40
    assert summary["dropped_spool"] > 0 and summary["acknowledged"] == 0
    left = list((tmp_path / "spool" / "cam-4" / "main").glob("*.rec"))
    assert 0 < len(left) < 40
    assert sum(p.stat().st_size for p in left) <= 0.05 * 1024 * 1024
    assert '"dropped oldest frame"' in run.log.read_text() or "dropped oldest frame" in run.log.read_text()


def test_full_spool_pause_policy_waits_for_the_cloud(tmp_path, video):
    cloud = CloudProcess(tmp_path / "cloud", extra=["--decode-backend", "onnx", "--no-decode"]).start()
    token = cloud.add_device("cam-5")
    cloud.stop()
    run = EdgeRun(
        cloud,
        token,
        "cam-5",
        tmp_path / "spool",
        "--source",
        str(video),
        "--max-frames",
        "30",
        "--spool-max-mb",
        "0.03",
        "--spool-policy",
        "pause",
        "--timeout",
        "120",
    )
    time.sleep(6)
    assert run.proc.poll() is None, "the agent keeps running while paused"
    spooled = list((tmp_path / "spool" / "cam-5" / "main").glob("*.rec"))
    assert 0 < len(spooled) < 30
    cloud = CloudProcess(tmp_path / "cloud", port=cloud.port, extra=["--decode-backend", "onnx", "--no-decode"]).start()
    try:
        code, summary = run.wait(150)
        assert code == 0 and summary["dropped_spool"] == 0
        assert_complete(archive_frames(cloud, "cam-5"), 30)
    finally:
        cloud.stop()


def test_target_kbps_is_held_on_the_clip(cloud, video, tmp_path):
    token = cloud.add_device("cam-6")
    run = EdgeRun(
        cloud,
        token,
        "cam-6",
        tmp_path / "spool",
        "--source",
        str(video),
        "--max-frames",
        "60",
        "--target-kbps",
        "200",
        "--timeout",
        "120",
    )
    code, summary = run.wait(200)
    assert code == 0, run.log.read_text()[-3000:]
    assert 0 < summary["achieved_kbps"] <= 200 * 1.1
    assert summary["encoded"] == 60 and summary["captured"] == 60 + summary["dropped_rate"]
    assert summary["seconds"] >= 5.5, "the file plays at its own 10 frames/s, as a camera would"
    assert summary["dropped_rate"] <= 0.15 * summary["captured"], "a frame is dropped only when even quality 1 would overshoot"


def test_sigterm_stops_the_agent_cleanly(cloud, tmp_path):
    import signal

    token = cloud.add_device("cam-7")
    run = EdgeRun(
        cloud,
        token,
        "cam-7",
        tmp_path / "spool",
        "--source",
        "builtin",
        "--loop",
        "--max-fps",
        "5",
        "--status-every",
        "0.2",
    )
    wait_for_frames(cloud, "cam-7", 3)
    run.proc.send_signal(signal.SIGTERM)
    code, summary = run.wait(30)
    assert code == 0 and summary["encoded"] >= 3
    log_text = run.log.read_text()
    assert '"msg": "status"' in log_text  # the periodic status line
    assert '"final": true' in log_text  # and the last one, written on shutdown
