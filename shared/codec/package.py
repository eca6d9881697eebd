"""Model packages: a folder with model.json, ONNX transforms, torch synthesis and integer tables.

A package is found by id (installed packages, then folders in $LSIC_MODELS) and refused when a
file's SHA-256 differs from model.json. The package hash, stored in every bitstream, is the
SHA-256 of model.json's file-hash table, so a decoder can tell a bitstream from another model.

A package re-exported under the same id (retrained) is a new build with a new hash. Its earlier
build stays decodable: `lsic export` keeps it as a retired, decode-only copy (what the entropy
decoder and the synthesis need) in the models folder's `retired/`, and decoders and the cloud's
ingest find the build a bitstream names by its hash. Archives and edge devices that have not
upgraded yet keep working; only encoding needs the current build.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from lsic.codec.bitstream import BUILD_BYTES, Container, max_map_level
from lsic.codec.entropy.coder import LatentCodec, TableSet
from lsic.codec.entropy.int_hyper import IntLayer, ScaleIndexer, layers_from_arrays
from lsic.codec.entropy.temporal import TemporalPrior
from lsic.codec.errors import BitstreamError, ModelError, ModelHashError, OperatingPointError, UnknownModelError

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "models"
FILES = (
    "analysis.int8.onnx",
    "analysis.fp32.onnx",
    "synthesis.fp32.onnx",
    "network.pt",
    "tables.npz",
    "selftest.npz",
)
DECODE_FILES = ("synthesis.fp32.onnx", "network.pt", "tables.npz", "selftest.npz")  # what a retired build keeps
# What an edge install carries of each current package: the int8 analysis and the entropy tables.
# The rest (synthesis, torch weights, fp32 analysis, retired builds) comes with the models
# distribution in shared/models (pip install ./shared/models), which the cloud installs.
ENCODE_FILES = ("analysis.int8.onnx", "tables.npz")
MODELS_DISTRIBUTION = "lsic_models"
RETIRED_DIR = "retired"  # in a models folder: retired builds, one folder "<id>-<hash16>" each
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
    """$LSIC_MODELS, then the full packages of the models distribution when it is installed, then
    the packages installed with lsic (complete in a source tree, encode-only in a wheel)."""
    extra = [Path(p) for p in os.environ.get("LSIC_MODELS", "").split(os.pathsep) if p]
    spec = importlib.util.find_spec(MODELS_DISTRIBUTION)
    full = [Path(d) for d in spec.submodule_search_locations] if spec and spec.submodule_search_locations else []
    return [*extra, *full, BUILTIN_DIR]


def available_models() -> list[str]:
    """Ids of the current (encodable) packages."""
    ids = []
    for d in search_dirs():
        if d.is_dir():
            ids += [p.parent.name for p in sorted(d.glob("*/model.json"))]
    return sorted(set(ids))


def retired_dirs(model_id: str) -> list[Path]:
    """Folders of the retired builds of a model, search path order."""
    return [p.parent for d in search_dirs() for p in sorted((d / RETIRED_DIR).glob(f"{model_id}-*/model.json"))]


def names_build(build: bytes, full_hash: bytes) -> bool:
    """A bitstream's build field names the package of `full_hash`: the whole hash (format
    versions 1 to 3) or its first BUILD_BYTES (version 4)."""
    return len(build) in (BUILD_BYTES, len(full_hash)) and full_hash[: len(build)] == build


def build_hash(root: Path) -> bytes | None:
    """The package hash a folder's model.json declares (files not verified), None if unreadable."""
    try:
        return package_hash(json.loads((root / "model.json").read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def declared_builds(root: Path) -> list[bytes]:
    """The builds a folder's package decodes, as its model.json declares them (files not
    verified): its own hash, then its `decodes_builds`."""
    own = build_hash(root)
    if own is None:
        return []
    try:
        earlier = json.loads((root / "model.json").read_text()).get("decodes_builds", [])
        return [own, *(bytes.fromhex(h) for h in earlier)]
    except (OSError, ValueError, TypeError, AttributeError):
        return [own]


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

    def is_build(self, build: bytes) -> bool:
        """`build` names this package: its hash, or the first BUILD_BYTES of it (format 4)."""
        return names_build(build, self.hash)

    def decodes(self, build: bytes) -> bool:
        """This build, or an earlier build whose decoding it repeats bit for bit (`lsic upgrade`
        changed only the analysis)."""
        earlier = (bytes.fromhex(h) for h in self.meta.get("decodes_builds", []))
        return self.is_build(build) or any(names_build(build, h) for h in earlier)

    @property
    def encode_only(self) -> bool:
        """An edge install's copy: the int8 analysis and the tables, no synthesis."""
        return not self.path("synthesis.fp32.onnx").is_file()

    def require_decoder(self) -> None:
        """Raise ModelError when this copy of the package cannot run the synthesis."""
        if self.encode_only:
            raise ModelError(
                f"model {self.id}: its decoder files are not installed here (an edge install carries only the "
                "encoder); install the models distribution (pip install ./shared/models) to decode"
            )

    @property
    def decode_only(self) -> bool:
        """A retired build: it decodes its bitstreams but has no analysis transform."""
        return "retired" in self.meta

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
    def context_layers(self) -> list[IntLayer]:
        """The integer checkerboard context (lsic.codec.entropy.context); empty without one."""
        return layers_from_arrays(self.arrays, prefix="cx")

    @cached_property
    def latent_codec(self) -> LatentCodec:
        a = self.arrays
        z = TableSet(a["z_freqs"], a["z_lengths"], a["z_origins"])
        y = TableSet(a["y_freqs"], a["y_lengths"], -((a["y_lengths"].astype(np.int64) - 2) // 2))
        return LatentCodec(z, y)

    @cached_property
    def temporal(self) -> TemporalPrior | None:
        """The temporal prior of predicted tiles (lsic.codec.entropy.temporal); None without one."""
        return TemporalPrior.from_arrays(self.arrays)

    def temporal_of(self, build: bytes) -> TemporalPrior | None:
        """The temporal prior predicted tiles of `build` were coded with: this build's own, none
        for an earlier build it decodes (a prior is only ever added to a build that had none;
        refitting one retires it, lsic.codec.networks.temporal_fit)."""
        return self.temporal if self.is_build(build) else None

    @cached_property
    def scale_index(self) -> ScaleIndexer:
        """Scale (fixed point) -> table index, lsic.codec.entropy.int_hyper.ScaleIndexer."""
        return ScaleIndexer(self.arrays["scale_thresholds_fx"].astype(np.int64))

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
    retired = meta.get("retired")
    # A retired build keeps the hash table of its full package (the hash its bitstreams carry)
    # and verifies the decode-only files it kept against their own table.
    kept = retired.get("files", {}) if isinstance(retired, dict) else hashes
    # A current package is complete, or an edge install's encode-only copy (no synthesis).
    complete = retired or (root / "synthesis.fp32.onnx").is_file()
    for name in (DECODE_FILES if retired else FILES) if complete else ENCODE_FILES:
        p = root / name
        if not p.is_file():
            raise ModelError(f"model {meta.get('id', root.name)}: missing file {name}")
        if kept.get(name) != sha256_file(p):
            raise ModelHashError(f"model {meta.get('id', root.name)}: {name} does not match its hash in model.json")
    return ModelPackage(root=root, meta=meta, hash=package_hash(hashes))


_LOADED: dict[tuple[str, bytes | None, str], ModelPackage] = {}


def load_package(model: str | Path, build: bytes | None = None) -> ModelPackage:
    """Load a package by id (search path) or by folder path; cached per process and search path.

    build: the package hash a bitstream carries. The current package is taken when it matches,
    else the retired build with that hash; ModelHashError when neither is installed.
    """
    key = (str(model), build, os.environ.get("LSIC_MODELS", ""))  # an id means another package on another path
    if key in _LOADED:
        return _LOADED[key]
    p = Path(model)
    if (p / "model.json").is_file():
        pkg = load_package_dir(p)
    elif build is not None:
        pkg = _load_build(str(model), build)
    else:
        for d in search_dirs():
            if (d / str(model) / "model.json").is_file():
                pkg = load_package_dir(d / str(model))
                break
        else:
            known = ", ".join(available_models()) or "none installed"
            raise UnknownModelError(f"unknown model '{model}' (available: {known})")
    if build is not None and not pkg.decodes(build):
        raise ModelHashError(f"bitstream was made by a different build of model '{pkg.id}' (hash mismatch)")
    _LOADED[key] = pkg
    return pkg


def package_for_header(header: Container) -> ModelPackage:
    """The build a bitstream names, checked against the bitstream: its quality is one of the
    build's operating points and its format version is the one the build writes."""
    pkg = load_package(header.model_id, header.model_hash)
    if not 1 <= header.quality <= pkg.n_rates:
        raise OperatingPointError(f"bitstream quality {header.quality} is not an operating point of {header.model_id}")
    if header.quality_map is not None and int(header.quality_map.max()) > max_map_level(pkg.n_rates):
        raise OperatingPointError(f"bitstream quality map holds a level above the top quality of {header.model_id}")
    if header.two_pass != bool(pkg.context_layers):
        kind = "a two-pass (context)" if pkg.context_layers else "a one-pass (hyperprior)"
        raise BitstreamError(f"format version {header.version} does not match {kind} model '{header.model_id}'")
    return pkg


def _load_build(model_id: str, build: bytes) -> ModelPackage:
    retired = retired_dirs(model_id)
    try:
        current = load_package(model_id)
    except UnknownModelError:
        if not retired:
            raise
        current = None
    if current is not None and current.decodes(build):
        return current
    for root in retired:
        if any(names_build(build, full) for full in declared_builds(root)):
            return load_package_dir(root)
    installed = [b.hex()[:16] for b in ([current.hash] if current else []) + [build_hash(r) for r in retired] if b]
    raise ModelHashError(
        f"bitstream was made by build {build.hex()[:16]} of model '{model_id}', which is not installed "
        f"(hash mismatch; installed builds: {', '.join(installed)}; a retired build goes in a models folder's {RETIRED_DIR}/)"
    )
