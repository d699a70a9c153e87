"""AutoAttack (Croce & Hein, ICML 2020): the field's standard robustness evaluation, L-inf.

The standard version runs four attacks in sequence, each only on the faces still read
correctly, keeping per face the first adversarial that fools: APGD-CE (100 iterations,
1 restart), APGD-T on the targeted DLR loss (100 iterations against each of the 9 most
likely other classes: all 7 others here, 6 for `fer`), FAB-T (100 iterations, the same targets) and
Square (5,000 queries, p_init 0.8). `fast` stops after the two APGD stages.

The four attacks are the authors' own code (`pyautoattack`, the fra31/auto-attack package;
ART 1.20.1 has no FAB, and its AutoAttack runs a different ensemble), with the settings its
`standard` version sets. They attack `rec.logits`, the model as deployed (flip test-time
augmentation included), on the whole face crop. A stage's adversarials are rounded to the
uint8 grid (the eps-ball holds: the clean crop lies on it) and only then judged, so a face
counts as fooled only if the saved image fools.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from emocloak.attacks.base import AttackSpecError, CropAttack, check_linf
from emocloak.recognizers.base import MISSING_LOGIT, Recognizer

STAGES = ("apgd-ce", "apgd-t", "fab-t", "square")
VERSIONS = {"standard": STAGES, "fast": STAGES[:2]}
_BUDGET = {"apgd-ce": 100, "apgd-t": 100, "fab-t": 100, "square": 5000}  # iterations or queries per target


@dataclass
class StageResult:
    """Adversarial crops and, per face, the stage index that first fooled it (-1: wrong when clean;
    len(stages): never fooled)."""

    x_adv: torch.Tensor
    fooled_at: torch.Tensor
    stages: tuple[str, ...]
    targets: int  # classes APGD-T and FAB-T aim at, one after another

    def accuracy_after(self) -> dict[str, float]:
        """Share of faces still read correctly after each stage (the first entry: clean)."""
        n = len(self.fooled_at)
        out = {"clean": float((self.fooled_at >= 0).sum()) / n}
        for i, s in enumerate(self.stages):
            out[s] = float((self.fooled_at > i).sum()) / n
        return out


def on_grid(x: torch.Tensor, adv: torch.Tensor, eps: float) -> torch.Tensor:
    """adv rounded to whole /255 steps from x (on the uint8 grid), still within the L-inf ball and [0, 1]."""
    k = math.floor(eps * 255 + 1e-6)
    step = ((adv - x) * 255).round().clamp(-k, k)
    return (x + step / 255).clamp(0, 1)


class AutoAttack(CropAttack):
    """eps in [0, 1] pixel units (the CLI takes /255); untargeted only, as the standard evaluation is."""

    name = "autoattack"
    needs_gradient = True

    def __init__(self, eps: float = 8 / 255, version: str = "standard", seed: int | None = 0) -> None:
        super().__init__(seed)
        self.eps, self.version = eps, version
        self._check_params()

    def _check_params(self) -> None:
        check_linf("eps", self.eps)
        if self.version not in VERSIONS:
            raise AttackSpecError(f"version={self.version!r} invalid; valid: {', '.join(VERSIONS)}")

    @property
    def stages(self) -> tuple[str, ...]:
        return VERSIONS[str(self.version)]

    def reference_attacks(self, rec: Recognizer, n_classes: int, seed: int):
        """The library's own standard-version attack objects, targets capped at the classes there are."""
        from pyautoattack import AutoAttack as Reference

        ref = Reference(rec.logits, eps=self.eps, norm="Linf", seed=seed, version="standard", device="cpu")
        ref.apgd_targeted.n_target_classes = ref.fab.n_target_classes = min(9, n_classes - 1)
        ref.apgd.loss, ref.fab.targeted = "ce", True
        return {"apgd-ce": ref.apgd, "apgd-t": ref.apgd_targeted, "fab-t": ref.fab, "square": ref.square}

    def run(self, rec: Recognizer, x: torch.Tensor, y: torch.Tensor) -> StageResult:
        """The stages in order on crops x (N, 3, H, W) in [0, 1] with true (or clean) labels y."""
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self.rng)) if self.rng is not None else 0
        with torch.no_grad():
            n_classes = int((rec.logits(x[:1]) > MISSING_LOGIT / 2).sum())  # the model's own classes (fer: 7)
            robust = rec.logits(x).argmax(1) == y
        fooled_at = torch.where(robust, len(self.stages), -1)
        attacks = self.reference_attacks(rec, n_classes, seed)
        adv = x.clone()
        with torch.random.fork_rng(devices=[]):  # the library seeds torch's global RNG: keep it ours
            for i, stage in enumerate(self.stages):
                idx = robust.nonzero()[:, 0]
                if not len(idx):
                    break
                cand = on_grid(x[idx], attacks[stage].perturb(x[idx], y[idx]).detach(), self.eps)
                with torch.no_grad():
                    fooled = rec.logits(cand).argmax(1) != y[idx]
                adv[idx[fooled]] = cand[fooled]
                fooled_at[idx[fooled]] = i
                robust[idx[fooled]] = False
        return StageResult(adv, fooled_at, self.stages, attacks["apgd-t"].n_target_classes)

    def craft(self, rec: Recognizer, x: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
        return self.craft_counted(rec, x, y, targeted)[0]

    def craft_counted(
        self, rec: Recognizer, x: torch.Tensor, y: torch.Tensor, targeted: bool
    ) -> tuple[torch.Tensor, list[int]]:
        """Adversarial crops and, per face, the iteration budget of the stages it entered (an upper bound on
        its model calls)."""
        if targeted:
            raise AttackSpecError("autoattack is untargeted (it measures robust accuracy); use pgd for a target")
        res = self.run(rec, x, y)
        cost = [_BUDGET[s] * (res.targets if s.endswith("-t") else 1) for s in self.stages]
        return res.x_adv, [sum(cost[: int(k) + 1]) if k >= 0 else 0 for k in res.fooled_at]
