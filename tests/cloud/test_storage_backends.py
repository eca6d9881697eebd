"""The metadata store contract on SQLite and a real PostgreSQL server; the blob store contract
on a local folder and an S3-compatible server; and the service running on PostgreSQL + S3."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time

import boto3
import grpc
import pytest

from lsic.cloud.storage.blobs import LocalBlobStore, S3BlobStore
from lsic.cloud.storage.metadata import (
    DECODED,
    EVICTED,
    FAILED,
    WAITING,
    FrameRow,
    PostgresMetadataStore,
    SqliteMetadataStore,
    now_us,
)
from lsic.testing import CloudProcess, cloud_command
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc

from ..conftest import natural_image
from .conftest import reset_postgres


def row(seq: int, stream: str = "main", capture: int = 0, sha: str = "a" * 64) -> FrameRow:
    return FrameRow(
        "dev",
        stream,
        seq,
        capture or 1000 * seq,
        5,
        64,
        64,
        4,
        "default",
        100,
        12288,
        1,
        0,
        f"frames/dev/{stream}/{seq}-{sha[:8]}.lsic",
        content_sha256=sha,
    )


def stored(store, r: FrameRow) -> FrameRow:
    assert store.claim_frame(r) is None
    store.mark_stored(r)
    return r


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SqliteMetadataStore(tmp_path / "m.db")
        s.reopen = lambda: SqliteMetadataStore(tmp_path / "m.db")
    else:
        pg = request.getfixturevalue("postgres")
        reset_postgres(pg.dsn)
        s = PostgresMetadataStore(pg.dsn)
        s.reopen = lambda: PostgresMetadataStore(pg.dsn)
    yield s
    s.close()


def test_devices(store):
    assert store.add_device("dev", "h1") and not store.add_device("dev", "h2")
    assert store.get_device("dev").token_hash == "h1"
    assert store.set_token("dev", "h3") and store.get_device("dev").token_hash == "h3"
    assert store.revoke("dev") and store.get_device("dev").revoked == 1
    assert not store.revoke("nobody")


def test_claims_decide_between_racing_writers(store):
    first = row(0)
    assert store.claim_frame(first) is None, "the first claim wins the key"
    held = store.claim_frame(row(0, sha="b" * 64))
    assert held.content_sha256 == "a" * 64 and held.stored == 0
    assert store.get_frame("dev", "main", 0) is None, "a claim is not a frame until it is stored"
    assert not store.take_over_claim(row(0), stale_before_us=0), "a fresh claim is not taken over"
    assert store.take_over_claim(row(0), stale_before_us=now_us() + 1), "an abandoned one is, once"
    store.mark_stored(first)
    assert store.get_frame("dev", "main", 0).stored == 1
    store.release_claim(first)
    assert store.get_frame("dev", "main", 0) is not None, "a stored frame is never released"
    r1 = row(1)
    assert store.claim_frame(r1) is None
    store.release_claim(r1)
    assert store.claim_frame(row(1)) is None, "a released claim frees the key"
    assert store.stream_position("dev", "main") == 1 and store.stream_position("dev", "other") is None


def test_claims_from_many_threads_have_one_winner(store):
    from concurrent.futures import ThreadPoolExecutor

    stores = [store.reopen() for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda i: stores[i % 4].claim_frame(row(7, sha=f"{i:064d}")), range(16)))
        assert sum(r is None for r in results) == 1
    finally:
        for s in stores:
            s.close()


def test_archive_queries_see_stored_frames(store):
    store.add_device("dev", "h")
    for i in range(5):
        stored(store, row(i))
    stored(store, row(0, stream="side"))
    store.claim_frame(row(9))  # claimed, never stored
    assert [r.seq for r in store.list_frames("dev", "main", from_us=1000, to_us=4000)] == [1, 2, 3]
    assert [r.seq for r in store.list_frames("dev", "main", after_seq=2, limit=1)] == [3]
    assert store.list_streams("dev") == [("main", 5, 0, 4), ("side", 1, 0, 0)]
    assert store.previous_frame(row(3)).seq == 2 and store.previous_frame(row(0)) is None
    assert store.latest_frame("dev", "main").seq == 4
    assert store.count_pending() == 6
    assert [(d.device_id, n) for d, n in store.list_devices()] == [("dev", 6)]


def test_decode_leases(store):
    for i in range(6):
        stored(store, row(i))
    a = store.claim_decode("worker-a", 4, lease_s=60)
    b = store.claim_decode("worker-b", 4, lease_s=60)
    assert [r.seq for r in a] == [0, 1, 2, 3] and [r.seq for r in b] == [4, 5], "no frame leased twice"
    assert store.claim_decode("worker-c", 4, lease_s=60) == []
    assert store.finish_decode(a[0], "worker-a", DECODED, recon_bytes=100)
    assert not store.finish_decode(b[0], "worker-a", DECODED), "only the lease holder commits"
    assert store.finish_decode(a[1], "worker-a", FAILED, "bad tile")
    got = store.get_frame("dev", "main", 1)
    assert got.decoded == FAILED and got.decode_error == "bad tile"
    assert [r.seq for r in store.claim_decode("worker-a", 8, lease_s=60)] == [2, 3], "its own leases come back"
    assert [r.decode_attempts for r in store.claim_decode("worker-c", 8, lease_s=-1)] == [], "others wait for expiry"
    with store._tx() as cur:
        cur.execute("UPDATE frames SET decode_lease_us = 1")  # every lease has expired
    again = store.claim_decode("worker-c", 8, lease_s=60)
    assert [(r.seq, r.decode_attempts) for r in again] == [(2, 3), (3, 3), (4, 2), (5, 2)]
    store.release_decode(again[0], "worker-c")
    assert store.claim_decode("worker-d", 1, lease_s=60)[0].decode_attempts == 3, "a release does not count"
    assert store.count_by_state() == {DECODED: 1, FAILED: 1, WAITING: 4}
    assert store.cache_bytes() == 100 and [r.seq for r in store.oldest_cached(5)] == [0]
    store.mark_evicted(a[0])
    assert store.cache_bytes() == 0 and store.get_frame("dev", "main", 0).decoded == EVICTED


def test_claims_with_skip_locked_on_postgres(request):
    """Three connections claiming at once on PostgreSQL: every frame leased exactly once."""
    from concurrent.futures import ThreadPoolExecutor

    pg = request.getfixturevalue("postgres")
    reset_postgres(pg.dsn)
    stores = [PostgresMetadataStore(pg.dsn) for _ in range(3)]
    try:
        for i in range(60):
            stored(stores[0], row(i))

        def drain(k: int) -> list[int]:
            got = []
            while batch := stores[k].claim_decode(f"w{k}", 3, lease_s=60):
                got += [r.seq for r in batch]
                for r in batch:
                    assert stores[k].finish_decode(r, f"w{k}", DECODED)
            return got

        with ThreadPoolExecutor(3) as pool:
            claimed = [seq for part in pool.map(drain, range(3)) for seq in part]
        assert sorted(claimed) == list(range(60))
    finally:
        for s in stores:
            s.close()


def test_blob_contract(tmp_path, s3):
    for blobs in (LocalBlobStore(tmp_path / "b"), S3BlobStore("lsic", "t", s3.endpoint)):
        assert blobs.get("a/b.lsic") is None and not blobs.exists("a/b.lsic")
        blobs.put("a/b.lsic", b"one")
        blobs.put("a/b.lsic", b"two")
        assert blobs.get("a/b.lsic") == b"two" and blobs.exists("a/b.lsic")
        blobs.delete("a/b.lsic")
        assert blobs.get("a/b.lsic") is None
        blobs.delete("a/b.lsic")  # deleting what is gone is not an error
    with pytest.raises(ValueError):
        LocalBlobStore(tmp_path / "b").put("../escape", b"x")


@pytest.mark.parametrize(
    "flags, code, says",
    [
        (["--metadata", "mysql://db/lsic"], 25, "unknown metadata store 'mysql://db/lsic'"),
        (["--metadata", "postgresq://typo"], 25, "unknown metadata store"),
        (["--blobs", "ftp://host/x"], 25, "unknown blob store 'ftp://host/x'"),
        (["--blobs", "s3://"], 25, "names no bucket"),
        (["--blobs", "s3://no-such-bucket/x"], 26, "bucket 'no-such-bucket' does not answer"),
    ],
)
def test_a_store_the_service_cannot_use_stops_it_at_once(tmp_path, s3, monkeypatch, flags, code, says):
    """A typo must not start a replica on a SQLite file or a folder of its own, splitting the archive."""
    monkeypatch.setenv("LSIC_S3_ENDPOINT", s3.endpoint)
    r = subprocess.run([*cloud_command(), "serve", "--insecure", "--data", str(tmp_path / "d"), *flags],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == code and says in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "d" / "metadata.db").exists() or flags[0] == "--blobs"
    assert not any(p.name.endswith(":") for p in tmp_path.rglob("*")), "no folder named after a URL"


def test_blob_stores_say_when_they_cannot_be_used(tmp_path, s3):
    local = LocalBlobStore(tmp_path / "b")
    assert local.ping() is None and S3BlobStore("lsic", "t", s3.endpoint).ping() is None
    (tmp_path / "b").rmdir()
    assert "is gone" in local.ping()


def test_service_on_postgres_and_s3(tmp_path, postgres, s3, encoder, monkeypatch):
    monkeypatch.setenv("LSIC_S3_ENDPOINT", s3.endpoint)
    reset_postgres(postgres.dsn)
    extra = ["--metadata", postgres.dsn, "--blobs", "s3://lsic/archive", "--decode-backend", "onnx"]
    cloud = CloudProcess(tmp_path / "data", extra=extra).start()
    try:
        token = cloud.add_device("cam-pg")
        frame = encoder.encode(natural_image(128, 192), 3)
        with grpc.insecure_channel(cloud.address) as ch:
            ingest = pb_grpc.IngestStub(ch)
            md = (("authorization", f"Bearer {token}"),)
            recs = [pb.FrameRecord(stream_id="main", sequence=i, bitstream=frame) for i in (0, 1, 1, 2)]
            acks = [a.status for a in ingest.StreamFrames(iter(recs), metadata=md, timeout=30)]
            assert acks == [pb.FrameAck.STORED, pb.FrameAck.STORED, pb.FrameAck.DUPLICATE, pb.FrameAck.STORED]
            archive = pb_grpc.ArchiveStub(ch)
            omd = (("authorization", f"Bearer {cloud.operator_token()}"),)
            key = pb.FrameKey(device_id="cam-pg", stream_id="main", sequence=1)
            assert archive.GetBitstream(key, metadata=omd).bitstream == frame
            assert archive.Reconstruct(pb.ReconstructRequest(key=key), metadata=omd, timeout=60).width == 192
        listed = boto3.client("s3", endpoint_url=s3.endpoint).list_objects_v2(Bucket="lsic", Prefix="archive/frames/")
        keys = sorted(o["Key"] for o in listed["Contents"])
        assert len(keys) == 3 and all(k.startswith("archive/frames/cam-pg/main/") for k in keys)
    finally:
        cloud.stop()


class TcpProxy:
    """A link to a server that can be cut and restored: a listener forwarding to `target_port`."""

    def __init__(self, target_port: int) -> None:
        from lsic.testing import free_port

        self.target, self.port = target_port, free_port()
        self.links: list = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        import socket
        import threading

        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.listener.settimeout(0.2)
        self.running = True

        def pump(a, b) -> None:
            try:
                while chunk := a.recv(65536):
                    b.sendall(chunk)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    s.close()

        def accept() -> None:
            while self.running:
                try:
                    client, _ = self.listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                upstream = socket.create_connection(("127.0.0.1", self.target))
                self.links += [client, upstream]
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=pump, args=(a, b), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return self

    def cut(self) -> None:
        import socket

        self.running = False
        self.listener.close()
        for s in self.links:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self.links = []


def test_a_blob_store_outage_pauses_decoding_and_fails_no_frame(tmp_path, s3, encoder, monkeypatch):
    """The decode worker's link to S3 breaks while frames arrive: it hands them back and waits,
    and decodes every one once the link is back; none is marked failed."""
    monkeypatch.setenv("LSIC_S3_ENDPOINT", s3.endpoint)
    data = tmp_path / "data"
    cloud = CloudProcess(data, extra=["--no-decode", "--blobs", "s3://lsic/outage"]).start()
    proxy = TcpProxy(s3.port).start()
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [*cloud_command(), "decode", "--data", str(data), "--blobs", "s3://lsic/outage", "--decode-backend", "onnx",
         "--decode-processes", "0", "--batch-frames", "4"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, "LSIC_S3_ENDPOINT": proxy.endpoint},
    )
    store = SqliteMetadataStore(data / "metadata.db")
    try:
        time.sleep(3)  # started, its blob store checked through the link
        assert worker.poll() is None, log.read_text()[-2000:]
        proxy.cut()
        token = cloud.add_device("cam-outage")
        with grpc.insecure_channel(cloud.address) as ch:
            for seq in range(6):
                rec = pb.FrameRecord(stream_id="main", sequence=seq, bitstream=encoder.encode(natural_image(64, 96), 3))
                ack = pb_grpc.IngestStub(ch).PutFrame(rec, metadata=(("authorization", f"Bearer {token}"),), timeout=30)
                assert ack.status == pb.FrameAck.STORED
        deadline = time.monotonic() + 60
        while "decoding paused" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "decoding paused" in log.read_text()
        assert {r.decoded for r in store.list_frames("cam-outage")} == {0}, "nothing failed, nothing decoded"
        proxy.start()  # the link is back, on the same port
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and {r.decoded for r in store.list_frames("cam-outage")} != {1}:
            time.sleep(0.5)
        assert {r.decoded for r in store.list_frames("cam-outage")} == {1}, log.read_text()[-3000:]
    finally:
        worker.terminate()
        worker.wait(30)
        proxy.cut()
        store.close()
        cloud.stop()
