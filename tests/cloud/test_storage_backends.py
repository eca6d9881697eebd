"""The metadata store contract on SQLite and a real PostgreSQL server; the blob store contract
on a local folder and an S3-compatible server; and the service running on PostgreSQL + S3."""

from __future__ import annotations

import os

import boto3
import grpc
import pytest

from lsic.cloud.storage.blobs import LocalBlobStore, S3BlobStore
from lsic.cloud.storage.metadata import FrameRow, PostgresMetadataStore, SqliteMetadataStore
from lsic.testing import CloudProcess
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc

from ..conftest import natural_image
from .backends import PostgresServer, S3Server


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3():
    server = S3Server().start()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    boto3.client("s3", endpoint_url=server.endpoint).create_bucket(Bucket="lsic")
    yield server
    server.stop()


def row(seq: int, stream: str = "main", capture: int = 0) -> FrameRow:
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
        f"frames/dev/{stream}/{seq}.lsic",
    )


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SqliteMetadataStore(tmp_path / "m.db")
    else:
        pg = request.getfixturevalue("postgres")
        s = PostgresMetadataStore(pg.dsn)
        with s._tx() as cur:
            cur.execute("TRUNCATE frames, devices")
    yield s
    s.close()


def test_metadata_contract(store):
    assert store.add_device("dev", "h1") and not store.add_device("dev", "h2")
    assert store.get_device("dev").token_hash == "h1"
    assert store.set_token("dev", "h3") and store.get_device("dev").token_hash == "h3"
    assert store.revoke("dev") and store.get_device("dev").revoked == 1
    assert not store.revoke("nobody")
    assert all(store.insert_frame(row(i)) for i in range(5))
    assert not store.insert_frame(row(2)), "a key inserted twice is a duplicate"
    assert store.insert_frame(row(0, stream="side"))
    assert [r.seq for r in store.list_frames("dev", "main", from_us=1000, to_us=4000)] == [1, 2, 3]
    assert [r.seq for r in store.list_frames("dev", "main", after_seq=2, limit=1)] == [3]
    assert store.list_streams("dev") == [("main", 5, 0, 4), ("side", 1, 0, 0)]
    assert store.previous_frame(row(3)).seq == 2 and store.previous_frame(row(0)) is None
    assert store.count_pending() == 6
    store.mark_decoded(row(1))
    assert store.get_frame("dev", "main", 1).decoded == 1 and store.count_pending() == 5
    assert [(d.device_id, n) for d, n in store.list_devices()] == [("dev", 6)]


def test_blob_contract(tmp_path, s3):
    for blobs in (LocalBlobStore(tmp_path / "b"), S3BlobStore("lsic", "t", s3.endpoint)):
        assert blobs.get("a/b.lsic") is None and not blobs.exists("a/b.lsic")
        blobs.put("a/b.lsic", b"one")
        blobs.put("a/b.lsic", b"two")
        assert blobs.get("a/b.lsic") == b"two" and blobs.exists("a/b.lsic")
    with pytest.raises(ValueError):
        LocalBlobStore(tmp_path / "b").put("../escape", b"x")


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
        got = boto3.client("s3", endpoint_url=s3.endpoint).get_object(
            Bucket="lsic", Key="archive/frames/cam-pg/main/000000000001.lsic"
        )
        assert got["Body"].read() == frame
    finally:
        cloud.stop()


def reset_postgres(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS frames, devices")
