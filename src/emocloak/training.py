"""Training recognizers on pre-cropped faces: soft (vote) labels, batched augmentation, resumable.

The loop takes an optional `adversary` hook so that defences (PGD-AT, FAAT) reuse it
unchanged: the hook maps a clean batch to the batch the model is trained on.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emocloak.data.ferplus import FaceSet
from emocloak.recognizers.facenet import FaceNet


@dataclass
class TrainConfig:
    arch: str = "vgg"
    width: int = 24
    epochs: int = 28
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 5e-4
    seed: int = 0
    threads: int = 2
    soft_labels: bool = True
    extra: dict = field(default_factory=dict)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, 48, 48) uint8 -> (N, 1, 48, 48) float in [0, 1]."""
    return torch.from_numpy(images).float().div_(255.0).unsqueeze(1)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random affine (rotate, scale, shift), flip, brightness/contrast and erasing, on a whole batch."""
    n = x.shape[0]

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return torch.rand(*(shape or (n,)), generator=gen) * (hi - lo) + lo

    ang = u(-15, 15) * math.pi / 180
    scale = u(0.85, 1.15)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, u(-0.12, 0.12)], 1), torch.stack([sin * flip, cos, u(-0.12, 0.12)], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * u(0.7, 1.3).view(n, 1, 1, 1) + mean + u(-0.15, 0.15).view(n, 1, 1, 1)
    # random erasing: one box of up to a quarter of the face on half the batch
    h, w = x.shape[-2:]
    bh, bw = (u(0.1, 0.5) * h).long(), (u(0.1, 0.5) * w).long()
    y0, x0 = (u(0, 1) * (h - bh)).long(), (u(0, 1) * (w - bw)).long()
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    in_rows = (rows >= y0.view(n, 1, 1)) & (rows < (y0 + bh).view(n, 1, 1))
    in_cols = (cols >= x0.view(n, 1, 1)) & (cols < (x0 + bw).view(n, 1, 1))
    box = in_rows & in_cols & (torch.rand(n, generator=gen) < 0.5).view(n, 1, 1)
    x = torch.where(box.unsqueeze(1), torch.rand(n, 1, 1, 1, generator=gen), x)
    return x.clamp_(0, 1)


@torch.no_grad()
def accuracy(model: nn.Module, data: FaceSet, batch: int = 512) -> float:
    model.eval()
    x = to_tensor(data.images)
    pred = torch.cat([model(x[i : i + batch]).argmax(1) for i in range(0, len(x), batch)])
    return float((pred.numpy() == data.labels).mean())


Adversary = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def train(
    cfg: TrainConfig,
    train_set: FaceSet,
    valid_set: FaceSet,
    out: Path,
    adversary: Adversary | None = None,
    log: Callable[[str], None] = print,
) -> FaceNet:
    """Train and write `out` (weights + meta); resumes from `out`.ckpt if it exists."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = FaceNet(cfg.arch, width=cfg.width)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(train_set) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps, pct_start=0.2)
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt, start, history, elapsed = out.with_suffix(".ckpt"), 0, [], 0.0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        if state.get("config") != asdict(cfg):
            raise ValueError(f"{ckpt} was made with another config; delete it to start afresh")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        start, history, elapsed = state["epoch"], state["history"], state["elapsed"]
        log(f"resumed from {ckpt} at epoch {start}")
    x_all = to_tensor(train_set.images)
    y_soft = torch.from_numpy(train_set.votes if cfg.soft_labels else np.eye(8, dtype=np.float32)[train_set.labels])
    for epoch in range(start, cfg.epochs):
        t0 = time.time()
        model.train()
        perm = torch.randperm(len(x_all), generator=gen)
        total = 0.0
        for i in range(steps):
            idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            xb, yb = augment(x_all[idx], gen), y_soft[idx]
            if adversary is not None:
                xb = adversary(model, xb, yb, idx)
                model.train()
            loss = -(yb * F.log_softmax(model(xb), 1)).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        elapsed += time.time() - t0
        acc = accuracy(model, valid_set)
        history.append({"epoch": epoch + 1, "loss": total / steps, "valid_acc": acc, "seconds": elapsed})
        log(f"epoch {epoch + 1}/{cfg.epochs} loss {total / steps:.4f} valid {acc:.4f} ({elapsed:.0f}s)")
        state = {
            "config": asdict(cfg),
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "sched": sched.state_dict(),
            "gen": gen.get_state(),
            "epoch": epoch + 1,
            "history": history,
            "elapsed": elapsed,
        }
        torch.save(state, ckpt)
    save_weights(model, out, {"config": asdict(cfg), "history": history, "train_seconds": elapsed})
    return model


def save_weights(model: FaceNet, out: Path, meta: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"arch": model.arch, "width": meta["config"]["width"], "state_dict": model.state_dict()}, out)
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2))
