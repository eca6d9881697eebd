"""Entropy coding of one tile's latents with shipped integer tables and constriction's rANS.

Layout of a tile's entropy-coded payload (one ANS stream, decoded in this order):
  1. z, channel by channel, each with its factorized-prior table
  2. raw values of escaped z symbols (high then low parts, uniform)
  3. y, grouped by table index in increasing order, raster order within a group
  4. raw values of escaped y symbols
The decoder learns the y table indexes from z through the integer hyper-synthesis, so
everything needed to decode a symbol is an already-decoded integer.
"""

from __future__ import annotations

from collections.abc import Iterable

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

    def split(self, values: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Values -> (symbol indexes with escapes, the escaped raw values)."""
        idx = values.astype(np.int64) - self.origins[t]
        esc = (idx < 0) | (idx >= self.lengths[t] - 1)
        idx[esc] = self.lengths[t] - 1
        return idx.astype(np.int32), values[esc]


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


def _grouped(table_index: np.ndarray) -> Iterable[tuple[int, np.ndarray]]:
    """(table, flat positions) groups in increasing table order, raster order within."""
    flat = table_index.reshape(-1)
    order = np.argsort(flat, kind="stable")
    counts = np.bincount(flat, minlength=1)
    start = 0
    for t, n in enumerate(counts):
        if n:
            yield t, order[start : start + n]
            start += n


class LatentCodec:
    """Codes (z, y) of a tile given the factorized tables and the Gaussian tables."""

    def __init__(self, z_tables: TableSet, y_tables: TableSet) -> None:
        self.z_tables = z_tables
        self.y_tables = y_tables

    def encode(self, z: np.ndarray, y: np.ndarray, y_index: np.ndarray) -> bytes:
        """z (N,h,w) ints, y (M,H,W) ints (already minus means), y_index (M,H,W) tables."""
        plan = Plan()
        raw_z = []
        for c in range(z.shape[0]):
            sym, esc = self.z_tables.split(z[c].reshape(-1), c)
            plan.add(sym, self.z_tables.model(c))
            raw_z.append(esc)
        plan.add_raw(np.concatenate(raw_z))
        y_flat = y.reshape(-1)
        raw_y = []
        for t, pos in _grouped(y_index):
            sym, esc = self.y_tables.split(y_flat[pos], t)
            plan.add(sym, self.y_tables.model(t))
            raw_y.append(esc)
        plan.add_raw(np.concatenate(raw_y) if raw_y else np.zeros(0, np.int64))
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

    def _fill(self, tables: TableSet, t: int, sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        esc = sym == tables.lengths[t] - 1
        return sym + tables.origins[t], esc

    def decode_z(self, shape: tuple[int, int, int]) -> np.ndarray:
        n, h, w = shape
        out = np.empty((n, h * w), dtype=np.int64)
        escapes = []
        for c in range(n):
            vals, esc = self._fill(self.codec.z_tables, c, self._decode(self.codec.z_tables.model(c), h * w))
            out[c] = vals
            escapes.append((c, np.flatnonzero(esc)))
        n_esc = sum(len(e) for _, e in escapes)
        raw = self._decode_raw(n_esc)
        k = 0
        for c, e in escapes:
            out[c, e] = raw[k : k + len(e)]
            k += len(e)
        return out.reshape(shape)

    def decode_y(self, y_index: np.ndarray) -> np.ndarray:
        out = np.empty(y_index.size, dtype=np.int64)
        esc_pos = []
        for t, pos in _grouped(y_index):
            vals, esc = self._fill(self.codec.y_tables, t, self._decode(self.codec.y_tables.model(t), len(pos)))
            out[pos] = vals
            esc_pos.append(pos[esc])
        esc_all = np.concatenate(esc_pos) if esc_pos else np.zeros(0, np.int64)
        out[esc_all] = self._decode_raw(len(esc_all))
        return out.reshape(y_index.shape)

    def finish(self) -> None:
        """A valid payload is consumed exactly; leftover words mean corruption."""
        if not self.coder.is_empty():
            raise BitstreamError("entropy-coded data does not end where the symbols end")
