"""Frame and device metadata: one SQL implementation over SQLite (default) or PostgreSQL.

Frames are keyed by (device, stream, sequence). Ingest claims a key before it writes anything
(`claim_frame`: the primary key decides between racing requests, in both databases), then writes
the bitstream under a name only that content can have, then marks the row stored. Only stored
rows are frames: the archive lists them and decode workers claim them (`claim_decode`, a lease
that a dead worker's successor takes over when it expires).

Frame states (`decoded`): 0 waiting, 1 decoded (the reconstruction cache holds it), 2 decoded
but evicted from the cache, -1 failed (decode_error says why), -2 quarantined (it killed a
decode worker twice).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from lsic.cloud.errors import ConfigError, MetadataUnavailableError, StorageFullError
from lsic.codec.errors import LsicError

MAX_SEQUENCE = (1 << 63) - 1  # the databases' BIGINT: a larger sequence number names no frame

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS devices (
        device_id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0,
        created_us BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS frames (
        device_id TEXT NOT NULL,
        stream_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        capture_us BIGINT NOT NULL,
        received_us BIGINT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        quality INTEGER NOT NULL,
        model_id TEXT NOT NULL,
        bytes BIGINT NOT NULL,
        raw_bytes BIGINT NOT NULL,
        tiles INTEGER NOT NULL,
        ref_tiles INTEGER NOT NULL,
        blob_key TEXT NOT NULL,
        decoded INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (device_id, stream_id, seq))""",
    "CREATE INDEX IF NOT EXISTS frames_time ON frames (device_id, capture_us)",
    "CREATE INDEX IF NOT EXISTS frames_pending ON frames (decoded, received_us)",
]
# Columns added to `frames` after its first release, with their definitions: added in place to
# an existing database when it is opened (rows from before are stored frames of unknown hash).
ADDED_COLUMNS = {
    "content_sha256": "TEXT",
    "stored": "INTEGER NOT NULL DEFAULT 1",
    "claimed_us": "BIGINT NOT NULL DEFAULT 0",
    "decode_owner": "TEXT",
    "decode_lease_us": "BIGINT NOT NULL DEFAULT 0",
    "decode_attempts": "INTEGER NOT NULL DEFAULT 0",
    "decode_error": "TEXT",
    "recon_bytes": "BIGINT NOT NULL DEFAULT 0",
    "regions": "TEXT",  # JSON: the regions of interest and masks the device reported
}
WAITING, DECODED, EVICTED, FAILED, QUARANTINED = 0, 1, 2, -1, -2
STATE_NAMES = {WAITING: "waiting", DECODED: "decoded", EVICTED: "evicted", FAILED: "failed", QUARANTINED: "quarantined"}


@dataclass
class FrameRow:
    device_id: str
    stream_id: str
    seq: int
    capture_us: int
    received_us: int
    width: int
    height: int
    quality: int
    model_id: str
    bytes: int
    raw_bytes: int
    tiles: int
    ref_tiles: int
    blob_key: str
    decoded: int = WAITING
    content_sha256: str | None = None
    stored: int = 1
    claimed_us: int = 0
    decode_owner: str | None = None
    decode_lease_us: int = 0
    decode_attempts: int = 0
    decode_error: str | None = None
    recon_bytes: int = 0
    regions: str | None = None


@dataclass
class DeviceRow:
    device_id: str
    token_hash: str
    revoked: int
    created_us: int


FRAME_COLUMNS = ", ".join(f.name for f in fields(FrameRow))


def now_us() -> int:
    return time.time_ns() // 1000


class SqlMetadataStore:
    """Metadata over a DB-API connection; `ph` is the driver's placeholder ('?' or '%s').

    Every database failure leaves as a typed error (StorageFullError, MetadataUnavailableError):
    the caller answers that one frame or call, and the service goes on.
    """

    ph = "?"
    skip_locked = ""  # PostgreSQL: rows another worker is claiming are passed over, not waited for

    def __init__(self) -> None:
        self._lock = threading.RLock()

    # --- connection plumbing (overridden per backend) ---
    def _connect(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _typed_error(self, exc: Exception) -> LsicError | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _columns(self, cur) -> set[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    @contextmanager
    def _tx(self) -> Iterator:
        with self._lock:
            try:
                cur = self.conn.cursor()
            except Exception as exc:
                raise self._typed_error(exc) or exc from exc
            try:
                yield cur
                self.conn.commit()
            except LsicError:
                self._rollback()
                raise
            except Exception as exc:
                self._rollback()
                typed = self._typed_error(exc)
                if typed is None:
                    raise
                raise typed from exc
            finally:
                with suppress(Exception):
                    cur.close()

    def _rollback(self) -> None:
        with suppress(Exception):
            self.conn.rollback()

    def _q(self, sql: str) -> str:
        return sql.replace("?", self.ph)

    def ping(self) -> str | None:
        """None when the database answers, else why not (a readiness check)."""
        try:
            with self._tx() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
        except LsicError as exc:
            return str(exc)
        return None

    def init_schema(self) -> None:
        with self._tx() as cur:
            for stmt in SCHEMA:
                cur.execute(stmt)
            have = self._columns(cur)
            for name, definition in ADDED_COLUMNS.items():
                if name not in have:
                    cur.execute(f"ALTER TABLE frames ADD COLUMN {name} {definition}")
            cur.execute("CREATE INDEX IF NOT EXISTS frames_claim ON frames (decoded, stored, decode_lease_us)")

    # --- devices ---
    def add_device(self, device_id: str, token_hash: str) -> bool:
        with self._tx() as cur:
            cur.execute(self._q("SELECT 1 FROM devices WHERE device_id = ?"), (device_id,))
            if cur.fetchone():
                return False
            cur.execute(
                self._q("INSERT INTO devices (device_id, token_hash, revoked, created_us) VALUES (?, ?, 0, ?)"),
                (device_id, token_hash, now_us()),
            )
            return True

    def set_token(self, device_id: str, token_hash: str) -> bool:
        with self._tx() as cur:
            cur.execute(
                self._q("UPDATE devices SET token_hash = ?, revoked = 0 WHERE device_id = ?"), (token_hash, device_id)
            )
            return cur.rowcount > 0

    def revoke(self, device_id: str) -> bool:
        with self._tx() as cur:
            cur.execute(self._q("UPDATE devices SET revoked = 1 WHERE device_id = ?"), (device_id,))
            return cur.rowcount > 0

    def get_device(self, device_id: str) -> DeviceRow | None:
        with self._tx() as cur:
            cur.execute(
                self._q("SELECT device_id, token_hash, revoked, created_us FROM devices WHERE device_id = ?"),
                (device_id,),
            )
            row = cur.fetchone()
        return DeviceRow(*row) if row else None

    def list_devices(self) -> list[tuple[DeviceRow, int]]:
        with self._tx() as cur:
            cur.execute(
                "SELECT d.device_id, d.token_hash, d.revoked, d.created_us, (SELECT COUNT(*) FROM frames f "
                "WHERE f.device_id = d.device_id AND f.stored = 1) FROM devices d ORDER BY d.device_id"
            )
            return [(DeviceRow(*r[:4]), int(r[4])) for r in cur.fetchall()]

    # --- ingest: claim a key, write the blob, mark it stored ---
    def claim_frame(self, row: FrameRow) -> FrameRow | None:
        """Insert `row` as claimed (not yet stored); None when this call won the key, else the
        row that holds it (stored, or claimed by another request)."""
        row.stored, row.claimed_us = 0, now_us()
        marks = ", ".join("?" * len(fields(FrameRow)))
        with self._tx() as cur:
            cur.execute(
                self._q(f"INSERT INTO frames ({FRAME_COLUMNS}) VALUES ({marks}) ON CONFLICT DO NOTHING"), astuple(row)
            )
            if cur.rowcount > 0:
                return None
            return self._get(cur, row.device_id, row.stream_id, row.seq)

    def take_over_claim(self, row: FrameRow, stale_before_us: int) -> bool:
        """Take a claim on the same content that its request abandoned (older than the cutoff);
        one caller wins."""
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "UPDATE frames SET claimed_us = ? WHERE device_id = ? AND stream_id = ? AND seq = ? "
                    "AND stored = 0 AND content_sha256 = ? AND claimed_us < ?"
                ),
                (now_us(), row.device_id, row.stream_id, row.seq, row.content_sha256, stale_before_us),
            )
            return cur.rowcount > 0

    def mark_stored(self, row: FrameRow) -> None:
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "UPDATE frames SET stored = 1 WHERE device_id = ? AND stream_id = ? AND seq = ? AND content_sha256 = ?"
                ),
                (row.device_id, row.stream_id, row.seq, row.content_sha256),
            )
        row.stored = 1

    def release_claim(self, row: FrameRow) -> None:
        """Give a claim back when its blob could not be written (the key is free again)."""
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "DELETE FROM frames WHERE device_id = ? AND stream_id = ? AND seq = ? AND stored = 0 "
                    "AND content_sha256 = ?"
                ),
                (row.device_id, row.stream_id, row.seq, row.content_sha256),
            )

    # --- frames as the archive sees them (stored only) ---
    def _get(self, cur, device_id: str, stream_id: str, seq: int) -> FrameRow | None:
        cur.execute(
            self._q(f"SELECT {FRAME_COLUMNS} FROM frames WHERE device_id = ? AND stream_id = ? AND seq = ?"),
            (device_id, stream_id, seq),
        )
        row = cur.fetchone()
        return FrameRow(*row) if row else None

    def get_frame(self, device_id: str, stream_id: str, seq: int) -> FrameRow | None:
        if not 0 <= seq <= MAX_SEQUENCE:
            return None
        with self._tx() as cur:
            row = self._get(cur, device_id, stream_id, seq)
        return row if row is not None and row.stored == 1 else None

    def latest_frame(self, device_id: str, stream_id: str) -> FrameRow | None:
        with self._tx() as cur:
            cur.execute(
                self._q(
                    f"SELECT {FRAME_COLUMNS} FROM frames WHERE device_id = ? AND stream_id = ? AND stored = 1 "
                    "ORDER BY seq DESC LIMIT 1"
                ),
                (device_id, stream_id),
            )
            r = cur.fetchone()
        return FrameRow(*r) if r else None

    def stream_position(self, device_id: str, stream_id: str) -> int | None:
        """The highest sequence number the stream has used (claimed or stored), None if none."""
        with self._tx() as cur:
            cur.execute(
                self._q("SELECT MAX(seq) FROM frames WHERE device_id = ? AND stream_id = ?"), (device_id, stream_id)
            )
            r = cur.fetchone()
        return None if r is None or r[0] is None else int(r[0])

    def previous_frame(self, row: FrameRow) -> FrameRow | None:
        with self._tx() as cur:
            cur.execute(
                self._q(
                    f"SELECT {FRAME_COLUMNS} FROM frames WHERE device_id = ? AND stream_id = ? AND seq < ? "
                    "AND stored = 1 ORDER BY seq DESC LIMIT 1"
                ),
                (row.device_id, row.stream_id, row.seq),
            )
            r = cur.fetchone()
        return FrameRow(*r) if r else None

    def list_frames(
        self,
        device_id: str,
        stream_id: str = "",
        from_us: int = 0,
        to_us: int = 0,
        limit: int = 1000,
        after_seq: int = -1,
        newest_first: bool = False,
    ) -> list[FrameRow]:
        """Stored frames of a device, by stream and sequence (newest_first: by capture time and
        sequence, descending; after_seq then pages towards older frames)."""
        sql = f"SELECT {FRAME_COLUMNS} FROM frames WHERE device_id = ? AND stored = 1"
        params: list = [device_id]
        if stream_id:
            sql += " AND stream_id = ?"
            params.append(stream_id)
        if from_us:
            sql += " AND capture_us >= ?"
            params.append(from_us)
        if to_us:
            sql += " AND capture_us < ?"
            params.append(to_us)
        if after_seq > MAX_SEQUENCE and not newest_first:
            return []
        if 0 <= after_seq <= MAX_SEQUENCE:
            sql += " AND seq < ?" if newest_first else " AND seq > ?"
            params.append(after_seq)
        sql += " ORDER BY capture_us DESC, seq DESC LIMIT ?" if newest_first else " ORDER BY stream_id, seq LIMIT ?"
        params.append(limit)
        with self._tx() as cur:
            cur.execute(self._q(sql), params)
            return [FrameRow(*r) for r in cur.fetchall()]

    def list_streams(self, device_id: str) -> list[tuple[str, int, int, int]]:
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "SELECT stream_id, COUNT(*), MIN(seq), MAX(seq) FROM frames WHERE device_id = ? AND stored = 1 "
                    "GROUP BY stream_id ORDER BY stream_id"
                ),
                (device_id,),
            )
            return [(r[0], int(r[1]), int(r[2]), int(r[3])) for r in cur.fetchall()]

    # --- decoding: leased claims, results committed under the lease ---
    def claim_decode(self, owner: str, limit: int, lease_s: float) -> list[FrameRow]:
        """Lease up to `limit` stored frames waiting to be decoded, oldest first, to `owner`.

        A frame leased to a worker that died is free again when its lease expires (or at once
        for a worker restarted under the same owner name). Every claim counts an attempt.
        """
        now = now_us()
        with self._tx() as cur:
            cur.execute(
                self._q(
                    f"UPDATE frames SET decode_owner = ?, decode_lease_us = ?, decode_attempts = decode_attempts + 1 "
                    f"WHERE (device_id, stream_id, seq) IN (SELECT device_id, stream_id, seq FROM frames "
                    f"WHERE decoded = 0 AND stored = 1 AND (decode_lease_us < ? OR decode_owner = ?) "
                    f"ORDER BY received_us, device_id, stream_id, seq LIMIT ?{self.skip_locked}) RETURNING {FRAME_COLUMNS}"
                ),
                (owner, now + int(lease_s * 1e6), now, owner, limit),
            )
            rows = [FrameRow(*r) for r in cur.fetchall()]
        return sorted(rows, key=lambda r: (r.received_us, r.device_id, r.stream_id, r.seq))

    def renew_lease(self, owner: str, rows: list[FrameRow], lease_s: float) -> None:
        until = now_us() + int(lease_s * 1e6)
        with self._tx() as cur:
            for r in rows:
                cur.execute(
                    self._q(
                        "UPDATE frames SET decode_lease_us = ? WHERE device_id = ? AND stream_id = ? AND seq = ? "
                        "AND decode_owner = ?"
                    ),
                    (until, r.device_id, r.stream_id, r.seq, owner),
                )

    def finish_decode(
        self, row: FrameRow, owner: str, state: int, error: str | None = None, recon_bytes: int = 0
    ) -> bool:
        """Commit a decode result under the lease; False when the lease was lost (another worker
        holds the frame now, and its result counts)."""
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "UPDATE frames SET decoded = ?, decode_error = ?, recon_bytes = ?, decode_lease_us = 0 "
                    "WHERE device_id = ? AND stream_id = ? AND seq = ? AND decode_owner = ? AND decoded = 0"
                ),
                (state, error, recon_bytes, row.device_id, row.stream_id, row.seq, owner),
            )
            return cur.rowcount > 0

    def defer_decode(self, row: FrameRow, owner: str, delay_s: float) -> None:
        """Hand a leased frame back to be claimed again in `delay_s` (it waits for its reference
        frame): the attempt does not count."""
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "UPDATE frames SET decode_lease_us = ?, decode_owner = NULL, decode_attempts = decode_attempts - 1 "
                    "WHERE device_id = ? AND stream_id = ? AND seq = ? AND decode_owner = ? AND decoded = 0"
                ),
                (now_us() + int(delay_s * 1e6), row.device_id, row.stream_id, row.seq, owner),
            )

    def release_decode(self, row: FrameRow, owner: str) -> None:
        """Hand a leased frame back undecoded (the worker pauses): the attempt does not count."""
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "UPDATE frames SET decode_lease_us = 0, decode_owner = NULL, decode_attempts = decode_attempts - 1 "
                    "WHERE device_id = ? AND stream_id = ? AND seq = ? AND decode_owner = ? AND decoded = 0"
                ),
                (row.device_id, row.stream_id, row.seq, owner),
            )

    def oldest_waiting(self) -> FrameRow | None:
        with self._tx() as cur:
            cur.execute(
                f"SELECT {FRAME_COLUMNS} FROM frames WHERE decoded = 0 AND stored = 1 ORDER BY received_us LIMIT 1"
            )
            r = cur.fetchone()
        return FrameRow(*r) if r else None

    def count_by_state(self) -> dict[int, int]:
        with self._tx() as cur:
            cur.execute("SELECT decoded, COUNT(*) FROM frames WHERE stored = 1 GROUP BY decoded")
            return {int(state): int(n) for state, n in cur.fetchall()}

    def count_pending(self) -> int:
        with self._tx() as cur:
            cur.execute("SELECT COUNT(*) FROM frames WHERE decoded = 0 AND stored = 1")
            return int(cur.fetchone()[0])

    # --- the reconstruction cache: a capped size, oldest evicted first ---
    def cache_bytes(self) -> int:
        with self._tx() as cur:
            cur.execute("SELECT COALESCE(SUM(recon_bytes), 0) FROM frames WHERE decoded = 1")
            return int(cur.fetchone()[0])

    def oldest_cached(self, limit: int) -> list[FrameRow]:
        with self._tx() as cur:
            cur.execute(
                self._q(f"SELECT {FRAME_COLUMNS} FROM frames WHERE decoded = 1 ORDER BY received_us LIMIT ?"), (limit,)
            )
            return [FrameRow(*r) for r in cur.fetchall()]

    def mark_evicted(self, row: FrameRow) -> None:
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "UPDATE frames SET decoded = 2, recon_bytes = 0 WHERE device_id = ? AND stream_id = ? AND seq = ? "
                    "AND decoded = 1"
                ),
                (row.device_id, row.stream_id, row.seq),
            )

    def close(self) -> None:
        with self._lock, suppress(Exception):
            self.conn.close()


class SqliteMetadataStore(SqlMetadataStore):
    """The embedded default: one SQLite file in WAL mode, fsync on every commit."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Token hashes live here: the file (and SQLite's -wal and -shm beside it, which take its
        # mode) is the owner's alone.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        try:
            self.conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level="DEFERRED", timeout=30)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise self._typed_error(exc) from exc
        self.init_schema()

    def _typed_error(self, exc: Exception) -> LsicError | None:
        if not isinstance(exc, sqlite3.Error):
            return None
        text = str(exc)
        if "full" in text:
            return StorageFullError(f"metadata database is full ({text})")
        return MetadataUnavailableError(f"metadata database error: {text}")

    def _columns(self, cur) -> set[str]:
        cur.execute("PRAGMA table_info(frames)")
        return {r[1] for r in cur.fetchall()}


class PostgresMetadataStore(SqlMetadataStore):
    """PostgreSQL for stateless replicas at scale (psycopg 3)."""

    ph = "%s"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, dsn: str) -> None:
        super().__init__()
        import psycopg

        self.psycopg, self.dsn = psycopg, dsn
        try:
            self.conn = psycopg.connect(dsn, connect_timeout=10)
        except psycopg.Error as exc:
            raise MetadataUnavailableError(f"cannot reach PostgreSQL: {exc}") from exc
        self.init_schema()

    def _typed_error(self, exc: Exception) -> LsicError | None:
        errors = self.psycopg.errors
        if isinstance(exc, errors.DiskFull):
            return StorageFullError(f"metadata database is full ({exc})")
        if isinstance(exc, self.psycopg.OperationalError) or self.conn.closed:
            with suppress(Exception):  # a lost connection is opened again for the next call
                self.conn = self.psycopg.connect(self.dsn, connect_timeout=10)
            return MetadataUnavailableError(f"PostgreSQL error: {str(exc).strip()}")
        if isinstance(exc, self.psycopg.Error):
            return MetadataUnavailableError(f"PostgreSQL error: {str(exc).strip()}")
        return None

    def _columns(self, cur) -> set[str]:
        cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'frames'")
        return {r[0] for r in cur.fetchall()}


def open_metadata(url: str, data_dir: Path) -> SqlMetadataStore:
    """'' (default: DATA/metadata.db), 'sqlite:///path' or a postgresql:// DSN. Anything else is
    refused: replicas that fell back to a SQLite file each would split the archive between them."""
    if url.startswith(("postgres://", "postgresql://")):
        return PostgresMetadataStore(url)
    if url.startswith("sqlite:///"):
        return SqliteMetadataStore(Path(url[len("sqlite:///") :]))
    if url:
        raise ConfigError(f"unknown metadata store {url!r}: give postgresql://... or sqlite:///PATH")
    return SqliteMetadataStore(data_dir / "metadata.db")
