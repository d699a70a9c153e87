"""Train the models of the defence benchmark and the shipped `cnn-faat`: adversarial fine-tuning of `cnn`.

    python scripts/train_defences.py [--epochs 1] [--arms standard pgd-at faat faat-mask faat-freq] [--ship]
        [--init W] [--logit-adjust TAU]

Every arm starts from the shipped `cnn` weights (VGG w24, FER+ test 82.5%; or --init W) and runs the same
schedule (epochs, one-cycle lr, batch, seed, augmentation), so the arms differ only in the
defence (see docs/design.md, "FAAT", for why fine-tuning and not training from scratch):

* standard:  fine-tuning on augmented clean faces (the control: same extra training, no attack);
* pgd-at:    Madry PGD adversarial training, L-inf eps, `steps` steps of eps/2 from a random start;
* trades:    TRADES (beta 6), the same PGD moving the reading away from the clean one;
* faat:      attention-weighted PGD (same eps, steps, mean step) + the frequency loss;
* faat-mask: ablation, attention-weighted PGD only (frequency weight 0);
* faat-freq: ablation, frequency loss only (flat mask: plain PGD).

--logit-adjust TAU trains standard and pgd-at arms on cross-entropy of logits + TAU * log(class
prior) (Menon et al. 2021), so the frequent classes do not take the rare classes' faces.

Run from the repository root. Writes runs/defences/<arm>.pt with its .json (config, per-epoch history, FER+ valid/test
accuracy, seconds, command) and a resumable .ckpt; rerunning skips finished arms. --ship
copies the faat arm to src/emocloak/recognizers/weights/cnn-faat.pt and .json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from emocloak.data.ferplus import load_ferplus
from emocloak.defences.recipes import arms, cli_command, train_defence, training_faces
from emocloak.recognizers.registry import WEIGHTS
from emocloak.training import TrainConfig, record_run, script_record

ROOT = Path(__file__).resolve().parents[1]
INIT = WEIGHTS / "cnn-w24.pt"  # the shipped defences start from the width-24 cnn


def every(n: int):
    t0 = time.time()

    def report(done: int, total: int) -> None:
        if done % n == 0 or done == total:
            print(f"  batch {done}/{total} ({time.time() - t0:.0f}s)", flush=True)

    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/ferplus")
    p.add_argument("--arms", nargs="+", default=["standard", "pgd-at", "faat", "faat-mask", "faat-freq"])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--eps", type=float, default=4)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--init", type=Path, default=INIT, help="weights every arm starts from (default: the shipped cnn)")
    p.add_argument(
        "--logit-adjust", type=float, default=0.0, help="tau of the logit-adjusted loss (standard and pgd-at arms)"
    )
    p.add_argument("--out-dir", type=Path, default=Path("runs/defences"))
    p.add_argument("--ship", action="store_true", help="copy the faat arm to the package as cnn-faat")
    p.add_argument(
        "--ship-robust",
        metavar="ARM",
        help="ship this arm as cnn-robust, its head balanced on FER+ valid (emocloak.calibration) so no main class "
        "is ignored",
    )
    p.add_argument("--min-recall", type=float, default=0.5, help="--ship-robust: per-class recall asked on valid")
    p.add_argument(
        "--robust-out", type=Path, default=WEIGHTS / "cnn-robust.pt", help="--ship-robust: where (default: the package)"
    )
    a = p.parse_args()
    if Path.cwd().resolve() != ROOT:
        sys.exit(f"run from the repository root ({ROOT}): the records name paths relative to it")
    configs = arms(a.eps, a.steps)
    va, te = load_ferplus(a.data, "valid"), load_ferplus(a.data, "test")
    for name in a.arms:
        d, out = replace(configs[name], logit_adjust=a.logit_adjust), a.out_dir / f"{name}.pt"
        if out.is_file() and "test_acc" in json.loads(out.with_suffix(".json").read_text()):
            print(f"{name}: done already ({out})")
            continue
        t0 = time.time()
        cfg = TrainConfig(epochs=a.epochs, lr=a.lr, threads=a.threads, extra={"init": _relative(a.init)})
        tr, masks = training_faces(a.data, d)
        print(f"{name}: {cli_command(d, cfg, a.data, out)}", flush=True)
        model = train_defence(d, cfg, tr, va, out, masks, progress=every(20))
        data = "FER+ train (fer2013new.csv, majority protocol); valid/test: FER+ valid/test"
        record = script_record(t0, data, tr) | {"equivalent_cli": cli_command(d, cfg, a.data, out)}
        meta = record_run(out, model, va, te, **record)
        print(f"{name}: FER+ test {meta['test_acc']:.4f}, valid {meta['valid_acc']:.4f}, {meta['wall_seconds']:.0f}s")
    if a.ship:
        src, dst = a.out_dir / "faat.pt", WEIGHTS / "cnn-faat.pt"
        shutil.copyfile(src, dst)
        meta = json.loads(src.with_suffix(".json").read_text())
        meta["shipped_as"] = "cnn-faat"
        dst.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        print(f"shipped {dst}")
    if a.ship_robust:
        ship_robust(a.out_dir / f"{a.ship_robust}.pt", va, te, a.min_recall, a.robust_out)


def _relative(path: Path) -> str:
    """The path as the records name it: relative to the repository root where it lies inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def ship_robust(src: Path, valid, test, min_recall: float, dst: Path) -> None:
    """The arm balanced on valid (as `cnn-robust` by default), its test accuracy re-measured, the record beside it."""
    from emocloak.calibration import accuracy, balance, logits_of, recalls
    from emocloak.labels import LABELS
    from emocloak.recognizers.registry import load_facenet
    from emocloak.training import save_weights

    model = load_facenet(src).model
    balanced = balance(model, valid, min_recall)
    meta = json.loads(src.with_suffix(".json").read_text())
    logits = logits_of(model, test)
    meta.update(
        shipped_as=dst.stem,
        shipped_from=str(src),
        balance=balanced,
        test_acc_unbalanced=meta["test_acc"],
        test_acc=accuracy(logits, test.labels),
        valid_acc=balanced["valid_acc_after"],
        test_recall={LABELS[i]: round(float(r), 4) for i, r in enumerate(recalls(logits, test.labels))},
        ship_command=" ".join(["python", *sys.argv]),
    )
    save_weights(model, dst, meta)
    print(f"shipped {dst}: FER+ test {meta['test_acc']:.4f}, recall {meta['test_recall']}")


if __name__ == "__main__":
    main()
