"""Thread settings shared by encoder and decoder.

LSIC parallelizes across tiles: the integer networks' GEMMs run in single-threaded ONNX Runtime
sessions, one per thread (lsic.codec.entropy.int_matmul), and numpy's BLAS is held to one thread
too. A multi-threaded BLAS spins and fights for cores on small machines (measured: 4x slower on 2
cores next to another busy process).
"""

from __future__ import annotations

from functools import cache


@cache
def single_threaded_blas() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
