"""Shared fixtures. Reference data (Kodak, the surveillance clip) come from ../shared/data beside
the repository; the product itself never needs them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LSIC_SHARED_DATA", REPO.parent / "shared" / "data"))


def has_torch() -> bool:
    try:
        import torch  # noqa: F401

        return True
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    if not has_torch():
        skip = pytest.mark.skip(reason="needs PyTorch (cloud/train extras); this is the edge-only environment")
        for item in items:
            if "torch" in item.keywords:
                item.add_marker(skip)


@pytest.fixture()
def small_disk(tmp_path):
    """A 24 MiB tmpfs: a disk that can really fill up (skipped where mounting is not allowed)."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture(scope="session")
def kodak() -> list[Path]:
    folder = SHARED_DATA / "eval" / "kodak"
    files = sorted(folder.glob("*.png"))
    if not files:
        pytest.skip(f"Kodak images not found in {folder}")
    return files


@pytest.fixture(scope="session")
def video() -> Path:
    path = SHARED_DATA / "video" / "campus_480x360_10fps.avi"
    if not path.is_file():
        pytest.skip(f"surveillance clip not found at {path}")
    return path


@pytest.fixture(scope="session")
def encoder():
    from lsic.codec.encoder import Encoder

    return Encoder("default", threads=2)


@pytest.fixture(scope="session")
def decoder():
    from lsic.codec.decoder import Decoder

    return Decoder(backend="onnx", threads=2)


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def natural_image(h: int, w: int) -> np.ndarray:
    """A deterministic photo-like test image of any size (from scikit-image's samples)."""
    import cv2
    from skimage import data

    base = data.astronaut()
    return (
        np.ascontiguousarray(cv2.resize(base, (w, h), interpolation=cv2.INTER_AREA))
        if (h, w) != base.shape[:2]
        else base
    )
