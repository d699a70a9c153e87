"""Madry PGD adversarial training: the model trains on PGD examples made against itself, batch by batch.

The adversary plugs into `emocloak.training.train` as its `adversary` hook and runs the same
PGD loop as the `pgd` attack (`pgd_perturb`), so training and evaluation attacks cannot drift
apart. FAAT's attention-aware attack is the same adversary with a per-pixel step weight.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from emocloak.attacks.evasion.pgd import pgd_perturb
from emocloak.recognizers.facenet import FaceNet
from emocloak.training import Adversary


@contextmanager
def attack_mode(model: FaceNet) -> Iterator[FaceNet]:
    """Eval mode without flip test-time augmentation, restored afterwards.

    Eval mode: BatchNorm running statistics and no dropout, so the attack sees a deterministic
    model (the one the weights define) and does not move the running statistics. No flip TTA:
    the training loss sees the un-flipped model only, and it halves the attack's cost.
    """
    was_training, flip = model.training, model.flip_tta
    model.eval()
    model.flip_tta = False
    try:
        yield model
    finally:
        model.flip_tta = flip
        model.train(was_training)


def attention_steps(masks: torch.Tensor) -> torch.Tensor:
    """Per-pixel step weights from attention masks: the mask scaled to mean 1 per face.

    The attack's total effort (the mean step over the face) stays that of plain PGD; the mask
    only moves it from background to the expression regions. A mask of 0.25 outside and 1 on
    ~15% of the face gives those regions about 3x the plain step and the rest about 0.7x.
    """
    return masks / masks.mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)


def pgd_adversary(eps: float, steps: int, alpha: float, weighted: bool = False) -> Adversary:
    """An `adversary` hook: L-inf PGD from a random start in the eps ball ([0, 1] units), against the soft labels.

    weighted: FAAT's attention-aware attack; the step is weighted by the batch's aux channel (the
    augmented attention masks the loop hands over), see `attention_steps`.
    """

    def adversary(model: FaceNet, x: torch.Tensor, y_soft: torch.Tensor, aux: torch.Tensor | None) -> torch.Tensor:
        if weighted and aux is None:
            raise ValueError("a weighted adversary needs the attention masks as the training loop's aux channel")
        weight = attention_steps(aux) if weighted else None
        with attack_mode(model):
            return pgd_perturb(model, x, y_soft, eps, alpha, steps, step_weight=weight)

    return adversary
