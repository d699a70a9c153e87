"""Face finding on photos with dlib's HOG detector, and the square crop boxes recognizers use."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# dlib's HOG box runs from the brows to the lip-chin line; FER2013 crops show forehead and chin too.
DEFAULT_MARGIN = 0.35
_DETECT_MAX_SIDE = 640  # detect on a downscaled copy of large photos: HOG cost grows with pixels
# HOG scores below this are mostly texture (a shirt fold scored 0.07 on the sample photo; real faces > 0.5).
MIN_SCORE = 0.3
# `confirmed` looks at a candidate resized to about this side, where HOG's 80 px window sees the whole face.
CONFIRM_SIDE = 100


@dataclass(frozen=True)
class Box:
    """A face box in photo pixels: left, top, right, bottom (right/bottom exclusive)."""

    left: int
    top: int
    right: int
    bottom: int
    score: float = 0.0

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def as_list(self) -> list[int]:
        return [self.left, self.top, self.right, self.bottom]

    def scaled(self, k: float) -> Box:
        """The same box in a copy of the photo resized by k."""
        return Box(round(self.left * k), round(self.top * k), round(self.right * k), round(self.bottom * k), self.score)

    def shifted(self, dx: int, dy: int) -> Box:
        return Box(self.left + dx, self.top + dy, self.right + dx, self.bottom + dy, self.score)


def iou(a: Box, b: Box) -> float:
    """Intersection over union: how far two detectors' boxes are the same face."""
    w = max(0, min(a.right, b.right) - max(a.left, b.left))
    h = max(0, min(a.bottom, b.bottom) - max(a.top, b.top))
    inter = w * h
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


@lru_cache(maxsize=1)
def _hog():
    import dlib

    return dlib.get_frontal_face_detector()


def detect_faces(image: np.ndarray, upsample: int | None = None, min_score: float = MIN_SCORE) -> list[Box]:
    """All frontal faces in an RGB uint8 photo, largest first.

    Small photos are upsampled once so faces down to ~40 px are found; large ones are
    searched on a copy whose long side is at most 640 px.
    """
    h, w = image.shape[:2]
    small, scale = downscaled(image, _DETECT_MAX_SIDE)
    if upsample is None:
        upsample = 1 if max(small.shape[:2]) < 400 else 0
    rects, scores, _ = _hog().run(np.ascontiguousarray(small), upsample, min_score)
    boxes = [_from_rect(r, scale, float(s)) for r, s in zip(rects, scores, strict=True)]
    boxes = [Box(max(0, b.left), max(0, b.top), min(w, b.right), min(h, b.bottom), b.score) for b in boxes]
    return sorted(boxes, key=lambda b: b.width * b.height, reverse=True)


def confirmed(image: np.ndarray, box: Box) -> bool:
    """Does dlib's HOG see a face where another detector found one in a large photo?

    Detectors searching the millions of windows of a large photo find faces in texture, each its
    own way (fer's Haar cascade found 4 in the sample photo upscaled to 12 MP). A detector of
    another kind (gradient histograms, not Haar features) rarely errs in the same place, so a
    candidate stands only where HOG, on it and half its side around it resized to CONFIRM_SIDE,
    finds about the same box scoring MIN_SCORE, the bar `detect_faces` sets its own faces. Of the
    cascade's candidates in 82 12 MP canvases with 246 pasted TCCE faces, genuine ones scored >= 0.82
    there, those in texture <= -0.34 (benchmarks/results/large_photo_faces.md). ~10 ms a candidate.
    """
    return confirm_score(image, box) >= MIN_SCORE


def confirm_score(image: np.ndarray, box: Box, floor: float = -1.0) -> float:
    """HOG's best score for about `box` (IoU > 0.3) at the scale `confirmed` looks; `floor` if none."""
    g = max(box.width, box.height) // 2
    around = Box(box.left - g, box.top - g, box.right + g, box.bottom + g)
    k = CONFIRM_SIDE / max(box.width, box.height, 1)
    patch = _resize(crop(image, around), k)
    rects, scores, _ = _hog().run(np.ascontiguousarray(patch), 0, floor)
    found = (_from_rect(r, k).shifted(around.left, around.top) for r in rects)
    return max((s for b, s in zip(found, scores, strict=True) if iou(b, box) > 0.3), default=floor)


def _from_rect(r, scale: float, score: float = 0.0) -> Box:
    """A dlib rectangle (inclusive right/bottom) found on a copy resized by `scale`, in the photo's pixels."""
    return Box(
        round(r.left() / scale),
        round(r.top() / scale),
        round((r.right() + 1) / scale),
        round((r.bottom() + 1) / scale),
        score,
    )


def downscaled(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """A copy with its long side at most `max_side` (the photo itself if it fits) and its scale.

    Detectors search large photos on it: their cost grows with the pixels, and faces stay large.
    """
    scale = min(1.0, max_side / max(image.shape[:2]))
    return (image if scale == 1.0 else _resize(image, scale)), scale


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    from PIL import Image

    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR, reducing_gap=2.0))


def square_box(box: Box, shape: tuple[int, ...], margin: float = DEFAULT_MARGIN) -> Box:
    """A square around the face, grown by `margin` of its side and nudged up to include the brow.

    May reach past the photo's edge; `crop` pads with edge pixels there.
    """
    side = round(max(box.width, box.height) * (1 + margin))
    cx = (box.left + box.right) / 2
    cy = (box.top + box.bottom) / 2 - 0.05 * box.height
    left, top = round(cx - side / 2), round(cy - side / 2)
    return Box(left, top, left + side, top + side, box.score)


def crop_padding(box: Box, shape: tuple[int, ...]) -> int:
    """Edge pixels to pad on every side of an (H, W) image so that `box` lies inside it."""
    h, w = shape[:2]
    return max(0, -box.left, -box.top, box.right - w, box.bottom - h)


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    """The pixels inside `box`, edge-padded where the box leaves the photo."""
    pad = crop_padding(box, image.shape)
    if pad:
        widths = ((pad, pad), (pad, pad)) + ((0, 0),) * (image.ndim - 2)
        image = np.pad(image, widths, mode="edge")
    return image[box.top + pad : box.bottom + pad, box.left + pad : box.right + pad]
