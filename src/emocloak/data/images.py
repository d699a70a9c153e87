"""Reading and writing user photos: one place that turns every odd file into RGB uint8 or a clear error."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from emocloak.errors import ImageError

try:  # iPhone photos (HEIC/HEIF), where pillow-heif is installed
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover
    pass

# Larger than any phone photo (200 MP sensors bin to 50 MP); a 10000x10000 scan passes, bombs do not.
MAX_PIXELS = 120_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".heif")

ImageLike = np.ndarray | Image.Image


def _to_rgb(im: Image.Image) -> Image.Image:
    """Flatten any PIL mode (16-bit, alpha, palette, CMYK) to 8-bit RGB."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if a.max() > 255 else 255.0
        im = Image.fromarray(np.clip(a / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    return im.convert("RGB")


def max_pixels() -> int:
    """The pixel limit: EMOCLOAK_MAX_PIXELS where set (read at each call), else MAX_PIXELS."""
    raw = os.environ.get("EMOCLOAK_MAX_PIXELS", "").strip()
    if not raw:
        return MAX_PIXELS
    try:
        limit = int(raw.replace("_", ""))
    except ValueError:
        limit = 0
    if limit < 1:
        raise ImageError(f"EMOCLOAK_MAX_PIXELS={raw!r}: expected a whole number of pixels, e.g. 250000000")
    return limit


@contextmanager
def _pillow_limit(limit: int) -> Iterator[None]:
    """Our limit replaces Pillow's bomb check (error at twice its MAX_IMAGE_PIXELS), so it can be raised past it."""
    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = before


def open_image(source: str | Path | bytes) -> Image.Image:
    """Open, verify and EXIF-orient a photo; raises ImageError with the reason and the file's name."""
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise ImageError(f"{name}: no such file")
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    limit = max_pixels()
    try:
        with _pillow_limit(limit):
            im = Image.open(stream)
            w, h = im.size
            if w * h > limit:
                raise ImageError(
                    f"{name}: {w}x{h} is larger than the {limit:,}-pixel limit (set EMOCLOAK_MAX_PIXELS to raise it)"
                )
            im.load()
    except ImageError:
        raise
    except PermissionError as exc:
        raise ImageError(f"{name}: cannot read it (permission denied)") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not an image file (or a format Pillow cannot read)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: too many pixels to load safely") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: damaged or truncated image ({exc})") from exc
    return ImageOps.exif_transpose(im)


def load_rgb(source: str | Path | bytes) -> np.ndarray:
    """A photo file as an (H, W, 3) uint8 RGB array, upright."""
    return np.asarray(_to_rgb(open_image(source)))


def as_rgb(image: ImageLike, name: str = "image") -> np.ndarray:
    """Accept a PIL image or an array (gray, RGB, RGBA; uint8 or float in [0, 1]) as RGB uint8."""
    if isinstance(image, Image.Image):
        return np.asarray(_to_rgb(image))
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or min(a.shape[:2]) < 1:
        raise ImageError(f"{name}: expected an (H, W), (H, W, 3) or (H, W, 4) array, got shape {a.shape}")
    if a.shape[0] * a.shape[1] > (limit := max_pixels()):
        raise ImageError(f"{name}: {a.shape[1]}x{a.shape[0]} exceeds the {limit:,}-pixel limit")
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            if not np.isfinite(a).all():
                raise ImageError(f"{name}: array has NaN or infinite values")
            a = np.clip(a * 255.0 + 0.5, 0, 255)
        elif a.dtype == np.uint16:
            a = a / 257.0 + 0.5
        else:
            raise ImageError(f"{name}: unsupported array dtype {a.dtype}")
        a = a.astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    elif a.shape[2] == 4:
        alpha = a[..., 3:4].astype(np.float32) / 255.0
        a = (a[..., :3] * alpha + 255.0 * (1 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(a)


def list_images(paths: list[str | Path]) -> list[Path]:
    """Expand files and folders (recursively) into image files, sorted; empty result is an error."""
    found: dict[Path, Path] = {}  # resolved -> as found: a file named twice is read once
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.exists():
            files = [p]
        else:
            raise ImageError(f"{p}: no such file or folder")
        for q in files:
            found.setdefault(q.resolve(), q)
    if not found:
        raise ImageError(
            f"no image files found in {', '.join(map(str, paths))} (looked for {' '.join(IMAGE_SUFFIXES)})"
        )
    return list(found.values())
