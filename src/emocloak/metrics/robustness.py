"""Summaries over attack records: the numbers robustness reports quote."""

from __future__ import annotations

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
