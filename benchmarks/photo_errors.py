"""Are the TCCE photos `photo` misreads hard for any reader, or only for ours? (issue 14, item 2)

    python benchmarks/photo_errors.py [--valid-subjects 16 27] [--recognizers photo photo-w24]
        [--threads 2] [--out benchmarks/results/photo_errors.md]

Two classic readers that share nothing with a CNN are trained on TCCE's training performers, less
the validation ones (the same performers the photo models were trained on):

* **geometry**: dlib's 68 landmarks -> the `landmarks` recognizer's 805 position/scale/roll-free
  features -> logistic regression (the Shehu et al. setting, trained on posed photos this time);
* **texture**: HOG of the gray face, warped so that the eyes sit at fixed points (112 px) ->
  logistic regression (the classic posed-expression baseline).

Both train on each shape/face and its mirror image and read the mean of the two. Each is scored
leave-one-performer-out over the training performers (one row a performer: how much accuracy
depends on who poses) and on random subsets of k of them (a learning curve: would more performers
help?), then trained on all of them and read on the validation performers beside
the recognizers, which read the same photos through their own pipelines (no face = wrong).
Reported: each reader's accuracy, how far their errors overlap, the accuracy of an oracle that
is right whenever any reader is, and the late fusion log p_photo + w log p_reader over a grid of w.
TCCE test performers are never read. Labels: the expression each performer was asked to pose.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skimage.feature import hog
from skimage.transform import SimilarityTransform, warp
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import LeaveOneGroupOut
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from emocloak.data.datasets import load_manifest
from emocloak.data.images import load_rgb
from emocloak.data.provenance import TCCE_TEST_SUBJECTS
from emocloak.errors import NoFaceError
from emocloak.faces.landmarks import REGIONS, crop_landmarks
from emocloak.labels import LABELS
from emocloak.metrics.classification import confusion, predicted_labels
from emocloak.recognizers.landmark import align, mirror, shape_features
from emocloak.recognizers.registry import load_recognizer

CLASSES = 7  # TCCE has no contempt
SIDE = 112  # aligned face for HOG; eyes at (0.3, 0.36) and (0.7, 0.36) of it
EYES = np.array([[0.3, 0.36], [0.7, 0.36]]) * SIDE
FUSION_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)


def _hog(gray: np.ndarray) -> np.ndarray:
    return hog(gray, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2))


def photo_features(paths: list[Path]) -> dict[str, np.ndarray]:
    """Landmark features and HOG (each also of the mirror image) per photo; `found` False where dlib finds no face."""
    finder = load_recognizer("landmarks")  # its dlib face box and crop, as the landmark recognizer reads
    n_geo, n_hog = shape_features(torch.zeros(1, 68, 2)).shape[1], len(_hog(np.zeros((SIDE, SIDE))))
    sizes = {"geo": n_geo, "geo_m": n_geo, "hog": n_hog, "hog_m": n_hog}
    out = {k: np.zeros((len(paths), n)) for k, n in sizes.items()}
    out["found"] = np.zeros(len(paths), bool)
    for i, p in enumerate(paths):
        try:
            face, _ = finder.face_crop(load_rgb(p))
        except NoFaceError:
            continue
        pts = crop_landmarks([face])
        shape = align(pts)
        out["geo"][i], out["geo_m"][i] = shape_features(shape)[0].numpy(), shape_features(mirror(shape))[0].numpy()
        right, left = pts[0, REGIONS["right_eye"]].mean(0), pts[0, REGIONS["left_eye"]].mean(0)
        to_face = SimilarityTransform.from_estimate(EYES, np.stack([right, left]))
        gray = warp(face.astype(np.float64).mean(2) / 255, to_face, output_shape=(SIDE, SIDE))
        out["hog"][i], out["hog_m"][i] = _hog(gray), _hog(gray[:, ::-1])
        out["found"][i] = True
    return out


def reader(c: float):
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))


def fit_read(c: float, x: np.ndarray, xm: np.ndarray, y: np.ndarray, fit: np.ndarray, read: np.ndarray) -> np.ndarray:
    """Train on rows `fit` (and their mirrors), read rows `read` as the mean over each and its mirror."""
    model = reader(c).fit(np.concatenate([x[fit], xm[fit]]), np.concatenate([y[fit], y[fit]]))
    return (model.predict_proba(x[read]) + model.predict_proba(xm[read])) / 2


def leave_one_performer_out(c: float, x: np.ndarray, xm: np.ndarray, y: np.ndarray, subjects: np.ndarray) -> dict:
    """Accuracy on each training performer of a reader trained on the others (faces without landmarks: wrong)."""
    right = np.zeros(len(y), bool)
    for fit, read in LeaveOneGroupOut().split(x, y, subjects):
        right[read] = fit_read(c, x, xm, y, fit, read).argmax(1) == y[read]
    return {s: float(right[subjects == s].mean()) for s in sorted(set(subjects))} | {"all": float(right.mean())}


def learning_curve(
    c: float, x: np.ndarray, xm: np.ndarray, y: np.ndarray, subjects: np.ndarray, sizes: list[int], draws: int
) -> dict[str, float]:
    """Mean accuracy on the performers left out when a reader learns from k of them (`draws` random picks each)."""
    people, rng, curve = np.array(sorted(set(subjects))), np.random.default_rng(0), {}
    for k in sizes:
        accs = []
        for _ in range(draws):
            fit = np.isin(subjects, rng.choice(people, k, replace=False))
            read = fit_read(c, x, xm, y, np.flatnonzero(fit), np.flatnonzero(~fit))
            accs.append(float((read.argmax(1) == y[~fit]).mean()))
        curve[str(k)] = float(np.mean(accs))
    return curve


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--valid-subjects", nargs="+", default=["16", "27"])
    p.add_argument("--recognizers", nargs="+", default=["photo", "photo-w24"])
    p.add_argument("--geo-c", type=float, default=0.01, help="inverse L2 strength of the geometry reader")
    p.add_argument("--hog-c", type=float, default=0.001, help="inverse L2 strength of the texture reader")
    p.add_argument("--curve", type=int, nargs="*", default=[5, 10, 15], help="performer counts, learning curve")
    p.add_argument("--draws", type=int, default=5, help="random picks of performers per learning-curve point")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/photo_errors.md"))
    a = p.parse_args()
    if set(a.valid_subjects) & set(TCCE_TEST_SUBJECTS):
        raise SystemExit("--valid-subjects must be TCCE training performers, not test ones")
    torch.set_num_threads(a.threads)
    t0 = time.time()
    ps = load_manifest(a.data / "tcce" / "manifest.csv", "train")
    subjects, y = np.array(ps.subjects), ps.labels
    if unknown := sorted(set(a.valid_subjects) - set(subjects)):
        raise SystemExit(f"--valid-subjects {unknown} are not TCCE training performers")
    valid = np.isin(subjects, a.valid_subjects)
    feats = photo_features(ps.paths)
    train = ~valid & feats["found"]  # a reader cannot learn from a photo without landmarks
    print(f"features of {len(y)} photos ({time.time() - t0:.0f}s); {int((~feats['found']).sum())} without a face")

    readers = {"geometry": ("geo", a.geo_c), "texture": ("hog", a.hog_c)}
    lopo, curves, probs = {}, {}, {}
    vi = np.flatnonzero(valid)
    for name, (key, c) in readers.items():
        lopo[name] = leave_one_performer_out(c, feats[key][train], feats[key + "_m"][train], y[train], subjects[train])
        curves[name] = learning_curve(
            c, feats[key][train], feats[key + "_m"][train], y[train], subjects[train], a.curve, a.draws
        ) | {f"{len(set(subjects[train])) - 1} (each left out once)": lopo[name]["all"]}
        pv = fit_read(c, feats[key], feats[key + "_m"], y, np.flatnonzero(train), vi)
        pv[~feats["found"][vi]] = np.nan  # no face: wrong
        probs[name] = pv
        print(f"{name}: leave-one-performer-out {lopo[name]['all']:.3f} ({time.time() - t0:.0f}s)")
    photos = [load_rgb(ps.paths[i]) for i in vi]
    for name in a.recognizers:
        probs[name] = load_recognizer(name).predict_proba(photos, on_no_face="nan")[:, :CLASSES]
    yv = y[vi]
    right = {n: predicted_labels(pr) == yv for n, pr in probs.items()}
    result = summary(a, yv, probs, right, lopo) | {"learning_curve": curves, "draws": a.draws}
    result["seconds"] = round(time.time() - t0)
    write(a.out, result, " ".join(sys.argv[1:]))
    print(a.out.read_text())


def summary(a, yv: np.ndarray, probs: dict, right: dict, lopo: dict) -> dict:
    """Accuracies, error overlap, the any-reader oracle, late fusion and the first recognizer's confusion."""
    main_rec, classic = a.recognizers[0], list(lopo)
    every = np.stack(list(right.values()))
    logp = {n: np.log(np.nan_to_num(pr, nan=1 / CLASSES) + 1e-6) for n, pr in probs.items()}
    fusion = {
        r: {str(w): float(((logp[main_rec] + w * logp[r]).argmax(1) == yv).mean()) for w in FUSION_WEIGHTS}
        for r in classic
    }
    wrong = ~right[main_rec]
    return {
        "valid_subjects": a.valid_subjects,
        "n_valid": len(yv),
        "accuracy": {n: float(r.mean()) for n, r in right.items()},
        "leave_one_performer_out": lopo,
        "main": main_rec,
        "main_wrong": int(wrong.sum()),
        "main_wrong_classic_right": {r: int((wrong & right[r]).sum()) for r in classic},
        "all_wrong": int((~every.any(0)).sum()),
        "oracle_any_right": float(every.any(0).mean()),
        "fusion": fusion,
        "confusion": confusion(yv, predicted_labels(probs[main_rec]))[:CLASSES, :CLASSES].tolist(),
        "c": {"geometry": a.geo_c, "texture": a.hog_c},
    }


def write(out: Path, r: dict, args: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(r, indent=1))
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    subj = sorted(k for k in r["leave_one_performer_out"]["geometry"] if k != "all")
    lines = [
        "# Which TCCE photos does `photo` misread, and can any other reader read them?",
        "",
        f"Command: `python benchmarks/photo_errors.py {args}` ({r['seconds']} s).",
        "",
        "TCCE training split only (test performers never read); labels: the posed expression. Classic readers "
        "(logistic regression, trained on each face and its mirror): **geometry** = dlib 68 landmarks -> the "
        "`landmarks` recognizer's 805 features (C = {geometry}); **texture** = HOG of the eye-aligned 112 px gray face "
        "(C = {texture}). See the script's docstring.".format(**r["c"]),
        "",
        f"## Leave one performer out, over the {len(subj)} training performers (classic readers only)",
        "",
        "| reader | all | " + " | ".join(subj) + " |",
        "|---|---|" + "---|" * len(subj),
    ]
    for name, accs in r["leave_one_performer_out"].items():
        lines.append(f"| {name} | {pct(accs['all'])} | " + " | ".join(pct(accs[s]) for s in subj) + " |")
    lines += [
        "",
        f"Learning curve: mean accuracy on the training performers left out when a reader learns from k of "
        f"them ({r['draws']} random picks of k each, seed 0; the last column is the leave-one-out row above):",
        "",
        "| reader | " + " | ".join(f"k={k}" for k in next(iter(r["learning_curve"].values()))) + " |",
        "|---|" + "---|" * len(next(iter(r["learning_curve"].values()))),
        *[f"| {n} | " + " | ".join(pct(v) for v in c.values()) + " |" for n, c in r["learning_curve"].items()],
    ]
    lines += [
        "",
        f"## Validation performers {', '.join(r['valid_subjects'])} ({r['n_valid']} photos), "
        "classic readers trained on all the other training performers",
        "",
        "| reader | accuracy % |",
        "|---|---|",
        *[f"| {n} | {pct(v)} |" for n, v in r["accuracy"].items()],
        "",
        f"- `{r['main']}` misreads {r['main_wrong']}; of these the classic readers read right: "
        + ", ".join(f"{n} {k}" for n, k in r["main_wrong_classic_right"].items())
        + f". Every reader above is wrong on {r['all_wrong']}; right by at least one: "
        f"{pct(r['oracle_any_right'])}% (an oracle, no reader can pick like this).",
        f"- Late fusion, accuracy % of log p_{r['main']} + w log p_reader:",
        "",
        "| reader | " + " | ".join(f"w={w}" for w in FUSION_WEIGHTS) + " |",
        "|---|" + "---|" * len(FUSION_WEIGHTS),
        *[f"| {n} | " + " | ".join(pct(v) for v in f.values()) + " |" for n, f in r["fusion"].items()],
        "",
        f"## `{r['main']}` confusion on the validation photos (rows: posed, columns: read)",
        "",
        "| | " + " | ".join(LABELS[:CLASSES]) + " |",
        "|---|" + "---|" * CLASSES,
        *[f"| {LABELS[i]} | " + " | ".join(map(str, row)) + " |" for i, row in enumerate(r["confusion"])],
        "",
    ]
    out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
