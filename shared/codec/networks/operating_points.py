"""A package's operating points: the trained gain vectors plus points extrapolated below them.

Training fixes the rate range: the lowest lambda (0.0018) lands near 0.2 bpp on Kodak, while
users streaming over thin links need about 0.1. A gained model's log-gains move along a nearly
straight line from point to point, and continuing that line below the lowest trained point
keeps the rate-distortion slope of the trained points (measured on `default`: 2.1 dB per
doubling of rate between the first two extrapolated points against 2.4 between the first two
trained ones), so a package can reach 0.1 bpp without retraining. Extrapolated points are
marked as such in model.json ("operating_points").
"""

from __future__ import annotations

import numpy as np


def extend_below(log_gains: np.ndarray, below: int) -> tuple[np.ndarray, list[float]]:
    """Log-gain rows (n, M), lowest rate first -> `below` more rows under row 0, and positions.

    Row k of the result sits at position k - below on the trained points' scale (0 is the
    lowest trained point), one trained spacing (row 1 - row 0) per step.
    """
    if below < 0:
        raise ValueError(f"extrapolated points must be >= 0, got {below}")
    n = log_gains.shape[0]
    if below and n < 2:
        raise ValueError("extrapolating below needs at least two trained operating points")
    positions = [float(p) for p in range(-below, n)]
    if not below:
        return log_gains.copy(), positions
    step = log_gains[1] - log_gains[0]
    extra = np.stack([log_gains[0] + t * step for t in range(-below, 0)])
    return np.concatenate([extra, log_gains]).astype(log_gains.dtype), positions


def describe(positions: list[float], lambdas: list[float]) -> list[dict]:
    """model.json's "operating_points": quality number, position, and the trained lambda or null."""
    return [
        {"quality": i + 1, "position": p, "lambda": lambdas[int(p)] if p >= 0 else None, "trained": p >= 0}
        for i, p in enumerate(positions)
    ]
