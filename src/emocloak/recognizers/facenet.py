"""The differentiable face model: pixels of a fixed 48x48 gray crop in [0, 1] -> logits.

Normalisation and flip test-time augmentation live inside the module so that a
white-box attack differentiates through exactly what the recognizer computes.
"""

from __future__ import annotations

import torch
from torch import nn

from emocloak.recognizers.nets import ARCHS


class FaceNet(nn.Module):
    def __init__(self, arch: str = "vgg", n_classes: int = 8, flip_tta: bool = True, **kwargs: object) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown architecture {arch!r}; valid: {', '.join(ARCHS)}")
        self.arch = arch
        self.net = ARCHS[arch](n_classes=n_classes, **kwargs)
        self.flip_tta = flip_tta
        self.feature_dim = self.net.feature_dim

    @staticmethod
    def _norm(x: torch.Tensor) -> torch.Tensor:
        return (x - 0.5) / 0.5

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (flip-averaged at eval time), for feature-space attacks."""
        f = self.net.features(self._norm(x))
        if self.flip_tta and not self.training:
            f = 0.5 * (f + self.net.features(self._norm(x.flip(-1))))
        return f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(self._norm(x))
        if self.flip_tta and not self.training:
            out = 0.5 * (out + self.net(self._norm(x.flip(-1))))
        return out
