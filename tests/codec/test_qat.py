"""Quantization-aware fine-tuning simulates the int8 analysis without changing the network's
parameters or checkpoint format, and still trains."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from lsic.codec.networks.model import Architecture, GainedHyperprior  # noqa: E402
from lsic.codec.networks.qat import prepare_qat  # noqa: E402

pytestmark = pytest.mark.torch


def test_qat_rounds_activations_to_8_bits_and_keeps_the_checkpoint_format():
    torch.manual_seed(0)
    net = GainedHyperprior(Architecture(N=16, M=16, n_rates=2))
    keys = set(net.state_dict())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        y_float = net.g_a(x)
    prepare_qat(net.g_a)
    assert set(net.state_dict()) == keys, "checkpoints and export must not see the simulation"

    first = net.g_a[0]
    with torch.no_grad():
        h = first(x)
        y_sim = net.g_a(x)
    assert torch.unique(h).numel() <= 256, "the first convolution's output lies on a uint8 grid"
    assert not torch.equal(y_sim, y_float), "the simulation rounds"
    rel = float((y_sim - y_float).pow(2).mean().sqrt() / y_float.pow(2).mean().sqrt())
    assert rel < 0.2, f"int8 simulation should stay close to the float analysis (relative rms {rel:.3f})"

    net.train()
    loss = net(x, 1)["x_hat"].pow(2).mean()
    loss.backward()
    assert first.weight.grad is not None and float(first.weight.grad.abs().sum()) > 0, "gradients pass the rounding"


def test_qat_leaves_float_exactly_what_export_leaves_float():
    from torch import nn

    from lsic.codec.networks.int8_layout import FLOAT_G_A_LAYERS, FLOAT_NODES
    from lsic.codec.networks.qat import QATConv2d

    net = GainedHyperprior(Architecture(N=16, M=16, n_rates=2))
    prepare_qat(net.g_a)
    for i, layer in enumerate(net.g_a):
        if isinstance(layer, nn.Conv2d):
            assert isinstance(layer, QATConv2d) == (i not in FLOAT_G_A_LAYERS)
            assert (f"/g_a/g_a.{i}/Conv" in FLOAT_NODES) == (i in FLOAT_G_A_LAYERS)
        else:  # a GDN rounds its output only when an int8 convolution reads it
            assert (layer.fq_out is not None) == (i + 1 not in FLOAT_G_A_LAYERS)


@pytest.mark.parametrize("model_id", ["default", "hq", "lite"])
def test_qat_weight_grid_is_the_one_the_shipped_int8_analysis_runs(model_id):
    """Fine-tuning must round weights exactly as export's quantizer does (7-bit, per channel)."""
    from pathlib import Path

    import numpy as np
    import onnx
    from onnx import numpy_helper

    from lsic.codec.networks.qat import fake_quant_weight

    package = Path(__file__).resolve().parents[2] / "shared" / "models" / model_id
    weights = torch.load(package / "network.pt", map_location="cpu", weights_only=True)
    graph = {t.name: numpy_helper.to_array(t) for t in onnx.load(package / "analysis.int8.onnx").graph.initializer}
    for name in ("g_a.0.weight", "g_a.2.weight"):
        q, scale = graph[f"{name}_quantized"].astype(np.float32), graph[f"{name}_scale"]
        assert q.min() >= -64 and q.max() <= 64, "7-bit weights: the u8s8 kernels cannot saturate"
        shipped = q * scale.reshape(-1, 1, 1, 1)
        simulated = fake_quant_weight(weights[name].float()).numpy()
        np.testing.assert_allclose(simulated, shipped, rtol=0, atol=float(scale.max()) * 1e-3, err_msg=name)


def test_activation_rounding_is_torchs_fake_quantizer_in_traceable_ops():
    """The same values and straight-through gradient as torch.fake_quantize_per_tensor_affine."""
    from lsic.codec.networks.qat import fake_quant_uint8

    torch.manual_seed(0)
    x = (torch.randn(20000) * 2).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    scale = torch.tensor(3.0 / 255)
    ours = fake_quant_uint8(x, scale, 128.0)
    ref = torch.fake_quantize_per_tensor_affine(x_ref, scale, torch.tensor(128, dtype=torch.int32), 0, 255)
    assert float((ours - ref).detach().abs().max()) < 1e-6
    ours.sum().backward()
    ref.sum().backward()
    assert torch.equal(x.grad, x_ref.grad), "1 inside the range, 0 where it clips"
    assert 0 < float(x.grad.sum()) < x.numel(), "the test reaches both sides of the range"


def test_quantization_aware_analysis_compiles_as_one_graph():
    """`lsic train --compile --qat`: no graph breaks, and the range updates switch between two
    graphs instead of recompiling at every step."""
    from lsic.codec.networks.qat import observe_ranges

    net = GainedHyperprior(Architecture(N=16, M=16, n_rates=2))
    prepare_qat(net.g_a)
    x = torch.rand(1, 3, 64, 64)
    for on in (True, False):
        observe_ranges(net.g_a, on)
        explanation = torch._dynamo.explain(net.g_a)(x)
        assert explanation.graph_break_count == 0, explanation.break_reasons
