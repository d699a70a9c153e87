"""Perceptual metrics: the numbers reports quote."""

import numpy as np


def test_ssim_matches_skimage_float64():
    from skimage.metrics import structural_similarity

    from emocloak.metrics.perceptual import ssim

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    ref = structural_similarity(a, b, channel_axis=2, data_range=255)
    assert abs(ssim(a, b) - ref) < 1e-6 and ssim(a, a) == 1.0
    assert abs(ssim(a[..., 0], b[..., 0]) - structural_similarity(a[..., 0], b[..., 0], data_range=255)) < 1e-6
