"""Learning a universal perturbation in feature space (Pri-EMO); design and measurements: docs/design.md."""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim import ssim

from emocloak.attacks.base import require_gradient
from emocloak.attacks.budget import Budget
from emocloak.attacks.evasion.universal.apply import apply_universal_batch, resize_delta
from emocloak.attacks.evasion.universal.perturbation import MAX_EPS, UniversalPerturbation
from emocloak.errors import DatasetError
from emocloak.labels import LABELS, label_index
from emocloak.metrics.robustness import success
from emocloak.progress import bar as progress_bar
from emocloak.recognizers.base import Recognizer

MIN_CENTROID = 16  # fewer training crops read as the target than this: use the probability-weighted centroid
UNTARGETED_KAPPA = 1.0  # logit margin past the boundary before a face stops counting in the untargeted hinge


def _float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(255) if x.dtype == torch.uint8 else x.float()


@torch.no_grad()
def _read_all(rec: Recognizer, crops: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and probabilities of every training crop, once."""
    feats, probs = [], []
    for s in range(0, len(crops), batch):
        f, logits = rec.features_and_logits(_float(crops[s : s + batch]))
        feats.append(f)
        probs.append(logits.softmax(1))
    return torch.cat(feats), torch.cat(probs)


def _centroid(feats: torch.Tensor, probs: torch.Tensor, target: int) -> tuple[torch.Tensor, str]:
    read_as = probs.argmax(1) == target
    if int(read_as.sum()) >= MIN_CENTROID:
        return feats[read_as].mean(0), f"mean of {int(read_as.sum())} crops read as {LABELS[target]}"
    w = probs[:, target]
    return (w[:, None] * feats).sum(0) / w.sum().clamp_min(1e-12), "p(target)-weighted mean of all crops"


@torch.no_grad()
def _budget_maps(budget: Budget, crops: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Each training crop's budget, once: it depends on the clean crop only (6,000 crops at 48 px: 55 MB)."""
    return torch.cat([budget.at_face_scale(_float(crops[s : s + batch])) for s in range(0, len(crops), batch)])


def _bpda_jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Forward: the real JPEG round trip; backward: identity."""
    from emocloak.attacks.evasion.filter_chain import jpeg_batch

    return x + (jpeg_batch(x.detach(), quality) - x).detach()


def _through_face_box(delta: torch.Tensor, gen: torch.Generator, max_scale: float) -> torch.Tensor:
    """delta as a recognizer meets it on a photo: resized to a random face-box side, then back.

    On a photo the pattern is stretched to the face box and the recognizer shrinks the box to its
    input size again; resizing is linear, so that is what reaches the model. Learning through
    random boxes keeps the pattern from living in detail that this round trip blurs away.
    """
    side = delta.shape[-1]
    box = int(torch.randint(side, int(side * max_scale) + 1, (1,), generator=gen))
    return resize_delta(resize_delta(delta, box, box), side, side)


def _loss(
    recs: Sequence[Recognizer],
    x: torch.Tensor,
    seen: torch.Tensor,
    refs: Sequence[torch.Tensor],
    clean: Sequence[torch.Tensor],
    target: int | None,
    ce_weight: float,
) -> torch.Tensor:
    """Mean over recognizers of the feature term plus `ce_weight` * a label term.

    Untargeted: cos(f(seen), f(x)) plus the hinge on the clean class's logit margin, which is
    zero once a face is misread, so the pattern keeps working on the faces it does not fool yet.
    Targeted: 1 - cos to the target centroid plus cross-entropy toward the target.
    """
    total = x.new_zeros(())
    for rec, ref, c in zip(recs, refs, clean, strict=True):
        feats, logits = rec.features_and_logits(seen)
        cos = F.cosine_similarity(feats, ref, dim=1).mean()
        if target is None:
            others = logits.scatter(1, c[:, None], -torch.inf).amax(1)
            hinge = F.relu(logits.gather(1, c[:, None])[:, 0] - others + UNTARGETED_KAPPA).mean()
            total = total + cos + ce_weight * hinge
        else:
            goal = torch.full((len(x),), target, dtype=torch.long)
            total = total + (1 - cos) + ce_weight * F.cross_entropy(logits, goal)
    return total / len(recs)


def learn_universal(
    recs: Sequence[Recognizer],
    crops: torch.Tensor,
    eps: float,
    target: int | str | None = None,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float | None = None,
    jpeg_quality: int | None = None,
    quality_weight: float = 0.0,
    ce_weight: float = 1.0,
    box_scale: float = 4.0,
    seed: int = 0,
    progress: bool = True,
    holdout: np.ndarray | None = None,
    data: str = "",
    budget: Budget | None = None,
) -> UniversalPerturbation:
    """Learn one delta for all `crops` ((N, 3, S, S), float in [0, 1] or uint8 to save memory).

    eps (and lr, default eps/10) are in [0, 1] pixel units, as for PGD; the file records eps in /255.
    box_scale > 1: each step passes delta through a random face box up to box_scale times its side
    (`_through_face_box`), so it survives being pasted into photos.
    `holdout`: (N, H, W, 3) uint8 faces never trained on, whose success rate goes into the metadata.
    budget: learn a pattern that each face receives under its own perceptual budget (cap = eps), as
    `apply_universal` will add it (see `UniversalPerturbation`).
    """
    for rec in recs:
        require_gradient(rec)
    if not 0 < eps <= MAX_EPS:
        raise ValueError(f"eps={eps} out of range (0, {MAX_EPS:.4f}]; it is in [0, 1] units, e.g. 8/255")
    if crops.dim() != 4 or crops.shape[1] != 3 or crops.shape[2] != crops.shape[3] or not len(crops):
        raise ValueError(f"crops must be a non-empty (N, 3, S, S) tensor, got {tuple(crops.shape)}")
    tgt = None if target is None else label_index(target) if isinstance(target, str) else int(target)
    face_budget = None if budget is None else replace(budget, cap=eps)
    maps = None if face_budget is None else _budget_maps(face_budget, crops)
    gen = torch.Generator().manual_seed(seed)
    reads = [_read_all(r, crops) for r in recs]
    centroids = None if tgt is None else [_centroid(f, p, tgt) for f, p in reads]
    delta = (torch.rand(1, *crops.shape[1:], generator=gen) * 2 - 1).mul_(eps).requires_grad_(True)
    opt = torch.optim.Adam([delta], lr=lr or eps / 10)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    order, pos = torch.randperm(len(crops), generator=gen), 0
    t0 = time.perf_counter()
    with progress_bar(disable=not progress) as bar:
        name = f"universal {'untargeted' if tgt is None else LABELS[tgt]}"
        task = bar.add_task(name, total=steps)
        for _ in range(steps):
            if pos + batch_size > len(crops) and pos:  # next epoch, reshuffled
                order, pos = torch.randperm(len(crops), generator=gen), 0
            idx = order[pos : pos + batch_size]
            pos += batch_size
            x = _float(crops[idx])
            d = _through_face_box(delta, gen, box_scale) if box_scale > 1 else delta
            if maps is not None:
                d = d / eps * maps[idx]
            x_adv = (x + d).clamp(0, 1)
            seen = _bpda_jpeg(x_adv, jpeg_quality) if jpeg_quality else x_adv
            refs = [f[idx] for f, _ in reads] if tgt is None else [c[None] for c, _ in centroids or []]
            loss = _loss(recs, x, seen, refs, [p[idx].argmax(1) for _, p in reads], tgt, ce_weight)
            if quality_weight:
                loss = loss + quality_weight * (1 - ssim(x_adv, x, data_range=1.0))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                delta.clamp_(-eps, eps)
            bar.update(task, advance=1, description=f"{name} loss {loss.item():.4f}")
    meta = {
        "format": 1,
        "recognizers": [r.name for r in recs],
        "eps": round(eps * 255, 6),
        "target": None if tgt is None else LABELS[tgt],
        "size": int(crops.shape[-1]),
        "data": data,
        "n_train": len(crops),
        "seed": seed,
        "steps": steps,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "batch_size": batch_size,
        "lr": lr or eps / 10,
        "jpeg_quality": jpeg_quality,
        "quality_weight": quality_weight,
        "ce_weight": ce_weight,
        "box_scale": box_scale,
        "budget": None if face_budget is None else face_budget.describe(),
        "loss": "feature cosine to clean + margin hinge"
        if tgt is None
        else "1 - feature cosine to target centroid + CE",
        "centroid": None if centroids is None else {r.name: how for r, (_, how) in zip(recs, centroids, strict=True)},
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "version": _version(),
    }
    if face_budget is None:
        del meta["budget"]
    up = UniversalPerturbation(delta.detach()[0].clamp(-eps, eps), meta)
    if holdout is not None:
        up.meta["holdout"] = evaluate_universal(recs, up, holdout, jpeg_quality)
    return up


def _version() -> str:
    from emocloak import __version__

    return __version__


def evaluate_universal(
    recs: Sequence[Recognizer], up: UniversalPerturbation, faces: np.ndarray, jpeg_quality: int | None = None
) -> dict:
    """Success rate per recognizer on (N, H, W, 3) uint8 faces, judged as `Attack` judges it.

    With jpeg_quality, also after a JPEG round trip of the cloaked faces (clean faces read as they are).
    """
    from emocloak.channel import jpeg

    adv = apply_universal_batch(faces, up)
    out: dict = {"n": len(faces), "success": {}}
    if jpeg_quality:
        out["success_after_jpeg"], out["jpeg_quality"] = {}, jpeg_quality
    for rec in recs:
        clean = rec.predict_crops(list(faces)).argmax(1)
        out["success"][rec.name] = float(success(rec.predict_crops(list(adv)).argmax(1), clean, up.target).mean())
        if jpeg_quality:
            after = rec.predict_crops([jpeg(a, jpeg_quality) for a in adv]).argmax(1)
            out["success_after_jpeg"][rec.name] = float(success(after, clean, up.target).mean())
    return out


def learn_from_dataset(
    data: str | Path,
    recs: Sequence[Recognizer],
    eps: float,
    target: int | str | None = None,
    size: int | None = None,
    holdout: float = 0.1,
    limit: int | None = None,
    seed: int = 0,
    **options: object,
) -> UniversalPerturbation:
    """`learn_universal` on a dataset's training split (crops at `size`, default the first recognizer's
    input size), a seeded `holdout` share of the faces kept out to measure success (in the metadata)."""
    from emocloak.attacks.evasion.universal.crops import face_crops
    from emocloak.data.datasets import load_dataset

    crops = face_crops(load_dataset(data, "train"), recs[0], size or recs[0].input_size, limit, seed)
    n_out = round(len(crops) * holdout)
    if len(crops) - n_out < 1:
        raise DatasetError(f"{data}: no training faces found")
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(crops)))
    kept = crops[order[:n_out]].permute(0, 2, 3, 1).numpy() if n_out else None
    what = f"{data} (train split, {len(crops) - n_out} faces; {n_out} held out)"
    return learn_universal(recs, crops[order[n_out:]], eps, target, seed=seed, holdout=kept, data=what, **options)
