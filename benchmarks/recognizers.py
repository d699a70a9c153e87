"""Accuracy and speed of every shipped recognizer.

    python benchmarks/recognizers.py [--data ../shared/data] [--names cnn resnet fer]

FER+ test (labels: fer2013new.csv, majority protocol; the 48x48 crops are whole
faces, so no detection) and TCCE test (244 photos of 6 held-out performers,
through each recognizer's own full pipeline: detection, crop, gray, resize; a
photo where no face is found counts as wrong). Writes
benchmarks/results/recognizers.md, recognizers.json and one confusion-matrix
PNG per recognizer and dataset.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import emocloak
from emocloak.data.datasets import load_manifest
from emocloak.data.ferplus import load_ferplus
from emocloak.data.images import load_rgb
from emocloak.errors import NoFaceError
from emocloak.labels import LABELS
from emocloak.metrics.classification import accuracy, confusion, per_class_recall, predicted_labels
from emocloak.reports.plots import plot_confusion

RESULTS = Path(__file__).parent / "results"


def bench_ferplus(rec: emocloak.Recognizer, data: Path) -> dict:
    test = load_ferplus(data / "ferplus", "test")
    faces = [np.repeat(f[..., None], 3, 2) for f in test.images]
    rec.predict_crops(faces[:64])  # warm-up
    t0 = time.perf_counter()
    probs = rec.predict_crops(faces)
    seconds = time.perf_counter() - t0
    pred = predicted_labels(probs)  # -1 where `landmarks` finds no usable shape: wrong, never a guessed label
    return {
        "n": len(test),
        "acc": accuracy(test.labels, pred),
        "lost": int((pred < 0).sum()),
        "faces_per_s": len(test) / seconds,
        "recall": per_class_recall(test.labels, pred),
        "cm": confusion(test.labels, pred),
    }


def bench_tcce(rec: emocloak.Recognizer, data: Path) -> dict:
    photos = load_manifest(data / "tcce" / "manifest.csv", "test")
    preds, missed, seconds = [], 0, 0.0
    for path in photos.paths:
        rgb = load_rgb(path)
        t0 = time.perf_counter()
        try:
            preds.append(int(rec.predict_proba([rgb], names=[str(path)])[0].argmax()))
        except NoFaceError:
            preds.append(-1)
            missed += 1
        seconds += time.perf_counter() - t0
    pred = np.array(preds)
    return {
        "n": len(pred),
        "acc": accuracy(photos.labels, pred),
        "no_face": missed,
        "photos_per_s": len(pred) / seconds,
        "recall": per_class_recall(photos.labels, pred),
        "cm": confusion(photos.labels, pred),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    p.add_argument("--names", nargs="+", default=emocloak.available_recognizers())
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name in a.names:
        rec = emocloak.load_recognizer(name)
        fp, tc = bench_ferplus(rec, a.data), bench_tcce(rec, a.data)
        plot_confusion(fp.pop("cm"), f"{name} on FER+ test (n={fp['n']})", RESULTS / f"recognizers_{name}_ferplus.png")
        plot_confusion(
            tc.pop("cm"),
            f"{name} on TCCE test photos (n={tc['n']}, no face: {tc['no_face']})",
            RESULTS / f"recognizers_{name}_tcce.png",
        )
        rows[name] = {"ferplus_test": fp, "tcce_test": tc}
        print(f"{name}: FER+ {fp['acc']:.4f}  TCCE {tc['acc']:.4f}  {fp['faces_per_s']:.0f} faces/s")
    (RESULTS / "recognizers.json").write_text(json.dumps(rows, indent=2))
    (RESULTS / "recognizers.md").write_text(render(rows, a.threads))


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def render(rows: dict, threads: int) -> str:
    lines = [
        "# Recognizers: accuracy and speed",
        "",
        f"Command: `python benchmarks/recognizers.py --threads {threads}` "
        f"({platform.processor() or platform.machine()}, torch threads {threads}).",
        "",
        "- **FER+ test**: 3,546 faces, labels from `fer2013new.csv`, majority protocol (unknown/NF dropped);",
        "  the 48x48 crops are whole faces (no detection). Speed: batched model inference on crops.",
        "  `lost`: faces the recognizer could not read (`landmarks`: no usable landmark shape), counted as wrong.",
        "- **TCCE test**: 244 colour photos of the 6 held-out performers, each recognizer's own full pipeline",
        "  (face detection, crop, gray, resize). No face found = wrong.",
        "  Speed: one photo at a time, detection included.",
        "",
        "| recognizer | FER+ test acc % | FER+ lost | TCCE test acc % | TCCE no face | FER+ faces/s | TCCE photos/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        fp, tc = r["ferplus_test"], r["tcce_test"]
        lines.append(
            f"| {name} | {_pct(fp['acc'])} | {fp.get('lost', 0)} | {_pct(tc['acc'])} | {tc['no_face']} | "
            f"{fp['faces_per_s']:.0f} | {tc['photos_per_s']:.1f} |"
        )
    lines += [
        "",
        "## Per-class recall %",
        "",
        "| recognizer | set | " + " | ".join(LABELS) + " |",
        "|---|---|" + "---|" * len(LABELS),
    ]
    for name, r in rows.items():
        for key, label in (("ferplus_test", "FER+"), ("tcce_test", "TCCE")):
            lines.append(f"| {name} | {label} | " + " | ".join(_pct(r[key]["recall"][k]) for k in LABELS) + " |")
    lines += ["", "Confusion matrices: `recognizers_<name>_ferplus.png`, `recognizers_<name>_tcce.png`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
