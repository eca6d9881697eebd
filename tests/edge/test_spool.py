"""The spool never hands out a sequence number twice for frames that reached the disk."""

from __future__ import annotations

from lsic.edge.spool import Spool


def test_numbers_continue_after_every_frame_was_acknowledged(tmp_path):
    spool = Spool(tmp_path, "main")
    for _ in range(3):
        seq = spool.allocate_seq()
        spool.put(seq, b"frame %d" % seq)
    assert spool.pending() == [0, 1, 2]
    for seq in (0, 1, 2):
        assert spool.ack(seq)
    assert not spool.ack(2), "a repeated ack is reported as such"
    reopened = Spool(tmp_path, "main")
    assert len(reopened) == 0
    assert reopened.allocate_seq() == 3


def test_restart_keeps_unacknowledged_frames_and_their_numbers(tmp_path):
    spool = Spool(tmp_path, "main")
    for _ in range(4):
        seq = spool.allocate_seq()
        spool.put(seq, b"x" * 10)
    spool.ack(0)
    spool.allocate_seq()  # allocated, never written: as if killed while encoding
    reopened = Spool(tmp_path, "main")
    assert reopened.pending() == [1, 2, 3]
    assert reopened.read(2) == b"x" * 10
    assert reopened.allocate_seq() == 4, "an unwritten number may be reused; a written one never"


def test_dropped_and_rejected_frames_keep_their_numbers_used(tmp_path):
    spool = Spool(tmp_path, "main", max_bytes=25, policy="drop-oldest")
    for _ in range(3):
        seq = spool.allocate_seq()
        assert spool.make_room(10)
        spool.put(seq, b"y" * 10)
    assert spool.stats.dropped == 1 and spool.pending() == [1, 2]
    spool.reject(2, "bad")
    spool.ack(1)
    assert (tmp_path / "main" / "rejected" / "000000000002.rec").is_file()
    assert (tmp_path / "main" / "rejected" / "000000000002.reason.txt").read_text() == "bad\n"
    assert Spool(tmp_path, "main").allocate_seq() == 3
