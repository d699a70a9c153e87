"""Throughput of the batched torch Instagram filters against pilgram (PIL, one photo at a time).

    python benchmarks/filters_speed.py [--threads 1] [--batch 64] [--size 256] [--device cpu]

Photos: `batch` random size x size crops of skimage's astronaut (resized to 1.25 size).
Torch filters the whole batch in one apply_gene call (float32; on CPU it runs in
cache-sized chunks of images); pilgram filters photo by photo.
The chain is what the filter cloak scores: 4 genes, every photo its own random filters,
strength s in [0.7, 1] and intensity a in [0.9, 1.1]. pilgram has no intensity, so its
chain runs at a = 1, with the strength mix done by Image.blend. Best of `--repeat` runs.
Writes benchmarks/results/filters_speed.md.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pilgram
import skimage.data
import torch
from PIL import Image

from emocloak.attacks.filters import FILTER_NAMES, apply_chain, apply_gene

RESULTS = Path(__file__).parent / "results"
FILTERS = ("clarendon", "nashville", "earlybird", "maven", "xpro2")
CHAIN = 4


def photos(n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    big = round(size * 1.25)
    src = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((big, big), Image.LANCZOS))
    corners = rng.integers(0, big - size + 1, (n, 2))
    return [np.ascontiguousarray(src[i : i + size, j : j + size]) for i, j in corners]


def best_time(fn: Callable[[], object], repeat: int, sync: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def pilgram_chain(im: Image.Image, genes: list[tuple[int, float]]) -> Image.Image:
    for fid, s in genes:
        im = Image.blend(im, getattr(pilgram, FILTER_NAMES[fid])(im), s)
    return im


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--note", default="", help="a line to add to the report (e.g. what else ran)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rng = np.random.default_rng(args.seed)
    B = args.batch

    ims = photos(B, args.size, rng)
    pils = [Image.fromarray(im) for im in ims]
    x = torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).to(dev, torch.float32) / 255
    ones = torch.ones(B, device=dev)

    rows = []
    with torch.no_grad():
        for name in FILTERS:
            ids = torch.full((B,), FILTER_NAMES.index(name), device=dev)
            apply_gene(x, ids, ones, ones)  # warm-up (masks are cached per size)
            t_torch = best_time(lambda ids=ids: apply_gene(x, ids, ones, ones), args.repeat, sync)
            fn = getattr(pilgram, name)
            t_pil = best_time(lambda fn=fn: [fn(im) for im in pils], args.repeat, lambda: None)
            rows.append((name, B / t_torch, B / t_pil))

        ids = rng.integers(0, len(FILTER_NAMES), (CHAIN, B))
        s, a = rng.uniform(0.7, 1.0, (CHAIN, B)), rng.uniform(0.9, 1.1, (CHAIN, B))
        genes = [
            (torch.from_numpy(i).to(dev), torch.from_numpy(si).float().to(dev), torch.from_numpy(ai).float().to(dev))
            for i, si, ai in zip(ids, s, a, strict=True)
        ]
        apply_chain(x, genes)
        t_torch = best_time(lambda: apply_chain(x, genes), args.repeat, sync)
        per_photo = [[(int(ids[k, b]), float(s[k, b])) for k in range(CHAIN)] for b in range(B)]
        t_pil = best_time(
            lambda: [pilgram_chain(im, g) for im, g in zip(pils, per_photo, strict=True)], args.repeat, lambda: None
        )
        rows.append((f"random chain of {CHAIN} (mixed filters per photo)", B / t_torch, B / t_pil))

    cmd = shlex.join(["python", *sys.argv])
    lines = [
        "# Filter speed: batched torch filters vs pilgram",
        "",
        f"Command: `{cmd}`",
        "",
        f"- photos: {B} random {args.size}x{args.size} crops of skimage astronaut; torch filters the batch in one "
        "apply_gene call (float32; CPU runs it in cache-sized chunks), pilgram photo by photo",
        f"- torch {torch.__version__} on {dev.type}"
        + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "")
        + f", {torch.get_num_threads()} thread(s); pilgram {pilgram.__version__}, Pillow {Image.__version__}",
        f"- machine: {platform.processor() or platform.machine()}, {platform.system()}; best of {args.repeat} runs",
        "- pilgram's chain runs at intensity a = 1 (it has no intensity); ours at a in [0.9, 1.1]",
        *([f"- note: {args.note}"] if args.note else []),
        "",
        "| case | torch (img/s) | pilgram (img/s) | torch / pilgram |",
        "|---|---:|---:|---:|",
        *(f"| {n} | {t:.0f} | {p_:.0f} | {t / p_:.1f}x |" for n, t, p_ in rows),
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "filters_speed.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
