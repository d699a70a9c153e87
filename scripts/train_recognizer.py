"""Train a shipped recognizer on FER+ train (labels: fer2013new.csv, majority protocol).

    python scripts/train_recognizer.py --arch vgg --width 24 --epochs 28 \
        --out src/emocloak/recognizers/weights/cnn.pt

A second, shorter cycle from trained weights (fine-tuning) takes `--init W --lr 0.01`; with
`--swa` that cycle runs at the constant rate --lr and writes the average of its per-epoch weights.
`--teacher W` adds knowledge distillation from W (`training.distillation_objective`).

Writes the weights, a .json with the config and per-epoch validation accuracy,
and the FER+ test accuracy at the end. Resumes from OUT.ckpt if interrupted.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from emocloak.data.checkpoints import CheckpointError
from emocloak.data.ferplus import load_ferplus
from emocloak.training import (
    KD_TEMPERATURE,
    KD_WEIGHT,
    TrainConfig,
    distillation_from,
    init_arch,
    record_run,
    script_record,
    standard_objective,
    train,
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/ferplus")
    p.add_argument("--arch", default="vgg")
    p.add_argument("--width", type=int, default=24)
    p.add_argument("--epochs", type=int, default=28)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--init", type=Path, help="start from these weights (arch and width are read from them)")
    p.add_argument("--swa", action="store_true", help="constant --lr, average the weights after each epoch")
    p.add_argument("--teacher", type=Path, help="distil from these weights: they read each augmented batch too")
    p.add_argument("--kd-weight", type=float, default=KD_WEIGHT, help="share of the distillation term in the loss")
    p.add_argument("--kd-temperature", type=float, default=KD_TEMPERATURE)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    extra = ({"init": str(a.init)} if a.init else {}) | ({"swa": True} if a.swa else {})
    if a.teacher:
        extra |= {"teacher": str(a.teacher), "kd_weight": a.kd_weight, "kd_temperature": a.kd_temperature}
    if a.init:
        try:
            a.arch, a.width = init_arch(a.init)
        except CheckpointError as exc:
            p.error(f"--init {exc}")
    cfg = TrainConfig(arch=a.arch, width=a.width, epochs=a.epochs, lr=a.lr, seed=a.seed, threads=a.threads, extra=extra)
    try:
        objective = distillation_from(cfg) or standard_objective
    except (CheckpointError, ValueError) as exc:
        p.error(f"--teacher {exc}")
    t0 = time.time()
    tr, va, te = (load_ferplus(a.data, s) for s in ("train", "valid", "test"))
    model = train(cfg, tr, va, a.out, objective=objective)
    meta = record_run(a.out, model, va, te, **script_record(t0, "FER+ train (fer2013new.csv, majority protocol)", tr))
    print(f"FER+ test accuracy {meta['test_acc']:.4f} (valid {meta['valid_acc']:.4f}), {meta['wall_seconds']:.0f}s")


if __name__ == "__main__":
    main()
