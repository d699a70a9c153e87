"""Train the `landmarks` recognizer's classifier on FER+ train; pick it by FER+ validation accuracy.

    python scripts/train_landmarks.py --out src/emocloak/recognizers/weights/landmarks.pt

Landmarks: dlib's 68 points on every 48x48 FER+ face, upsampled to 160 px first (computed once,
cached under $EMOCLOAK_CACHE). Features: `emocloak.recognizers.landmark.landmark_features`.
Candidates, all on the same standardised features of the training shapes plus their mirror images
(the SVM on a seeded subset of faces, for time): a linear and an MLP head in torch (soft labels:
the FER+ vote distributions), an RBF SVM and histogram gradient boosting from scikit-learn
(majority labels). Each is scored on FER+ valid as the recognizer predicts (logits averaged over
the shape and its mirror). The best one that can ship without pickle (torch heads; boosted trees
as plain arrays) is written as a weights_only state dict, with a .json beside it: config, every
candidate's validation accuracy and seconds, FER+ test accuracy, TCCE test accuracy (full photo
pipeline) with --tcce, and this command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emocloak.data.ferplus import load_ferplus, split_names
from emocloak.data.provenance import training_data
from emocloak.faces.landmarks import dataset_landmarks
from emocloak.labels import LABELS
from emocloak.metrics.classification import accuracy, predicted_labels
from emocloak.recognizers.landmark import (
    N_FEATURES,
    LandmarkNet,
    TreeEnsemble,
    align,
    load_landmarks,
    mirror,
    mlp,
    shape_features,
)

Scorer = Callable[[torch.Tensor], torch.Tensor]  # standardised features -> class scores


def load_split(root: str, split: str) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """Aligned landmark shapes, majority labels and vote distributions of one FER+ split."""
    data = load_ferplus(root, split)
    pts = dataset_landmarks(data.images, f"ferplus-{split}-{len(data)}")
    return align(pts), data.labels, torch.from_numpy(data.votes)


def flip_scores(score: Scorer, net: LandmarkNet, aligned: torch.Tensor) -> torch.Tensor:
    """Scores averaged over each shape and its mirror, as `LandmarkNet.classify` averages them."""
    with torch.no_grad():
        return (
            score(net.standardise(shape_features(aligned))) + score(net.standardise(shape_features(mirror(aligned))))
        ) / 2


def train_torch(head: nn.Module, x: torch.Tensor, soft: torch.Tensor, epochs: int, lr: float, seed: int) -> nn.Module:
    """Soft-label cross-entropy, AdamW, one-cycle schedule, batches of 256."""
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    per_epoch = len(x) // 256
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * per_epoch)
    head.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(per_epoch):
            b = order[i * 256 : (i + 1) * 256]
            loss = -(soft[b] * head(x[b]).log_softmax(1)).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return head.eval()


def candidates(a: argparse.Namespace, x: torch.Tensor, y: np.ndarray, soft: torch.Tensor) -> dict:
    """name -> (builder returning (scorer, shippable head or None), params). Builders run lazily, timed."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.svm import SVC

    def torch_head(hidden: list[int]) -> Callable[[], tuple[Scorer, nn.Module]]:
        def build():
            head = train_torch(mlp(hidden, a.dropout), x, soft, a.epochs, a.lr, a.seed)
            return head, head

        return build

    def svm():
        n = len(x) // 2  # rows are the faces, then their mirrors
        pick = np.sort(np.random.default_rng(a.seed).choice(n, min(a.svm_faces, n), replace=False))
        rows = np.concatenate([pick, pick + n])
        model = SVC(C=a.svm_c, gamma="scale").fit(x[rows].numpy(), y[rows])
        return (lambda f: torch.from_numpy(model.decision_function(f.numpy())).float()), None

    def hgb():
        model = HistGradientBoostingClassifier(
            max_iter=a.hgb_iter, learning_rate=0.1, early_stopping=False, random_state=a.seed
        ).fit(x.numpy(), y)
        trees = TreeEnsemble.from_sklearn(model)
        check = x[:512]
        exact = np.allclose(trees(check).numpy(), model._raw_predict(check.numpy()), atol=1e-4)
        if not exact:
            raise RuntimeError("exported trees disagree with scikit-learn's raw predictions")
        return trees, trees

    mlp_cfg = {"hidden": a.hidden, "dropout": a.dropout, "epochs": a.epochs, "lr": a.lr, "labels": "soft (votes)"}
    return {
        "linear": (torch_head([]), {**mlp_cfg, "hidden": []}),
        "mlp": (torch_head(a.hidden), mlp_cfg),
        "svm-rbf": (svm, {"C": a.svm_c, "gamma": "scale", "train_faces": a.svm_faces, "labels": "majority"}),
        "hgb": (hgb, {"max_iter": a.hgb_iter, "learning_rate": 0.1, "labels": "majority"}),
    }


def head_config(name: str, head: nn.Module, params: dict) -> dict:
    if isinstance(head, TreeEnsemble):
        n_trees, max_nodes = head.feature.shape
        return {"head": "trees", "n_trees": n_trees, "max_nodes": max_nodes, "depth": head.depth}
    return {"head": "mlp", "hidden": list(params["hidden"]), "dropout": params["dropout"]}


def tcce_accuracy(path: Path, weights: Path) -> dict:
    """The shipped recognizer on TCCE test photos, full pipeline; a photo with no face (or landmarks) counts wrong."""
    from emocloak.evaluation import load_samples

    rec = load_landmarks(weights)
    s = load_samples(path, "test")
    probs = rec.predict_proba(s.images, names=s.names, on_no_face="nan")
    pred = predicted_labels(probs)
    return {"tcce_test_acc": accuracy(s.labels, pred), "tcce_test_n": len(pred), "tcce_no_face": int((pred < 0).sum())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/ferplus")
    p.add_argument("--tcce", type=Path, default=None, help="TCCE folder: also measure TCCE test accuracy")
    p.add_argument("--candidates", nargs="+", default=["linear", "mlp", "svm-rbf", "hgb"])
    p.add_argument("--hidden", type=int, nargs="*", default=[256, 256])
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--svm-faces", type=int, default=10000)
    p.add_argument("--svm-c", type=float, default=3.0)
    p.add_argument("--hgb-iter", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    tr, va, te = (load_split(a.data, s) for s in ("train", "valid", "test"))
    net = LandmarkNet(nn.Identity())
    net.fit_constants(shape_features(tr[0]), tr[0])
    both = torch.cat([tr[0], mirror(tr[0])])
    x = net.standardise(shape_features(both))
    y, soft = np.concatenate([tr[1], tr[1]]), torch.cat([tr[2], tr[2]])
    print(f"{len(tr[1])} train faces (+ mirrors), {N_FEATURES} features, landmarks {time.time() - t0:.0f}s", flush=True)

    report, heads = {}, {}
    for name, (build, params) in candidates(a, x, y, soft).items():
        if name not in a.candidates:
            continue
        t1 = time.time()
        score, head = build()
        seconds = time.time() - t1
        acc = accuracy(va[1], flip_scores(score, net, va[0]).argmax(1).numpy())
        report[name] = {"valid_acc": acc, "train_seconds": round(seconds, 1), "shippable": head is not None, **params}
        if head is not None:
            heads[name] = head
        print(f"{name}: FER+ valid {acc:.4f} ({seconds:.0f}s)", flush=True)
    if not heads:
        raise SystemExit("no shippable candidate was trained")
    chosen = max(heads, key=lambda n: report[n]["valid_acc"])
    net.head = heads[chosen]
    cfg = {**head_config(chosen, heads[chosen], report[chosen]), "flip": True, "n_features": N_FEATURES}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": net.state_dict(), "config": cfg, "labels": list(LABELS)}, a.out)

    shipped = load_landmarks(a.out).model  # what users get: reload from the file
    meta: dict = {"config": cfg, "chosen": chosen, "candidates": report}
    best = max(report, key=lambda n: report[n]["valid_acc"])
    if best != chosen:
        meta["best_overall"] = f"{best} ({report[best]['valid_acc']:.4f}) cannot ship without pickle"
    for split, (aligned, labels, _) in (("valid", va), ("test", te)):
        with torch.no_grad():
            logp, found = shipped.classify(aligned)
        pred = np.where(found.numpy(), logp.argmax(1).numpy(), -1)
        meta[f"{split}_acc"], meta[f"{split}_no_landmarks"] = accuracy(labels, pred), int((~found).sum())
    meta["max_distance"] = float(shipped.max_distance)
    if a.tcce:
        meta.update(tcce_accuracy(a.tcce, a.out))
    meta.update(
        train_seconds=report[chosen]["train_seconds"],
        wall_seconds=round(time.time() - t0, 1),
        data="FER+ train (fer2013new.csv, majority protocol; votes as soft labels for torch heads)",
        training_data=training_data("train", split_names(a.data, "train")),
        landmarks="dlib 68-point shape predictor on 48x48 faces upsampled to 160 px (bicubic)",
        command=" ".join(["python", *sys.argv]),
    )
    a.out.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    tcce = f", TCCE test {meta['tcce_test_acc']:.4f}" if a.tcce else ""
    print(f"chose {chosen}: FER+ valid {meta['valid_acc']:.4f}, test {meta['test_acc']:.4f}{tcce}; wrote {a.out}")


if __name__ == "__main__":
    main()
