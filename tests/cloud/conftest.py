from __future__ import annotations

import grpc
import pytest

from lsic.testing import CloudProcess
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
