"""Integer probability tables: built once at export, shipped, and only ever read at run time.

Each table is a row of integer frequencies summing to 2^PRECISION, every symbol at least 1,
with one extra last entry, the escape, for values outside the table's support (their value is
then coded raw). Quantizing here, at export, is what makes coding deterministic: run time never
computes a probability, it only looks one up.
"""

from __future__ import annotations

import numpy as np

PRECISION = 16
TOTAL = 1 << PRECISION
TAIL_MASS = 1e-9
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64


def scale_table() -> np.ndarray:
    """CompressAI's Gaussian scale table: 64 log-spaced scales from 0.11 to 256."""
    return np.exp(np.linspace(np.log(SCALE_MIN), np.log(SCALE_MAX), SCALE_LEVELS))


def quantize_pmf(pmf: np.ndarray, escape_mass: float) -> np.ndarray:
    """Float pmf over the support (+ escape mass) -> integer frequencies summing to TOTAL.

    Largest-remainder rounding with a floor of 1 per symbol; deterministic because it runs
    only at export time and its result is stored.
    """
    p = np.append(np.maximum(pmf, 0.0), max(escape_mass, 0.0))
    p = p / p.sum()
    free = TOTAL - len(p)
    if free < 0:
        raise ValueError("support too large for the table precision")
    raw = p * free
    freq = np.floor(raw).astype(np.int64)
    rest = free - int(freq.sum())
    order = np.argsort(-(raw - freq), kind="stable")
    freq[order[:rest]] += 1
    return (freq + 1).astype(np.int32)


def gaussian_tables(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-scale tables of a zero-mean Gaussian quantized to integers, centred at 0.

    Returns (freqs (T, L_max) int32 zero-padded, lengths (T,) int32). Table t covers the
    symbols -h..h with h = (lengths[t] - 2) // 2, then the escape.
    """
    from scipy.special import ndtr

    rows = []
    for s in scales:
        h = int(np.ceil(s * 6.2))  # support beyond which the mass is < TAIL_MASS
        k = np.arange(-h, h + 1, dtype=np.float64)
        pmf = ndtr((k + 0.5) / s) - ndtr((k - 0.5) / s)
        rows.append(quantize_pmf(pmf, 2 * ndtr(-(h + 0.5) / s)))
    return _pad_rows(rows)


def _pad_rows(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(r) for r in rows], dtype=np.int32)
    out = np.zeros((len(rows), int(lengths.max())), dtype=np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out, lengths


def factorized_tables(pmfs: list[np.ndarray], tails: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel tables of the factorized prior from their float pmfs and tail masses."""
    return _pad_rows([quantize_pmf(p, t) for p, t in zip(pmfs, tails, strict=True)])
