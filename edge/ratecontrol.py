"""Rate control: hold the average bit rate under a budget by choosing the operating point
frame by frame, and drop frames only when even the lowest point does not fit.

A leaky bucket of `window_s` seconds of budget fills at the target rate; each frame sent
drains its size. A frame gets the highest quality whose estimated size fits in the bucket
(and in two frame intervals of budget);
estimates are running averages of the sizes actually produced at each quality (qualities not
yet seen are extrapolated from the nearest one seen).

With temporal coding a keyframe costs many predicted frames: keyframes and predicted frames
keep separate estimates, and a keyframe may take the whole bucket and is never dropped (the
frames after it are predicted from it, so dropping it would only move the cost to the next).
"""

from __future__ import annotations

from dataclasses import dataclass

STEP_RATIO = 1.35  # typical size ratio between neighbouring operating points
KEY_RATIO = 8.0  # typical size ratio of a keyframe to a predicted frame, until both are measured
# Budget the bucket starts with: a quarter second, not a full bucket, so a short stream's
# average holds too (a 6 s clip starting half full overshot a 200 kbit/s target by 10%).
START_CREDIT_S = 0.25


@dataclass
class Decision:
    quality: int  # 0 means: drop this frame


class RateController:
    def __init__(self, n_qualities: int, quality: int = 6, target_kbps: float = 0.0, window_s: float = 2.0) -> None:
        self.n = n_qualities
        self.fixed = quality
        self.target_bps = target_kbps * 1000.0 * 0.97  # aim a little under the budget
        self.capacity = self.target_bps * window_s
        self.level = min(self.capacity, self.target_bps * START_CREDIT_S)
        self.estimate: dict[int, float] = {}  # frames coded on their own (keyframes, stills)
        self.predicted: dict[int, float] = {}  # predicted frames
        self.last_t: float | None = None
        self.first_t: float | None = None
        self.frames = 0
        self.total_bits = 0
        self.dropped = 0

    def _guess(self, q: int, predicted: bool = False) -> float | None:
        table, other = (self.predicted, self.estimate) if predicted else (self.estimate, self.predicted)
        scale = 1.0
        if not table:
            table, scale = other, (1 / KEY_RATIO if predicted else KEY_RATIO)
        if not table:
            return None
        if q in table:
            return table[q] * scale
        kq, kb = min(table.items(), key=lambda kv: abs(kv[0] - q))
        return kb * STEP_RATIO ** (q - kq) * scale

    def decide(self, now: float, keyframe: bool = True, temporal: bool = False) -> Decision:
        """keyframe: the frame is coded on its own; temporal: the stream has predicted frames
        (then a keyframe may take the whole bucket and is never dropped)."""
        if self.first_t is None:
            self.first_t = now
        if not self.target_bps:
            self.last_t = now  # the achieved rate is reported in fixed-quality mode too
            return Decision(self.fixed)
        gap = None if self.last_t is None else now - self.last_t
        if gap is not None:
            self.level = min(self.capacity, self.level + gap * self.target_bps)
        self.last_t = now
        predicted = temporal and not keyframe
        if not self.estimate and not self.predicted:  # no size seen yet: start from the lowest point and climb
            return Decision(1)
        if not gap:
            return Decision(min(self.fixed, self.n))
        # Spend at most two frame intervals' worth on one frame: the bucket absorbs size
        # variation, it does not fund bursts. A temporal stream's keyframe may take the bucket.
        allowed = self.level if temporal and keyframe else min(self.level, 2 * gap * self.target_bps)
        for q in range(self.n, 0, -1):
            size = self._guess(q, predicted)
            if size is not None and size <= allowed:
                return Decision(q)
        lowest = self._guess(1, predicted)
        if (lowest is not None and lowest <= self.level) or (temporal and keyframe):
            return Decision(1)
        self.dropped += 1
        return Decision(0)

    def record(self, now: float, quality: int, bits: int, predicted: bool = False) -> None:
        self.level -= bits
        self.frames += 1
        self.total_bits += bits
        table = self.predicted if predicted else self.estimate
        old = table.get(quality)
        table[quality] = bits if old is None else 0.7 * old + 0.3 * bits

    def achieved_kbps(self) -> float:
        """Average rate from the first frame to now (frames spaced as they came)."""
        if self.first_t is None or self.last_t is None or self.last_t <= self.first_t:
            return 0.0
        decisions = self.frames + self.dropped
        span = (self.last_t - self.first_t) * decisions / max(1, decisions - 1)
        return self.total_bits / span / 1000.0
