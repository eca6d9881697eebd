"""The durable on-disk queue of encoded frames (store and forward).

One file per frame record, written to a temporary name, fsynced, renamed and the folder fsynced:
after `put` returns the frame survives `kill -9` and power loss. A frame leaves the spool only
when the cloud acknowledged its durable write (`ack`). Rejected frames move to rejected/ so
nothing is silently lost.

Sequence numbers are never reused for a frame that was spooled: on restart the next number is
one past the highest frame file, or past the high-water mark in state.json, which is written
before a frame file is removed (ack, drop, reject, conflict). A number is taken and its frame
written in one step (`append`), so the capture loop pays one durable write per frame.

A spool that starts empty, with no state (a new installation, a wiped SD card), does not know
where its stream stands in the cloud: it is unsynced until the sender asks the cloud (`rebase`),
and the frames it spooled meanwhile are renumbered to follow the cloud's last one. A frame the
cloud refuses as a CONFLICT (its number holds other content there) moves to conflicts/, kept.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lsic.fsutil import atomic_write
from lsic.v1 import lsic_pb2 as pb

log = logging.getLogger("lsic.edge.spool")
POLICIES = ("drop-oldest", "pause")
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL_LOG_S = 10.0


@dataclass
class SpoolStats:
    dropped: int = 0
    paused_s: float = 0.0
    rejected: int = 0
    conflicts: int = 0


class Spool:
    def __init__(
        self, root: Path, stream_id: str, max_bytes: int = 512 * 1024 * 1024, policy: str = "drop-oldest"
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"spool policy must be one of {POLICIES}")
        self.dir = root / stream_id
        self.rejected_dir = self.dir / "rejected"
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob(".tmp-*"):
            stale.unlink(missing_ok=True)
        self.max_bytes, self.policy = max_bytes, policy
        self.stats = SpoolStats()
        self._disk_full_logged = -DISK_FULL_LOG_S
        self.cond = threading.Condition()
        self.stream_id = stream_id
        self.conflicts_dir = self.dir / "conflicts"
        self._sizes = self._frames_on_disk()
        self._state_path = self.dir / "state.json"
        state = self._read_state()
        self._persisted_seq = int(state.get("next_seq", 0))
        # a spool with a history has its numbering from a cloud it talked to; only a new one is unsynced
        self.synced = bool(state.get("synced", bool(state) or bool(self._sizes)))
        self.next_seq = max([self._persisted_seq, *(s + 1 for s in self._sizes)])

    def _frames_on_disk(self) -> dict[int, int]:
        """Sequence number -> size of the frame files. A file named otherwise than the spool names
        them is renamed if it holds a number, else set aside in rejected/: never in the way, never lost."""
        sizes = {}
        for path in sorted(self.dir.glob("*.rec")):
            if not path.stem.isdigit():
                self._quarantine(path, "not a spool frame file name")
                continue
            seq = int(path.stem)
            if path != self._path(seq):
                if self._path(seq).exists():
                    self._quarantine(path, f"a second file for frame {seq}")
                    continue
                os.replace(path, self._path(seq))
            sizes[seq] = self._path(seq).stat().st_size
        return sizes

    def _read_state(self) -> dict:
        """state.json, or {} when there is none or it cannot be read (then kept aside, and the
        spool numbers as a spool without state does: from its frames, or from the cloud)."""
        if not self._state_path.is_file():
            return {}
        try:
            state = json.loads(self._state_path.read_text())
            int(state.get("next_seq", 0))
            return state
        except (ValueError, TypeError, AttributeError) as exc:
            aside = self._state_path.with_name(f"state.unreadable-{int(time.time())}.json")
            os.replace(self._state_path, aside)
            log.error("spool state unreadable; kept aside", extra={"file": str(aside), "reason": str(exc)})
            return {}

    def _quarantine(self, path: Path, reason: str) -> None:
        os.replace(path, self.rejected_dir / path.name)
        _write_reason(self.rejected_dir, path, reason)
        log.error("spool file set aside in rejected/", extra={"file": path.name, "reason": reason})

    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:012d}.rec"

    def bytes_used(self) -> int:
        with self.cond:
            return sum(self._sizes.values())

    def __len__(self) -> int:
        with self.cond:
            return len(self._sizes)

    def append(self, build: Callable[[int], bytes], stop: threading.Event | None = None) -> int | None:
        """Take the next sequence number and durably write the record `build(seq)` makes for it,
        in one step (a rebase cannot fall between the two). Returns the number.

        A full disk (not the spool's own limit: the card is shared) is met with the spool's policy:
        drop-oldest drops the oldest frame and tries again, and drops this one (None) when there
        is none left; pause waits for the sender to free room, or for `stop` (None)."""
        with self.cond:
            while True:
                seq = self.next_seq
                record = build(seq)
                try:
                    atomic_write(self._path(seq), record)
                    break
                except OSError as exc:
                    if exc.errno not in DISK_FULL:
                        raise
                if not self._room_on_full_disk(stop):
                    if self.policy != "pause":  # paused until the agent stopped: not a drop
                        self.stats.dropped += 1
                        self._warn_disk_full("frame dropped")
                    return None
            self.next_seq += 1
            self._sizes[seq] = len(record)
            self.cond.notify_all()
            return seq

    def _room_on_full_disk(self, stop: threading.Event | None) -> bool:
        """Whether to try the write again: a frame was dropped to make room, or room was waited
        for (caller holds cond)."""
        if self.policy == "pause":
            self._warn_disk_full("waiting for the sender to free room")
            t0 = time.monotonic()
            self.cond.wait(0.5)
            self.stats.paused_s += time.monotonic() - t0
            return not (stop is not None and stop.is_set())
        if not self._sizes:
            return False
        oldest = min(self._sizes)
        self._remove(oldest)
        del self._sizes[oldest]
        self.stats.dropped += 1
        self._warn_disk_full("dropped the oldest frame")
        return True

    def _warn_disk_full(self, what: str) -> None:
        """One line per DISK_FULL_LOG_S at most: the log shares the full disk."""
        now = time.monotonic()
        if now - self._disk_full_logged >= DISK_FULL_LOG_S:
            self._disk_full_logged = now
            log.error(f"disk full under the spool: {what}", extra={"dropped_total": self.stats.dropped})

    def _save_state(self, next_seq: int) -> None:
        atomic_write(self._state_path, json.dumps({"next_seq": next_seq, "synced": self.synced}).encode())
        self._persisted_seq = next_seq

    def _remove(self, seq: int, dest: Path | None = None) -> None:
        """Take a frame file away, first recording that its number was used (caller holds cond)."""
        if seq + 1 > self._persisted_seq:
            try:
                self._save_state(seq + 1)
            except OSError as exc:
                if exc.errno not in DISK_FULL or dest is not None:
                    raise
                # No room for state.json on a full disk: the frame's own room first. Only a crash
                # between the two could hand its number out again.
                self._path(seq).unlink(missing_ok=True)
                self._save_state(seq + 1)
                return
        src = self._path(seq)
        if dest is None:
            src.unlink(missing_ok=True)
        elif src.exists():
            os.replace(src, dest / src.name)

    def make_room(self, size: int, stop: threading.Event | None = None) -> bool:
        """Apply the full-spool policy; False if paused and asked to stop meanwhile."""
        with self.cond:
            t0 = time.monotonic()
            while self._sizes and sum(self._sizes.values()) + size > self.max_bytes:
                if self.policy == "drop-oldest":
                    oldest = min(self._sizes)
                    self._remove(oldest)
                    del self._sizes[oldest]
                    self.stats.dropped += 1
                    log.warning(
                        "spool full: dropped oldest frame", extra={"seq": oldest, "dropped_total": self.stats.dropped}
                    )
                else:
                    if stop is not None and stop.is_set():
                        return False
                    self.cond.wait(0.5)
            if self.policy == "pause":
                self.stats.paused_s += time.monotonic() - t0
            return True

    def rebase(self, cloud_next: int) -> int:
        """Learn where the stream stands in the cloud: an unsynced spool renumbers the frames it
        holds to start at `cloud_next` (their order kept) and continues from there. Returns the
        shift applied (0 when synced already or nothing had to move)."""
        with self.cond:
            if self.synced:
                return 0
            first = min(self._sizes, default=self.next_seq)
            shift = max(0, cloud_next - first)
            for seq in sorted(self._sizes, reverse=True) if shift else ():
                loaded = self.load(seq)
                if loaded is None:  # damaged: set aside under its old number
                    continue
                loaded[0].sequence = seq + shift
                atomic_write(self._path(seq + shift), loaded[0].SerializeToString())
                self._path(seq).unlink()
            self._sizes = {seq + shift: size for seq, size in self._sizes.items()}
            self.next_seq += shift
            self.synced = True
            self._save_state(max(self.next_seq, self._persisted_seq))
            self.cond.notify_all()
            return shift

    def pending(self) -> list[int]:
        with self.cond:
            return sorted(self._sizes)

    def load(self, seq: int) -> tuple[pb.FrameRecord, int] | None:
        """A pending frame's record and its size on disk; None when it has left the spool, or when
        its file is unreadable (damaged on disk): that file is set aside in rejected/ with the
        reason, so one bad file never holds up the frames behind it."""
        from google.protobuf.message import DecodeError

        try:
            data = self._path(seq).read_bytes()
        except FileNotFoundError:
            return None
        try:
            rec = pb.FrameRecord.FromString(data)
            if rec.sequence != seq:
                raise DecodeError(f"it holds frame {rec.sequence}")
        except DecodeError as exc:
            self.reject(seq, f"unreadable spool file (damaged on disk): {exc}")
            log.error("damaged spool file set aside in rejected/", extra={"seq": seq, "reason": str(exc)})
            return None
        return rec, len(data)

    def ack(self, seq: int) -> bool:
        """Remove an acknowledged frame; False when it had already left (a repeated ack)."""
        with self.cond:
            self._remove(seq)
            was_pending = self._sizes.pop(seq, None) is not None
            self.cond.notify_all()
        return was_pending

    def _set_aside(self, seq: int, folder: Path, reason: str) -> None:
        """Move a frame out of the queue into `folder` with the reason beside it (caller holds cond)."""
        folder.mkdir(exist_ok=True)
        if self._path(seq).exists():
            self._remove(seq, folder)
            _write_reason(folder, self._path(seq), reason)
        self._sizes.pop(seq, None)
        self.cond.notify_all()

    def reject(self, seq: int, reason: str) -> None:
        with self.cond:
            self._set_aside(seq, self.rejected_dir, reason)
            self.stats.rejected += 1

    def conflict(self, seq: int, reason: str) -> None:
        """The cloud holds other content under this number: keep the frame aside, never delete it."""
        with self.cond:
            self._set_aside(seq, self.conflicts_dir, reason)
            self.stats.conflicts += 1

    def wait_for_work(self, known: set[int], timeout: float) -> None:
        with self.cond:
            if not (set(self._sizes) - known):
                self.cond.wait(timeout)


def _write_reason(folder: Path, frame_file: Path, reason: str) -> None:
    """Why a file was set aside, beside it: <stem>.reason.txt."""
    (folder / f"{frame_file.stem}.reason.txt").write_text(reason + "\n")
