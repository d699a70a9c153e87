"""`emocloak evaluate`: attack a recognizer on a dataset and measure everything users ask about.

One run = one recognizer, one attack (optionally targeted), optionally a channel and
transfer recognizers. Returns a JSON-ready report: a summary and one record per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.progress import Progress

from emocloak.attacks import Attack
from emocloak.attacks.base import predictions
from emocloak.channel import Channel
from emocloak.data.datasets import PhotoSet, load_dataset
from emocloak.data.ferplus import FaceSet
from emocloak.data.images import load_rgb
from emocloak.errors import DatasetError, ImageError, NoFaceError
from emocloak.labels import LABELS
from emocloak.metrics.classification import confusion
from emocloak.metrics.perceptual import image_distances
from emocloak.metrics.robustness import describe, success, summarise
from emocloak.recognizers.base import Recognizer


@dataclass
class Samples:
    """What an evaluation runs on: RGB images, labels, names, and whether faces must be found."""

    images: list[np.ndarray]
    labels: np.ndarray
    names: list[str]
    detect: bool
    source: str = ""
    meta: dict = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # photos that could not be read, each with why
    _readings: dict = field(default_factory=dict, repr=False)

    def clean_reading(self, rec: Recognizer, channel: Channel | None = None) -> np.ndarray:
        """A recognizer's predictions on the clean images (optionally through a channel), computed once.

        Benchmarks run many attacks on the same samples; the clean side never changes.
        """
        key = (id(rec), str(channel) if channel else "")
        if key not in self._readings:
            self._readings[key] = predictions(rec, self.through(channel), self.detect)
        return self._readings[key]

    def through(self, channel: Channel | None) -> list[np.ndarray]:
        """The clean images after a channel, computed once per channel however many recognizers read them."""
        if not channel:
            return self.images
        key = ("channel", str(channel))
        if key not in self._readings:
            self._readings[key] = [channel(im) for im in self.images]
        return self._readings[key]


def load_samples(path: str | Path, split: str | None = "test", limit: int | None = None, seed: int = 0) -> Samples:
    """A dataset as RGB images; `limit` draws a seeded random subset (sorted, so runs are comparable)."""
    data = load_dataset(path, split)
    idx = np.arange(len(data))
    if limit is not None and limit < len(data):
        idx = np.sort(np.random.default_rng(seed).choice(len(data), limit, replace=False))
    if isinstance(data, FaceSet):
        sub = data.subset(idx)
        images = [np.repeat(f[..., None], 3, 2) if f.ndim == 2 else f for f in sub.images]
        return Samples(images, sub.labels, sub.names, detect=False, source=str(path))
    assert isinstance(data, PhotoSet)
    sub = data.subset(idx)
    images, keep, skipped = [], [], []
    for i, p in enumerate(sub.paths):
        try:
            images.append(load_rgb(p))
            keep.append(i)
        except ImageError as exc:  # one bad photo is reported, not the end of the run
            skipped.append(str(exc))
    if not images:
        raise DatasetError(f"{path}: none of the {len(sub)} photos could be read, e.g. {skipped[0]}")
    names = [str(sub.paths[i]) for i in keep]
    return Samples(images, sub.labels[keep], names, detect=True, source=str(path), skipped=skipped)


def _face_box(rec: Recognizer, image: np.ndarray, detect: bool):
    try:
        return rec.face_crop(image, detect)[1]
    except NoFaceError:
        return None


def evaluate(
    samples: Samples,
    rec: Recognizer,
    attack: Attack,
    target: int | None = None,
    transfer: Sequence[Recognizer] = (),
    channel: Channel | None = None,
    chunk: int = 32,
    progress: bool = True,
) -> tuple[dict, list[np.ndarray]]:
    """Run the attack in chunks and measure; returns (report, adversarial images)."""
    channel = channel or Channel()
    n = len(samples.images)
    adv, records = [], []
    gen = attack.new_generator()  # one stream for the run: equal faces in different chunks get different draws
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"{attack.name} on {rec.name}", total=n)
        for s in range(0, n, chunk):
            images, labels = samples.images[s : s + chunk], samples.labels[s : s + chunk]
            out = attack(rec, images, target, samples.detect, labels, generator=gen)
            for r in out.records:
                r["index"] += s
            adv += out.images
            records += out.records
            bar.advance(task, len(out.images))
    labels = samples.labels
    clean = np.array([r["pred_before"] for r in records])
    after = np.array([r["pred_after"] for r in records])
    for r, name, orig, a in zip(records, samples.names, samples.images, adv, strict=True):
        r["name"] = name
        if r["pred_before"] >= 0:  # an image with no face was left as it was: keep it out of the quality stats
            r.update(image_distances(orig, a, _face_box(rec, orig, samples.detect)))
    cloaked = [r for r in records if r["pred_before"] >= 0]
    summary = {
        "recognizer": rec.name,
        "attack": repr(attack),
        "target": None if target is None else LABELS[target],
        "n": n,
        "skipped": list(samples.skipped),
        "detect_faces": samples.detect,
        **summarise(labels, clean, after, target),
        "ssim": describe([r["ssim"] for r in cloaked]),
        "ssim_face": describe([r.get("ssim_face", float("nan")) for r in cloaked]),
        "psnr": describe([r["psnr"] for r in cloaked]),
        "linf": describe([r["linf"] for r in cloaked]),
        "l2": describe([r["l2"] for r in cloaked]),
        "queries": describe([r["queries"] for r in records]),
        "seconds_per_image": describe([r["seconds"] for r in records]),
        "confusion": {"clean": confusion(labels, clean).tolist(), "attacked": confusion(labels, after).tolist()},
    }
    adv_seen = [channel(im) for im in adv] if channel else adv  # once per image, for every recognizer
    if channel:
        ch_clean = samples.clean_reading(rec, channel)
        ch_after = predictions(rec, adv_seen, samples.detect)
        for r, c, a in zip(records, ch_clean, ch_after, strict=True):
            r["channel_pred_before"], r["channel_pred_after"] = int(c), int(a)
        summary["channel"] = {
            "spec": str(channel),
            **summarise(labels, ch_clean, ch_after, target),
            "confusion": confusion(labels, ch_after).tolist(),
        }
    if transfer:
        summary["transfer"] = {t.name: _transfer(t, samples, adv, adv_seen, target, channel, records) for t in transfer}
    return {"summary": summary, "records": records}, adv


def _transfer(
    rec: Recognizer,
    samples: Samples,
    adv: list[np.ndarray],
    adv_seen: list[np.ndarray],
    target: int | None,
    channel: Channel,
    records: list[dict],
) -> dict:
    """The same cloaked images read by a recognizer the attack never used."""
    clean = samples.clean_reading(rec)
    after = predictions(rec, adv, samples.detect)
    for r, c, a in zip(records, clean, after, strict=True):
        r.setdefault("transfer", {})[rec.name] = {"pred_before": int(c), "pred_after": int(a)}
    out = summarise(samples.labels, clean, after, target)
    if channel:
        ch_after = predictions(rec, adv_seen, samples.detect)
        ch_clean = samples.clean_reading(rec, channel)
        out["channel_success_rate"] = float(success(ch_after, ch_clean, target).mean())
    return out
