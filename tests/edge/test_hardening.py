"""The edge agent when things go wrong on its side: a wiped spool, refused credentials."""

from __future__ import annotations

import shutil
import time

from .conftest import EdgeRun, archive_frames


def test_a_wiped_spool_continues_the_stream_and_loses_nothing(cloud, video, tmp_path):
    """A new SD card: the agent starts from nothing, learns where its stream stands in the cloud
    and numbers its frames after the last one; all 2 x 20 frames are stored."""
    token = cloud.add_device("cam-wipe")
    spool = tmp_path / "spool"
    args = ("--source", str(video), "--max-frames", "20", "--timeout", "120")
    code, summary = EdgeRun(cloud, token, "cam-wipe", spool, *args).wait(180)
    assert code == 0 and summary["acknowledged"] == 20
    shutil.rmtree(spool)
    run = EdgeRun(cloud, token, "cam-wipe", spool, *args)
    code, summary = run.wait(180)
    assert code == 0, run.log.read_text()[-2000:]
    assert summary["acknowledged"] == 20 and summary["conflicts"] == 0
    seqs = [f.key.sequence for f in archive_frames(cloud, "cam-wipe")]
    assert seqs == list(range(40)), "the second installation's frames follow the first's"


def test_refused_credentials_stop_the_agent_with_its_own_exit_code(cloud, video, tmp_path):
    cloud.add_device("cam-badtoken")
    spool = tmp_path / "spool"
    run = EdgeRun(cloud, "cam-badtoken:not-the-token", "cam-badtoken", spool, "--source", str(video),
                  "--max-frames", "5", "--max-fps", "10")
    t0 = time.monotonic()
    code, summary = run.wait(90)
    assert code == 5, run.log.read_text()[-2000:]
    assert time.monotonic() - t0 < 60, "a bounded number of attempts, not for ever"
    assert "credentials" in summary["error"] and summary["acknowledged"] == 0
    assert "refused this device's credentials" in run.log.read_text()
    assert len(list((spool / "cam-badtoken" / "main").glob("*.rec"))) == 5, "the spool keeps every frame"


def test_a_revoked_device_stops_too(cloud, video, tmp_path):
    token = cloud.add_device("cam-revoked")
    cloud.cli("device", "revoke", "cam-revoked")
    run = EdgeRun(cloud, token, "cam-revoked", tmp_path / "spool", "--source", str(video), "--max-frames", "3")
    code, summary = run.wait(90)
    assert code == 5 and "revoked" in summary["error"]


def test_damaged_spool_files_are_set_aside_and_the_frames_behind_them_go(cloud, video, encoder, tmp_path):
    """A frame file damaged on disk (a bad SD card sector), a stray file and an unreadable state
    file: each is kept aside with its reason, and every other frame is delivered."""
    from lsic.edge.spool import Spool
    from lsic.v1 import lsic_pb2 as pb

    from ..conftest import natural_image

    token = cloud.add_device("cam-damaged")
    spool_root = tmp_path / "spool"
    spool = Spool(spool_root / "cam-damaged", "main")
    spool.rebase(0)
    for i in range(3):
        data = encoder.encode(natural_image(64, 96 + 32 * i), 3)
        spool.append(lambda seq, data=data: pb.FrameRecord(stream_id="main", sequence=seq, capture_time_us=10 + seq,
                                                           bitstream=data).SerializeToString())
    folder = spool_root / "cam-damaged" / "main"
    (folder / "000000000001.rec").write_bytes((folder / "000000000001.rec").read_bytes()[:40])
    (folder / "notes.rec").write_text("not a frame")
    (folder / "state.json").write_text('{"next_seq": ')
    run = EdgeRun(cloud, token, "cam-damaged", spool_root, "--source", str(video), "--max-frames", "4",
                  "--timeout", "120")
    code, _ = run.wait(180)
    assert code == 0, run.log.read_text()[-3000:]
    seqs = [f.key.sequence for f in archive_frames(cloud, "cam-damaged")]
    assert seqs == [0, *range(2, len(seqs) + 1)] and len(seqs) >= 5, "all but the damaged frame, new ones after"
    rejected = folder / "rejected"
    assert "damaged on disk" in (rejected / "000000000001.reason.txt").read_text()
    assert (rejected / "000000000001.rec").stat().st_size == 40, "kept as it was"
    assert (rejected / "notes.rec").read_text() == "not a frame"
    assert len(list(folder.glob("state.unreadable-*.json"))) == 1


def test_an_unreadable_image_in_a_folder_is_skipped_with_an_error(cloud, tmp_path):
    import cv2

    from ..conftest import natural_image

    folder = tmp_path / "shots"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"{i}.png"), natural_image(64, 96))
    (folder / "2.png").write_bytes(b"\x89PNG truncated by a full card")
    token = cloud.add_device("cam-folder")
    run = EdgeRun(cloud, token, "cam-folder", tmp_path / "spool", "--source", str(folder), "--timeout", "60")
    code, summary = run.wait(120)
    assert code == 0 and summary["acknowledged"] == 3, run.log.read_text()[-2000:]
    assert '"msg": "image skipped", "file": "' + str(folder / "2.png") in run.log.read_text()
    (folder / "0.png").write_bytes(b"")
    for i in (1, 3):
        (folder / f"{i}.png").unlink()
    bad = EdgeRun(cloud, token, "cam-folder", tmp_path / "spool", "--source", str(folder))
    code, _ = bad.wait(60)
    assert code == 3 and "no readable frames in" in bad.log.read_text()
