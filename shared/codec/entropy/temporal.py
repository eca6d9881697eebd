"""Temporal prior: a predicted tile's coded y, conditioned on the previous frame's latents.

Where a predicted tile codes a y position, the previous frame's value there (the reference's
y_hat) says something about the new one: a lighting change or camera noise leaves it close, a
person walking in does not. The prior reads how far the reference's value lies from the
hyperprior's mean, in a few buckets, and per channel and bucket it moves the mean part of the
way towards the reference's value and shifts the scale table. All integer (fixed-point means,
table indexes), so encoder and decoder reach the same tables bit for bit.

The z of a coded block mostly repeats the reference's (nine in ten values on a fixed camera, once
the block has been coded at the stream's quality): a prior that has `z_tables` lets each coded
block's z be coded as its difference from the reference's, with one of the Gaussian y tables
per quality and channel, where that costs fewer bits than the factorized prior.

The tables are fitted on rate alone with the transforms frozen (lsic.codec.networks.temporal_fit)
and ship in the package's tables.npz as `tm_thresholds_fx`, `tm_weights`, `tm_offsets` and,
optionally, `tz_tables`; a package without them codes predicted tiles with the hyperprior's and
the factorized prior's tables unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WEIGHT_BITS = 8  # weights are fractions of 1 << WEIGHT_BITS
ARRAYS = ("tm_thresholds_fx", "tm_weights", "tm_offsets")
Z_ARRAY = "tz_tables"


@dataclass(frozen=True)
class TemporalPrior:
    thresholds_fx: np.ndarray  # (K-1,) int64, ascending: bucket edges of |reference - mean| in fixed point
    weights: np.ndarray  # (M, K) int64 in 0..1<<WEIGHT_BITS: how far the mean moves to the reference
    offsets: np.ndarray  # (M, K) int64: added to the scale-table index
    z_tables: np.ndarray | None = None  # (qualities, N) int64: the y table of z minus the reference's z

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TemporalPrior | None:
        if not all(k in arrays for k in ARRAYS):
            return None
        z = arrays[Z_ARRAY].astype(np.int64) if Z_ARRAY in arrays else None
        return cls(*(arrays[k].astype(np.int64) for k in ARRAYS), z_tables=z)

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {
            "tm_thresholds_fx": self.thresholds_fx.astype(np.int64),
            "tm_weights": self.weights.astype(np.int16),
            "tm_offsets": self.offsets.astype(np.int8),
        }
        if self.z_tables is not None:
            out[Z_ARRAY] = self.z_tables.astype(np.int16)
        return out

    def z_tables_at(self, quality: int) -> np.ndarray | None:
        """(N,) the y table of each channel's z difference at a quality (1-based); None for a
        prior without z tables (every z coded with the factorized prior)."""
        return None if self.z_tables is None else self.z_tables[quality - 1]

    def buckets(self, means_fx: np.ndarray, ref_fx: np.ndarray) -> np.ndarray:
        """Bucket (M, H, W) of each position: where |reference - mean| falls among the edges."""
        return np.searchsorted(self.thresholds_fx, np.abs(ref_fx - means_fx), side="right")

    def apply(
        self, index: np.ndarray, means_fx: np.ndarray, ref_fx: np.ndarray, n_tables: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Hyperprior (or context) tables and means of y (M, H, W) -> the temporal ones, given the
        reference's y in fixed point at the same positions."""
        k = self.buckets(means_fx, ref_fx)
        ch = np.arange(index.shape[0])[:, None, None]
        w = self.weights[ch, k]
        means = means_fx + ((w * (ref_fx - means_fx)) >> WEIGHT_BITS)
        table = np.clip(index.astype(np.int64) + self.offsets[ch, k], 0, n_tables - 1).astype(np.int32)
        return table, means
