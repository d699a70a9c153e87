"""Train the `photo` recognizer: 64x64 colour, FER+ train + TCCE train performers, photo-channel augmentation.

    python scripts/train_photo_recognizer.py --init src/emocloak/recognizers/weights/cnn.pt \
        --threads 2 --epochs 8 --out runs/photo-w40/photo.pt       # the shipped photo; --resume continues
    python scripts/train_photo_recognizer.py --average runs/photo-s0/photo.pt runs/photo-s1/photo.pt \
        --threads 2 --out runs/photo-soup/photo.pt                 # a weight average of runs, no training

Starts from a 48 px gray VGG (its width is kept, its first conv spread over RGB): the shipped
`photo` from `cnn`, as above; the default, `cnn-w24`, is what `photo-w24` started from (the command
in its .json). Faces and photos are read once
into a cache (`runs/photo_cache/`, never committed). Validation: FER+ valid and the TCCE training
performers given by --valid-subjects (held out of training); the 6 TCCE test performers are
never read before the final test. Writes the weights and a .json beside them: config, the exact
data (FER+ split, TCCE photo list and performers), per-epoch validation, seconds and the test
accuracies (FER+ test on its crops; TCCE test through the recognizer's own pipeline).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from emocloak.data.datasets import load_manifest
from emocloak.data.ferplus import FaceSet, load_ferplus
from emocloak.data.images import load_rgb
from emocloak.data.provenance import TCCE_TEST_SUBJECTS, training_data
from emocloak.faces.detect import DEFAULT_MARGIN
from emocloak.metrics.classification import accuracy, per_class_recall, predicted_labels
from emocloak.photo_training import (
    PhotoConfig,
    PhotoSet,
    average_photo,
    build_photo_set,
    clean_face_crops,
    clean_photo_crops,
    photo_validation,
    train_photo,
)
from emocloak.recognizers.registry import WEIGHTS, load_facenet
from emocloak.training import checkpoint_shape, init_arch, save_weights


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def cached_faces(data: Path, split: str, cache: Path) -> FaceSet:
    path = cache / f"ferplus_{split}.npz"
    if path.is_file():
        z = np.load(path)
        return FaceSet(z["images"], z["labels"], list(z["names"]), z["votes"])
    fs = load_ferplus(data / "ferplus", split)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=fs.images, labels=fs.labels, names=np.asarray(fs.names), votes=fs.votes)
    return fs


def cached_tcce_train(data: Path, cache: Path) -> PhotoSet:
    path = cache / "tcce_train.npz"
    if path.is_file():
        return PhotoSet.load(path)
    ps = load_manifest(data / "tcce" / "manifest.csv", "train")
    leaked = sorted(set(ps.subjects) & set(TCCE_TEST_SUBJECTS))
    if leaked:
        raise SystemExit(f"TCCE train split holds test performers {leaked}: refusing to train")
    log(f"caching {len(ps)} TCCE train photos (both detectors)")
    photos = build_photo_set(ps.paths, ps.labels, ps.subjects, log)
    photos.save(path)
    return photos


def test_scores(weights: Path, data: Path, margin: float) -> dict:
    """FER+ test (its 48 px crops, framed by `margin`) and TCCE test (the full pipeline; no face = wrong)."""
    rec = load_facenet(weights, "photo")
    te = load_ferplus(data / "ferplus", "test")
    x = clean_face_crops(te, rec.input_size, margin)
    fp = torch.cat([rec.logits(x[i : i + 256]) for i in range(0, len(x), 256)]).argmax(1).numpy()
    tc = load_manifest(data / "tcce" / "manifest.csv", "test")
    pred = predicted_labels(rec.predict_proba([load_rgb(p) for p in tc.paths], on_no_face="nan"))
    return {
        "ferplus_test_acc": accuracy(te.labels, fp),
        "ferplus_test_recall": per_class_recall(te.labels, fp),
        "tcce_test_acc": accuracy(tc.labels, pred),
        "tcce_test_recall": per_class_recall(tc.labels, pred),
        "tcce_test_no_face": int((pred < 0).sum()),
    }


def soup_width(weights: list[Path]) -> int:
    """The shared width of photo runs to average; one line where they cannot be averaged."""
    if len(weights) < 2:
        raise SystemExit("--average needs two or more weights files")
    shapes = {checkpoint_shape(w) for w in weights}
    if len(shapes) > 1:
        raise SystemExit(f"--average takes photo runs of one architecture, width and size; got {sorted(shapes)}")
    ((arch, width, in_ch, _),) = shapes
    if (arch, in_ch) != ("vgg", 3):
        raise SystemExit(f"--average takes colour VGG photo runs; got {arch} with {in_ch} input channel(s)")
    return width


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--cache", type=Path, default=Path("runs/photo_cache"))
    p.add_argument(
        "--init",
        default=str(WEIGHTS / "cnn-w24.pt"),
        help="48 px gray VGG or ResNet to start from (its architecture and width are kept)",
    )
    p.add_argument(
        "--valid-subjects", nargs="*", default=["16", "27"], help="TCCE train performers held out (none: train on all)"
    )
    p.add_argument("--size", type=int, default=64)
    p.add_argument(
        "--margin", type=float, default=DEFAULT_MARGIN, help="face crop: dlib's box grown by this share of its side"
    )
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--fer-per-epoch", type=int, default=9600)
    p.add_argument("--photo-batch", type=int, default=32, help="TCCE crops beside each batch of 96 FER+ faces")
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resume", action="store_true")
    p.add_argument(
        "--average", type=Path, nargs="+", help="instead of training: average these photo runs of one start (a soup)"
    )
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    if set(a.valid_subjects) & set(TCCE_TEST_SUBJECTS):
        raise SystemExit("--valid-subjects must be TCCE training performers, not test ones")
    if a.average and a.out.exists():
        raise SystemExit(f"--out {a.out} exists; nothing is overwritten")
    arch, width = ("vgg", soup_width(a.average)) if a.average else init_arch(a.init)
    t0 = time.time()
    faces, fvalid = cached_faces(a.data, "train", a.cache), cached_faces(a.data, "valid", a.cache)
    tcce = cached_tcce_train(a.data, a.cache)
    unknown = sorted(set(a.valid_subjects) - set(tcce.subjects))
    if unknown:
        raise SystemExit(f"--valid-subjects {unknown} are not TCCE train performers: {sorted(set(tcce.subjects))}")
    held = np.isin(tcce.subjects, a.valid_subjects)
    train_ph, valid_ph = tcce.subset(np.flatnonzero(~held)), tcce.subset(np.flatnonzero(held))
    log(f"FER+ train {len(faces)}, valid {len(fvalid)}; TCCE train {len(train_ph)}, valid {len(valid_ph)}")
    cfg = PhotoConfig(
        size=a.size,
        width=width,
        arch=arch,
        margin=a.margin,
        epochs=a.epochs,
        fer_per_epoch=a.fer_per_epoch,
        photo_batch=a.photo_batch,
        lr=a.lr,
        seed=a.seed,
        threads=a.threads,
        init="" if a.average else str(a.init),
        extra={"averaged": [str(w) for w in a.average]} if a.average else {},
    )
    valid = {"ferplus_valid": (clean_face_crops(fvalid, a.size, a.margin), fvalid.labels)}
    if len(valid_ph):
        valid["tcce_valid"] = (clean_photo_crops(valid_ph, a.size, a.margin), valid_ph.labels)
    if a.average:
        model = average_photo(a.average, cfg, faces, train_ph)
        accs = photo_validation(valid)(model)
        log(f"average of {len(a.average)}: valid {accs}")
        save_weights(model, a.out, {"config": asdict(cfg), "history": [{"valid_acc": accs}]}, cfg.size, cfg.margin)
    else:
        train_photo(cfg, faces, train_ph, valid, a.out, a.resume, log)
    scores = test_scores(a.out, a.data, a.margin)
    meta = json.loads(a.out.with_suffix(".json").read_text())
    meta["training_data"] = training_data("train", faces.names, train_ph.names, train_ph.subjects)
    meta["validation_data"] = {
        "ferplus": {"splits": ["valid"], "n": len(fvalid)},
        "tcce": {"split": "train", "subjects": sorted(set(valid_ph.subjects)), "n": len(valid_ph)},
    }
    meta.update(scores, wall_seconds=time.time() - t0, command=" ".join(["python", *sys.argv]))
    a.out.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    recall = " ".join(f"{k} {v:.2f}" for k, v in scores["tcce_test_recall"].items() if v is not None)
    log(f"FER+ test {scores['ferplus_test_acc']:.4f}  TCCE test {scores['tcce_test_acc']:.4f}  TCCE recall {recall}")


if __name__ == "__main__":
    main()
