"""What a client sees when a handler fails in a way nobody planned for: a status and a reference,
over a real gRPC server on loopback, with the service's error interceptor."""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
import pytest

from lsic.cloud import metrics
from lsic.cloud.call_errors import ErrorInterceptor
from lsic.codec.errors import ChecksumError


def _unary(request: bytes, context: grpc.ServicerContext) -> bytes:
    if request == b"bug":
        raise RuntimeError("/srv/secret/path is missing")
    if request == b"typed":
        raise ChecksumError("tile 3: checksum mismatch")
    if request == b"abort":
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours")
    return b"ok:" + request


def _stream(request: bytes, context: grpc.ServicerContext):
    yield b"first"
    _unary(request, context)
    yield b"never"


@pytest.fixture(scope="module")
def channel():
    server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[ErrorInterceptor()])
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "Stream": grpc.unary_stream_rpc_method_handler(_stream),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("probe.Probe", handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    server.stop(0)


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as exc:
        call()
    return exc.value.code(), exc.value.details()


@pytest.mark.parametrize("method", ["Unary", "Stream"])
def test_failures_become_statuses_and_bugs_do_not_leak(channel, method, caplog):
    call = channel.unary_unary("/probe.Probe/Unary") if method == "Unary" else channel.unary_stream(
        "/probe.Probe/Stream"
    )
    run = (lambda r: call(r, timeout=10)) if method == "Unary" else (lambda r: list(call(r, timeout=10)))
    failed = metrics.CALLS_FAILED.labels(f"/probe.Probe/{method}")._value.get()
    with caplog.at_level(logging.ERROR, logger="lsic.cloud.calls"):
        code, details = _code(lambda: run(b"bug"))
    assert code == grpc.StatusCode.INTERNAL and "secret" not in details
    ref = details.rsplit("ref ", 1)[1].rstrip(")")
    assert any(getattr(r, "ref", None) == ref and "secret" in str(r.exc_info[1]) for r in caplog.records)
    assert metrics.CALLS_FAILED.labels(f"/probe.Probe/{method}")._value.get() == failed + 1
    assert _code(lambda: run(b"typed")) == (grpc.StatusCode.DATA_LOSS, "tile 3: checksum mismatch")
    assert _code(lambda: run(b"abort")) == (grpc.StatusCode.PERMISSION_DENIED, "not yours")
    if method == "Unary":
        assert run(b"fine") == b"ok:fine"
