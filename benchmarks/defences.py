"""Defences compared on one footing: standard fine-tuning, PGD-AT, TRADES and FAAT, with AutoAttack beside PGD.

    nice -n 10 python benchmarks/defences.py [--runs runs/defences-6ep] [--models cnn standard pgd-at trades faat]
        [--limit 3546] [--eps 2 4 8] [--aa-faces 128] [--filter-faces 100] [--threads 1]

The arms are those of `scripts/train_defences.py` (<runs>/<arm>.pt, each fine-tuned from the shipped
`cnn` on one schedule: same epochs, data, seed; they differ only in the defence); `cnn` is the
shipped start. Arms not trained yet are listed as such. On FER+ test (labels `fer2013new.csv`,
majority protocol), per model:

- clean accuracy and per-class recall, as trained and after balancing the head on FER+ valid
  (`emocloak.calibration`, as `--ship-robust` ships a model), with 95% Wilson intervals;
- FGSM and PGD-20 at each eps (/255, first `--limit` faces in file order) and L2 PGD-20; the PGD
  examples also after JPEG 75; the shipped universal cloak; the filter cloak searched on each model;
- AutoAttack (standard: APGD-CE, APGD-T, FAB-T, Square) at `--aa-eps` on the first `--aa-faces` of
  benchmarks/autoattack.py's seeded order, computed through that benchmark's cache (runs/autoattack);
- paired differences between arms on the same faces (95% paired bootstrap): the decision whether
  one defence beats another;
- training cost: CPU seconds of one training batch (128 faces) of each defence, measured in this
  run, as a ratio to standard fine-tuning (the recorded wall seconds include pauses).

White-box throughout: attacks differentiate through the model as deployed (flip test-time
augmentation included), aim at the true label, and are rounded to uint8 before reading.
Resumable: each (model, row) is cached per face under runs/defences-bench/<model>-<hash>/.
Writes benchmarks/results/defences.md and defences.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from itertools import combinations
from pathlib import Path

import autoattack as aa_bench  # the sibling benchmark: its seeded order, chunks and cache
import numpy as np
import torch

from emocloak.attacks import make_attack
from emocloak.calibration import MAIN, fit_offsets, logits_of
from emocloak.channel import jpeg
from emocloak.data.ferplus import FaceSet, load_ferplus
from emocloak.defences.recipes import arms, hooks
from emocloak.labels import LABELS
from emocloak.metrics.robustness import paired_difference, wilson
from emocloak.recognizers.base import Recognizer
from emocloak.recognizers.facenet import FaceNet
from emocloak.recognizers.registry import WEIGHTS, load_facenet
from emocloak.training import train_step

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
DATA = ROOT.parent / "shared" / "data"
ARMS = {
    "cnn": "the width-24 `cnn` (now `cnn-w24`), the start of every arm (not fine-tuned)",
    "standard": "standard fine-tuning (clean faces): the control",
    "pgd-at": "PGD-AT (Madry et al. 2018)",
    "trades": "TRADES (Zhang et al. 2019), beta 6",
    "faat": "FAAT: attention-weighted PGD + frequency loss",
    "faat-mask": "ablation: attention-weighted PGD only",
    "faat-freq": "ablation: frequency loss only (plain PGD)",
}
TARGETS = {"clean": 0.78, "autoattack": 0.45, "recall": 0.40}  # issue 15, for the model shipped as cnn-robust


def attack_rows(eps_list: list[int], steps: int, l2: float) -> list[tuple[str, str]]:
    """(row name, attack spec) in table order."""
    rows = [(f"FGSM {e}", f"fgsm:eps={e}") for e in eps_list]
    rows += [(f"PGD-{steps} {e}", f"pgd:eps={e},steps={steps}") for e in eps_list]
    return rows + ([(f"L2 PGD-{steps} {l2:g}", f"pgd:eps={l2},steps={steps},norm=2")] if l2 else [])


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


def cached_row(cache: Path, row: str, compute) -> dict:
    """A row's per-face result from the cache, or computed and stored (atomically) first."""
    path = cache / f"{row.replace(' ', '_')}.json"
    if path.exists():
        return json.loads(path.read_text())
    t0 = time.process_time()
    out = compute() | {"cpu_seconds": None}
    out["cpu_seconds"] = time.process_time() - t0
    return aa_bench.cached(path, out)


def attack_results(rec: Recognizer, x: torch.Tensor, labels: np.ndarray, rows, cache: Path, universal) -> dict:
    """Per row, per face: still read correctly (and after JPEG 75 for PGD rows)."""
    y = torch.from_numpy(labels)
    clean_u8 = to_uint8(x)

    def clean() -> dict:
        return {
            "correct": (read(rec, x) == labels).tolist(),
            "jpeg75": (read(rec, through_jpeg(clean_u8)) == labels).tolist(),
        }

    out = {"clean": cached_row(cache, f"clean-{len(x)}", clean)}
    if universal is not None:
        from emocloak.attacks.evasion.universal import apply_universal_batch

        def uni() -> dict:
            return {"correct": (read(rec, from_uint8(apply_universal_batch(clean_u8, universal))) == labels).tolist()}

        out["universal"] = cached_row(cache, f"universal-{len(x)}", uni)
    for name, spec in rows:

        def attack(spec: str = spec) -> dict:
            adv = to_uint8(craft(rec, spec, x, y))
            res = {"spec": spec, "correct": (read(rec, from_uint8(adv)) == labels).tolist()}
            if spec.startswith("pgd"):
                res["jpeg75"] = (read(rec, through_jpeg(adv)) == labels).tolist()
            return res

        out[name] = cached_row(cache, f"{name}-{len(x)}", attack)
        print(f"  {name}: {100 * np.mean(out[name]['correct']):.1f}%", flush=True)
    return out


def filter_result(rec: Recognizer, x: torch.Tensor, labels: np.ndarray, n: int, cache: Path) -> dict:
    """The filter cloak (EAA, chain 3) searched against the model itself on the first n faces: black-box, unseen."""

    def search() -> dict:
        out = make_attack("filters:chain=3", seed=0)(rec, list(to_uint8(x[:n])), detect=False)
        after = np.array([r["pred_after"] for r in out.records])
        return {"correct": (after == labels[:n]).tolist(), "clean": (read(rec, x[:n]) == labels[:n]).tolist()}

    return cached_row(cache, f"filters-{n}", search)


def clean_reading(model: FaceNet, test: FaceSet, valid: FaceSet, min_recall: float) -> dict:
    """Accuracy and per-class recall on test, as trained and with the head balanced on valid."""
    logits = logits_of(model, test)
    offsets = fit_offsets(logits_of(model, valid), valid.labels, min_recall)
    out = {}
    for kind, off in (("raw", np.zeros(len(LABELS), np.float32)), ("balanced", offsets)):
        pred = (logits + off).argmax(1)
        recall = [float((pred[test.labels == i] == i).mean()) for i in range(len(LABELS))]
        out[kind] = {"correct": (pred == test.labels).tolist(), "recall": dict(zip(LABELS, recall, strict=True))}
        out[kind]["acc"] = float((pred == test.labels).mean())
        out[kind]["min_main_recall"] = min(recall[i] for i in MAIN)
    return out


def batch_cpu_seconds(arm: str, batches: int) -> float:
    """CPU seconds of one training step (adversary, objective, backward, update) on 128 faces, mean of `batches`."""
    if arm not in arms():
        return float("nan")
    d = arms()[arm]
    h = hooks(d)
    model = FaceNet("vgg", width=24)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(128, 1, 48, 48, generator=gen), torch.softmax(torch.randn(128, 8, generator=gen), 1)
    mask = torch.rand(128, 1, 48, 48, generator=gen) if d.uses_mask else None
    t0 = time.process_time()
    for _ in range(batches):
        model.train()
        train_step(model, opt, x, y, mask, h["adversary"], h["objective"])
    return (time.process_time() - t0) / batches


def model_path(name: str, runs: Path) -> Path:
    return WEIGHTS / "cnn-w24.pt" if name == "cnn" else runs / f"{name}.pt"  # the arms' start, width 24


def short_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]


def autoattack_faces(name: str, path: Path, aa_faces: tuple | None, a: argparse.Namespace) -> dict | None:
    """Per face of autoattack.py's seeded order (aa_faces: its first --aa-faces): still correct after AutoAttack."""
    if aa_faces is None:
        return None
    x, y = aa_faces
    extra = {name: path}
    opts = argparse.Namespace(chunk=a.aa_chunk, version="standard", seed=0, command=a.command)
    cache = ROOT / "runs" / "autoattack" / aa_bench.model_key(name, extra)
    done = aa_bench.model_rows(load_facenet(path, name), cache, x, y, a.aa_eps, opts)
    fooled = np.concatenate([d["fooled_at"] for d in done])
    return {"robust": (fooled >= len(done[0]["stages"])).tolist(), "pgd20": sum((d["pgd_correct"] for d in done), [])}


def _ci(correct) -> str:
    c = np.asarray(correct)
    lo, hi = wilson(int(c.sum()), len(c))
    return f"{100 * c.mean():.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def _diff(a, b) -> str:
    d, lo, hi = paired_difference(np.asarray(a), np.asarray(b))
    verdict = "first better" if lo > 0 else "second better" if hi < 0 else "no difference shown"
    return f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] ({verdict})"


def render(res: dict, meta: dict, rows, a: argparse.Namespace, missing: list[str]) -> str:
    names = list(res)
    out = [
        "# Defences: standard fine-tuning, PGD-AT, TRADES and FAAT under PGD and AutoAttack",
        "",
        f"Command: `{a.command}` (CPU, {a.threads} torch thread(s)). Models: `python scripts/train_defences.py "
        f"--arms ... --epochs E --out-dir {a.runs}`.",
        "",
        f"- **Faces**: FER+ test (labels `fer2013new.csv`, majority protocol): the first {a.limit} in file order for",
        f"  clean, FGSM, PGD and the universal cloak; AutoAttack at eps {a.aa_eps} on the first {a.aa_faces} of",
        "  `benchmarks/autoattack.py`'s seeded order (a random subset; PGD-20 of the same run beside it). % with",
        "  95% Wilson intervals; differences between models on the same faces with 95% paired bootstrap intervals.",
        "- **Models**: VGG w24, every arm fine-tuned from the shipped `cnn` with one schedule (table at the end).",
        "  Training attack: L-inf eps 4/255, 2 steps of 2/255 from a random start (FAAT: the same mean step,",
        "  weighted by the facial attention mask; TRADES: the same PGD on the KL to the clean reading).",
        "- **Attacks**: white-box through the deployed model (flip TTA included); eps in /255; PGD: random start,",
        "  step 2.5*eps/steps; rounded to uint8 before reading. +JPEG75: the same examples after JPEG quality 75.",
        "  Universal cloak: the shipped untargeted perturbation learnt on the undefended `cnn` (a transfer attack).",
        "  Filter cloak: the Instagram-filter chain search (NSGA-II) against each model's own scores (black-box).",
    ]
    if missing:
        out += ["", f"**Not trained yet** (no `<runs>/<arm>.pt`): {', '.join(f'`{m}`' for m in missing)}."]
    out += ["", "## Clean reading (all 3,546 test faces)", ""]
    out += [
        "| model | accuracy % | min main-class recall % | balanced on valid: accuracy % | min main-class recall % |"
    ]
    out.append("|---|---|---|---|---|")
    for n in names:
        c = res[n]["clean_reading"]
        out.append(
            f"| `{n}` | {_ci(c['raw']['correct'])} | {100 * c['raw']['min_main_recall']:.1f} | "
            f"{_ci(c['balanced']['correct'])} | {100 * c['balanced']['min_main_recall']:.1f} |"
        )
    out += ["", "Per-class recall % (as trained / balanced):", ""]
    out += ["| model | " + " | ".join(LABELS) + " |", "|---|" + "---|" * len(LABELS)]
    for n in names:
        c = res[n]["clean_reading"]
        cells = [f"{100 * c['raw']['recall'][k]:.0f} / {100 * c['balanced']['recall'][k]:.0f}" for k in LABELS]
        out.append(f"| `{n}` | " + " | ".join(cells) + " |")
    out += ["", "## Robust accuracy %", "", "| attack | " + " | ".join(f"`{n}`" for n in names) + " |"]
    out.append("|---|" + "---|" * len(names))
    table_rows = [("clean", "clean", "correct"), ("clean +JPEG75", "clean", "jpeg75")]
    table_rows += [("universal cloak", "universal", "correct")] if "universal" in res[names[0]]["rows"] else []
    for label, key, field in table_rows:
        out.append(f"| {label} | " + " | ".join(_ci(res[n]["rows"][key][field]) for n in names) + " |")
    for row, spec in rows:
        out.append(f"| {row} | " + " | ".join(_ci(res[n]["rows"][row]["correct"]) for n in names) + " |")
        if spec.startswith("pgd"):
            out.append(f"| {row} +JPEG75 | " + " | ".join(_ci(res[n]["rows"][row]["jpeg75"]) for n in names) + " |")
    if "filters" in res[names[0]]:
        k = len(res[names[0]]["filters"]["correct"])
        out.append(f"| clean, first {k} faces | " + " | ".join(_ci(res[n]["filters"]["clean"]) for n in names) + " |")
        out.append(
            f"| filter cloak (EAA, chain 3, searched on each model), first {k} faces | "
            + " | ".join(_ci(res[n]["filters"]["correct"]) for n in names)
            + " |"
        )
    if a.aa_faces:
        out.append(
            f"| **AutoAttack eps {a.aa_eps}** (standard), {a.aa_faces} seeded faces | "
            + " | ".join(_ci(res[n]["autoattack"]["robust"]) for n in names)
            + " |"
        )
        out.append(
            f"| PGD-20 eps {a.aa_eps}, the same {a.aa_faces} faces | "
            + " | ".join(_ci(res[n]["autoattack"]["pgd20"]) for n in names)
            + " |"
        )
    out += decision(res, a)
    out += [
        "",
        "## The models",
        "",
        "| model | what | epochs | valid % per epoch | CPU s / batch of 128 (x standard) | command |",
    ]
    out.append("|---|---|---|---|---|---|")
    base = res.get("standard", {}).get("batch_cpu_seconds")
    for n in names:
        m, s = meta[n], res[n]["batch_cpu_seconds"]
        hist = " ".join(f"{100 * h['valid_acc']:.1f}" for h in m.get("history", []))
        ratio = f" ({s / base:.1f}x)" if base and np.isfinite(s) else ""
        cost = f"{s:.2f}{ratio}" if np.isfinite(s) else "-"
        cmd = m.get("equivalent_cli") or m.get("command", "")
        out.append(f"| `{n}` | {ARMS.get(n, n)} | {m['config']['epochs']} | {hist} | {cost} | `{cmd}` |")
    return "\n".join(out) + "\n"


def decision(res: dict, a: argparse.Namespace) -> list[str]:
    """Paired differences between the defended arms, and the issue's targets for each."""
    arms = [n for n in res if n not in ("cnn", "standard")]
    pgd = f"PGD-20 {a.aa_eps}"
    out = ["", "## Which defence is better (paired, same faces)", ""]
    out += [
        f"| first - second | clean (all faces) | {pgd} (all faces) | AutoAttack eps {a.aa_eps} ({a.aa_faces} faces) |"
    ]
    out.append("|---|---|---|---|")
    for p, q in combinations(arms, 2):
        rp, rq = res[p]["rows"], res[q]["rows"]
        cp, cq = res[p]["clean_reading"]["raw"]["correct"], res[q]["clean_reading"]["raw"]["correct"]
        cells = [_diff(cp, cq)]
        cells.append(_diff(rp[pgd]["correct"], rq[pgd]["correct"]) if pgd in rp else "-")
        aa = a.aa_faces and _diff(res[p]["autoattack"]["robust"], res[q]["autoattack"]["robust"])
        out.append(f"| `{p}` - `{q}` | " + " | ".join([*cells, aa or "-"]) + " |")
    out += ["", "## Targets (issue 15), each arm balanced as it would ship", ""]
    out += ["| arm | clean >= 78% | AutoAttack eps 4 >= 45% | every main class >= 40% recall |", "|---|---|---|---|"]
    for n in arms:
        c = res[n]["clean_reading"]["balanced"]
        aa = np.mean(res[n]["autoattack"]["robust"]) if a.aa_faces and a.aa_eps == 4 else float("nan")
        marks = [
            f"{100 * c['acc']:.1f}: {'met' if c['acc'] >= TARGETS['clean'] else 'not met'}",
            f"{100 * aa:.1f} (as trained): {'met' if aa >= TARGETS['autoattack'] else 'not met'}"
            if np.isfinite(aa)
            else "not measured",
            f"{100 * c['min_main_recall']:.1f}: {'met' if c['min_main_recall'] >= TARGETS['recall'] else 'not met'}",
        ]
        out.append(f"| `{n}` | " + " | ".join(marks) + " |")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "defences-6ep", help="where train_defences.py wrote")
    p.add_argument("--models", nargs="+", default=["cnn", "standard", "pgd-at", "trades", "faat"])
    p.add_argument("--limit", type=int, default=3546, help="the first N FER+ test faces (file order)")
    p.add_argument("--eps", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--l2", type=float, default=1.0, help="L2 PGD budget (0: no L2 row)")
    p.add_argument("--aa-faces", type=int, default=128, help="AutoAttack on the first N of the seeded order (0: none)")
    p.add_argument("--aa-eps", type=int, default=4)
    p.add_argument("--aa-chunk", type=int, default=32)
    p.add_argument("--filter-faces", type=int, default=100, help="faces the filter cloak searches (0: none)")
    p.add_argument("--min-recall", type=float, default=0.5, help="balancing on valid, as --ship-robust does")
    p.add_argument("--cost-batches", type=int, default=3, help="training batches timed per defence")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    a.command = " ".join(["nice -n 10 python", *sys.argv])
    torch.set_num_threads(a.threads)
    valid, test_all = load_ferplus(DATA / "ferplus", "valid"), load_ferplus(DATA / "ferplus", "test")
    test = test_all.subset(slice(0, a.limit))
    x = from_uint8(np.repeat(test.images[..., None], 3, 3))
    aa_faces = aa_bench.seeded_faces(test_all, a.aa_faces) if a.aa_faces else None
    rows = attack_rows(a.eps, a.steps, a.l2)
    universal = shipped_universal()
    present = [n for n in a.models if model_path(n, a.runs).is_file()]
    missing = [n for n in a.models if n not in present]
    res, meta = {}, {}
    for name in present:
        path = model_path(name, a.runs)
        print(f"{name} ({path})", flush=True)
        meta[name] = json.loads(path.with_suffix(".json").read_text())
        cache = ROOT / "runs" / "defences-bench" / f"{name}-{short_hash(path)}"
        rec = load_facenet(path, name)
        r = {"clean_reading": clean_reading(rec.model, test_all, valid, a.min_recall)}
        r["rows"] = attack_results(rec, x, test.labels, rows, cache, universal)
        if a.filter_faces:
            r["filters"] = filter_result(rec, x, test.labels, min(a.filter_faces, len(x)), cache)
        r["autoattack"] = autoattack_faces(name, path, aa_faces, a)
        r["batch_cpu_seconds"] = batch_cpu_seconds(name, a.cost_batches)
        res[name] = r
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "defences.json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "missing": missing, "results": res})
    )
    (RESULTS / "defences.md").write_text(render(res, meta, rows, a, missing))


if __name__ == "__main__":
    main()
