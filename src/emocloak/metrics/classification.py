"""Accuracy-type metrics over the canonical labels (scikit-learn underneath)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix as _sk_confusion

from emocloak.labels import LABELS


def predicted_labels(probs: np.ndarray) -> np.ndarray:
    """Label index per row of probabilities; -1 where the row is NaN (no face, no landmarks), never a guess."""
    return np.where(np.isnan(probs).any(1), -1, np.nan_to_num(probs).argmax(1))


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(8, 8) counts, rows = true label, columns = prediction, in LABELS order."""
    return _sk_confusion(y_true, y_pred, labels=range(len(LABELS)))


def per_class_recall(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | None]:
    """Recall per label; None where the label never occurs (e.g. contempt in TCCE).

    Support counts every true face, so an unread face (prediction -1: no face, no landmarks) is a miss.
    """
    cm = confusion(y_true, y_pred)
    support = np.bincount(np.asarray(y_true), minlength=len(LABELS))
    return {lab: (float(cm[i, i] / support[i]) if support[i] else None) for i, lab in enumerate(LABELS)}


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else float("nan")
