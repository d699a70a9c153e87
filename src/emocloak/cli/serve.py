"""`emocloak serve`: the local web app."""

from __future__ import annotations

from typing import Annotated

import typer

from emocloak.cli.common import fail
from emocloak.errors import EmocloakError


def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; 127.0.0.1 keeps it to this computer.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port; 0 picks a free one.")] = 8000,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Photos cloaked at once (default: half the CPU cores, at most 4)."),
    ] = None,
) -> None:
    """Start the local web app: cloak photos and see what each recognizer reads, in a browser."""
    try:
        from emocloak.web.app import serve as run_server
    except ImportError as exc:
        fail(f"the web app needs fastapi, uvicorn and python-multipart ({exc}); reinstall emocloak")
    try:
        run_server(host, port, open_browser, workers)
    except EmocloakError as exc:
        fail(str(exc))
