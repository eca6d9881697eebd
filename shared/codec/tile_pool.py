"""Entropy decoding of tiles in worker processes, so the synthesis (a GPU) is not left waiting.

A tile's entropy path (rANS, integer hyper-synthesis, integer context) is independent of every
other tile's and runs on one core; the synthesis is one batched call. The pool decodes tiles in
parallel while the caller runs the synthesis on tiles already decoded.

Workers are spawned, never forked: a process that has started CUDA cannot fork safely, and the
cloud's decode worker starts CUDA before it decodes.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

from lsic.codec.errors import LsicError

# Tiles a worker decodes per task: enough to amortize the round trip, few enough that a large
# frame spreads over every worker.
CHUNK = 4


def decode_tiles(data: bytes, indexes: list[int]) -> list[np.ndarray] | LsicError:
    """Gained y_hat of the given tiles of one bitstream, inverse gain applied (run in a worker).

    A bitstream error comes back as its value, so the parent reports it for that frame alone.
    """
    from lsic.codec.bitstream import parse
    from lsic.codec.decoder import dequantized_tiles
    from lsic.codec.package import package_for_header

    try:
        parsed = parse(data, limits=None)  # the parent checked the frame against its limits
        pkg = package_for_header(parsed.header)
        tiles = parsed.header.grid.tiles()
        return dequantized_tiles(pkg, parsed, [tiles[i] for i in indexes])
    except LsicError as exc:
        return exc


def _init_worker() -> None:
    """One thread per worker: the pool is the parallelism, oversubscribed BLAS only slows it."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


class TilePool:
    """A pool of spawned processes that entropy-decode tiles."""

    def __init__(self, workers: int = 0) -> None:
        self.workers = workers or max(1, (os.cpu_count() or 1))
        self._executor = ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker
        )

    def submit_chunk(self, data: bytes, indexes: list[int]) -> Future:
        """A future for the y_hat of some tiles of one bitstream (decode_tiles)."""
        return self._executor.submit(decode_tiles, data, indexes)

    def warm_up(self) -> None:
        """Start every worker now (imports included), not on the first frame."""
        list(self._executor.map(_noop, range(self.workers * 2)))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> TilePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _noop(_: int) -> None:
    import lsic.codec.entropy.latents  # noqa: F401  (the import is the work a cold worker does)
