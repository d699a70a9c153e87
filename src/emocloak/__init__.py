"""emocloak: cloak face photos against emotion recognition; measure and harden recognizers.

Stable API::

    import emocloak
    emocloak.LABELS                      # canonical label names, in order
    rec = emocloak.load_recognizer("cnn")
    rec.predict_proba([photo])           # (N, len(LABELS)) probabilities
    cloaked, info = emocloak.protect(photo, method="filters")   # or "universal"
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from emocloak.errors import DatasetError, EmocloakError, ImageError, NoFaceError
from emocloak.labels import LABELS
from emocloak.protection import protect
from emocloak.recognizers.base import Recognizer
from emocloak.recognizers.registry import available as available_recognizers
from emocloak.recognizers.registry import load_recognizer

__version__ = "0.1.0"


def sample_photo_path() -> Path:
    """The shipped public-domain sample photo (NASA's portrait of Eileen Collins)."""
    return Path(str(resources.files("emocloak") / "assets" / "astronaut.jpg"))


__all__ = [
    "LABELS",
    "DatasetError",
    "EmocloakError",
    "ImageError",
    "NoFaceError",
    "Recognizer",
    "available_recognizers",
    "load_recognizer",
    "protect",
    "sample_photo_path",
]
