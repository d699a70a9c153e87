"""Robust accuracy of the shipped differentiable recognizers under AutoAttack (standard version), PGD-20 beside it.

    nice -n 10 python benchmarks/autoattack.py [--limit 3546] [--pgd-limit 3546]
        [--models cnn resnet fer photo cnn-faat] [--weights cnn-robust=runs/defences-6ep/faat.pt]
        [--eps 2 4 8] [--square-faces 100] [--threads 1]

FER+ test faces (labels `fer2013new.csv`, majority protocol) in one seeded order (seed 0);
`--limit N` takes the first N of it, so a small run is a random subset and a larger one
reuses its chunks. Each face: the whole 48x48 crop, attacked white-box through the model as
deployed (flip test-time augmentation included) against its true label; adversarials are
rounded to uint8 before they are read. Per model and eps: clean accuracy, accuracy after each
AutoAttack stage (APGD-CE, APGD-T, FAB-T, Square; each runs only on faces still correct),
PGD-20 (random start, step 2.5*eps/steps), all with 95% Wilson intervals, and seconds per face.
`landmarks` has no gradient and is left out (attack it with `square` or `filters`).

AutoAttack costs a robust model 15-30 CPU s a face (a day per eps on all 3,546 faces), PGD-20
about 0.3 s. `--pgd-limit N` runs PGD-20 on the first N faces and estimates AutoAttack on all N
from the AutoAttack sample (the first --limit faces): PGD-20's accuracy on N minus the gap
between the two on the sample (`metrics.robustness.sampled_difference`, with its interval).

Gradient-masking flags, as AutoAttack's own checks and issue 15 define them:
- `square-in-sequence`: Square, run last, lowers the accuracy the gradient stages left by more
  than 0.2 points (AutoAttack's check_square_sr);
- `square-alone`: Square alone (5,000 queries) on the first `--square-faces` faces at
  `--square-eps` leaves fewer correct than APGD-CE alone on the same faces (by > 0.2 points);
- `eps-rising`: AutoAttack accuracy higher at a larger eps than at a smaller one;
- `pgd-stronger`: PGD-20 below AutoAttack (AutoAttack must be the stronger attack).

Resumable: each (model, eps, chunk of faces) result is a json under runs/autoattack/ keyed by
the weights' hash; an interrupted run continues where it stopped. Writes
benchmarks/results/autoattack.md and autoattack.json from every chunk cached for the faces asked.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import emocloak
from emocloak.attacks import make_attack
from emocloak.attacks.art_bridge import art_apgd_ce
from emocloak.attacks.evasion.autoattack import AutoAttack, on_grid
from emocloak.data.ferplus import load_ferplus
from emocloak.metrics.robustness import sampled_difference, wilson
from emocloak.recognizers.base import Recognizer
from emocloak.recognizers.registry import WEIGHTS, differentiable, load_facenet

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
DATA = ROOT.parent / "shared" / "data"
ALPHA = 0.002  # AutoAttack's own threshold in check_square_sr


def weights_file(name: str, extra: dict[str, Path]) -> Path | None:
    """The file a model's numbers belong to (its hash keys the cache); None where not one .pt file."""
    if name in extra:
        return extra[name]
    path = WEIGHTS / f"{name}.pt"
    return path if path.exists() else None


def model_key(name: str, extra: dict[str, Path]) -> str:
    path = weights_file(name, extra)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:10] if path else emocloak.__version__
    return f"{name}-{digest}"


def load(name: str, extra: dict[str, Path]) -> Recognizer:
    return load_facenet(extra[name], name) if name in extra else emocloak.load_recognizer(name)


def correct(rec: Recognizer, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return (rec.logits(x).argmax(1) == y).numpy()


def run_chunk(rec: Recognizer, x: torch.Tensor, y: torch.Tensor, eps: int, version: str, seed: int) -> dict:
    """AutoAttack and PGD-20 on one chunk; per face the stage that fooled it and whether PGD did."""
    aa = AutoAttack(eps=eps / 255, version=version, seed=seed)
    aa.rng = aa.new_generator()
    t0, c0 = time.perf_counter(), time.process_time()
    res = aa.run(rec, x, y)
    t_aa, c_aa = time.perf_counter() - t0, time.process_time() - c0
    return {
        "stages": list(res.stages),
        "fooled_at": res.fooled_at.tolist(),
        **pgd_chunk(rec, x, y, eps, seed),
        "seconds_autoattack": t_aa,
        "cpu_seconds_autoattack": c_aa,  # what the face costs one thread, whatever else the machine runs
        "linf_max": float((res.x_adv - x).abs().max() * 255),
    }


def pgd_chunk(rec: Recognizer, x: torch.Tensor, y: torch.Tensor, eps: int, seed: int) -> dict:
    """PGD-20 on one chunk (per face: still correct?); the same seed gives the same result inside or
    outside an AutoAttack chunk, so the sample's PGD-20 is the full run's on those faces."""
    pgd = make_attack(f"pgd:eps={eps},steps=20", seed=seed)
    pgd.rng = pgd.new_generator()
    t0, c0 = time.perf_counter(), time.process_time()
    x_pgd = on_grid(x, pgd.craft(rec, x, y, False), eps / 255)
    t_pgd, c_pgd = time.perf_counter() - t0, time.process_time() - c0
    return {"pgd_correct": correct(rec, x_pgd, y).tolist(), "seconds_pgd": t_pgd, "cpu_seconds_pgd": c_pgd}


def alone_chunk(kind: str, rec: Recognizer, x: torch.Tensor, y: torch.Tensor, eps: int, seed: int) -> dict:
    """One attack alone on the faces read correctly when clean: `square` (the standard version's settings)
    or `art-apgd-ce` (ART 1.20.1's AutoProjectedGradientDescent, cross-entropy, 1 restart, 100 iterations,
    first step 2*eps as the authors'), to set beside our APGD-CE stage."""
    ok = torch.from_numpy(correct(rec, x, y))
    adv = x.clone()
    c0 = time.process_time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)  # ART draws its random start from numpy's global RNG
        if ok.any() and kind == "square":
            square = AutoAttack(eps=eps / 255, seed=seed).reference_attacks(rec, 8, seed)["square"]
            adv[ok] = square.perturb(x[ok], y[ok]).detach()
        elif ok.any():
            adv[ok] = torch.from_numpy(art_apgd_ce(rec, x[ok].numpy(), y[ok].numpy(), eps / 255))
    correct_after = correct(rec, on_grid(x, adv, eps / 255), y)
    return {"correct": correct_after.tolist(), "cpu_seconds": time.process_time() - c0}


def cached(path: Path, out: dict) -> dict:
    """Store a finished result atomically; returns it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(path)  # a run killed mid-write leaves no half file behind
    return out


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def _interval(k: int, n: int) -> dict:
    lo, hi = wilson(k, n)
    return {"acc": k / n, "lo": lo, "hi": hi, "k": k}


def summarise(parts: list[dict]) -> dict:
    """Accuracies with Wilson intervals from the per-face chunk results."""
    fooled = np.concatenate([p["fooled_at"] for p in parts])
    pgd = np.concatenate([p["pgd_correct"] for p in parts])
    stages = parts[0]["stages"]
    n = len(fooled)
    out = {"n": n, "clean": _interval(int((fooled >= 0).sum()), n)}
    for i, s in enumerate(stages):
        out[s] = _interval(int((fooled > i).sum()), n)
    out["autoattack"] = out[stages[-1]]
    out["pgd20"] = _interval(int(pgd.sum()), n)
    out["seconds_per_face"] = sum(p["seconds_autoattack"] for p in parts) / n
    out["pgd_seconds_per_face"] = sum(p["seconds_pgd"] for p in parts) / n
    out["cpu_seconds_per_face"] = sum(p["cpu_seconds_autoattack"] for p in parts) / n
    out["pgd_cpu_seconds_per_face"] = sum(p["cpu_seconds_pgd"] for p in parts) / n
    out["linf_max"] = max(p["linf_max"] for p in parts)
    return out


def estimate(robust: np.ndarray, pgd_parts: list[dict]) -> dict | None:
    """AutoAttack accuracy on every PGD-20 face, estimated from PGD-20 there and both on the sample
    (robust: per sampled face, still correct after AutoAttack; `metrics.robustness.sampled_difference`);
    None where PGD-20 covers no more faces than AutoAttack."""
    pgd_all = np.concatenate([p["pgd_correct"] for p in pgd_parts]) if pgd_parts else np.zeros(0, bool)
    return sampled_difference(pgd_all, robust) if len(pgd_all) > len(robust) else None


def flags(table: dict, square: dict, robust: dict) -> list[str]:
    """Gradient-masking warnings (see the module docstring), in words. robust[model][eps]: per face, still
    correct after AutoAttack (eps are compared on the faces both have)."""
    out = []
    for model, by_eps in table.items():
        eps_sorted = sorted(by_eps)
        for e in eps_sorted:
            r = by_eps[e]
            if "square" in r and "fab-t" in r and r["square"]["acc"] < r["fab-t"]["acc"] - ALPHA:
                out.append(
                    f"{model} eps {e}: square-in-sequence: Square lowered robust accuracy "
                    f"{100 * r['fab-t']['acc']:.1f} -> {100 * r['square']['acc']:.1f}"
                )
            if r["pgd20"]["acc"] < r["autoattack"]["acc"] - ALPHA:
                out.append(
                    f"{model} eps {e}: pgd-stronger: PGD-20 {100 * r['pgd20']['acc']:.1f} < "
                    f"AutoAttack {100 * r['autoattack']['acc']:.1f}"
                )
        for a, b in zip(eps_sorted, eps_sorted[1:], strict=False):
            n = min(len(robust[model][a]), len(robust[model][b]))
            acc_a, acc_b = robust[model][a][:n].mean(), robust[model][b][:n].mean()
            if acc_b > acc_a + ALPHA:
                out.append(
                    f"{model}: eps-rising: AutoAttack accuracy {100 * acc_b:.1f} at eps {b} above "
                    f"{100 * acc_a:.1f} at eps {a} (the same {n} faces)"
                )
        s = square.get(model)
        if s and s["alone"] < s["apgd_ce"] - ALPHA:
            out.append(
                f"{model} eps {s['eps']}: square-alone: Square alone {100 * s['alone']:.1f} < "
                f"APGD-CE {100 * s['apgd_ce']:.1f} on the first {s['n']} faces"
            )
    return out


def _p(r: dict) -> str:
    return f"{100 * r['acc']:.1f} [{100 * r['lo']:.1f}, {100 * r['hi']:.1f}]"


def alone_table(rows: dict, what: str, title: str) -> list[str]:
    if not rows:
        return []
    out = ["", f"## {title}", "", "Accuracy % (95% Wilson interval) on the first n faces of the order.", ""]
    out += [
        f"| model | eps | n | our APGD-CE stage % | {what} alone % | {what} CPU s/face |",
        "|---|---|---|---|---|---|",
    ]
    for model, r in rows.items():
        k_ours, k_alone = round(r["apgd_ce"] * r["n"]), round(r["alone"] * r["n"])
        out.append(
            f"| `{model}` | {r['eps']} | {r['n']} | {_p(_interval(k_ours, r['n']))} | "
            f"{_p(_interval(k_alone, r['n']))} | {r['cpu_seconds_per_face']:.2f} |"
        )
    return out


def estimate_table(estimates: dict) -> list[str]:
    if not estimates:
        return []
    out = [
        "",
        "## AutoAttack on all faces, estimated from PGD-20 on all faces",
        "",
        "AutoAttack runs on the first n faces of the order (a random sample), PGD-20 on the first N. Estimate =",
        "PGD-20 on N minus the gap on the sample, (faces only PGD-20 left correct - faces only AutoAttack left",
        "correct) / n; interval: at least 95% (97.5% Wilson intervals of both counts joined).",
        "",
        "| model | eps | N | PGD-20 on N % | n | only PGD-20 correct | only AutoAttack correct "
        "| AutoAttack on N, estimated % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    return out + model_eps_rows(
        estimates,
        lambda r: (
            f"{r['n_all']} | {100 * r['cheap_all']:.1f} | {r['n_sample']} | "
            f"{r['only_cheap_correct']} | {r['only_strong_correct']} | {_p(r)}"
        ),
    )


def model_eps_rows(by_model: dict, cells) -> list[str]:
    """One table row per model and eps: `cells(result)` gives the cells after those two."""
    return [f"| `{m}` | {e} | {cells(r)} |" for m, by_eps in by_model.items() for e, r in sorted(by_eps.items())]


def render(table: dict, square: dict, art: dict, warn: list[str], commands: list[str], args, estimates: dict) -> str:
    out = [
        "# AutoAttack: robust accuracy of the shipped recognizers (FER+ test)",
        "",
        f"Report: `{' '.join(['python', *sys.argv])}`. Chunks computed by:",
        "",
        *[f"- `{c}`" for c in commands],
        "",
        "- **Faces**: FER+ test (labels `fer2013new.csv`, majority protocol) in one seeded order (seed 0); each row",
        "  uses the first *n* of it (a random subset when n < 3,546). Whole 48x48 crop, white-box through the",
        "  deployed model (flip TTA included), against the true label; adversarials rounded to uint8 before reading.",
        "- **AutoAttack** standard version (Croce & Hein 2020; the authors' code, `pyautoattack` 0.2.0): APGD-CE",
        "  (100 iterations), APGD-T (targeted DLR, 100 iterations x each other class: 7, `fer` 6), FAB-T (same",
        "  targets), Square (5,000 queries); each stage only on faces still correct. Columns: accuracy after each",
        "  stage (cumulative), % with 95% Wilson intervals. PGD-20: random start, step 2.5*eps/20. eps in /255.",
        "- `landmarks` is not differentiable (dlib between pixels and classifier): not in this table.",
        "- Seconds per face, one torch thread: CPU seconds of the process (the cost itself) and wall seconds (on",
        "  this 2-core CPU shared with training runs and other jobs, so longer).",
        "",
        "| model | eps | n | clean % | APGD-CE % | APGD-T % | FAB-T % | Square = AutoAttack % | PGD-20 % | "
        "CPU s/face AA | CPU s/face PGD-20 | wall s/face AA |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    stages = ("clean", "apgd-ce", "apgd-t", "fab-t", "square")
    out += model_eps_rows(
        table,
        lambda r: (
            f"{r['n']} | {' | '.join(_p(r[s]) if s in r else '-' for s in stages)} | {_p(r['pgd20'])} | "
            f"{r['cpu_seconds_per_face']:.2f} | {r['pgd_cpu_seconds_per_face']:.2f} | {r['seconds_per_face']:.2f}"
        ),
    )
    out += estimate_table(estimates)
    out += alone_table(square, "Square", "Square alone (5,000 queries), the gradient-masking check")
    out += alone_table(art, "ART APGD-CE", "ART 1.20.1's APGD-CE on the same faces, the cross-check of our first stage")
    out += ["", "## Gradient-masking flags", ""]
    out += [f"- {w}" for w in warn] if warn else ["None raised."]
    return "\n".join(out) + "\n"


def prefix(parts: list[dict | None]) -> list[dict]:
    """The chunks cached in order up to the first missing one."""
    done = []
    for p in parts:
        if p is None:
            break
        done.append(p)
    return done


def model_rows(rec: Recognizer | None, cache: Path, x: torch.Tensor, y: torch.Tensor, eps: int, a) -> list[dict]:
    """Per-face chunk results for one model and eps, computed where missing (rec None: cache only)."""
    parts = []
    for s, e in chunks(len(x), a.chunk):
        path = cache / a.version / f"eps{eps}" / f"{s}-{e}.json"
        if path.exists() or rec is None:
            parts.append(json.loads(path.read_text()) if path.exists() else None)
            continue
        part = run_chunk(rec, x[s:e], y[s:e], eps, a.version, a.seed + s) | {"command": a.command}
        parts.append(cached(path, part))
        still = sum(f >= len(part["stages"]) for f in part["fooled_at"])
        print(
            f"{rec.name} eps {eps} faces {s}-{e}: {part['cpu_seconds_autoattack'] / (e - s):.2f} CPU s/face, "
            f"{still} still correct",
            flush=True,
        )
    return prefix(parts)


def pgd_rows(rec: Recognizer | None, cache: Path, x: torch.Tensor, y: torch.Tensor, eps: int, a) -> list[dict]:
    """PGD-20 per chunk over the first --pgd-limit faces, taken from the AutoAttack chunk where one exists
    (same chunk, same seed, same result), computed where missing (rec None: cache only)."""
    parts = []
    for s, e in chunks(len(x), a.chunk):
        path = cache / a.version / f"eps{eps}" / f"{s}-{e}.json"
        if not path.exists():
            path = cache / "pgd20" / f"eps{eps}" / f"{s}-{e}.json"
        if path.exists() or rec is None:
            parts.append(json.loads(path.read_text()) if path.exists() else None)
            continue
        parts.append(cached(path, pgd_chunk(rec, x[s:e], y[s:e], eps, a.seed + s) | {"command": a.command}))
        if (e // a.chunk) % 10 == 0 or e == len(x):
            print(f"{rec.name} eps {eps} PGD-20 faces up to {e}", flush=True)
    return prefix(parts)


def alone_row(kind: str, rec: Recognizer | None, cache: Path, x, y, a, eps: int, faces: int) -> dict | None:
    """An attack alone next to our APGD-CE stage on the same first faces (those of the first chunk).
    With rec None (--report-only): the largest cached run on at most that many faces."""
    n = min(faces, a.chunk, len(x))
    path = cache / f"{kind}-alone" / f"eps{eps}-0-{n}.json"
    first = cache / a.version / f"eps{eps}" / f"0-{min(a.chunk, len(x))}.json"
    if rec is None and not path.exists():
        sizes = [int(f.stem.rsplit("-", 1)[1]) for f in path.parent.glob(f"eps{eps}-0-*.json")]
        n = max((k for k in sizes if k <= n), default=0)
        path = cache / f"{kind}-alone" / f"eps{eps}-0-{n}.json"
    if not first.exists() or (rec is None and not path.exists()):
        return None
    if path.exists():
        alone = json.loads(path.read_text())
    else:
        alone = cached(path, alone_chunk(kind, rec, x[:n], y[:n], eps, a.seed) | {"command": a.command})
        print(f"{rec.name} {kind} alone eps {eps}: {100 * np.mean(alone['correct']):.1f}% correct", flush=True)
    fooled = np.array(json.loads(first.read_text())["fooled_at"][:n])
    return {
        "eps": eps,
        "n": n,
        "command": alone.get("command", "?"),
        "alone": float(np.mean(alone["correct"])),
        "apgd_ce": float(np.mean(fooled > 0)),
        "cpu_seconds_per_face": alone["cpu_seconds"] / n,
    }


def seeded_faces(test, limit: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `limit` faces of FER+ test in the benchmark's seeded order, as RGB crops, and their labels."""
    order = np.random.default_rng(seed).permutation(len(test))[:limit]
    x = torch.from_numpy(test.images[order]).float().div(255).unsqueeze(1).repeat(1, 3, 1, 1)
    return x, torch.from_numpy(test.labels[order]).long()


def parse_weights(items: list[str], parser: argparse.ArgumentParser) -> dict[str, Path]:
    extra = {}
    for item in items:
        name, eq, path = item.partition("=")
        if not eq or not Path(path).is_file():
            parser.error(f"--weights {item!r}: expected name=path.pt of an existing file")
        extra[name] = Path(path)
    return extra


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=3546, help="the first N faces of the seeded order")
    p.add_argument(
        "--pgd-limit", type=int, default=0, help="PGD-20 on the first N faces, to estimate AutoAttack on them"
    )
    p.add_argument("--models", nargs="+", default=differentiable())
    p.add_argument("--weights", nargs="*", default=[], help="more models as name=path.pt (emocloak checkpoints)")
    p.add_argument("--eps", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--version", default="standard", choices=["standard", "fast"])
    p.add_argument("--chunk", type=int, default=64, help="faces per cached chunk")
    p.add_argument("--square-faces", type=int, default=64, help="faces Square alone runs on, <= chunk (0: none)")
    p.add_argument("--square-eps", type=int, default=4)
    p.add_argument("--art-faces", type=int, default=0, help="faces ART's APGD-CE cross-checks ours on (0: none)")
    p.add_argument("--art-eps", type=int, default=4)
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "autoattack")
    p.add_argument("--report-only", action="store_true", help="write the results from the cache, attack nothing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    extra = parse_weights(a.weights, p)
    test = load_ferplus(DATA / "ferplus", "test")
    x, y = seeded_faces(test, max(a.limit, a.pgd_limit), a.seed)
    a.command = " ".join(["nice -n 10 python", *sys.argv])
    table, square, art, commands, robust, estimates = {}, {}, {}, {}, {}, {}
    for name in dict.fromkeys([*a.models, *extra]):
        cache = a.runs / model_key(name, extra)
        rec = None if a.report_only else load(name, extra)
        for eps in a.eps:
            done = model_rows(rec, cache, x[: a.limit], y[: a.limit], eps, a)
            if done:
                commands.update(dict.fromkeys(d.get("command", "?") for d in done))
                table.setdefault(name, {})[eps] = summarise(done)
                fooled = np.concatenate([d["fooled_at"] for d in done])
                robust.setdefault(name, {})[eps] = fooled >= len(done[0]["stages"])
                pgd = pgd_rows(rec, cache, x, y, eps, a) if a.pgd_limit > a.limit else []
                commands.update(dict.fromkeys(d.get("command", "?") for d in pgd))
                if est := estimate(robust[name][eps], pgd):
                    estimates.setdefault(name, {})[eps] = est
        if a.square_faces and (row := alone_row("square", rec, cache, x, y, a, a.square_eps, a.square_faces)):
            square[name] = row
        if a.art_faces and (row := alone_row("art-apgd-ce", rec, cache, x, y, a, a.art_eps, a.art_faces)):
            art[name] = row
    commands.update(dict.fromkeys(r["command"] for r in [*square.values(), *art.values()]))
    warn = flags(table, square, robust)
    for w in warn:
        print("FLAG", w, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {"args": {k: str(v) for k, v in vars(a).items()}, "table": table, "square_alone": square, "art": art}
    report["estimated_on_all"] = estimates
    report["flags"] = warn
    (RESULTS / "autoattack.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "autoattack.md").write_text(render(table, square, art, warn, list(commands), a, estimates))


if __name__ == "__main__":
    main()
