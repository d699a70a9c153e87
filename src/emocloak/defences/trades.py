"""TRADES (Zhang et al. 2019): clean cross-entropy plus beta times the KL from the clean to the adversarial reading.

Its inner maximisation, KL(p(x) || p(x')) over the eps-ball, is cross-entropy against the soft label
p(x) up to a constant (p(x)'s own entropy), so it is the one PGD loop (`pgd_perturb`) with the
model's clean probabilities as the label: no second attack loop to drift apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from emocloak.attacks.evasion.pgd import pgd_perturb
from emocloak.defences.adversarial_training import attack_mode
from emocloak.recognizers.facenet import FaceNet
from emocloak.training import Adversary, Objective, soft_cross_entropy

DEFAULT_BETA = 6.0  # the paper's setting for CIFAR-10


def trades_adversary(eps: float, steps: int, alpha: float) -> Adversary:
    """An `adversary` hook: PGD from a random start that moves the reading away from the model's own clean one."""

    def adversary(model: FaceNet, x: torch.Tensor, y_soft: torch.Tensor, aux: torch.Tensor | None) -> torch.Tensor:
        with attack_mode(model):
            with torch.no_grad():
                p_clean = F.softmax(model(x), 1)
            return pgd_perturb(model, x, p_clean, eps, alpha, steps)

    return adversary


def trades_objective(beta: float = DEFAULT_BETA) -> Objective:
    """Cross-entropy on the clean batch + beta * KL(p(clean) || p(adversarial)), both through the training model."""

    def objective(model: FaceNet, x: torch.Tensor, x_adv: torch.Tensor, y_soft: torch.Tensor) -> torch.Tensor:
        logits = model(torch.cat([x, x_adv]))
        clean, adv = logits[: len(x)], logits[len(x) :]
        kl = F.kl_div(F.log_softmax(adv, 1), F.log_softmax(clean, 1), reduction="batchmean", log_target=True)
        return soft_cross_entropy(clean, y_soft) + beta * kl

    return objective
