"""How much a cloak changes a photo: SSIM and PSNR (scikit-image), L-inf and L2 norms."""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from emocloak.faces.detect import Box, crop


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two RGB uint8 images (Wang et al. 2004, 7x7 window, per channel, averaged); NaN below 7x7.

    One channel at a time: the same number as channel_axis=2, with a third of the float64 working
    memory (a 12 MP photo otherwise peaks above 2 GB here).
    """
    if min(a.shape[:2]) < 7:
        return float("nan")
    if a.ndim == 2:
        return float(structural_similarity(a, b, data_range=255))
    return float(np.mean([structural_similarity(a[..., c], b[..., c], data_range=255) for c in range(a.shape[2])]))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    if np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(a, b, data_range=255))


def image_distances(original: np.ndarray, cloaked: np.ndarray, face: Box | None = None) -> dict[str, float]:
    """All the per-image quality numbers reports show; face SSIM only where a face box is known."""
    diff = cloaked.astype(np.int16) - original.astype(np.int16)  # exact, and a quarter of float64's memory
    out = {
        "ssim": ssim(original, cloaked),
        "psnr": psnr(original, cloaked),
        "linf": float(np.abs(diff).max()),  # in /255 units, as budgets are quoted
        "l2": float(np.sqrt(np.square(diff, dtype=np.int32).sum(dtype=np.int64))) / 255.0,
    }
    if face is not None:
        out["ssim_face"] = ssim(crop(original, face), crop(cloaked, face))
    return out
