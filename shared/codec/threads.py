"""Thread settings shared by encoder and decoder.

The integer hyper-synthesis runs many small float64 GEMMs. A multi-threaded BLAS spins and
fights for cores on small machines (measured: 4x slower on 2 cores next to another busy
process), so BLAS runs single-threaded and LSIC parallelizes across tiles instead.
"""

from __future__ import annotations

from functools import cache


@cache
def single_threaded_blas() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
