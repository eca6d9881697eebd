"""Entropy coding of one tile's latents with shipped integer tables and constriction's rANS.

Layout of a tile's entropy-coded payload (one ANS stream, decoded in this order):
  1. z, channel by channel, each with its factorized-prior table
  2. raw values of escaped z symbols (high then low parts, uniform)
  3. y, grouped by table index in increasing order, raster order within a group
  4. raw values of escaped y symbols
  (3 and 4 once per coding pass of y: one pass, or two with a checkerboard context)
The decoder learns the y table indexes from z through the integer hyper-synthesis (and, for a
second pass, from the first pass's y through the integer context), so everything needed to
decode a symbol is an already-decoded integer.
"""

from __future__ import annotations

import constriction
import numpy as np

from lsic.codec.entropy.tables import TOTAL
from lsic.codec.errors import BitstreamError

RAW_BITS = 21  # escaped values are stored as 21-bit offsets: |v| < 2^20
RAW_OFFSET = 1 << (RAW_BITS - 1)
LO_BITS = 11
_Uniform = constriction.stream.model.Uniform
_Categorical = constriction.stream.model.Categorical


class TableSet:
    """Integer tables (freqs, lengths incl. escape) and the value of each table's index 0."""

    def __init__(self, freqs: np.ndarray, lengths: np.ndarray, origins: np.ndarray) -> None:
        self.freqs = freqs
        self.lengths = lengths.astype(np.int64)
        self.origins = origins.astype(np.int64)
        self._models: dict[int, object] = {}

    def model(self, t: int):
        m = self._models.get(t)
        if m is None:
            probs = self.freqs[t, : self.lengths[t]].astype(np.float64) / TOTAL
            m = _Categorical(probs, perfect=False)
            self._models[t] = m
        return m

    def symbols(self, values: np.ndarray, tables: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values, each with its table -> (symbol indexes with escapes, mask of the escaped).

        Vectorized over a whole tile: per-group numpy calls would hold the GIL between the
        small operations and serialize the encoder's worker threads.
        """
        idx = values.astype(np.int64) - self.origins[tables]
        escape = self.lengths[tables] - 1
        esc = (idx < 0) | (idx >= escape)
        idx[esc] = escape[esc]
        return idx.astype(np.int32), esc

    def bits(self, values: np.ndarray, tables: np.ndarray) -> np.ndarray:
        """What each value costs in the stream, in bits: -log2 of its symbol's probability, and
        an escaped value's raw bits besides."""
        idx, esc = self.symbols(values, tables)
        p = self.freqs[tables, idx].astype(np.float64) / TOTAL
        return -np.log2(np.maximum(p, 1.0 / TOTAL)) + esc * RAW_BITS

    def values(self, symbols: np.ndarray, tables: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decoded symbol indexes, each with its table -> (values, mask of the escaped)."""
        return symbols + self.origins[tables], symbols == self.lengths[tables] - 1


class Plan:
    """An ordered list of coding operations, pushed onto the ANS stack in reverse."""

    def __init__(self) -> None:
        self.ops: list[tuple[np.ndarray, object]] = []

    def add(self, symbols: np.ndarray, model: object) -> None:
        if symbols.size:
            self.ops.append((np.ascontiguousarray(symbols, dtype=np.int32), model))

    def add_raw(self, values: np.ndarray) -> None:
        u = np.clip(values.astype(np.int64), -RAW_OFFSET + 1, RAW_OFFSET - 1) + RAW_OFFSET
        self.add(u >> LO_BITS, _Uniform(1 << (RAW_BITS - LO_BITS)))
        self.add(u & ((1 << LO_BITS) - 1), _Uniform(1 << LO_BITS))

    def encode(self) -> bytes:
        coder = constriction.stream.stack.AnsCoder()
        for symbols, model in reversed(self.ops):
            coder.encode_reverse(symbols, model)
        return coder.get_compressed().astype("<u4").tobytes()


def _sort_dtype(n_tables: int) -> type:
    """The narrowest unsigned type for table indexes: numpy's stable sort is a radix sort there."""
    return np.uint8 if n_tables <= 256 else np.uint16


def _grouped(table_index: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int]]]:
    """Symbol order for coding: grouped by table in increasing order, raster order within.

    Returns (positions in that order, the table of each, [(table, start, end)] runs).
    """
    flat = table_index.reshape(-1)
    order = np.argsort(flat.astype(_sort_dtype(int(flat.max(initial=0)) + 1)), kind="stable")
    counts = np.bincount(flat, minlength=1)
    ends = np.cumsum(counts)
    runs = [(t, int(e - n), int(e)) for t, (n, e) in enumerate(zip(counts, ends, strict=True)) if n]
    return order, flat[order], runs


class LatentCodec:
    """Codes (z, y) of a tile given the factorized tables and the Gaussian tables."""

    def __init__(self, z_tables: TableSet, y_tables: TableSet) -> None:
        self.z_tables = z_tables
        self.y_tables = y_tables

    def encode(self, z: np.ndarray, y_passes: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
        """z (N,h,w) ints, then y's coding passes in order: (y ints already minus their means,
        their tables), each pair of one shape."""
        plan = Plan()
        n, per_channel = z.shape[0], z[0].size
        z_flat = z.reshape(-1)
        sym, esc = self.z_tables.symbols(z_flat, np.repeat(np.arange(n), per_channel))
        for c in range(n):
            plan.add(sym[c * per_channel : (c + 1) * per_channel], self.z_tables.model(c))
        plan.add_raw(z_flat[esc])
        for y, y_index in y_passes:
            order, tables, runs = _grouped(y_index)
            y_sorted = y.reshape(-1)[order]
            sym, esc = self.y_tables.symbols(y_sorted, tables)
            for t, start, end in runs:
                plan.add(sym[start:end], self.y_tables.model(t))
            plan.add_raw(y_sorted[esc])
        return plan.encode()

    def decoder(self, payload: bytes) -> LatentDecoder:
        return LatentDecoder(self, payload)


class LatentDecoder:
    """Decodes a tile payload in two steps: z first, then y once its tables are known."""

    def __init__(self, codec: LatentCodec, payload: bytes) -> None:
        if len(payload) % 4:
            raise BitstreamError("tile payload is not a whole number of 32-bit words")
        self.codec = codec
        words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
        try:
            self.coder = constriction.stream.stack.AnsCoder(words)
        except Exception as exc:  # constriction rejects some word sequences outright
            raise BitstreamError(f"invalid entropy-coded data: {exc}") from exc

    def _decode(self, model: object, n: int) -> np.ndarray:
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        try:
            return np.asarray(self.coder.decode(model, n), dtype=np.int64)
        except Exception as exc:
            raise BitstreamError(f"invalid entropy-coded data: {exc}") from exc

    def _decode_raw(self, n: int) -> np.ndarray:
        hi = self._decode(_Uniform(1 << (RAW_BITS - LO_BITS)), n)
        lo = self._decode(_Uniform(1 << LO_BITS), n)
        return (hi << LO_BITS) + lo - RAW_OFFSET

    def decode_z(self, shape: tuple[int, int, int]) -> np.ndarray:
        n, h, w = shape
        tables = self.codec.z_tables
        sym = np.concatenate([self._decode(tables.model(c), h * w) for c in range(n)]) if n else np.zeros(0, np.int64)
        out, esc = tables.values(sym, np.repeat(np.arange(n), h * w))
        out[esc] = self._decode_raw(int(esc.sum()))
        return out.reshape(shape)

    def decode_y(self, y_index: np.ndarray) -> np.ndarray:
        order, tables, runs = _grouped(y_index)
        sym = np.empty(order.size, dtype=np.int64)
        for t, start, end in runs:
            sym[start:end] = self._decode(self.codec.y_tables.model(t), end - start)
        vals, esc = self.codec.y_tables.values(sym, tables)
        vals[esc] = self._decode_raw(int(esc.sum()))
        out = np.empty(y_index.size, dtype=np.int64)
        out[order] = vals
        return out.reshape(y_index.shape)

    def finish(self) -> None:
        """A valid payload is consumed exactly; leftover words mean corruption."""
        if not self.coder.is_empty():
            raise BitstreamError("entropy-coded data does not end where the symbols end")
