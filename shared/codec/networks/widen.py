"""Grow a trained network's latent (M channels) without starting its training over.

A model's high-rate quality is capped by how many numbers per pixel its latent carries
(M / 256): with M=96 the unquantized autoencoder itself stops near 31 dB on Kodak, so more bits
buy almost nothing (docs/benchmarks.md). Training a wider model from scratch costs days on a
CPU; widening keeps everything the narrow model learned. Old channels keep their weights at the
same positions; new ones start from a small random init (both in g_a's last layer and g_s's first,
so each side gets a gradient from the other), and the hyper-networks grow with them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lsic.codec.networks.model import Architecture, GainedHyperprior

NEW_SCALE = 0.1  # new weights start at this fraction of a fresh init: near the narrow model's function


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
        if key in ("log_gain", "log_inv_gain"):  # new channels start at each point's mean gain
            grown = source.mean(dim=1, keepdim=True).repeat(1, new.M)
        elif key == "h_s.4.bias":  # new scales start at the old channels' typical scale, means at 0
            grown = torch.zeros(target.shape)
            grown[old.M : new.M] = source[: old.M].mean()
        else:
            grown = target.clone() * NEW_SCALE if target.dim() > 1 else target.clone()
        index = [
            _placement(key, d, s, t, old.M, new.M).view([-1 if i == d else 1 for i in range(source.dim())])
            for d, (s, t) in enumerate(zip(source.shape, target.shape, strict=True))
        ]
        grown[tuple(index)] = source
        out[key] = grown
    return out
