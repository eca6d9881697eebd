"""Unchanged-tile detection for fixed cameras.

A tile whose pixels differ from the last *sent* version of that tile by less than a threshold
(mean absolute difference on 0..255) is sent as a reference: the cloud reuses the previous
reconstruction. Comparing with the last sent version, not the previous frame, keeps slow drift
from accumulating; a refresh interval bounds how long any tile can go unsent.
"""

from __future__ import annotations

import numpy as np

from lsic.codec.tiling import Grid


class ChangeDetector:
    def __init__(self, threshold: float = 2.0, refresh_every: int = 100) -> None:
        self.threshold = threshold
        self.refresh_every = refresh_every
        self.reference: np.ndarray | None = None
        self.age: dict[int, int] = {}
        self.skipped = 0
        self.total = 0

    def unchanged(self, rgb: np.ndarray, grid: Grid) -> set[int]:
        """Indexes of tiles to send as references; updates the sent reference for the others."""
        tiles = grid.tiles()
        self.total += len(tiles)
        if self.threshold <= 0 or self.reference is None or self.reference.shape != rgb.shape:
            self.reference = rgb.copy()
            self.age = {t.index: 0 for t in tiles}
            return set()
        same = set()
        for t in tiles:
            cur = rgb[t.y : t.y + t.h, t.x : t.x + t.w]
            ref = self.reference[t.y : t.y + t.h, t.x : t.x + t.w]
            mad = float(np.mean(np.abs(cur.astype(np.int16) - ref.astype(np.int16))))
            if mad < self.threshold and self.age.get(t.index, 0) < self.refresh_every:
                same.add(t.index)
                self.age[t.index] = self.age.get(t.index, 0) + 1
            else:
                ref[...] = cur
                self.age[t.index] = 0
        self.skipped += len(same)
        return same
