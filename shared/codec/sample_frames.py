"""Sample frames for demos and benchmarks: a simulated drone pass over the sample photos that
scikit-image ships. The edge's built-in source streams them, and the cloud's load and chaos
benchmarks encode them, so they live in the codec that both depend on."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import cv2
import numpy as np

from lsic.codec.errors import UsageError


@functools.cache
def _drone_strip(height: int) -> np.ndarray:
    """The panorama the built-in pass flies over, built once per process (a looping source
    must not pay for it again on every pass)."""
    try:
        from skimage import data
    except ImportError as exc:
        raise UsageError("the built-in source needs scikit-image's sample photos: pip install 'lsic[demo]'") from exc

    scenes = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    canvas_h = max(s.shape[0] for s in scenes)
    strip = np.concatenate([cv2.resize(s, (int(s.shape[1] * canvas_h / s.shape[0]), canvas_h)) for s in scenes], axis=1)
    scale = height / canvas_h * 1.25
    return cv2.resize(strip, (int(strip.shape[1] * scale), int(strip.shape[0] * scale)), interpolation=cv2.INTER_AREA)


def builtin_frames(width: int = 640, height: int = 480, count: int = 60) -> Iterator[np.ndarray]:
    """A simulated drone pass: a window gliding across scikit-image's sample photos."""
    strip = _drone_strip(height)
    span_x = strip.shape[1] - width
    span_y = strip.shape[0] - height
    for i in range(count):
        t = i / max(1, count - 1)
        x = int(t * span_x)
        y = int((0.5 + 0.5 * np.sin(2 * np.pi * t)) * span_y)
        yield np.ascontiguousarray(strip[y : y + height, x : x + width])
