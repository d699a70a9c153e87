"""Learn the shipped universal perturbations (untargeted + one per label) on training faces only.

    python scripts/train_universal.py --data ../shared/data --recognizers cnn --eps 8 --steps 1000 \
        --out-dir src/emocloak/recognizers/weights

Training faces: FER+ train (48x48, resized to --size, by default the recognizer's input size)
and TCCE train photos (largest face found by the first recognizer, cropped and resized to --size).
Success is measured on FER+ valid, never trained on, and stored in each file's metadata. Writes universal_<target>.pt
and a universal_<target>.json beside it (metadata, command, timing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from emocloak.attacks.evasion.tailored import STRENGTHS
from emocloak.attacks.evasion.universal import face_crops, learn_universal
from emocloak.data.datasets import load_manifest
from emocloak.data.ferplus import load_ferplus
from emocloak.data.provenance import training_data
from emocloak.labels import LABELS, label_index
from emocloak.recognizers.registry import WEIGHTS, load_recognizer


def _targets(spec: str) -> list[str | None]:
    if spec == "all":
        return [None, *LABELS]
    return [None if t == "untargeted" else LABELS[label_index(t)] for t in spec.split(",")]


def _training_crops(data: Path, rec, size: int, n_faces: int | None, seed: int) -> tuple[torch.Tensor, str, dict]:
    """Crops, a line about them, and the `training_data` record of the pool they were drawn from."""
    fer, tcce = load_ferplus(data / "ferplus", "train"), load_manifest(data / "tcce" / "manifest.csv", "train")
    n_fer = n_tcce = None
    if n_faces is not None:
        n_fer = round(n_faces * len(fer) / (len(fer) + len(tcce)))
        n_tcce = n_faces - n_fer
    a, b = face_crops(fer, rec, size, n_fer, seed), face_crops(tcce, rec, size, n_tcce, seed)
    about = f"FER+ train ({len(a)} faces) + TCCE train ({len(b)} photos' faces by {rec.name})"
    pool = training_data("train", fer.names, tcce.paths, tcce.subjects, note="a seeded subset of these (n_train)")
    return torch.cat([a, b]), about, pool


def _holdout(data: Path, n: int | None, seed: int) -> np.ndarray:
    valid = load_ferplus(data / "ferplus", "valid")
    if n is not None and n < len(valid):
        valid = valid.subset(np.sort(np.random.default_rng(seed).choice(len(valid), n, replace=False)))
    return np.repeat(valid.images[..., None], 3, axis=3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder with ferplus/ and tcce/")
    p.add_argument("--recognizers", default="cnn", help="comma-separated; the first also finds TCCE faces")
    p.add_argument("--eps", type=float, default=None, help="L-inf budget in /255 (default 8; with --strength: its cap)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=None, help="Adam step in /255 (default eps/10)")
    p.add_argument("--size", type=int, default=None, help="side of the learnt delta (default: the recognizer's input)")
    p.add_argument("--targets", default="all", help="all, or comma-separated labels and/or 'untargeted'")
    p.add_argument("--out-dir", type=Path, default=WEIGHTS)
    p.add_argument("--n-faces", type=int, default=None, help="random subset of training faces (default all)")
    p.add_argument("--n-holdout", type=int, default=None, help="random subset of FER+ valid (default all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jpeg", type=int, default=None, help="learn through JPEG at this quality (BPDA)")
    p.add_argument("--quality-weight", type=float, default=0.0, help="weight of 1 - SSIM")
    p.add_argument("--ce-weight", type=float, default=1.0, help="weight of the label term (0: features only)")
    p.add_argument("--box-scale", type=float, default=4.0, help="learn through random face boxes up to this x size")
    p.add_argument(
        "--strength",
        choices=list(STRENGTHS),
        default=None,
        help="learn a pattern added under the tailored cloak's perceptual budget of this strength "
        "(texture-scaled, tapered at the box border; --eps replaces its cap); default: a flat L-inf box",
    )
    p.add_argument("--floor", type=float, default=None, help="with --strength: its budget's share on smooth skin")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    recs = [load_recognizer(n) for n in a.recognizers.split(",")]
    crops, about, pool = _training_crops(a.data, recs[0], a.size or recs[0].input_size, a.n_faces, a.seed)
    holdout = _holdout(a.data, a.n_holdout, a.seed)
    print(f"{about}; hold-out: {len(holdout)} FER+ valid faces")
    budget = None if a.strength is None else STRENGTHS[a.strength]
    if budget is not None:
        cap, floor = budget.cap if a.eps is None else a.eps / 255, budget.floor if a.floor is None else a.floor
        budget = replace(budget, cap=cap, floor=floor)
    eps = (a.eps or 8) / 255 if budget is None else budget.cap
    for target in _targets(a.targets):
        t0 = time.time()
        up = learn_universal(
            recs,
            crops,
            eps,
            target,
            steps=a.steps,
            batch_size=a.batch_size,
            lr=None if a.lr is None else a.lr / 255,
            jpeg_quality=a.jpeg,
            quality_weight=a.quality_weight,
            ce_weight=a.ce_weight,
            box_scale=a.box_scale,
            seed=a.seed,
            holdout=holdout,
            data=about,
            budget=budget,
        )
        out = up.save(a.out_dir / f"universal_{target or 'untargeted'}.pt")
        meta = {**up.meta, "command": " ".join(["python", *sys.argv]), "wall_seconds": round(time.time() - t0, 1)}
        meta["training_data"] = pool
        out.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        h = up.meta["holdout"]
        rates = ", ".join(f"{n} {v:.1%}" for n, v in h["success"].items())
        jpeg = ", ".join(f"{n} {v:.1%}" for n, v in h.get("success_after_jpeg", {}).items())
        print(f"{out}: success on FER+ valid {rates}" + (f"; after JPEG {a.jpeg}: {jpeg}" if jpeg else ""))


if __name__ == "__main__":
    main()
