"""Training a colour recognizer that reads real photos: FER+ faces and TCCE photos, through a photo channel.

FER+ gives many faces (48 px, gray, web thumbnails); TCCE's training performers give colour studio
photos. Each batch mixes both. TCCE photos are cropped on the fly from the whole photo at the box of
either detector the toolkit uses (dlib by the recognizer's crop rule, or fer's Haar recipe), jittered,
and both sources go through what happens to photos on the way to a recognizer: JPEG 30-95, blur,
downscaling, colour-to-gray variations. The loop is `training.fit`'s, fed by `PhotoMix`; what is
here is only what is photo-specific. Resumable: a checkpoint after every epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from emocloak.channel import jpeg
from emocloak.data.checkpoints import load_checkpoint
from emocloak.data.ferplus import FaceSet
from emocloak.faces.detect import DEFAULT_MARGIN, Box, crop, detect_faces, square_box
from emocloak.labels import LABELS
from emocloak.recognizers.base import GRAY
from emocloak.recognizers.facenet import FaceNet
from emocloak.training import (
    Batch,
    Score,
    augment,
    averaged_on,
    contrast_brightness,
    fit,
    gray_faces_to_tensor,
    similarity_theta,
    tensor_accuracy,
    training_targets,
    uniform,
    weight_average,
)

PHOTO_SIDE = 256  # TCCE photos are 256x256; others are resized to it when cached


@dataclass
class PhotoSet:
    """Whole photos with the crop boxes of both detectors (NaN where one found no face)."""

    photos: np.ndarray  # (N, S, S, 3) uint8
    labels: np.ndarray  # (N,) int64
    names: list[str]
    subjects: list[str]
    dlib_boxes: np.ndarray  # (N, 4) float32 left, top, right, bottom in photo pixels
    haar_boxes: np.ndarray  # (N, 4) float32

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, keep: np.ndarray) -> PhotoSet:
        return PhotoSet(
            self.photos[keep],
            self.labels[keep],
            [self.names[i] for i in keep],
            [self.subjects[i] for i in keep],
            self.dlib_boxes[keep],
            self.haar_boxes[keep],
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{k: np.asarray(v) for k, v in asdict(self).items()})

    @classmethod
    def load(cls, path: Path) -> PhotoSet:
        z = np.load(path)
        return cls(
            z["photos"],
            z["labels"],
            list(z["names"]),
            list(z["subjects"]),
            z["dlib_boxes"],
            z["haar_boxes"],
        )


def build_photo_set(paths: list[Path], labels: np.ndarray, subjects: list[str], log: Callable[[str], None]) -> PhotoSet:
    """Read photos once, find faces with both detectors: what training crops from."""
    from emocloak.data.images import load_rgb
    from emocloak.recognizers.fer_port import fer_faces

    photos, dboxes, hboxes = [], [], []
    nan = [math.nan] * 4
    for i, p in enumerate(paths):
        rgb = load_rgb(p)
        if rgb.shape[:2] != (PHOTO_SIDE, PHOTO_SIDE):
            raise ValueError(f"{p}: expected {PHOTO_SIDE}x{PHOTO_SIDE}, got {rgb.shape[1]}x{rgb.shape[0]}")
        d = detect_faces(rgb)
        h = fer_faces(rgb)
        photos.append(rgb)
        dboxes.append(square_box(d[0], rgb.shape).as_list() if d else nan)
        hboxes.append(h[0].crop_box.as_list() if h else nan)
        if (i + 1) % 200 == 0:
            log(f"cached {i + 1}/{len(paths)} photos")
    return PhotoSet(
        np.stack(photos),
        labels,
        [str(p) for p in paths],
        subjects,
        np.asarray(dboxes, np.float32),
        np.asarray(hboxes, np.float32),
    )


@dataclass
class PhotoConfig:
    size: int = 64
    width: int = 24
    arch: str = "vgg"  # the architecture of `init` (a net built from scratch otherwise)
    margin: float = DEFAULT_MARGIN  # face crop: the detector's box grown by this share of its side
    epochs: int = 8
    fer_per_epoch: int = 9600  # FER+ faces drawn per epoch (a fresh random subset each time)
    fer_batch: int = 96
    photo_batch: int = 32
    lr: float = 0.03
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1  # TCCE labels are one-hot (asked-for expressions)
    seed: int = 0
    threads: int = 1
    init: str = ""  # a 48 px gray FaceNet .pt to start from (first conv spread over RGB)
    extra: dict = field(default_factory=dict)


def gray_to_rgb_init(model: FaceNet, path: str) -> None:
    """Load a gray FaceNet's weights into an RGB one: the first conv's kernel times the gray weights.

    On any RGB input the new net then computes exactly what the gray net computes on its gray image.
    """
    sd = load_checkpoint(path, "recognizer weights file")["state_dict"]
    w = torch.tensor(GRAY).view(1, 3, 1, 1)
    own = model.state_dict()
    for k, v in sd.items():
        if v.ndim == 4 and v.shape[1] == 1 and own[k].shape[1] == 3:
            sd[k] = v * w
    model.load_state_dict(sd)


def reframe(margin: float) -> float:
    """How much larger (or smaller) a crop grown by `margin` is than the default crop the caches hold."""
    return (1 + margin) / (1 + DEFAULT_MARGIN)


def reframe_boxes(boxes: np.ndarray, margin: float) -> np.ndarray:
    """(N, 4) default crop boxes rescaled about their centres to the crop rule of `margin`."""
    k = reframe(margin)
    if k == 1:
        return boxes
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * k
    return np.concatenate([c - half, c + half], 1).astype(boxes.dtype)


def reframe_faces(x: torch.Tensor, margin: float) -> torch.Tensor:
    """FER+ faces (framed like the default crop) zoomed to the framing of `margin`: edges replicated."""
    k = reframe(margin)
    if k == 1:
        return x
    theta = torch.tensor([[k, 0.0, 0.0], [0.0, k, 0.0]], dtype=x.dtype).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur (5x5 kernel); sigma 0 leaves an image as it is."""
    r = torch.arange(-2, 3, dtype=x.dtype)
    k = torch.exp(-(r.view(1, -1) ** 2) / (2 * sigma.clamp_min(1e-3).view(-1, 1) ** 2))
    k = k / k.sum(1, keepdim=True)  # (N, 5)
    n, c, h, w = x.shape
    y = x.reshape(1, n * c, h, w)
    kk = k.repeat_interleave(c, 0)
    y = F.conv2d(F.pad(y, (2, 2, 0, 0), mode="replicate"), kk.view(n * c, 1, 1, 5), groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, 2, 2), mode="replicate"), kk.view(n * c, 1, 5, 1), groups=n * c)
    return y.view(n, c, h, w)


def photo_channel(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Blur and downscaling at the crop, on random parts of a batch of (N, C, S, S) crops in [0, 1]."""
    n, s = x.shape[0], x.shape[-1]
    blur = torch.rand(n, generator=gen) < 0.25
    if blur.any():
        x = torch.where(blur.view(n, 1, 1, 1), _blur(x, uniform(0.4, 1.3, n, gen)), x)
    for i in torch.nonzero(torch.rand(n, generator=gen) < 0.3).flatten().tolist():
        small = int(uniform(0.35, 0.85, 1, gen).item() * s)
        lo = F.interpolate(x[i : i + 1], size=(small, small), mode="bilinear", antialias=True, align_corners=False)
        x[i] = F.interpolate(lo, size=(s, s), mode="bilinear", align_corners=False)[0]
    return x.clamp_(0, 1)


def _jpeg_some(images: np.ndarray, p: float, gen: torch.Generator) -> np.ndarray:
    """JPEG round trip (quality 30-95) of a random fraction p of uint8 images, (N, H, W[, 3])."""
    out = images.copy()
    for i in torch.nonzero(torch.rand(len(images), generator=gen) < p).flatten().tolist():
        q = int(uniform(30, 95, 1, gen).item())
        im = images[i] if images.ndim == 4 else np.repeat(images[i][..., None], 3, 2)
        j = jpeg(np.ascontiguousarray(im), q)
        out[i] = j if images.ndim == 4 else j[..., 0]
    return out


def colour_jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Saturation, channel gains and fully gray copies: colour-to-gray variations of RGB crops."""
    n = x.shape[0]
    gray = (x * torch.tensor(GRAY).view(1, 3, 1, 1)).sum(1, keepdim=True)
    sat = uniform(0.5, 1.3, n, gen)
    sat = torch.where(torch.rand(n, generator=gen) < 0.2, torch.zeros(n), sat).view(n, 1, 1, 1)
    x = gray + (x - gray) * sat
    x = x * uniform(0.92, 1.08, 3 * n, gen).view(n, 3, 1, 1)
    return contrast_brightness(x, gen, (0.75, 1.25), (-0.1, 0.1)).clamp_(0, 1)


def crop_photos(photos: torch.Tensor, boxes: torch.Tensor, size: int, gen: torch.Generator | None) -> torch.Tensor:
    """Square crops (N, 3, size, size) of photos at boxes (N, 4), jittered (shift, scale, roll, flip) if gen.

    The photos are halved with antialiasing first, so sampling the crop at `size` aliases about as
    little as the recognizer's own antialiased resize.
    """
    n, _, h, w = photos.shape
    half = F.interpolate(photos, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 / w * 2 - 1
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 / h * 2 - 1
    side = (boxes[:, 2] - boxes[:, 0]) / w
    ang, flip = torch.zeros(n), torch.ones(n)
    if gen is not None:
        cx = cx + uniform(-0.07, 0.07, n, gen) * side * 2
        cy = cy + uniform(-0.07, 0.07, n, gen) * side * 2
        side = side * uniform(0.9, 1.12, n, gen)
        ang = uniform(-12, 12, n, gen) * math.pi / 180
        flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang) * side, torch.sin(ang) * side
    grid = F.affine_grid(similarity_theta(cos, sin, flip, cx, cy), [n, 3, size, size], align_corners=False)
    return F.grid_sample(half, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _pick_boxes(data: PhotoSet, idx: np.ndarray, gen: torch.Generator, margin: float) -> torch.Tensor:
    """Per photo, dlib's or fer's box at random (the other one where one detector found nothing)."""
    d, h = reframe_boxes(data.dlib_boxes[idx], margin), reframe_boxes(data.haar_boxes[idx], margin)
    use_h = (torch.rand(len(idx), generator=gen) < 0.5).numpy()
    use_h = np.where(np.isnan(d[:, 0]), True, np.where(np.isnan(h[:, 0]), False, use_h))
    return torch.from_numpy(np.where(use_h[:, None], h, d))


def photo_batch(
    data: PhotoSet, idx: np.ndarray, size: int, gen: torch.Generator, margin: float = DEFAULT_MARGIN
) -> torch.Tensor:
    photos = _jpeg_some(data.photos[idx], 0.6, gen)
    x = torch.from_numpy(photos).permute(0, 3, 1, 2).float().div_(255.0)
    x = crop_photos(x, _pick_boxes(data, idx, gen, margin), size, gen)
    return photo_channel(colour_jitter(x, gen), gen)


def face_batch(
    faces: FaceSet, idx: np.ndarray, size: int, gen: torch.Generator, margin: float = DEFAULT_MARGIN
) -> torch.Tensor:
    """FER+ faces: JPEG on some, the usual geometric/erasing augmentation, then size x size RGB."""
    x = gray_faces_to_tensor(_jpeg_some(faces.images[idx], 0.3, gen))
    x = augment(reframe_faces(x, margin), gen)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
    return photo_channel(x.contiguous(), gen)


def clean_photo_crops(data: PhotoSet, size: int, margin: float = DEFAULT_MARGIN) -> torch.Tensor:
    """The crops the recognizer sees at test time: dlib's box by its crop rule, antialiased resize."""
    out = []
    for photo, b in zip(data.photos, reframe_boxes(data.dlib_boxes, margin), strict=True):
        if np.isnan(b[0]):
            out.append(torch.full((1, 3, size, size), 0.5))
            continue
        c = torch.from_numpy(np.array(crop(photo, Box(*map(round, b))))).permute(2, 0, 1)[None].float() / 255
        out.append(F.interpolate(c, size=(size, size), mode="bilinear", antialias=True, align_corners=False))
    return torch.cat(out)


def clean_face_crops(faces: FaceSet, size: int, margin: float = DEFAULT_MARGIN) -> torch.Tensor:
    x = reframe_faces(gray_faces_to_tensor(faces.images), margin)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)


def photo_validation(valid: dict[str, tuple[torch.Tensor, np.ndarray]]) -> Callable[[FaceNet], Score]:
    """Accuracy on each named set of clean crops (`clean_face_crops`, `clean_photo_crops`) and labels."""

    def validate(model: FaceNet) -> dict[str, float]:
        return {name: tensor_accuracy(model, xv, yv, batch=256) for name, (xv, yv) in valid.items()}

    return validate


def mixed_batch(
    faces: FaceSet, photos: PhotoSet, fi: np.ndarray, pi: np.ndarray, cfg: PhotoConfig, gen: torch.Generator
) -> torch.Tensor:
    """One training batch: augmented FER+ faces, then augmented TCCE crops, channels_last."""
    size, m = cfg.size, cfg.margin
    x = torch.cat([face_batch(faces, fi, size, gen, m), photo_batch(photos, pi, size, gen, m)])
    return x.contiguous(memory_format=torch.channels_last)


def smoothed_targets(labels: np.ndarray, smoothing: float) -> torch.Tensor:
    """One-hot TCCE labels smoothed over TCCE's 7 classes (it has no contempt), as 8-class soft targets."""
    eye, contempt = torch.eye(len(LABELS)), LABELS.index("contempt")
    y = eye[labels] * (1 - smoothing) + smoothing / 7 * (1 - eye[contempt])
    y[:, contempt] = 0
    return y / y.sum(1, keepdim=True)


@dataclass
class PhotoMix:
    """The photo recipe's batches for `training.fit`: `fer_batch` FER+ faces beside `photo_batch` TCCE crops.

    An epoch draws a fresh random `fer_per_epoch` FER+ faces and cycles through the photos in
    random orders; soft targets are the FER+ votes and the smoothed TCCE labels.
    """

    faces: FaceSet
    photos: PhotoSet
    cfg: PhotoConfig
    bn_steps: int = 100  # batches a weight average re-estimates its batch-norm statistics on

    def __post_init__(self) -> None:
        self.fer_soft = training_targets(self.faces, soft=True)
        self.photo_soft = smoothed_targets(self.photos.labels, self.cfg.label_smoothing)

    @property
    def steps(self) -> int:
        return self.cfg.fer_per_epoch // self.cfg.fer_batch

    def epoch(self, gen: torch.Generator) -> Iterator[Batch]:
        cfg, steps = self.cfg, self.steps
        fer_idx = torch.randperm(len(self.faces), generator=gen)[: steps * cfg.fer_batch].numpy()
        n_photo = steps * cfg.photo_batch
        rounds = math.ceil(n_photo / len(self.photos))
        photo_idx = torch.cat([torch.randperm(len(self.photos), generator=gen) for _ in range(rounds)])[
            :n_photo
        ].numpy()
        for i in range(steps):
            fi = fer_idx[i * cfg.fer_batch : (i + 1) * cfg.fer_batch]
            pi = photo_idx[i * cfg.photo_batch : (i + 1) * cfg.photo_batch]
            x = mixed_batch(self.faces, self.photos, fi, pi, cfg, gen)
            yield x, torch.cat([self.fer_soft[fi], self.photo_soft[pi]]), None

    def norm_batches(self, gen: torch.Generator) -> Iterator[torch.Tensor]:
        """`bn_steps` training batches (faces and photos drawn with replacement): the mix the members saw."""
        for _ in range(self.bn_steps):
            fi = torch.randint(len(self.faces), (self.cfg.fer_batch,), generator=gen).numpy()
            pi = torch.randint(len(self.photos), (self.cfg.photo_batch,), generator=gen).numpy()
            yield mixed_batch(self.faces, self.photos, fi, pi, self.cfg, gen)


def photo_net(cfg: PhotoConfig) -> FaceNet:
    """The colour net `cfg` names, started from the gray net `cfg.init` when given."""
    model = FaceNet(cfg.arch, width=cfg.width, in_ch=3)
    if cfg.init:
        gray_to_rgb_init(model, cfg.init)
    return model


def average_photo(weights: list[Path], cfg: PhotoConfig, faces: FaceSet, photos: PhotoSet, steps: int = 100) -> FaceNet:
    """The weight average ("soup") of photo models fine-tuned from one start, batch norm recomputed.

    Running statistics are not averaged; they are re-estimated on `steps` training batches of the
    same mix and augmentation the members were trained on, so the average sees what they saw.
    """
    torch.set_num_threads(cfg.threads)
    gen = torch.Generator().manual_seed(cfg.seed)
    avg = weight_average(weights, lambda: FaceNet(cfg.arch, width=cfg.width, in_ch=3))
    avg.module.to(memory_format=torch.channels_last)
    return averaged_on(avg, PhotoMix(faces, photos, cfg, bn_steps=steps).norm_batches(gen)).eval()


def train_photo(
    cfg: PhotoConfig,
    faces: FaceSet,
    photos: PhotoSet,
    valid: dict[str, tuple[torch.Tensor, np.ndarray]],
    out: Path,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> FaceNet:
    """The photo recipe through `training.fit`: write `out` (weights + .json), `out`.ckpt after every epoch.

    An existing checkpoint is continued only with resume, so a new run never overwrites an old one.
    """
    ckpt = out.with_suffix(".ckpt")
    if ckpt.exists() and not resume:
        raise FileExistsError(f"{ckpt} exists: pass --resume to continue it, or delete it to start afresh")
    return fit(
        cfg,
        lambda: photo_net(cfg),
        PhotoMix(faces, photos, cfg),
        photo_validation(valid),
        out,
        pct_start=0.15,
        log=log,
        log_every=20,
        size=cfg.size,
        margin=cfg.margin,
    )
