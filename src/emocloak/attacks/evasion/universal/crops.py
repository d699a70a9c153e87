"""Training crops for the universal cloak: every face of a dataset at one square size."""

from __future__ import annotations

import numpy as np
import torch

from emocloak.attacks.evasion.universal.apply import resize_delta
from emocloak.data.datasets import PhotoSet
from emocloak.data.ferplus import FaceSet
from emocloak.data.images import load_rgb
from emocloak.errors import ImageError, NoFaceError
from emocloak.progress import bar as progress_bar
from emocloak.recognizers.base import Recognizer, to_tensor

DEFAULT_SIZE = 64


def _resize_crop(c: np.ndarray, size: int) -> torch.Tensor:
    x = resize_delta(to_tensor(c if c.ndim == 3 else np.repeat(c[..., None], 3, 2)), size, size)
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
    with progress_bar(disable=not progress) as bar:
        for i in bar.track(idx, description="face crops"):
            if isinstance(data, FaceSet):
                out.append(_resize_crop(data.images[i], size))
                continue
            try:
                out.append(_resize_crop(rec.face_crop(load_rgb(data.paths[i]), source=str(data.paths[i]))[0], size))
            except (NoFaceError, ImageError):
                continue
    return torch.stack(out) if out else torch.zeros(0, 3, size, size, dtype=torch.uint8)
