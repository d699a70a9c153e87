"""Accuracy and speed of every shipped recognizer.

    python benchmarks/recognizers.py [--data ../shared/data] [--names cnn resnet fer] [--merge]

FER+ test (labels: fer2013new.csv, majority protocol; the 48x48 crops are whole
faces, so no detection) and TCCE test (244 photos of 6 held-out performers,
through each recognizer's own full pipeline: detection, crop, gray or colour,
resize; a photo where no face is found counts as wrong), and TCCE test again
after the photo channel: JPEG quality 50, or a 0.5 downscale (Lanczos) of the
whole photo. Writes benchmarks/results/recognizers.md, recognizers.json and one
confusion-matrix PNG per recognizer and dataset. --merge keeps the rows of
recognizers not named from the last recognizers.json.
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
from emocloak.channel import Channel
from emocloak.data.datasets import load_manifest
from emocloak.data.ferplus import load_ferplus
from emocloak.data.images import load_rgb
from emocloak.errors import NoFaceError
from emocloak.labels import LABELS
from emocloak.metrics.classification import accuracy, confusion, per_class_recall, predicted_labels
from emocloak.recognizers.registry import WEIGHTS
from emocloak.reports.plots import plot_confusion

RESULTS = Path(__file__).parent / "results"
CHANNELS = ("jpeg:50", "resize:0.5")
MAIN = [c for c in LABELS if c != "contempt"]  # TCCE has no contempt


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


def bench_tcce(rec: emocloak.Recognizer, data: Path, channel: str = "none") -> dict:
    photos = load_manifest(data / "tcce" / "manifest.csv", "test")
    through = Channel.parse(channel)
    preds, missed, seconds = [], 0, 0.0
    for path in photos.paths:
        rgb = through(load_rgb(path))
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
    p.add_argument("--merge", action="store_true", help="keep other recognizers' rows from recognizers.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    old = RESULTS / "recognizers.json"
    rows = json.loads(old.read_text()) if a.merge and old.is_file() else {}
    for name in a.names:
        rec = emocloak.load_recognizer(name)
        fp, tc = bench_ferplus(rec, a.data), bench_tcce(rec, a.data)
        channels = {c: bench_tcce(rec, a.data, c) for c in CHANNELS}
        for c in channels.values():
            c.pop("cm")
        plot_confusion(fp.pop("cm"), f"{name} on FER+ test (n={fp['n']})", RESULTS / f"recognizers_{name}_ferplus.png")
        plot_confusion(
            tc.pop("cm"),
            f"{name} on TCCE test photos (n={tc['n']}, no face: {tc['no_face']})",
            RESULTS / f"recognizers_{name}_tcce.png",
        )
        rows[name] = {"ferplus_test": fp, "tcce_test": tc, "tcce_channels": channels, "train_seconds": _seconds(name)}
        print(
            f"{name}: FER+ {fp['acc']:.4f}  TCCE {tc['acc']:.4f}  "
            + "  ".join(f"{c} {r['acc']:.4f}" for c, r in channels.items())
            + f"  {fp['faces_per_s']:.0f} faces/s",
            flush=True,
        )
    (RESULTS / "recognizers.json").write_text(json.dumps(rows, indent=2))
    (RESULTS / "recognizers.md").write_text(render(rows, a.threads))


def _seconds(name: str) -> float | None:
    """Training seconds from the .json beside the weights (None for the third-party `fer`)."""
    path = WEIGHTS / f"{name}.json"
    return json.loads(path.read_text()).get("train_seconds") if path.is_file() else None


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
        "- **TCCE jpeg:50 / resize:0.5**: the same photos after JPEG quality 50, or halved (Lanczos), before",
        "  the recognizer's pipeline: what a platform's re-encoding does.",
        "- **train min**: the weights file's own training run on this 2-core CPU, from the .json beside it; "
        "a fine-tune or weight average leaves out its start's (`cnn`: the README gives both stages; "
        "`fer`: third-party).",
        "",
        "| recognizer | FER+ test acc % | FER+ lost | TCCE test acc % | TCCE jpeg:50 % | TCCE resize:0.5 % "
        "| TCCE no face | train min | FER+ faces/s | TCCE photos/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        fp, tc, ch = r["ferplus_test"], r["tcce_test"], r.get("tcce_channels", {})
        secs = r.get("train_seconds")
        lines.append(
            f"| {name} | {_pct(fp['acc'])} | {fp.get('lost', 0)} | {_pct(tc['acc'])} | "
            + " | ".join(_pct(ch[c]["acc"]) if c in ch else "n/a" for c in CHANNELS)
            + f" | {tc['no_face']} | {'n/a' if secs is None else f'{secs / 60:.0f}'} | "
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
    return "\n".join(lines + targets(rows))


def targets(rows: dict) -> list[str]:
    """The issue-14 targets, met or not, from the numbers above."""
    out = ["## Targets (issue 14)", ""]
    if "cnn" in rows:
        acc = rows["cnn"]["ferplus_test"]["acc"]
        out.append(f"- `cnn` >= 84% on FER+ test: {_pct(acc)}% -> {'met' if acc >= 0.84 else 'NOT met'}.")
    if "photo" in rows:
        r = rows["photo"]
        fp, tc = r["ferplus_test"]["acc"], r["tcce_test"]["acc"]
        worst = min(MAIN, key=lambda c: r["tcce_test"]["recall"][c])
        low = r["tcce_test"]["recall"][worst]
        out += [
            f"- `photo` >= 75% on TCCE test: {_pct(tc)}% -> {'met' if tc >= 0.75 else 'NOT met'}.",
            f"- `photo` >= 80% on FER+ test: {_pct(fp)}% -> {'met' if fp >= 0.80 else 'NOT met'}.",
            f"- `photo`, no main class under 40% recall on TCCE test: lowest is {worst} at {_pct(low)}% -> "
            f"{'met' if low >= 0.40 else 'NOT met'}.",
        ]
    return [*out, ""]


if __name__ == "__main__":
    main()
