"""Time and peak memory of `protect` on 12 MP photos with 1 and 3 faces, stage by stage.

    python benchmarks/protect_large.py [--method filters|tailored] [--threads 1] [--runs 3] \
        [--baseline-runs 1] [--out benchmarks/results/protect_large_tailored]

The photos, made from the shipped sample (the astronaut, public domain): "1 face", the sample upscaled
to 4000 px wide (LANCZOS) on a 4000x3000 canvas, so the face is large, as in a phone portrait; "3 faces",
the same with the sample's face pasted twice more, at about 550 and 300 px (only the first is big enough
for dlib's 640 px search; fer's cascade finds the other and HOG must confirm it). Both JPEG q92.
Each run is a whole `protect_file` (read, find faces, cloak, check, save, re-read, judge), with every
model loaded and the face memo cleared before the clock starts; the split is the sidecar's `stages`.
The baseline finds faces fer's own way (whole-frame cascade, nothing confirmed): the detection
before issue 35, everything else as now. Runs alternate baseline and current, photo by photo; the
tables give medians. Peak memory is the process's resident set, sampled every 20 ms. The machine's
load moves wall times by up to 2x: compare rows of one run only. `--method filters` also times one
fixed 3-filter chain over the whole frame (the filter cloak's memory peak).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import emocloak

PAGE = os.sysconf("SC_PAGE_SIZE")
STAGES = ("load", "detect", "optimise", "write_back", "cloak", "quality_check", "held_out", "save")
VARIANTS = ("now", "baseline")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class Peak:
    """Highest resident set size since `reset`, from a sampling thread."""

    def __init__(self) -> None:
        self.value = rss()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            self.value = max(self.value, rss())
            time.sleep(0.02)

    def reset(self) -> None:
        self.value = rss()


def stage(peak: Peak, f: Callable[[], object]) -> tuple[object, dict]:
    peak.reset()
    t0 = time.perf_counter()
    out = f()
    seconds = time.perf_counter() - t0
    time.sleep(0.05)
    return out, {"seconds": round(seconds, 2), "peak_mb": round(peak.value / 2**20)}


def upscaled_sample() -> Image.Image:
    im = Image.open(emocloak.sample_photo_path()).convert("RGB")
    big = im.resize((4000, round(4000 * im.size[1] / im.size[0])), Image.LANCZOS)
    canvas = Image.new("RGB", (4000, 3000), (90, 100, 110))
    canvas.paste(big.crop((0, 0, 4000, min(3000, big.size[1]))), (0, 0))
    return canvas


def photo(folder: Path, faces: int = 1) -> Path:
    """The 12 MP test photo with 1 face, or 3: the sample's face (a 200 px square of the 512 px sample) pasted
    at 5.5x (bottom left, face ~550 px) and 3x (top right, face ~300 px), clear of the big face."""
    canvas = upscaled_sample()
    if faces == 3:
        sample = Image.open(emocloak.sample_photo_path()).convert("RGB")
        face = sample.crop((124, 13, 324, 213))
        for k, at in ((5.5, (150, 1800)), (3.0, (2900, 250))):
            canvas.paste(face.resize((round(200 * k),) * 2, Image.LANCZOS), at)
    path = folder / f"photo12mp_{faces}face.jpg"
    canvas.save(path, quality=92)
    return path


@contextmanager
def detection(variant: str) -> Iterator[None]:
    """The baseline searches the whole frame with fer's cascade and confirms nothing (fer's own way)."""
    from emocloak.recognizers import fer_port

    old = fer_port.CASCADE_MAX_SIDE
    fer_port.CASCADE_MAX_SIDE = 10**9 if variant == "baseline" else old
    try:
        yield
    finally:
        fer_port.CASCADE_MAX_SIDE = old


def full_res_filter_pass(peak: Peak, rgb: np.ndarray) -> dict:
    """One fixed random 3-filter chain over the whole 12 MP frame: the filter cloak's peak."""
    from emocloak.attacks.evasion.filter_chain import FilterCloak
    from emocloak.faces.detect import Box
    from emocloak.recognizers.base import to_tensor

    cloak = FilterCloak(seed=0)
    chain = cloak.space.random_genes(3, np.random.default_rng(0)).reshape(1, -1)
    with torch.no_grad():
        _, full_pass = stage(peak, lambda: cloak._apply(to_tensor(rgb), chain, Box(1000, 500, 2500, 2000)))
    return full_pass


def preload(method: str) -> None:
    """Every model the run reads with, and the cloak's modules: loading is not the cloak's time."""
    from emocloak.metrics.held_out import held_out_readers
    from emocloak.protection import make_cloak
    from emocloak.recognizers.registry import ensemble

    members = ensemble() if method == "tailored" else ["cnn"]
    recs = [emocloak.load_recognizer(n) for n in (*members, *held_out_readers(members))]
    make_cloak(method, recs[: len(members)])


def one_run(peak: Peak, src: Path, out: Path, method: str, variant: str) -> dict:
    from emocloak.protection import protect_file
    from emocloak.recognizers.base import clear_face_cache

    clear_face_cache()
    with detection(variant):
        (_, info), whole = stage(peak, lambda: protect_file(src, out, method=method, seed=0))
    row = {"photo": src.name, "variant": variant, **whole, "stages": info["stages"]}
    if method == "tailored":
        row["regions"] = [f["region"] for f in info["faces"]]
        row["seen_by"] = [f["seen_by"] for f in info["faces"]]
        row["success_saved"] = info["success_saved"]
    return row


def medians(rows: list[dict]) -> list[dict]:
    """Per photo and variant: the median of every number over its runs."""
    out = []
    for key in dict.fromkeys((r["photo"], r["variant"]) for r in rows):
        runs = [r for r in rows if (r["photo"], r["variant"]) == key]
        med = lambda f, runs=runs: round(float(np.median([f(r) for r in runs])), 2)  # noqa: E731
        stages = {s: med(lambda r, s=s: r["stages"].get(s, 0.0)) for s in STAGES}
        faces = len(runs[0].get("regions", []))
        out.append(
            {
                "photo": key[0],
                "variant": key[1],
                "runs": len(runs),
                "regions": faces,
                "seconds": med(lambda r: r["seconds"]),
                "peak_mb": round(med(lambda r: r["peak_mb"])),
                "peak_mb_max": max(r["peak_mb"] for r in runs),
                "stages": stages,
            }
        )
    return out


def markdown(command: str, table: list[dict], args: argparse.Namespace) -> str:
    head = ["photo", "detection", "runs", "face regions", "whole s", *STAGES, "peak MB", "max"]
    lines = [
        f"# protect --method {args.method} on 12 MP photos: seconds per stage and peak memory",
        "",
        f"    {command}",
        "",
        f"Torch threads: {args.threads}; models loaded before the clock; medians over the runs. `now`: fer's",
        "cascade on a 1600 px copy, its faces confirmed by HOG; `baseline`: fer's cascade on the whole frame,",
        "nothing confirmed (the detection before issue 35). Stages (the sidecar's `stages`): load (read the",
        "photo, build the cloak), detect (every recognizer's detector on the original), optimise and",
        "write_back (the cloak's steps; resizing the perturbation to the face and pasting it), cloak (the rest",
        "of the cloak call: its reading before and after), quality_check (readings of the cloak, SSIM, and",
        "after saving the readings of the saved file), held_out (the held-out estimate: every other shipped",
        "recognizer on JPEG-75 copies of both), save (encode, write, re-read).",
        "",
        "| " + " | ".join(head) + " |",
        "|---" * len(head) + "|",
    ]
    for r in table:
        cells = [r["photo"], r["variant"], r["runs"], r["regions"], r["seconds"], *r["stages"].values()]
        cells += [r["peak_mb"], r["peak_mb_max"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", choices=["filters", "tailored"], default="filters")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--baseline-runs", type=int, default=1)
    ap.add_argument("--out", type=Path, help="results path without suffix: writes .json and .md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    preload(args.method)
    peak = Peak()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        photos = [photo(Path(tmp), n) for n in (1, 3)]
        for run in range(args.runs):
            for variant in VARIANTS if run < args.baseline_runs else VARIANTS[:1]:
                for src in photos:
                    rows.append(one_run(peak, src, Path(tmp) / f"out{len(rows)}", args.method, variant))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        extra = {}
        if args.method == "filters":
            from emocloak.data.images import load_rgb

            extra["full_res_filter_pass"] = full_res_filter_pass(peak, load_rgb(photos[0]))
    command = shlex.join(["python", "benchmarks/protect_large.py", *sys.argv[1:]])
    table = medians(rows)
    result = {"command": command, "threads": args.threads, "medians": table, "runs": rows, **extra}
    text = markdown(command, table, args)
    print(text)
    if args.out:
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(text + notes(args.out.with_suffix(".md")))


NOTES = "<!-- notes: kept when the script rewrites the tables above -->"


def notes(md: Path) -> str:
    """The hand-written notes below the NOTES marker of an earlier results file (one without the marker
    is kept whole below it), so rerunning never loses them."""
    old = md.read_text() if md.is_file() else ""
    if not old:
        return ""
    return "\n" + NOTES + (old.split(NOTES, 1)[1] if NOTES in old else "\n\n" + old)


if __name__ == "__main__":
    main()
