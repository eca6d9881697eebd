"""Predicted tiles: conditional replenishment at the hyperprior's own grain.

A fixed camera sees mostly what it saw a moment ago. A predicted tile codes only what changed:
64x64 blocks (one position of z, 4x4 of y) and, within each, only the y positions (16x16
pixels) that changed; everything else keeps the previous frame's integers. Encoder and decoder
both merge the coded values into the reference's latents before the integer hyper-synthesis and
the checkerboard context run, so the tables and means of every coded symbol come from integers
both sides hold: the same bit-exact guarantee as an intra tile. The synthesis then runs over the
whole merged tile, so there are no block seams.

Payload of a predicted tile (docs/bitstream.md, tile kind 2):
  4 bytes   CRC32C of the reference state it was coded against (LatentState.digest)
  m bytes   block mask: one bit per z position (64x64 pixels) in raster order, most
            significant bit first, zero-padded to whole bytes
  2 bytes   per coded block, in raster order: which of its 4x4 y positions are coded (bit 15 =
            top left, row by row); at least one
  z modes   builds whose temporal prior has z tables: one bit per coded block, most significant
            first, zero-padded to whole bytes: 1 where its z is coded as a difference
  pad       in containers of format 3 only: zero bytes to a multiple of 4 bytes from the
            start of the payload (format 4 starts the stream right after the masks)
  rest      one rANS stream: z of the coded blocks with the factorized prior (channel by
            channel), then the z differences from the reference's of the blocks whose mode bit
            is 1 (grouped by table), then y of the coded positions in the usual passes
            (anchors first with a checkerboard context)
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
from lsic.codec.entropy.temporal import TemporalPrior
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


def blocks_of(positions: np.ndarray) -> np.ndarray:
    """Coded y positions (4h, 4w) -> coded blocks (h, w): those with any position coded."""
    h, w = positions.shape[0] // 4, positions.shape[1] // 4
    return positions.reshape(h, 4, w, 4).any(axis=(1, 3))


def _head(ref: LatentState, positions: np.ndarray, z_diff: np.ndarray | None) -> bytes:
    """Digest and masks as format 4 writes them (encoders write no other); z_diff: the coded
    blocks' z modes, for a build whose temporal prior has z tables."""
    h, w = ref.blocks
    blocks = blocks_of(positions)
    cells = positions.reshape(h, 4, w, 4).transpose(0, 2, 1, 3)[blocks].reshape(-1, 16)
    out = struct.pack("<I", ref.digest()) + np.packbits(blocks.reshape(-1)).tobytes()
    out += np.packbits(cells.astype(np.uint8), axis=1).tobytes()
    if z_diff is not None:
        out += np.packbits(z_diff.astype(np.uint8)).tobytes()
    return out


def read_head(payload: bytes, h: int, w: int, aligned: bool, z_modes: bool) -> tuple[int, np.ndarray, int, np.ndarray]:
    """(reference digest, coded positions (4h, 4w), where the rANS stream starts, the coded
    blocks' z modes (all False without z_modes)); aligned: the stream starts at a multiple of 4
    bytes (format 3)."""
    n_blocks = -(-h * w // 8)
    if len(payload) < 4 + n_blocks:
        raise BitstreamError("predicted tile payload is shorter than its reference and block mask")
    (digest,) = struct.unpack_from("<I", payload, 0)
    bits = np.unpackbits(np.frombuffer(payload, np.uint8, n_blocks, 4))
    if bits[h * w :].any():
        raise BitstreamError("predicted tile's block mask has bits set past its blocks")
    blocks = bits[: h * w].reshape(h, w).astype(bool)
    k = int(blocks.sum())
    at = 4 + n_blocks
    if len(payload) < at + 2 * k:
        raise BitstreamError("predicted tile payload is shorter than its position masks")
    cells = np.unpackbits(np.frombuffer(payload, np.uint8, 2 * k, at).reshape(k, 2), axis=1).astype(bool)
    if k and not cells.any(axis=1).all():
        raise BitstreamError("predicted tile codes a block with no position")
    grid = np.zeros((h, w, 16), dtype=bool)
    grid[blocks] = cells
    positions = grid.reshape(h, w, 4, 4).transpose(0, 2, 1, 3).reshape(4 * h, 4 * w)
    at += 2 * k
    z_diff = np.zeros(k, dtype=bool)
    if z_modes:
        n_modes = -(-k // 8)
        if len(payload) < at + n_modes:
            raise BitstreamError("predicted tile payload is shorter than its z modes")
        mode_bits = np.unpackbits(np.frombuffer(payload, np.uint8, n_modes, at))
        if mode_bits[k:].any():
            raise BitstreamError("predicted tile's z modes have bits set past its blocks")
        z_diff = mode_bits[:k].astype(bool)
        at += n_modes
    start = at + (-at % 4) if aligned else at
    if any(payload[at:start]):
        raise BitstreamError("predicted tile's padding is not zero")
    return digest, positions, start, z_diff


def _params(pkg: ModelPackage, z_full: np.ndarray, y_fx_ref: np.ndarray, at: np.ndarray, prior: TemporalPrior | None):
    """(index, means) of the first pass; with a context, a function giving the refined (index,
    means) once the coded anchors' integers are known. Both through the temporal prior, if any."""
    hyper = hyper_output(pkg, z_full)

    def temporal(params: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if prior is None:
            return params
        return prior.apply(*params, y_fx_ref, pkg.latent_codec.y_tables.freqs.shape[0])

    index, means = temporal(split_params(pkg, hyper))

    def refined(y_anchor_int: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        anchors = anchor_mask(*hyper.shape[1:])
        merged = np.where(at, y_anchor_int * int(FX) + means, y_fx_ref)
        return temporal(split_params(pkg, run_int_context(hyper, np.where(anchors, merged, 0), pkg.context_layers)))

    return index, means, refined


def plain_params(
    pkg: ModelPackage, y: np.ndarray, z: np.ndarray, ref: LatentState, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(index, means) the hyperprior and context give a predicted tile's y without a temporal
    prior: what the prior is fitted against (lsic.codec.networks.temporal_fit)."""
    z_full = np.where(blocks_of(positions)[None], quantize_z(pkg, z), ref.z)
    index, means, refined = _params(pkg, z_full, ref.y_fx, positions[None], None)
    if pkg.context_layers:
        index, means = refined(_to_int(y, means))
    return index, means


def held_tile(ref: LatentState) -> bytes:
    """The payload of a tile a predicted frame keeps as the reference has it (kind
    TILE_SAME_AS_PREVIOUS in format 4): the reference's digest alone."""
    return struct.pack("<I", ref.digest())


def decode_held(payload: bytes, ref: LatentState) -> LatentState:
    """A held tile's state: the reference itself, once its digest matches the payload's."""
    if len(payload) != 4 or struct.unpack("<I", payload)[0] != ref.digest():
        raise ReferenceMismatchError("held tile names another reference than the previous frame held here")
    return ref


@dataclass
class PredictedTile:
    payload: bytes
    state: LatentState  # what the decoder holds after it
    position_bits: np.ndarray  # (4h, 4w) bits each coded y position took, its block's z included (0 elsewhere)


def z_bits(pkg: ModelPackage, z: np.ndarray, ref_z: np.ndarray, tables: np.ndarray | None) -> np.ndarray:
    """Bits of each z (N, k) of coded blocks: with the factorized prior (tables None), or as its
    difference from the reference's z with the y table of its channel in `tables` (N,)."""
    codec = pkg.latent_codec
    if tables is None:
        return codec.z_tables.bits(z, np.broadcast_to(np.arange(z.shape[0])[:, None], z.shape))
    return codec.y_tables.bits(z - ref_z, np.broadcast_to(tables[:, None], z.shape))


def z_tables_for(prior: TemporalPrior | None, quality: int) -> np.ndarray | None:
    """(N,) the tables a predicted tile's z differences take at a quality (1-based); None when
    the build codes every z with the factorized prior (and its tiles carry no z modes)."""
    return prior.z_tables_at(quality) if prior is not None else None


def _z_costs(pkg: ModelPackage, z: np.ndarray, ref_z: np.ndarray, tables: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Bits per coded block (z and the reference's, (N, k)) with the factorized prior, and as the
    difference from the reference's z in `tables` (N,) (infinite without tables)."""
    plain = z_bits(pkg, z, ref_z, None).sum(axis=0)
    if tables is None:
        return plain, np.full_like(plain, np.inf)
    return plain, z_bits(pkg, z, ref_z, tables).sum(axis=0)


def _z_block_bits(
    pkg: ModelPackage, coded: np.ndarray, z: np.ndarray, ref_z: np.ndarray, tables: np.ndarray | None, z_diff: np.ndarray
) -> np.ndarray:
    """(h, w) what each coded block's z (N, k) cost in the mode it was coded in, 0 elsewhere."""
    per_block = np.zeros(z.shape[1])
    per_block[~z_diff] = z_bits(pkg, z[:, ~z_diff], ref_z[:, ~z_diff], None).sum(axis=0)
    if z_diff.any():
        per_block[z_diff] = z_bits(pkg, z[:, z_diff], ref_z[:, z_diff], tables).sum(axis=0)
    out = np.zeros(coded.shape)
    out[coded] = per_block
    return out


def encode_predicted(
    pkg: ModelPackage, y: np.ndarray, z: np.ndarray, ref: LatentState, positions: np.ndarray, quality: int
) -> PredictedTile:
    """Analysis outputs of a tile (gained y, z) at the frame's quality (1-based) and the y
    positions to code (4h, 4w bool, at least one); z is coded for every block holding one of
    them, y (and z, where the prior has z tables) with the package's temporal prior."""
    h, w = ref.blocks
    if positions.shape != (4 * h, 4 * w) or not positions.any():
        raise BitstreamError(f"position mask {positions.shape} must match the reference's {(4 * h, 4 * w)} and code one")
    coded = blocks_of(positions)
    z_full = np.where(coded[None], quantize_z(pkg, z), ref.z)
    at = positions[None]
    prior = pkg.temporal
    index, means, refined = _params(pkg, z_full, ref.y_fx, at, prior)
    y_int = _to_int(y, means)
    if pkg.context_layers:
        index, means = refined(y_int)
        y_int = _to_int(y, means)
    passes = [p & at[0] for p in coding_passes(pkg, *y_int.shape[1:])]
    y_passes = [(y_int[:, p], index[:, p]) for p in passes]
    z_coded, z_ref = z_full[:, coded], ref.z[:, coded]
    tables = z_tables_for(prior, quality)
    costs = _z_costs(pkg, z_coded, z_ref, tables)
    z_diff = costs[1] < costs[0]  # per coded block, the cheaper mode (never a difference without tables)
    if z_diff.any():
        diff_pass = (z_coded[:, z_diff] - z_ref[:, z_diff], np.broadcast_to(tables[:, None], z_ref[:, z_diff].shape))
        payload = pkg.latent_codec.encode(z_coded[:, ~z_diff], [diff_pass, *y_passes])
    else:
        payload = pkg.latent_codec.encode(z_coded, y_passes)
    symbols = TileSymbols(z_full, y_int, index, means)
    z_block_bits = np.zeros(coded.shape)
    z_block_bits[coded] = np.where(z_diff, costs[1], costs[0])
    bits = position_bits(pkg, symbols, positions, z_block_bits)
    state = LatentState(z_full, np.where(at, y_int * int(FX) + means, ref.y_fx))
    head = _head(ref, positions, None if tables is None else z_diff)
    return PredictedTile(head + payload, state, bits)


@dataclass
class DecodedPredicted:
    state: LatentState
    position_bits: np.ndarray | None  # (4h, 4w) bits each coded position took, its block's z included (0 elsewhere)


def decode_predicted(
    pkg: ModelPackage,
    payload: bytes,
    ref: LatentState,
    inv_gain: np.ndarray | float,
    prior: TemporalPrior | None,
    aligned: bool,
    quality: int,
    with_bits: bool = False,
) -> DecodedPredicted:
    """Payload of a predicted tile and the reference it names -> the merged state, with y_hat
    dequantized by `inv_gain` (per position or one value) at the coded positions, and with_bits,
    what each coded position cost. `prior`: the temporal prior of the build that wrote the tile
    (ModelPackage.temporal_of); aligned: the payload layout of format 3; quality: the frame's
    (1-based)."""
    h, w = ref.blocks
    tables = z_tables_for(prior, quality)
    digest, positions, start, z_diff = read_head(payload, h, w, aligned, tables is not None)
    if digest != ref.digest():
        raise ReferenceMismatchError(
            "predicted tile was coded against another reference than the previous frame held here"
        )
    rest = payload[start:]
    coded = blocks_of(positions)
    if not coded.any():
        if rest:
            raise BitstreamError("predicted tile codes nothing but carries entropy-coded data")
        return DecodedPredicted(ref, np.zeros(positions.shape) if with_bits else None)
    n = int(pkg.architecture["N"])
    dec = pkg.latent_codec.decoder(rest)
    z_full = ref.z.copy()
    block_z = ref.z[:, coded]
    block_z[:, ~z_diff] = dec.decode_z((n, 1, int((~z_diff).sum()))).reshape(n, -1)
    if z_diff.any():
        block_z[:, z_diff] += dec.decode_y(np.broadcast_to(tables[:, None], (n, int(z_diff.sum()))))
    z_full[:, coded] = block_z
    at = positions[None]
    index, means, refined = _params(pkg, z_full, ref.y_fx, at, prior)
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
    state = LatentState(z_full, y_fx, y_hat)
    if not with_bits:
        return DecodedPredicted(state, None)
    z_block_bits = _z_block_bits(pkg, coded, block_z, ref.z[:, coded], tables, z_diff)
    return DecodedPredicted(state, position_bits(pkg, TileSymbols(z_full, y, index, means), positions, z_block_bits))
