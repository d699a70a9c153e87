"""The attack interface: photos in, adversarial photos plus per-image bookkeeping out.

Success is always judged the way a user meets it: the adversarial photo, rounded
to uint8, is read again through the recognizer's whole pipeline (face detection
included). Untargeted success = the prediction leaves the clean prediction;
targeted success = the prediction equals the target. A face that is no longer
found counts as "no face", reported apart from success.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from emocloak.data.images import as_rgb
from emocloak.errors import EmocloakError, NoFaceError
from emocloak.faces.detect import Box
from emocloak.metrics.classification import predicted_labels
from emocloak.metrics.robustness import success
from emocloak.recognizers.base import Recognizer, to_tensor


class AttackSpecError(EmocloakError, ValueError):
    """An attack spec string that names no attack or has bad parameters."""


# --- parameter checks, shared by every attack's _check_params (as ART's) ------------
def check_number(name: str, value: object, low: float, high: float, whole: bool = False, open_low: bool = False):
    """value must be a number (a whole one if `whole`) in [low, high] ((low, high] if open_low)."""
    kind = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, int if whole else int | float) or not math.isfinite(value):
        raise AttackSpecError(f"{name} must be {kind}, got {value!r}")
    if value > high or value < low or (open_low and value == low):
        lower = f"{low:g} {'<' if open_low else '<='} {name}"
        bounds = f"{name} {'>' if open_low else '>='} {low:g}" if high == math.inf else f"{lower} <= {high:g}"
        raise AttackSpecError(f"{name}={value!r} out of range: {bounds}")


def check_flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise AttackSpecError(f"{name} must be true or false, got {value!r}")


def check_linf(name: str, value: object, high: float = 64 / 255) -> None:
    """An L-inf budget in [0, 1] pixel units; the message also gives it in /255, as the CLI takes it."""
    check_number(name, value, -math.inf, math.inf)
    if not 0 < value <= high:  # type: ignore[operator]
        raise AttackSpecError(
            f"{name}={value * 255:.4g}/255 out of range: L-inf budgets are 0 < {name} <= {high * 255:g}/255"
        )


@dataclass
class AttackOutput:
    """Adversarial images (same sizes as the inputs) and one record per image."""

    images: list[np.ndarray]
    records: list[dict] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return float(np.mean([r["success"] for r in self.records])) if self.records else float("nan")


def predictions(rec: Recognizer, images: Sequence[np.ndarray], detect: bool) -> np.ndarray:
    """Predicted label index per image; -1 where no face is found."""
    return predicted_labels(rec.predict_proba(images, detect=detect, on_no_face="nan"))


def require_gradient(rec: Recognizer) -> None:
    """Refuse, in words users can act on, a recognizer with no gradient (the landmark pipeline)."""
    if not getattr(rec, "differentiable", True):
        raise AttackSpecError(
            f"recognizer {rec.name} has no gradient: craft on another recognizer with --transfer-to, "
            "or use a black-box attack such as square or filters"
        )


class Attack(ABC):
    """Base class: subclasses implement `perturb`; `__call__` does the timing and the judging."""

    name = "attack"
    needs_gradient = False  # white-box attacks set True: recognizers with differentiable=False are refused
    rng: torch.Generator | None = None  # set by each call: the generator `perturb` draws from

    def __init__(self, seed: int | None = 0) -> None:
        if seed is not None:
            check_number("seed", seed, 0, math.inf, whole=True)
        self.seed = seed

    def new_generator(self, stream: int = 0) -> torch.Generator:
        """A source of randomness seeded from `seed` (from the OS when seed is None).

        `stream` names a part of a run (evaluate: where a chunk starts), so each part draws the same
        numbers whichever worker runs it and in whatever order; stream 0 is seeded with `seed` itself.
        """
        gen = torch.Generator()
        if self.seed is None:
            gen.seed()
        else:
            part = int(np.random.SeedSequence([self.seed, stream]).generate_state(1)[0])
            gen.manual_seed(self.seed if stream == 0 else part)
        return gen

    def params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "rng"}

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in self.params().items())})"

    @abstractmethod
    def perturb(
        self, rec: Recognizer, images: list[np.ndarray], clean: np.ndarray, target: int | None, detect: bool
    ) -> tuple[list[np.ndarray], list[int], list[dict]]:
        """Adversarial uint8 images, the recognizer queries each one cost, and per-image details."""

    def __call__(
        self,
        rec: Recognizer,
        images: Sequence[np.ndarray],
        target: int | None = None,
        detect: bool = True,
        labels: Sequence[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> AttackOutput:
        """Attack `images`; random draws come from `generator` (pass one to continue a run across calls),
        else from a fresh one seeded with `self.seed`. The global torch RNG is never touched."""
        if self.needs_gradient:
            require_gradient(rec)
        images = [as_rgb(im) for im in images]
        self.rng = generator if generator is not None else self.new_generator()
        clean = predictions(rec, images, detect)
        t0 = time.perf_counter()
        adv, queries, info = self.perturb(rec, images, clean, target, detect)
        seconds = (time.perf_counter() - t0) / max(1, len(images))
        after = predictions(rec, adv, detect)
        out = AttackOutput(adv)
        ok = success(after, clean, target)
        for i, (b, a, extra) in enumerate(zip(clean, after, info, strict=True)):
            out.records.append(
                {
                    "index": i,
                    "pred_before": int(b),
                    "pred_after": int(a),
                    "label": None if labels is None else int(labels[i]),
                    "success": bool(ok[i]),
                    "face_lost": bool(a < 0 <= b),
                    "queries": int(queries[i]),
                    "seconds": seconds,
                    **extra,
                }
            )
        return out


def paste(image: np.ndarray, box: Box, patch: np.ndarray) -> np.ndarray:
    """Write a crop back into the photo, dropping the parts of `box` that lie outside it."""
    out = image.copy()
    h, w = image.shape[:2]
    top, left = max(0, box.top), max(0, box.left)
    bottom, right = min(h, box.bottom), min(w, box.right)
    out[top:bottom, left:right] = patch[top - box.top : bottom - box.top, left - box.left : right - box.left]
    return out


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    return (x[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()


class CropAttack(Attack):
    """Attacks on the face crop through `rec.logits` (its gradient, or only its scores), pasted into the photo.

    Crops of equal size are batched (all FER+ faces are 48x48); photos' crops differ in
    size and go one by one.
    """

    batch_size = 128

    @abstractmethod
    def craft(self, rec: Recognizer, x: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
        """Adversarial crops for a batch x (N, 3, H, W) in [0, 1]; y = label to leave or to reach."""

    @property
    def queries_per_image(self) -> int:
        return 1

    def craft_counted(
        self, rec: Recognizer, x: torch.Tensor, y: torch.Tensor, targeted: bool
    ) -> tuple[torch.Tensor, list[int]]:
        """`craft` plus the queries each crop cost; attacks that stop early per crop override this."""
        return self.craft(rec, x, y, targeted), [self.queries_per_image] * len(x)

    def perturb(self, rec, images, clean, target, detect):
        crops: list[np.ndarray | None] = []
        boxes: list[Box | None] = []
        for im in images:
            try:
                c, b = rec.face_crop(im, detect)
            except NoFaceError:
                c, b = None, None
            crops.append(c)
            boxes.append(b)
        adv = list(images)
        queries = [0] * len(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, c in enumerate(crops):
            if c is not None:
                groups.setdefault(c.shape, []).append(i)
        for idx in groups.values():
            for s in range(0, len(idx), self.batch_size):
                chunk = idx[s : s + self.batch_size]
                x = torch.cat([to_tensor(crops[i]) for i in chunk])
                goal = clean[chunk] if target is None else np.full(len(chunk), target)
                x_adv, used = self.craft_counted(rec, x, torch.as_tensor(goal, dtype=torch.long), target is not None)
                for j, i in enumerate(chunk):
                    adv[i] = paste(images[i], boxes[i], to_uint8(x_adv[j : j + 1]))
                    queries[i] = used[j]
        return adv, queries, [{} for _ in images]
