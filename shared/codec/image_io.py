"""Reading and writing images as 8-bit RGB arrays, with specific errors for what we refuse."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from lsic.codec.errors import InputImageError, UsageError

log = logging.getLogger("lsic.image")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def read_input(path: str | Path) -> bytes:
    """A command's input file, with a specific error for a missing file or a folder."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: is a folder, not a file")
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    return path.read_bytes()


def check_writable(path: str | Path) -> Path:
    """An output image path whose format can be written, checked before any work is done."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(f"{path}: cannot write {path.suffix or 'extension-less'} images; use one of "
                         + ", ".join(IMAGE_SUFFIXES))
    if path.is_dir():
        raise UsageError(f"{path}: is a folder; name an image file")
    return path


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder in name order (the order frames are sent in)."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def to_rgb8(img: np.ndarray, source: str = "image", quiet: bool = False) -> np.ndarray:
    """Normalize a decoded array (H,W), (H,W,1|3|4), uint8, to contiguous RGB uint8.

    Grayscale and RGBA are converted with a notice; other depths are refused, since silently
    rescaling 16-bit data would lose what the user asked to keep.
    """
    if img.size == 0:
        raise InputImageError(f"{source}: empty image")
    if img.dtype != np.uint8:
        raise InputImageError(f"{source}: {img.dtype} samples are not supported (8-bit only)")
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        if not quiet:
            log.warning("%s: grayscale converted to RGB", source)
        return np.ascontiguousarray(np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2))
    if img.ndim == 3 and img.shape[2] == 4:
        if not quiet:
            log.warning("%s: alpha channel dropped", source)
        return np.ascontiguousarray(img[:, :, :3])
    if img.ndim == 3 and img.shape[2] == 3:
        return np.ascontiguousarray(img)
    raise InputImageError(f"{source}: unsupported layout {img.shape}")


def read_rgb(path: str | Path, quiet: bool = False) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB."""
    path = Path(path)
    if path.is_dir():
        raise InputImageError(f"{path}: is a folder, not an image file")
    if not path.is_file():
        raise InputImageError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputImageError(f"{path}: empty file")
    return decode_image(np.fromfile(path, dtype=np.uint8), str(path), quiet=quiet)


def decode_image(data: bytes | np.ndarray, source: str = "image", quiet: bool = False) -> np.ndarray:
    """An encoded image (PNG, JPEG, ...) held in memory as (H, W, 3) uint8 RGB."""
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputImageError(f"{source}: not a readable image")
    if img.ndim == 3 and img.shape[2] >= 3:
        code = cv2.COLOR_BGRA2RGBA if img.shape[2] == 4 else cv2.COLOR_BGR2RGB
        img = cv2.cvtColor(img, code)
    return to_rgb8(img, source, quiet=quiet)


def read_folder(folder: Path, min_side: int = 0) -> list[np.ndarray]:
    """Every image of a folder at least `min_side` pixels on its short side, decoded once (training
    crops and calibration crops are then cut from memory)."""
    images = [img for img in (read_rgb(p, quiet=True) for p in list_images(folder)) if min(img.shape[:2]) >= min_side]
    if not images:
        raise UsageError(f"no usable images (at least {min_side} px a side) in {folder}")
    return images


def encode_image(rgb: np.ndarray, suffix: str = ".png") -> bytes:
    """Encode RGB uint8 to an image file format chosen by suffix."""
    ok, buf = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputImageError(f"cannot write images of type {suffix}")
    return buf.tobytes()


def write_rgb(path: str | Path, rgb: np.ndarray) -> None:
    """Write RGB uint8 to a file, format by extension (PNG, JPEG, ...)."""
    path = Path(path)
    path.write_bytes(encode_image(rgb, path.suffix.lower() or ".png"))
