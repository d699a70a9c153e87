"""dlib's 68-point shape predictor (iBUG 300-W layout), loaded from `face-recognition-models`."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from emocloak.faces.detect import Box

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
