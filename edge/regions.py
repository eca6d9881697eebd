"""Where a frame matters and what must not leave the device: regions of interest and privacy masks.

Regions of interest raise the quality of the 64x64 blocks they touch (a quality map, format
version 3): configured boxes, blocks that moved since the previous frame, and people found by
OpenCV's HOG people detector. Privacy masks are applied to the pixels before the analysis
transform, irreversibly: faces found by OpenCV's Haar face detector and configured polygons are
pixelated into a few flat cells (or filled flat), so no detail of them is ever encoded. Both
lists of regions travel with the frame (FrameRecord.regions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from lsic.codec.errors import UsageError

Box = tuple[int, int, int, int]
ROI_KINDS = ("boxes", "motion", "people")
MASK_KINDS = ("faces", "polygons")
MASK_METHODS = ("pixelate", "fill")


@dataclass
class Region:
    box: Box
    kind: str  # "box", "motion", "person" (interest) or "face", "polygon" (masked)


def parse_boxes(text: str) -> list[tuple[Box, float]]:
    """"x,y,w,h[:steps];..." -> boxes with their quality steps (default 3)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        box, _, steps = part.partition(":")
        try:
            x, y, w, h = (int(v) for v in box.split(","))
            out.append(((x, y, w, h), float(steps) if steps else 3.0))
        except ValueError:
            raise UsageError(f"expected boxes as x,y,w,h[:steps];..., got {part!r}") from None
    return out


def parse_polygons(text: str) -> list[np.ndarray]:
    """"x,y x,y x,y;..." -> polygons of at least three points."""
    polygons = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        try:
            points = np.array([[int(v) for v in pt.split(",")] for pt in part.split()], dtype=np.int32)
        except ValueError:
            raise UsageError(f"expected polygons as 'x,y x,y x,y;...', got {part!r}") from None
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
            raise UsageError(f"a polygon needs three or more x,y points, got {part!r}")
        polygons.append(points)
    return polygons


def kinds(text: str, allowed: tuple[str, ...], what: str) -> set[str]:
    chosen = {k.strip() for k in text.split(",") if k.strip()}
    if chosen - set(allowed):
        raise UsageError(f"{what}: unknown {', '.join(sorted(chosen - set(allowed)))} (choose from {', '.join(allowed)})")
    return chosen


@dataclass
class InterestFinder:
    """Regions of interest of each frame, with the quality steps they get."""

    sources: set[str]
    boxes: list[tuple[Box, float]] = field(default_factory=list)
    steps: float = 3.0
    motion_threshold: float = 8.0  # mean absolute change of a 64x64 block, 0..255
    detect_every: int = 3  # frames between person detections (boxes held between them)
    _previous: np.ndarray | None = None
    _people: list[Box] = field(default_factory=list)
    _frame: int = 0
    _hog: cv2.HOGDescriptor | None = None

    def find(self, rgb: np.ndarray) -> list[tuple[Region, float]]:
        out = [(Region(b, "box"), s) for b, s in self.boxes] if "boxes" in self.sources else []
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if "motion" in self.sources:
            out += [(Region(b, "motion"), self.steps) for b in self._moving(grey)]
        if "people" in self.sources:
            if self._frame % self.detect_every == 0:
                self._people = self._detect_people(grey)
            out += [(Region(b, "person"), self.steps) for b in self._people]
        self._previous = grey
        self._frame += 1
        return out

    def _moving(self, grey: np.ndarray) -> list[Box]:
        prev, self._previous = self._previous, grey
        if prev is None or prev.shape != grey.shape:
            return []
        h, w = grey.shape
        diff = cv2.absdiff(grey, prev).astype(np.float32)
        rows, cols = -(-h // 64), -(-w // 64)
        padded = np.zeros((rows * 64, cols * 64), np.float32)
        padded[:h, :w] = diff
        means = padded.reshape(rows, 64, cols, 64).mean(axis=(1, 3))
        return [(c * 64, r * 64, 64, 64) for r, c in zip(*np.nonzero(means > self.motion_threshold), strict=True)]

    def _detect_people(self, grey: np.ndarray) -> list[Box]:
        if self._hog is None:
            self._hog = cv2.HOGDescriptor()
            self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        # the detector's window is 64x128 people; small frames are upscaled to find small people
        scale = 2.0 if max(grey.shape) < 800 else 1.0
        img = cv2.resize(grey, None, fx=scale, fy=scale) if scale != 1.0 else grey
        found, weights = self._hog.detectMultiScale(img, winStride=(8, 8), padding=(8, 8), scale=1.05)
        boxes = []
        for (x, y, w, h), wt in zip(found, np.ravel(weights), strict=False):
            if wt > 0.3:
                boxes.append((int(x / scale), int(y / scale), int(w / scale), int(h / scale)))
        return boxes


@dataclass
class PrivacyMasker:
    """Masks applied to a frame's pixels before encoding; what was masked is reported."""

    sources: set[str]
    polygons: list[np.ndarray] = field(default_factory=list)
    method: str = "pixelate"
    _faces: cv2.CascadeClassifier | None = None

    def apply(self, rgb: np.ndarray) -> tuple[np.ndarray, list[Region]]:
        if not self.sources:
            return rgb, []
        out = rgb.copy()
        regions = []
        if "faces" in self.sources:
            for box in self._detect_faces(rgb):
                x, y, w, h = box
                mask = np.zeros(rgb.shape[:2], bool)
                mask[y : y + h, x : x + w] = True
                self._obscure(out, mask)
                regions.append(Region(box, "face"))
        if "polygons" in self.sources:
            for poly in self.polygons:
                mask = np.zeros(rgb.shape[:2], np.uint8)
                cv2.fillPoly(mask, [poly], 1)
                if mask.any():
                    self._obscure(out, mask.astype(bool))
                    x, y, w, h = cv2.boundingRect(poly)
                    regions.append(Region((x, y, w, h), "polygon"))
        return out, regions

    def _detect_faces(self, rgb: np.ndarray) -> list[Box]:
        if self._faces is None:
            self._faces = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        found = self._faces.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(16, 16))
        # a margin around each face: hair and ears identify people too
        h, w = grey.shape
        return [
            (max(0, x - fw // 4), max(0, y - fh // 4), min(w, x + fw + fw // 4) - max(0, x - fw // 4),
             min(h, y + fh + fh // 4) - max(0, y - fh // 4))
            for x, y, fw, fh in (tuple(int(v) for v in f) for f in found)
        ]

    def _obscure(self, img: np.ndarray, mask: np.ndarray) -> None:
        """Irreversible: the masked pixels become a few flat cells (pixelate, three cells across
        the region's short side) or one flat colour (fill)."""
        ys, xs = np.nonzero(mask)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        patch = img[y0:y1, x0:x1]
        if self.method == "fill":
            flat = np.broadcast_to(patch[mask[y0:y1, x0:x1]].mean(axis=0).astype(np.uint8), patch.shape)
        else:
            cell = max(8, min(y1 - y0, x1 - x0) // 3)
            small = cv2.resize(patch, (max(1, (x1 - x0) // cell), max(1, (y1 - y0) // cell)), interpolation=cv2.INTER_AREA)
            flat = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        region = mask[y0:y1, x0:x1]
        patch[region] = flat[region]
