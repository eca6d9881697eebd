"""The deterministic entropy path of one tile, written once for encoder and decoder alike.

Encoder: float y, z from the analysis transform -> integers -> integer hyper-synthesis picks
each y symbol's table and mean -> rANS payload. Decoder: payload -> z integers -> the same
integer hyper-synthesis -> y integers -> y_hat for the synthesis transform.

With a checkerboard context (packages whose tables carry one, lsic.codec.entropy.context) y is
coded in two halves: the anchors with the hyper-synthesis's tables, then the other half with
tables the integer context network refines from the decoded anchors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lsic.codec.entropy.coder import RAW_OFFSET
from lsic.codec.entropy.context import anchor_mask, run_int_context
from lsic.codec.entropy.int_hyper import ACT_FRAC_BITS, run_int_hyper
from lsic.codec.package import ModelPackage

FX = float(1 << ACT_FRAC_BITS)
_LIMIT = RAW_OFFSET - 1


@dataclass
class TileSymbols:
    """Everything the bitstream determines about a tile: the decoded integers."""

    z: np.ndarray  # (N, h, w) int64
    y: np.ndarray  # (M, 4h, 4w) int64, relative to the means
    index: np.ndarray  # (M, 4h, 4w) int32 table per y symbol
    means_fx: np.ndarray  # (M, 4h, 4w) int64 means with ACT_FRAC_BITS fraction

    def y_hat(self) -> np.ndarray:
        """Dequantized (still gained) latent, exactly y + mean."""
        return (self.y.astype(np.float64) + self.means_fx.astype(np.float64) / FX).astype(np.float32)



def hyper_output(pkg: ModelPackage, z_int: np.ndarray) -> np.ndarray:
    """Integer hyper-synthesis output (2M, 4h, 4w) from the integer z (a pure integer function)."""
    z_fx = z_int.astype(np.int64) * int(FX) + pkg.z_medians_fx[:, None, None]
    return run_int_hyper(z_fx, pkg.hyper_layers)


def split_params(pkg: ModelPackage, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scales and means halves of an integer parameter map (2M, H, W), or of a batch of them
    (B, 2M, H, W) -> (table indexes, fixed-point means)."""
    m = out.shape[-3] // 2
    return pkg.scale_index(out[..., :m, :, :]), out[..., m:, :, :]


def hyper_params(pkg: ModelPackage, z_int: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Table indexes and fixed-point means of y from the integer z alone (no context)."""
    return split_params(pkg, hyper_output(pkg, z_int))


def context_params(pkg: ModelPackage, hyper: np.ndarray, y_anchors: np.ndarray, means_fx: np.ndarray):
    """Tables and means of every y symbol once the anchors' integers are known (non-anchor
    entries of `y_anchors` are ignored); of one tile or a batch."""
    anchors = anchor_mask(*hyper.shape[-2:])
    anchors_fx = np.where(anchors, y_anchors * int(FX) + means_fx, 0)
    return split_params(pkg, run_int_context(hyper, anchors_fx, pkg.context_layers))


def _to_int(y: np.ndarray, means_fx: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(y.astype(np.float64) - means_fx / FX), -_LIMIT, _LIMIT).astype(np.int64)


def quantize_z(pkg: ModelPackage, z: np.ndarray) -> np.ndarray:
    """Analysis z (N,h,w) -> its integers (relative to the shipped medians)."""
    medians = pkg.z_medians_fx.astype(np.float64)[:, None, None] / FX
    return np.clip(np.rint(z.astype(np.float64) - medians), -_LIMIT, _LIMIT).astype(np.int64)


def quantize(pkg: ModelPackage, y: np.ndarray, z: np.ndarray, context: bool = True) -> TileSymbols:
    """Analysis outputs of one tile (gained y (M,H,W), z (N,h,w)) -> its symbols. context=False:
    the hyperprior's tables and means alone, as if the package had no context (to measure it)."""
    z_int = quantize_z(pkg, z)
    hyper = hyper_output(pkg, z_int)
    index, means_fx = split_params(pkg, hyper)
    y_int = _to_int(y, means_fx)
    if context and pkg.context_layers:
        # The anchors keep the hyper-synthesis's means, so their integers are already final.
        index, means_fx = context_params(pkg, hyper, y_int, means_fx)
        y_int = _to_int(y, means_fx)
    return TileSymbols(z_int, y_int, index, means_fx)


def coding_passes(pkg: ModelPackage, h: int, w: int) -> list[np.ndarray]:
    """Position masks (h, w) of y's coding passes in order: one, or the anchors then the rest."""
    if not pkg.context_layers:
        return [np.ones((h, w), dtype=bool)]
    anchors = anchor_mask(h, w)
    return [anchors, ~anchors]


def encode_tile(pkg: ModelPackage, y: np.ndarray, z: np.ndarray) -> bytes:
    return encode_symbols(pkg, quantize(pkg, y, z))


def encode_symbols(pkg: ModelPackage, s: TileSymbols) -> bytes:
    """A tile's quantized symbols -> its payload."""
    passes = coding_passes(pkg, *s.y.shape[1:])
    return pkg.latent_codec.encode(s.z, [(s.y[:, sel], s.index[:, sel]) for sel in passes])


def position_bits(
    pkg: ModelPackage, s: TileSymbols, at: np.ndarray | None = None, z_block_bits: np.ndarray | None = None
) -> np.ndarray:
    """Bits a tile's stream spends on each latent position (16x16 pixels), (4h, 4w): its y symbols
    over all channels, plus a sixteenth of its z position's symbols (one z covers 4x4 of y).
    at: (4h, 4w) the positions to count (a predicted tile's coded ones), 0 elsewhere; all if None.
    z_block_bits: (h, w) what each z position cost, where it was not coded with the factorized prior."""
    codec = pkg.latent_codec
    if z_block_bits is None:
        n = s.z.shape[0]
        z_block_bits = codec.z_tables.bits(s.z, np.broadcast_to(np.arange(n)[:, None, None], s.z.shape)).sum(axis=0)
    z_bits = np.kron(z_block_bits, np.ones((4, 4))) / 16.0
    if at is None:
        return codec.y_tables.bits(s.y, s.index).sum(axis=0) + z_bits
    out = np.zeros(s.y.shape[1:])
    out[at] = codec.y_tables.bits(s.y[:, at], s.index[:, at]).sum(axis=0) + z_bits[at]
    return out


def decode_tile(pkg: ModelPackage, payload: bytes, padded_h: int, padded_w: int) -> TileSymbols:
    """Payload of a tile padded to padded_h x padded_w -> its symbols (raises BitstreamError)."""
    return decode_tiles(pkg, [payload], padded_h, padded_w)[0]


def decode_tiles(pkg: ModelPackage, payloads: list[bytes], padded_h: int, padded_w: int) -> list[TileSymbols]:
    """Payloads of tiles of one padded size -> their symbols (raises BitstreamError). Each
    tile's stream is decoded on its own; the integer networks between its passes run once for
    the batch, in larger GEMMs with less per-call overhead."""
    n = int(pkg.architecture["N"])
    decoders = [pkg.latent_codec.decoder(p) for p in payloads]
    z = np.stack([d.decode_z((n, padded_h // 64, padded_w // 64)) for d in decoders])
    hyper = hyper_output(pkg, z)
    index, means_fx = split_params(pkg, hyper)
    passes = coding_passes(pkg, padded_h // 16, padded_w // 16)
    y = np.zeros(index.shape, dtype=np.int64)
    for i, d in enumerate(decoders):
        y[i][:, passes[0]] = d.decode_y(index[i][:, passes[0]])
    if len(passes) > 1:
        index, means_fx = context_params(pkg, hyper, y, means_fx)
        for i, d in enumerate(decoders):
            y[i][:, passes[1]] = d.decode_y(index[i][:, passes[1]])
    for d in decoders:
        d.finish()
    return [TileSymbols(z[i], y[i], index[i], means_fx[i]) for i in range(len(payloads))]
