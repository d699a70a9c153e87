"""Tailored cloak: a per-photo perturbation built to fool recognizers it never saw, after posting.

Per face, one perturbation is optimised on a region around the face (the union of every
ensemble member's own face crop, plus a margin) by momentum steps (MI-FGSM, each pixel moved in
proportion to its gradient rather than by its sign) under a perceptual budget
(`attacks.budget`): large in texture, small on smooth skin, zero at the region's border. Each
step reads it the way an unknown platform might: through a random draw of the posting channel
(`attacks.transforms`: downscale, brightness/contrast, differentiable JPEG) and through every
member's own crop box, jittered in place and scale.

The loss pulls every member toward ONE label (the target, or, untargeted, the label the
ensemble finds most likely after the face's own), plus a feature term that pushes each
member's penultimate embedding away from the clean one. One consistent direction carries to
unseen recognizers further than pushing each member past its own nearest boundary
(docs/design.md, "Tailored cloak").

Each face is optimised at a working resolution where its largest crop box is at most `work_face`
pixels wide, and the perturbation is resized (bilinear) to the original pixels: recognizers
shrink faces to 48-64 px, so finer detail would be averaged away before they read it, while
people see it as noise. This also makes a 12-megapixel photo cost what a small one does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from emocloak.attacks.base import Attack, AttackSpecError, check_number, paste, require_gradient, to_uint8
from emocloak.attacks.budget import Budget
from emocloak.attacks.evasion.filter_chain import crop_batch, jpeg_batch, margin
from emocloak.attacks.transforms import ChannelDraws, resize
from emocloak.faces.detect import Box, crop, iou
from emocloak.labels import LABELS
from emocloak.recognizers.base import Recognizer, to_tensor

# The budgets behind --strength, chosen by leave-one-out after JPEG 75 on TCCE train photos
# (benchmarks/results/transfer_tuning.md; docs/design.md, "Strength presets by the numbers"):
# low: SSIMULACRA 2 about 80, a JPEG-75 re-save's cost (the default until 2026-12-06);
# mid: the most leave-one-out protection at SSIMULACRA 2 >= 70; high: the most at >= 60.
STRENGTHS: dict[str, Budget] = {
    "low": Budget(cap=8 / 255, floor=0.15),
    "mid": Budget(cap=6 / 255, floor=0.5),
    "high": Budget(cap=8 / 255, floor=0.5),
}
DEFAULT_STRENGTH = "mid"
CONTEMPT = LABELS.index("contempt")  # rare in training data, and `fer` cannot say it: never a pulling target


@dataclass(frozen=True)
class FaceRegion:
    """One face: the region the cloak may change, each member's crop box, and who saw the face."""

    box: Box
    crops: tuple[Box, ...]
    seen_by: tuple[str, ...]


def _grow(box: Box, share: float, shape: tuple[int, ...]) -> Box:
    """box grown by `share` of its side on every edge, clipped to the photo."""
    dx, dy = round(box.width * share), round(box.height * share)
    h, w = shape[:2]
    return Box(max(0, box.left - dx), max(0, box.top - dy), min(w, box.right + dx), min(h, box.bottom + dy))


def face_regions(members: Sequence[Recognizer], image: np.ndarray, margin: float = 0.1) -> list[FaceRegion]:
    """Every face any member's own detector finds, grouped across detectors, largest first.

    A member that missed a face reads it through the crop box of the member that found it first,
    since an unknown platform's detector may well find it.
    """
    groups: list[tuple[Box, dict[str, Box]]] = []  # (anchor face box, member name -> crop box)
    for rec in members:
        for face in rec.faces(image):
            match = next((g for g in groups if iou(g[0], face.box) > 0.25 and rec.name not in g[1]), None)
            if match is None:
                groups.append((face.box, {rec.name: face.crop_box}))
            else:
                match[1][rec.name] = face.crop_box
    regions = []
    for _, seen in groups:
        fallback = next(iter(seen.values()))
        crops = tuple(seen.get(r.name, fallback) for r in members)
        union = Box(
            min(c.left for c in crops),
            min(c.top for c in crops),
            max(c.right for c in crops),
            max(c.bottom for c in crops),
        )
        regions.append(FaceRegion(_grow(union, margin, image.shape), crops, tuple(seen)))
    return sorted(regions, key=lambda r: r.box.width * r.box.height, reverse=True)


def whole_image_region(members: Sequence[Recognizer], image: np.ndarray) -> FaceRegion:
    """Inputs already cropped to the face (detect=False): the whole image, read whole by every member."""
    box = Box(0, 0, image.shape[1], image.shape[0])
    return FaceRegion(box, tuple(box for _ in members), tuple(r.name for r in members))


def _jitter(box: Box, gen: torch.Generator, shift: float, scale: float) -> Box:
    """The box moved by up to `shift` of its side and rescaled by up to `scale`, as detectors disagree."""
    r = (torch.rand(3, generator=gen) * 2 - 1).tolist()
    side = max(8, round(box.width * (1 + scale * r[2])))
    cx = (box.left + box.right) / 2 + shift * box.width * r[0]
    cy = (box.top + box.bottom) / 2 + shift * box.height * r[1]
    left, top = round(cx - side / 2), round(cy - side / 2)
    return Box(left, top, left + side, top + side)


class TailoredCloak(Attack):
    """Per-photo ensemble cloak; parameters are checked here, so the CLI, API and specs share the checks.

    members: the recognizers optimised against (the attacked `rec` is added if missing);
    strength: a key of STRENGTHS, or a Budget; steps: momentum sign steps per face (at most);
    views: channel draws per step; feature_weight: weight of the embedding term;
    margin: log-probability margin every member must clear after JPEG 75 for the early stop;
    work_face: side in pixels of the largest member crop at the working resolution;
    quantile: steps move a pixel by its budget share g / quantile(|g|) (clipped to 1), so pixels
    the loss barely needs move little (None: sign steps, which push every pixel to its budget);
    progress(stage, share of the steps done): told as the cloak goes (the web page's progress bars).
    """

    name = "tailored"
    needs_gradient = True

    def __init__(
        self,
        members: Sequence[Recognizer] = (),
        strength: str | Budget = DEFAULT_STRENGTH,
        steps: int = 20,
        views: int = 2,
        feature_weight: float = 1.0,
        momentum: float = 0.9,
        step_size: float = 0.4,
        margin: float = 1.0,
        check_every: int = 10,
        work_face: int = 224,
        jitter: tuple[float, float] = (0.06, 0.1),
        channel: ChannelDraws | None = None,
        quantile: float | None = 0.9,
        seed: int | None = 0,
        progress: Callable[[str, float], None] | None = None,
    ) -> None:
        super().__init__(seed)
        self._progress = progress
        if isinstance(strength, str) and strength not in STRENGTHS:
            raise AttackSpecError(f"strength={strength!r} invalid; valid: {', '.join(STRENGTHS)}")
        if not isinstance(strength, str | Budget):
            raise AttackSpecError("strength must be a name in STRENGTHS or a Budget")
        for key, value in (("steps", steps), ("views", views), ("check_every", check_every)):
            check_number(key, value, 1, math.inf, whole=True)
        check_number("work_face", work_face, 32, math.inf, whole=True)
        check_number("momentum", momentum, 0, 0.999)
        check_number("step_size", step_size, 0, 1, open_low=True)
        check_number("feature_weight", feature_weight, 0, math.inf)
        check_number("margin", margin, 0, math.inf)
        if quantile is not None:
            check_number("quantile", quantile, 0, 1, open_low=True)
        for m in members:
            require_gradient(m)
        self.strength = strength if isinstance(strength, str) else "custom"
        self._budget = STRENGTHS[strength] if isinstance(strength, str) else strength
        self.steps, self.views, self.feature_weight = steps, views, feature_weight
        self.momentum, self.step_size, self.margin = momentum, step_size, margin
        self.check_every, self.work_face, self.jitter = check_every, work_face, jitter
        self._members = tuple(members)
        self._channel = channel or ChannelDraws()
        self.quantile = quantile

    def params(self) -> dict:
        return {**super().params(), "budget": self._budget.describe(), "members": [r.name for r in self._members]}

    def members(self, rec: Recognizer) -> tuple[Recognizer, ...]:
        return (rec, *(m for m in self._members if m is not rec))

    def perturb(self, rec, images, clean, target, detect):
        members = self.members(rec)
        gen = self.rng or self.new_generator()
        adv, queries, info = [], [], []
        for image in images:
            t0 = time.perf_counter()
            if self._progress is not None:
                self._progress("finding faces", 0.0)
            regions = face_regions(members, image) if detect else [whole_image_region(members, image)]
            stages = {"detect": time.perf_counter() - t0, "optimise": 0.0, "write_back": 0.0}
            out, faces = image, []
            for i, region in enumerate(regions):
                said = partial(self._said, i, len(regions))
                out, face = self._cloak_face(members, image, out, region, target, gen, said)
                faces.append(face)
                for stage, seconds in face["seconds"].items():
                    stages[stage] += seconds
            adv.append(out)
            queries.append(sum(f["steps"] for f in faces) * self.views * len(members))
            seconds = time.perf_counter() - t0
            info.append({"faces": faces, "budget": self._budget.describe(), "seconds": seconds, "stages": stages})
        return adv, queries, info

    def _cloak_face(
        self,
        members: Sequence[Recognizer],
        original: np.ndarray,
        current: np.ndarray,
        region: FaceRegion,
        target: int | None,
        gen: torch.Generator,
        said: Callable[[int], None] = lambda steps: None,
    ) -> tuple[np.ndarray, dict]:
        """Optimise one face's region; returns the photo with it pasted and the face's record.

        The patch is built from the original pixels, so where two regions overlap the later face's
        change replaces the earlier one's there, never adds to it (the budget holds everywhere).
        """
        t0 = time.perf_counter()
        r = region.box
        x0 = to_tensor(crop(original, r))
        k = min(1.0, self.work_face / max(c.width for c in region.crops))
        x = resize(x0, max(8, round(r.height * k)), max(8, round(r.width * k)))
        boxes = [c.shifted(-r.left, -r.top).scaled(k) for c in region.crops]
        with torch.no_grad():
            clean = [m.features_and_logits(crop_batch(x, b)) for m, b in zip(members, boxes, strict=True)]
        mean_p = torch.stack([lg.softmax(1)[0] for _, lg in clean]).mean(0)
        before = [int(lg.argmax()) for _, lg in clean]
        goal = target if target is not None else self._pull_label(mean_p)
        eps = self._budget(x)
        delta, g = torch.zeros_like(x), torch.zeros_like(x)
        steps = 0
        for steps in range(1, self.steps + 1):
            grad = self._gradient(members, x, delta, boxes, [f for f, _ in clean], goal, gen)
            g = self.momentum * g + grad / grad.abs().mean().clamp_min(1e-12)
            delta = (delta - self.step_size * eps * self._direction(g)).clamp(-eps, eps)
            delta = (x + delta).clamp(0, 1) - x
            said(steps)
            if steps % self.check_every == 0 and self._fooled(members, x + delta, boxes, before, target):
                break
        said(self.steps)
        t1 = time.perf_counter()
        full = resize(delta, r.height, r.width) if k < 1 else delta
        patch = to_uint8((x0 + full).clamp(0, 1))
        out = paste(current, r, patch)
        seconds = {"optimise": round(t1 - t0, 3), "write_back": round(time.perf_counter() - t1, 3)}
        record = {
            "region": r.as_list(),
            "seen_by": list(region.seen_by),
            "pulled_toward": LABELS[goal],
            "steps": steps,
            "work_scale": round(k, 4),
            "before": {m.name: LABELS[b] for m, b in zip(members, before, strict=True)},
            "seconds": seconds,
        }
        return out, record

    def _said(self, face: int, faces: int, steps: int) -> None:
        if self._progress is not None:
            self._progress(f"cloaking face {face + 1} of {faces}", (face + steps / self.steps) / faces)

    def _direction(self, g: torch.Tensor) -> torch.Tensor:
        """sign(g), or g scaled so its `quantile` of |g| is 1 and clipped: weak pixels move little."""
        if self.quantile is None:
            return g.sign()
        a = g.abs().flatten()  # kthvalue: the nearest-rank quantile, ~10x faster than torch.quantile here
        q = a.kthvalue(max(1, math.ceil(self.quantile * a.numel()))).values.clamp_min(1e-12)
        return (g / q).clamp(-1, 1)

    @staticmethod
    def _pull_label(mean_p: torch.Tensor) -> int:
        """Untargeted: the ensemble's most likely label other than its reading of the face (never contempt)."""
        p = mean_p.clone()
        p[int(p.argmax())] = -1
        p[CONTEMPT] = -1
        return int(p.argmax())

    def _gradient(self, members, x, delta, boxes, clean_feats, goal, gen) -> torch.Tensor:
        """Gradient of the loss summed over members, each reading `views` channel draws in one batch."""
        delta = delta.detach().requires_grad_(True)
        seen = [self._channel(x + delta, gen) for _ in range(self.views)]
        y = torch.full((self.views,), goal)
        total = x.new_zeros(())
        for m, b, f0 in zip(members, boxes, clean_feats, strict=True):
            side = m.input_size  # crops of jittered sizes meet at the model's input size, so views batch
            crops = torch.cat([resize(crop_batch(v, _jitter(b, gen, *self.jitter)), side, side) for v in seen])
            f, logits = m.features_and_logits(crops)
            total = total + F.cross_entropy(logits, y)
            if self.feature_weight:
                total = total + self.feature_weight * F.cosine_similarity(f.flatten(1), f0.flatten(1)).mean()
        (grad,) = torch.autograd.grad(total, delta)
        return grad

    @torch.no_grad()
    def _fooled(self, members, x_adv, boxes, before, target) -> bool:
        """Every member misreads (or reads the target) by `margin`, as saved and after real JPEG 75."""
        q = torch.round(x_adv * 255) / 255
        return all(
            float(margin(m.logits(crop_batch(seen, b)).log_softmax(1), ref, target)[0]) <= -self.margin
            for seen in (q, jpeg_batch(q, 75))
            for m, b, ref in zip(members, boxes, before, strict=True)
        )
