"""Which hooks each defence plugs into the one training loop (`emocloak.training.train`).

* standard: no adversary, cross-entropy on augmented clean faces;
* pgd-at: Madry PGD adversarial training in the L-inf eps ball;
* trades: TRADES, clean cross-entropy + beta * KL to the reading of a PGD example in the same ball;
* faat: the same ball, PGD steps weighted by the facial attention mask, plus the frequency loss.
  Its ablations are settings, not new defences: `freq_weight=0` is the mask alone,
  `mask_floor=1` (a flat mask, which is then not even computed) is the frequency loss alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from emocloak.data.datasets import load_dataset
from emocloak.data.ferplus import FaceSet
from emocloak.defences.adversarial_training import pgd_adversary
from emocloak.defences.faat import DEFAULT_RADIUS, DEFAULT_WEIGHT, faat_objective
from emocloak.defences.masks import DEFAULT_FLOOR, DEFAULT_SIGMA, dataset_masks
from emocloak.defences.trades import DEFAULT_BETA, trades_adversary, trades_objective
from emocloak.errors import DatasetError
from emocloak.recognizers.facenet import FaceNet
from emocloak.training import (
    KD_WEIGHT,
    TrainConfig,
    class_prior,
    distillation_from,
    logit_adjusted_objective,
    standard_objective,
    train,
)

DEFENCES = ("standard", "pgd-at", "trades", "faat")


@dataclass(frozen=True)
class DefenceConfig:
    """A defence and its settings; eps and alpha in 1/255 (as the CLI and papers quote them)."""

    defence: str = "faat"
    eps: float = 4.0
    steps: int = 2
    alpha: float | None = None  # None: eps / 2 (at 2 steps from a random start, stronger than 2.5 * eps / steps)
    freq_weight: float = DEFAULT_WEIGHT
    freq_radius: int = DEFAULT_RADIUS
    mask_floor: float = DEFAULT_FLOOR
    mask_sigma: float = DEFAULT_SIGMA
    beta: float = DEFAULT_BETA
    logit_adjust: float = 0.0  # tau of the logit-adjusted loss (standard, pgd-at); 0: plain cross-entropy

    def __post_init__(self) -> None:
        if self.defence not in DEFENCES:
            raise ValueError(f"unknown defence {self.defence!r}; valid: {', '.join(DEFENCES)}")
        if self.defence != "standard" and not (0 < self.eps <= 64 and self.steps >= 1):
            raise ValueError(f"eps must be in (0, 64] (/255) and steps >= 1, got eps={self.eps}, steps={self.steps}")
        if not 0 <= self.mask_floor <= 1 or self.freq_weight < 0 or self.freq_radius < 0:
            raise ValueError("mask floor must be in [0, 1], frequency weight and radius >= 0")
        if self.beta < 0:
            raise ValueError(f"TRADES beta must be >= 0, got {self.beta}")
        if not 0 <= self.logit_adjust <= 2:
            raise ValueError(f"logit adjustment tau must be in [0, 2], got {self.logit_adjust}")
        if self.logit_adjust and self.defence not in ("standard", "pgd-at"):
            raise ValueError(f"logit adjustment replaces the cross-entropy of standard and pgd-at, not {self.defence}")

    @property
    def uses_mask(self) -> bool:
        return self.defence == "faat" and self.mask_floor < 1

    def settings(self) -> dict:
        """What the training record keeps: only the settings this defence uses."""
        adjust = {"logit_adjust": self.logit_adjust} if self.logit_adjust else {}
        if self.defence == "standard":
            return {"defence": "standard", **adjust}
        keep = {"defence", "eps", "steps", "alpha"}
        if self.defence == "faat":
            keep |= {"freq_weight", "freq_radius", "mask_floor", "mask_sigma"}
        if self.defence == "trades":
            keep |= {"beta"}
        return {k: v for k, v in asdict(self).items() if k in keep} | adjust


def arms(eps: float = 4.0, steps: int = 2) -> dict[str, DefenceConfig]:
    """The arms of the defence comparison (scripts/train_defences.py, benchmarks/defences.py): one budget each."""
    faat = DefenceConfig("faat", eps=eps, steps=steps)
    return {
        "standard": DefenceConfig("standard"),
        "pgd-at": DefenceConfig("pgd-at", eps=eps, steps=steps),
        "trades": DefenceConfig("trades", eps=eps, steps=steps),
        "faat": faat,
        "faat-mask": replace(faat, freq_weight=0.0),
        "faat-freq": replace(faat, mask_floor=1.0),
    }


def hooks(d: DefenceConfig, prior: torch.Tensor | None = None) -> dict:
    """The `adversary` and `objective` hooks of `training.train` for a defence (prior: for logit adjustment)."""
    plain = standard_objective
    if d.logit_adjust:
        if prior is None:
            raise ValueError("logit adjustment needs the training labels' class prior (training.class_prior)")
        plain = logit_adjusted_objective(d.logit_adjust * prior.log())
    if d.defence == "standard":
        return {"adversary": None, "objective": plain}
    alpha = (d.eps / 2 if d.alpha is None else d.alpha) / 255
    if d.defence == "trades":
        return {"adversary": trades_adversary(d.eps / 255, d.steps, alpha), "objective": trades_objective(d.beta)}
    adversary = pgd_adversary(d.eps / 255, d.steps, alpha, weighted=d.uses_mask)
    faat = d.defence == "faat" and d.freq_weight > 0
    return {"adversary": adversary, "objective": faat_objective(d.freq_weight, d.freq_radius) if faat else plain}


def training_faces(
    data: str | Path, d: DefenceConfig, limit: int | None = None, seed: int = 0
) -> tuple[FaceSet, torch.Tensor | None]:
    """The train split of a face dataset (a seeded subset of `limit` faces) and, for FAAT, its attention masks.

    Landmarks are computed once and cached, keyed by folder name, split, count and subset, so
    the full FER+ train split is "ferplus-train-28389".
    """
    faces = load_dataset(data, "train")
    if not isinstance(faces, FaceSet) or faces.images.ndim != 3:
        raise DatasetError(f"{data}: training needs pre-cropped gray faces (a FER+ folder or fer2013.csv)")
    key = f"{Path(data).resolve().name}-train-{len(faces)}"
    if limit is not None and limit < len(faces):
        faces = faces.subset(np.sort(np.random.default_rng(seed).choice(len(faces), limit, replace=False)))
        key += f"-limit{limit}-seed{seed}"
    masks = dataset_masks(faces.images, key, d.mask_floor, d.mask_sigma) if d.uses_mask else None
    return faces, masks


def check_teacher(d: DefenceConfig) -> None:
    """Distillation replaces the plain cross-entropy, so a teacher goes with the plain standard defence only."""
    if d.settings() != {"defence": "standard"}:
        raise ValueError("distillation replaces the plain cross-entropy, so it goes with --defence standard only")


def train_defence(
    d: DefenceConfig,
    cfg: TrainConfig,
    train_set: FaceSet,
    valid_set: FaceSet,
    out: Path,
    masks: torch.Tensor | None = None,
    log: Callable[[str], None] = print,
    progress: Callable[[int, int], None] | None = None,
) -> FaceNet:
    """Train `cfg`'s model with defence `d` (masks: from `training_faces`); resumable from `out`.ckpt."""
    if d.uses_mask and masks is None:
        raise ValueError("FAAT with a mask needs the training faces' attention masks (see training_faces)")
    if cfg.extra.get("teacher"):
        check_teacher(d)
    cfg.extra.update(d.settings())
    aux, h = (masks if d.uses_mask else None), hooks(d, class_prior(train_set, cfg.soft_labels))
    if kd := distillation_from(cfg):
        h["objective"] = kd
    return train(cfg, train_set, valid_set, out, log=log, aux=aux, progress=progress, **h)


def cli_command(d: DefenceConfig, cfg: TrainConfig, data: str | Path, out: str | Path, limit: int | None = None) -> str:
    """The `emocloak train` line that trains the same model (for training records)."""
    parts = ["emocloak train", f"--defence {d.defence}", f"--data {data}", f"--out {out}"]
    if cfg.extra.get("init"):
        parts.append(f"--init {cfg.extra['init']}")
    if cfg.extra.get("swa"):
        parts.append("--swa")
    if cfg.extra.get("teacher"):
        parts.append(f"--teacher {cfg.extra['teacher']} --kd-weight {cfg.extra.get('kd_weight', KD_WEIGHT):g}")
    parts += [f"--arch {cfg.arch}", f"--width {cfg.width}", f"--epochs {cfg.epochs}", f"--lr {cfg.lr:g}"]
    parts += [f"--batch-size {cfg.batch_size}", f"--seed {cfg.seed}", f"--threads {cfg.threads}"]
    flags = {"eps": "--eps", "steps": "--steps", "alpha": "--alpha", "freq_weight": "--freq-weight"}
    flags |= {"freq_radius": "--freq-radius", "mask_floor": "--mask-floor", "mask_sigma": "--mask-sigma"}
    flags |= {"beta": "--beta", "logit_adjust": "--logit-adjust"}
    parts += [f"{flags[k]} {v:g}" for k, v in d.settings().items() if k in flags and v is not None]
    if limit is not None:
        parts.append(f"--limit {limit}")
    return " ".join(parts)
