"""Applying a universal perturbation: resized to each face box and added; no model query."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emocloak.attacks.base import paste
from emocloak.attacks.evasion.universal.perturbation import UniversalPerturbation
from emocloak.attacks.transforms import resize
from emocloak.faces.detect import Box, crop

resize_delta = resize  # (N, C, H, W) bilinear, antialiased when shrinking, as the recognizers resize crops


def _pixel_delta(up: UniversalPerturbation, h: int, w: int) -> np.ndarray:
    """delta resized to (h, w), as (h, w, 3) float32 in 0-255 units."""
    return (resize_delta(up.delta[None], h, w)[0].permute(1, 2, 0) * 255).numpy().astype(np.float32)


def _add(pixels: np.ndarray, d: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels.astype(np.float32) + d), 0, 255).astype(np.uint8)


def apply_universal(image: np.ndarray, up: UniversalPerturbation, boxes: Sequence[Box]) -> np.ndarray:
    """Add delta to each face box of an RGB uint8 photo (clipped at its edges); no model query.

    Every patch is computed from the original pixels, so where boxes overlap the change is
    one face's delta (the later box's), never a sum: |change| <= eps * 255 + 0.5 everywhere.
    """
    out = image
    for b in boxes:
        out = paste(out, b, _add(crop(image, b), _pixel_delta(up, b.height, b.width)))
    return out.copy() if out is image else out


def apply_universal_batch(faces: np.ndarray, up: UniversalPerturbation) -> np.ndarray:
    """(N, H, W, 3) uint8 faces of one size, cloaked whole-frame: one resize, one vectorised add."""
    return _add(faces, _pixel_delta(up, faces.shape[1], faces.shape[2]))
