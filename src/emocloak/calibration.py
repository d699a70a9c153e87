"""Post-hoc logit adjustment: per-class offsets on the head's bias so that no main class is ignored.

Adversarial training pulls a model toward the frequent classes (the one-epoch `cnn-faat` reads
1.4% of sad faces as sad), and FER+ is long-tailed (disgust is 0.7% of train). Raising a class's
logit by a constant trades a little accuracy on the others for recall on it (Menon et al. 2021,
"Long-tail learning via logit adjustment", post-hoc form). The offsets are fitted on validation
faces, so test faces stay unseen; the model is unchanged otherwise (the same offset on both flip
views is the same offset on their average).
"""

from __future__ import annotations

import numpy as np
import torch

from emocloak.data.ferplus import FaceSet
from emocloak.labels import LABELS
from emocloak.recognizers.facenet import FaceNet
from emocloak.training import gray_faces_to_tensor

MAIN = [i for i, name in enumerate(LABELS) if name != "contempt"]  # contempt: 0.6% of FER+, no target on it


@torch.no_grad()
def logits_of(model: FaceNet, faces: FaceSet, batch: int = 512) -> np.ndarray:
    model.eval()
    x = gray_faces_to_tensor(faces.images)
    return torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)]).numpy()


def recalls(logits: np.ndarray, labels: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """Per-class recall of argmax(logits + offsets); NaN for classes with no faces."""
    pred = (logits if offsets is None else logits + offsets).argmax(1)
    return np.array([(pred[labels == c] == c).mean() if (labels == c).any() else np.nan for c in range(len(LABELS))])


def accuracy(logits: np.ndarray, labels: np.ndarray, offsets: np.ndarray | None = None) -> float:
    """Share of argmax(logits + offsets) equal to the labels."""
    return float(((logits if offsets is None else logits + offsets).argmax(1) == labels).mean())


def fit_offsets(
    logits: np.ndarray, labels: np.ndarray, min_recall: float = 0.45, step: float = 0.05, max_steps: int = 400
) -> np.ndarray:
    """Offsets raising the weakest main class's logit a step at a time until every main class reaches
    `min_recall` (or `max_steps` is spent); the offsets with the best weakest-class recall seen are returned."""
    offsets = np.zeros(logits.shape[1], np.float32)
    best, best_min = offsets.copy(), -1.0
    for _ in range(max_steps):
        r = recalls(logits, labels, offsets)[MAIN]
        if r.min() > best_min:
            best, best_min = offsets.copy(), float(r.min())
        if r.min() >= min_recall:
            break
        offsets[MAIN[int(np.nanargmin(r))]] += step
    return best


def balance(model: FaceNet, valid: FaceSet, min_recall: float = 0.45) -> dict:
    """Fit offsets on `valid` and add them to the model's head bias; returns what was done, for the record."""
    logits = logits_of(model, valid)
    offsets = fit_offsets(logits, valid.labels, min_recall)
    with torch.no_grad():
        model.net.head.bias += torch.from_numpy(offsets)
    before, after = recalls(logits, valid.labels), recalls(logits, valid.labels, offsets)
    return {
        "method": "post-hoc logit adjustment fitted on FER+ valid (emocloak.calibration)",
        "min_recall_asked": min_recall,
        "offsets": {LABELS[i]: round(float(o), 3) for i, o in enumerate(offsets)},
        "valid_recall_before": {LABELS[i]: round(float(v), 4) for i, v in enumerate(before)},
        "valid_recall_after": {LABELS[i]: round(float(v), 4) for i, v in enumerate(after)},
        "valid_acc_before": accuracy(logits, valid.labels),
        "valid_acc_after": accuracy(logits, valid.labels, offsets),
    }
