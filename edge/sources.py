"""Frame sources through OpenCV: camera index, video file, RTSP/HTTP URL, image folder or glob,
and the built-in demo source (a simulated drone pass over sample images shipped with
scikit-image). Every frame carries its UTC capture time."""

from __future__ import annotations

import glob
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lsic.codec.errors import InputImageError
from lsic.codec.image_io import IMAGE_SUFFIXES, read_rgb
from lsic.codec.sample_frames import builtin_frames

log = logging.getLogger("lsic.edge.source")


@dataclass
class Frame:
    rgb: np.ndarray
    capture_time_us: int
    index: int


@dataclass
class SourceOptions:
    max_fps: float = 0.0  # 0: as fast as the source gives frames
    resize: tuple[int, int] | None = None  # (width, height)
    crop: tuple[int, int, int, int] | None = None  # x, y, w, h (applied before resize)
    loop: bool = False  # restart files/folders at the end
    # A video file read at its own frame rate, as a camera delivers it (rate control budgets in
    # real time: a file read faster than it plays would spend a second's bits in a fraction of one)
    file_rate: bool = False


def _video_frames(cap: cv2.VideoCapture, name: str) -> Iterator[np.ndarray]:
    if not cap.isOpened():
        raise InputImageError(f"cannot open video source {name}")
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def raw_frames(source: str) -> Iterator[np.ndarray]:
    """RGB frames of a source string, in order."""
    if source == "builtin":
        yield from builtin_frames()
        return
    if source.isdigit():
        yield from _video_frames(cv2.VideoCapture(int(source)), f"camera {source}")
        return
    if "://" in source:
        yield from _video_frames(cv2.VideoCapture(source), source)
        return
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    elif any(ch in source for ch in "*?["):
        files = [Path(p) for p in sorted(glob.glob(source)) if Path(p).suffix.lower() in IMAGE_SUFFIXES]
    elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        files = [path]
    elif path.is_file():
        yield from _video_frames(cv2.VideoCapture(str(path)), str(path))
        return
    else:
        raise InputImageError(f"source {source!r} is not a camera index, URL, video file, image folder or glob")
    if not files:
        raise InputImageError(f"no images in {source}")
    for f in files:
        yield read_rgb(f)


def is_video_source(source: str) -> bool:
    """A camera, a stream or a video file: consecutive frames of one scene, worth temporal coding
    (image folders and the built-in moving drone pass are coded frame by frame)."""
    if source.isdigit() or "://" in source:
        return True
    path = Path(source)
    return source != "builtin" and path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES


def file_fps(source: str) -> float:
    """The frame rate a video file declares, 0 for anything else (cameras, streams, images)."""
    path = Path(source)
    if source == "builtin" or source.isdigit() or "://" in source or not path.is_file():
        return 0.0
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return 0.0
    cap = cv2.VideoCapture(str(path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return fps if 0 < fps < 1000 else 0.0


def frames(source: str, opts: SourceOptions) -> Iterator[Frame]:
    """Frames with capture times, cropped/resized and paced to max_fps (or, with file_rate, a
    video file's own frame rate)."""
    index = 0
    fps = opts.max_fps if opts.max_fps > 0 else (file_fps(source) if opts.file_rate else 0.0)
    interval = 1.0 / fps if fps > 0 else 0.0
    next_due = time.monotonic()
    while True:
        for rgb in raw_frames(source):
            if interval:
                delay = next_due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_due = max(next_due + interval, time.monotonic() - interval)
            if opts.crop:
                x, y, w, h = opts.crop
                rgb = rgb[y : y + h, x : x + w]
            if opts.resize:
                rgb = cv2.resize(rgb, opts.resize, interpolation=cv2.INTER_AREA)
            yield Frame(np.ascontiguousarray(rgb), time.time_ns() // 1000, index)
            index += 1
        if not opts.loop:
            return
