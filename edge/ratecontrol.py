"""Rate control: hold a moving-average bit rate under a budget by choosing the operating point
frame by frame, and drop frames only when even the lowest point is too big."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass
class Decision:
    quality: int  # 0 means: drop this frame


class RateController:
    """Fixed quality when target_kbps is 0; otherwise a per-frame controller.

    It keeps, per quality, a running estimate of the frame size and picks the highest quality
    whose estimated size fits the budget left in a sliding window of `window_s` seconds.
    """

    def __init__(self, n_qualities: int, quality: int = 4, target_kbps: float = 0.0, window_s: float = 2.0) -> None:
        self.n = n_qualities
        self.fixed = quality
        self.target_bps = target_kbps * 1000.0
        self.window_s = window_s
        self.sent: deque[tuple[float, int]] = deque()  # (time, bits)
        self.estimate: dict[int, float] = {}
        self.total_bits = 0
        self.first_t: float | None = None
        self.last_t = 0.0
        self.dropped = 0

    def _window_bits(self, now: float) -> int:
        while self.sent and self.sent[0][0] <= now - self.window_s:
            self.sent.popleft()
        return sum(b for _, b in self.sent)

    def _guess(self, q: int) -> float:
        if q in self.estimate:
            return self.estimate[q]
        known = sorted(self.estimate.items())
        if not known:
            return 0.0
        # Sizes grow roughly 1.35x per quality step for these models.
        kq, kb = min(known, key=lambda kv: abs(kv[0] - q))
        return kb * 1.35 ** (q - kq)

    def decide(self, now: float) -> Decision:
        if self.first_t is None:
            self.first_t = now
        if not self.target_bps:
            return Decision(self.fixed)
        budget = self.target_bps * self.window_s - self._window_bits(now)
        for q in range(self.n, 0, -1):
            if self._guess(q) <= budget:
                return Decision(q)
        if self._guess(1) == 0.0:
            return Decision(1)
        self.dropped += 1
        return Decision(0)

    def record(self, now: float, quality: int, bits: int) -> None:
        self.sent.append((now, bits))
        self.total_bits += bits
        self.last_t = now
        old = self.estimate.get(quality)
        self.estimate[quality] = bits if old is None else 0.7 * old + 0.3 * bits

    def achieved_kbps(self) -> float:
        if self.first_t is None or self.last_t <= self.first_t:
            return 0.0
        return self.total_bits / (self.last_t - self.first_t) / 1000.0
