"""The checkerboard context as trained: float twin of lsic.codec.entropy.context.

Anchors ((i + j) even) keep the hyperprior's parameters; every other position gets the
hyperprior's parameters plus a correction computed from the decoded anchors around it (a 5x5
convolution, whose taps on non-anchors only ever see zeros) and from the hyperprior's own
output (1x1 convolutions). The correction's last layer starts at zero, so a context added to a
trained network starts as exactly that network (`lsic train --context checkerboard`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

KERNEL = 5


def anchor_mask(h: int, w: int, device: torch.device | str = "cpu") -> Tensor:
    """(1, 1, h, w) float: 1 at the anchors, the positions coded first."""
    i = torch.arange(h, device=device)[:, None]
    j = torch.arange(w, device=device)[None, :]
    return ((i + j) % 2 == 0).float()[None, None]


class CheckerboardContext(nn.Module):
    """(hyper output (B, 2M, H, W), anchors' y_hat with non-anchors zero) -> refined parameters."""

    def __init__(self, m: int) -> None:
        super().__init__()
        self.context = nn.Conv2d(m, m, KERNEL, padding=KERNEL // 2)
        self.params = nn.Sequential(
            nn.Conv2d(3 * m, 2 * m, 1),
            nn.LeakyReLU(),
            nn.Conv2d(2 * m, 2 * m, 1),
            nn.LeakyReLU(),
            nn.Conv2d(2 * m, 2 * m, 1),
        )
        nn.init.zeros_(self.params[-1].weight)
        nn.init.zeros_(self.params[-1].bias)

    def forward(self, hyper: Tensor, anchors: Tensor) -> Tensor:
        mask = anchor_mask(*hyper.shape[2:], device=hyper.device)
        refined = hyper + self.params(torch.cat([hyper, self.context(anchors * mask)], 1))
        return hyper * mask + refined * (1 - mask)

    def int_convs(self) -> list[nn.Conv2d]:
        """The convolutions in the order the integer network runs them (leaky after all but
        the first, the context, and the last)."""
        return [self.context, *(m for m in self.params if isinstance(m, nn.Conv2d))]
