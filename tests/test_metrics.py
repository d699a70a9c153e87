"""Perceptual metrics: the numbers reports quote."""

import numpy as np
import pytest


def test_ssim_matches_skimage_float64():
    from skimage.metrics import structural_similarity

    from emocloak.metrics.perceptual import ssim

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    ref = structural_similarity(a, b, channel_axis=2, data_range=255)
    assert abs(ssim(a, b) - ref) < 1e-6 and ssim(a, a) == 1.0
    assert abs(ssim(a[..., 0], b[..., 0]) - structural_similarity(a[..., 0], b[..., 0], data_range=255)) < 1e-6


def test_ssim_of_a_photo_changed_in_places_equals_the_full_computation():
    """Only tiles near a change are computed; patches on an edge, a corner and across tile borders."""
    from emocloak.metrics.perceptual import TILE, _ssim_full, ssim

    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (3 * TILE + 40, 2 * TILE + 90, 3), dtype=np.uint8)
    b = a.copy()
    for y, x, size in [(0, 0, 30), (TILE - 10, TILE - 5, 40), (a.shape[0] - 5, 100, 5), (400, a.shape[1] - 1, 1)]:
        patch = b[y : y + size, x : x + size]
        patch[:] = np.clip(patch.astype(int) + rng.integers(-40, 41, patch.shape), 0, 255)
    full = _ssim_full(a, b)
    assert full < 0.9999 and abs(ssim(a, b) - full) < 1e-6
    b[:] = np.clip(a.astype(int) + rng.integers(-5, 6, a.shape), 0, 255)  # changed everywhere: one full pass
    assert ssim(a, b) == _ssim_full(a, b)


def test_distances_match_skimage_and_float_formulas():
    from skimage.metrics import peak_signal_noise_ratio

    from emocloak.metrics.perceptual import image_distances, psnr

    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-12, 13, a.shape), 0, 255).astype(np.uint8)
    d = image_distances(a, b)
    diff = (b.astype(np.float64) - a.astype(np.float64)) / 255
    assert abs(d["psnr"] - peak_signal_noise_ratio(a, b, data_range=255)) < 1e-9
    assert d["linf"] == np.abs(diff).max() * 255 and abs(d["l2"] - np.sqrt((diff**2).sum())) < 1e-9
    assert psnr(a, a) == float("inf")


def test_wilson_interval_textbook_values():
    from emocloak.metrics.robustness import wilson

    lo, hi = wilson(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)  # Wilson (1927) / Newcombe (1998), 95%
    assert wilson(0, 32)[0] == 0 and 0.10 < wilson(0, 32)[1] < 0.11  # never below 0 or above 1
    assert wilson(32, 32)[1] == 1


def test_paired_difference_separates_what_pairing_should():
    from emocloak.metrics.robustness import paired_difference, wilson

    rng = np.random.default_rng(0)
    b = rng.random(400) < 0.5
    a = b.copy()
    a[np.flatnonzero(~b)[:24]] = True  # a = b plus 24 more faces right: +6 points, on the same faces
    diff, lo, hi = paired_difference(a, b)
    assert diff == 0.06 and 0.03 < lo < 0.06 < hi < 0.09
    lo_a, _ = wilson(int(a.sum()), 400)
    _, hi_b = wilson(int(b.sum()), 400)
    assert lo_a < hi_b  # independent intervals overlap: they could not tell the two apart
    assert paired_difference(b, b) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        paired_difference(a[:3], b)


def test_sampled_difference_estimates_the_strong_attack_on_all_faces():
    from emocloak.metrics.robustness import sampled_difference, wilson

    rng = np.random.default_rng(1)
    cheap = rng.random(3000) < 0.5
    strong = cheap & (rng.random(3000) > 0.04)  # the strong attack breaks 4% more of the faces
    truth = strong.mean()
    est = sampled_difference(cheap, strong[:200])
    assert est["lo"] <= truth <= est["hi"] and abs(est["acc"] - truth) < 0.02
    lo, hi = wilson(int(strong[:200].sum()), 200)
    assert est["hi"] - est["lo"] < 0.6 * (hi - lo)  # tighter than the strong attack on the sample alone
    exact = sampled_difference(cheap, strong)  # the whole set as the sample: no estimate left
    assert exact["acc"] == pytest.approx(truth)
    with pytest.raises(ValueError):
        sampled_difference(cheap[:10], strong[:20])
