"""Square attack (Andriushchenko et al., ECCV 2020): score-based black-box random search, L-inf.

It sees only the recognizer's output scores (`rec.logits` under no_grad), so it attacks
pipelines no gradient passes through, such as the landmark recognizer. Start: vertical
stripes of +-eps; each step proposes, per face, one random square window set to +-eps per
colour channel and keeps it if the log-probability margin (`filter_chain.margin`) drops.
The window side follows the paper's schedule for the fraction p of pixels changed. A face
stops costing queries once its margin is negative (fooled); each scored candidate is one query.
"""

from __future__ import annotations

import math

import torch

from emocloak.attacks.base import CropAttack, check_linf, check_number
from emocloak.attacks.evasion.filter_chain import margin
from emocloak.recognizers.base import Recognizer

# The paper's schedule: p halves at these points of a 10,000-query budget (rescaled to ours).
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_schedule(p_init: float, step: int, budget: int) -> float:
    """Fraction of pixels the window covers at `step` of `budget` queries."""
    it = int(step / budget * 10000)
    return p_init / 2 ** sum(it > h for h in _HALVINGS)


def _windows(n: int, h: int, w: int, side: int, gen: torch.Generator | None = None) -> torch.Tensor:
    """(n, 1, h, w) bool masks, one random side x side square per row."""
    top = torch.randint(0, h - side + 1, (n, 1, 1, 1), generator=gen)
    left = torch.randint(0, w - side + 1, (n, 1, 1, 1), generator=gen)
    rows = torch.arange(h).view(1, 1, h, 1)
    cols = torch.arange(w).view(1, 1, 1, w)
    return (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)


class Square(CropAttack):
    """eps in [0, 1] pixel units (the CLI takes /255); queries: budget per face, the first being the start."""

    name = "square"

    def __init__(self, eps: float = 8 / 255, queries: int = 1000, p: float = 0.05, seed: int | None = 0) -> None:
        super().__init__(seed)
        self.eps, self.queries, self.p = eps, queries, p
        self._check_params()

    def _check_params(self) -> None:
        check_linf("eps", self.eps)
        check_number("queries", self.queries, 1, math.inf, whole=True)
        check_number("p", self.p, 0, 1, open_low=True)  # share of the crop the first squares cover

    @property
    def queries_per_image(self) -> int:
        return self.queries

    def craft(self, rec: Recognizer, x: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
        return self.craft_counted(rec, x, y, targeted)[0]

    @torch.no_grad()
    def craft_counted(
        self, rec: Recognizer, x: torch.Tensor, y: torch.Tensor, targeted: bool
    ) -> tuple[torch.Tensor, list[int]]:
        n, c, h, w = x.shape

        def loss(z: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
            logp = rec.logits(z).log_softmax(1)
            return margin(logp, goal, goal if targeted else None)

        gen = self.rng
        best = (x + self.eps * torch.randint(0, 2, (n, c, 1, w), generator=gen).mul(2).sub(1)).clamp(0, 1)
        best_loss = loss(best, y)
        used = torch.ones(n, dtype=torch.long)
        for step in range(self.queries - 1):
            todo = (best_loss >= 0).nonzero()[:, 0]
            if not len(todo):
                break
            side = min(max(round(math.sqrt(self.p_at(step) * h * w)), 1), h - 1, w - 1)
            mask = _windows(len(todo), h, w, side, gen)
            signs = torch.randint(0, 2, (len(todo), c, 1, 1), generator=gen).mul(2).sub(1) * self.eps
            cand = self._propose(x[todo], best[todo], mask, signs)
            unchanged = ((cand - best[todo]).abs() < 1e-7).flatten(1).all(1).view(-1, 1, 1, 1)
            if unchanged.any():  # the window already held these signs: try the opposite ones
                cand = self._propose(x[todo], best[todo], mask, torch.where(unchanged, -signs, signs))
            cand_loss = loss(cand, y[todo])
            used[todo] += 1
            better = cand_loss < best_loss[todo]
            best[todo[better]] = cand[better]
            best_loss[todo[better]] = cand_loss[better]
        return best, used.tolist()

    @staticmethod
    def _propose(x: torch.Tensor, best: torch.Tensor, mask: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
        return (x + torch.where(mask, signs, best - x)).clamp(0, 1)

    def p_at(self, step: int) -> float:
        return p_schedule(self.p, step, self.queries)
