"""Robustness of defended recognizers: standard fine-tuning, PGD adversarial training and FAAT, with FAAT's ablation.

    python benchmarks/defences.py [--limit 500] [--models cnn standard pgd-at faat faat-mask faat-freq]

The models are those of `scripts/train_defences.py` (runs/defences/<arm>.pt, all fine-tuned from
the shipped `cnn` on one schedule; the faat arm ships as `cnn-faat`) and the shipped `cnn` itself.
On the first N faces of FER+ test (labels `fer2013new.csv`, majority protocol), for each model:
clean accuracy; FGSM and PGD-20 accuracy at eps 2, 4, 8 /255; L2 PGD-20; the PGD examples
after JPEG quality 75 (`emocloak.channel`). White-box: every attack differentiates through the
model as deployed (flip test-time augmentation included) and aims at the true label; adversarial
crops are rounded to uint8 before they are read, as a saved image is. Writes
benchmarks/results/defences.md and defences.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from emocloak.attacks import make_attack
from emocloak.channel import jpeg
from emocloak.data.ferplus import load_ferplus
from emocloak.recognizers.base import Recognizer
from emocloak.recognizers.registry import WEIGHTS, load_facenet

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
DATA = ROOT.parent / "shared" / "data"
ARMS = {
    "cnn": "shipped `cnn`, no fine-tuning (reference)",
    "standard": "standard fine-tuning (clean faces)",
    "pgd-at": "PGD-AT (Madry)",
    "faat": "FAAT: attention-weighted PGD + frequency loss (= `cnn-faat`)",
    "faat-mask": "ablation: attention-weighted PGD only",
    "faat-freq": "ablation: frequency loss only (plain PGD)",
}


def attacks(eps_list: list[int], steps: int, l2: float) -> list[tuple[str, str]]:
    """(row name, attack spec) in table order."""
    rows = [(f"FGSM {e}", f"fgsm:eps={e}") for e in eps_list]
    rows += [(f"PGD-{steps} {e}", f"pgd:eps={e},steps={steps}") for e in eps_list]
    return rows + [(f"L2 PGD-{steps} {l2:g}", f"pgd:eps={l2},steps={steps},norm=2")]


def read(rec: Recognizer, x: torch.Tensor, batch: int = 500) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([rec.logits(x[i : i + batch]).argmax(1) for i in range(0, len(x), batch)]).numpy()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [0, 1] -> (N, H, W, 3) uint8, as a saved image."""
    return (x.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().numpy()


def from_uint8(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)


def through_jpeg(images: np.ndarray, quality: int = 75) -> torch.Tensor:
    return from_uint8(np.stack([jpeg(im, quality) for im in images]))


def craft(rec: Recognizer, spec: str, x: torch.Tensor, y: torch.Tensor, batch: int = 128) -> torch.Tensor:
    attack = make_attack(spec, seed=0)
    torch.manual_seed(0)
    return torch.cat([attack.craft(rec, x[i : i + batch], y[i : i + batch], False) for i in range(0, len(x), batch)])


def shipped_universal():
    """The shipped untargeted universal cloak (learnt on `cnn`), or None where it is not shipped."""
    from emocloak.attacks.evasion.universal import PerturbationError, default_perturbation

    try:
        return default_perturbation(None)
    except PerturbationError:
        return None


def evaluate_model(
    rec: Recognizer, x: torch.Tensor, labels: np.ndarray, rows: list[tuple[str, str]], universal=None
) -> dict:
    from emocloak.attacks.evasion.universal import apply_universal_batch

    y = torch.from_numpy(labels)
    clean_u8 = to_uint8(x)
    out = {
        "clean": float((read(rec, x) == labels).mean()),
        "clean_jpeg75": float((read(rec, through_jpeg(clean_u8)) == labels).mean()),
        "attacks": {},
    }
    if universal is not None:
        out["universal"] = float((read(rec, from_uint8(apply_universal_batch(clean_u8, universal))) == labels).mean())
    for name, spec in rows:
        t0 = time.time()
        adv = to_uint8(craft(rec, spec, x, y))
        res = {"spec": spec, "acc": float((read(rec, from_uint8(adv)) == labels).mean()), "seconds": time.time() - t0}
        if spec.startswith("pgd"):
            res["acc_jpeg75"] = float((read(rec, through_jpeg(adv)) == labels).mean())
        out["attacks"][name] = res
        print(f"  {name}: {100 * res['acc']:.1f}% ({res['seconds']:.0f}s)", flush=True)
    return out


def filter_cloak_accuracy(rec: Recognizer, x: torch.Tensor, labels: np.ndarray, n: int) -> dict:
    """The filter cloak (EAA, chain 3) searched against the model itself on the first n faces: black-box, unseen."""
    t0 = time.time()
    out = make_attack("filters:chain=3", seed=0)(rec, list(to_uint8(x[:n])), detect=False)
    after = np.array([r["pred_after"] for r in out.records])
    res = {"n": n, "acc": float((after == labels[:n]).mean()), "clean": float((read(rec, x[:n]) == labels[:n]).mean())}
    res["seconds"] = time.time() - t0
    print(f"  filter cloak: {100 * res['clean']:.1f}% -> {100 * res['acc']:.1f}% ({res['seconds']:.0f}s)", flush=True)
    return res


def model_path(name: str, runs: Path) -> Path:
    return WEIGHTS / "cnn.pt" if name == "cnn" else runs / f"{name}.pt"


def _p(v: float) -> str:
    return f"{100 * v:.1f}"


def render(results: dict, rows: list[tuple[str, str]], args: argparse.Namespace, meta: dict) -> str:
    names = list(results)
    train = next(
        (meta[n]["config"]["extra"] for n in names if "eps" in meta[n]["config"]["extra"]), {"eps": 0, "steps": 0}
    )
    cmd = (
        f"python benchmarks/defences.py --limit {args.limit} --models {' '.join(args.models)} "
        f"--eps {' '.join(map(str, args.eps))} --steps {args.steps} --l2 {args.l2:g} "
        f"--filter-faces {args.filter_faces} --threads {args.threads}"
    )
    out = [
        "# Defences: standard fine-tuning, PGD-AT and FAAT against white-box attacks",
        "",
        f"Command: `{cmd}` (CPU, {args.threads} torch thread(s)). Models: `python scripts/train_defences.py --ship`.",
        "",
        f"- **Faces**: the first {args.limit} of the 3,546 FER+ test faces (labels `fer2013new.csv`, majority",
        "  protocol), the whole 48x48 crop attacked. Accuracy in %, against the true label.",
        "- **Models**: VGG w24. Every arm is fine-tuned from the shipped `cnn` on FER+ train with one schedule",
        "  (see the table of models below); `cnn` is the starting point, not fine-tuned. Training attack: L-inf",
        f"  eps {train['eps']:g}/255, PGD-{train['steps']} with steps of {train['eps'] / 2:g}/255 from a random start "
        "(FAAT: the same",
        '  mean step, weighted by the facial attention mask). Design: docs/design.md, "FAAT".',
        "- **Attacks** (white-box, through the deployed model with its flip test-time augmentation; eps in /255;",
        "  PGD: random start, step 2.5*eps/steps; results rounded to uint8 before reading). L2 budget in [0, 1]",
        '  pixel units on the 48x48 RGB crop. "+JPEG75": the same PGD examples after JPEG quality 75 (attack',
        "  unaware of it). Universal cloak: the shipped untargeted perturbation (Pri-EMO), learnt on the",
        "  undefended `cnn` and added to every face: a transfer attack no model was trained against. Filter cloak:",
        "  the Instagram-filter chain search (NSGA-II, population 10, 10 generations, SSIM floor 0.8) run against",
        "  each model's own scores (black-box, adaptive), also never seen in training.",
        "",
        "## Robust accuracy",
        "",
        "| attack | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---|" + "---|" * len(names),
        "| clean | " + " | ".join(_p(results[n]["clean"]) for n in names) + " |",
        "| clean +JPEG75 | " + " | ".join(_p(results[n]["clean_jpeg75"]) for n in names) + " |",
    ]
    if "universal" in results[names[0]]:
        cells = " | ".join(_p(results[n]["universal"]) for n in names)
        out.append(f"| universal cloak (learnt on `cnn`, eps {meta['_universal']['eps']:g}) | {cells} |")
    if "filters" in results[names[0]]:
        f = results[names[0]]["filters"]
        out.append(
            f"| clean, first {f['n']} faces | " + " | ".join(_p(results[n]["filters"]["clean"]) for n in names) + " |"
        )
        cells = " | ".join(_p(results[n]["filters"]["acc"]) for n in names)
        out.append(f"| filter cloak (EAA, chain 3, searched on each model), first {f['n']} faces | {cells} |")
    for row, spec in rows:
        out.append(f"| {row} | " + " | ".join(_p(results[n]["attacks"][row]["acc"]) for n in names) + " |")
        if spec.startswith("pgd"):
            cells = " | ".join(_p(results[n]["attacks"][row]["acc_jpeg75"]) for n in names)
            out.append(f"| {row} +JPEG75 | {cells} |")
    out += ["", "## The models", "", "| model | what | FER+ test acc % (all 3,546) | training seconds | command |"]
    out.append("|---|---|---|---|---|")
    for n in names:
        m = meta[n]
        cmd = m.get("equivalent_cli") or m.get("command", "")
        out.append(f"| `{n}` | {ARMS.get(n, n)} | {_p(m['test_acc'])} | {m.get('train_seconds', 0):.0f} | `{cmd}` |")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=500, help="the first N FER+ test faces")
    p.add_argument("--models", nargs="+", default=list(ARMS))
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "defences", help="where train_defences.py wrote")
    p.add_argument("--eps", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--l2", type=float, default=1.0)
    p.add_argument("--filter-faces", type=int, default=100, help="faces the filter cloak searches (0: none)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    test = load_ferplus(DATA / "ferplus", "test").subset(slice(0, a.limit))
    x = from_uint8(np.repeat(test.images[..., None], 3, 3))
    rows = attacks(a.eps, a.steps, a.l2)
    universal = shipped_universal()
    results, meta = {}, {}
    for name in a.models:
        path = model_path(name, a.runs)
        print(f"{name} ({path})", flush=True)
        meta[name] = json.loads(path.with_suffix(".json").read_text())
        rec = load_facenet(path, name)
        results[name] = evaluate_model(rec, x, test.labels, rows, universal)
        if a.filter_faces:
            results[name]["filters"] = filter_cloak_accuracy(rec, x, test.labels, min(a.filter_faces, len(x)))
    if universal is not None:
        meta["_universal"] = dict(universal.meta)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "defences.json").write_text(
        json.dumps({"args": vars(a) | {"runs": str(a.runs)}, "results": results}, indent=2)
    )
    (RESULTS / "defences.md").write_text(render(results, rows, a, meta))


if __name__ == "__main__":
    main()
