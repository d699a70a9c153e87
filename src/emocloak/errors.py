"""Typed errors: the CLI turns each into one clear line and a non-zero exit."""

from __future__ import annotations


class EmocloakError(Exception):
    """Base class for every error emocloak raises on purpose."""


class ImageError(EmocloakError):
    """A file or array that cannot be used as an image (unreadable, truncated, too large)."""


class NoFaceError(EmocloakError):
    """No face was found in a photo; names the photo so batch users know which one."""

    def __init__(self, source: str = "image") -> None:
        super().__init__(f"no face found in {source}")
        self.source = source


class DatasetError(EmocloakError):
    """A dataset path or file that does not have the expected layout."""
