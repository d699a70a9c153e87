"""FER+ (FER2013 images, Microsoft FER+ votes) in its native layout.

Labels follow the majority protocol: the class with most votes among all ten
columns; images whose top class is unknown/NF, or with no votes, are dropped.
The vote distribution over the 8 emotions is kept too, for soft-label training.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from emocloak.errors import DatasetError
from emocloak.labels import LABELS

SPLIT_DIRS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}
_USAGE = {"Training": "train", "PublicTest": "valid", "PrivateTest": "test"}
_N_VOTES = 10  # 8 emotions, unknown, NF


@dataclass
class FaceSet:
    """Pre-cropped faces with labels: what recognizers train and are scored on."""

    images: np.ndarray  # (N, H, W) uint8 gray or (N, H, W, 3) uint8 RGB
    labels: np.ndarray  # (N,) int64 index into LABELS
    names: list[str]
    votes: np.ndarray | None = None  # (N, 8) float32 vote distribution, if known

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray | slice) -> FaceSet:
        votes = None if self.votes is None else self.votes[idx]
        names = list(np.asarray(self.names, dtype=object)[idx])
        return FaceSet(self.images[idx], self.labels[idx], names, votes)


def majority(votes: np.ndarray) -> np.ndarray:
    """Majority label per row of 10 vote counts, or -1 where it must be dropped."""
    top = votes.argmax(axis=1)
    keep = (votes.sum(axis=1) > 0) & (top < len(LABELS))
    return np.where(keep, top, -1)


def _read_vote_rows(root: Path, split: str, authority: str) -> list[tuple[str, list[float]]]:
    if authority == "fer2013new":
        path = root / "fer2013new.csv"
        if not path.is_file():
            raise DatasetError(f"{path} not found (needed for FER+ labels)")
        rows = []
        with path.open(newline="") as f:
            for rec in csv.DictReader(f):
                name = (rec.get("Image name") or "").strip()
                if _USAGE.get(rec.get("Usage", "")) != split or not name:
                    continue
                rows.append((name, [float(rec[c]) for c in (*LABELS, "unknown", "NF")]))
        return rows
    path = root / SPLIT_DIRS[split] / "label.csv"
    if not path.is_file():
        raise DatasetError(f"{path} not found: is {root} a FER+ folder?")
    rows = []
    with path.open(newline="") as f:
        for n, rec in enumerate(csv.reader(f), 1):
            if len(rec) != 2 + _N_VOTES:
                raise DatasetError(f"{path}:{n}: expected 12 columns, got {len(rec)}")
            rows.append((rec[0], [float(v) for v in rec[2:]]))
    return rows


def load_ferplus(root: str | Path, split: str = "train", authority: str = "fer2013new") -> FaceSet:
    """Load one split; `authority` picks `fer2013new.csv` (default) or the per-folder label.csv."""
    root = Path(root)
    if split not in SPLIT_DIRS:
        raise DatasetError(f"unknown FER+ split {split!r}; valid: {', '.join(SPLIT_DIRS)}")
    if authority not in ("fer2013new", "label.csv"):
        raise DatasetError("authority must be 'fer2013new' or 'label.csv'")
    folder = root / SPLIT_DIRS[split]
    if not folder.is_dir():
        raise DatasetError(f"{folder} not found: expected FER+ layout {'/'.join(SPLIT_DIRS.values())}")
    names, labels, votes = _labelled_rows(root, split, authority)
    images = np.stack([_read_gray(folder / n) for n in names]) if names else np.zeros((0, 48, 48), np.uint8)
    emo = votes[:, : len(LABELS)]
    return FaceSet(images, labels.astype(np.int64), names, emo / emo.sum(1, keepdims=True))


def _labelled_rows(root: Path, split: str, authority: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, majority labels, 10 vote counts) of the images the majority protocol keeps."""
    rows = _read_vote_rows(root, split, authority)
    votes = np.asarray([v for _, v in rows], dtype=np.float32).reshape(-1, _N_VOTES)
    labels = majority(votes)
    keep = np.flatnonzero(labels >= 0)
    return [rows[i][0] for i in keep], labels[keep], votes[keep]


def split_names(root: str | Path, split: str, authority: str = "fer2013new") -> list[str]:
    """The image names of one split as `load_ferplus` keeps them, without reading the images."""
    return _labelled_rows(Path(root), split, authority)[0]


def _read_gray(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read FER+ image {path}: {exc}") from exc
