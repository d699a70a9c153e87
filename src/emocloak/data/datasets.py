"""Labelled face data in the layouts users have, all loaded as `FaceSet` or `PhotoSet`.

* FER+ native layout (see `ferplus.py`), pre-cropped 48x48 faces;
* Kaggle `fer2013.csv` (emotion,pixels,Usage), pre-cropped 48x48 faces;
* a manifest CSV (path,label[,subject,split]) of photos, e.g. TCCE;
* a folder with one sub-folder of photos per class.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emocloak.data.ferplus import FaceSet, load_ferplus
from emocloak.data.images import IMAGE_SUFFIXES
from emocloak.errors import DatasetError
from emocloak.labels import label_index

# Kaggle FER2013 label ids, by their published names (0=Angry ... 6=Neutral).
KAGGLE_NAMES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
KAGGLE_USAGE = {"train": "Training", "valid": "PublicTest", "test": "PrivateTest"}


@dataclass
class PhotoSet:
    """Photos on disk with labels: loaded lazily, since users' photos can be large."""

    paths: list[Path]
    labels: np.ndarray
    subjects: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, idx: np.ndarray | slice) -> PhotoSet:
        keep = np.arange(len(self))[idx]
        return PhotoSet([self.paths[i] for i in keep], self.labels[keep], [self.subjects[i] for i in keep])


def _label(name: str, where: str) -> int:
    try:
        return label_index(name)
    except ValueError as exc:
        raise DatasetError(f"{where}: {exc}") from exc


def _csv_records(path: Path, required: set[str], what: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV with a header; a missing required column is a DatasetError."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = required - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path}: not a {what} (missing columns {sorted(missing)})")
        yield from enumerate(reader, 2)


def load_kaggle_csv(path: str | Path, split: str | None = None) -> FaceSet:
    """Kaggle's fer2013.csv; `split` is train/valid/test (Training/PublicTest/PrivateTest) or None for all."""
    path = Path(path)
    if split is not None and split not in KAGGLE_USAGE:
        raise DatasetError(f"unknown split {split!r}; valid: {', '.join(KAGGLE_USAGE)}")
    images, labels, names = [], [], []
    for n, rec in _csv_records(path, {"emotion", "pixels"}, "fer2013.csv"):
        if split is not None and rec.get("Usage") != KAGGLE_USAGE[split]:
            continue
        try:
            px = np.array(rec["pixels"].split(), dtype=np.uint8)
            emo = int(rec["emotion"])
        except ValueError as exc:
            raise DatasetError(f"{path}:{n}: bad row ({exc})") from exc
        if px.size != 48 * 48 or not 0 <= emo < len(KAGGLE_NAMES):
            raise DatasetError(f"{path}:{n}: expected 2304 pixels and emotion 0-6")
        images.append(px.reshape(48, 48))
        labels.append(label_index(KAGGLE_NAMES[emo]))
        names.append(f"row{n - 2}")
    if not images:
        raise DatasetError(f"{path}: no rows" + (f" with Usage {KAGGLE_USAGE[split]}" if split else ""))
    return FaceSet(np.stack(images), np.array(labels, dtype=np.int64), names)


def load_manifest(path: str | Path, split: str | None = None) -> PhotoSet:
    """A CSV with columns path,label[,subject,split]; paths are relative to the CSV's folder."""
    path = Path(path)
    rows = []
    for n, rec in _csv_records(path, {"path", "label"}, "manifest (path,label[,subject,split])"):
        if split is not None and rec.get("split", split) != split:
            continue
        rows.append((path.parent / rec["path"], _label(rec["label"], f"{path}:{n}"), rec.get("subject", "")))
    if not rows:
        raise DatasetError(f"{path}: no rows" + (f" in split {split!r}" if split else ""))
    absent = [str(p) for p, _, _ in rows if not p.is_file()]
    if absent:
        raise DatasetError(f"{path}: {len(absent)} listed files are missing, e.g. {absent[0]}")
    return PhotoSet([r[0] for r in rows], np.array([r[1] for r in rows], dtype=np.int64), [r[2] for r in rows])


def load_folder(path: str | Path) -> PhotoSet:
    """One sub-folder per class (named by emotion, any vocabulary we know), photos inside."""
    path = Path(path)
    paths, labels = [], []
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        idx = _label(sub.name, str(sub))
        files = sorted(q for q in sub.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [idx] * len(files)
    if not paths:
        raise DatasetError(f"{path}: no class sub-folders with images (expected e.g. {path}/happiness/*.jpg)")
    return PhotoSet(paths, np.array(labels, dtype=np.int64), [""] * len(paths))


def load_dataset(path: str | Path, split: str | None = "test") -> FaceSet | PhotoSet:
    """Guess the layout of `path` and load it; the error lists the layouts understood."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{p}: no such file or folder")
    if p.is_dir() and (p / "FER2013Train").is_dir():
        return load_ferplus(p, split or "test")
    if p.is_dir() and (p / "manifest.csv").is_file():
        return load_manifest(p / "manifest.csv", split)
    if p.is_file() and p.suffix.lower() == ".csv":
        with p.open(newline="") as f:
            header = next(csv.reader(f), [])
        return load_kaggle_csv(p, split) if "pixels" in header else load_manifest(p, split)
    if p.is_dir():
        return load_folder(p)
    raise DatasetError(
        f"{p}: unrecognised dataset; expected a FER+ folder (FER2013Train/...), a folder with manifest.csv, "
        "a manifest CSV (path,label[,subject,split]), Kaggle fer2013.csv, or a folder of class sub-folders"
    )
