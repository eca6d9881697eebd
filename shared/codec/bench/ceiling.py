"""`lsic bench ceiling`: how much quality a latent of M numbers per 16x16 block can hold at all.

A model's latent carries M numbers per 16x16 RGB block (768 values), so its reconstruction is
capped whatever the rate. The best *linear* transform of that size is PCA: fit the principal
components of 16x16 blocks on training images, keep the first M, and measure the PSNR of
the projection on the evaluation images. A learned nonlinear transform beats it by about a
decibel (docs/benchmarks.md, "Why the curves flatten"), so this ranks latent widths before any
training is spent on them. Numpy only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lsic.codec.image_io import list_images, read_rgb

BLOCK = 16  # g_a's downsampling: one latent vector of M numbers per 16x16 RGB block


def widths_arg(text: str) -> list[int]:
    """`--M 64,96,160` -> sorted distinct widths, each a possible latent size of a 16x16 block."""
    try:
        widths = sorted({int(w) for w in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 96,160, got {text!r}") from None
    if widths[0] <= 0 or widths[-1] > BLOCK * BLOCK * 3:
        raise argparse.ArgumentTypeError(f"widths must be between 1 and {BLOCK * BLOCK * 3}, got {text!r}")
    return widths


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", required=True, help="images the principal components are fitted on")
    p.add_argument("--data", required=True, help="images the ceiling is measured on (e.g. Kodak)")
    p.add_argument(
        "--M", type=widths_arg, default="64,96,128,160,192,256", help="latent widths to measure, comma-separated"
    )
    p.add_argument("--max-images", type=int, default=150, help="training images used (the fit is O(images))")


def blocks(path: Path) -> np.ndarray:
    """An image as rows of BLOCK x BLOCK x 3 blocks in [0, 1] (edges that do not fill a block dropped)."""
    rgb = read_rgb(path, quiet=True).astype(np.float32) / 255.0
    h, w = rgb.shape[0] // BLOCK * BLOCK, rgb.shape[1] // BLOCK * BLOCK
    b = rgb[:h, :w].reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK, 3).transpose(0, 2, 1, 3, 4)
    return b.reshape(-1, BLOCK * BLOCK * 3)


def principal_components(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Mean block and the components, strongest first (accumulated image by image: O(1) memory)."""
    d = BLOCK * BLOCK * 3
    total, outer, n = np.zeros(d), np.zeros((d, d)), 0
    for path in paths:
        x = blocks(path).astype(np.float64)
        total += x.sum(0)
        outer += x.T @ x
        n += len(x)
    mean = total / n
    cov = outer / n - np.outer(mean, mean)
    _, vectors = np.linalg.eigh(cov)
    return mean, vectors[:, ::-1]


def ceilings(mean: np.ndarray, components: np.ndarray, paths: list[Path], widths: list[int]) -> dict[int, float]:
    """Mean-squared-error PSNR (dB) of the width-M projection over all blocks of `paths`."""
    errors = {m: 0.0 for m in widths}
    count = 0
    for path in paths:
        x = blocks(path).astype(np.float64) - mean
        coords = x @ components[:, : max(widths)]
        for m in widths:
            recon = np.clip(coords[:, :m] @ components[:, :m].T + mean, 0.0, 1.0)
            errors[m] += float(((recon - x - mean) ** 2).sum())
        count += x.size
    return {m: 10 * np.log10(count / max(errors[m], 1e-30)) for m in widths}


def run(args: argparse.Namespace) -> int:
    widths = args.M
    train, data = list_images(Path(args.train))[: args.max_images], list_images(Path(args.data))
    if not train or not data:
        print("lsic: error: --train and --data must each hold at least one image")
        return 2
    mean, components = principal_components(train)
    result = ceilings(mean, components, data, widths)
    print(f"Linear (PCA) ceiling of an M-number latent per {BLOCK}x{BLOCK} RGB block")
    print(f"fitted on {len(train)} images of {args.train}, measured on {len(data)} images of {args.data}\n")
    print("| M | numbers per pixel | PSNR ceiling (dB) |")
    print("|---|---|---|")
    for m in widths:
        print(f"| {m} | {m / BLOCK**2:.3f} | {result[m]:.2f} |")
    return 0
