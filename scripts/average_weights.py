"""Average the weights of FER+ recognizers fine-tuned from one start (a "model soup", Wortsman et al. 2022).

    python scripts/average_weights.py runs/cnn-w32-swa/cnn.pt runs/cnn-w32-swa2/cnn.pt \
        --out runs/cnn-w32-soup/cnn.pt

Nets that share their start lie in one basin, so the mean of their weights is a net of its own;
its batch-norm statistics are recomputed on FER+ train. Writes the weights and a .json with the
inputs, FER+ valid and test accuracy. Pick by valid; test is reported, not chosen on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from emocloak.data.ferplus import load_ferplus
from emocloak.data.provenance import training_data
from emocloak.recognizers.facenet import FaceNet
from emocloak.training import averaged, gray_faces_to_tensor, init_arch, record_run, save_weights, weight_average


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", type=Path, nargs="+", help="two or more weights files of one architecture and width")
    p.add_argument("--data", default="../shared/data/ferplus")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    if len(a.weights) < 2:
        p.error("give two or more weights files")
    if a.out.exists():
        p.error(f"--out {a.out} exists; nothing is overwritten")
    shapes = {init_arch(w) for w in a.weights}
    if len(shapes) > 1:
        p.error(f"the files differ in architecture or width: {sorted(shapes)}")
    ((arch, width),) = shapes
    torch.set_num_threads(a.threads)
    avg = weight_average(a.weights, lambda: FaceNet(arch, width=width))
    tr, va, te = (load_ferplus(a.data, s) for s in ("train", "valid", "test"))
    model = averaged(avg, gray_faces_to_tensor(tr.images), 128)
    config = {"arch": arch, "width": width, "averaged": [str(w) for w in a.weights]}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(model, a.out, {"config": config})
    sources = [json.loads(w.with_suffix(".json").read_text()) for w in a.weights if w.with_suffix(".json").is_file()]
    meta = record_run(
        a.out,
        model,
        va,
        te,
        data="FER+ train (fer2013new.csv, majority protocol): batch-norm statistics; the inputs' own training",
        training_data=sources[0]["training_data"] if sources else training_data("train", tr.names),
        command=" ".join(["python", *sys.argv]),
    )
    print(f"FER+ test accuracy {meta['test_acc']:.4f} (valid {meta['valid_acc']:.4f})")


if __name__ == "__main__":
    main()
