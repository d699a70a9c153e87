"""How much a cloak changes a photo: SSIM and PSNR (scikit-image), SSIMULACRA 2, L-inf and L2 norms."""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from emocloak.faces.detect import Box, crop


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two RGB uint8 images (Wang et al. 2004, 7x7 window, per channel, averaged); NaN below 7x7."""
    if min(a.shape[:2]) < 7:
        return float("nan")
    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    if np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(a, b, data_range=255))


def ssimulacra2(a: np.ndarray, b: np.ndarray) -> float:
    """SSIMULACRA 2 (the `ssimulacra2` package) of RGB uint8 `b` against `a`: built to match human
    ratings; 100 = identical, about 80 = a JPEG-75 re-save of a photo, below 50 visibly damaged."""
    import io

    from PIL import Image
    from ssimulacra2 import compute_ssimulacra2

    if min(a.shape[:2]) < 8:
        return float("nan")
    files = []
    for im in (a, b):
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, "PNG")
        buf.seek(0)
        files.append(buf)
    return float(compute_ssimulacra2(*files))


def image_distances(original: np.ndarray, cloaked: np.ndarray, face: Box | None = None) -> dict[str, float]:
    """All the per-image quality numbers reports show; face SSIM only where a face box is known."""
    diff = (cloaked.astype(np.float64) - original.astype(np.float64)) / 255.0
    out = {
        "ssim": ssim(original, cloaked),
        "psnr": psnr(original, cloaked),
        "linf": float(np.abs(diff).max()) * 255.0,  # in /255 units, as budgets are quoted
        "l2": float(np.sqrt((diff**2).sum())),
    }
    if face is not None:
        out["ssim_face"] = ssim(crop(original, face), crop(cloaked, face))
    return out
