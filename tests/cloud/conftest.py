from __future__ import annotations

import grpc
import pytest

from lsic.testing import CloudProcess, PostgresServer, S3Server
from lsic.v1 import lsic_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    c = CloudProcess(
        tmp_path_factory.mktemp("cloud") / "data", extra=["--decode-backend", "onnx", "--max-message-mb", "4"]
    )
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def channel(cloud):
    with grpc.insecure_channel(cloud.address) as ch:
        yield ch


@pytest.fixture(scope="module")
def stubs(channel):
    return pb_grpc.IngestStub(channel), pb_grpc.ArchiveStub(channel), pb_grpc.AdminStub(channel)


@pytest.fixture(scope="module")
def operator_md(cloud):
    return (("authorization", f"Bearer {cloud.operator_token()}"),)


@pytest.fixture(scope="module")
def postgres():
    """A throw-away PostgreSQL cluster on a loopback port."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3():
    """moto's S3-compatible server on a loopback port, with a bucket `lsic`."""
    import os

    import boto3

    server = S3Server().start()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    boto3.client("s3", endpoint_url=server.endpoint).create_bucket(Bucket="lsic")
    yield server
    server.stop()


def reset_postgres(dsn: str) -> None:
    """An empty database: the tables are dropped, the next store creates them."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS frames, devices")
