"""Fit a package's temporal prior (lsic.codec.entropy.temporal) on rate alone, transforms frozen.

Training pairs are made from still photos, so no video the codec is measured on is seen: a
256x256 view of a photo is the keyframe, and the next frame is the same view with what a fixed
camera sees change between frames (sensor noise, a small shake, a lighting change, objects cut
from other photos moving or appearing). Each pair goes through the edge's own path: the keyframe
is coded as one, the next frame's blocks are chosen by the same rate-distortion rule
(lsic.codec.video.worth_coding), and the coded y positions are collected with the tables and
means the hyperprior and context give them. Per channel and bucket of |reference - mean| the
prior then takes the mean weight and table shift that make those symbols cheapest: an exact
count of their bits in the package's own tables, over a small grid of candidates. The z of the
coded blocks are collected too, as differences from the reference's z, and per quality and
channel the prior takes the Gaussian table that codes them in the fewest bits.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lsic.codec.encoder import Encoder
from lsic.codec.entropy.latents import FX, _to_int, position_bits, quantize, quantize_z
from lsic.codec.entropy.predicted import blocks_of, intra_state, plain_params, z_bits
from lsic.codec.entropy.temporal import WEIGHT_BITS, TemporalPrior
from lsic.codec.errors import UsageError
from lsic.codec.image_io import read_folder
from lsic.codec.networks.export import rewrite_package
from lsic.codec.package import ModelPackage, load_package_dir
from lsic.codec.video import VideoSettings, block_change, coding_mse, noise_floor, rd_lambdas, worth_coding

log = logging.getLogger("lsic.temporal_fit")

VIEW = 256
EDGES = (0.3, 0.7, 1.5, 3.0)  # bucket edges of |reference - mean|, in quantization steps
WEIGHTS = tuple(round(f * (1 << WEIGHT_BITS)) for f in (0.0, 0.25, 0.5, 0.75, 1.0))
OFFSETS = (-3, -2, -1, 0, 1, 2)


@dataclass
class Samples:
    """Coded y positions of predicted frames, flattened over positions: (M, P) each."""

    y: np.ndarray  # float, gained
    means_fx: np.ndarray
    ref_fx: np.ndarray
    index: np.ndarray

    z: dict[int, np.ndarray]  # per quality (1-based), (2, N, blocks): the coded blocks' z and the reference's

    @staticmethod
    def join(parts: list[Samples]) -> Samples:
        fields = (np.concatenate([getattr(p, f) for p in parts], axis=1) for f in ("y", "means_fx", "ref_fx", "index"))
        z: dict[int, list[np.ndarray]] = {}
        for part in parts:
            for q, pair in part.z.items():
                z.setdefault(q, []).append(pair)
        return Samples(*fields, {q: np.concatenate(pairs, axis=2) for q, pairs in z.items()})


def synthetic_pair(photos: list[np.ndarray], rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """(keyframe, next frame), VIEW x VIEW, of a fixed camera made from still photos."""
    img = rng.choice(photos)
    h, w = img.shape[:2]
    x, y = rng.randrange(4, w - VIEW - 4), rng.randrange(4, h - VIEW - 4)
    first = img[y : y + VIEW, x : x + VIEW].astype(np.float32)
    if rng.random() < 0.3:  # camera shake: the view shifted by under two pixels
        m = np.float32([[1, 0, rng.uniform(-1.5, 1.5)], [0, 1, rng.uniform(-1.5, 1.5)]])
        moved = cv2.warpAffine(img.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR)
        second = moved[y : y + VIEW, x : x + VIEW]
    else:
        second = first.copy()
    if rng.random() < 0.5:  # lighting
        second = second * rng.uniform(0.94, 1.06) + rng.uniform(-5, 5)
    for _ in range(rng.randrange(0, 4)):  # objects moving or appearing
        src = rng.choice(photos)
        s = rng.randrange(24, 96)
        sy, sx = rng.randrange(0, src.shape[0] - s), rng.randrange(0, src.shape[1] - s)
        patch = src[sy : sy + s, sx : sx + s].astype(np.float32)
        py, px = rng.randrange(0, VIEW - s), rng.randrange(0, VIEW - s)
        if rng.random() < 0.7:
            first[py : py + s, px : px + s] = patch
            py = min(VIEW - s, max(0, py + rng.randrange(-24, 25)))
            px = min(VIEW - s, max(0, px + rng.randrange(-24, 25)))
        second[py : py + s, px : px + s] = patch
    sigma = rng.uniform(0.0, 4.0)  # sensor noise, drawn anew in every frame
    nrng = np.random.default_rng(rng.randrange(1 << 31))
    frames = [f + nrng.normal(0.0, sigma, f.shape) for f in (first, second)]
    return tuple(np.clip(np.rint(f), 0, 255).astype(np.uint8) for f in frames)  # type: ignore[return-value]


def pair_samples(enc: Encoder, first: np.ndarray, second: np.ndarray, quality: int, settings: VideoSettings) -> Samples | None:
    """The coded positions of `second` predicted from `first` coded as a keyframe, as the edge would."""
    pkg = enc.pkg
    key_q = min(pkg.n_rates, quality + settings.keyframe_boost)
    s = quantize(pkg, *enc.analyse_tile(first, key_q - 1))
    ref = intra_state(s)
    lam = settings.rd_scale * rd_lambdas(pkg)[quality - 1]
    mse = coding_mse(pkg)
    change, variation = block_change(second, first)
    floor = settings.floor(noise_floor([variation]), mse[quality - 1], mse[key_q - 1])
    positions = worth_coding(change, lam, position_bits(pkg, s), floor)
    if not positions.any():
        return None
    y, z = enc.analyse_tile(second, quality - 1)
    index, means = plain_params(pkg, y, z, ref, positions)
    coded = blocks_of(positions)
    # z against the same view's z at this quality: what a block holds once the stream has coded
    # it at its quality (the first change after a keyframe, against the keyframe's z, is left
    # to the factorized prior by the encoder's per-block choice)
    steady = quantize_z(pkg, enc.analyse_tile(first, quality - 1)[1])
    z_pair = np.stack([quantize_z(pkg, z)[:, coded], steady[:, coded]])
    return Samples(y[:, positions].astype(np.float64), means[:, positions], ref.y_fx[:, positions], index[:, positions],
                   {quality: z_pair})


def collect(pkg: ModelPackage, photos: list[np.ndarray], pairs: int, qualities: list[int], seed: int) -> Samples:
    enc = Encoder(pkg.root, threads=2)
    rng = random.Random(seed)
    settings = VideoSettings()
    parts, t0 = [], time.monotonic()
    for i in range(pairs):
        first, second = synthetic_pair(photos, rng)
        got = pair_samples(enc, first, second, qualities[i % len(qualities)], settings)
        if got is not None:
            parts.append(got)
        if (i + 1) % 100 == 0:
            log.info("temporal pairs %d/%d (%.0f s)", i + 1, pairs, time.monotonic() - t0)
    if not parts:
        raise UsageError("no training pair coded a position: the photos are too small or too few")
    return Samples.join(parts)


def _candidate_bits(pkg: ModelPackage, data: Samples, prior: TemporalPrior) -> np.ndarray:
    """Bits of every sample (M, P) coded with `prior`."""
    n_tables = pkg.latent_codec.y_tables.freqs.shape[0]
    index, means = prior.apply(data.index[..., None], data.means_fx[..., None], data.ref_fx[..., None], n_tables)
    values = _to_int(data.y[..., None], means)
    return pkg.latent_codec.y_tables.bits(values, index)[..., 0]


def fit_z(pkg: ModelPackage, data: Samples) -> np.ndarray:
    """(qualities, N): per quality and channel the y table that codes the z differences in the
    fewest bits; a quality without samples takes the nearest one's."""
    n_tables = pkg.latent_codec.y_tables.freqs.shape[0]
    fitted = {}
    for q, pair in data.z.items():
        n = pair.shape[1]
        bits = np.stack([z_bits(pkg, *pair, np.full(n, t)).sum(axis=1) for t in range(n_tables)])
        fitted[q] = bits.argmin(axis=0)
    return np.stack([fitted[min(fitted, key=lambda f: (abs(f - q), f))] for q in range(1, pkg.n_rates + 1)])


def z_saving(pkg: ModelPackage, data: Samples, z_tables: np.ndarray) -> float:
    """Share of the coded z's bits saved when each block takes the cheaper of its difference
    and the factorized prior, its one mode bit counted."""
    plain = cheaper = 0.0
    for q, pair in data.z.items():
        alone = z_bits(pkg, *pair, None).sum(axis=0)
        diff = z_bits(pkg, *pair, z_tables[q - 1]).sum(axis=0)
        plain += float(alone.sum())
        cheaper += float(np.minimum(alone, diff).sum()) + alone.size
    return 1.0 - cheaper / plain


def fit(pkg: ModelPackage, data: Samples) -> TemporalPrior:
    """Per channel and bucket, the candidate (weight, offset) whose bits over the samples are fewest."""
    m = data.y.shape[0]
    thresholds = np.rint(np.asarray(EDGES) * FX).astype(np.int64)
    k = len(EDGES) + 1
    zero = TemporalPrior(thresholds, np.zeros((m, k), np.int64), np.zeros((m, k), np.int64))
    bucket = zero.buckets(data.means_fx, data.ref_fx)  # (M, P)
    flat = np.arange(m)[:, None] * k + bucket
    best = np.full(m * k, np.inf)
    weights, offsets = np.zeros(m * k, np.int64), np.zeros(m * k, np.int64)
    for w in WEIGHTS:
        for o in OFFSETS:
            cand = TemporalPrior(thresholds, np.full((m, k), w), np.full((m, k), o))
            total = np.bincount(flat.ravel(), _candidate_bits(pkg, data, cand).ravel(), minlength=m * k)
            better = total < best
            best[better], weights[better], offsets[better] = total[better], w, o
    return TemporalPrior(thresholds, weights.reshape(m, k), offsets.reshape(m, k))


def saving(pkg: ModelPackage, data: Samples, prior: TemporalPrior) -> float:
    """Share of the samples' bits the prior saves."""
    m, k = prior.weights.shape
    plain = TemporalPrior(prior.thresholds_fx, np.zeros((m, k), np.int64), np.zeros((m, k), np.int64))
    return 1.0 - float(_candidate_bits(pkg, data, prior).sum() / _candidate_bits(pkg, data, plain).sum())


def fit_package(
    root: Path, data_dir: Path, pairs: int = 1200, qualities: str = "all", seed: int = 0, parts: str = "y,z"
) -> dict:
    """Fit the prior on pairs from `data_dir`'s photos (a fifth held out to measure it) and write it
    into the package as a new build. parts: "y,z" fits both; "z" keeps the package's y prior and
    fits the z tables alone. A build without a prior stays decodable by the new one (its intra
    tiles are untouched and its predicted tiles decode without a prior, `decodes_builds`); a
    build whose prior is replaced is retired, so its predicted tiles keep their own."""
    pkg = load_package_dir(root)
    if pkg.decode_only:
        raise UsageError(f"{root}: a retired build gets no temporal prior")
    if parts not in ("y,z", "z"):
        raise UsageError(f"--parts must be 'y,z' or 'z', got {parts!r}")
    if parts == "z" and pkg.temporal is None:
        raise UsageError(f"{root} has no temporal prior of y to keep: fit --parts y,z")
    t0 = time.monotonic()
    photos = read_folder(data_dir, min_side=VIEW + 8)
    qs = list(range(1, pkg.n_rates + 1)) if qualities == "all" else [pkg.check_quality(int(q)) + 1 for q in qualities.split(",")]
    held = max(1, pairs // 5)
    train = collect(pkg, photos, pairs - held, qs, seed)
    test = collect(pkg, photos, held, qs, seed + 1)
    y_prior = fit(pkg, train) if parts == "y,z" else pkg.temporal
    prior = TemporalPrior(y_prior.thresholds_fx, y_prior.weights, y_prior.offsets, fit_z(pkg, train))
    trained_on = (f"{pairs - held} synthetic pairs from {len(photos)} photos in {data_dir.name}/ "
                  "(noise, shake, lighting, moving and appearing objects)")
    z_report = {
        "trained_on": trained_on,
        "qualities": qs,
        "where": "CPU, 2 threads",
        "seconds": round(time.monotonic() - t0),
        "rate_saving_train": round(z_saving(pkg, train, prior.z_tables), 4),
        "rate_saving_held_out": round(z_saving(pkg, test, prior.z_tables), 4),
        "fitted": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    if parts == "z":
        report = {**pkg.meta["temporal_prior"], "z": z_report}
    else:
        report = {
            **{k: v for k, v in z_report.items() if not k.startswith("rate_saving")},
            "rate_saving_train": round(saving(pkg, train, prior), 4),
            "rate_saving_held_out": round(saving(pkg, test, prior), 4),
            "z": z_report,
        }
    refit = pkg.temporal is not None
    kept = {k: v for k, v in pkg.arrays.items() if not k.startswith(("tm_", "tz_"))}

    def rewrite(tmp: Path, meta: dict) -> bool:
        np.savez_compressed(tmp / "tables.npz", **kept, **prior.to_arrays())
        if not refit:  # a first prior: the build before decodes as this one (temporal_of)
            meta["decodes_builds"] = [*meta.get("decodes_builds", []), pkg.hash.hex()]
        meta["temporal_prior"] = report
        return True

    rewrite_package(root, rewrite, retire=refit)
    log.info("temporal prior of %s: %s", root, report)
    return report
