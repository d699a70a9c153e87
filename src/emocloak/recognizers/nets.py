"""Plain-torch architectures for small face crops, 48x48 gray by default (no torchvision here).

Each net returns logits from `forward`, penultimate features from `features` and logits
from features with `classify`, so white-box and feature-space attacks share one path
through the model.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class _Block(nn.Module):
    """Pre-activation-free basic residual block (ResNet v1)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(cin, cout, stride),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class ResNetFace(nn.Module):
    """A small ResNet: stem at 48x48, then stages at 24, 12, 6 pixels."""

    def __init__(
        self, n_classes: int = 8, width: int = 32, blocks: tuple[int, ...] = (1, 2, 2, 1), in_ch: int = 1
    ) -> None:
        super().__init__()
        widths = [width, width * 2, width * 4, width * 8]
        layers: list[nn.Module] = [*_conv_bn(in_ch, widths[0])]
        cin = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(n):
                layers.append(_Block(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w
        self.body = nn.Sequential(*layers)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(cin, n_classes)
        self.feature_dim = cin

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.body(x), 1), 1)

    def classify(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


class VGGFace(nn.Module):
    """A slim VGG13-style net as in the FER+ paper: conv pairs, max-pool, dropout, two FC layers.

    Inputs larger than 48 px are average-pooled to the 3x3 grid the FC layers expect (at 48 px
    that pooling is the identity), so a 48 px model's weights start a higher-resolution one.
    """

    def __init__(self, n_classes: int = 8, width: int = 32, in_ch: int = 1) -> None:
        super().__init__()
        widths = [width, width * 2, width * 4, width * 8]
        layers: list[nn.Module] = []
        cin = in_ch
        for w in widths:
            layers += [*_conv_bn(cin, w), *_conv_bn(w, w), nn.MaxPool2d(2), nn.Dropout(0.1)]
            cin = w
        self.body = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(cin * 9, 512), nn.ReLU(inplace=True), nn.Dropout(0.4))
        self.head = nn.Linear(512, n_classes)
        self.feature_dim = 512

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(nn.functional.adaptive_avg_pool2d(self.body(x), 3))

    def classify(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


ARCHS = {"resnet": ResNetFace, "vgg": VGGFace}
