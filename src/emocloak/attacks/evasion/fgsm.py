"""Fast gradient sign method (Goodfellow et al. 2015): one L-inf step of size eps."""

from __future__ import annotations

from emocloak.attacks.evasion.pgd import PGD


class FGSM(PGD):
    name = "fgsm"

    def __init__(self, eps: float = 8 / 255, seed: int | None = 0) -> None:
        super().__init__(eps=eps, steps=1, alpha=eps, norm="inf", random_start=False, seed=seed)
