"""Does the tailored cloak carry to recognizers it never saw? Leave-one-out and held-out readers, per setting.

    python benchmarks/transfer.py --split test --photos 244 --settings low mid high --out transfer_test
    python benchmarks/transfer.py --split train --photos 20 --settings mid 6/0.3 5/0.5 high --out transfer_tuning

Data: TCCE photos of the chosen split (test: the 6 held-out performers; train: the training
performers, for tuning), a seeded subset when --photos is smaller than the split. Settings: a
strength preset (low, mid, high) or CAP/FLOOR (cap in 1/255, floor as a share of it).

Per setting and photo:
* leave-one-out (unless --no-loo): the cloak made with the default ensemble less one member, read by
  that member: one cloak per member. "LOO" = share of (photo, member) pairs whose reading changed.
* held-out readers: the cloak of the whole default ensemble (what `protect` makes), read by every
  shipped recognizer outside the ensemble (`metrics.held_out`), and by --readers (.pt files).
  "panel" = share of (photo, reader) pairs whose reading changed.
* "changed" = the reader's label on a JPEG-75 re-save of the cloak differs from its label on a
  JPEG-75 re-save of the original (a face it no longer finds counts as changed, one it never found
  is not counted). The cloak is saved as `protect` saves a JPEG input (quality 95) before the re-save.
* quality of the whole-ensemble cloak (SSIM, SSIMULACRA 2, medians) and its seconds (median, max).
* the per-photo estimate against leave-one-out: among photos the estimate calls weak and among the
  others, how often the left-out members changed (does the warning mean anything?).
With --large, each setting also times whole 12 MP files (1 and 3 faces) through `protect_file`.
Results: results/<out>.md and .json (one entry per setting, kept between runs: a setting already in
the .json is not recomputed unless --redo), and results/<out>.png (protection vs SSIMULACRA 2).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import emocloak
from emocloak.attacks.budget import Budget
from emocloak.attacks.evasion.tailored import STRENGTHS, TailoredCloak
from emocloak.attacks.evasion.universal import UniversalCloak, UniversalPerturbation
from emocloak.channel import jpeg
from emocloak.data.datasets import load_manifest
from emocloak.data.images import load_rgb
from emocloak.metrics import held_out
from emocloak.metrics.perceptual import ssim, ssimulacra2
from emocloak.recognizers.registry import ensemble, load_facenet

RESULTS = Path(__file__).parent / "results"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@cache
def universal_file(path: str) -> UniversalPerturbation:
    """A universal .pt setting, read once however many photos and labels ask for it."""
    return UniversalPerturbation.load(path)


def budget(setting: str) -> Budget:
    """A preset's budget, CAP/FLOOR, or a universal file's (a flat box where it learnt none)."""
    if setting.endswith(".pt"):
        up = universal_file(setting)
        return up.budget or replace(STRENGTHS["mid"], cap=up.eps, floor=1.0, taper=0.0)
    if setting in STRENGTHS:
        return STRENGTHS[setting]
    cap, _, floor = setting.partition("/")
    return replace(STRENGTHS["mid"], cap=float(cap) / 255, floor=float(floor))


def photos(split: str, n: int, seed: int) -> tuple[list[str], list[np.ndarray]]:
    ps = load_manifest(DATA / "tcce" / "manifest.csv", split)
    idx = np.sort(np.random.default_rng(seed).permutation(len(ps))[:n])
    return [Path(ps.paths[i]).name for i in idx], [load_rgb(ps.paths[i]) for i in idx]


def as_posted(image: np.ndarray) -> np.ndarray:
    """Saved as `protect` saves a JPEG (quality 95), then re-saved by the platform at JPEG 75."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=95)
    return jpeg(np.asarray(Image.open(buf).convert("RGB")), 75)


def label(rec, image: np.ndarray) -> int:
    p = rec.predict_proba([image], on_no_face="nan")[0]
    return -1 if np.isnan(p).any() else int(p.argmax())


def changed(before: int, after: int) -> bool | None:
    return None if before < 0 else after < 0 or after != before


def one_photo(image: np.ndarray, setting: str, members: list, readers: list, loo: bool, options: dict) -> dict:
    """Everything one setting measures on one photo (options: more TailoredCloak arguments).

    A universal file (.pt) is added to the faces its first recognizer finds, as `protect` adds it.
    """
    b = budget(setting)
    t0 = time.perf_counter()
    if setting.endswith(".pt"):
        full = UniversalCloak(universal_file(setting))(members[0], [image]).images[0]
    else:
        full = TailoredCloak(members=members[1:], strength=b, **options)(members[0], [image]).images[0]
    seconds = time.perf_counter() - t0
    clean, seen = jpeg(image, 75), as_posted(full)
    panel = {r.name: changed(label(r, clean), label(r, seen)) for r in readers}
    out = {"seconds": seconds, "ssim": ssim(image, full), "ssimulacra2": ssimulacra2(image, full), "panel": panel}
    if loo:
        out["loo"] = {}
        for m in members:
            rest = [o for o in members if o is not m]
            adv = TailoredCloak(members=rest[1:], strength=b, **options)(rest[0], [image]).images[0]
            out["loo"][m.name] = changed(label(m, clean), label(m, as_posted(adv)))
    return out


def seconds_12mp(setting: str, folder: Path) -> dict[str, float]:
    """Whole-file seconds of `protect_file` (default ensemble, this setting) on the 12 MP photos of
    benchmarks/protect_large.py, one face and three; models are loaded before the clock."""
    from protect_large import photo

    from emocloak.protection import protect_file
    from emocloak.recognizers.base import clear_face_cache

    out = {}
    for faces in (1, 3):
        src = photo(folder, faces)
        clear_face_cache()
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            protect_file(src, Path(tmp), strength=budget(setting), seed=0)
            out[f"{faces} face{'s' if faces > 1 else ''}"] = round(time.perf_counter() - t0, 2)
    return out


def rate(values: list[bool | None]) -> float:
    counted = [v for v in values if v is not None]
    return float(np.mean(counted)) if counted else float("nan")


def summarise(rows: list[dict], setting: str) -> dict:
    """Per setting: LOO and panel rates (overall and per reader), quality, seconds, estimate vs LOO."""
    b = budget(setting)
    summary: dict = {"setting": setting, "budget": f"cap {b.cap * 255:g}/255, floor {b.floor:g}", "n": len(rows)}
    for key in ("loo", "panel"):
        if key in rows[0]:
            names = list(rows[0][key])
            summary[key] = rate([r[key][n] for r in rows for n in names])
            summary[f"{key}_by_reader"] = {n: rate([r[key][n] for r in rows]) for n in names}
    summary["ssim_median"] = float(np.median([r["ssim"] for r in rows]))
    summary["ssimulacra2_median"] = float(np.median([r["ssimulacra2"] for r in rows]))
    summary["seconds_median"] = float(np.median([r["seconds"] for r in rows]))
    summary["seconds_max"] = float(np.max([r["seconds"] for r in rows]))
    if "loo" in rows[0]:
        weak = [_weak(r["panel"]) for r in rows]
        for flag, name in ((True, "loo_when_weak"), (False, "loo_when_not_weak")):
            picked = [v for r, w in zip(rows, weak, strict=True) if w == flag for v in r["loo"].values()]
            summary[name] = {"photos": sum(w == flag for w in weak), "rate": rate(picked)}
    return summary


def _weak(panel: dict) -> bool:
    """The per-photo estimate's verdict, as `metrics.held_out` gives it (one face per TCCE photo)."""
    before = {n: None if v is None else {"emotion": "a"} for n, v in panel.items()}
    after = {n: None if v else {"emotion": "a"} for n, v in panel.items()}
    return held_out.face_estimate([0, 0, 0, 0], before, after)["weak"]


def pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.1f}%"


def report(results: dict) -> str:
    commands = dict.fromkeys(s["command"] for s in results["settings"].values())
    lines = [
        "# Tailored cloak: does it carry to recognizers it never saw?",
        "",
        "Commands (CPU, 1 torch thread): " + ", ".join(f"`{c}`" for c in commands) + ".",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        f"Ensemble: {', '.join(results.get('members', ensemble()))}. "
        f"Held-out readers: {', '.join(results['readers'])}."
        + (f" Cloak options: {json.dumps(results['cloak'])}." if results.get("cloak") else ""),
        "",
        "| setting | budget | photos | LOO changed (JPEG 75) | held-out readers changed | SSIM | SSIMULACRA 2 "
        "| s/photo median (max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in results["settings"].values():
        lines.append(
            f"| {s['setting']} | {s['budget']} | {s['n']} | {pct(s.get('loo', float('nan')))} | {pct(s['panel'])} | "
            f"{s['ssim_median']:.4f} | {s['ssimulacra2_median']:.1f} | {s['seconds_median']:.2f} "
            f"({s['seconds_max']:.2f}) |"
        )
    lines += ["", "Per reader (changed after JPEG 75):", ""]
    for s in results["settings"].values():
        loo = ", ".join(f"{n} {pct(v)}" for n, v in s.get("loo_by_reader", {}).items()) or "-"
        panel = ", ".join(f"{n} {pct(v)}" for n, v in s["panel_by_reader"].items())
        lines.append(f"- {s['setting']}: left out {loo}; held out {panel}")
    timed = [s for s in results["settings"].values() if "seconds_12mp" in s]
    if timed:
        how = f"`{results['large_command']}`, " if "large_command" in results else ""
        what = f"Seconds for a whole 12 MP file ({how}`protect_file`, one thread; photos of `protect_large.py`):"
        lines += ["", what, ""]
        lines += [
            f"- {s['setting']}: " + ", ".join(f"{k} {v:.1f} s" for k, v in s["seconds_12mp"].items()) for s in timed
        ]
    lines += ["", "The per-photo estimate against leave-one-out (share of left-out members that changed):", ""]
    for s in results["settings"].values():
        if "loo_when_weak" in s:
            w, nw = s["loo_when_weak"], s["loo_when_not_weak"]
            lines.append(
                f"- {s['setting']}: photos called weak {w['photos']}, LOO {pct(w['rate'])}; "
                f"others {nw['photos']}, LOO {pct(nw['rate'])}"
            )
    return "\n".join(lines) + "\n"


def _label(setting: str) -> str:
    """A preset's name with its budget (preset budgets change between releases; CAP/FLOOR do not)."""
    if setting.endswith(".pt"):
        return Path(setting).stem
    b = budget(setting)
    return setting if "/" in setting else f"{setting} ({b.cap * 255:g}/{b.floor:g})"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ss = list(results["settings"].values())
    q = [s["ssimulacra2_median"] for s in ss]
    for key, mark, name in (("loo", "o-", "left-out member"), ("panel", "s--", "held-out readers")):
        pts = sorted((x, 100 * s[key], _label(s["setting"])) for x, s in zip(q, ss, strict=True) if key in s)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], mark, label=name)
            for x, y, t in pts:
                ax.annotate(t, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.axvline(70, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("SSIMULACRA 2 (median; higher = less visible)")
    ax.set_ylabel("readings changed after JPEG 75 (%)")
    ax.set_title(f"Tailored cloak, TCCE {results['split']} ({ss[0]['n']} photos)")
    ax.invert_xaxis()
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _load(spec: str):
    """A shipped recognizer by name, or NAME=PATH of a weights file not (yet) shipped."""
    name, _, path = spec.partition("=")
    return load_facenet(path, name) if path else emocloak.load_recognizer(name)


def save(results: dict, path: Path, out: str) -> None:
    path.write_text(json.dumps(results, indent=1))
    (RESULTS / f"{out}.md").write_text(report(results))
    plot(results, RESULTS / f"{out}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=["train", "test"], default="test")
    ap.add_argument("--photos", type=int, default=244)
    ap.add_argument(
        "--settings",
        nargs="+",
        default=["low", "mid", "high"],
        help="presets, CAP/FLOOR, or universal .pt files (then the ensemble is the files' recognizers, and no LOO)",
    )
    ap.add_argument("--readers", nargs="*", default=[], help="more held-out readers: NAME=PATH of a .pt file")
    ap.add_argument("--members", nargs="*", help="the ensemble: names or NAME=PATH (default: the shipped one)")
    ap.add_argument("--cloak", nargs="*", default=[], help="TailoredCloak arguments as KEY=JSON, e.g. balance=true")
    ap.add_argument("--no-loo", action="store_true", help="held-out readers only (one cloak a photo)")
    ap.add_argument("--redo", action="store_true", help="recompute settings already in the results file")
    ap.add_argument("--large", action="store_true", help="also time whole 12 MP files per setting (1 and 3 faces)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="transfer")
    a = ap.parse_args()
    torch.set_num_threads(1)
    universal = [universal_file(s).meta["recognizers"] for s in a.settings if s.endswith(".pt")]
    if universal and (len(universal) < len(a.settings) or any(u != universal[0] for u in universal)):
        ap.error("universal files go in a run of their own, all learnt on the same recognizers")
    members = [_load(m) for m in (universal[0] if universal else a.members or ensemble())]
    used = [m.name for m in members]
    readers = [emocloak.load_recognizer(n) for n in held_out.held_out_readers(used)] + [_load(r) for r in a.readers]
    options = {k: json.loads(v) for k, _, v in (c.partition("=") for c in a.cloak)}
    names, images = photos(a.split, a.photos, a.seed)
    path = RESULTS / f"{a.out}.json"
    results = json.loads(path.read_text()) if path.exists() else {"settings": {}, "rows": {}}
    results.update(split=a.split, photos=names)
    results.setdefault("members", used)
    results.setdefault("cloak", options)
    results.setdefault("readers", [r.name for r in readers])  # as the cached settings were read (per reader: below)
    cmd = "python benchmarks/transfer.py " + " ".join(sys.argv[1:])
    if a.large:
        results["large_command"] = cmd
    for setting in a.settings:
        if setting in results["settings"] and not a.redo:
            if a.large and "seconds_12mp" not in results["settings"][setting]:
                with tempfile.TemporaryDirectory() as tmp:
                    results["settings"][setting]["seconds_12mp"] = seconds_12mp(setting, Path(tmp))
                save(results, path, a.out)
            continue
        rows = []
        for i, im in enumerate(images):
            rows.append(one_photo(im, setting, members, readers, not (a.no_loo or universal), options))
            print(f"{setting}: photo {i + 1}/{len(images)} ({rows[-1]['seconds']:.1f} s)", flush=True)
        results["settings"][setting] = {**summarise(rows, setting), "command": cmd}
        if a.large:
            with tempfile.TemporaryDirectory() as tmp:
                results["settings"][setting]["seconds_12mp"] = seconds_12mp(setting, Path(tmp))
        results["rows"][setting] = rows
        save(results, path, a.out)
        print(json.dumps(results["settings"][setting]), flush=True)


if __name__ == "__main__":
    main()
