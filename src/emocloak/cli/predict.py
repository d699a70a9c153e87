"""`emocloak predict` and `emocloak recognizers`: read the emotion of every face; list what ships."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

import emocloak
from emocloak.cli.common import checked_recognizer, finish_batch, input_photos, out, progress_bar, skipped
from emocloak.errors import EmocloakError


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
    rec = checked_recognizer(recognizer)
    files = input_photos(photos, demo)
    results, skips = [], 0
    with progress_bar("reading photo", len(files)) as bar:
        for i, path in enumerate(files):
            bar.at(i, path.name)
            try:
                results += _read_photo(rec, path, cropped)
            except EmocloakError as exc:
                skipped(exc)
                skips += 1
    if as_json:
        print(json.dumps({"recognizer": rec.name, "faces": results}, indent=2))
    elif results:
        _print_table(rec.name, results)
    finish_batch(len(files), skips, 0, "read")


def _read_photo(rec: emocloak.Recognizer, path: Path, cropped: bool) -> list[dict]:
    """One record per face in the photo (the whole image with --cropped); an unreadable photo raises."""
    from emocloak.data.images import load_rgb
    from emocloak.labels import LABELS

    rgb = load_rgb(path)
    found = (
        [(None, rec.predict_proba([rgb], detect=False, names=[str(path)])[0])]
        if cropped
        else rec.predict_faces(rgb, source=str(path))
    )
    return [
        {
            "photo": str(path),
            "face": i,
            "box": None if face is None else face.box.as_list(),
            "emotion": LABELS[int(p.argmax())],
            "probabilities": {k: round(float(v), 4) for k, v in zip(LABELS, p, strict=True)},
        }
        for i, (face, p) in enumerate(found)
    ]


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


def recognizers() -> None:
    """List the recognizers that ship with emocloak."""
    from emocloak.recognizers.registry import DESCRIPTIONS

    for name in emocloak.available_recognizers():
        out.print(f"[bold]{name}[/]: {DESCRIPTIONS.get(name, '')}")
