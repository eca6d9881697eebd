"""Model packages: a folder with model.json, ONNX transforms, torch synthesis and integer tables.

A package is found by id (installed packages, then folders in $LSIC_MODELS) and refused when a
file's SHA-256 differs from model.json. The package hash, stored in every bitstream, is the
SHA-256 of model.json's file-hash table, so a decoder can tell a bitstream from another model.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from lsic.codec.entropy.coder import LatentCodec, TableSet
from lsic.codec.entropy.int_hyper import IntLayer, layers_from_arrays
from lsic.codec.errors import ModelError, ModelHashError, OperatingPointError, UnknownModelError

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "models"
FILES = (
    "analysis.int8.onnx",
    "analysis.fp32.onnx",
    "synthesis.fp32.onnx",
    "network.pt",
    "tables.npz",
    "selftest.npz",
)
STRIDE = 64  # total downsampling of z: tiles are padded to a multiple of this


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_hash(file_hashes: dict[str, str]) -> bytes:
    canonical = json.dumps(file_hashes, sort_keys=True).encode()
    return hashlib.sha256(canonical).digest()


def search_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("LSIC_MODELS", "").split(os.pathsep) if p]
    return [*extra, BUILTIN_DIR]


def available_models() -> list[str]:
    ids = []
    for d in search_dirs():
        if d.is_dir():
            ids += [p.parent.name for p in sorted(d.glob("*/model.json"))]
    return sorted(set(ids))


@dataclass
class ModelPackage:
    """A loaded, verified model package. Heavy parts load lazily."""

    root: Path
    meta: dict
    hash: bytes
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        return str(self.meta["id"])

    @property
    def n_rates(self) -> int:
        """Operating points (qualities): one per gain row, trained or extrapolated (model.json's
        operating_points says which), so the tables, not the metadata, decide what can be coded."""
        return int(self.arrays["gain"].shape[0])

    @property
    def architecture(self) -> dict:
        return dict(self.meta["architecture"])

    def path(self, name: str) -> Path:
        return self.root / name

    def check_quality(self, quality: int) -> int:
        """Quality 1..n_rates (higher is better) -> operating-point index 0..n_rates-1."""
        if not 1 <= quality <= self.n_rates:
            raise OperatingPointError(f"quality must be 1..{self.n_rates} for model {self.id}, got {quality}")
        return quality - 1

    @cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        with np.load(self.path("tables.npz")) as npz:
            return {k: npz[k] for k in npz.files}

    @cached_property
    def hyper_layers(self) -> list[IntLayer]:
        return layers_from_arrays(self.arrays)

    @cached_property
    def latent_codec(self) -> LatentCodec:
        a = self.arrays
        z = TableSet(a["z_freqs"], a["z_lengths"], a["z_origins"])
        y = TableSet(a["y_freqs"], a["y_lengths"], -((a["y_lengths"].astype(np.int64) - 2) // 2))
        return LatentCodec(z, y)

    @property
    def scale_thresholds(self) -> np.ndarray:
        return self.arrays["scale_thresholds_fx"].astype(np.int64)

    @property
    def z_medians_fx(self) -> np.ndarray:
        return self.arrays["z_medians_fx"].astype(np.int64)

    def gain(self, op: int) -> np.ndarray:
        return self.arrays["gain"][op].astype(np.float32)

    def inv_gain(self, op: int) -> np.ndarray:
        return self.arrays["inv_gain"][op].astype(np.float32)


def load_package_dir(root: Path) -> ModelPackage:
    meta_path = root / "model.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{root}: unreadable model.json ({exc})") from exc
    hashes = meta.get("files", {})
    for name in FILES:
        p = root / name
        if not p.is_file():
            raise ModelError(f"model {meta.get('id', root.name)}: missing file {name}")
        if hashes.get(name) != sha256_file(p):
            raise ModelHashError(f"model {meta.get('id', root.name)}: {name} does not match its hash in model.json")
    return ModelPackage(root=root, meta=meta, hash=package_hash(hashes))


_LOADED: dict[str, ModelPackage] = {}


def load_package(model: str | Path) -> ModelPackage:
    """Load a package by id (search path) or by folder path; cached per process."""
    key = str(model)
    if key in _LOADED:
        return _LOADED[key]
    p = Path(model)
    if (p / "model.json").is_file():
        pkg = load_package_dir(p)
    else:
        for d in search_dirs():
            if (d / key / "model.json").is_file():
                pkg = load_package_dir(d / key)
                break
        else:
            known = ", ".join(available_models()) or "none installed"
            raise UnknownModelError(f"unknown model '{key}' (available: {known})")
    _LOADED[key] = pkg
    return pkg
