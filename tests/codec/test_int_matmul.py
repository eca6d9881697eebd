"""The 8-bit digit GEMMs behind the integer networks are exact at the edges of their range."""

from __future__ import annotations

import numpy as np
import pytest

from lsic.codec.entropy.int_hyper import ACT_LIMIT, MAX_FAN_IN, WEIGHT_BITS
from lsic.codec.entropy.int_matmul import IntWeights, byte_planes, matmul_planes, one_digit_columns, planes_needed


@pytest.mark.parametrize("peak", [100, 30_000, ACT_LIMIT])
def test_products_exact_up_to_the_largest_fan_in(peak: int) -> None:
    rng = np.random.default_rng(peak)
    w_max = (1 << WEIGHT_BITS) - 1
    w = rng.integers(-w_max, w_max + 1, size=(MAX_FAN_IN, 6))
    w[:, 0] = w_max  # every product at its largest, one sign ...
    w[:, 1] = -w_max  # ... and the other: the int32 sums of the digit products are at their limit
    x = rng.integers(-peak, peak + 1, size=(5, MAX_FAN_IN))
    x[0] = peak
    x[1] = -peak
    p = planes_needed(x)
    assert p == {100: 1, 30_000: 2, ACT_LIMIT: 3}[peak]
    got = matmul_planes(np.ascontiguousarray(byte_planes(x, p)), IntWeights.from_matrix(w))
    assert np.array_equal(got, x @ w)


@pytest.mark.parametrize("peak", [100, ACT_LIMIT])
def test_power_of_two_columns_take_one_digit_and_stay_exact(peak: int) -> None:
    """Weights whose columns are a factor times digits of at most 64 run half the products."""
    rng = np.random.default_rng(peak)
    digits = rng.integers(-64, 65, size=(MAX_FAN_IN, 5))
    digits[:, 0], digits[:, 1], digits[:, 4] = 64, -64, 0  # the sums at their limit; a zero column
    w = digits * np.array([1, 16, 3, 9, 5])
    x = rng.integers(-peak, peak + 1, size=(4, MAX_FAN_IN))
    x[0], x[1] = peak, -peak
    weights = IntWeights.from_matrix(w)
    assert weights.n_digits == 1
    p = planes_needed(x)
    assert np.array_equal(matmul_planes(np.ascontiguousarray(byte_planes(x, p)), weights), x @ w)
    w[0, 2] += 1  # one entry off its column's factor: both digits, for the whole matrix
    assert IntWeights.from_matrix(w).n_digits == 2


def test_one_digit_columns_round_to_the_nearest_fitting_column() -> None:
    rng = np.random.default_rng(1)
    w = rng.integers(-2000, 2001, size=(300, 8))
    w[:, 7] = rng.integers(-40, 41, size=300)  # already fits: unchanged
    got = one_digit_columns(w)
    assert IntWeights.from_matrix(got).n_digits == 1
    assert np.array_equal(got[:, 7], w[:, 7])
    step = -(-np.abs(w).max(axis=0) // 64)
    assert np.all(np.abs(got - w) <= step / 2)
    assert np.array_equal(one_digit_columns(got), got), "rounding twice changes nothing"


def test_out_of_range_operands_are_refused() -> None:
    with pytest.raises(ValueError, match="two-digit range"):
        IntWeights.from_matrix(np.array([[(1 << 14) + 1], [1]]))
    with pytest.raises(ValueError, match="exact integer range"):
        planes_needed(np.array([1 << 23]))


def test_shipped_graph_is_one_matmul_integer_node() -> None:
    from onnx import TensorProto, helper

    from lsic.codec.entropy.int_matmul import MATMUL_INTEGER_MODEL

    def matrix(name: str, dtype: int):
        return helper.make_tensor_value_info(name, dtype, [None, None])

    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])],
        "int_matmul",
        [matrix("a", TensorProto.UINT8), matrix("b", TensorProto.INT8)],
        [matrix("y", TensorProto.INT32)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="lsic")
    model.ir_version = 8
    assert model.SerializeToString() == MATMUL_INTEGER_MODEL
