"""FAAT: facial-attention-aware adversarial training (after Kim et al., Neurocomputing 584, 2024).

Two parts, both designed in docs/design.md ("FAAT") since the paper's formulas are not public:

* the attack: PGD whose per-pixel step is weighted by a landmark attention mask
  (`defences.masks`, `pgd_adversary(weighted=True)`), so the training adversary works on
  brows, eyes, nose and mouth first;
* the objective: cross-entropy on the adversarial batch plus `weight` times a frequency
  loss that pulls the low-frequency spectrum of mid-level feature maps of the adversarial
  input towards that of the clean input. Adversarial noise lives mostly in high
  frequencies at the input but is turned into coarse, expression-sized changes by the
  network; asking the low band to match teaches the network to undo them (a learnt
  purification) while leaving the fine detail free.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from emocloak.recognizers.facenet import FaceNet
from emocloak.training import Objective, soft_cross_entropy

DEFAULT_RADIUS = 2  # frequencies |k| <= 2 of a 12x12 map: periods of 6+ map pixels = 24+ face pixels
DEFAULT_WEIGHT = 2.0  # untuned: a substantial, not dominant, share of the loss (docs/design.md)


def low_frequencies(maps: torch.Tensor, radius: int) -> torch.Tensor:
    """The (complex) 2-D spectrum of (N, C, H, W) maps, low-pass: |ky| <= radius and 0 <= kx <= radius.

    A real map's spectrum is conjugate-symmetric, so the half plane of rfft2 holds all of it.
    """
    spec = torch.fft.rfft2(maps, norm="ortho")
    rows = list(range(radius + 1)) + list(range(maps.shape[-2] - radius, maps.shape[-2]))
    return spec[..., rows, : radius + 1]


def frequency_loss(adv: torch.Tensor, clean: torch.Tensor, radius: int = DEFAULT_RADIUS) -> torch.Tensor:
    """sum ||LPF(FFT(adv)) - LPF(FFT(clean))||^2 / sum ||LPF(FFT(clean))||^2, sums over the whole batch.

    Relative, so the weight does not depend on the scale of the layer's activations; zero
    exactly when the low bands agree. Batch sums, not a mean of per-face ratios: a face whose
    features at this layer nearly vanish would make its own ratio explode (it did: training
    diverged within an epoch), while in the sums it simply weighs little.
    """
    a, c = low_frequencies(adv, radius), low_frequencies(clean, radius)
    return (a - c).abs().square().sum() / c.abs().square().sum().clamp_min(1e-8)


def tap_layer(model: FaceNet, side: int = 48) -> nn.Module:
    """The last module of the body whose output is a quarter of the input side (12x12 for 48x48 faces).

    Deep enough that the features are expression parts (eyes, mouth corners), still wide
    enough to have a spectrum. Found by a dry run, so any FaceNet architecture works.
    """
    sizes: dict[nn.Module, int] = {}
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.__setitem__(m, o.shape[-1])) for m in model.net.body]
    try:
        with torch.no_grad():
            was = model.training
            model.eval()
            model.net(torch.zeros(1, 1, side, side))
            model.train(was)
    finally:
        for h in hooks:
            h.remove()
    found = [m for m in model.net.body if sizes.get(m) == side // 4]
    if not found:
        raise ValueError(f"{model.arch}: no layer with {side // 4}x{side // 4} output to tap")
    return found[-1]


@contextmanager
def capture(layer: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the layer's outputs, one per forward pass, while the context is open."""
    seen: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        yield seen
    finally:
        hook.remove()


def faat_objective(weight: float = DEFAULT_WEIGHT, radius: int = DEFAULT_RADIUS) -> Objective:
    """The `objective` hook: CE(f(x_adv), y) + weight * frequency_loss(phi(x_adv), phi(x)).

    phi(x) is a fixed target (no gradient): the adversarial features are pulled to the clean
    ones, not both to each other, so the regulariser cannot lower itself by flattening the
    clean features. Both passes run in the loop's train mode (batch statistics), so the two
    feature maps are normalised alike.
    """
    layers: dict[int, nn.Module] = {}

    def objective(model: FaceNet, x: torch.Tensor, x_adv: torch.Tensor, y_soft: torch.Tensor) -> torch.Tensor:
        layer = layers.setdefault(id(model), tap_layer(model, x.shape[-1]))
        with capture(layer) as seen:
            with torch.no_grad():
                model(x)
            logits = model(x_adv)
        return soft_cross_entropy(logits, y_soft) + weight * frequency_loss(seen[1], seen[0].detach(), radius)

    return objective
