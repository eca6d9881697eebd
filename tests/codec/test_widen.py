"""Widening the latent keeps what the narrow network learned: the old channels are untouched and
the wider network starts from nearly the narrow one's reconstruction."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from lsic.codec.errors import UsageError  # noqa: E402
from lsic.codec.networks.model import Architecture, GainedHyperprior  # noqa: E402
from lsic.codec.networks.train import init_from  # noqa: E402

pytestmark = pytest.mark.torch


def narrow_checkpoint(path):
    """A trained-looking narrow network (M=16) saved as `lsic train` saves it, at step 7."""
    torch.manual_seed(0)
    narrow = GainedHyperprior(Architecture(N=16, M=16, n_rates=2)).eval()
    state = {"state_dict": narrow.state_dict(), "arch": narrow.arch.to_dict(), "step": 7, "wall_seconds": 1.0}
    torch.save(state, path)
    return narrow


def test_widened_network_starts_where_the_narrow_one_was(tmp_path):
    narrow = narrow_checkpoint(tmp_path / "c.pt")
    wide = GainedHyperprior(Architecture(N=16, M=24, n_rates=2)).eval()
    history = init_from(wide, tmp_path / "c.pt")
    assert history.widened == [[7, 16, 24]] and history.step == 7

    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(wide.g_a(x)[:, :16], narrow.g_a(x)), "old latent channels keep their weights"
        scales_w, means_w = wide.h_s(torch.zeros(1, 16, 1, 1)).chunk(2, 1)
        scales_n, means_n = narrow.h_s(torch.zeros(1, 16, 1, 1)).chunk(2, 1)
        assert scales_w.shape[1] == 24 and means_w.shape[1] == 24
        assert torch.allclose(scales_w[:, :16], scales_n, atol=0.05), "old channels' scales barely move"
        assert torch.allclose(means_w[:, :16], means_n, atol=0.05), "old channels' means barely move"
        drift = float((wide(x, 1)["x_hat"] - narrow(x, 1)["x_hat"]).abs().mean())
    assert drift < 0.05, f"the new channels are read lightly at first (mean reconstruction change {drift:.4f})"

    with torch.no_grad():
        y = wide.g_a(x)
    old_size, new_size = float(y[:, :16].abs().mean()), float(y[:, 16:].abs().mean())
    assert new_size > 0.3 * old_size, "new channels start large enough to survive rounding"
    assert torch.allclose(scales_w[:, 16:], scales_w[:, :8], atol=0.05), "new channels' scales copy old ones'"

    with pytest.raises(UsageError, match="only add latent channels"):
        init_from(GainedHyperprior(Architecture(N=16, M=8, n_rates=2)), tmp_path / "c.pt")


def test_fixed_hyper_widths_widen_only_the_last_hyper_layer(tmp_path):
    narrow = narrow_checkpoint(tmp_path / "c.pt")
    arch = Architecture(N=16, M=32, n_rates=2, hyper_widths=(16, 24))  # the narrow net's (M, 3M/2)
    assert Architecture.from_dict(arch.to_dict()) == arch, "model.json round trip"
    wide = GainedHyperprior(arch).eval()
    init_from(wide, tmp_path / "c.pt")
    for key in ("h_s.0.weight", "h_s.2.weight"):
        assert torch.equal(wide.state_dict()[key], narrow.state_dict()[key]), f"{key} is kept whole"
    assert wide.h_s[4].out_channels == 64, "only the output layer grows: scales and means for 32 channels"

    with pytest.raises(UsageError, match="hyper-synthesis widths"):
        init_from(GainedHyperprior(Architecture(N=16, M=32, n_rates=2, hyper_widths=(8, 8))), tmp_path / "c.pt")


def test_analysis_is_held_during_the_warm_up(tmp_path):
    from lsic.codec.networks.model import rd_loss
    from lsic.codec.networks.widen import hold_analysis

    narrow_checkpoint(tmp_path / "c.pt")
    wide = GainedHyperprior(Architecture(N=16, M=24, n_rates=2))
    init_from(wide, tmp_path / "c.pt")
    hold_analysis(wide, True)
    x = torch.rand(2, 3, 64, 64)
    rd_loss(wide(x, 1), x, 0.01)["loss"].backward()
    assert all(p.grad is None for p in wide.g_a.parameters()) and wide.log_gain.grad is None
    assert wide.g_s[0].weight.grad[16:].abs().max() > 0, "g_s learns to read the new channels"
    assert wide.h_s[4].weight.grad[16:24].abs().max() > 0, "h_s learns to predict them"

    hold_analysis(wide, False)
    wide.zero_grad()
    rd_loss(wide(x, 1), x, 0.01)["loss"].backward()
    assert wide.g_a[-1].weight.grad[16:].abs().max() > 0, "released after the warm-up"
