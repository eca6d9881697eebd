"""Image quality metrics, one definition for benchmarks, the demo and the tests.

PSNR is numpy only (the torch-free edge demo reports it); MS-SSIM uses pytorch-msssim and is
imported only when asked for.
"""

from __future__ import annotations

import math

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """RGB PSNR in dB of two uint8 images (over all channels, peak 255)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """RGB MS-SSIM of two uint8 (H, W, 3) images (needs torch)."""
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    ta = torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].float()  # a writable copy
    tb = torch.from_numpy(np.array(b)).permute(2, 0, 1)[None].float()
    return float(_ms_ssim(ta, tb, data_range=255.0))
