"""The spool never hands out a sequence number twice for frames that reached the disk."""

from __future__ import annotations

from lsic.edge.spool import Spool
from lsic.v1 import lsic_pb2 as pb


def test_numbers_continue_after_every_frame_was_acknowledged(tmp_path):
    spool = Spool(tmp_path, "main")
    for _ in range(3):
        spool.append(lambda seq: b"frame %d" % seq)
    assert spool.pending() == [0, 1, 2]
    for seq in (0, 1, 2):
        assert spool.ack(seq)
    assert not spool.ack(2), "a repeated ack is reported as such"
    reopened = Spool(tmp_path, "main")
    assert len(reopened) == 0
    assert reopened.append(lambda seq: b"") == 3


def test_restart_keeps_unacknowledged_frames_and_their_numbers(tmp_path):
    spool = Spool(tmp_path, "main")
    for _ in range(4):
        spool.append(lambda seq: b"x" * 10)
    spool.ack(0)
    reopened = Spool(tmp_path, "main")
    assert reopened.pending() == [1, 2, 3]
    assert (tmp_path / "main" / "000000000002.rec").read_bytes() == b"x" * 10
    assert reopened.append(lambda seq: b"") == 4


def test_dropped_and_rejected_frames_keep_their_numbers_used(tmp_path):
    spool = Spool(tmp_path, "main", max_bytes=25, policy="drop-oldest")
    for _ in range(3):
        assert spool.make_room(10)
        spool.append(lambda seq: b"y" * 10)
    assert spool.stats.dropped == 1 and spool.pending() == [1, 2]
    spool.reject(2, "bad")
    spool.ack(1)
    assert (tmp_path / "main" / "rejected" / "000000000002.rec").is_file()
    assert (tmp_path / "main" / "rejected" / "000000000002.reason.txt").read_text() == "bad\n"
    assert Spool(tmp_path, "main").append(lambda seq: b"") == 3


def record(seq: int) -> bytes:
    return pb.FrameRecord(stream_id="main", sequence=seq, bitstream=b"frame").SerializeToString()


def test_a_new_spool_follows_the_clouds_numbering(tmp_path):
    """A wiped spool (new SD card) spools frames before it reaches the cloud; once the cloud says
    its stream is at 500, they are renumbered from there, and the numbering survives restarts."""
    spool = Spool(tmp_path, "main")
    assert not spool.synced
    for _ in range(3):
        spool.append(record)
    assert spool.rebase(500) == 500
    assert spool.pending() == [500, 501, 502]
    assert spool.load(501)[0].sequence == 501
    assert spool.append(record) == 503
    reopened = Spool(tmp_path, "main")
    assert reopened.synced and reopened.rebase(9000) == 0, "only a new spool is renumbered"
    assert reopened.pending() == [500, 501, 502, 503]


def test_spools_with_a_history_are_synced(tmp_path):
    spool = Spool(tmp_path, "main")
    spool.rebase(0)
    spool.append(record)
    assert Spool(tmp_path, "main").synced


def test_conflicting_frames_are_kept_aside(tmp_path):
    spool = Spool(tmp_path, "main")
    seq = spool.append(record)
    spool.conflict(seq, "main/0 holds different content")
    assert spool.pending() == [] and spool.stats.conflicts == 1
    assert (tmp_path / "main" / "conflicts" / "000000000000.rec").is_file()
    assert Spool(tmp_path, "main").append(record) == 1, "its number stays used"


def big_record(seq: int) -> bytes:
    return pb.FrameRecord(stream_id="main", sequence=seq, bitstream=bytes(1 << 20)).SerializeToString()


def test_a_full_disk_drops_the_oldest_frames_and_never_reuses_a_number(small_disk):
    """The card fills up (the spool's own limit is far away): the newest frames are kept."""
    spool = Spool(small_disk, "main", max_bytes=1 << 40)
    seqs = [spool.append(big_record) for _ in range(40)]
    assert seqs == list(range(40)), "every frame got its number"
    assert spool.stats.dropped > 15 and spool.pending() == list(range(spool.stats.dropped, 40))
    reopened = Spool(small_disk, "main", max_bytes=1 << 40)
    assert reopened.pending() == spool.pending()
    for seq in reopened.pending():
        reopened.ack(seq)
    assert reopened.append(record) == 40


def test_a_full_disk_with_the_pause_policy_waits_for_room(small_disk):
    import threading

    spool = Spool(small_disk, "main", max_bytes=1 << 40, policy="pause")
    while spool.stats.paused_s == 0:
        stop = threading.Event()
        threading.Timer(0.3, stop.set).start()
        if spool.append(big_record, stop) is None:
            break
    assert spool.stats.dropped == 0 and len(spool) > 15
    first = spool.pending()[0]
    threading.Timer(0.3, spool.ack, args=(first,)).start()  # the cloud acknowledges the oldest
    assert spool.append(big_record, threading.Event()) == spool.pending()[-1]
    assert first not in spool.pending() and spool.stats.dropped == 0
