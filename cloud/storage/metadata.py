"""Frame and device metadata: one SQL implementation over SQLite (default) or PostgreSQL.

Frames are keyed by (device, stream, sequence); inserting a key that exists is a no-op that
reports a duplicate, which is what makes ingest idempotent under at-least-once delivery.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, fields
from pathlib import Path

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
    decoded: int = 0


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
    """Metadata over a DB-API connection; `ph` is the driver's placeholder ('?' or '%s')."""

    ph = "?"

    def __init__(self) -> None:
        self._lock = threading.RLock()

    # --- connection plumbing (overridden per backend) ---
    def _connect(self):  # pragma: no cover - abstract
        raise NotImplementedError

    @contextmanager
    def _tx(self) -> Iterator:
        with self._lock:
            cur = self.conn.cursor()
            try:
                yield cur
                self.conn.commit()
            except BaseException:
                self.conn.rollback()
                raise
            finally:
                cur.close()

    def _q(self, sql: str) -> str:
        return sql.replace("?", self.ph)

    def init_schema(self) -> None:
        with self._tx() as cur:
            for stmt in SCHEMA:
                cur.execute(stmt)

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
                "SELECT d.device_id, d.token_hash, d.revoked, d.created_us, "
                "(SELECT COUNT(*) FROM frames f WHERE f.device_id = d.device_id) FROM devices d ORDER BY d.device_id"
            )
            return [(DeviceRow(*r[:4]), int(r[4])) for r in cur.fetchall()]

    # --- frames ---
    def insert_frame(self, row: FrameRow) -> bool:
        """Insert unless the key exists; True when inserted, False for a duplicate."""
        marks = ", ".join("?" * len(fields(FrameRow)))
        with self._tx() as cur:
            cur.execute(
                self._q(f"INSERT INTO frames ({FRAME_COLUMNS}) VALUES ({marks}) ON CONFLICT DO NOTHING"), astuple(row)
            )
            return cur.rowcount > 0

    def get_frame(self, device_id: str, stream_id: str, seq: int) -> FrameRow | None:
        with self._tx() as cur:
            cur.execute(
                self._q(f"SELECT {FRAME_COLUMNS} FROM frames WHERE device_id = ? AND stream_id = ? AND seq = ?"),
                (device_id, stream_id, seq),
            )
            row = cur.fetchone()
        return FrameRow(*row) if row else None

    def previous_frame(self, row: FrameRow) -> FrameRow | None:
        with self._tx() as cur:
            cur.execute(
                self._q(
                    f"SELECT {FRAME_COLUMNS} FROM frames WHERE device_id = ? AND stream_id = ? AND seq < ? ORDER BY seq DESC LIMIT 1"
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
    ) -> list[FrameRow]:
        sql = f"SELECT {FRAME_COLUMNS} FROM frames WHERE device_id = ?"
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
        if after_seq >= 0:
            sql += " AND seq > ?"
            params.append(after_seq)
        sql += " ORDER BY stream_id, seq LIMIT ?"
        params.append(limit)
        with self._tx() as cur:
            cur.execute(self._q(sql), params)
            return [FrameRow(*r) for r in cur.fetchall()]

    def list_streams(self, device_id: str) -> list[tuple[str, int, int, int]]:
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "SELECT stream_id, COUNT(*), MIN(seq), MAX(seq) FROM frames WHERE device_id = ? GROUP BY stream_id ORDER BY stream_id"
                ),
                (device_id,),
            )
            return [(r[0], int(r[1]), int(r[2]), int(r[3])) for r in cur.fetchall()]

    def pending_decode(self, limit: int = 64) -> list[FrameRow]:
        with self._tx() as cur:
            cur.execute(
                self._q(f"SELECT {FRAME_COLUMNS} FROM frames WHERE decoded = 0 ORDER BY received_us LIMIT ?"), (limit,)
            )
            return [FrameRow(*r) for r in cur.fetchall()]

    def count_pending(self) -> int:
        with self._tx() as cur:
            cur.execute("SELECT COUNT(*) FROM frames WHERE decoded = 0")
            return int(cur.fetchone()[0])

    def mark_decoded(self, row: FrameRow, state: int = 1) -> None:
        with self._tx() as cur:
            cur.execute(
                self._q("UPDATE frames SET decoded = ? WHERE device_id = ? AND stream_id = ? AND seq = ?"),
                (state, row.device_id, row.stream_id, row.seq),
            )

    def close(self) -> None:
        with self._lock:
            self.conn.close()


class SqliteMetadataStore(SqlMetadataStore):
    """The embedded default: one SQLite file in WAL mode, fsync on every commit."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level="DEFERRED", timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.init_schema()


class PostgresMetadataStore(SqlMetadataStore):
    """PostgreSQL for stateless replicas at scale (psycopg 3)."""

    ph = "%s"

    def __init__(self, dsn: str) -> None:
        super().__init__()
        import psycopg

        self.conn = psycopg.connect(dsn)
        self.init_schema()


def open_metadata(url: str, data_dir: Path) -> SqlMetadataStore:
    """'sqlite' (default: DATA/metadata.db), 'sqlite:///path' or a postgresql:// DSN."""
    if url.startswith(("postgres://", "postgresql://")):
        return PostgresMetadataStore(url)
    if url.startswith("sqlite:///"):
        return SqliteMetadataStore(Path(url[len("sqlite:///") :]))
    return SqliteMetadataStore(data_dir / "metadata.db")
