"""Projected gradient descent (Madry et al. 2018), L-inf or L2, random start, (un)targeted.

`pgd_perturb` is the one PGD loop: the attack below runs it on a recognizer, and the
adversarial-training defences run it on the model being trained.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from emocloak.attacks.base import AttackSpecError, CropAttack, check_flag, check_linf, check_number
from emocloak.recognizers.base import Recognizer

MAX_L2 = 100.0  # [0, 1] pixel units on the face crop


def _l2(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))


def _project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "inf":
        return delta.clamp(-eps, eps)
    return delta * (eps / _l2(delta)).clamp(max=1.0)


def _start(x: torch.Tensor, eps: float, norm: str, gen: torch.Generator | None = None) -> torch.Tensor:
    if norm == "inf":
        return torch.empty_like(x).uniform_(-eps, eps, generator=gen)
    d = torch.randn(x.shape, dtype=x.dtype, generator=gen)
    r = torch.rand(len(x), *([1] * (x.dim() - 1)), dtype=x.dtype, generator=gen)
    return d / _l2(d) * eps * r


def pgd_perturb(
    logits: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    norm: str = "inf",
    random_start: bool = True,
    targeted: bool = False,
    step_weight: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Adversarial x within the eps-ball (L-inf or L2) and [0, 1], by `steps` ascent steps on cross-entropy.

    y: class indices, or class probabilities (soft labels, as training uses). step_weight (broadcast to x,
    e.g. a facial attention mask) scales each pixel's step, so the attack spends its effort where the
    weight is high; the ball itself is unchanged, so the threat model stays the plain eps-ball.
    generator: the random start's source (default: torch's global RNG, as training seeds it).
    """
    delta = ((x + _start(x, eps, norm, generator)).clamp(0, 1) - x).detach() if random_start else torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(logits(x + delta), y)
        (grad,) = torch.autograd.grad(-loss if targeted else loss, delta)
        step = grad.sign() if norm == "inf" else grad / _l2(grad)
        if step_weight is not None:
            step = step * step_weight
        delta = _project(delta.detach() + alpha * step, eps, norm)
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


class PGD(CropAttack):
    """eps and alpha are in [0, 1] pixel units (the CLI takes L-inf values in /255).

    L2 budgets are on the face crop as attacked, so the same eps is a weaker
    perturbation per pixel on a large photo crop than on a 48x48 face.
    """

    name = "pgd"
    needs_gradient = True

    def __init__(
        self,
        eps: float = 8 / 255,
        steps: int = 20,
        alpha: float | None = None,
        norm: str = "inf",
        random_start: bool = True,
        seed: int | None = 0,
    ) -> None:
        super().__init__(seed)
        self.eps, self.steps, self.norm, self.random_start = eps, steps, norm, random_start
        self._check_params(alpha)
        self.alpha = alpha if alpha is not None else 2.5 * eps / steps

    def _check_params(self, alpha: float | None) -> None:
        if self.norm not in ("inf", "2"):
            raise AttackSpecError(f"norm={self.norm!r} invalid; valid: inf, 2")
        check_number("steps", self.steps, 1, math.inf, whole=True)
        check_flag("random_start", self.random_start)
        if self.norm == "inf":
            check_linf("eps", self.eps)
            if alpha is not None:
                check_linf("alpha", alpha)
        else:
            check_number("eps", self.eps, 0, MAX_L2, open_low=True)
            if alpha is not None:
                check_number("alpha", alpha, 0, MAX_L2, open_low=True)

    @property
    def queries_per_image(self) -> int:
        return self.steps

    def craft(self, rec: Recognizer, x: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
        return pgd_perturb(
            rec.logits,
            x,
            y,
            self.eps,
            self.alpha,
            self.steps,
            self.norm,
            self.random_start,
            targeted,
            generator=self.rng,
        )
