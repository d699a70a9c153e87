"""Projected gradient descent (Madry et al. 2018), L-inf or L2, random start, (un)targeted."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from emocloak.attacks.base import CropAttack
from emocloak.recognizers.base import Recognizer


def _l2(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))


class PGD(CropAttack):
    """eps and alpha are in [0, 1] pixel units (the CLI takes L-inf values in /255).

    L2 budgets are on the face crop as attacked, so the same eps is a weaker
    perturbation per pixel on a large photo crop than on a 48x48 face.
    """

    name = "pgd"

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
        if norm not in ("inf", "2"):
            raise ValueError("norm must be 'inf' or '2'")
        self.eps, self.steps, self.norm, self.random_start = eps, steps, norm, random_start
        self.alpha = alpha if alpha is not None else 2.5 * eps / steps

    @property
    def queries_per_image(self) -> int:
        return self.steps

    def _project(self, delta: torch.Tensor) -> torch.Tensor:
        if self.norm == "inf":
            return delta.clamp(-self.eps, self.eps)
        return delta * (self.eps / _l2(delta)).clamp(max=1.0)

    def _start(self, x: torch.Tensor) -> torch.Tensor:
        if not self.random_start:
            return torch.zeros_like(x)
        if self.norm == "inf":
            return torch.empty_like(x).uniform_(-self.eps, self.eps)
        d = torch.randn_like(x)
        r = torch.rand(len(x), *([1] * (x.dim() - 1)))
        return d / _l2(d) * self.eps * r

    def craft(self, rec: Recognizer, x: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
        delta = ((x + self._start(x)).clamp(0, 1) - x).detach()
        for _ in range(self.steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(rec.logits(x + delta), y)
            (grad,) = torch.autograd.grad(-loss if targeted else loss, delta)
            step = grad.sign() if self.norm == "inf" else grad / _l2(grad)
            delta = self._project(delta.detach() + self.alpha * step)
            delta = (x + delta).clamp(0, 1) - x
        return (x + delta).detach()
