"""Predicted tiles: conditional replenishment at the hyperprior's own grain.

A fixed camera sees mostly what it saw a moment ago. A predicted tile codes only the 64x64
blocks that changed, one position of z and 4x4 of y each; every other block keeps the previous
frame's integers. Encoder and decoder both merge the coded blocks into the reference's latents
before the integer hyper-synthesis and the checkerboard context run, so the tables and means of
every coded symbol come from integers both sides hold: the same bit-exact guarantee as an intra
tile. The synthesis then runs over the whole merged tile, so there are no block seams.

Payload of a predicted tile (docs/bitstream.md, tile kind 2):
  4 bytes   CRC32C of the reference state it was coded against (LatentState.digest)
  m bytes   the coded-block mask, one bit per z position in raster order, packed most
            significant bit first and zero-padded to a multiple of 4 bytes
  rest      one rANS stream: z of the coded blocks (channel by channel), then y of the coded
            blocks in the usual passes (anchors first with a checkerboard context)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import google_crc32c
import numpy as np

from lsic.codec.entropy.context import anchor_mask, run_int_context
from lsic.codec.entropy.latents import (
    FX,
    TileSymbols,
    _to_int,
    coding_passes,
    hyper_output,
    position_bits,
    quantize_z,
    split_params,
)
from lsic.codec.errors import BitstreamError, ReferenceMismatchError
from lsic.codec.package import ModelPackage


@dataclass
class LatentState:
    """What both ends keep of one tile to code the next frame's predicted tile against it."""

    z: np.ndarray  # (N, h, w) int64 integers of z
    y_fx: np.ndarray  # (M, 4h, 4w) int64 y_hat in fixed point (y * FX + mean), still gained
    y_hat: np.ndarray | None = None  # (M, 4h, 4w) float32 dequantized (inverse gain applied); decoders only

    def digest(self) -> int:
        """CRC32C of the integers: a predicted tile names its reference by it, so a decoder never
        merges into the wrong frame."""
        crc = google_crc32c.value(np.ascontiguousarray(self.z, dtype="<i4").tobytes())
        return google_crc32c.extend(crc, np.ascontiguousarray(self.y_fx, dtype="<i4").tobytes())

    @property
    def blocks(self) -> tuple[int, int]:
        return self.z.shape[1], self.z.shape[2]


def intra_state(symbols: TileSymbols, y_hat: np.ndarray | None = None) -> LatentState:
    """The state an intra-coded tile leaves."""
    return LatentState(symbols.z, symbols.y * int(FX) + symbols.means_fx, y_hat)


def _positions(coded: np.ndarray) -> np.ndarray:
    """Block mask (h, w) -> y position mask (4h, 4w)."""
    return np.kron(coded, np.ones((4, 4), dtype=bool)).astype(bool)


def _mask_bytes(coded: np.ndarray) -> bytes:
    packed = np.packbits(coded.reshape(-1).astype(np.uint8)).tobytes()
    return packed + b"\0" * (-len(packed) % 4)


def _params(pkg: ModelPackage, z_full: np.ndarray, y_fx_ref: np.ndarray, at: np.ndarray, y_int: np.ndarray | None):
    """Hyper output, then (index, means) for the first pass; with a context, a function giving the
    refined (index, means) once the coded anchors' integers are known."""
    hyper = hyper_output(pkg, z_full)
    index, means = split_params(pkg, hyper)

    def refined(y_anchor_int: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        anchors = anchor_mask(*hyper.shape[1:])
        merged = np.where(at, y_anchor_int * int(FX) + means, y_fx_ref)
        return split_params(pkg, run_int_context(hyper, np.where(anchors, merged, 0), pkg.context_layers))

    return index, means, refined


def unchanged_tile(ref: LatentState) -> bytes:
    """The payload of a predicted tile that codes no block (the decoder keeps `ref` as it is)."""
    return struct.pack("<I", ref.digest()) + _mask_bytes(np.zeros(ref.blocks, dtype=bool))


@dataclass
class PredictedTile:
    payload: bytes
    state: LatentState  # what the decoder holds after it
    block_bits: np.ndarray  # (h, w) bits each coded block took (0 elsewhere)


def encode_predicted(pkg: ModelPackage, y: np.ndarray, z: np.ndarray, ref: LatentState, coded: np.ndarray) -> PredictedTile:
    """Analysis outputs of a tile (gained y, z) and the blocks to code (h, w bool, at least one)."""
    if coded.shape != ref.blocks or not coded.any():
        raise BitstreamError(f"block mask {coded.shape} must match the reference {ref.blocks} and code a block")
    head = struct.pack("<I", ref.digest()) + _mask_bytes(coded)
    z_full = np.where(coded[None], quantize_z(pkg, z), ref.z)
    at = _positions(coded)[None]
    index, means, refined = _params(pkg, z_full, ref.y_fx, at, None)
    y_int = _to_int(y, means)
    if pkg.context_layers:
        index, means = refined(y_int)
        y_int = _to_int(y, means)
    passes = [p & at[0] for p in coding_passes(pkg, *y_int.shape[1:])]
    payload = pkg.latent_codec.encode(z_full[:, coded], [(y_int[:, p], index[:, p]) for p in passes])
    bits = position_bits(pkg, TileSymbols(z_full, y_int, index, means))
    h, w = coded.shape
    block_bits = np.where(coded, bits.reshape(h, 4, w, 4).sum(axis=(1, 3)), 0.0)
    state = LatentState(z_full, np.where(at, y_int * int(FX) + means, ref.y_fx))
    return PredictedTile(head + payload, state, block_bits)


def decode_predicted(
    pkg: ModelPackage, payload: bytes, ref: LatentState, inv_gain: np.ndarray | float
) -> LatentState:
    """Payload of a predicted tile and the reference it names -> the merged state, with y_hat
    dequantized by `inv_gain` (per position or one value) at the coded blocks."""
    h, w = ref.blocks
    n_mask = -(-h * w // 8)
    n_mask += -n_mask % 4
    if len(payload) < 4 + n_mask:
        raise BitstreamError("predicted tile payload is shorter than its reference and block mask")
    (digest,) = struct.unpack_from("<I", payload, 0)
    if digest != ref.digest():
        raise ReferenceMismatchError(
            "predicted tile was coded against another reference than the previous frame held here"
        )
    bits = np.unpackbits(np.frombuffer(payload, np.uint8, n_mask, 4))
    if bits[h * w :].any():
        raise BitstreamError("predicted tile's block mask has bits set past its blocks")
    coded = bits[: h * w].reshape(h, w).astype(bool)
    rest = payload[4 + n_mask :]
    if not coded.any():
        if rest:
            raise BitstreamError("predicted tile codes no block but carries entropy-coded data")
        return ref
    n = int(pkg.architecture["N"])
    dec = pkg.latent_codec.decoder(rest)
    z_full = ref.z.copy()
    z_full[:, coded] = dec.decode_z((n, 1, int(coded.sum()))).reshape(n, -1)
    at = _positions(coded)[None]
    index, means, refined = _params(pkg, z_full, ref.y_fx, at, None)
    passes = [p & at[0] for p in coding_passes(pkg, *index.shape[1:])]
    y = np.zeros(index.shape, dtype=np.int64)
    y[:, passes[0]] = dec.decode_y(index[:, passes[0]])
    if len(passes) > 1:
        index, means = refined(y)
        y[:, passes[1]] = dec.decode_y(index[:, passes[1]])
    dec.finish()
    y_fx = np.where(at, y * int(FX) + means, ref.y_fx)
    y_hat = None
    if ref.y_hat is not None:
        fresh = ((y.astype(np.float64) + means.astype(np.float64) / FX) * inv_gain).astype(np.float32)
        y_hat = np.where(at, fresh, ref.y_hat)
    return LatentState(z_full, y_fx, y_hat)
