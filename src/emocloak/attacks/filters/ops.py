"""Batched torch versions of the CSS filter and compositing operations that pilgram composes.

Images are (B, 3, H, W) float tensors in [0, 1]. Every amount is a float or a (B,)
tensor, so each image of a population carries its own parameters. Formulas follow
pilgram 2.0 (W3C Filter Effects / Compositing), including where pilgram departs
from the spec, so that a stock filter here reproduces pilgram to within its uint8
rounding:

* every step clips to [0, 1] (pilgram stores uint8 between steps);
* where pilgram truncates (ImageChops multiply and screen, integer division,
  float-to-uint8 conversion, Image.blend, its alpha compositing) we floor to
  uint8 levels too: each truncation darkens by half a level on average, and
  filters stacking several drift up to 2.5 levels from pilgram without it. The
  floor is straight-through (identity gradient). pilgram's round-to-nearest steps
  (LUTs, colour matrices, composites) are unbiased and stay continuous;
* colour matrices use pilgram's coefficients (0.213/0.715/0.072 for saturate and
  hue-rotate, 0.2126/0.7152/0.0722 for grayscale);
* the non-separable blends take Lum(Cb) (and Lum(Cs) in `color`) from PIL's
  convert("L"), i.e. Rec. 601 weights, and the W3C weights everywhere else;
* gradients use pilgram's geometry (radial: distance to the farthest corner,
  measured between pixel edges; linear: PIL's 256-step ramp resampled to the image).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache, wraps

import torch
from torch import Tensor

Amount = Tensor | float
RGB = tuple[int, int, int]

EPS = 1e-6  # keeps divisions finite (and their gradients NaN-free) where a branch is masked out

# W3C / pilgram colour-matrix bases (rows = output channel)
_LUM_SVG = (0.213, 0.715, 0.072)  # saturate, hue-rotate
_LUM_709 = (0.2126, 0.7152, 0.0722)  # grayscale
_SEPIA = ((0.393, 0.769, 0.189), (0.349, 0.686, 0.168), (0.272, 0.534, 0.131))
_HUE_SIN = ((-0.213, -0.715, 0.928), (0.143, 0.140, -0.283), (-0.787, 0.715, 0.072))
LUM_W3C = (0.3, 0.59, 0.11)  # Lum() of the compositing spec
LUM_601 = (0.299, 0.587, 0.114)  # PIL convert("L"), which pilgram uses for Lum(Cb)


def per_image(v: Amount, x: Tensor) -> Tensor:
    """An amount as a (B or 1, 1, 1, 1) tensor that broadcasts over an image batch."""
    return torch.as_tensor(v, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)


def rgb(color: RGB, x: Tensor) -> Tensor:
    """A solid colour (0..255 ints, as pilgram's fills) as a (1, 3, 1, 1) tensor like `x`."""
    return torch.tensor(color, dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1) / 255


def _straight_through(v: Tensor, snapped: Tensor) -> Tensor:
    """`snapped` forward, the gradient of `v` backward (skipped when no gradient is wanted)."""
    return v + (snapped - v).detach() if v.requires_grad and torch.is_grad_enabled() else snapped


def floor255(v: Tensor) -> Tensor:
    """Truncate to uint8 levels like pilgram's integer maths; the gradient passes straight through."""
    return _straight_through(v, (v * 255 + 1e-3).floor_().div_(255))


def round255(v: Tensor) -> Tensor:
    """Round to uint8 levels (straight-through), where pilgram's result is a sum of uint8 values."""
    return _straight_through(v, (v * 255).round_().div_(255))


def lerp(start: Tensor, end: Tensor, weight: Amount) -> Tensor:
    """start + w (end - start); w broadcasts."""
    return start + weight * (end - start)


def composite(im1: Tensor, im2: Tensor, mask: Tensor) -> Tensor:
    """PIL Image.composite (rounds, so left continuous): im1 where mask = 1, im2 where mask = 0."""
    return lerp(im2, im1, mask)


def blend(im1: Tensor, im2: Tensor, alpha: Amount) -> Tensor:
    """PIL Image.blend, which truncates."""
    return floor255(lerp(im1, im2, alpha))


def alpha_blend(cb: Tensor, blended: Tensor, alpha: Amount) -> Tensor:
    """pilgram's alpha_blend of a translucent source: alpha B + (1 - alpha) Cb, each product truncated."""
    return floor255(alpha * blended) + floor255((1 - alpha) * cb)


# ---------------------------------------------------------------- CSS filter functions


def brightness(x: Tensor, v: Amount) -> Tensor:
    return (x * per_image(v, x).clamp_min(0)).clamp(0, 1)


def contrast(x: Tensor, v: Amount) -> Tensor:
    return ((x - 0.5) * per_image(v, x).clamp_min(0) + 0.5).clamp(0, 1)


def color_matrix(x: Tensor, m: Tensor) -> Tensor:
    """Apply (B or 1, 3, 3) colour matrices, then clip (PIL convert("RGB", matrix))."""
    return torch.matmul(m, x.reshape(*x.shape[:2], -1)).reshape(x.shape).clamp(0, 1)


def _matrices(v: Amount, x: Tensor) -> Tensor:
    """An amount as (B or 1, 1, 1), to scale 3x3 matrices."""
    return per_image(v, x).reshape(-1, 1, 1)


def _const(rows: Sequence, x: Tensor) -> Tensor:
    m = torch.tensor(rows, dtype=x.dtype, device=x.device)
    return m.expand(3, 3) if m.ndim == 1 else m


def _towards_identity(base: Tensor, t: Tensor) -> Tensor:
    """base + t (I - base): the shape shared by saturate, grayscale and sepia."""
    eye = torch.eye(3, dtype=base.dtype, device=base.device)
    return base + t * (eye - base)


def saturate(x: Tensor, v: Amount) -> Tensor:
    return color_matrix(x, _towards_identity(_const(_LUM_SVG, x), _matrices(v, x).clamp_min(0)))


def grayscale(x: Tensor, v: Amount) -> Tensor:
    return color_matrix(x, _towards_identity(_const(_LUM_709, x), 1 - _matrices(v, x).clamp(0, 1)))


def sepia(x: Tensor, v: Amount) -> Tensor:
    return color_matrix(x, _towards_identity(_const(_SEPIA, x), 1 - _matrices(v, x).clamp(0, 1)))


def hue_rotate(x: Tensor, deg: Amount) -> Tensor:
    rad = torch.deg2rad(_matrices(deg, x))
    m = _towards_identity(_const(_LUM_SVG, x), rad.cos()) + rad.sin() * _const(_HUE_SIN, x)
    return color_matrix(x, m)


# ---------------------------------------------------------------- blend modes B(Cb, Cs)
# cb: backdrop (B, 3, H, W); cs: source, broadcastable to cb. Results are not yet
# composited with the source alpha: see `alpha_blend`.


def multiply(cb: Tensor, cs: Tensor) -> Tensor:
    return floor255(cb * cs)


def screen(cb: Tensor, cs: Tensor) -> Tensor:
    return 1 - floor255((1 - cb) * (1 - cs))


def darken(cb: Tensor, cs: Tensor) -> Tensor:
    return torch.minimum(cb, cs)


def lighten(cb: Tensor, cs: Tensor) -> Tensor:
    return torch.maximum(cb, cs)


def exclusion(cb: Tensor, cs: Tensor) -> Tensor:
    """Cb + Cs - 2 Cb Cs, computed as pilgram does: Screen - Multiply."""
    return screen(cb, cs) - multiply(cb, cs)


def hard_light(cb: Tensor, cs: Tensor) -> Tensor:
    return torch.where(cs <= 0.5, multiply(cb, (2 * cs).clamp(max=1)), screen(cb, (2 * cs - 1).clamp(min=0)))


def overlay(cb: Tensor, cs: Tensor) -> Tensor:
    return hard_light(cs, cb)


def color_dodge(cb: Tensor, cs: Tensor) -> Tensor:
    """min(1, Cb / (1 - Cs)); Cb = 0 gives 0 and Cs = 1 gives 1 through the clamps."""
    return floor255((cb / (1 - cs).clamp_min(EPS)).clamp(max=1))


def color_burn(cb: Tensor, cs: Tensor) -> Tensor:
    """1 - min(1, (1 - Cb) / Cs); Cb = 1 gives 1 and Cs = 0 gives 0 through the clamps."""
    return 1 - floor255(((1 - cb) / cs.clamp_min(EPS)).clamp(max=1))


def soft_light(cb: Tensor, cs: Tensor) -> Tensor:
    d = torch.where(cb <= 0.25, ((16 * cb - 12) * cb + 4) * cb, cb.clamp_min(0.25).sqrt())
    dark = cb - multiply((1 - 2 * cs).clamp(min=0), cb * (1 - cb))
    light = cb + multiply((2 * cs - 1).clamp(min=0), d - cb)
    return torch.where(cs <= 0.5, dark, light).clamp(0, 1)


def lum(c: Tensor, weights: Sequence[float] = LUM_W3C) -> Tensor:
    """Luminosity (B, 1, H, W)."""
    w = torch.tensor(weights, dtype=c.dtype, device=c.device).reshape(1, 3, 1, 1)
    return (c * w).sum(1, keepdim=True)


def clip_color(c: Tensor) -> Tensor:
    """W3C ClipColor: pull out-of-gamut colours towards their luminosity (n, x from the input)."""
    lo, hi, lm = c.amin(1, keepdim=True), c.amax(1, keepdim=True), lum(c)
    c1 = torch.where(lo < 0, lm + (c - lm) * lm / (lm - lo).clamp_min(EPS), c)
    return torch.where(hi > 1, lm + (c1 - lm) * (1 - lm) / (hi - lm).clamp_min(EPS), c1)


def sat(c: Tensor) -> Tensor:
    return c.amax(1, keepdim=True) - c.amin(1, keepdim=True)


def set_sat(c: Tensor, s: Tensor) -> Tensor:
    """W3C SetSat: max channel -> s, min -> 0, mid scaled in between; grey stays 0."""
    lo, hi = c.amin(1, keepdim=True), c.amax(1, keepdim=True)
    return torch.where(hi > lo, (c - lo) * s / (hi - lo).clamp_min(EPS), 0.0)


def hue(cb: Tensor, cs: Tensor) -> Tensor:
    """SetLum(SetSat(Cs, Sat(Cb)), Lum(Cb)), with pilgram's Rec. 601 Lum(Cb)."""
    c = set_sat(cs, sat(cb))
    return floor255(clip_color(c + lum(cb, LUM_601) - lum(c)).clamp(0, 1))


def color(cb: Tensor, cs: Tensor) -> Tensor:
    """SetLum(Cs, Lum(Cb)), with pilgram's Rec. 601 Lum for both Cb and Cs.

    Rounded, not floored: pilgram adds uint8 luminosities here, so its truncation is a no-op.
    """
    return round255(clip_color(cs + lum(cb, LUM_601) - lum(cs, LUM_601)).clamp(0, 1))


# ---------------------------------------------------------------- gradients (cached per size)

CACHE_PIXELS = 512 * 512  # cache masks up to this size (search working images), not full-resolution photos


def _cached(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """lru_cache for small images only, so full-size photos do not pin large masks in memory."""
    cached = lru_cache(maxsize=64)(fn)

    @wraps(fn)
    def wrapper(h: int, w: int, *args, **kwargs) -> Tensor:
        return (cached if h * w <= CACHE_PIXELS else fn)(h, w, *args, **kwargs)

    return wrapper


@_cached
def radial_mask(
    h: int,
    w: int,
    length: float = 0.0,
    scale: float = 1.0,
    center: tuple[float, float] = (0.5, 0.5),
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """pilgram radial_gradient_mask (1, 1, H, W): 1 inside `length`, 0 beyond `scale`
    (fractions of the distance from `center` to the farthest corner), linear between."""
    if length >= 1:
        return torch.ones(1, 1, h, w, dtype=dtype, device=device)
    if scale <= 0:
        return torch.zeros(1, 1, h, w, dtype=dtype, device=device)
    cx, cy = center
    xs = torch.linspace(-w * cx, w * (1 - cx), w, dtype=torch.float64)
    ys = torch.linspace(-h * cy, h * (1 - cy), h, dtype=torch.float64)[:, None]
    r = math.hypot(max(w * cx, w * (1 - cx)), max(h * cy, h * (1 - cy)))
    dist = (xs**2 + ys**2).sqrt() / r
    mask = 1 - (dist - length) / max(scale - length, 0.001)
    return mask.clamp(0, 1).to(device=device, dtype=dtype)[None, None]


@_cached
def linear_mask(
    h: int,
    w: int,
    start: float = 0.0,
    horizontal: bool = True,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """pilgram linear_gradient_mask (1, 1, H, W): 1 - start at the left (top) edge down to 0 at the
    right (bottom), as PIL's 256-level ramp cropped from round(256 start) and resampled.

    (pilgram's horizontal mask is the vertical one rotated by 90 degrees without expanding,
    which only lines up on square images; this is the intended left-to-right ramp.)
    """
    n = w if horizontal else h
    b0 = round(256 * start)
    t = (torch.arange(n, dtype=torch.float64) + 0.5) * (256 - b0) / n
    ramp = ((255.5 - b0 - t) / 255).clamp(0, 1).to(device=device, dtype=dtype)
    return ramp.reshape(1, 1, 1, n).expand(1, 1, h, w) if horizontal else ramp.reshape(1, 1, n, 1).expand(1, 1, h, w)


@_cached
def radial_gradient(
    h: int,
    w: int,
    colors: tuple[RGB, ...],
    positions: tuple[float, ...] | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """pilgram radial_gradient (1, 3, H, W): colour stops at `positions` (default evenly spaced)."""
    pos = positions if positions is not None else [i / (len(colors) - 1) for i in range(len(colors))]
    ref = torch.empty(0, dtype=dtype, device=device)
    out = rgb(colors[0], ref)
    for p0, p1, c in zip(pos, pos[1:], colors[1:], strict=False):
        out = composite(out, rgb(c, ref), radial_mask(h, w, p0, p1, device=device, dtype=dtype))
    return out


def linear_gradient(
    h: int,
    w: int,
    start: RGB,
    end: RGB,
    horizontal: bool = True,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """pilgram linear_gradient (1, 3, H, W): `start` colour at the left (top), `end` at the right (bottom)."""
    ref = torch.empty(0, dtype=dtype, device=device)
    return composite(rgb(start, ref), rgb(end, ref), linear_mask(h, w, 0.0, horizontal, device, dtype))
