"""Tailored cloak beside the filter cloak, the universal cloak and plain PGD, read by every shipped recognizer.

    python benchmarks/tailored_cloak.py [--photos 244] [--faces 1000] [--loo] [--strengths mid] [--threads 1]

Data: TCCE test photos (the 6 held-out performers; a seeded subset when --photos < 244; label =
the posed expression) and FER+ test faces (seeded subset; labels fer2013new.csv, majority
protocol), as pre-cropped 48x48 faces. Each cloak runs on the same images:

* `tailored:S`: emocloak's tailored cloak at strength S, ensemble = the default one
  (`registry.ensemble()`); `tailored:S-X` (with --loo): the same without X, so X is a recognizer it never saw;
* `filters`: the EAA filter cloak (chain 3) searched on cnn; `universal`: the shipped untargeted
  perturbation; `pgd4`: PGD-20 at eps 4/255 on cnn's crop.

Every cloaked image is saved as a user's would be (TCCE: JPEG 95, the format kept; FER+: PNG) and
read back, then through three channels: as saved, JPEG 75, resize 0.5 + JPEG 75. Each recognizer
reads the clean image through the same channel. "changed" = reading differs from the clean one;
"protected" = among images the recognizer read correctly (clean, same channel), the share it no
longer reads correctly. Quality: SSIM (photo and the dlib face box), SSIMULACRA 2, seconds, peak
memory. Writes results/<out>.md and .json, and runs/<out>_examples.png (TCCE: original | cloaked |
difference x8; research photos, so kept out of the repository).
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import emocloak
from emocloak.attacks.evasion.tailored import TailoredCloak
from emocloak.attacks.evasion.universal import UniversalCloak, UniversalPerturbation
from emocloak.attacks.registry import make_attack
from emocloak.channel import jpeg, resize
from emocloak.data.datasets import load_manifest
from emocloak.data.ferplus import load_ferplus
from emocloak.data.images import load_rgb
from emocloak.faces.detect import crop
from emocloak.metrics.perceptual import ssim, ssimulacra2
from emocloak.recognizers.registry import available, ensemble

RESULTS = Path(__file__).parent / "results"
EXAMPLES = Path(__file__).resolve().parents[1] / "runs"  # pictures of research photos: never committed
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CHANNELS = {
    "saved": lambda im: im,
    "jpeg75": lambda im: jpeg(im, 75),
    "resize0.5+jpeg75": lambda im: jpeg(resize(im, 0.5), 75),
}


def save_as_user(image: np.ndarray, fmt: str) -> np.ndarray:
    """The cloak as `emocloak protect` writes it (JPEG 95 for JPEG inputs, PNG otherwise), read back."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return np.asarray(Image.open(buf).convert("RGB"))


def load_data(photos: int, faces: int, seed: int) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    out = {}
    if photos:
        ps = load_manifest(DATA / "tcce" / "manifest.csv", "test")
        idx = np.sort(rng.permutation(len(ps))[:photos])
        out["TCCE test"] = {
            "images": [load_rgb(ps.paths[i]) for i in idx],
            "labels": ps.labels[idx],
            "detect": True,
            "format": "JPEG",
        }
    if faces:
        fs = load_ferplus(DATA / "ferplus", "test")
        idx = np.sort(rng.permutation(len(fs))[:faces])
        gray = fs.images[idx]
        out["FER+ test"] = {
            "images": [np.repeat(g[..., None], 3, 2) if g.ndim == 2 else g for g in gray],
            "labels": fs.labels[idx],
            "detect": False,
            "format": "PNG",
        }
    return out


def cloaks(strengths: list[str], loo: bool, universal_files: list[str] = ()) -> dict[str, tuple]:
    """name -> (attack, recognizer it runs on, left-out recognizer or None); universal_files: NAME=PATH each."""
    members = [emocloak.load_recognizer(n) for n in ensemble()]
    cnn = emocloak.load_recognizer("cnn")
    out: dict[str, tuple] = {}
    for s in strengths:
        out[f"tailored:{s}"] = (TailoredCloak(members=members, strength=s), members[0], None)
        if loo and s == strengths[0]:
            for x in members:
                rest = [m for m in members if m is not x]
                out[f"tailored:{s}-{x.name}"] = (TailoredCloak(members=rest, strength=s), rest[0], x.name)
    out["filters"] = (make_attack("filters:chain=3"), cnn, None)
    out["universal"] = (make_attack("universal"), cnn, None)
    for item in universal_files:
        name, _, path = item.partition("=")
        out[f"universal-{name}"] = (UniversalCloak(UniversalPerturbation.load(path)), cnn, None)
    out["pgd4"] = (make_attack("pgd:eps=4,steps=20"), cnn, None)
    return out


def readings(rec, images: list[np.ndarray], detect: bool) -> np.ndarray:
    p = rec.predict_proba(images, detect=detect, on_no_face="nan")
    return np.where(np.isnan(p).any(1), -1, np.nan_to_num(p).argmax(1))


def face_ssim(a: np.ndarray, b: np.ndarray, detect: bool) -> float:
    if not detect:
        return ssim(a, b)
    faces = emocloak.load_recognizer("cnn").faces(a)
    return ssim(crop(a, faces[0].crop_box), crop(b, faces[0].crop_box)) if faces else float("nan")


def run(name: str, spec: tuple, data: dict, readers: dict, clean_reads: dict) -> dict:
    attack, rec, left_out = spec
    seconds, cloaked = [], []
    for im in data["images"]:
        t0 = time.perf_counter()
        out = attack(rec, [im], detect=data["detect"])
        seconds.append(time.perf_counter() - t0)
        cloaked.append(save_as_user(out.images[0], data["format"]))
    who = [left_out] if left_out else list(readers)
    y = data["labels"]
    rows: dict = {}
    for ch, f in CHANNELS.items():
        seen = [f(im) for im in cloaked]
        for r in who:
            before, after = clean_reads[(ch, r)], readings(readers[r], seen, data["detect"])
            ok = before == y
            rows[f"{ch}|{r}"] = {
                "changed": float(((after != before) & (before >= 0)).mean()),
                "protected": float((after[ok] != y[ok]).mean()) if ok.any() else float("nan"),
                "acc_before": float(ok.mean()),
                "acc_after": float((after == y).mean()),
            }
    orig, det = data["images"], data["detect"]
    pairs = list(zip(orig, cloaked, strict=True))
    return {
        "cloak": name,
        "left_out": left_out,
        "n": len(orig),
        "reads": rows,
        "ssim_median": float(np.median([ssim(a, b) for a, b in pairs])),
        "ssim_face_median": float(np.nanmedian([face_ssim(a, b, det) for a, b in pairs])),
        "ssimulacra2_median": float(np.median([ssimulacra2(a, b) for a, b in pairs])),
        "seconds_median": float(np.median(seconds)),
        "seconds_max": float(np.max(seconds)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "_cloaked": cloaked,
    }


def examples(data: dict, result: dict, path: Path, n: int = 8) -> None:
    """original | cloaked | difference amplified 8x around mid-gray, one row per photo, at 100%."""
    rows = []
    for a, b in list(zip(data["images"], result["_cloaked"], strict=True))[:n]:
        d = np.clip(128 + 8 * (b.astype(np.int16) - a.astype(np.int16)), 0, 255).astype(np.uint8)
        rows.append(np.concatenate([a, b, d], 1))
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def table(results: list[dict], reader_names: list[str], channel: str) -> list[str]:
    head = "| cloak | " + " | ".join(f"{r} changed / protected %" for r in reader_names) + " |"
    lines = [head, "|---" * (len(reader_names) + 1) + "|"]
    for res in results:
        cells = []
        for r in reader_names:
            v = res["reads"].get(f"{channel}|{r}")
            cells.append("" if v is None else f"{100 * v['changed']:.1f} / {100 * v['protected']:.1f}")
        lines.append(f"| {res['cloak']} | " + " | ".join(cells) + " |")
    return lines


def report(all_results: dict, args: argparse.Namespace, reader_names: list[str]) -> str:
    lines = [
        "# Tailored cloak beside the other cloaks, read by every shipped recognizer",
        "",
        f"Command: `python benchmarks/tailored_cloak.py {args.cmdline}` (CPU, {args.threads} torch thread(s)).",
        "",
        __doc__.split("\n\n", 1)[1].strip(),
        "",
    ]
    lines += [f"Ensemble of `tailored` (the default, `registry.ensemble()`): {', '.join(ensemble())}.", ""]
    for dname, results in all_results.items():
        n = results[0]["n"]
        lines += [f"## {dname} ({n} images)", ""]
        for ch in CHANNELS:
            lines += [f"### read {ch}", "", *table(results, reader_names, ch), ""]
        lines += [
            "### quality and cost",
            "",
            "| cloak | SSIM photo | SSIM face | SSIMULACRA 2 | s/image median | s/image max | peak RSS MB |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['cloak']} | {r['ssim_median']:.4f} | {r['ssim_face_median']:.4f} | {r['ssimulacra2_median']:.1f} | "
            f"{r['seconds_median']:.2f} | {r['seconds_max']:.2f} | {r['peak_rss_mb']:.0f} |"
            for r in results
        ]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=244, help="TCCE test photos (seeded subset below 244)")
    ap.add_argument("--faces", type=int, default=1000, help="FER+ test faces (seeded subset)")
    ap.add_argument("--strengths", nargs="+", default=["mid"])
    ap.add_argument("--loo", action="store_true", help="the first strength also without each member, read by it")
    ap.add_argument("--only", nargs="*", help="run only these cloaks (names as in the tables)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="tailored_cloak")
    ap.add_argument("--examples", help="the cloak whose TCCE photos make the example picture (default: tailored)")
    ap.add_argument(
        "--universal-file", nargs="*", default=[], help="NAME=PATH: also the universal cloak with this perturbation"
    )
    args = ap.parse_args()
    args.cmdline = " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items()
        if v is not None and v is not False and v != [] and k != "cmdline"  # `in (None, False)` would drop 0
    ).replace("--loo True", "--loo")
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(exist_ok=True)
    reader_names = available()
    readers = {n: emocloak.load_recognizer(n) for n in reader_names}
    specs = cloaks(args.strengths, args.loo, args.universal_file)
    if args.only:
        specs = {k: v for k, v in specs.items() if k in args.only}
    all_results: dict[str, list[dict]] = {}
    for dname, data in load_data(args.photos, args.faces, args.seed).items():
        clean_saved = [save_as_user(im, data["format"]) for im in data["images"]]
        clean_reads = {
            (ch, r): readings(rec, [f(im) for im in clean_saved], data["detect"])
            for ch, f in CHANNELS.items()
            for r, rec in readers.items()
        }
        all_results[dname] = []
        for name, spec in specs.items():
            t0 = time.perf_counter()
            res = run(name, spec, data, readers, clean_reads)
            print(f"{dname} {name}: {time.perf_counter() - t0:.0f} s", flush=True)
            if dname == "TCCE test" and name == (args.examples or f"tailored:{args.strengths[0]}"):
                EXAMPLES.mkdir(parents=True, exist_ok=True)
                examples(data, res, EXAMPLES / f"{args.out}_examples.png")
            res.pop("_cloaked")
            all_results[dname].append(res)
            (RESULTS / f"{args.out}.json").write_text(json.dumps(all_results, indent=1))
            (RESULTS / f"{args.out}.md").write_text(report(all_results, args, reader_names))


if __name__ == "__main__":
    main()
