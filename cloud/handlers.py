"""Wrapping a gRPC method handler, whatever its kind, for the service's interceptors."""

from __future__ import annotations

from collections.abc import Callable

import grpc

# (behavior, request_streaming) -> behavior
Wrap = Callable[[Callable, bool], Callable]


def rewrap(handler: grpc.RpcMethodHandler, unary: Wrap, streaming: Wrap) -> grpc.RpcMethodHandler:
    """The same handler with its behavior passed through `unary` (one response) or `streaming`
    (a response stream), told whether requests stream in."""
    pack = (handler.request_deserializer, handler.response_serializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary, False), *pack)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream, False), *pack)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary, True), *pack)
    return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream, True), *pack)
