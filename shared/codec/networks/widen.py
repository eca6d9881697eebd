"""Grow a trained network's latent (M channels) without starting its training over.

A model's high-rate quality is capped by how many numbers per pixel its latent carries
(M / 256): with M=96 the unquantized autoencoder itself stops near 31 dB on Kodak, so more bits
buy almost nothing (docs/benchmarks.md). Training a wider model from scratch costs days on a
CPU; widening keeps everything the narrow model learned. Old channels keep their weights at the
same positions, and the hyper-networks grow with them.

New latent channels start at full scale in g_a's last layer but small where they are read (g_s,
h_a), so the wider network starts near the narrow one's reconstruction; their predicted scales
copy old channels' (a scale far below the channel's size would cost bits that make the rate term
erase it). A first
version started g_a's new channels small too; trained, they never came alive: a
channel that rounds to zero gives g_s nothing to learn from, and the rate term only shrinks it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lsic.codec.networks.model import Architecture, GainedHyperprior

NEW_SCALE = 0.1  # new weights that read the new channels start at this fraction of a fresh init
FULL_SCALE_KEYS = ("g_a.6.weight", "g_a.6.bias")  # the new channels themselves: large enough to survive rounding


def new_channel_log_scale(n_rates: int) -> Tensor:
    """Log of the factor on new channels' gains per operating point: 1 at the top three, halving below.

    The narrow latent saturates only at high rates; at low rates new channels would cost bits
    for nothing, and their rate pressure on the shared layers costs the old channels quality
    (measured: q1 lost 0.7 dB in 1,000 steps with new channels at full gain everywhere).
    """
    below_top = (n_rates - 3 - torch.arange(n_rates)).clamp(min=0).float()
    return -below_top * math.log(2.0)


def _placement(key: str, dim: int, old: int, new: int, m_old: int, m_new: int) -> Tensor:
    """Where old index i of `dim` goes in the widened tensor."""
    if key.startswith("h_s.4.") and dim == 0:  # output = [scales (M) | means (M)]
        return torch.cat([torch.arange(m_old), torch.arange(m_old) + m_new])
    return torch.arange(old)


def widen_state_dict(state: dict[str, Tensor], old: Architecture, new: Architecture) -> dict[str, Tensor]:
    """The narrow network's state dict, laid into a freshly initialized wider network's."""
    shrinks = new.M < old.M or any(n < o for n, o in zip(new.hidden, old.hidden, strict=True))
    if (old.N, old.n_rates) != (new.N, new.n_rates) or shrinks:
        raise ValueError(
            "can only add latent channels (same N and operating points, "
            f"hyper-synthesis widths kept or grown): {old} -> {new}"
        )
    fresh = GainedHyperprior(new).state_dict()
    out = {}
    for key, target in fresh.items():
        source = state[key]
        if source.shape == target.shape:
            out[key] = source.clone()
            continue
        if key in ("log_gain", "log_inv_gain"):  # each point's mean gain, scaled down at low rates
            sign = 1.0 if key == "log_gain" else -1.0
            start = source.mean(dim=1, keepdim=True) + sign * new_channel_log_scale(new.n_rates)[:, None]
            grown = start.repeat(1, new.M)
        elif key == "h_s.4.bias":  # new means start at 0 (their scales are copied below)
            grown = torch.zeros(target.shape)
        else:
            scale = 1.0 if key in FULL_SCALE_KEYS else NEW_SCALE
            grown = target.clone() * scale if target.dim() > 1 else target.clone()
        index = [
            _placement(key, d, s, t, old.M, new.M).view([-1 if i == d else 1 for i in range(source.dim())])
            for d, (s, t) in enumerate(zip(source.shape, target.shape, strict=True))
        ]
        grown[tuple(index)] = source
        if key.startswith("h_s.4."):  # new channels' scales follow old channels' (which track the gain)
            copied = source[torch.arange(new.M - old.M) % old.M]
            grown[(slice(old.M, new.M), *(slice(0, n) for n in copied.shape[1:]))] = copied
        out[key] = grown
    return out


def hold_analysis(net: GainedHyperprior, held: bool) -> None:
    """Hold (or release) the analysis and the gains: no gradient reaches g_a or log_gain.

    Held for a warm-up after widening, so g_s, h_a and h_s first learn to read and predict the
    new channels while the latent itself stays put. Measured alternatives: with
    nothing held the rate term erased the new channels within 600 steps (median std at q8 1.54
    -> 0.31); with only the new channels held, the rate they cost flowed into g_a's shared
    layers and the old channels lost 0.5-0.7 dB in 1,000 steps. Holding g_a keeps the narrow
    model's quality, but 2,000 CPU steps did not teach g_s to read the new channels, so they
    were still erased once released (docs/benchmarks.md, "Three ways of widening").
    """
    for p in (*net.g_a.parameters(), net.log_gain):
        p.requires_grad_(not held)
