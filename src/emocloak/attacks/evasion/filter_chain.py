"""Filter cloak (EAA, Baia et al. 2022): the Instagram-filter chain that makes recognizers misread a face.

Black-box: the search sees only output probabilities, and every chain it scores is
counted as one query per recognizer. The chain is searched on the whole colour
photo (downscaled to a working size for large photos) exactly as a recognizer
meets it: each recognizer crops its own face box from the filtered photo,
optionally after a JPEG round trip, so the cloak survives re-encoding. The chosen
chain is then applied to the full-resolution photo.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as torch_ssim

from emocloak.attacks.base import Attack, AttackSpecError, check_flag, check_number
from emocloak.attacks.filters import FILTER_NAMES, apply_chain
from emocloak.attacks.filters.search import ChainSpace, search
from emocloak.channel import jpeg, resize
from emocloak.errors import NoFaceError
from emocloak.faces.detect import Box, crop_padding
from emocloak.recognizers.base import Recognizer, to_tensor


def crop_batch(x: torch.Tensor, box: Box) -> torch.Tensor:
    """Crop (B, 3, H, W) at a box that may leave the image: `faces.detect.crop`'s rule, on a batch."""
    pad = crop_padding(box, x.shape[-2:])
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    return x[..., box.top + pad : box.bottom + pad, box.left + pad : box.right + pad]


def jpeg_batch(x: torch.Tensor, quality: int) -> torch.Tensor:
    """`channel.jpeg` on every image of a batch (not differentiable, and need not be)."""
    return torch.cat([to_tensor(jpeg(img, quality)) for img in (x.permute(0, 2, 3, 1) * 255).round().byte().numpy()])


def margin(logp: torch.Tensor, ref: int | torch.Tensor, target: int | torch.Tensor | None) -> torch.Tensor:
    """Graded objective on log-probabilities, negative exactly when fooled.

    Untargeted: log p[ref] - max other; targeted: max other - log p[target]. Log space keeps
    a slope on confident faces, where probabilities saturate near 1. ref and target are one
    class for all rows or one per row.
    """
    goal = torch.as_tensor(ref if target is None else target, device=logp.device).expand(len(logp))[:, None]
    gap = logp.gather(1, goal)[:, 0] - logp.scatter(1, goal, -torch.inf).max(1).values
    return gap if target is None else -gap


def _work_scale(shape: tuple[int, ...], side: int) -> float:
    return min(1.0, side / max(shape[:2]))


class FilterCloak(Attack):
    """NSGA-II over chains of `chain` filters; paper preset: pop_size=10, n_gen=10."""

    name = "filters"

    def __init__(
        self,
        chain: int = 3,
        pop_size: int = 10,
        n_gen: int = 10,
        good_ssim: float | None = 0.95,
        min_ssim: float = 0.8,
        s_range: tuple[float, float] = (0.7, 1.0),
        a_range: tuple[float, float] = (0.9, 1.1),
        ensemble: tuple[Recognizer, ...] = (),
        jpeg: int | None = None,
        work_side: int = 512,
        local: bool = False,
        seed: int | None = 0,
    ) -> None:
        super().__init__(seed)
        self.chain, self.pop_size, self.n_gen, self.good_ssim = chain, pop_size, n_gen, good_ssim
        self.min_ssim = min_ssim
        self.s_range, self.a_range, self.jpeg, self.work_side = s_range, a_range, jpeg, work_side
        self._ensemble = tuple(ensemble)
        self.local = local
        self._check_params()
        self.space = ChainSpace(chain, len(FILTER_NAMES), s_range, a_range, LOCAL_RANGES if local else ())

    def _check_params(self) -> None:
        if self.chain not in (3, 4, 5) or isinstance(self.chain, bool):
            raise AttackSpecError(f"chain={self.chain!r} invalid; valid: 3, 4, 5 filters")
        check_number("pop_size", self.pop_size, 2, math.inf, whole=True)
        check_number("n_gen", self.n_gen, 1, math.inf, whole=True)
        if self.good_ssim is not None:
            check_number("good_ssim", self.good_ssim, 0, 1, open_low=True)
        check_number("min_ssim", self.min_ssim, 0, 0.999)
        _check_range(self.s_range, ("s_min", "s_max"), 0, 1)
        _check_range(self.a_range, ("a_min", "a_max"), 0, math.inf)
        if self.jpeg is not None:
            check_number("jpeg", self.jpeg, 1, 100, whole=True)
        check_number("work_side", self.work_side, 32, math.inf, whole=True)
        check_flag("local", self.local)
        if not all(isinstance(r, Recognizer) for r in self._ensemble):
            raise AttackSpecError("ensemble must hold Recognizer objects")

    def params(self) -> dict:
        p = super().params()
        p.pop("space", None)
        return {**p, "ensemble": [r.name for r in self._ensemble]}

    def perturb(self, rec, images, clean, target, detect):
        adv, queries, info = [], [], []
        for image, ref in zip(images, clean, strict=True):
            t0 = time.perf_counter()
            try:
                out, n, details = self._cloak_one(rec, image, int(ref), target, detect)
            except NoFaceError:
                out, n, details = image, 0, {"chain": None}
            adv.append(out)
            queries.append(n)
            info.append({**details, "seconds": time.perf_counter() - t0})
        return adv, queries, info

    def _cloak_one(self, rec: Recognizer, image: np.ndarray, ref: int, target: int | None, detect: bool):
        recs = (rec, *(r for r in self._ensemble if r is not rec))
        scale = _work_scale(image.shape, self.work_side)
        work = image if scale == 1.0 else resize(image, scale)  # the search's working copy
        x = to_tensor(work)
        found = [rec.face_crop(work, detect)]  # the main recognizer must see a face (NoFaceError otherwise)
        blind = []  # ensemble members that find none: reported, and the cloak goes on with the others
        for r in recs[1:]:
            try:
                found.append(r.face_crop(work, detect))
            except NoFaceError:
                blind.append(r.name)
        recs = tuple(r for r in recs if r.name not in blind)
        boxes = [b for _, b in found]
        with torch.no_grad():  # the main recognizer's clean reading is given; the others read the work image
            refs = [ref] + [int(r.logits(to_tensor(c)).argmax()) for r, (c, _) in zip(recs[1:], found[1:], strict=True)]

        def fitness(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with torch.no_grad():
                y = self._apply(x.expand(len(X), -1, -1, -1), X, boxes[0])
                seen = jpeg_batch(y, self.jpeg) if self.jpeg else y
                f1 = torch.stack(
                    [
                        margin(r.logits(crop_batch(seen, b)).log_softmax(1), rf, target)
                        for r, b, rf in zip(recs, boxes, refs, strict=True)
                    ]
                ).amax(0)
                s = torch_ssim(y * 255, x.expand_as(y) * 255, data_range=255, size_average=False)
            return f1.numpy().astype(np.float64), (1 - s).numpy().astype(np.float64)

        res = search(self.space, fitness, self.pop_size, self.n_gen, seed=self.seed or 0, good_ssim=self.good_ssim)
        best = res.best(self.min_ssim)
        with torch.no_grad():
            full = self._apply(to_tensor(image), res.X[best : best + 1], boxes[0].scaled(1 / scale))
        out = (full[0].permute(1, 2, 0) * 255).round().byte().numpy()
        details = {
            "chain": self.describe(res.X[best]),
            "search_objective": float(res.F[best, 0]),
            "search_ssim": float(1 - res.F[best, 1]),
            "generations": res.generations,
            **({"ensemble_no_face": blind} if blind else {}),
            "pareto_front": [
                {"chain": self.describe(res.X[i]), "objective": float(res.F[i, 0]), "ssim": float(1 - res.F[i, 1])}
                for i in res.front
            ],
        }
        return out, res.evaluations * len(recs), details

    def _apply(self, x: torch.Tensor, X: np.ndarray, box: Box) -> torch.Tensor:
        """The encoded chains X on x (one image, or one per chain); local genes act around `box`."""
        decoded = self.space.decode(X)
        genes = [
            (torch.from_numpy(i), torch.from_numpy(s).float(), torch.from_numpy(a).float()) for i, s, a, *_ in decoded
        ]
        spots = [spot_mask(x.shape[-2:], box, *where) for _, _, _, *where in decoded] if self.local else None
        y = apply_chain(x, genes, spots)
        return (y * 255).round() / 255  # what gets saved is uint8

    def describe(self, x: np.ndarray) -> list[dict]:
        """A chain as people read it: filter names with strength and intensity (and where, if local)."""
        out = []
        for i, s, a, *where in self.space.decode(x[None]):
            gene = {"filter": FILTER_NAMES[int(i[0])], "strength": _r(s), "intensity": _r(a)}
            if where:
                gene["where"] = dict(zip(("x", "y", "radius"), map(_r, where), strict=True))
            out.append(gene)
        return out


# local genes: centre (x, y) as fractions of the face box, Gaussian radius as a fraction of its width
LOCAL_RANGES = ((0.15, 0.85), (0.15, 0.85), (0.08, 0.4))


def spot_mask(shape: tuple[int, int], box: Box, cx: np.ndarray, cy: np.ndarray, r: np.ndarray) -> torch.Tensor:
    """(N, 1, H, W) soft spots, one per chain: the Gaussian weight of a local gene at each pixel.

    A local gene is a filter brushed onto one part of the face (as a selective edit in a photo
    app), tried because recognizers shrug off global tone changes. Measured, it buys quality,
    not success: see `benchmarks/results/filter_cloak_local.md`.
    """
    h, w = shape

    def t(v: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(v, dtype=torch.float32)[:, None, None, None]

    px, py, sd = box.left + t(cx) * box.width, box.top + t(cy) * box.height, t(r) * box.width
    ys, xs = torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5
    d2 = (xs.view(1, 1, 1, w) - px) ** 2 + (ys.view(1, 1, h, 1) - py) ** 2
    return torch.exp(-d2 / (2 * sd**2))


def _check_range(pair: object, names: tuple[str, str], low: float, high: float) -> None:
    """A (low, high) search range: two numbers inside [low, high], the first not above the second."""
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise AttackSpecError(f"({names[0]}, {names[1]}) must be two numbers, got {pair!r}")
    for name, v in zip(names, pair, strict=True):
        check_number(name, v, low, high, open_low=low == 0 and names[0] == "a_min")
    if pair[0] > pair[1]:
        raise AttackSpecError(f"{names[0]}={pair[0]} is above {names[1]}={pair[1]}")


def _r(v: np.ndarray) -> float:
    return round(float(v[0]), 4)
