"""The LSIC network: a variable-rate mean-scale hyperprior built from CompressAI layers.

One model serves every operating point: a learned gain vector per point scales the latent
before quantization (finer steps, more bits) and an inverse gain undoes it before synthesis
(Cui et al. 2021, "asymmetric gained" compression). Training samples one point per batch, so
one run costs the steps of one model instead of one per rate.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from compressai.models import MeanScaleHyperprior
from compressai.models.utils import conv, deconv
from torch import Tensor, nn

from lsic.codec.networks.context import CheckerboardContext
from lsic.codec.networks.refine import Synthesis, refine_branch

# Rate-distortion trade-offs of CompressAI's published MSE models (qualities 1..8), used as the
# operating points of the variable-rate model. Loss = lambda * 255^2 * MSE + bpp.
LAMBDAS: tuple[float, ...] = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)
# CompressAI's MS-SSIM ladder for the same eight qualities. Loss = lambda * (1 - MS-SSIM) + bpp.
MSSSIM_LAMBDAS: tuple[float, ...] = (2.40, 4.58, 8.73, 16.64, 31.73, 60.50, 115.37, 220.00)
# `lsic train --distortion`: the metric the loss minimizes, with its lambda per trained point.
DISTORTIONS: dict[str, tuple[float, ...]] = {"mse": LAMBDAS, "ms-ssim": MSSSIM_LAMBDAS}
# Five-scale MS-SSIM with an 11-pixel window needs images larger than (11 - 1) * 2^4 pixels.
MSSSIM_MIN_SIDE = 161


@dataclass(frozen=True)
class Architecture:
    """Sizes that define a network; stored in model.json so a package rebuilds its net.

    hyper_widths: the hyper-synthesis's two hidden widths. CompressAI's default (M, 3M/2) makes
    its weights, and the edge's integer hyper-synthesis, grow as M^2; fixing them lets the latent
    widen at a cost linear in M (docs/benchmarks.md, "Why the curves flatten").
    """

    N: int = 64
    M: int = 96
    n_rates: int = len(LAMBDAS)
    hyper_widths: tuple[int, int] | None = None
    refine_width: int | None = None  # width of the cloud decoder's residual branch (refine.py)
    context: str | None = None  # "checkerboard": y coded in two passes (context.py); None: hyperprior only

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"N": self.N, "M": self.M, "n_rates": self.n_rates}
        if self.hyper_widths is not None:
            out["hyper_widths"] = list(self.hyper_widths)
        if self.refine_width is not None:
            out["refine_width"] = self.refine_width
        if self.context is not None:
            out["context"] = self.context
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Architecture:
        """From model.json's "architecture" or a checkpoint's "arch" (extra keys ignored)."""
        widths = d.get("hyper_widths")
        refine = d.get("refine_width")
        return cls(
            N=int(d["N"]),
            M=int(d["M"]),
            n_rates=int(d["n_rates"]),
            hyper_widths=None if widths is None else (int(widths[0]), int(widths[1])),
            refine_width=None if refine is None else int(refine),
            context=d.get("context"),
        )

    @property
    def hidden(self) -> tuple[int, int]:
        return self.hyper_widths or (self.M, self.M * 3 // 2)


def ste_round(x: Tensor) -> Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return (torch.round(x) - x).detach() + x


class GainedHyperprior(MeanScaleHyperprior):
    """Mean-scale hyperprior with one gain / inverse-gain vector per operating point."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__(N=arch.N, M=arch.M)
        self.arch = arch
        if arch.hyper_widths is not None:
            a, b = arch.hyper_widths
            self.h_s = nn.Sequential(
                deconv(arch.N, a, kernel_size=5, stride=2),
                nn.LeakyReLU(inplace=True),
                deconv(a, b, kernel_size=5, stride=2),
                nn.LeakyReLU(inplace=True),
                conv(b, arch.M * 2, kernel_size=3, stride=1),
            )
        self.g_s_refine = None if arch.refine_width is None else refine_branch(arch.M, arch.refine_width)
        self.context = None if arch.context is None else CheckerboardContext(arch.M)
        # Log-spaced initial gains separate the operating points from the first step on.
        init = torch.logspace(-2.0, 1.0, arch.n_rates, base=2.0)[:, None].repeat(1, arch.M)
        self.log_gain = nn.Parameter(init.log())
        self.log_inv_gain = nn.Parameter(-init.log())
        self.transform_dtype: torch.dtype | None = None  # bfloat16: transforms in mixed precision

    def transforms(self, x: Tensor) -> contextlib.AbstractContextManager:
        """Where the four transforms run: in bfloat16 autocast when transform_dtype asks for it.

        Only the convolutions' arithmetic drops to bfloat16 (about 2x faster training on an
        AVX512-BF16 CPU); every transform's output is cast back to float32 before it meets
        quantization or an entropy model, whose likelihoods need float32's resolution (a
        bfloat16 latent near 50 has steps of 0.25).
        """
        if self.transform_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(x.device.type, dtype=self.transform_dtype)

    def gain(self, q: int) -> Tensor:
        return self.log_gain[q].exp()[None, :, None, None]

    def inv_gain(self, q: int) -> Tensor:
        return self.log_inv_gain[q].exp()[None, :, None, None]

    def latent(self, x: Tensor, q: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
        """The rounded latent as synthesis reads it (inverse gain applied), and the likelihoods."""
        with self.transforms(x):
            y = self.g_a(x).float() * self.gain(q)
            z = self.h_a(y).float()
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        with self.transforms(x):
            hyper = self.h_s(z_hat).float()
        if self.context is not None:  # anchors as the decoder has them: rounded around their means
            hyper = self.context(hyper, ste_round(y - hyper.chunk(2, 1)[1]) + hyper.chunk(2, 1)[1])
        scales_hat, means_hat = hyper.chunk(2, 1)
        _, y_likelihoods = self.gaussian_conditional(y, scales_hat, means=means_hat)
        # Mixed quantization: noisy latents for the rate term, rounded ones (STE) for synthesis.
        y_hat = ste_round(y - means_hat) + means_hat
        return y_hat * self.inv_gain(q), {"y": y_likelihoods, "z": z_likelihoods}

    def synthesize(self, y_hat: Tensor) -> Tensor:
        with self.transforms(y_hat):
            return self.synthesis()(y_hat).float()

    def synthesis(self) -> Synthesis:
        """The decoder's part of the network, as exported and run in the cloud."""
        return Synthesis(self.g_s, self.g_s_refine)

    def forward(self, x: Tensor, q: int = 0) -> dict[str, object]:  # type: ignore[override]
        y_hat, likelihoods = self.latent(x, q)
        return {"x_hat": self.synthesize(y_hat), "likelihoods": likelihoods}


def rd_loss(out: dict[str, object], x: Tensor, lmbda: float, distortion: str = "mse") -> dict[str, Tensor]:
    """Rate-distortion loss in CompressAI's convention: bpp + lambda * 255^2 * MSE, or with
    distortion="ms-ssim" bpp + lambda * (1 - MS-SSIM) (pytorch-msssim, data range 1)."""
    n, _, h, w = x.shape
    num_pixels = n * h * w
    likelihoods = out["likelihoods"]
    assert isinstance(likelihoods, dict)
    bits = sum(torch.log2(lk).sum() for lk in likelihoods.values())
    bpp = -bits / num_pixels
    x_hat = out["x_hat"]
    assert isinstance(x_hat, Tensor)
    mse = torch.mean((x_hat - x) ** 2)
    if distortion == "ms-ssim":
        from pytorch_msssim import ms_ssim

        similarity = ms_ssim(x_hat, x, data_range=1.0)
        return {"loss": lmbda * (1 - similarity) + bpp, "bpp": bpp, "mse": mse, "ms_ssim": similarity}
    if distortion != "mse":
        raise ValueError(f"unknown distortion {distortion!r}: {', '.join(DISTORTIONS)}")
    return {"loss": lmbda * 255**2 * mse + bpp, "bpp": bpp, "mse": mse}
