"""The universal perturbation as a value and a file: checked on creation, saved and loaded as tensors only."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import torch

from emocloak.attacks.budget import Budget
from emocloak.data.checkpoints import load_checkpoint
from emocloak.data.files import atomic_write
from emocloak.errors import EmocloakError
from emocloak.labels import LABELS, label_index
from emocloak.recognizers.registry import WEIGHTS

MAX_EPS = 64 / 255


class PerturbationError(EmocloakError):
    """A perturbation file that is missing, unreadable, or not what it claims to be."""


@dataclass(frozen=True)
class UniversalPerturbation:
    """delta: (3, S, S) float in [-eps, eps], [0, 1] pixel units; meta: plain types, eps in /255.

    With meta["budget"] (a `Budget.describe()` dict, cap = eps) delta is a pattern, not a change:
    each face gets delta / eps times its own perceptual budget (`apply`), so skin moves little,
    texture more, and nothing at the border of the face box.
    """

    delta: torch.Tensor
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        d = self.delta
        if not (isinstance(d, torch.Tensor) and d.dim() == 3 and d.shape[0] == 3 and d.shape[1] == d.shape[2]):
            raise PerturbationError(f"delta must be a (3, S, S) tensor, got {getattr(d, 'shape', type(d))}")
        if not isinstance(self.meta.get("eps"), int | float):
            raise PerturbationError("meta must give eps (in /255)")
        if not torch.isfinite(d).all() or d.abs().max() > self.eps + 1e-6:
            raise PerturbationError(f"delta leaves its eps={self.meta['eps']}/255 ball")

    @property
    def eps(self) -> float:
        return float(self.meta["eps"]) / 255

    @property
    def budget(self) -> Budget | None:
        b = self.meta.get("budget")
        return None if b is None else Budget.from_description(b)

    @property
    def size(self) -> int:
        return int(self.delta.shape[-1])

    @property
    def target(self) -> int | None:
        t = self.meta.get("target")
        return None if t is None else label_index(t)

    def weakness(self, floor: float = 0.5) -> str | None:
        """A warning where, when learnt, it fooled fewer than `floor` of the held-out faces; else None."""
        rates = (self.meta.get("holdout") or {}).get("success") or {}
        weak = ", ".join(f"{name} {rate:.0%}" for name, rate in rates.items() if rate < floor)
        if not weak:
            return None
        return (
            f"when learnt, this perturbation worked on few held-out faces ({weak}); "
            "expect most photos to keep their reading"
        )

    def rescaled(self, eps: float) -> UniversalPerturbation:
        """The same pattern at another L-inf budget eps ([0, 1] units): delta * eps / learnt eps."""
        if not 0 < eps <= MAX_EPS:
            raise ValueError(f"eps={eps} out of range (0, {MAX_EPS:.4f}]; it is in [0, 1] units, e.g. 8/255")
        delta = (self.delta * (eps / self.eps)).clamp(-eps, eps)
        meta = {**self.meta, "eps": round(eps * 255, 6), "rescaled_from": self.meta["eps"]}
        if self.budget is not None:
            meta["budget"] = {**meta["budget"], "cap": meta["eps"]}
        return replace(self, delta=delta, meta=meta)

    def save(self, path: str | Path) -> Path:
        """Write atomically (the old file or the new one, never half); OutputError names the file."""
        blob = {"delta": self.delta.detach().float().cpu().contiguous(), "meta": self.meta}
        return atomic_write(Path(path), lambda tmp: torch.save(blob, tmp))

    @classmethod
    def load(cls, path: str | Path) -> UniversalPerturbation:
        blob = load_checkpoint(path, "universal perturbation file", PerturbationError)
        if not isinstance(blob["delta"], torch.Tensor) or not isinstance(blob["meta"], dict):
            raise PerturbationError(f"{path}: delta is not a tensor or meta not a dict")
        try:
            return cls(blob["delta"].float(), dict(blob["meta"]))
        except PerturbationError as exc:
            raise PerturbationError(f"{path}: {exc}") from exc


def as_perturbation(p: str | Path | UniversalPerturbation | None) -> UniversalPerturbation | None:
    return UniversalPerturbation.load(p) if isinstance(p, str | Path) else p


def default_path(target: str | None) -> Path:
    name = "untargeted" if target is None else LABELS[label_index(target)]
    return WEIGHTS / f"universal_{name}.pt"


@cache
def default_perturbation(target: str | None) -> UniversalPerturbation:
    """The shipped perturbation for a target label (None: untargeted)."""
    path = default_path(target)
    if not path.is_file():
        raise PerturbationError(
            f"no shipped universal perturbation for {target or 'untargeted'} cloaking ({path} not found); "
            "learn one with `emocloak universal train` and pass it as --perturbation"
        )
    return UniversalPerturbation.load(path)
