"""Seconds per training batch of a FaceNet, default memory layout against channels_last, in one run.

    python benchmarks/train_speed.py [--arch vgg] [--width 32] [--threads 2] [--batches 10] [--rounds 3]
        [--out benchmarks/results/train_speed.md]

`emocloak.training.train` keeps the model and every batch in channels_last (oneDNN's convolution
layout on CPUs). This times the same loop as training (batched augmentation, soft-label
cross-entropy, SGD step) on random 48x48 faces in both layouts, alternating rounds so that a
shared machine's load falls on both; the ratio is the result, not the seconds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from emocloak.recognizers.facenet import FaceNet
from emocloak.training import augment, standard_objective, train_step


def seconds_per_batch(arch: str, width: int, channels_last: bool, batches: int, seed: int = 0) -> float:
    torch.manual_seed(seed)
    model = FaceNet(arch, width=width)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.rand(128, 1, 48, 48, generator=gen), torch.softmax(torch.randn(128, 8, generator=gen), 1)
    for i in range(batches + 3):  # 3 warm-up batches
        if i == 3:
            t0 = time.perf_counter()
        xb = augment(x, gen).contiguous(memory_format=fmt)
        train_step(model, opt, xb, y, None, None, standard_objective)
    return (time.perf_counter() - t0) / batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="vgg")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    times: dict[str, list[float]] = {"default": [], "channels_last": []}
    for _ in range(a.rounds):
        for layout in times:
            times[layout].append(seconds_per_batch(a.arch, a.width, layout == "channels_last", a.batches))
    med = {k: float(np.median(v)) for k, v in times.items()}
    epoch = 28709 / 128  # batches in a FER+ train epoch
    lines = [
        "# Training speed: default layout against channels_last",
        "",
        f"    python benchmarks/train_speed.py --arch {a.arch} --width {a.width} --threads {a.threads} "
        f"--batches {a.batches} --rounds {a.rounds}",
        "",
        "| layout | s a batch of 128 (median of rounds) | rounds | a FER+ train epoch at that rate |",
        "|---|---|---|---|",
        *(
            f"| {k} | {med[k]:.3f} | {', '.join(f'{t:.3f}' for t in v)} | {med[k] * epoch:.0f} s |"
            for k, v in times.items()
        ),
        "",
        f"channels_last is **{med['default'] / med['channels_last']:.2f}x** the default layout's speed.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.write_text(text)


if __name__ == "__main__":
    main()
