"""The service edge's last line: an exception that a handler did not turn into a status becomes one.

An LsicError becomes its own status and message. Anything else becomes INTERNAL with a reference
that the logged traceback carries too, never with the exception's text: a client gets a status
it can act on, the operator gets the trace, and nothing about the service's internals leaks.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import grpc

from lsic.cloud import metrics
from lsic.cloud.handlers import rewrap
from lsic.codec.errors import LsicError

log = logging.getLogger("lsic.cloud.calls")


class ErrorInterceptor(grpc.ServerInterceptor):
    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails):
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        return rewrap(handler, lambda b, _: self._unary(method, b), lambda b, _: self._streaming(method, b))

    @staticmethod
    def _unary(method: str, behavior: Callable) -> Callable:
        def run(request, context):
            try:
                return behavior(request, context)
            except Exception as exc:
                _answer(method, exc, context)

        return run

    @staticmethod
    def _streaming(method: str, behavior: Callable) -> Callable:
        def run(request, context):
            try:
                yield from behavior(request, context)
            except Exception as exc:
                _answer(method, exc, context)

        return run


def status_of(exc: LsicError) -> grpc.StatusCode:
    return grpc.StatusCode[exc.grpc_status]


def _answer(method: str, exc: Exception, context: grpc.ServicerContext) -> None:
    """Abort the call with a status for `exc`; re-raise what already has one (context.abort) or
    whose client has gone."""
    if context.code() is not None or not context.is_active():
        raise exc
    if isinstance(exc, LsicError):
        context.abort(status_of(exc), str(exc))
    metrics.CALLS_FAILED.labels(method).inc()
    context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method} (the service log has it as ref {logged(exc, method)})")


def logged(exc: BaseException, where: str) -> str:
    """Log an unforeseen failure with its trace under a new reference, returned for the client."""
    ref = uuid.uuid4().hex[:12]
    log.error("request failed", exc_info=exc, extra={"where": where, "ref": ref})
    return ref
