"""Operating points extrapolated below the trained ones continue the log-gains' line exactly."""

from __future__ import annotations

import numpy as np
import pytest

from lsic.codec.bench.rd import first_trained
from lsic.codec.networks.operating_points import describe, extend_below


def test_points_below_continue_the_trained_spacing():
    trained = np.log(np.array([[0.5, 1.0], [1.0, 1.5], [2.0, 2.0]], dtype=np.float32))
    rows, positions = extend_below(trained, 2)
    assert positions == [-2.0, -1.0, 0.0, 1.0, 2.0]
    np.testing.assert_array_equal(rows[2:], trained), "trained gains are kept as they are"
    step = trained[1] - trained[0]
    np.testing.assert_allclose(rows[1], trained[0] - step)
    np.testing.assert_allclose(rows[0], trained[0] - 2 * step)
    assert np.all(np.exp(rows[0]) < np.exp(trained[0])), "smaller gains: coarser steps, fewer bits"


def test_model_json_says_which_points_were_trained():
    points = describe([-1.0, 0.0, 1.0], [0.0018, 0.0035])
    assert points[0] == {"quality": 1, "position": -1.0, "lambda": None, "trained": False}
    assert points[2] == {"quality": 3, "position": 1.0, "lambda": 0.0035, "trained": True}


def test_nothing_to_extrapolate_from_one_point():
    with pytest.raises(ValueError, match="two trained"):
        extend_below(np.zeros((1, 4), np.float32), 1)
    rows, positions = extend_below(np.zeros((1, 4), np.float32), 0)
    assert rows.shape == (1, 4) and positions == [0.0]


def test_rd_bench_finds_where_the_trained_points_start():
    """`lsic bench rd` adds a trained-points-only BD-rate row, so range extension is visible."""
    meta = {"operating_points": describe([-2.0, -1.0, 0.0, 1.0], [0.0018, 0.0035])}
    assert first_trained(meta) == 2
    assert first_trained({}) == 0, "packages exported before operating_points have no extrapolated point"
