"""The one recognizer interface that attacks, defences and metrics talk to.

A recognizer owns its whole pipeline: find the face, crop a square, convert to
gray (unless the model reads colour), resize, normalise, classify. Two entry points:

* `predict_proba(images)`: photos (or pre-cropped faces) of any size in,
  probabilities over `LABELS` out. What users and black-box attacks see.
* `logits(crops)`: a differentiable path from the RGB pixels of fixed face crops
  (N, 3, H, W) in [0, 1] to logits over `LABELS`, and `features(crops)` to the
  penultimate layer. What white-box and feature-space attacks use.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emocloak.data.images import ImageLike, as_rgb
from emocloak.errors import NoFaceError
from emocloak.faces.detect import DEFAULT_MARGIN, Box, crop, detect_faces, square_box
from emocloak.labels import LABELS, canonical

# Logit given to a canonical class the model cannot predict: softmax gives exactly 0, gradients stay finite.
MISSING_LOGIT = -1e4
GRAY = (0.299, 0.587, 0.114)  # ITU-R 601, as OpenCV and PIL


@dataclass(frozen=True)
class Face:
    """One face found in a photo: the detector's box and the square crop box the model sees."""

    box: Box
    crop_box: Box


Detector = Callable[[np.ndarray], list[Box]]
_FACE_CACHE: OrderedDict[tuple[Callable, bytes], list[Face]] = OrderedDict()  # see Recognizer.faces


def dlib_faces(image: np.ndarray, margin: float = DEFAULT_MARGIN) -> list[Face]:
    return [Face(b, square_box(b, image.shape, margin)) for b in detect_faces(image)]


class Recognizer:
    """A face-emotion classifier behind the common interface (see module docstring)."""

    # False where no gradient reaches the pixels (the landmark pipeline): white-box attacks refuse it.
    differentiable: bool = True

    def __init__(
        self,
        name: str,
        model: nn.Module,
        class_names: Sequence[str],
        input_size: int,
        find_faces: Callable[[np.ndarray], list[Face]] = dlib_faces,
        antialias: bool = True,
        color: bool = False,
    ) -> None:
        self.name = name
        self.color = color
        self.model = model.eval()
        self.input_size = input_size
        self.find_faces = find_faces
        self.antialias = antialias
        # model output column -> canonical column, by name
        self._index = torch.tensor([LABELS.index(canonical(c)) for c in class_names])
        for p in self.model.parameters():
            p.requires_grad_(False)

    def __repr__(self) -> str:
        mode = "RGB" if self.color else "gray"
        return f"Recognizer({self.name!r}, input {self.input_size}x{self.input_size} {mode})"

    # --- differentiable path -------------------------------------------------
    def to_input(self, crops: torch.Tensor) -> torch.Tensor:
        """RGB crops (N, 3, H, W) in [0, 1] -> the model's input (N, C, S, S): gray, or RGB if `color`."""
        if self.color:
            x = crops
        else:
            w = torch.tensor(GRAY, dtype=crops.dtype, device=crops.device).view(1, 3, 1, 1)
            x = (crops * w).sum(1, keepdim=True)
        s = self.input_size
        if x.shape[-2:] != (s, s):
            down = x.shape[-1] > s
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=self.antialias and down)
        return x

    def _to_canonical(self, out: torch.Tensor) -> torch.Tensor:
        full = out.new_full((out.shape[0], len(LABELS)), MISSING_LOGIT)
        return full.index_copy(1, self._index.to(out.device), out)

    def logits(self, crops: torch.Tensor) -> torch.Tensor:
        """Differentiable: RGB face crops in [0, 1] -> logits over LABELS."""
        return self._to_canonical(self.model(self.to_input(crops)))

    def features(self, crops: torch.Tensor) -> torch.Tensor:
        """Differentiable: RGB face crops in [0, 1] -> penultimate features."""
        return self.model.features(self.to_input(crops))

    def features_and_logits(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable: (features, logits over LABELS), in one pass where the model offers it."""
        if hasattr(self.model, "features_and_logits"):
            f, out = self.model.features_and_logits(self.to_input(crops))
            return f, self._to_canonical(out)
        return self.features(crops), self.logits(crops)

    # --- photo path ----------------------------------------------------------
    def faces(self, image: ImageLike) -> list[Face]:
        """All faces this recognizer's own detector finds in a photo, largest first.

        Memoised per (detector, pixels) and shared by every recognizer with that detector: an
        evaluation or an ensemble cloak reads the same photo through several recognizers, many times.
        """
        rgb = np.ascontiguousarray(as_rgb(image))
        # sha256 has CPU instructions on current x86 and ARM: 22 ms for a 12 MP photo here, blake2b 75 ms
        pixels = hashlib.sha256(memoryview(rgb).cast("B")).digest()
        key = (self.find_faces, rgb.shape, pixels)
        if key not in _FACE_CACHE:
            _FACE_CACHE[key] = self.find_faces(rgb)
            if len(_FACE_CACHE) > 2048:
                _FACE_CACHE.popitem(last=False)
        return _FACE_CACHE[key]

    def face_crop(self, image: ImageLike, detect: bool = True, source: str = "image") -> tuple[np.ndarray, Box]:
        """The RGB crop this recognizer classifies (largest face) and its box in the photo."""
        rgb = as_rgb(image, source)
        if not detect:
            return rgb, Box(0, 0, rgb.shape[1], rgb.shape[0])
        faces = self.faces(rgb)
        if not faces:
            raise NoFaceError(source)
        return crop(rgb, faces[0].crop_box), faces[0].crop_box

    def prepare(self, crops: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 crops of any sizes -> model input batch (N, C, S, S)."""
        return (
            torch.cat([self.to_input(to_tensor(c)) for c in crops])
            if crops
            else torch.zeros(0, 3 if self.color else 1, self.input_size, self.input_size)
        )

    @torch.no_grad()
    def predict_crops(self, crops: Sequence[np.ndarray], batch: int = 256) -> np.ndarray:
        x = self.prepare(crops)
        out = [self._to_canonical(self.model(x[i : i + batch])).softmax(1) for i in range(0, len(x), batch)]
        return torch.cat(out).numpy() if out else np.zeros((0, len(LABELS)), np.float32)

    def predict_proba(
        self,
        images: Sequence[ImageLike],
        detect: bool = True,
        names: Sequence[str] | None = None,
        on_no_face: str = "raise",
    ) -> np.ndarray:
        """(N, len(LABELS)) probabilities of the largest face in each image.

        A photo without a face raises NoFaceError naming it, or, with on_no_face="nan",
        gets a row of NaN so that batch evaluations keep going and count it.
        """
        names = names or [f"image {i}" for i in range(len(images))]
        crops, found = [], []
        for i, (im, n) in enumerate(zip(images, names, strict=True)):
            try:
                crops.append(self.face_crop(im, detect, n)[0])
                found.append(i)
            except NoFaceError:
                if on_no_face == "raise":
                    raise
        probs = np.full((len(images), len(LABELS)), np.nan, np.float32)
        probs[found] = self.predict_crops(crops)
        return probs

    def predict_faces(self, image: ImageLike, source: str = "image") -> list[tuple[Face, np.ndarray]]:
        """Every face in a photo with its probabilities, largest first; NoFaceError if there is none."""
        rgb = as_rgb(image, source)
        faces = self.faces(rgb)
        if not faces:
            raise NoFaceError(source)
        probs = self.predict_crops([crop(rgb, f.crop_box) for f in faces])
        return list(zip(faces, probs, strict=True))

    def predict(self, images: Sequence[ImageLike], detect: bool = True) -> list[str]:
        return [LABELS[i] for i in self.predict_proba(images, detect).argmax(1)]


def clear_face_cache() -> None:
    """Forget every memoised face detection (timing benchmarks measure detection too)."""
    _FACE_CACHE.clear()


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).unsqueeze(0).float().div(255.0)
