"""`emocloak evaluate`: attack a recognizer on a dataset and measure everything users ask about.

One run = one recognizer, one attack (optionally targeted), optionally a channel and
transfer recognizers. Returns a JSON-ready report: a summary and one record per image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emocloak.attacks import Attack
from emocloak.attacks.base import predictions
from emocloak.channel import Channel
from emocloak.data.datasets import PhotoSet, load_dataset
from emocloak.data.ferplus import FaceSet
from emocloak.data.images import load_rgb
from emocloak.errors import DatasetError, EmocloakError, ImageError, NoFaceError
from emocloak.labels import LABELS
from emocloak.metrics.classification import confusion
from emocloak.metrics.perceptual import image_distances
from emocloak.metrics.robustness import describe, success, summarise
from emocloak.progress import bar as progress_bar
from emocloak.recognizers.base import Recognizer
from emocloak.recognizers.registry import load_recognizer


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


CHUNK = 32  # images per attack call: the unit of work and of random draws


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


def _load(rec: Recognizer | str) -> Recognizer:
    """A recognizer object, or one by name (loaded once per process): how work sent elsewhere names it."""
    return rec if isinstance(rec, Recognizer) else load_recognizer(rec)


def chunk_starts(n: int, chunk: int = CHUNK) -> range:
    """Where each chunk of a run begins: the unit of work, and of randomness, in every way of running it."""
    return range(0, n, chunk)


def evaluate_chunk(
    images: Sequence[np.ndarray],
    labels: np.ndarray,
    names: Sequence[str],
    detect: bool,
    rec: Recognizer | str,
    attack: Attack,
    target: int | None = None,
    transfer: Sequence[Recognizer | str] = (),
    channel: Channel | None = None,
    start: int = 0,
) -> tuple[list[dict], list[np.ndarray]]:
    """Attack and measure one chunk of a run (the images from `start` on): (records, adversarial images).

    Everything a record holds is computed here, per image, so that the chunks of a run can go to any
    worker in any order and the report is the same. Random draws come from the chunk's own generator
    (`attack.new_generator(start)`): they depend on where the chunk lies in the run, not on who runs it.
    """
    rec, transfer, channel = _load(rec), [_load(t) for t in transfer], channel or Channel()
    out = attack(rec, images, target, detect, labels, generator=attack.new_generator(start))
    records, adv = out.records, out.images
    for r, name, orig, a in zip(records, names, images, adv, strict=True):
        r["index"] += start
        r["name"] = name
        if r["pred_before"] >= 0:  # an image with no face was left as it was: keep it out of the quality stats
            r.update(image_distances(orig, a, _face_box(rec, orig, detect)))
    clean_seen = [channel(im) for im in images] if channel else images  # once per image, for every recognizer
    adv_seen = [channel(im) for im in adv] if channel else adv
    for t in [rec, *transfer]:
        reading = {}
        if t is not rec:
            reading = {"pred_before": predictions(t, images, detect), "pred_after": predictions(t, adv, detect)}
        if channel:
            reading["channel_pred_before"] = predictions(t, clean_seen, detect)
            reading["channel_pred_after"] = predictions(t, adv_seen, detect)
        for i, r in enumerate(records):
            slot = r if t is rec else r.setdefault("transfer", {}).setdefault(t.name, {})
            slot.update({k: int(v[i]) for k, v in reading.items()})
    return records, adv


def evaluate(
    samples: Samples,
    rec: Recognizer | str,
    attack: Attack,
    target: int | None = None,
    transfer: Sequence[Recognizer | str] = (),
    channel: Channel | None = None,
    chunk: int = CHUNK,
    progress: bool | Callable[[int, int], None] = True,
    workers: int = 1,
    ray_address: str | None = None,
    threads: int | None = None,
) -> tuple[dict, list[np.ndarray]]:
    """Run the attack in chunks and measure; returns (report, adversarial images).

    `progress`: True draws a bar here; a callable instead gets (images done, images in all) after each
    chunk, so a caller can draw its own (the CLI's goes to stderr).

    `workers` > 1 or `ray_address` runs the chunks on Ray (`emocloak.scale`); the report is the same as
    here with the same torch `threads` (Ray workers: 1 unless given).
    Recognizers may be given by name, which is how a worker elsewhere loads them (once per process).
    """
    from emocloak.scale import imap, lost

    starts = chunk_starts(len(samples.images), chunk)
    jobs = (
        (samples.images[s : s + chunk], samples.labels[s : s + chunk], samples.names[s : s + chunk])
        + (samples.detect, rec, attack, target, tuple(transfer), channel, s)
        for s in starts
    )
    parts: dict[int, tuple[list[dict], list[np.ndarray]]] = {}
    done = 0
    with progress_bar(disable=progress is not True) as bar:
        task = bar.add_task(f"{attack.name} on {_load(rec).name}", total=len(samples.images))
        for i, part in imap(evaluate_chunk, jobs, workers, ray_address, threads):
            if why := lost(part):
                raise EmocloakError(f"chunk {i + 1} of {len(starts)} could not be finished: {why}")
            parts[i] = part
            done += len(part[1])
            bar.update(task, completed=done)
            if callable(progress):
                progress(done, len(samples.images))
    records = [r for i in range(len(starts)) for r in parts[i][0]]
    adv = [a for i in range(len(starts)) for a in parts[i][1]]
    transfer_names = [_load(t).name for t in transfer]
    summary = summarise_run(records, samples, _load(rec).name, attack, target, transfer_names, channel)
    return {"summary": summary, "records": records}, adv


def summarise_run(
    records: list[dict],
    samples: Samples,
    rec_name: str,
    attack: Attack,
    target: int | None,
    transfer: Sequence[str],
    channel: Channel | None,
) -> dict:
    """The report's summary, from the per-image records alone (however the chunks were run)."""
    labels = samples.labels
    clean, after = (np.array([r[k] for r in records]) for k in ("pred_before", "pred_after"))
    cloaked = [r for r in records if r["pred_before"] >= 0]
    summary = {
        "recognizer": rec_name,
        "attack": repr(attack),
        "target": None if target is None else LABELS[target],
        "n": len(records),
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
    if channel:
        ch_clean, ch_after = (np.array([r[k] for r in records]) for k in ("channel_pred_before", "channel_pred_after"))
        summary["channel"] = {
            "spec": str(channel),
            **summarise(labels, ch_clean, ch_after, target),
            "confusion": confusion(labels, ch_after).tolist(),
        }
    if transfer:
        summary["transfer"] = {name: _transfer(name, records, labels, target, channel) for name in transfer}
    return summary


def _transfer(name: str, records: list[dict], labels: np.ndarray, target: int | None, channel: Channel | None) -> dict:
    """The same cloaked images read by a recognizer the attack never used."""
    reads = [r["transfer"][name] for r in records]
    clean, after = (np.array([t[k] for t in reads]) for k in ("pred_before", "pred_after"))
    out = summarise(labels, clean, after, target)
    if channel:
        ch_clean, ch_after = (np.array([t[k] for t in reads]) for k in ("channel_pred_before", "channel_pred_after"))
        out["channel_success_rate"] = float(success(ch_after, ch_clean, target).mean())
    return out
