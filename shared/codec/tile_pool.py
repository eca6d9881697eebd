"""Entropy decoding of tiles in worker processes, so the synthesis (a GPU) is not left waiting.

A tile's entropy path (rANS, integer hyper-synthesis, integer context) is independent of every
other tile's and runs on one core; the synthesis is one batched call. The pool decodes tiles in
parallel while the caller runs the synthesis on tiles already decoded.

Workers are spawned, never forked: a process that has started CUDA cannot fork safely, and the
cloud's decode worker starts CUDA before it decodes. They end with the process that owns the
pool, even when it is killed, and a pool whose worker died starts again on the next task.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from lsic.codec.entropy.predicted import LatentState
from lsic.codec.errors import LsicError

log = logging.getLogger("lsic.decode")

# Tiles a worker decodes per task: enough to amortize the round trip, few enough that a large
# frame spreads over every worker.
CHUNK = 4


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a container's cpuset sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def decode_tiles(data: bytes, indexes: list[int], with_latents: bool = False) -> list | LsicError:
    """The given tiles of one bitstream (run in a worker): each one's y_hat as the synthesis reads
    it, or with_latents its LatentState, which a predicted next frame merges into (its integers
    as int32: a third of the bytes to send back).

    A bitstream error comes back as its value, so the parent reports it for that frame alone.
    """
    from lsic.codec.bitstream import parse
    from lsic.codec.decoder import dequantize, tiles_symbols
    from lsic.codec.entropy.predicted import intra_state
    from lsic.codec.package import package_for_header

    try:
        parsed = parse(data, limits=None)  # the parent checked the frame against its limits
        pkg = package_for_header(parsed.header)
        grid = parsed.header.grid.tiles()
        tiles = [grid[i] for i in indexes]
        symbols = tiles_symbols(pkg, parsed, tiles)
        y_hats = [dequantize(pkg, parsed, t, s) for t, s in zip(tiles, symbols, strict=True)]
        if not with_latents:
            return y_hats
        return [_narrow(intra_state(s, y)) for s, y in zip(symbols, y_hats, strict=True)]
    except LsicError as exc:
        return exc


def _narrow(state: LatentState) -> LatentState:
    return LatentState(state.z.astype(np.int32), state.y_fx.astype(np.int32), state.y_hat)


def _init_worker(parent_pid: int) -> None:
    """One thread per worker: the pool is the parallelism, oversubscribed BLAS only slows it.
    The worker ends with its parent."""
    from threadpoolctl import threadpool_limits

    from lsic.lifetime import end_with_parent

    end_with_parent(parent_pid)
    threadpool_limits(1)


class TilePool:
    """A pool of spawned processes that entropy-decode tiles."""

    def __init__(self, workers: int = 0) -> None:
        """workers: 0 for one per usable core."""
        self.workers = workers or usable_cores()
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
            initargs=(os.getpid(),),
        )

    def submit_chunk(self, data: bytes, indexes: list[int], with_latents: bool = False) -> Future:
        """A future for some tiles of one bitstream (decode_tiles). A pool broken by a worker's
        death (killed, out of memory) is replaced first; the tasks it held fail with
        BrokenProcessPool, which their caller retries."""
        try:
            return self._executor.submit(decode_tiles, data, indexes, with_latents)
        except BrokenProcessPool:
            log.warning("a tile decoding process died; starting the pool again")
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = self._start()
            return self._executor.submit(decode_tiles, data, indexes, with_latents)

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
