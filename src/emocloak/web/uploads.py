"""Checking uploads: by content (never by name), against size limits, with messages people can act on.

Names sent by the browser are only ever shown back or put in a download's file name, after
`display_name` has cut them down to a harmless base name; they never reach the file system.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass

from PIL import Image

from emocloak.data.images import open_image
from emocloak.errors import ImageError

# Suffix a stored upload gets, from the format Pillow detected in its bytes; save_photo keeps it (or writes PNG).
SUFFIXES = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif"}
SUFFIXES["HEIF"] = ".heic"
BROWSER_SUFFIXES = (".jpg", ".png", ".webp", ".bmp")  # shown as they are; other formats get a PNG preview


class UploadError(ImageError):
    """A file the server will not take; the message names the file and says what to do."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name


@dataclass(frozen=True)
class Upload:
    """One checked photo: its display name, its bytes and the suffix its content calls for."""

    name: str
    data: bytes
    suffix: str


def megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e8 else f"{n / 1e6:.0f} MB"


def display_name(sent: str | None) -> str:
    """The base name of what the browser sent, in safe characters; never used as a path."""
    base = re.split(r"[/\\]", sent or "")[-1]
    clean = re.sub(r"[^\w .()+-]", "_", base).strip(" .")[:120]
    return clean or "photo"


def check_upload(name: str, data: bytes, max_bytes: int) -> Upload:
    """The upload as a photo Pillow fully decodes, or UploadError saying why not."""
    if not data:
        raise UploadError(name, "the file is empty")
    if len(data) > max_bytes:
        raise UploadError(
            name,
            f"{megabytes(len(data))} is over the {megabytes(max_bytes)} limit per photo; "
            "send a smaller copy (`emocloak protect` on the command line has no limit)",
        )
    try:
        open_image(data)  # decodes every pixel: a renamed or truncated file fails here
    except ImageError as exc:
        raise UploadError(name, str(exc).removeprefix("<bytes>: ")) from exc
    fmt = Image.open(io.BytesIO(data)).format or ""
    return Upload(name, data, SUFFIXES.get(fmt, ".img"))


class BodyLimit:
    """ASGI middleware: refuse a request body over `max_bytes` with 413 and a clear message.

    Checks Content-Length first, then counts what actually arrives (chunked uploads have no length).
    """

    def __init__(self, app, max_bytes: int, message: str) -> None:
        self.app, self.max_bytes, self.message = app, max_bytes, message

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(send, int(length))
        seen, started = 0, False

        async def counted_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge()
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, seen)

    async def _refuse(self, send, size: int) -> None:
        body = json.dumps({"detail": self.message.format(size=megabytes(size), limit=megabytes(self.max_bytes))})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})


class _TooLarge(Exception):
    pass
