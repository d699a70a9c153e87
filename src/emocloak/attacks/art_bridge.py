"""The Adversarial Robustness Toolbox as a reference: wrap a recognizer's differentiable path for ART.

Used to cross-check our PGD, UAP and AutoAttack's APGD-CE against ART's on the same model and faces;
ART is a test/benchmark dependency only.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from emocloak.labels import LABELS
from emocloak.recognizers.base import Recognizer


class _Logits(nn.Module):
    def __init__(self, rec: Recognizer) -> None:
        super().__init__()
        self.rec = rec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rec.logits(x)


def art_classifier(rec: Recognizer, size: int):
    """An ART PyTorchClassifier over RGB face crops (N, 3, size, size) in [0, 1]."""
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=_Logits(rec),
        loss=nn.CrossEntropyLoss(),
        input_shape=(3, size, size),
        nb_classes=len(LABELS),
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )


def art_pgd(
    rec: Recognizer,
    x: np.ndarray,
    eps: float,
    steps: int,
    alpha: float,
    random_start: bool,
    norm: str = "inf",
    batch_size: int = 128,
) -> np.ndarray:
    """ART's ProjectedGradientDescent on crops x (N, 3, S, S) float32, untargeted from the clean prediction."""
    from art.attacks.evasion import ProjectedGradientDescent

    attack = ProjectedGradientDescent(
        art_classifier(rec, x.shape[-1]),
        norm=np.inf if norm == "inf" else 2,
        eps=eps,
        eps_step=alpha,
        max_iter=steps,
        num_random_init=int(random_start),
        batch_size=batch_size,
        verbose=False,
    )
    return attack.generate(x)


def art_apgd_ce(rec: Recognizer, x: np.ndarray, y: np.ndarray, eps: float, batch_size: int = 64) -> np.ndarray:
    """ART's AutoProjectedGradientDescent on crops x against labels y, set as AutoAttack's first stage
    (cross-entropy, L-inf, 1 restart, 100 iterations, first step 2*eps): the cross-check of our APGD-CE.
    Its random start comes from numpy's global RNG."""
    from art.attacks.evasion import AutoProjectedGradientDescent

    apgd = AutoProjectedGradientDescent(
        art_classifier(rec, x.shape[-1]),
        eps=eps,
        eps_step=2 * eps,
        max_iter=100,
        nb_random_init=1,
        batch_size=batch_size,
        loss_type="cross_entropy",
        verbose=False,
    )
    return apgd.generate(x, y)
