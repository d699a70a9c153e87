"""Finding faces in large photos: fer's Haar cascade at working sizes, and HOG confirming its candidates.

    python benchmarks/large_photo_faces.py --data ../shared/data/tcce --out benchmarks/results/large_photo_faces

Canvases: the TCCE test photos, three to a 4000x3000 canvas, each scaled so its face (dlib's box on
the 256 px photo) is 100-800 px wide, pasted onto a texture from skimage.data upscaled to the canvas
(coffee, rocket, a cat, the Hubble deep field, tissue, a retina, brick, grass, gravel: no faces).
A candidate is genuine when its IoU with a pasted face's box is >= 0.3. Per working size (the long
side of the copy the cascade searches; 'full' is fer's own way): faces found by size, candidates in
texture, seconds, and the HOG score `faces.detect.confirm_score` gives each candidate. Then the
photos alone, at 256 px and upscaled x8 (2048 px): faces per photo that dlib (`detect_faces`) and
fer (`fer_faces`) find, fer's way (whole frame, nothing confirmed) and emocloak's.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image
from protect_large import detection

from emocloak.data.datasets import load_manifest
from emocloak.data.images import load_rgb
from emocloak.faces.detect import MIN_SCORE, Box, confirm_score, detect_faces, iou
from emocloak.recognizers import fer_port

TEXTURES = ("coffee", "rocket", "chelsea", "hubble_deep_field", "immunohistochemistry", "retina", "brick", "grass")
TEXTURES += ("gravel",)
FACE_SIDES = (100, 150, 200, 300, 500, 800)
WORK_SIDES = (1024, 1280, 1600, 2000, 4000)  # 4000: the whole 4000x3000 frame
CANVAS = (4000, 3000)


def texture(i: int) -> Image.Image:
    import skimage.data

    a = getattr(skimage.data, TEXTURES[i % len(TEXTURES)])()
    a = np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]
    return Image.fromarray(a).resize(CANVAS, Image.LANCZOS)


def canvas(i: int, photos: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, list[Box], list[int]]:
    """Three photos pasted into thirds of a textured canvas; their face boxes and face sizes."""
    im, truth, sizes = texture(i), [], []
    third = CANVAS[0] // 3
    for j, photo in enumerate(photos):
        (face,) = detect_faces(photo)[:1]
        size = FACE_SIDES[(3 * i + j) % len(FACE_SIDES)]
        k = size / face.width
        side = round(photo.shape[1] * k)
        x = int(rng.integers(j * third, max(j * third + 1, (j + 1) * third - side)))
        y = int(rng.integers(0, CANVAS[1] - side))
        im.paste(Image.fromarray(photo).resize((side, side), Image.LANCZOS), (x, y))
        truth.append(face.scaled(k).shifted(x, y))
        sizes.append(size)
    return np.asarray(im), truth, sizes


def genuine(box: Box, truth: list[Box]) -> bool:
    return max((iou(box, t) for t in truth), default=0.0) >= 0.3


def measure_canvas(rgb: np.ndarray, truth: list[Box]) -> dict:
    out: dict = {"cascade": {}}
    for side in WORK_SIDES:
        t0 = time.perf_counter()
        boxes = fer_port.cascade_boxes(rgb, side)
        seconds = time.perf_counter() - t0
        cands = [{"box": b.as_list(), "genuine": genuine(b, truth), "hog": confirm_score(rgb, b)} for b in boxes]
        found = [any(iou(b, t) >= 0.3 for b in boxes) for t in truth]
        out["cascade"][side] = {"seconds": seconds, "candidates": cands, "found": found}
    t0 = time.perf_counter()
    faces = fer_port.fer_faces(rgb)
    out["fer_faces"] = {"seconds": time.perf_counter() - t0, "genuine": [genuine(f.box, truth) for f in faces]}
    out["fer_faces"]["found"] = [any(iou(f.box, t) >= 0.3 for f in faces) for t in truth]
    dl = detect_faces(rgb)
    out["dlib"] = {
        "genuine": [genuine(b, truth) for b in dl],
        "found": [any(iou(b, t) >= 0.3 for b in dl) for t in truth],
    }
    return out


def canvases(photos: list[np.ndarray], log) -> list[dict]:
    rng = np.random.default_rng(0)
    n = -(-len(photos) // 3)
    rows = []
    for i in range(n):
        three = [photos[(3 * i + j) % len(photos)] for j in range(3)]
        rgb, truth, sizes = canvas(i, three, rng)
        rows.append({"sizes": sizes, **measure_canvas(rgb, truth)})
        log(f"canvas {i + 1}/{n}")
    return rows


def faithful_fer_faces(rgb: np.ndarray) -> list:
    """fer's own way: the whole frame, nothing confirmed (protect_large.py's baseline detection)."""
    with detection("baseline"):
        return fer_port.fer_faces(rgb)


def photo_counts(photos: list[np.ndarray], upscale: int) -> dict:
    """Faces per photo for each detector, and how far emocloak's fer box is from fer's own (IoU)."""
    counts: dict[str, list[int]] = {"dlib": [], "fer (fer's way)": [], "fer (emocloak)": []}
    ious = []
    for photo in photos:
        if upscale > 1:
            photo = np.asarray(Image.fromarray(photo).resize((256 * upscale,) * 2, Image.LANCZOS))
        own, ours = faithful_fer_faces(photo), fer_port.fer_faces(photo)
        counts["dlib"].append(len(detect_faces(photo)))
        counts["fer (fer's way)"].append(len(own))
        counts["fer (emocloak)"].append(len(ours))
        if own and ours:
            ious.append(max(iou(a.box, ours[0].box) for a in own))
    return {
        "faces_per_photo": {k: dict(sorted(Counter(v).items())) for k, v in counts.items()},
        "photos_with_a_face": {k: sum(c > 0 for c in v) for k, v in counts.items()},
        "iou_largest_fer_face_min": round(min(ious), 3) if ious else None,
    }


def summary(rows: list[dict]) -> dict:
    by_side: dict = {}
    for side in WORK_SIDES:
        found = Counter()
        for r in rows:
            found.update(s for s, f in zip(r["sizes"], r["cascade"][side]["found"], strict=True) if f)
        cands = [c for r in rows for c in r["cascade"][side]["candidates"]]
        real, fake = [c["hog"] for c in cands if c["genuine"]], [c["hog"] for c in cands if not c["genuine"]]
        by_side[side] = {
            "found_by_face_side": {s: found[s] for s in FACE_SIDES},
            "candidates_in_texture": len(fake),
            "median_seconds": round(float(np.median([r["cascade"][side]["seconds"] for r in rows])), 3),
            "hog_genuine_min": round(min(real), 2) if real else None,
            "hog_texture_max": round(max(fake), 2) if fake else None,
            "kept_by_hog_genuine": sum(s >= MIN_SCORE for s in real),
            "genuine_candidates": len(real),
            "kept_by_hog_texture": sum(s >= MIN_SCORE for s in fake),
        }
    total = Counter(s for r in rows for s in r["sizes"])
    final = Counter()
    for r in rows:
        final.update(s for s, f in zip(r["sizes"], r["fer_faces"]["found"], strict=True) if f)
    dl = Counter()
    for r in rows:
        dl.update(s for s, f in zip(r["sizes"], r["dlib"]["found"], strict=True) if f)
    return {
        "canvases": len(rows),
        "faces_by_side": {s: total[s] for s in FACE_SIDES},
        "cascade": by_side,
        "fer_faces": {
            "found_by_face_side": {s: final[s] for s in FACE_SIDES},
            "false": sum(not g for r in rows for g in r["fer_faces"]["genuine"]),
            "median_seconds": round(float(np.median([r["fer_faces"]["seconds"] for r in rows])), 3),
        },
        "dlib": {
            "found_by_face_side": {s: dl[s] for s in FACE_SIDES},
            "false": sum(not g for r in rows for g in r["dlib"]["genuine"]),
        },
    }


def _cells(by_side: dict) -> str:
    return " | ".join(str(v) for v in by_side.values())


def markdown(s: dict, photos: dict, command: str) -> str:
    sizes = " | ".join(f"{k} px" for k in FACE_SIDES)
    n = " / ".join(str(v) for v in s["faces_by_side"].values())
    lines = [
        "# Finding faces in large photos",
        "",
        f"    {command}",
        "",
        f"{s['canvases']} canvases of 4000x3000, each with 3 TCCE test photos pasted onto an upscaled texture,",
        f"faces of 100-800 px ({n} faces of each side). Candidates of fer's Haar cascade by working size",
        "(the long side of the copy it searches; 4000: the whole frame, fer's own way), and HOG's score for",
        f"each at the scale `faces.detect.confirmed` looks (kept: >= {MIN_SCORE}, `MIN_SCORE`; -1.0: no HOG box",
        "there even at -1):",
        "",
        f"| working size | {sizes} | in texture | s | HOG: genuine min | texture max | kept: genuine | texture |",
        "|---" * (len(FACE_SIDES) + 7) + "|",
    ]
    for side, r in s["cascade"].items():
        found = _cells(r["found_by_face_side"])
        hog = f"{r['hog_genuine_min']} | {r['hog_texture_max']}"
        kept = f"{r['kept_by_hog_genuine']}/{r['genuine_candidates']} | {r['kept_by_hog_texture']}"
        lines.append(f"| {side} | {found} | {r['candidates_in_texture']} | {r['median_seconds']} | {hog} | {kept} |")
    ff, dl = s["fer_faces"], s["dlib"]
    lines += [
        "",
        "What the recognizers find (`fer_faces`: the cascade at `CASCADE_MAX_SIDE`, confirmed; dlib: HOG on a",
        "640 px copy):",
        "",
        f"| detector | {sizes} | false | s (median) |",
        "|---" * (len(FACE_SIDES) + 3) + "|",
        f"| fer_faces | {_cells(ff['found_by_face_side'])} | {ff['false']} | {ff['median_seconds']} |",
        f"| detect_faces (dlib) | {_cells(dl['found_by_face_side'])} | {dl['false']} | |",
        "",
        "The TCCE test photos alone: faces per photo, fer's way (whole frame, nothing confirmed)",
        "and emocloak's; the IoU is the smallest between the largest face emocloak's fer finds and fer's own.",
        "",
        "| photos | detector | photos with a face | faces per photo |",
        "|---|---|---|---|",
    ]
    for key, block in photos.items():
        for det, k in block["photos_with_a_face"].items():
            lines.append(f"| {key} | {det} | {k} | {block['faces_per_photo'][det]} |")
        lines.append(f"| {key} | IoU emocloak/fer's own fer box, min | {block['iou_largest_fer_face_min']} | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="TCCE folder (manifest.csv)")
    ap.add_argument("--photos", type=int, default=0, help="test photos to use (0: all)")
    ap.add_argument("--out", type=Path, required=True, help="results path without suffix (.json and .md)")
    args = ap.parse_args()
    paths = load_manifest(args.data / "manifest.csv", split="test").paths
    photos = [load_rgb(p) for p in paths[: args.photos or None]]
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    rows = canvases(photos, log)
    result = {"summary": summary(rows), "photos": {}}
    for k in (1, 8):
        result["photos"][f"{len(photos)} at {256 * k} px"] = photo_counts(photos, k)
        log(f"photos x{k} counted")
    command = shlex.join(["python", "benchmarks/large_photo_faces.py", *sys.argv[1:]])
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, **result, "canvases": rows}) + "\n")
    text = markdown(result["summary"], result["photos"], command)
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
