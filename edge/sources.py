"""Frame sources through OpenCV: camera index, video file, RTSP/HTTP URL, image folder or glob,
and the built-in demo source (a simulated drone pass over sample images shipped with
scikit-image). Every frame carries its UTC capture time."""

from __future__ import annotations

import glob
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lsic.codec.errors import InputImageError
from lsic.codec.image_io import IMAGE_SUFFIXES, read_rgb
from lsic.codec.sample_frames import builtin_frames
from lsic.edge import metrics

log = logging.getLogger("lsic.edge.source")
RECONNECT_S = (0.5, 30.0)  # first and longest wait between attempts to reopen a lost live source
NETWORK_TIMEOUT_MS = 10_000  # a network source silent this long counts as lost


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


def _capture(target: int | str) -> cv2.VideoCapture:
    """An OpenCV capture that gives up on a silent network source instead of blocking for ever."""
    if isinstance(target, str) and "://" in target:
        return cv2.VideoCapture(target, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS,
                                                         cv2.CAP_PROP_READ_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS])
    return cv2.VideoCapture(target)


def _video_frames(target: int | str, name: str, stop: threading.Event) -> Iterator[np.ndarray]:
    """Frames of a video file to its end, or of a camera or stream for as long as the agent runs:
    a live source that stops delivering (an unplugged camera, a dropped RTSP link) is opened again
    with backoff. Only a source that never opened is an error."""
    cap = _capture(target)
    if not cap.isOpened():
        cap.release()
        raise InputImageError(f"cannot open video source {name}")
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    live = not 0 < count < 1e12  # cameras and streams have no frame count (OpenCV says -1, 0 or -2**63)
    try:
        while True:
            ok, bgr = cap.read()
            if ok:
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                continue
            cap.release()
            if not live:
                return
            cap = _reopen(target, name, stop)
            if cap is None:
                return
    finally:
        if cap is not None:
            cap.release()


def _reopen(target: int | str, name: str, stop: threading.Event) -> cv2.VideoCapture | None:
    """The live source opened again, waiting RECONNECT_S[0] doubling to RECONNECT_S[1] between
    tries; None once the agent stops."""
    metrics.SOURCE_RECONNECTS.inc()
    wait, t0 = RECONNECT_S[0], time.monotonic()
    log.warning("live source stopped delivering frames; reconnecting", extra={"source": name})
    while not stop.wait(wait):
        cap = _capture(target)
        if cap.isOpened():
            log.info("live source reconnected", extra={"source": name, "after_s": round(time.monotonic() - t0, 1)})
            return cap
        cap.release()
        wait = min(2 * wait, RECONNECT_S[1])
        log.warning("live source still unavailable", extra={"source": name, "retry_in_s": wait})
    return None


def _image_files(files: list[Path]) -> Iterator[np.ndarray]:
    """The images of a folder or glob in order; one that cannot be read is skipped with an error
    (counted in lsic_edge_frames_dropped_total{reason="unreadable"}), not the end of the run."""
    for f in files:
        try:
            yield read_rgb(f)
        except InputImageError as exc:
            metrics.FRAMES_DROPPED.labels("unreadable").inc()
            log.error("image skipped", extra={"file": str(f), "reason": str(exc)})


def raw_frames(source: str, stop: threading.Event | None = None) -> Iterator[np.ndarray]:
    """RGB frames of a source string, in order, until it ends or `stop` is set."""
    stop = stop or threading.Event()
    if source == "builtin":
        yield from builtin_frames()
        return
    if source.isdigit():
        yield from _video_frames(int(source), f"camera {source}", stop)
        return
    if "://" in source:
        yield from _video_frames(source, source, stop)
        return
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    elif any(ch in source for ch in "*?["):
        files = [Path(p) for p in sorted(glob.glob(source)) if Path(p).suffix.lower() in IMAGE_SUFFIXES]
    elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        yield read_rgb(path)
        return
    elif path.is_file():
        yield from _video_frames(str(path), str(path), stop)
        return
    else:
        raise InputImageError(f"source {source!r} is not a camera index, URL, video file, image folder or glob")
    if not files:
        raise InputImageError(f"no images in {source}")
    yield from _image_files(files)


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


def frames(source: str, opts: SourceOptions, stop: threading.Event | None = None) -> Iterator[Frame]:
    """Frames with capture times, cropped/resized and paced to max_fps (or, with file_rate, a
    video file's own frame rate), until the source ends or `stop` is set."""
    index = 0
    fps = opts.max_fps if opts.max_fps > 0 else (file_fps(source) if opts.file_rate else 0.0)
    interval = 1.0 / fps if fps > 0 else 0.0
    next_due = time.monotonic()
    while True:
        start = index
        for rgb in raw_frames(source, stop):
            if interval:
                delay = next_due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_due = max(next_due + interval, time.monotonic() - interval)
            if opts.crop:
                x, y, w, h = opts.crop
                if x + w > rgb.shape[1] or y + h > rgb.shape[0] or not (w and h):
                    raise InputImageError(f"--crop {x},{y},{w},{h} is not inside the {rgb.shape[1]}x{rgb.shape[0]} frame")
                rgb = rgb[y : y + h, x : x + w]
            if opts.resize:
                rgb = cv2.resize(rgb, opts.resize, interpolation=cv2.INTER_AREA)
            yield Frame(np.ascontiguousarray(rgb), time.time_ns() // 1000, index)
            index += 1
        if index == 0 and not (stop and stop.is_set()):
            raise InputImageError(f"no readable frames in {source}")
        if not opts.loop or index == start:  # a pass with nothing in it is not repeated
            return
