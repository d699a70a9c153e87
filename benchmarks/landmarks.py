"""The landmark recognizer (Shehu et al., RO-MAN 2020) next to `cnn`: the paper's table, plus an adaptive attack.

    python benchmarks/landmarks.py [--faces 1000] [--square-faces 300] [--square-queries 500]

For FER+ test (the first --faces faces, in file order) and TCCE test (all 244 photos, full
pipeline): clean accuracy of `landmarks` and `cnn`; accuracy under FGSM and PGD-20 at eps
2, 4, 8 /255 crafted on `cnn` (read by `cnn` itself, and transferred to `landmarks`: the paper's
setting); accuracy under the Square attack run against each recognizer itself (adaptive,
score-based black box, on the first --square-faces faces); the filter cloak searched on cnn and
on landmarks itself (the first --filter-faces faces); the drop in points; inference time
per face. Writes benchmarks/results/landmarks.md and landmarks.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import emocloak
from emocloak.attacks import make_attack
from emocloak.evaluation import Samples, evaluate, load_samples
from emocloak.recognizers.base import clear_face_cache

RESULTS = Path(__file__).parent / "results"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NAMES = ("landmarks", "cnn")


def head(s: Samples, n: int) -> Samples:
    """The first n samples, in file order."""
    return Samples(s.images[:n], s.labels[:n], s.names[:n], s.detect, s.source)


def universal_meta() -> dict | None:
    """The shipped untargeted universal perturbation's metadata, if one ships."""
    from emocloak.attacks.evasion.universal import default_path, default_perturbation

    return default_perturbation(None).meta if default_path(None).is_file() else None


def transfer_rows(dname: str, samples: Samples, eps_list: list[int], steps: int) -> list[dict]:
    """FGSM / PGD (and the shipped universal cloak) crafted on cnn, read by cnn and by landmarks (transfer)."""
    cnn, lm = (emocloak.load_recognizer(n) for n in ("cnn", "landmarks"))
    rows = []
    specs = [f"fgsm:eps={e}" for e in eps_list] + [f"pgd:eps={e},steps={steps}" for e in eps_list]
    for spec in specs + (["universal"] if universal_meta() else []):
        t0 = time.time()
        s = evaluate(samples, cnn, make_attack(spec, seed=0), transfer=[lm], progress=False)[0]["summary"]
        t = s["transfer"]["landmarks"]
        for name, r in (("cnn", s), ("landmarks", t)):
            rows.append(_row(dname, name, spec, "crafted on cnn", len(samples.images), r))
        print(
            f"{dname} {spec}: cnn {s['clean_accuracy']:.3f}->{s['attacked_accuracy']:.3f}, "
            f"landmarks {t['clean_accuracy']:.3f}->{t['attacked_accuracy']:.3f} ({time.time() - t0:.0f}s)",
            flush=True,
        )
    return rows


def square_rows(dname: str, samples: Samples, eps: int, queries: int) -> list[dict]:
    """Square attack against each recognizer itself: the adaptive test."""
    rows = []
    for name in NAMES:
        t0 = time.time()
        spec = f"square:eps={eps},queries={queries}"
        rep = evaluate(samples, emocloak.load_recognizer(name), make_attack(spec, seed=0), progress=False)[0]
        s = rep["summary"]
        rows.append({**_row(dname, name, spec, "adaptive (itself)", len(samples.images), s), "queries": s["queries"]})
        print(
            f"{dname} {name} {spec}: {s['clean_accuracy']:.3f}->{s['attacked_accuracy']:.3f} "
            f"success {s['success_rate']:.3f} median queries {s['queries']['median']:.0f} ({time.time() - t0:.0f}s)",
            flush=True,
        )
    return rows


def filter_rows(dname: str, samples: Samples, chain: int) -> list[dict]:
    """The filter cloak (EAA) searched on cnn (read by both: transfer) and on landmarks itself (adaptive)."""
    cnn, lm = (emocloak.load_recognizer(n) for n in ("cnn", "landmarks"))
    spec, n = f"filters:chain={chain}", len(samples.images)
    rows = []
    t0 = time.time()
    s = evaluate(samples, cnn, make_attack(spec, seed=0), transfer=[lm], progress=False)[0]["summary"]
    rows += [_row(dname, "cnn", spec, "searched on cnn", n, s)]
    rows += [_row(dname, "landmarks", spec, "searched on cnn", n, s["transfer"]["landmarks"])]
    own = evaluate(samples, lm, make_attack(spec, seed=0), progress=False)[0]["summary"]
    rows += [_row(dname, "landmarks", f"{spec} adaptive", "adaptive (itself)", n, own)]
    rows += [_row(dname, "cnn", f"{spec} adaptive", "adaptive (itself)", n, s)]
    print(
        f"{dname} {spec}: cnn {s['clean_accuracy']:.3f}->{s['attacked_accuracy']:.3f}, landmarks transfer "
        f"{s['transfer']['landmarks']['attacked_accuracy']:.3f}, landmarks adaptive {own['clean_accuracy']:.3f}->"
        f"{own['attacked_accuracy']:.3f} ({time.time() - t0:.0f}s)",
        flush=True,
    )
    return rows


def _row(dname: str, name: str, spec: str, how: str, n: int, s: dict) -> dict:
    keys = ("clean_accuracy", "attacked_accuracy", "success_rate", "face_lost_rate")
    return {"data": dname, "recognizer": name, "attack": spec, "how": how, "n": n, **{k: s[k] for k in keys}}


def speed(samples: Samples, n: int, repeat: int = 2) -> dict[str, float]:
    """Milliseconds per face for predict_proba on n samples, face detection cache cleared (best of `repeat`)."""
    out, n = {}, min(n, len(samples.images))
    for name in NAMES:
        rec = emocloak.load_recognizer(name)
        best = float("inf")
        for _ in range(repeat):
            clear_face_cache()
            t0 = time.perf_counter()
            rec.predict_proba(samples.images[:n], detect=samples.detect, on_no_face="nan")
            best = min(best, (time.perf_counter() - t0) / n * 1000)
        out[name] = best
    return out


def _p(v: float) -> str:
    return f"{100 * v:.1f}"


def render(rows: list[dict], speeds: dict, a: argparse.Namespace, command: str) -> str:
    meta = json.loads((Path(emocloak.__file__).parent / "recognizers" / "weights" / "landmarks.json").read_text())
    out = [
        "# The landmark recognizer (Shehu et al., RO-MAN 2020) next to `cnn`",
        "",
        f"Command: `{command}` (CPU, {torch.get_num_threads()} torch thread(s), machine shared with other jobs).",
        "",
        f"- `landmarks`: dlib 68 landmarks -> {meta['config']['n_features']} position/scale/roll-normalised features ->"
        f" `{meta['chosen']}` (chosen on FER+ valid; weights/landmarks.json). `cnn`: the shipped VGG-style CNN.",
        f"- **FER+ test**: the first {a.faces} of the 3,546 test faces (file order; labels `fer2013new.csv`, majority"
        " protocol); the 48x48 crop is attacked.",
        f"- **TCCE test**: {'all 244' if a.photos is None else f'the first {a.photos} of the 244'} photos of the 6"
        " held-out performers, full pipeline: perturbation crafted on the face"
        " crop, pasted into the photo, rounded to uint8, face and landmarks found again.",
        "- FGSM and PGD (20 steps, random start, step 2.5*eps/20) are crafted on `cnn` with its gradient; `landmarks`"
        " reads the same images (transfer: the paper's setting). `landmarks` has no gradient, so white-box attacks"
        " cannot target it.",
        f"- **Square** (Andriushchenko et al. 2020, L-inf, p=0.05, seed 0) runs against each recognizer itself with"
        f" {a.square_queries} score queries per face (early stop once fooled), on the first {a.square_faces} FER+ test"
        " faces and the TCCE photos above; its clean accuracy is on that subset.",
        *(
            [
                f"- **universal**: the shipped untargeted universal perturbation (Pri-EMO), learnt on"
                f" {'+'.join(uni['recognizers'])} at eps {uni['eps']:g}/255, added to every face (no query)."
            ]
            if (uni := universal_meta())
            else []
        ),
        f"- **filters**: the filter cloak (EAA, chain of 3, NSGA-II population 10, 10 generations, SSIM floor 0.8)"
        f" on the first {a.filter_faces} faces of each set: searched on `cnn` and read by `landmarks` (transfer),"
        " and searched on `landmarks` itself with its scores as the fitness (`adaptive`).",
        "- eps in 1/255. Accuracy counts a face that is no longer found (for `landmarks`: a degenerate landmark"
        " shape) as wrong; `lost %` is its share. Drop = clean minus attacked accuracy, in points.",
        "",
    ]
    for dname in dict.fromkeys(r["data"] for r in rows):
        out += [
            f"## {dname}",
            "",
            "| attack | how | faces | landmarks: clean % | attacked % | drop | lost % "
            "| cnn: clean % | attacked % | drop |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        mine = [r for r in rows if r["data"] == dname]
        for spec in dict.fromkeys(r["attack"] for r in mine):
            lm, cnn = (next(r for r in mine if r["attack"] == spec and r["recognizer"] == n) for n in NAMES)
            cells = []
            for r in (lm, cnn):
                drop = 100 * (r["clean_accuracy"] - r["attacked_accuracy"])
                cells += [_p(r["clean_accuracy"]), _p(r["attacked_accuracy"]), f"{drop:+.1f}"]
                if r is lm:
                    cells.append(_p(r["face_lost_rate"]))
            how = (
                "adaptive: against each itself"
                if spec.startswith("square") or spec.endswith("adaptive")
                else "searched on cnn"
                if spec.startswith("filters")
                else f"learnt on {'+'.join(uni['recognizers'])}"
                if spec == "universal" and (uni := universal_meta())
                else "crafted on cnn"
            )
            out.append(f"| {spec} | {how} | {lm['n']} | " + " | ".join(cells) + " |")
        sq = [r for r in mine if r["attack"].startswith("square")]
        if sq:
            out += [
                "",
                "Square queries per face (median / mean): "
                + ", ".join(f"{r['recognizer']} {r['queries']['median']:.0f} / {r['queries']['mean']:.0f}" for r in sq)
                + ".",
            ]
        out.append("")
    out += [
        "## Inference time per face (ms, best of 2, face-detection cache cleared)",
        "",
        "| input | " + " | ".join(NAMES) + " |",
        "|---|" + "---|" * len(NAMES),
    ]
    for what, t in speeds.items():
        out.append(f"| {what} | " + " | ".join(f"{t[n]:.1f}" for n in NAMES) + " |")
    out += [
        "",
        "FER+ crops: predict_proba on 48x48 faces, no detection (`landmarks`: upsampling to 160 px, dlib landmarks,"
        " features, classifier; `cnn`: one batched forward pass). TCCE photos: the whole pipeline from the photo,"
        " dlib HOG face detection included (the same detector for both).",
        "",
    ]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faces", type=int, default=1000)
    p.add_argument("--eps", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--square-faces", type=int, default=300)
    p.add_argument("--square-queries", type=int, default=500)
    p.add_argument("--square-eps", type=int, default=8)
    p.add_argument("--filter-faces", type=int, default=100, help="faces/photos the filter cloak searches (0: none)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--photos", type=int, default=None, help="only the first N TCCE test photos (default: all 244)")
    p.add_argument("--skip-tcce", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    command = " ".join(["python", *sys.argv])
    ferplus = load_samples(DATA / "ferplus", "test")
    datasets = {"FER+ test": (head(ferplus, a.faces), head(ferplus, a.square_faces))}
    if not a.skip_tcce:
        tcce = load_samples(DATA / "tcce", "test")
        tcce = head(tcce, a.photos or len(tcce.images))
        datasets["TCCE test"] = (tcce, tcce)
    rows = []
    for dname, (samples, sq_samples) in datasets.items():
        rows += transfer_rows(dname, samples, a.eps, a.steps)
        rows += square_rows(dname, sq_samples, a.square_eps, a.square_queries)
        if a.filter_faces:
            rows += filter_rows(dname, head(samples, a.filter_faces), 3)
    speeds = {"FER+ 48x48 crop": speed(datasets["FER+ test"][0], 500)}
    if not a.skip_tcce:
        speeds["TCCE photo (256x256)"] = speed(datasets["TCCE test"][0], 100)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "landmarks.json").write_text(json.dumps({"rows": rows, "ms_per_face": speeds}, indent=2))
    (RESULTS / "landmarks.md").write_text(render(rows, speeds, a, command))
    print(command)


if __name__ == "__main__":
    main()
