"""Universal cloak (Pri-EMO, Zeng et al. 2023): one perturbation for every face, learnt in feature space.

Learning is slow and done once; cloaking is an addition, with no model query.

Design choices:

* `delta` lives on a square SxS face crop. It is bilinearly resized to each face's crop box
  (antialiased when shrinking, as `Recognizer.to_input` resizes); the weights are convex, so
  |delta| <= eps holds at any size, and on a 48x48 face the model sees exactly what training saw.
  S defaults to the recognizer's own input size (48 for `cnn`): learnt at 64, the pattern was
  averaged away by the 64 -> 48 antialiased resize before the model saw it (60-step pilots on 500
  FER+ valid faces, label weight 1: 34.8% success at S = 64, 63.0% at S = 48;
  `scripts/train_universal.py --targets untargeted --steps 60 --n-faces 3000 --n-holdout 500
  --ce-weight 0.1|1 --size 64|48 --box-scale 1`).
* On a photo the same blur comes back: delta is stretched to the face box and the recognizer
  shrinks the box to 48 again. Learnt at 48 without that round trip, the pattern fooled `cnn` on
  76.1% of 1,000 FER+ test faces but on only 27.0% of the 244 TCCE test photos (200 steps,
  `--box-scale 1`, then `benchmarks/universal_cloak.py --dir DIR --art-faces 0 --sweep`). So each
  step passes delta through a random face box of up to `box_scale` (default 4) times its side.
* Untargeted loss: cosine similarity between the features of x + delta and of x, averaged over
  recognizers (cosine is scale-free, so no recognizer dominates). It has zero gradient at
  delta = 0, hence a seeded uniform start in the eps ball. Plus `ce_weight` * a hinge on the
  clean class's logit margin (zero once a face is misread): features alone plateaued at 38% on
  FER+ valid (eps 8, 300 steps), the hinge keeps pushing on the faces not yet fooled. Its weight
  defaults to 1 (0.1 in the 60-step pilot above: 32.0% against 34.8% at S = 64).
* Targeted loss: 1 - cosine to the target class's feature centroid (mean features of training
  crops read as the target; probability-weighted mean over all crops when fewer than
  MIN_CENTROID are), plus `ce_weight` * cross-entropy toward the target on the logits, which
  turns "near the centroid" into "over the decision boundary".
* Features and logits come from one pass (`Recognizer.features_and_logits`); apart, each step
  ran the trunk twice per flip view. More steps still pay: on 1,000 FER+ valid faces, 200 steps gave 60.0%, 1000
  steps 66.7% (the shipped file; both records are in its git history and metadata).
* Adam on delta, projected onto the L-inf ball after each step, x + delta clamped to [0, 1],
  cosine-annealed learning rate. Optional JPEG in the loop by BPDA: the forward pass sees the
  real (PIL) JPEG round trip of each crop, the backward pass treats it as the identity.
  Optional `quality_weight` * (1 - SSIM) keeps the pattern smooth where it costs little.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim import ssim
from rich.progress import Progress

from emocloak.attacks.base import Attack, AttackSpecError, check_linf, paste, require_gradient
from emocloak.data.checkpoints import load_checkpoint
from emocloak.data.datasets import PhotoSet
from emocloak.data.ferplus import FaceSet
from emocloak.data.images import load_rgb
from emocloak.errors import EmocloakError, ImageError, NoFaceError
from emocloak.faces.detect import Box, crop
from emocloak.labels import LABELS, label_index
from emocloak.metrics.robustness import success
from emocloak.recognizers.base import Recognizer, to_tensor
from emocloak.recognizers.registry import WEIGHTS

DEFAULT_SIZE = 64
MIN_CENTROID = 16  # fewer training crops read as the target than this: use the probability-weighted centroid
MAX_EPS = 64 / 255
UNTARGETED_KAPPA = 1.0  # logit margin past the boundary before a face stops counting in the untargeted hinge


class PerturbationError(EmocloakError):
    """A perturbation file that is missing, unreadable, or not what it claims to be."""


@dataclass(frozen=True)
class UniversalPerturbation:
    """delta: (3, S, S) float in [-eps, eps], [0, 1] pixel units; meta: plain types, eps in /255."""

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
        return replace(self, delta=delta, meta=meta)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"delta": self.delta.detach().float().cpu().contiguous(), "meta": self.meta}, path)
        return path

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


# --- applying ---------------------------------------------------------------
def _resize(d: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(N, C, H, W) resized as the recognizers resize crops: bilinear, antialiased when shrinking."""
    if (h, w) == tuple(d.shape[-2:]):
        return d
    return F.interpolate(d, size=(h, w), mode="bilinear", align_corners=False, antialias=min(h, w) < d.shape[-1])


def _pixel_delta(up: UniversalPerturbation, h: int, w: int) -> np.ndarray:
    """delta resized to (h, w), as (h, w, 3) float32 in 0-255 units."""
    return (_resize(up.delta[None], h, w)[0].permute(1, 2, 0) * 255).numpy().astype(np.float32)


def _add(pixels: np.ndarray, d: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels.astype(np.float32) + d), 0, 255).astype(np.uint8)


def apply_universal(image: np.ndarray, up: UniversalPerturbation, boxes: Sequence[Box]) -> np.ndarray:
    """Add delta to each face box of an RGB uint8 photo (clipped at its edges); no model query.

    Every patch is computed from the original pixels, so where boxes overlap the change is
    one face's delta (the later box's), never a sum: |change| <= eps * 255 + 0.5 everywhere.
    """
    out = image
    for b in boxes:
        out = paste(out, b, _add(crop(image, b), _pixel_delta(up, b.height, b.width)))
    return out.copy() if out is image else out


def apply_universal_batch(faces: np.ndarray, up: UniversalPerturbation) -> np.ndarray:
    """(N, H, W, 3) uint8 faces of one size, cloaked whole-frame: one resize, one vectorised add."""
    return _add(faces, _pixel_delta(up, faces.shape[1], faces.shape[2]))


# --- learning ---------------------------------------------------------------
def _float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(255) if x.dtype == torch.uint8 else x.float()


@torch.no_grad()
def _read_all(rec: Recognizer, crops: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and probabilities of every training crop, once."""
    feats, probs = [], []
    for s in range(0, len(crops), batch):
        f, logits = rec.features_and_logits(_float(crops[s : s + batch]))
        feats.append(f)
        probs.append(logits.softmax(1))
    return torch.cat(feats), torch.cat(probs)


def _centroid(feats: torch.Tensor, probs: torch.Tensor, target: int) -> tuple[torch.Tensor, str]:
    read_as = probs.argmax(1) == target
    if int(read_as.sum()) >= MIN_CENTROID:
        return feats[read_as].mean(0), f"mean of {int(read_as.sum())} crops read as {LABELS[target]}"
    w = probs[:, target]
    return (w[:, None] * feats).sum(0) / w.sum().clamp_min(1e-12), "p(target)-weighted mean of all crops"


def _bpda_jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Forward: the real JPEG round trip; backward: identity."""
    from emocloak.attacks.evasion.filter_chain import jpeg_batch

    return x + (jpeg_batch(x.detach(), quality) - x).detach()


def _through_face_box(delta: torch.Tensor, gen: torch.Generator, max_scale: float) -> torch.Tensor:
    """delta as a recognizer meets it on a photo: resized to a random face-box side, then back.

    On a photo the pattern is stretched to the face box and the recognizer shrinks the box to its
    input size again; resizing is linear, so that is what reaches the model. Learning through
    random boxes keeps the pattern from living in detail that this round trip blurs away.
    """
    side = delta.shape[-1]
    box = int(torch.randint(side, int(side * max_scale) + 1, (1,), generator=gen))
    return _resize(_resize(delta, box, box), side, side)


def _loss(
    recs: Sequence[Recognizer],
    x: torch.Tensor,
    seen: torch.Tensor,
    refs: Sequence[torch.Tensor],
    clean: Sequence[torch.Tensor],
    target: int | None,
    ce_weight: float,
) -> torch.Tensor:
    """Mean over recognizers of the feature term plus `ce_weight` * a label term.

    Untargeted: cos(f(seen), f(x)) plus the hinge on the clean class's logit margin, which is
    zero once a face is misread, so the pattern keeps working on the faces it does not fool yet.
    Targeted: 1 - cos to the target centroid plus cross-entropy toward the target.
    """
    total = x.new_zeros(())
    for rec, ref, c in zip(recs, refs, clean, strict=True):
        feats, logits = rec.features_and_logits(seen)
        cos = F.cosine_similarity(feats, ref, dim=1).mean()
        if target is None:
            others = logits.scatter(1, c[:, None], -torch.inf).amax(1)
            hinge = F.relu(logits.gather(1, c[:, None])[:, 0] - others + UNTARGETED_KAPPA).mean()
            total = total + cos + ce_weight * hinge
        else:
            goal = torch.full((len(x),), target, dtype=torch.long)
            total = total + (1 - cos) + ce_weight * F.cross_entropy(logits, goal)
    return total / len(recs)


def learn_universal(
    recs: Sequence[Recognizer],
    crops: torch.Tensor,
    eps: float,
    target: int | str | None = None,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float | None = None,
    jpeg_quality: int | None = None,
    quality_weight: float = 0.0,
    ce_weight: float = 1.0,
    box_scale: float = 4.0,
    seed: int = 0,
    progress: bool = True,
    holdout: np.ndarray | None = None,
    data: str = "",
) -> UniversalPerturbation:
    """Learn one delta for all `crops` ((N, 3, S, S), float in [0, 1] or uint8 to save memory).

    eps (and lr, default eps/10) are in [0, 1] pixel units, as for PGD; the file records eps in /255.
    box_scale > 1: each step passes delta through a random face box up to box_scale times its side
    (`_through_face_box`), so it survives being pasted into photos.
    `holdout`: (N, H, W, 3) uint8 faces never trained on, whose success rate goes into the metadata.
    """
    for rec in recs:
        require_gradient(rec)
    if not 0 < eps <= MAX_EPS:
        raise ValueError(f"eps={eps} out of range (0, {MAX_EPS:.4f}]; it is in [0, 1] units, e.g. 8/255")
    if crops.dim() != 4 or crops.shape[1] != 3 or crops.shape[2] != crops.shape[3] or not len(crops):
        raise ValueError(f"crops must be a non-empty (N, 3, S, S) tensor, got {tuple(crops.shape)}")
    tgt = None if target is None else label_index(target) if isinstance(target, str) else int(target)
    gen = torch.Generator().manual_seed(seed)
    reads = [_read_all(r, crops) for r in recs]
    centroids = None if tgt is None else [_centroid(f, p, tgt) for f, p in reads]
    delta = (torch.rand(1, *crops.shape[1:], generator=gen) * 2 - 1).mul_(eps).requires_grad_(True)
    opt = torch.optim.Adam([delta], lr=lr or eps / 10)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    order, pos = torch.randperm(len(crops), generator=gen), 0
    t0 = time.perf_counter()
    with Progress(disable=not progress, transient=True) as bar:
        name = f"universal {'untargeted' if tgt is None else LABELS[tgt]}"
        task = bar.add_task(name, total=steps)
        for _ in range(steps):
            if pos + batch_size > len(crops) and pos:  # next epoch, reshuffled
                order, pos = torch.randperm(len(crops), generator=gen), 0
            idx = order[pos : pos + batch_size]
            pos += batch_size
            x = _float(crops[idx])
            d = _through_face_box(delta, gen, box_scale) if box_scale > 1 else delta
            x_adv = (x + d).clamp(0, 1)
            seen = _bpda_jpeg(x_adv, jpeg_quality) if jpeg_quality else x_adv
            refs = [f[idx] for f, _ in reads] if tgt is None else [c[None] for c, _ in centroids or []]
            loss = _loss(recs, x, seen, refs, [p[idx].argmax(1) for _, p in reads], tgt, ce_weight)
            if quality_weight:
                loss = loss + quality_weight * (1 - ssim(x_adv, x, data_range=1.0))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                delta.clamp_(-eps, eps)
            bar.update(task, advance=1, description=f"{name} loss {loss.item():.4f}")
    meta = {
        "format": 1,
        "recognizers": [r.name for r in recs],
        "eps": round(eps * 255, 6),
        "target": None if tgt is None else LABELS[tgt],
        "size": int(crops.shape[-1]),
        "data": data,
        "n_train": len(crops),
        "seed": seed,
        "steps": steps,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "batch_size": batch_size,
        "lr": lr or eps / 10,
        "jpeg_quality": jpeg_quality,
        "quality_weight": quality_weight,
        "ce_weight": ce_weight,
        "box_scale": box_scale,
        "loss": "feature cosine to clean + margin hinge"
        if tgt is None
        else "1 - feature cosine to target centroid + CE",
        "centroid": None if centroids is None else {r.name: how for r, (_, how) in zip(recs, centroids, strict=True)},
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "version": _version(),
    }
    up = UniversalPerturbation(delta.detach()[0].clamp(-eps, eps), meta)
    if holdout is not None:
        up.meta["holdout"] = evaluate_universal(recs, up, holdout, jpeg_quality)
    return up


def _version() -> str:
    from emocloak import __version__

    return __version__


def evaluate_universal(
    recs: Sequence[Recognizer], up: UniversalPerturbation, faces: np.ndarray, jpeg_quality: int | None = None
) -> dict:
    """Success rate per recognizer on (N, H, W, 3) uint8 faces, judged as `Attack` judges it.

    With jpeg_quality, also after a JPEG round trip of the cloaked faces (clean faces read as they are).
    """
    from emocloak.channel import jpeg

    adv = apply_universal_batch(faces, up)
    out: dict = {"n": len(faces), "success": {}}
    if jpeg_quality:
        out["success_after_jpeg"], out["jpeg_quality"] = {}, jpeg_quality
    for rec in recs:
        clean = rec.predict_crops(list(faces)).argmax(1)
        out["success"][rec.name] = float(success(rec.predict_crops(list(adv)).argmax(1), clean, up.target).mean())
        if jpeg_quality:
            after = rec.predict_crops([jpeg(a, jpeg_quality) for a in adv]).argmax(1)
            out["success_after_jpeg"][rec.name] = float(success(after, clean, up.target).mean())
    return out


def _resize_crop(c: np.ndarray, size: int) -> torch.Tensor:
    x = _resize(to_tensor(c if c.ndim == 3 else np.repeat(c[..., None], 3, 2)), size, size)
    return (x[0] * 255).round().byte()


def face_crops(
    data: FaceSet | PhotoSet,
    rec: Recognizer,
    size: int = DEFAULT_SIZE,
    limit: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> torch.Tensor:
    """Training crops (N, 3, size, size) uint8: FaceSet faces as they are, photos' largest face by `rec`.

    Photos with no face, or that cannot be read, are skipped; `limit` draws a seeded subset first.
    """
    idx = np.arange(len(data))
    if limit is not None and limit < len(data):
        idx = np.sort(np.random.default_rng(seed).choice(len(data), limit, replace=False))
    out = []
    with Progress(disable=not progress, transient=True) as bar:
        for i in bar.track(idx, description="face crops"):
            if isinstance(data, FaceSet):
                out.append(_resize_crop(data.images[i], size))
                continue
            try:
                out.append(_resize_crop(rec.face_crop(load_rgb(data.paths[i]), source=str(data.paths[i]))[0], size))
            except (NoFaceError, ImageError):
                continue
    return torch.stack(out) if out else torch.zeros(0, 3, size, size, dtype=torch.uint8)


# --- the attack ---------------------------------------------------------------
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
