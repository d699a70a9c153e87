"""The differentiable face model: pixels of a fixed face crop (48x48 gray by default) in [0, 1] -> logits.

Normalisation and flip test-time augmentation live inside the module so that a
white-box attack differentiates through exactly what the recognizer computes.
"""

from __future__ import annotations

import torch
from torch import nn

from emocloak.recognizers.nets import ARCHS


class FaceNet(nn.Module):
    def __init__(
        self, arch: str = "vgg", n_classes: int = 8, flip_tta: bool = True, in_ch: int = 1, **kwargs: object
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown architecture {arch!r}; valid: {', '.join(ARCHS)}")
        self.arch = arch
        self.in_ch = in_ch
        self.net = ARCHS[arch](n_classes=n_classes, in_ch=in_ch, **kwargs)
        self.flip_tta = flip_tta
        self.feature_dim = self.net.feature_dim

    @staticmethod
    def _norm(x: torch.Tensor) -> torch.Tensor:
        return (x - 0.5) / 0.5

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(penultimate features, logits) from one pass per view (flip-averaged at eval time).

        Feature-space attacks need both; computing them apart would run the trunk twice.
        """
        if not (self.flip_tta and not self.training):
            f = self.net.features(self._norm(x))
            return f, self.net.classify(f)
        # both views in one batch: BatchNorm is frozen at eval, so this equals two passes, faster
        f, g = self.net.features(self._norm(torch.cat([x, x.flip(-1)]))).chunk(2)
        return 0.5 * (f + g), 0.5 * (self.net.classify(f) + self.net.classify(g))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[1]
