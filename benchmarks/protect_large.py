"""Time and peak memory of `protect` on a 12 MP photo, stage by stage.

    python benchmarks/protect_large.py [--method filters|tailored] [--threads 1] \
        [--out benchmarks/results/protect_large.json]

The photo: the shipped sample upscaled to 4000 px wide (LANCZOS) on a 4000x3000 grey canvas,
saved as JPEG q92, so the face is large, as in a phone portrait. Stages: the whole
`protect_file` (search, full-resolution filter pass, quality numbers, save, re-read), then the
full-resolution pass of one fixed random 3-filter chain (filters only) and `image_distances` alone.
Peak memory is the process's resident set, sampled every 20 ms. Compare trees in one sitting
(PYTHONPATH=other/src) on the same machine: its load moves wall times by 2x.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import emocloak

PAGE = os.sysconf("SC_PAGE_SIZE")


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
    return out, {"seconds": round(seconds, 1), "peak_mb": round(peak.value / 2**20)}


def photo(folder: Path) -> Path:
    im = Image.open(emocloak.sample_photo_path())
    big = im.resize((4000, round(4000 * im.size[1] / im.size[0])), Image.LANCZOS)
    canvas = Image.new("RGB", (4000, 3000), (90, 100, 110))
    canvas.paste(big.crop((0, 0, 4000, min(3000, big.size[1]))), (0, 0))
    path = folder / "photo12mp.jpg"
    canvas.save(path, quality=92)
    return path


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", choices=["filters", "tailored"], default="filters")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from emocloak.data.images import load_rgb
    from emocloak.metrics.perceptual import image_distances
    from emocloak.protection import protect_file
    from emocloak.recognizers.registry import ensemble

    peak = Peak()
    with tempfile.TemporaryDirectory() as tmp:
        src = photo(Path(tmp))
        for name in ensemble() if args.method == "tailored" else ["cnn"]:
            emocloak.load_recognizer(name)  # loading the models is not the cloak's time
        run = lambda: protect_file(src, Path(tmp) / "out", method=args.method, seed=0)  # noqa: E731
        (dst, info), whole = stage(peak, run)
        rgb, cloaked = load_rgb(src), load_rgb(dst)
    result = {
        "photo": "4000x3000 JPEG (sample upscaled)",
        "method": args.method,
        "emocloak_source": str(Path(emocloak.__file__).parent),
        "threads": args.threads,
        "protect_file": {**whole, "attack_seconds": round(info["seconds"], 1)},
    }
    if args.method == "filters":
        result["full_res_filter_pass"] = full_res_filter_pass(peak, rgb)
    else:
        result["fooled"] = [face["fooled"] for face in info["faces"]]
        result["success_saved"] = info["success_saved"]
    _, result["image_distances"] = stage(peak, lambda: image_distances(rgb, cloaked))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
