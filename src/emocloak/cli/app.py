"""The `emocloak` command: one sub-command per module, each a thin layer over the Python API.

Command modules import torch and the heavy parts of emocloak only inside their bodies, so that
`emocloak --help` answers at once (benchmarks/cli_startup.py).
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from emocloak.cli import evaluate, harden, predict, protect, serve, universal
from emocloak.cli.common import err
from emocloak.errors import EmocloakError

app = typer.Typer(
    help="Protect face photos from automatic emotion recognition, and measure recognizers' robustness.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(predict.predict)
app.command()(predict.recognizers)
app.command()(evaluate.evaluate)
app.command()(protect.protect)

universal_app = typer.Typer(
    help="The universal cloak: one perturbation, learnt once, for every face.", no_args_is_help=True
)
universal_app.command("train")(universal.train)
app.add_typer(universal_app, name="universal")

app.command("train")(harden.train)
app.command()(serve.serve)


def main() -> None:
    """The console script: an EmocloakError that escapes a command still ends in one line, not a traceback."""
    try:
        app()
    except EmocloakError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
