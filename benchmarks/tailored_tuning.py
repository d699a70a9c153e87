"""Tuning probe for the tailored cloak on TCCE TRAIN photos (never the test performers).

    python benchmarks/tailored_tuning.py --photos 8 --strength mid [--set quantile=none steps=40] [--loo]
    python benchmarks/tailored_tuning.py --faces 48 ...   # FER+ train faces (48x48, the whole image is the face)

Cloaks a seeded sample of TCCE train photos with the default ensemble (or, with --loo, once
without each member, read by that member), saves nothing, and prints per reader how often its
reading changed after JPEG 75 and after a 0.5 downscale + JPEG 75 (against its reading of the
original through the same channel), accuracy before and after JPEG 75, median SSIM,
SSIMULACRA 2 and seconds. `--set key=value` overrides TailoredCloak's
parameters (numbers, `none`, or `cap=`/`floor=` for the budget). Design choices in
docs/design.md were probed with it; the benchmark (`tailored_cloak.py`) reads the test split.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import emocloak
from emocloak.attacks.evasion.tailored import STRENGTHS, TailoredCloak
from emocloak.channel import jpeg, resize
from emocloak.data.datasets import load_manifest
from emocloak.data.ferplus import load_ferplus
from emocloak.data.images import load_rgb
from emocloak.metrics.classification import predicted_labels
from emocloak.metrics.perceptual import ssim, ssimulacra2
from emocloak.recognizers.registry import ensemble

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CHANNELS = {"jpeg75": lambda im: jpeg(im, 75), "resize0.5+jpeg75": lambda im: jpeg(resize(im, 0.5), 75)}


def _value(text: str) -> object:
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        return float(text)


def sample(photos: int, faces: int, seed: int) -> tuple[list[np.ndarray], np.ndarray, bool]:
    """(images, labels, detect): seeded TCCE train photos, or FER+ train faces when `faces` is given."""
    rng = np.random.default_rng(seed)
    if faces:
        fs = load_ferplus(DATA / "ferplus", "train")
        idx = rng.choice(len(fs), faces, replace=False)
        return [np.repeat(fs.images[i][..., None], 3, 2) for i in idx], fs.labels[idx], False
    ps = load_manifest(DATA / "tcce" / "manifest.csv", "train")
    idx = rng.choice(len(ps), photos, replace=False)
    return [load_rgb(ps.paths[i]) for i in idx], ps.labels[idx], True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--faces", type=int, default=0, help="FER+ train faces instead of TCCE photos")
    ap.add_argument("--strength", default="mid", choices=list(STRENGTHS))
    ap.add_argument("--set", nargs="*", default=[], help="TailoredCloak parameters, key=value")
    ap.add_argument("--loo", action="store_true")
    ap.add_argument("--members", nargs="*", help="ensemble: names or .pt paths (default: the shipped ensemble)")
    ap.add_argument("--readers", nargs="*", help="also read with these (names or .pt paths), never in the ensemble")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    opts = dict(kv.split("=", 1) for kv in args.set)
    budget = STRENGTHS[args.strength]
    for key in ("cap", "floor"):
        if key in opts:
            budget = replace(budget, **{key: float(opts.pop(key)) / (255 if key == "cap" else 1)})
    params = {k: _value(v) for k, v in opts.items()}
    images, labels, detect = sample(args.photos, args.faces, args.seed)
    members = [emocloak.load_recognizer(n) for n in args.members or ensemble()]
    extra = [emocloak.load_recognizer(n) for n in args.readers or ["landmarks"]]
    readers = {r.name: r for r in members + extra}
    changed: dict[str, dict[str, list[bool]]] = {k: {ch: [] for ch in CHANNELS} for k in readers}
    right: dict[str, list[tuple[bool, bool]]] = {k: [] for k in readers}
    quality, seconds = [], []
    for img, y in zip(images, labels.tolist(), strict=True):
        runs = [(m.name, [o for o in members if o is not m]) for m in members] if args.loo else [(None, members)]
        if args.loo:
            runs += [(r.name, members) for r in extra]
        for left, team in runs:
            cloak = TailoredCloak(members=team[1:], strength=budget, **params)
            t0 = time.perf_counter()
            adv = cloak(team[0], [img], detect=detect).images[0]
            seconds.append(time.perf_counter() - t0)
            for name in [left] if left else readers:
                read = readers[name].predict_proba
                for ch, through in CHANNELS.items():
                    b, a = (
                        int(predicted_labels(read([through(im)], detect=detect, on_no_face="nan"))[0])
                        for im in (img, adv)
                    )
                    changed[name][ch].append(a != b and b >= 0)
                    if ch == "jpeg75":
                        right[name].append((b == y, a == y))
            if left in (None, members[0].name):
                quality.append((ssim(img, adv), ssimulacra2(img, adv)))
    print(f"strength {args.strength} {budget.describe()} {params} {'leave-one-out' if args.loo else 'ensemble'}")
    print(f"  {'':10s} changed: {'   '.join(CHANNELS)}")
    for name, by_channel in changed.items():
        if by_channel["jpeg75"]:
            acc = np.mean(right[name], 0)
            rates = "   ".join(f"{np.mean(v):6.1%}" for v in by_channel.values())
            print(f"  {name:10s} changed {rates}   accuracy (jpeg75) {acc[0]:.1%} -> {acc[1]:.1%}")
    q = np.median(quality, 0)
    print(f"  median SSIM {q[0]:.4f}  SSIMULACRA 2 {q[1]:.1f}  seconds median {np.median(seconds):.1f}")


if __name__ == "__main__":
    main()
