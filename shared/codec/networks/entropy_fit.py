"""Rate-only training of the entropy models over a frozen analysis, in the layout the codec codes.

With the analysis, the synthesis and the gains fixed, a frame's bits depend only on the
hyper-analysis, the hyper-synthesis, the factorized prior of z and the checkerboard context.
Those train on rate alone, over latents computed once (the analysis never changes) and cut as
the encoder cuts them: z from a window of tiles with the analysis halo (windows.py), then the
hyper-synthesis and the context on each tile alone, with zeros beyond its border as the decoder
has them. Joint training on small pixel crops never sees that layout: its latents at a crop's
border come from zero-padded pixels, the codec's from the neighbouring tiles' pixels.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from compressai.ops import quantize_ste
from torch import Tensor

from lsic.codec.networks.model import GainedHyperprior, ste_round
from lsic.codec.networks.operating_points import extend_below
from lsic.codec.tiling import DEFAULT_TILE
from lsic.codec.windows import ANALYSIS_HALO, HYPER, LATENT

TILE = DEFAULT_TILE // LATENT  # latents per tile side
HALO = ANALYSIS_HALO // LATENT  # latents of the neighbours the hyper-analysis sees
WINDOW = TILE + 2 * HALO  # latents per side of a training window: one tile and its halo
# Operating points below the trained ones that packages ship (`lsic export --extrapolate-below 2`):
# the entropy models serve them too, so they train on them.
EXTRAPOLATED = 2


def entropy_modules(net: GainedHyperprior) -> list[torch.nn.Module]:
    """The parts of the network that set probabilities and nothing else."""
    return [m for m in (net.h_a, net.h_s, net.entropy_bottleneck, net.context) if m is not None]


def freeze_all_but_entropy(net: GainedHyperprior) -> None:
    """Entropy-only training: the analysis, the synthesis and the gains stay as trained."""
    ids = {id(p) for m in entropy_modules(net) for p in m.parameters()}
    for p in net.parameters():
        p.requires_grad_(id(p) in ids)


def training_gains(net: GainedHyperprior) -> Tensor:
    """(points, M): the gains of the trained points and of the extrapolated ones below them."""
    log_gains, _ = extend_below(net.log_gain.detach().cpu().numpy(), EXTRAPOLATED)
    return torch.from_numpy(np.exp(log_gains)).float().to(net.log_gain.device)


# Where a batch's tiles sit on their frames' rows (and, independently, columns): most tiles of
# the frames the codec sees touch a frame border (all six of a Kodak image, 22 of 40 at 1080p),
# where the hyper-analysis reads zero padding instead of a neighbour's latents.
PLACES = ("first", "inner", "last")


class LatentSampler:
    """Windows of one tile and its halo, cut from the latents of whole training images.

    The analysis runs once per image, on the image padded as a tile is (edge pixels repeated),
    and its latents stay on the training device in float16 (151 MP of photos: 110 MiB). A window
    starts on the grid of z, as a tile does, and like the encoder's it stops at the frame: a tile
    in the first or last row or column of its frame has no halo on that side.
    """

    def __init__(self, net: GainedHyperprior, images: list[np.ndarray], device: str) -> None:
        self.latents = []
        with torch.no_grad():
            for img in images:
                h, w = img.shape[:2]
                padded = np.pad(img, ((0, -h % HYPER), (0, -w % HYPER), (0, 0)), mode="edge")
                x = torch.from_numpy(padded).to(device).permute(2, 0, 1)[None].float().div_(255.0)
                y = net.g_a(x)[0].half()
                if min(y.shape[1:]) >= WINDOW:
                    self.latents.append(y)
        if not self.latents:
            raise ValueError(f"entropy-only training needs images of at least {WINDOW * LATENT} pixels a side")

    def batch(self, n: int, rng: random.Random) -> tuple[Tensor, int, int]:
        """n windows whose tiles sit alike on their frames (a random row place and column place),
        and the tile's first row and column in them."""
        rows, cols = rng.choice(PLACES), rng.choice(PLACES)
        out = []
        for _ in range(n):
            y = self.latents[rng.randrange(len(self.latents))]
            i, top, height = _cut(y.shape[1], rows, rng)
            j, left, width = _cut(y.shape[2], cols, rng)
            out.append(y[:, i : i + height, j : j + width])
        return torch.stack(out).float(), top, left


def _cut(size: int, place: str, rng: random.Random) -> tuple[int, int, int]:
    """(start of the window, start of the tile in it, window length) along one axis of a frame
    `size` latents long (a multiple of the z grid)."""
    if place == "first":
        return 0, 0, TILE + HALO
    if place == "last":
        return size - TILE - HALO, HALO, TILE + HALO
    step = HYPER // LATENT
    return rng.randrange((size - WINDOW) // step + 1) * step, HALO, WINDOW


def window_bits(net: GainedHyperprior, y: Tensor, top: int, left: int, training: bool) -> Tensor:
    """Bits of the tile at (top, left) inside each window of gained latents (B, M, h, w).

    training: noisy z and y for their likelihoods (CompressAI's proxy); otherwise both rounded
    as the coder rounds them. The hyper-synthesis always reads z rounded around its medians."""
    z = net.h_a(y)
    step = HYPER // LATENT
    z_tiles = z[:, :, top // step : (top + TILE) // step, left // step : (left + TILE) // step]
    y_tiles = y[:, :, top : top + TILE, left : left + TILE]
    eb = net.entropy_bottleneck
    _, z_likelihoods = eb(z_tiles, training=training)
    medians = eb._get_medians()
    hyper = net.h_s(quantize_ste(z_tiles - medians) + medians)
    if net.context is not None:
        means = hyper.chunk(2, 1)[1]
        hyper = net.context(hyper, ste_round(y_tiles - means) + means)
    scales, means = hyper.chunk(2, 1)
    _, y_likelihoods = net.gaussian_conditional(y_tiles, scales, means=means, training=training)
    return -(torch.log2(z_likelihoods).sum() + torch.log2(y_likelihoods).sum())


def entropy_loss(net: GainedHyperprior, y: Tensor, top: int, left: int, gain: Tensor) -> dict[str, Tensor]:
    """Rate alone, in bits per pixel of the tiles, for latents y (before gain) at one point."""
    bits = window_bits(net, y * gain[None, :, None, None], top, left, training=net.training)
    pixels = y.shape[0] * DEFAULT_TILE**2
    bpp = bits / pixels
    return {"loss": bpp, "bpp": bpp}
