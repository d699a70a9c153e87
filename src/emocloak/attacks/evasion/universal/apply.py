"""Applying a universal perturbation: resized to each face box and added; no model query."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from emocloak.attacks.base import paste
from emocloak.attacks.evasion.universal.perturbation import UniversalPerturbation
from emocloak.attacks.transforms import resize
from emocloak.faces.detect import Box, crop

resize_delta = resize  # (N, C, H, W) bilinear, antialiased when shrinking, as the recognizers resize crops


def _pixel_delta(up: UniversalPerturbation, faces: np.ndarray) -> np.ndarray:
    """delta resized to faces (N, h, w, 3) uint8, under each face's budget if it has one; 0-255 units."""
    h, w = faces.shape[1:3]
    d = resize_delta(up.delta[None], h, w)
    if up.budget is not None:
        x = torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2).float().div(255)
        d = d / up.eps * up.budget.at_face_scale(x)
    return (d.permute(0, 2, 3, 1) * 255).numpy().astype(np.float32)


def _add(pixels: np.ndarray, d: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels.astype(np.float32) + d), 0, 255).astype(np.uint8)


def apply_universal(image: np.ndarray, up: UniversalPerturbation, boxes: Sequence[Box]) -> np.ndarray:
    """Add delta to each face box of an RGB uint8 photo (clipped at its edges); no model query.

    Every patch is computed from the original pixels, so where boxes overlap the change is
    one face's delta (the later box's), never a sum: |change| <= eps * 255 + 0.5 everywhere.
    """
    out = image
    for b in boxes:
        face = crop(image, b)
        out = paste(out, b, _add(face, _pixel_delta(up, face[None])[0]))
    return out.copy() if out is image else out


def apply_universal_batch(faces: np.ndarray, up: UniversalPerturbation) -> np.ndarray:
    """(N, H, W, 3) uint8 faces of one size, cloaked whole-frame: one resize, one vectorised add."""
    return _add(faces, _pixel_delta(up, faces))
