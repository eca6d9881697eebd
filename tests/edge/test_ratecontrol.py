"""Rate control holds the moving average under the budget, dropping frames only as a last resort."""

from __future__ import annotations

from lsic.edge.ratecontrol import RateController


def simulate(target_kbps: float, frames: int = 300, fps: float = 10.0, scene_bits=lambda i: 1.0):
    rc = RateController(n_qualities=8, quality=4, target_kbps=target_kbps, window_s=2.0)
    chosen = []
    for i in range(frames):
        now = i / fps
        d = rc.decide(now)
        chosen.append(d.quality)
        if d.quality:
            rc.record(now, d.quality, int(20_000 * 1.35 ** (d.quality - 1) * scene_bits(i)))
    return rc, chosen


def test_fixed_quality_without_target():
    rc, chosen = simulate(0)
    assert set(chosen) == {4}
    assert abs(rc.achieved_kbps() - 20 * 1.35**3 * 10) < 5, "the rate is reported at a fixed quality too"


def test_average_stays_under_target_and_uses_the_budget():
    rc, chosen = simulate(500)
    assert rc.achieved_kbps() <= 500 * 1.02
    assert rc.achieved_kbps() >= 500 * 0.6
    assert rc.dropped == 0 and 1 < max(chosen[20:]) < 8


def test_scene_change_lowers_quality():
    rc, chosen = simulate(600, scene_bits=lambda i: 3.0 if i >= 150 else 1.0)
    assert sum(chosen[200:]) / 100 < sum(chosen[50:150]) / 100
    assert rc.achieved_kbps() <= 600 * 1.02


def test_drops_frames_only_below_the_lowest_point():
    rc, chosen = simulate(100)  # even quality 1 (200 kbit/s at 10 fps) is too big
    assert rc.dropped > 0 and rc.achieved_kbps() <= 100 * 1.1
    assert min(q for q in chosen if q) == 1
