"""Would an ensemble of our FER+ models teach (distil into) or read better than the best one alone?

    python benchmarks/ferplus_ensembles.py [--weights A.pt B.pt ...] [--threads 2]
        [--out benchmarks/results/ferplus_ensembles.md]
    python benchmarks/ferplus_ensembles.py --weights P0.pt P1.pt ... --tcce-valid 16 27 \
        --out benchmarks/results/photo_ensembles.md     # photo models: TCCE validation performers too

Each weights file (default: the width-32 candidates, the shipped `cnn` and `resnet`) reads FER+
valid and test (labels: fer2013new.csv, majority protocol; flip test-time augmentation inside each
model); each model alone and every combination of them is scored by its mean probabilities. A distillation
teacher is worth training toward only if an ensemble beats its best member on valid; pick on
valid, test is reported, not chosen on. With --tcce-valid, the photos of those TCCE *training*
performers (held out of the photo models' training) are read through each recognizer's own
pipeline too, and rows sort by the mean of the two valid accuracies; TCCE test is not read.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

from emocloak.data.datasets import load_manifest
from emocloak.data.ferplus import load_ferplus
from emocloak.data.images import load_rgb
from emocloak.data.provenance import TCCE_TEST_SUBJECTS
from emocloak.recognizers.registry import WEIGHTS, load_facenet

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = ROOT / "models" / "candidates"
DEFAULT = [CANDIDATES / f"cnn-w32{s}.pt" for s in ("", "-swa", "-swa2")] + [WEIGHTS / "cnn.pt", WEIGHTS / "resnet.pt"]
SPLITS = ("valid", "test")


def table(probs: dict[str, dict[str, np.ndarray]], labels: dict[str, np.ndarray]) -> list[tuple[str, dict]]:
    """(members joined by +, {split: accuracy}) for each model and each combination, best on valid first.

    "Valid" is the mean over the sets whose name holds "valid" (FER+ valid, and TCCE valid if read).
    """
    names, rows = list(probs), []
    valids = [s for s in labels if "valid" in s]
    for r in range(1, len(names) + 1):
        for combo in itertools.combinations(names, r):
            acc = {s: float((sum(probs[n][s] for n in combo).argmax(1) == labels[s]).mean()) for s in labels}
            rows.append((" + ".join(combo), acc))
    return sorted(rows, key=lambda row: -sum(row[1][s] for s in valids) / len(valids))


def run_names(weights: list[Path]) -> list[str]:
    """Each file's stem, or its folder/stem where stems repeat (runs of one script all write photo.pt)."""
    stems = [w.stem for w in weights]
    return [f"{w.parent.name}/{w.stem}" if stems.count(w.stem) > 1 else w.stem for w in weights]


def tcce_valid(manifest: Path, subjects: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
    """Photos and labels of TCCE training performers held out for validation (never test ones)."""
    if set(subjects) & set(TCCE_TEST_SUBJECTS):
        raise SystemExit("--tcce-valid takes TCCE training performers, not test ones")
    ps = load_manifest(manifest, "train")
    keep = [i for i, s in enumerate(ps.subjects) if s in subjects]
    if not keep:
        raise SystemExit(f"--tcce-valid {subjects}: no such TCCE training performers")
    return [load_rgb(ps.paths[i]) for i in keep], ps.labels[keep]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ferplus"))
    p.add_argument("--weights", type=Path, nargs="+", default=DEFAULT)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tcce-valid", nargs="+", help="TCCE training performers held out of the models' training")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ferplus_ensembles.md")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    faces = {s: load_ferplus(a.data, s) for s in SPLITS}
    labels = {s: f.labels for s, f in faces.items()}
    crops = {s: list(np.repeat(f.images[..., None], 3, -1)) for s, f in faces.items()}  # whole-face RGB crops
    recs = {n: load_facenet(w) for n, w in zip(run_names(a.weights), a.weights, strict=True)}
    probs = {n: {s: r.predict_crops(crops[s]) for s in SPLITS} for n, r in recs.items()}
    if a.tcce_valid:
        photos, labels["tcce valid"] = tcce_valid(Path(a.data).parent / "tcce" / "manifest.csv", a.tcce_valid)
        for n, r in recs.items():
            probs[n]["tcce valid"] = np.nan_to_num(r.predict_proba(photos, on_no_face="nan"))  # no face: wrong
    rows = table(probs, labels)
    n = {s: len(labels[s]) for s in labels}
    tcce = (
        f" TCCE valid: the {n['tcce valid']} photos of training performers {', '.join(a.tcce_valid)} (held out of "
        "the photo models' training), each model's own pipeline; rows sort by the mean of FER+ valid and TCCE "
        "valid. TCCE test is not read here."
        if a.tcce_valid
        else ""
    )
    command = " ".join(["python benchmarks/ferplus_ensembles.py", *sys.argv[1:]])
    header = [
        "# Ensembles: mean probabilities of our models",
        "",
        f"Command: `{command}`. FER+ valid ({n['valid']:,}) and test ({n['test']:,}), labels fer2013new.csv, "
        "majority protocol; each model with its flip test-time augmentation. Sorted by valid accuracy (the only "
        f"one to choose on).{tcce}",
        "",
    ]
    cols = ["FER+ valid", "FER+ test"] + (["TCCE valid"] if a.tcce_valid else [])
    keys = ["valid", "test"] + (["tcce valid"] if a.tcce_valid else [])
    body = [f"| models | {' % | '.join(cols)} % |", "|---|" + "---|" * len(cols)]
    body += [f"| {name} | " + " | ".join(f"{100 * acc[k]:.2f}" for k in keys) + " |" for name, acc in rows]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(header + body) + "\n")
    print("\n".join(body[:12]))


if __name__ == "__main__":
    main()
