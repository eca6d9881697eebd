"""`lsic-cloud` as an operator runs it: the usual mistakes get one line saying what to do."""

from __future__ import annotations

import os
import subprocess

import grpc
import pytest

from lsic.testing import cloud_command
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc

from ..conftest import natural_image


def cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LSIC_OPERATOR_TOKEN", "LSIC_DATA")}
    return subprocess.run([*cloud_command(), *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def stored(cloud, encoder):
    token = cloud.add_device("cam-cli")
    with grpc.insecure_channel(cloud.address) as ch:
        stub = pb_grpc.IngestStub(ch)
        for seq, width in ((0, 96), (1, 128), (2, 160)):
            rec = pb.FrameRecord(stream_id="main", sequence=seq, capture_time_us=1000 + seq,
                                 bitstream=encoder.encode(natural_image(64, width), 3))
            stub.PutFrame(rec, metadata=(("authorization", f"Bearer {token}"),), timeout=30)
    return cloud


def one_error_line(r: subprocess.CompletedProcess, code: int, text: str) -> None:
    assert r.returncode == code, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("lsic-cloud: error")]
    assert len(errors) == 1 and text in errors[0], r.stderr
    assert "Traceback" not in r.stderr


def test_no_operator_token_says_where_to_find_one(stored, tmp_path):
    r = cli("device", "add", "cam-01", "--server", stored.address, "--insecure", cwd=tmp_path)
    one_error_line(r, 2, "the folder `lsic-cloud serve --data` uses")


def test_tls_to_a_plaintext_service_says_insecure(stored):
    r = cli("device", "ls", "--server", stored.address, "--data", str(stored.data), "--timeout", "10")
    one_error_line(r, 3, "needs --insecure here")


def test_nobody_listening(stored):
    from lsic.testing import free_port

    r = cli("device", "ls", "--server", f"127.0.0.1:{free_port()}", "--data", str(stored.data), "--insecure",
            "--timeout", "10")
    assert r.returncode == 3 and "Traceback" not in r.stderr


def test_frames_get_without_seq_takes_the_newest_and_says_so(stored, tmp_path):
    out = tmp_path / "newest.png"
    r = cli("frames", "get", "--device", "cam-cli", "--server", stored.address, "--data", str(stored.data),
            "--insecure", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "the newest frame, cam-cli/main/2" in r.stderr
    import cv2

    assert cv2.imread(str(out)).shape == (64, 160, 3)


def test_frames_of_an_unknown_device(stored):
    r = cli("frames", "ls", "--device", "nosuch", "--server", stored.address, "--data", str(stored.data),
            "--insecure")
    one_error_line(r, 3, "no device 'nosuch' is registered")


def test_frames_are_written_as_their_file_names_say(stored, tmp_path):
    where = ("--server", stored.address, "--data", str(stored.data), "--insecure")
    r = cli("frames", "get", "--device", "cam-cli", "--seq", "1", "-o", "f.jpg", *where, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "f.jpg").read_bytes()[:2] == b"\xff\xd8"
    r = cli("frames", "bitstream", "--device", "cam-cli", "--seq", "1", *where, cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "frame.lsic").read_bytes()[:4] == b"LSIC"
    one_error_line(cli("frames", "get", "--device", "cam-cli", "-o", "f.xyz", *where, cwd=tmp_path), 2,
                   "cannot write .xyz images")
    assert not (tmp_path / "f.xyz").exists()
