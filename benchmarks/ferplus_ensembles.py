"""Would an ensemble of our FER+ models teach (distil into) or read better than the best one alone?

    python benchmarks/ferplus_ensembles.py [--weights A.pt B.pt ...] [--threads 2]
        [--out benchmarks/results/ferplus_ensembles.md]

Each weights file (default: the width-32 candidates, the shipped `cnn` and `resnet`) reads FER+
valid and test (labels: fer2013new.csv, majority protocol; flip test-time augmentation inside each
model); each model alone and every combination of them is scored by its mean probabilities. A distillation
teacher is worth training toward only if an ensemble beats its best member on valid; pick on
valid, test is reported, not chosen on.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

from emocloak.data.ferplus import load_ferplus
from emocloak.recognizers.registry import WEIGHTS, load_facenet

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = ROOT / "models" / "candidates"
DEFAULT = [CANDIDATES / f"cnn-w32{s}.pt" for s in ("", "-swa", "-swa2")] + [WEIGHTS / "cnn.pt", WEIGHTS / "resnet.pt"]
SPLITS = ("valid", "test")


def table(probs: dict[str, dict[str, np.ndarray]], labels: dict[str, np.ndarray]) -> list[tuple[str, dict]]:
    """(members joined by +, {split: accuracy}) for each model and each combination, best on valid first."""
    names, rows = list(probs), []
    for r in range(1, len(names) + 1):
        for combo in itertools.combinations(names, r):
            acc = {s: float((sum(probs[n][s] for n in combo).argmax(1) == labels[s]).mean()) for s in SPLITS}
            rows.append((" + ".join(combo), acc))
    return sorted(rows, key=lambda row: -row[1]["valid"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ferplus"))
    p.add_argument("--weights", type=Path, nargs="+", default=DEFAULT)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ferplus_ensembles.md")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    faces = {s: load_ferplus(a.data, s) for s in SPLITS}
    labels = {s: f.labels for s, f in faces.items()}
    crops = {s: list(np.repeat(f.images[..., None], 3, -1)) for s, f in faces.items()}  # whole-face RGB crops
    recs = [load_facenet(w) for w in a.weights]
    probs = {r.name: {s: r.predict_crops(crops[s]) for s in SPLITS} for r in recs}
    rows = table(probs, labels)
    n = {s: len(labels[s]) for s in SPLITS}
    header = [
        "# FER+ ensembles: mean probabilities of our models",
        "",
        f"Command: `python benchmarks/ferplus_ensembles.py --threads {a.threads}`. FER+ valid ({n['valid']:,}) and "
        f"test ({n['test']:,}), labels fer2013new.csv, majority protocol; each model with its flip test-time "
        "augmentation. Sorted by valid accuracy (the only one to choose on).",
        "",
    ]
    body = ["| models | valid % | test % |", "|---|---|---|"]
    body += [f"| {name} | {100 * acc['valid']:.2f} | {100 * acc['test']:.2f} |" for name, acc in rows]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(header + body) + "\n")
    print("\n".join(body[:12]))


if __name__ == "__main__":
    main()
