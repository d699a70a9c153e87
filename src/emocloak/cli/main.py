"""The `emocloak` console script's entry point (pyproject.toml); the commands live in `emocloak.cli.app`."""

from emocloak.cli.app import app, main

__all__ = ["app", "main"]
