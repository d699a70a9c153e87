"""dlib's 68-point shape predictor (iBUG 300-W layout), loaded from `face-recognition-models`."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from emocloak.faces.detect import DEFAULT_MARGIN, Box

# iBUG 300-W index ranges, for attention masks and landmark features.
REGIONS = {
    "jaw": range(0, 17),
    "right_brow": range(17, 22),
    "left_brow": range(22, 27),
    "nose": range(27, 36),
    "right_eye": range(36, 42),
    "left_eye": range(42, 48),
    "mouth": range(48, 68),
}


def model_path(name: str = "shape_predictor_68_face_landmarks.dat") -> Path:
    """Path of a model file inside face-recognition-models (its import needs pkg_resources, so find it)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face-recognition-models is not installed: pip install face-recognition-models")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise RuntimeError(f"{path} missing from face-recognition-models")
    return path


@lru_cache(maxsize=1)
def _predictor():
    import dlib

    return dlib.shape_predictor(str(model_path()))


def landmarks(image: np.ndarray, box: Box) -> np.ndarray:
    """(68, 2) float32 x, y landmark positions for the face in `box` of an RGB or gray uint8 image."""
    import dlib

    rect = dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1)
    shape = _predictor()(np.ascontiguousarray(image), rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


# dlib's predictor was trained on faces of ~100-300 px; tiny FER+ crops are upsampled first.
MIN_LANDMARK_SIDE = 160


def inner_box(side: int, margin: float = DEFAULT_MARGIN) -> Box:
    """The detector-style face box inside a square crop made by `square_box` (inverse of its margin and nudge).

    Pre-cropped dataset faces (FER+) are framed like our crops, so the same box serves both.
    """
    b = side / (1 + margin)
    left = (side - b) / 2
    top = left + 0.05 * b
    return Box(round(left), round(top), round(left + b), round(top + b))


def crop_landmarks(crops: Sequence[np.ndarray], margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """(N, 68, 2) landmarks in each square face crop's own pixel coordinates (RGB or gray uint8)."""
    out = np.zeros((len(crops), 68, 2), np.float32)
    for i, c in enumerate(crops):
        side = c.shape[0]
        scale = max(1.0, MIN_LANDMARK_SIDE / side)
        if scale > 1:
            size = round(side * scale)
            c = np.asarray(Image.fromarray(c).resize((size, size), Image.BICUBIC))
        out[i] = landmarks(c, inner_box(c.shape[0], margin)) / scale
    return out


def cache_dir() -> Path:
    """Where derived data (landmarks of a dataset) is kept between runs: $EMOCLOAK_CACHE or ~/.cache/emocloak."""
    path = Path(os.environ.get("EMOCLOAK_CACHE", Path.home() / ".cache" / "emocloak"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def dataset_landmarks(images: np.ndarray, key: str) -> np.ndarray:
    """Landmarks of a stack of pre-cropped faces (N, H, W[, 3]), computed once and cached on disk under `key`.

    The key must name the data and its order (e.g. "ferplus-train-<n>"); the cache is checked by count.
    """
    path = cache_dir() / f"landmarks-{key}.npy"
    if path.is_file():
        cached = np.load(path)
        if len(cached) == len(images):
            return cached
    from emocloak.progress import bar

    with bar() as progress:
        starts = progress.track(range(0, len(images), 512), description="dlib landmarks of the faces (cached)")
        chunks = [crop_landmarks(images[i : i + 512]) for i in starts]
    pts = np.concatenate(chunks) if chunks else np.zeros((0, 68, 2), np.float32)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, pts)
    tmp.replace(path)
    return pts
