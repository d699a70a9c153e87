"""The `emocloak` command: one sub-command per job, each a thin layer over the Python API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

import emocloak
from emocloak.errors import EmocloakError

app = typer.Typer(
    help="Protect face photos from automatic emotion recognition, and measure recognizers' robustness.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """One clear line on stderr and a non-zero exit: no traceback for expected problems."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _recognizer(name: str) -> emocloak.Recognizer:
    try:
        return emocloak.load_recognizer(name)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
        raise  # unreachable; keeps type checkers happy


@app.command()
def predict(
    photos: Annotated[
        list[Path] | None, typer.Argument(help="Photos or folders (default: the shipped sample).")
    ] = None,
    recognizer: Annotated[
        str, typer.Option("--recognizer", "-r", help="Recognizer name (see `emocloak recognizers`).")
    ] = "cnn",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    demo: Annotated[bool, typer.Option("--demo", help="Run on the shipped sample photo.")] = False,
    cropped: Annotated[bool, typer.Option("--cropped", help="Inputs are face crops: skip face detection.")] = False,
) -> None:
    """Read the emotion of every face in each photo."""
    from emocloak.data.images import list_images, load_rgb
    from emocloak.labels import LABELS

    rec = _recognizer(recognizer)
    try:
        files = [emocloak.sample_photo_path()] if demo or not photos else list_images(list(photos))
    except EmocloakError as exc:
        fail(str(exc))
    results, failed = [], 0
    for path in files:
        try:
            rgb = load_rgb(path)
            found = [(None, rec.predict_crops([rgb])[0])] if cropped else rec.predict_faces(rgb, source=str(path))
        except EmocloakError as exc:
            err.print(f"[yellow]skipped:[/] {exc}", highlight=False)
            failed += 1
            continue
        for i, (face, p) in enumerate(found):
            results.append(
                {
                    "photo": str(path),
                    "face": i,
                    "box": None if face is None else face.box.as_list(),
                    "emotion": LABELS[int(p.argmax())],
                    "probabilities": {k: round(float(v), 4) for k, v in zip(LABELS, p, strict=True)},
                }
            )
    if as_json:
        print(json.dumps({"recognizer": rec.name, "faces": results}, indent=2))
    else:
        _print_table(rec.name, results)
    if failed:
        raise typer.Exit(1 if results else 2)


def _print_table(name: str, results: list[dict]) -> None:
    table = Table(title=f"emotions read by {name}")
    for col in ("photo", "face", "box", "emotion", "runner-up"):
        table.add_column(col)
    for r in results:
        ranked = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])
        box = (
            "whole image"
            if r["box"] is None
            else "{},{} {}x{}".format(r["box"][0], r["box"][1], r["box"][2] - r["box"][0], r["box"][3] - r["box"][1])
        )
        table.add_row(
            Path(r["photo"]).name,
            str(r["face"]),
            box,
            f"{ranked[0][0]} {ranked[0][1]:.0%}",
            f"{ranked[1][0]} {ranked[1][1]:.0%}",
        )
    out.print(table)


@app.command()
def recognizers() -> None:
    """List the recognizers that ship with emocloak."""
    from emocloak.recognizers.registry import DESCRIPTIONS

    for name in emocloak.available_recognizers():
        out.print(f"[bold]{name}[/]: {DESCRIPTIONS.get(name, '')}")


def main() -> None:
    try:
        app()
    except EmocloakError as exc:
        err.print(f"error: {exc}")
        sys.exit(2)
