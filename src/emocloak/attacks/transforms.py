"""A differentiable stand-in for what a platform does to a photo, for expectation over transformation.

Cloaks that must survive posting optimise through random draws of this channel: JPEG at a
random quality (a torch re-implementation of baseline JPEG whose rounding passes the gradient
straight through, Shin & Song 2017), downscaling, and small brightness and contrast changes.
The real channel (`emocloak.channel`, PIL) is what success is judged on; this one only shapes
the gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# The example tables of the JPEG standard (Annex K), which libjpeg scales by quality.
_LUMA = [
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
]
_CHROMA = [[17, 18, 24, 47] + [99] * 4, [18, 21, 26, 66] + [99] * 4, [24, 26, 56] + [99] * 5, [47, 66] + [99] * 6] + [
    [99] * 8
] * 4


def _dct_matrix() -> torch.Tensor:
    k = torch.arange(8, dtype=torch.float32)
    c = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    c[0] /= math.sqrt(2)
    return c


_DCT = _dct_matrix()


def quant_table(quality: int, chroma: bool = False) -> torch.Tensor:
    """libjpeg's table for a quality 1-100 (jcparam.c: jpeg_quality_scaling)."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality {quality} out of range 1-100")
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    base = torch.tensor(_CHROMA if chroma else _LUMA, dtype=torch.float32)
    return ((base * scale + 50) // 100).clamp(1, 255)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Rounding whose gradient is the identity (straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def _blocks(x: torch.Tensor) -> torch.Tensor:
    """(N, H, W) -> (N, H/8, W/8, 8, 8)."""
    n, h, w = x.shape
    return x.view(n, h // 8, 8, w // 8, 8).transpose(2, 3)


def _unblocks(b: torch.Tensor) -> torch.Tensor:
    n, hb, wb = b.shape[:3]
    return b.transpose(2, 3).reshape(n, hb * 8, wb * 8)


def _code(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """DCT, quantise (straight-through), dequantise, inverse DCT of one 0-255 plane (N, H, W)."""
    d = _DCT.to(plane)
    coef = d @ _blocks(plane - 128) @ d.T
    coef = round_ste(coef / table) * table
    return _unblocks(d.T @ coef @ d) + 128


def diff_jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Differentiable JPEG round trip of (N, 3, H, W) RGB in [0, 1] (4:2:0, as PIL saves by default)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % 16, (-w) % 16
    rgb = F.pad(x, (0, pw, 0, ph), mode="replicate") * 255
    r, g, b = rgb.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    y = _code(y, quant_table(quality).to(x))
    chroma = F.avg_pool2d(torch.stack([cb, cr], 1), 2)
    ct = quant_table(quality, chroma=True).to(x)
    chroma = torch.stack([_code(chroma[:, 0], ct), _code(chroma[:, 1], ct)], 1)
    cb, cr = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False).unbind(1)
    out = torch.stack(
        [y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128)], 1
    )
    return (out / 255).clamp(0, 1)[..., :h, :w]


def resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Bilinear, antialiased when shrinking (as PIL and the recognizers resize)."""
    if (h, w) == tuple(x.shape[-2:]):
        return x
    shrink = h < x.shape[-2] or w < x.shape[-1]
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)


@dataclass(frozen=True)
class ChannelDraws:
    """Ranges of the random platform channel; None or a zero range switches a step off."""

    jpeg: tuple[int, int] | None = (50, 95)
    scale: tuple[float, float] | None = (0.3, 1.0)
    brightness: float = 0.03  # added, in [0, 1] units, uniform in +-
    contrast: float = 0.05  # multiplied around the mean, uniform in 1 +-

    def __post_init__(self) -> None:
        if self.jpeg is not None and not 1 <= self.jpeg[0] <= self.jpeg[1] <= 100:
            raise ValueError(f"jpeg range {self.jpeg} must be qualities 1 <= low <= high <= 100")
        if self.scale is not None and not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale range {self.scale} must satisfy 0 < low <= high <= 1")
        if not (0 <= self.brightness < 0.5 and 0 <= self.contrast < 0.5):
            raise ValueError("brightness and contrast jitter must be in [0, 0.5)")

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One random draw of the channel applied to (N, 3, H, W); the output keeps x's size."""

        def u(lo: float, hi: float) -> float:
            return lo + (hi - lo) * float(torch.rand((), generator=gen))

        h, w = x.shape[-2:]
        if self.scale is not None:
            s = u(*self.scale)
            x = resize(resize(x, max(8, round(h * s)), max(8, round(w * s))), h, w)
        if self.contrast or self.brightness:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) * u(1 - self.contrast, 1 + self.contrast) + mean + u(-self.brightness, self.brightness)
            x = x.clamp(0, 1)
        if self.jpeg is not None:
            x = diff_jpeg(x, round(u(self.jpeg[0], self.jpeg[1])))
        return x
