"""A heavier cloud decoder for an unchanged edge encoder: a residual branch beside g_s.

The edge's analysis transform is sized for a 2-core CPU; the cloud decodes on GPUs and can
afford far more. The branch reads the same latent as g_s and adds its output to g_s's, so the
bitstream, the entropy models and the edge encoder stay exactly as they are, and only the
decoder (synthesis) changes. Its last layer starts at zero, so training starts from the
base model's reconstructions and can only learn what g_s misses (`lsic train --decoder-only`).

Built from CompressAI's Cheng et al. (2020) synthesis blocks: residual blocks and sub-pixel
upsampling with inverse GDN, at 1/16, 1/8 and 1/4 of the image's resolution (none at 1/2,
where a residual block would cost more than the whole base decoder).
"""

from __future__ import annotations

from compressai.layers import ResidualBlock, ResidualBlockUpsample, conv3x3, subpel_conv3x3
from torch import Tensor, nn


def refine_branch(m: int, width: int) -> nn.Sequential:
    """Latent (m channels, 1/16 scale) -> RGB residual; zero at initialization."""
    last = subpel_conv3x3(width, 3, 2)
    nn.init.zeros_(last[0].weight)
    nn.init.zeros_(last[0].bias)
    return nn.Sequential(
        conv3x3(m, width),
        ResidualBlock(width, width),
        ResidualBlockUpsample(width, width, 2),
        ResidualBlock(width, width),
        ResidualBlockUpsample(width, width, 2),
        ResidualBlock(width, width),
        ResidualBlockUpsample(width, width, 2),
        last,
    )


class Synthesis(nn.Module):
    """y_hat -> x_hat: g_s, plus the residual branch when the package has one.

    Its state-dict keys ("g_s.*", "g_s_refine.*") are the full network's, so a decoder loads
    its weights straight from a package's network.pt.
    """

    def __init__(self, g_s: nn.Module, g_s_refine: nn.Module | None = None) -> None:
        super().__init__()
        self.g_s = g_s
        self.g_s_refine = g_s_refine

    def forward(self, y_hat: Tensor) -> Tensor:
        x_hat = self.g_s(y_hat)
        if self.g_s_refine is not None:
            x_hat = x_hat + self.g_s_refine(y_hat)
        return x_hat
