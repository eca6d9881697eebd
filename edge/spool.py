"""The durable on-disk queue of encoded frames (store and forward).

One file per frame record, written to a temporary name, fsynced, renamed and the folder fsynced:
after `put` returns the frame survives `kill -9` and power loss. A frame leaves the spool only
when the cloud acknowledged its durable write (`ack`). Rejected frames move to rejected/ so
nothing is silently lost. The next sequence number is recovered from disk on restart.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lsic.fsutil import atomic_write

log = logging.getLogger("lsic.edge.spool")
POLICIES = ("drop-oldest", "pause")


@dataclass
class SpoolStats:
    dropped: int = 0
    paused_s: float = 0.0
    rejected: int = 0


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
        self.cond = threading.Condition()
        self._sizes = {self._seq(p): p.stat().st_size for p in self.dir.glob("*.rec")}
        self._state_path = self.dir / "state.json"
        state = json.loads(self._state_path.read_text()) if self._state_path.is_file() else {}
        self.next_seq = max([int(state.get("next_seq", 0)), *(s + 1 for s in self._sizes)])

    @staticmethod
    def _seq(path: Path) -> int:
        return int(path.stem)

    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:012d}.rec"

    def bytes_used(self) -> int:
        with self.cond:
            return sum(self._sizes.values())

    def __len__(self) -> int:
        with self.cond:
            return len(self._sizes)

    def allocate_seq(self) -> int:
        """Reserve the next sequence number durably, so a restart never reuses one."""
        with self.cond:
            seq = self.next_seq
            self.next_seq += 1
            atomic_write(self._state_path, json.dumps({"next_seq": self.next_seq}).encode())
            return seq

    def make_room(self, size: int, stop: threading.Event | None = None) -> bool:
        """Apply the full-spool policy; False if paused and asked to stop meanwhile."""
        with self.cond:
            t0 = time.monotonic()
            while self._sizes and sum(self._sizes.values()) + size > self.max_bytes:
                if self.policy == "drop-oldest":
                    oldest = min(self._sizes)
                    self._path(oldest).unlink(missing_ok=True)
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

    def put(self, seq: int, record: bytes) -> None:
        atomic_write(self._path(seq), record)
        with self.cond:
            self._sizes[seq] = len(record)
            self.cond.notify_all()

    def pending(self) -> list[int]:
        with self.cond:
            return sorted(self._sizes)

    def read(self, seq: int) -> bytes | None:
        try:
            return self._path(seq).read_bytes()
        except FileNotFoundError:
            return None

    def ack(self, seq: int) -> bool:
        """Remove an acknowledged frame; False when it had already left (a repeated ack)."""
        self._path(seq).unlink(missing_ok=True)
        with self.cond:
            was_pending = self._sizes.pop(seq, None) is not None
            self.cond.notify_all()
        return was_pending

    def reject(self, seq: int, reason: str) -> None:
        src = self._path(seq)
        if src.exists():
            os.replace(src, self.rejected_dir / src.name)
            (self.rejected_dir / f"{src.stem}.reason.txt").write_text(reason + "\n")
        with self.cond:
            self._sizes.pop(seq, None)
            self.stats.rejected += 1
            self.cond.notify_all()

    def wait_for_work(self, known: set[int], timeout: float) -> None:
        with self.cond:
            if not (set(self._sizes) - known):
                self.cond.wait(timeout)
