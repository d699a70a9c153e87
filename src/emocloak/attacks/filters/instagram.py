"""pilgram's 26 Instagram filters as batched torch functions, tunable per image.

A filter is `f(x, a)`: x (B, 3, H, W) in [0, 1], a (B,) the intensity. Each filter
is written as pilgram builds it: colour or gradient layers blended onto the photo
(sometimes inside a vignette mask), then a list of CSS adjustments.

Intensity a scales everything the filter adds, so that a = 0 is the identity,
a = 1 the stock pilgram filter and a = 1.1 a 10% stronger one:

* a CSS adjustment with stock amount v and neutral value n (1 for contrast,
  brightness and saturate; 0 for sepia, grayscale and hue-rotate) runs at
  n + a (v - n), clamped to where the function is defined (>= 0; sepia and
  grayscale <= 1);
* a layer's alpha is scaled by a and clipped to [0, 1]: the fill's own alpha, or,
  where pilgram wraps layers in Image.blend, that outer opacity alone (the layers
  inside stay stock). Vignette masks are geometry and stay as they are.
  An opaque layer is therefore at full strength already at a = 1: Kelvin, made of
  opaque layers only, does not grow past a = 1.

Strength s then mixes the result with the input: `apply_gene` returns
(1 - s) x + s f_a(x) per image, and `apply_chain` applies genes in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from emocloak.attacks.filters import ops
from emocloak.attacks.filters.ops import RGB

Stage = Callable[[Tensor, Tensor], Tensor]  # (x, a) -> x'; a filter is a stage
Blend = Callable[[Tensor, Tensor], Tensor]  # B(Cb, Cs)
Source = Callable[[Tensor], Tensor]  # backdrop -> source colours, broadcastable to it
Mask = Callable[[Tensor], Tensor]  # backdrop -> (1, 1, H, W) weights
Gene = tuple[Tensor, Tensor, Tensor]  # filter ids (B,), strength s (B,), intensity a (B,)

_NEUTRAL = {"brightness": 1.0, "contrast": 1.0, "saturate": 1.0, "sepia": 0.0, "grayscale": 0.0, "hue_rotate": 0.0}


# ---------------------------------------------------------------- building blocks


def _radial(colors: Sequence[RGB], positions: Sequence[float] | None = None) -> Source:
    stops = tuple(positions) if positions is not None else None
    return lambda x: ops.radial_gradient(*x.shape[-2:], tuple(colors), stops, x.device, x.dtype)


def _vertical(top: RGB, bottom: RGB) -> Source:
    return lambda x: ops.linear_gradient(*x.shape[-2:], top, bottom, False, x.device, x.dtype)


def _ring(**kw) -> Mask:
    """A radial vignette mask (see ops.radial_mask for length, scale, center)."""
    return lambda x: ops.radial_mask(*x.shape[-2:], **kw, device=x.device, dtype=x.dtype)


def _ramp(start: float) -> Mask:
    return lambda x: ops.linear_mask(*x.shape[-2:], start, True, x.device, x.dtype)


def _weight(alpha: float, a: Tensor, x: Tensor) -> Tensor:
    return ops.per_image(alpha * a, x).clamp(0, 1)


def layer(mode: Blend, source: RGB | Source, alpha: float = 1.0) -> Stage:
    """A fill (or gradient) blended onto the photo with `mode` at opacity `alpha` x a."""
    src = (lambda x: ops.rgb(source, x)) if isinstance(source, tuple) else source
    alpha = round(alpha * 255) / 255  # pilgram's RGBA fill stores alpha as uint8

    def stage(x: Tensor, a: Tensor) -> Tensor:
        return ops.alpha_blend(x, mode(x, src(x)), _weight(alpha, a, x))

    return stage


def opacity(inner: Stage, alpha: float) -> Stage:
    """Image.blend(x, inner(x), alpha): the inner layers stock, the opacity scaled by a."""

    def stage(x: Tensor, a: Tensor) -> Tensor:
        return ops.blend(x, inner(x, torch.ones_like(a)), _weight(alpha, a, x))

    return stage


def vignette(inside: Stage, outside: Stage, mask: Mask) -> Stage:
    """Image.composite(inside(x), outside(x), mask): both computed from the same x."""
    return lambda x, a: ops.composite(inside(x, a), outside(x, a), mask(x))


def css(**amounts: float) -> Stage:
    """CSS adjustments in the given order, each at n + a (v - n)."""
    steps = [(getattr(ops, name), _NEUTRAL[name], v) for name, v in amounts.items()]

    def stage(x: Tensor, a: Tensor) -> Tensor:
        for op, n, v in steps:
            x = op(x, n + a * (v - n))
        return x

    return stage


def chain(*stages: Stage) -> Stage:
    def stage(x: Tensor, a: Tensor) -> Tensor:
        for s in stages:
            x = s(x, a)
        return x

    return stage


def _identity(x: Tensor, a: Tensor) -> Tensor:
    return x


def _xpro2_source(x: Tensor) -> Tensor:
    """X-Pro II burns the photo with a light centre fading to a 60% blue wash of the photo itself."""
    wash = ops.blend(x, ops.rgb((43, 42, 161), x), 0.6)
    return ops.composite(ops.rgb((230, 231, 224), x), wash, _XPRO2_MASK(x))


_XPRO2_MASK = _ring(length=0.4, scale=1.1)
_xpro2_burn = layer(ops.color_burn, _xpro2_source)
_mayfair_layers = vignette(
    vignette(
        layer(ops.overlay, (255, 255, 255), 0.8),
        layer(ops.overlay, (255, 200, 200), 0.6),
        _ring(scale=0.3, center=(0.4, 0.4)),
    ),
    layer(ops.overlay, (17, 17, 17)),
    _ring(length=0.3, scale=0.6, center=(0.4, 0.4)),
)

# ---------------------------------------------------------------- the filters (pilgram 2.0)

FILTERS: dict[str, Stage] = {
    "_1977": chain(layer(ops.screen, (243, 106, 188), 0.3), css(contrast=1.1, brightness=1.1, saturate=1.3)),
    "aden": chain(
        vignette(layer(ops.darken, (66, 10, 14)), _identity, _ramp(0.8)),
        css(hue_rotate=-20, contrast=0.9, saturate=0.85, brightness=1.2),
    ),
    "brannan": chain(layer(ops.lighten, (161, 44, 199), 0.31), css(sepia=0.5, contrast=1.4)),
    "brooklyn": chain(
        vignette(layer(ops.overlay, (168, 223, 193), 0.4), layer(ops.overlay, (196, 183, 200)), _ring(length=0.7)),
        css(contrast=0.9, brightness=1.1),
    ),
    "clarendon": chain(layer(ops.overlay, (127, 187, 227), 0.2), css(contrast=1.2, saturate=1.35)),
    "earlybird": chain(
        layer(ops.overlay, _radial([(208, 186, 142), (54, 3, 9), (29, 2, 16)], [0.2, 0.85, 1])),
        css(contrast=0.9, sepia=0.2),
    ),
    "gingham": chain(layer(ops.soft_light, (230, 230, 250)), css(brightness=1.05, hue_rotate=-10)),
    "hudson": chain(
        opacity(layer(ops.multiply, _radial([(166, 177, 255), (52, 33, 52)], [0.5, 1])), 0.5),
        css(brightness=1.2, contrast=0.9, saturate=1.1),
    ),
    "inkwell": css(sepia=0.3, contrast=1.1, brightness=1.1, grayscale=1),
    "kelvin": chain(layer(ops.color_dodge, (56, 44, 52)), layer(ops.overlay, (183, 125, 33))),
    "lark": chain(layer(ops.color_dodge, (34, 37, 63)), layer(ops.darken, (242, 242, 242), 0.8), css(contrast=0.9)),
    "lofi": chain(
        vignette(_identity, layer(ops.multiply, (34, 34, 34)), _ring(length=0.7, scale=1.5)),
        css(saturate=1.1, contrast=1.5),
    ),
    "maven": chain(layer(ops.hue, (3, 230, 26), 0.2), css(sepia=0.25, brightness=0.95, contrast=0.95, saturate=1.5)),
    "mayfair": chain(opacity(_mayfair_layers, 0.4), css(contrast=1.1, saturate=1.1)),
    "moon": chain(
        layer(ops.soft_light, (160, 160, 160)),
        layer(ops.lighten, (56, 56, 56)),
        css(grayscale=1, contrast=1.1, brightness=1.1),
    ),
    "nashville": chain(
        layer(ops.darken, (247, 176, 153), 0.56),
        layer(ops.lighten, (0, 70, 150), 0.4),
        css(sepia=0.2, contrast=1.2, brightness=1.05, saturate=1.2),
    ),
    "perpetua": opacity(layer(ops.soft_light, _vertical((0, 91, 154), (230, 193, 61))), 0.5),
    "reyes": chain(
        opacity(layer(ops.soft_light, (239, 205, 173)), 0.5),
        css(sepia=0.22, brightness=1.1, contrast=0.85, saturate=0.75),
    ),
    "rise": chain(
        vignette(layer(ops.multiply, (236, 205, 169), 0.15), layer(ops.multiply, (50, 30, 7), 0.4), _ring(length=0.55)),
        opacity(vignette(layer(ops.overlay, (232, 197, 152), 0.8), _identity, _ring(scale=0.9)), 0.6),
        css(brightness=1.05, sepia=0.2, contrast=0.9, saturate=0.9),
    ),
    "slumber": chain(
        layer(ops.lighten, (69, 41, 12), 0.4),
        layer(ops.soft_light, (125, 105, 24), 0.5),
        css(saturate=0.66, brightness=1.05),
    ),
    "stinson": chain(layer(ops.soft_light, (240, 149, 128), 0.2), css(contrast=0.75, saturate=0.85, brightness=1.15)),
    "toaster": chain(layer(ops.screen, _radial([(128, 78, 15), (59, 0, 59)])), css(contrast=1.5, brightness=0.9)),
    "valencia": chain(opacity(layer(ops.exclusion, (58, 3, 57)), 0.5), css(contrast=1.08, brightness=1.08, sepia=0.08)),
    "walden": chain(
        opacity(layer(ops.screen, (0, 68, 204)), 0.3), css(brightness=1.1, hue_rotate=-10, sepia=0.3, saturate=1.6)
    ),
    "willow": chain(
        layer(ops.overlay, _radial([(212, 169, 175), (0, 0, 0)], [0.55, 1.5])),
        layer(ops.color, (216, 205, 203)),
        css(grayscale=0.5, contrast=0.95, brightness=0.9),
    ),
    "xpro2": chain(vignette(_xpro2_burn, opacity(_xpro2_burn, 0.6), _XPRO2_MASK), css(sepia=0.3)),
}
FILTER_NAMES: list[str] = sorted(FILTERS)  # the index is the filter id used by genes


# ---------------------------------------------------------------- genes and chains


CPU_CHUNK = 2**19  # values per tensor on CPU: small enough to stay in cache (big ones also page-fault)


def apply_gene(x: Tensor, filter_ids: Tensor, s: Tensor | float, a: Tensor | float) -> Tensor:
    """(1 - s) x + s f_a(x) with each image's own filter; images sharing a filter run as one batch."""
    ids = torch.as_tensor(filter_ids, device=x.device).long().reshape(-1)
    x = x.expand(len(ids), -1, -1, -1) if x.shape[0] == 1 else x
    s, a = (torch.as_tensor(v, dtype=x.dtype, device=x.device).expand(len(ids)) for v in (s, a))
    step = max(1, CPU_CHUNK // x[0].numel()) if x.device.type == "cpu" else len(ids)
    if step < len(ids):
        chunks = zip(x.split(step), ids.split(step), s.split(step), a.split(step), strict=True)
        return torch.cat([apply_gene(*chunk) for chunk in chunks])
    fids = ids.unique().tolist()
    groups = [(ids == fid).nonzero().squeeze(1) for fid in fids]
    parts = [FILTERS[FILTER_NAMES[fid]](x[g], a[g]) for fid, g in zip(fids, groups, strict=True)]
    fx = torch.cat(parts)[torch.cat(groups).argsort()]
    return ops.lerp(x, fx, ops.per_image(s, x)).clamp(0, 1)


def apply_chain(x: Tensor, genes: Sequence[Gene], spots: Sequence[Tensor] | None = None) -> Tensor:
    """Apply genes in order; each gene holds one (ids, s, a) triple per image.

    spots: one (B, 1, H, W) weight per gene through which its result is blended in (a filter
    brushed onto part of the image); None applies every gene to the whole image.
    """
    for k, (ids, s, a) in enumerate(genes):
        y = apply_gene(x, ids, s, a)
        x = y if spots is None else x + spots[k] * (y - x)
    return x
