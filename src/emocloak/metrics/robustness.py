"""Summaries over attack records: the numbers robustness reports quote."""

from __future__ import annotations

import math

import numpy as np

from emocloak.metrics.classification import accuracy


def success(after: np.ndarray, reference: np.ndarray, target: int | None) -> np.ndarray:
    """Per image: targeted = reads as target; untargeted = left the reference reading (face still found)."""
    if target is not None:
        return after == target
    return (after != reference) & (after >= 0) & (reference >= 0)


def summarise(labels: np.ndarray, clean: np.ndarray, after: np.ndarray, target: int | None) -> dict[str, float]:
    """Accuracy before/after and success rates; no face found counts as a wrong reading."""
    ok_before = clean == labels
    return {
        "clean_accuracy": accuracy(labels, clean),
        "attacked_accuracy": accuracy(labels, after),
        "success_rate": float(success(after, clean, target).mean()),
        # of the faces read correctly before, the share read wrongly after
        "success_vs_truth": float((after[ok_before] != labels[ok_before]).mean()) if ok_before.any() else float("nan"),
        "face_lost_rate": float(((after < 0) & (clean >= 0)).mean()),
    }


def describe(values: list[float]) -> dict[str, float]:
    a = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if not len(a):
        return {"mean": float("nan"), "median": float("nan"), "min": float("nan")}
    return {"mean": float(a.mean()), "median": float(np.median(a)), "min": float(a.min())}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion k/n (95% by default): sound near 0 and 1, where robust
    accuracies live, unlike the normal approximation."""
    if n == 0:
        return float("nan"), float("nan")
    p, z2 = k / n, z * z
    mid = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, mid - half), min(1.0, mid + half)


def paired_difference(a: np.ndarray, b: np.ndarray, n_boot: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """Accuracy of a minus that of b on the same faces (per-face 0/1 arrays), with a 95% paired bootstrap
    interval. Pairing removes the faces' own difficulty, so it separates two models that two
    independent Wilson intervals cannot."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if d.ndim != 1 or not len(d):
        raise ValueError("paired_difference needs two equally long, non-empty 1-D arrays")
    idx = np.random.default_rng(seed).integers(0, len(d), (n_boot, len(d)))
    means = d[idx].mean(1)
    return float(d.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def sampled_difference(cheap_all: np.ndarray, strong_sample: np.ndarray) -> dict[str, float]:
    """Accuracy under a strong attack on every face, estimated from a cheap attack on every face and
    the strong one on a random sample (the first n faces of a random order): a difference estimator.

    cheap_all: per face (N), still correct after the cheap attack; strong_sample: the first n faces
    (n <= N; n = N gives the strong attack's own accuracy), still correct after the strong one.
    Estimate = cheap accuracy on N minus the gap on the sample, (faces only the cheap attack left
    correct - faces only the strong one left correct) / n.
    Where the two attacks agree on most faces, this is far tighter than the strong attack's own
    interval on n faces. Interval: 97.5% Wilson intervals of both counts joined (at least 95%).
    """
    cheap, strong = np.asarray(cheap_all, bool), np.asarray(strong_sample, bool)
    n = len(strong)
    if not 0 < n <= len(cheap):
        raise ValueError("sampled_difference needs a non-empty sample no longer than the full run")
    up, down = int((cheap[:n] & ~strong).sum()), int((strong & ~cheap[:n]).sum())
    (up_lo, up_hi), (down_lo, down_hi) = wilson(up, n, 2.241), wilson(down, n, 2.241)
    base = float(cheap.mean())
    return {
        "n_all": len(cheap),
        "n_sample": n,
        "cheap_all": base,
        "only_cheap_correct": up,
        "only_strong_correct": down,
        "acc": base - (up - down) / n,
        "lo": max(0.0, base - (up_hi - down_lo)),
        "hi": min(1.0, base - (up_lo - down_hi)),
    }
