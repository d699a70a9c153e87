"""The universal cloak as an attack: the learnt perturbation added to every face the recognizer finds."""

from __future__ import annotations

import numpy as np

from emocloak.attacks.base import Attack, AttackSpecError, check_linf
from emocloak.attacks.evasion.universal.apply import apply_universal, apply_universal_batch
from emocloak.attacks.evasion.universal.perturbation import (
    MAX_EPS,
    PerturbationError,
    UniversalPerturbation,
    default_perturbation,
)
from emocloak.faces.detect import Box
from emocloak.labels import LABELS


class UniversalCloak(Attack):
    """Adds a learnt universal perturbation to every face; queries = 0 (face detection only).

    Without a perturbation, the shipped one for the requested target is used.
    eps ([0, 1] units) rescales the perturbation to that budget.
    """

    name = "universal"

    def __init__(
        self, perturbation: UniversalPerturbation | None = None, eps: float | None = None, seed: int | None = 0
    ) -> None:
        super().__init__(seed)
        self.eps = eps
        self._given = perturbation
        self._check_params()

    def _check_params(self) -> None:
        if self.eps is not None:
            check_linf("eps", self.eps, MAX_EPS)
        if self._given is not None and not isinstance(self._given, UniversalPerturbation):
            raise AttackSpecError(f"perturbation must be a UniversalPerturbation, got {type(self._given).__name__}")

    def params(self) -> dict:
        up = self._given
        meta = {} if up is None else {k: up.meta.get(k) for k in ("target", "recognizers", "data")}
        return {"perturbation": "shipped" if up is None else "given", "eps": self.eps, **meta}

    def perturbation(self, target: int | None) -> UniversalPerturbation:
        up = self._given or default_perturbation(None if target is None else LABELS[target])
        if target is not None and up.target != target:
            learnt = LABELS[up.target] if up.target is not None else "untargeted cloaking"
            raise PerturbationError(f"the perturbation was learnt for {learnt}, not target {LABELS[target]}")
        return up if self.eps is None else up.rescaled(self.eps)

    def perturb(self, rec, images, clean, target, detect):
        up = self.perturbation(target)
        if not detect and len({im.shape for im in images}) == 1:
            adv = list(apply_universal_batch(np.stack(images), up))
            return adv, [0] * len(images), [{"faces": 1} for _ in images]
        adv, info = [], []
        for im in images:
            boxes = [f.crop_box for f in rec.faces(im)] if detect else [Box(0, 0, im.shape[1], im.shape[0])]
            adv.append(apply_universal(im, up, boxes))
            info.append({"faces": len(boxes)})
        return adv, [0] * len(images), info
