"""bfloat16 training: the transforms drop to bfloat16, the quantities the rate is computed from
do not, and the loss stays the float32 loss."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def test_bf16_transforms_keep_entropy_models_in_float32():
    from lsic.codec.networks.model import LAMBDAS, Architecture, GainedHyperprior, rd_loss

    torch.manual_seed(0)
    net = GainedHyperprior(Architecture(N=16, M=24)).eval()
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        ref = rd_loss(net(x, 4), x, LAMBDAS[4])
        net.transform_dtype = torch.bfloat16
        out = net(x, 4)
        mixed = rd_loss(out, x, LAMBDAS[4])
    assert out["x_hat"].dtype == torch.float32
    assert all(lk.dtype == torch.float32 for lk in out["likelihoods"].values())
    assert abs(float(mixed["bpp"]) / float(ref["bpp"]) - 1) < 0.01
    assert abs(float(mixed["mse"]) / float(ref["mse"]) - 1) < 0.01
