"""The 8-bit digit GEMMs behind the integer networks are exact at the edges of their range."""

from __future__ import annotations

import numpy as np
import pytest

from lsic.codec.entropy.int_hyper import ACT_LIMIT, MAX_FAN_IN, WEIGHT_BITS
from lsic.codec.entropy.int_matmul import IntWeights, byte_planes, matmul_planes, planes_needed


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


def test_out_of_range_operands_are_refused() -> None:
    with pytest.raises(ValueError, match="two-digit range"):
        IntWeights.from_matrix(np.array([[1 << 14]]))
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
