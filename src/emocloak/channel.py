"""The adversary's channel: what happens to a cloaked photo before a recognizer sees it.

Platforms re-encode and downscale uploads; a cloak that does not survive that
protects nothing. Spec: comma-separated steps applied in order, e.g.
`jpeg:75,resize:0.5`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from emocloak.errors import EmocloakError


class ChannelSpecError(EmocloakError, ValueError):
    """A channel spec that cannot be parsed."""


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def resize(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.LANCZOS))


@dataclass(frozen=True)
class Channel:
    steps: tuple[tuple[str, float], ...] = ()

    @classmethod
    def parse(cls, spec: str | None) -> Channel:
        if not spec or spec == "none":
            return cls()
        steps = []
        for item in spec.split(","):
            name, _, arg = item.strip().partition(":")
            try:
                value = float(arg)
            except ValueError:
                raise ChannelSpecError(
                    f"channel step {item!r}: expected name:number, e.g. jpeg:75 or resize:0.5"
                ) from None
            if name == "jpeg" and not 1 <= value <= 100:
                raise ChannelSpecError(f"jpeg quality {arg} out of range 1-100")
            if name == "resize" and not 0.05 <= value <= 1:
                raise ChannelSpecError(f"resize factor {arg} out of range 0.05-1")
            if name not in ("jpeg", "resize"):
                raise ChannelSpecError(f"unknown channel step {name!r}; valid: jpeg:QUALITY, resize:FACTOR")
            steps.append((name, value))
        return cls(tuple(steps))

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __str__(self) -> str:
        return ",".join(f"{n}:{v:g}" for n, v in self.steps) or "none"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        for name, value in self.steps:
            image = jpeg(image, int(value)) if name == "jpeg" else resize(image, value)
        return image
