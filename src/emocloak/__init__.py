"""emocloak: cloak face photos against emotion recognition; measure and harden recognizers.

Stable API::

    import emocloak
    emocloak.LABELS                      # canonical label names, in order
    rec = emocloak.load_recognizer("cnn")
    rec.predict_proba([photo])           # (N, len(LABELS)) probabilities
    cloaked, info = emocloak.protect(photo, method="filters")   # or "universal"
"""

from __future__ import annotations

from importlib import import_module, resources
from pathlib import Path
from typing import TYPE_CHECKING

from emocloak.errors import DatasetError, EmocloakError, ImageError, NoFaceError
from emocloak.labels import LABELS

if TYPE_CHECKING:
    from emocloak.protection import protect
    from emocloak.recognizers.base import Recognizer
    from emocloak.recognizers.registry import available as available_recognizers
    from emocloak.recognizers.registry import load_recognizer

__version__ = "0.1.0"

# Imported on first use: torch takes seconds to load, and `emocloak --help` should not wait for it.
_LAZY = {
    "protect": ("emocloak.protection", "protect"),
    "Recognizer": ("emocloak.recognizers.base", "Recognizer"),
    "available_recognizers": ("emocloak.recognizers.registry", "available"),
    "load_recognizer": ("emocloak.recognizers.registry", "load_recognizer"),
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'emocloak' has no attribute {name!r}")


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
