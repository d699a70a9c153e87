"""A perceptual budget: how far each pixel may move before people see it.

A bare L-inf box spends the same change on smooth skin as on hair, and on skin people see it
(the universal cloak's blotches). Contrast masking says a change hides in local texture, so
the budget here is a per-pixel map: a floor on flat areas rising with the local standard
deviation of luminance, capped, and tapered to zero at the edge of the region so no seam can
be seen where the cloak stops.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from emocloak.attacks.transforms import resize
from emocloak.recognizers.base import GRAY

FACE_SIDE = 224  # texture is judged with the face at this side, whatever size it has in the photo


@dataclass(frozen=True)
class Budget:
    """cap: largest change in [0, 1] units; floor: share of cap allowed where the local luminance std
    is at most texture[0] (skin in a phone photo measures 4-9/255); the share rises linearly to 1 at
    texture[1] (hair, brows, edges: 25/255 and more); taper: share of the region's side over which
    the budget fades to zero at its border."""

    cap: float = 8 / 255
    floor: float = 0.15
    texture: tuple[float, float] = (8 / 255, 30 / 255)
    taper: float = 0.12
    window: int = 7

    def __post_init__(self) -> None:
        if not 0 < self.cap <= 32 / 255:
            raise ValueError(f"cap={self.cap:.4f} out of range (0, 32/255]: it is in [0, 1] units")
        if not 0 <= self.floor <= 1:
            raise ValueError(f"floor={self.floor} must be a share of cap in [0, 1]")
        if not 0 <= self.texture[0] < self.texture[1]:
            raise ValueError(f"texture={self.texture} must be local-std bounds 0 <= low < high")
        if not 0 <= self.taper < 0.5:
            raise ValueError(f"taper={self.taper} must be in [0, 0.5)")
        if self.window < 3 or self.window % 2 == 0:
            raise ValueError(f"window={self.window} must be an odd number >= 3")

    def describe(self) -> dict:
        return {
            "cap": round(self.cap * 255, 3),
            "floor": self.floor,
            "texture": [round(t * 255, 2) for t in self.texture],
            "taper": self.taper,
        }

    @classmethod
    def from_description(cls, d: dict) -> Budget:
        """The budget a `describe()` dict (as files keep it) stands for."""
        return cls(cap=d["cap"] / 255, floor=d["floor"], texture=tuple(t / 255 for t in d["texture"]), taper=d["taper"])

    def at_face_scale(self, x: torch.Tensor, side: int = FACE_SIDE) -> torch.Tensor:
        """The budget of face crops x as if their longer side were `side` pixels, at x's own size.

        The texture window is in pixels, so a 48-pixel crop would read its smooth cheeks as texture
        (the window spans a sixth of the face) and a 400-pixel box would read its pores as flat:
        judging every face at one scale gives a pattern the same map at any size it is pasted at.
        """
        h, w = x.shape[-2:]
        k = side / max(h, w)
        return resize(self(resize(x, max(8, round(h * k)), max(8, round(w * k)))), h, w)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel budget (N, 1, H, W) for images (N, 3, H, W) in [0, 1]."""
        return self.cap * texture_share(x, self.floor, self.texture, self.window) * border_taper(x, self.taper)


def local_std(gray: torch.Tensor, window: int) -> torch.Tensor:
    """Standard deviation of (N, 1, H, W) in a window x window neighbourhood (edge-padded)."""
    p = window // 2
    g = F.pad(gray, (p, p, p, p), mode="replicate")
    mean = F.avg_pool2d(g, window, stride=1)
    sq = F.avg_pool2d(g * g, window, stride=1)
    return (sq - mean * mean).clamp_min(0).sqrt()


def texture_share(x: torch.Tensor, floor: float, texture: tuple[float, float], window: int) -> torch.Tensor:
    """floor where local luminance std <= texture[0], rising linearly to 1 at texture[1]."""
    w = torch.tensor(GRAY, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = local_std((x * w).sum(1, keepdim=True), window)
    lo, hi = texture
    return floor + (1 - floor) * ((std - lo) / (hi - lo)).clamp(0, 1)


def border_taper(x: torch.Tensor, share: float) -> torch.Tensor:
    """1 inside, a raised-cosine fade to 0 over `share` of each side at the border; (1, 1, H, W)."""
    h, w = x.shape[-2:]

    def ramp(n: int) -> torch.Tensor:
        k = max(1, round(n * share))
        d = torch.minimum(torch.arange(n), torch.arange(n).flip(0)).to(x.dtype)  # distance to the nearer edge
        return 0.5 - 0.5 * torch.cos(torch.pi * (d / k).clamp(max=1.0)) if share > 0 else torch.ones(n)

    return (ramp(h)[:, None] * ramp(w)[None, :]).view(1, 1, h, w).to(x)
