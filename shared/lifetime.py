"""Child processes that end with their parent, so none outlives a killed service."""

from __future__ import annotations

import os
import signal


def end_with_parent(parent_pid: int) -> None:
    """In a child process of `parent_pid`: SIGTERM it when that parent dies, even by SIGKILL
    (Linux), and at once if it has died already. Elsewhere the child outlives a killed parent."""
    import ctypes
    from contextlib import suppress

    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # it died before the line above: nobody would signal
        os.kill(os.getpid(), signal.SIGTERM)
