"""The deterministic entropy path of one tile, written once for encoder and decoder alike.

Encoder: float y, z from the analysis transform -> integers -> integer hyper-synthesis picks
each y symbol's table and mean -> rANS payload. Decoder: payload -> z integers -> the same
integer hyper-synthesis -> y integers -> y_hat for the synthesis transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lsic.codec.entropy.coder import RAW_OFFSET
from lsic.codec.entropy.int_hyper import ACT_FRAC_BITS, run_int_hyper, scale_indexes
from lsic.codec.package import ModelPackage

FX = float(1 << ACT_FRAC_BITS)


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


def hyper_params(pkg: ModelPackage, z_int: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Table indexes and fixed-point means of y from the integer z (a pure integer function)."""
    z_fx = z_int.astype(np.int64) * int(FX) + pkg.z_medians_fx[:, None, None]
    out = run_int_hyper(z_fx, pkg.hyper_layers)
    m = out.shape[0] // 2
    return scale_indexes(out[:m], pkg.scale_thresholds), out[m:]


def quantize(pkg: ModelPackage, y: np.ndarray, z: np.ndarray) -> TileSymbols:
    """Analysis outputs of one tile (gained y (M,H,W), z (N,h,w)) -> its symbols."""
    medians = pkg.z_medians_fx.astype(np.float64)[:, None, None] / FX
    lim = RAW_OFFSET - 1
    z_int = np.clip(np.rint(z.astype(np.float64) - medians), -lim, lim).astype(np.int64)
    index, means_fx = hyper_params(pkg, z_int)
    y_int = np.clip(np.rint(y.astype(np.float64) - means_fx / FX), -lim, lim).astype(np.int64)
    return TileSymbols(z_int, y_int, index, means_fx)


def encode_tile(pkg: ModelPackage, y: np.ndarray, z: np.ndarray) -> bytes:
    s = quantize(pkg, y, z)
    return pkg.latent_codec.encode(s.z, s.y, s.index)


def decode_tile(pkg: ModelPackage, payload: bytes, padded_h: int, padded_w: int) -> TileSymbols:
    """Payload of a tile padded to padded_h x padded_w -> its symbols (raises BitstreamError)."""
    n = int(pkg.architecture["N"])
    dec = pkg.latent_codec.decoder(payload)
    z = dec.decode_z((n, padded_h // 64, padded_w // 64))
    index, means_fx = hyper_params(pkg, z)
    y = dec.decode_y(index)
    dec.finish()
    return TileSymbols(z, y, index, means_fx)
