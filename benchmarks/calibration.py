"""Post-hoc logit adjustment (emocloak.calibration) on shipped models: per-class recall before and after.

    python benchmarks/calibration.py [--models cnn cnn-faat] [--min-recall 0.5]

Offsets are fitted on FER+ valid and scored on FER+ test (all 3,546; labels fer2013new.csv,
majority protocol). Writes benchmarks/results/calibration.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from emocloak.calibration import MAIN, accuracy, fit_offsets, logits_of, recalls
from emocloak.data.ferplus import load_ferplus
from emocloak.labels import LABELS
from emocloak.recognizers.registry import WEIGHTS, load_facenet

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ferplus"
RESULTS = Path(__file__).parent / "results"


def rows(name: str, valid, test, min_recall: float) -> list[str]:
    model = load_facenet(WEIGHTS / f"{name}.pt").model
    lv, lt = logits_of(model, valid), logits_of(model, test)
    off = fit_offsets(lv, valid.labels, min_recall)
    out = []
    for split, logits, faces in (("valid", lv, valid), ("test", lt, test)):
        for tag, o in (("as shipped", None), ("adjusted", off)):
            r = recalls(logits, faces.labels, o)
            acc = accuracy(logits, faces.labels, o)
            cells = " | ".join(f"{100 * v:.1f}" for v in r)
            out.append(f"| `{name}` | {split} | {tag} | {100 * acc:.2f} | {cells} | {100 * r[MAIN].min():.1f} |")
    out.append(f"| `{name}` | offsets | | | " + " | ".join(f"{v:+.2f}" for v in off) + " | |")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["cnn", "cnn-faat"])
    p.add_argument("--min-recall", type=float, default=0.5)
    a = p.parse_args()
    torch.set_num_threads(1)
    valid, test = load_ferplus(DATA, "valid"), load_ferplus(DATA, "test")
    lines = [
        "# Post-hoc logit adjustment: per-class recall before and after",
        "",
        f"Command: `python benchmarks/calibration.py {' '.join(sys.argv[1:])}` (CPU). Offsets fitted on FER+ valid",
        f"({len(valid)} faces) until every main class (all but contempt) reaches {a.min_recall:.0%} recall there;",
        f"scored on FER+ test ({len(test)} faces). Labels: fer2013new.csv, majority protocol. Recall in %.",
        "",
        "| model | split | head | accuracy % | " + " | ".join(LABELS) + " | lowest main class |",
        "|---" * (len(LABELS) + 5) + "|",
    ]
    for name in a.models:
        lines += rows(name, valid, test, a.min_recall)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "calibration.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
