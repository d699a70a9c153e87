"""Robustness of every shipped recognizer to FGSM and PGD, on FER+ test faces and TCCE test photos.

    python benchmarks/robustness.py [--faces 1000] [--eps 1 2 4 8] [--names cnn resnet fer]

For each recognizer, dataset, attack and eps (1/255 units): clean and attacked accuracy,
attack success rate (prediction leaves the clean prediction), median SSIM, the same
after JPEG quality 75, and transfer success to the other recognizers (the transfer
matrix). FER+ test: a seeded random subset (labels: fer2013new.csv, majority
protocol); TCCE: all 244 test photos, full pipeline (perturbation crafted on the face
crop, pasted into the 256x256 photo, re-detected). Also our PGD next to ART's
ProjectedGradientDescent on the same model and faces. Writes
benchmarks/results/robustness.md and robustness.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import emocloak
from emocloak.attacks import make_attack
from emocloak.attacks.evasion.pgd import PGD
from emocloak.channel import Channel
from emocloak.evaluation import evaluate, load_samples

RESULTS = Path(__file__).parent / "results"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def run_grid(names: list[str], eps_list: list[int], steps: int, datasets: dict, crafters: dict) -> list[dict]:
    """Attack each dataset's crafting recognizers; every other recognizer in `names` reads the result."""
    rows = []
    recs = {n: emocloak.load_recognizer(n) for n in names}
    jpeg = Channel.parse("jpeg:75")
    for dname, samples in datasets.items():
        for name in crafters[dname]:
            rec = recs[name]
            others = [r for n, r in recs.items() if n != name]
            for kind in ("fgsm", "pgd"):
                for eps in eps_list:
                    spec = f"fgsm:eps={eps}" if kind == "fgsm" else f"pgd:eps={eps},steps={steps}"
                    t0 = time.time()
                    rep, _ = evaluate(
                        samples, rec, make_attack(spec, seed=0), transfer=others, channel=jpeg, progress=False
                    )
                    s = rep["summary"]
                    rows.append(
                        {
                            "data": dname,
                            "recognizer": name,
                            "attack": kind,
                            "eps": eps,
                            "clean_acc": s["clean_accuracy"],
                            "attacked_acc": s["attacked_accuracy"],
                            "success": s["success_rate"],
                            "ssim_median": s["ssim"]["median"],
                            "jpeg_attacked_acc": s["channel"]["attacked_accuracy"],
                            "jpeg_success": s["channel"]["success_rate"],
                            "transfer": {k: v["success_rate"] for k, v in s["transfer"].items()},
                            "seconds_per_image": s["seconds_per_image"]["mean"],
                        }
                    )
                    print(
                        f"{dname} {name} {spec}: acc {s['clean_accuracy']:.3f}->{s['attacked_accuracy']:.3f} "
                        f"success {s['success_rate']:.3f} ({time.time() - t0:.0f}s)",
                        flush=True,
                    )
    return rows


def art_side_by_side(name: str, faces: int, eps_list: list[int], steps: int) -> list[dict]:
    """Robust accuracy and time, ours vs ART, on float crops (no uint8 rounding on either side)."""
    from emocloak.attacks.art_bridge import art_pgd
    from emocloak.data.ferplus import load_ferplus

    rec = emocloak.load_recognizer(name)
    test = load_ferplus(DATA / "ferplus", "test")
    idx = np.sort(np.random.default_rng(0).choice(len(test), faces, replace=False))
    test = test.subset(idx)
    x = torch.from_numpy(test.images).float().div(255).unsqueeze(1).repeat(1, 3, 1, 1)
    with torch.no_grad():
        clean = rec.logits(x).argmax(1)
    rows = []
    for eps in eps_list:
        ours = PGD(eps=eps / 255, steps=steps, seed=0)
        torch.manual_seed(0)
        t0 = time.time()
        x_ours = torch.cat([ours.craft(rec, x[i : i + 128], clean[i : i + 128], False) for i in range(0, len(x), 128)])
        t_ours = time.time() - t0
        t0 = time.time()
        x_art = torch.from_numpy(art_pgd(rec, x.numpy(), eps / 255, steps, ours.alpha, True))
        t_art = time.time() - t0
        with torch.no_grad():
            acc = [float((rec.logits(v).argmax(1).numpy() == test.labels).mean()) for v in (x, x_ours, x_art)]
        rows.append(
            {
                "eps": eps,
                "clean_acc": acc[0],
                "ours_acc": acc[1],
                "art_acc": acc[2],
                "ours_seconds": t_ours,
                "art_seconds": t_art,
            }
        )
        print(f"ART check eps {eps}: ours {acc[1]:.4f} ({t_ours:.0f}s) ART {acc[2]:.4f} ({t_art:.0f}s)", flush=True)
    return rows


def _p(v: float) -> str:
    return f"{100 * v:.1f}"


def render(rows: list[dict], art: list[dict], args: argparse.Namespace) -> str:
    out = [
        "# Robustness of the shipped recognizers to FGSM and PGD",
        "",
        f"Command: `{' '.join(['python', *sys.argv])}` (CPU, {args.threads} torch thread(s), shared with other jobs).",
        "",
        f"- **FER+ test**: {args.faces} faces drawn with seed 0 from the 3,546 test faces (labels `fer2013new.csv`,",
        "  majority protocol); whole 48x48 crop attacked.",
        "- **TCCE test**: all 244 photos of the 6 held-out performers; perturbation crafted on the recognizer's",
        "  face crop, pasted into the photo, rounded to uint8, and read again through the full pipeline.",
        "- eps in 1/255 (L-inf). PGD: random start, step 2.5*eps/steps. Success = prediction leaves the clean one.",
        "  SSIM: full image (FER+: the 48x48 face; TCCE: the 256x256 colour photo). JPEG: quality 75 after the attack;",
        "  its success is measured against the recognizer's reading of the JPEG-compressed clean image.",
        "",
    ]
    for dname in dict.fromkeys(r["data"] for r in rows):
        out += [
            f"## {dname}",
            "",
            "| recognizer | attack | eps | clean acc % | attacked acc % | success % | SSIM median | "
            "acc after JPEG75 % | success after JPEG75 % |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in rows if r["data"] == dname):
            out.append(
                f"| {r['recognizer']} | {r['attack']} | {r['eps']} | {_p(r['clean_acc'])} | "
                f"{_p(r['attacked_acc'])} | {_p(r['success'])} | {r['ssim_median']:.3f} | "
                f"{_p(r['jpeg_attacked_acc'])} | {_p(r['jpeg_success'])} |"
            )
        out += [
            "",
            f"### Transfer matrix, {dname}: success % of PGD-{args.steps} crafted on the row, read by the column",
            "",
        ]
        names, sources = args.names, list(dict.fromkeys(r["recognizer"] for r in rows if r["data"] == dname))
        for eps in args.eps:
            out += [
                f"eps {eps}/255:",
                "",
                "| crafted on \\ read by | " + " | ".join(names) + " |",
                "|---|" + "---|" * len(names),
            ]
            for src in sources:
                r = next(
                    r
                    for r in rows
                    if r["data"] == dname and r["recognizer"] == src and r["attack"] == "pgd" and r["eps"] == eps
                )
                cells = [_p(r["success"]) if t == src else _p(r["transfer"][t]) for t in names]
                out.append(f"| {src} | " + " | ".join(cells) + " |")
            out.append("")
    if art:
        out += [
            f"## Cross-check: our PGD vs ART's ProjectedGradientDescent ({args.names[0]}, FER+ test, "
            f"{args.art_faces} faces, PGD-{args.steps}, random start, float crops)",
            "",
            "| eps | clean acc % | ours: robust acc % | ART: robust acc % | difference (points) | "
            "ours seconds | ART seconds |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in art:
            out.append(
                f"| {r['eps']} | {_p(r['clean_acc'])} | {_p(r['ours_acc'])} | {_p(r['art_acc'])} | "
                f"{100 * abs(r['ours_acc'] - r['art_acc']):.1f} | {r['ours_seconds']:.1f} | "
                f"{r['art_seconds']:.1f} |"
            )
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faces", type=int, default=1000)
    p.add_argument("--art-faces", type=int, default=1000)
    p.add_argument("--eps", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--names", nargs="+", default=["cnn", "resnet", "fer"])
    p.add_argument("--tcce-names", nargs="*", default=None, help="recognizers attacked on TCCE (default --names)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    datasets = {"FER+ test": load_samples(DATA / "ferplus", "test", limit=a.faces, seed=0)}
    crafters = {"FER+ test": a.names}
    tcce_names = a.names if a.tcce_names is None else a.tcce_names
    if tcce_names:
        datasets["TCCE test"] = load_samples(DATA / "tcce", "test")
        crafters["TCCE test"] = tcce_names
    rows = run_grid(a.names, a.eps, a.steps, datasets, crafters)
    art = art_side_by_side(a.names[0], a.art_faces, [2, 8], a.steps)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "robustness.json").write_text(json.dumps({"grid": rows, "art": art}, indent=2))
    (RESULTS / "robustness.md").write_text(render(rows, art, a))


if __name__ == "__main__":
    main()
