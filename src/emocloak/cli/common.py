"""What several commands share: one-line errors, batch tallies, checked inputs and outputs, the progress bar.

Kept free of torch: every command module imports this at `emocloak --help` time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, TaskID

import emocloak
from emocloak.errors import EmocloakError
from emocloak.progress import bar

out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """One clear line on stderr and a non-zero exit: no traceback for expected problems."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def skipped(exc: Exception | str) -> None:
    """A per-file problem: reported on one line, the rest of the batch goes on."""
    err.print(f"[yellow]skipped:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)


def failed(message: str) -> None:
    """A file that could not be finished (e.g. written): one line naming it; the batch goes on."""
    err.print(f"[bold red]failed:[/] {escape(message)}", highlight=False, soft_wrap=True)


def note(message: str) -> None:
    """Advice or context on stderr, so that stdout keeps only results."""
    err.print(message, highlight=False, soft_wrap=True)


def finish_batch(total: int, skips: int, fails: int, what: str = "processed") -> None:
    """A batch's last line: how many were done, skipped and failed; non-zero exit unless all were done."""
    done = total - skips - fails
    if total > 1:
        err.print(f"{done} {what}, {skips} skipped, {fails} failed", highlight=False)
    if skips or fails:
        raise typer.Exit(1 if done else 2)


class Bar:
    """One task on the stderr progress bar: what is being done, how far along, and the time left."""

    def __init__(self, progress: Progress, task: TaskID, what: str) -> None:
        self._progress, self._task, self._what = progress, task, what
        self._index, self._item = 0, what  # the item under way, as `at` last named it

    def __call__(self, done: int, total: int | None = None) -> None:
        """`done` of `total` finished: the `progress=` callback the API's long loops take."""
        self._progress.update(self._task, completed=done, total=total)

    def at(self, index: int, name: str) -> None:
        """Item `index` (from 0) is under way: "cloaking photo 3/10: name"; the bar shows those before it as done."""
        total = self._progress.tasks[self._task].total
        count = f" {index + 1}/{int(total)}" if total else ""
        self._index, self._item = index, f"{self._what}{count}: {escape(name)}"
        self._progress.update(self._task, completed=index, description=self._item)

    def within(self, stage: str, share: float) -> None:
        """The item under way is `share` done and at `stage` ("cloaking face 1 of 2"): a long item moves the bar."""
        self._progress.update(self._task, completed=self._index + share, description=f"{self._item} ({escape(stage)})")

    def log(self, message: str) -> None:
        """A line above the bar (the bar is redrawn under it)."""
        self._progress.console.print(message, highlight=False)


@contextmanager
def progress_bar(what: str, total: int | None = None) -> Iterator[Bar]:
    """A transient bar on stderr for a long step, so --json output on stdout stays clean.

    rich draws nothing where stderr is not a terminal (pipes, logs, tests).
    """
    with bar(console=err) as progress:
        yield Bar(progress, progress.add_task(escape(what), total=total), escape(what))


def input_photos(photos: list[Path] | None, demo: bool) -> list[Path]:
    """The photos of a run: files and folders (searched recursively), or the shipped sample with --demo."""
    from emocloak.data.images import list_images

    try:
        return [emocloak.sample_photo_path()] if demo or not photos else list_images(list(photos))
    except EmocloakError as exc:
        fail(str(exc))


def checked_recognizer(name: str) -> emocloak.Recognizer:
    """A recognizer by name or weights file, or one clear error."""
    try:
        return emocloak.load_recognizer(name)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))


def model_name(name: str) -> str:
    """A recognizer name checked by loading it (cached); a weights file by its full path, for workers."""
    checked_recognizer(name)
    return str(Path(name).resolve()) if Path(name).is_file() else name


def transfer_names(names: str | None) -> list[str]:
    """Comma-separated recognizer names as a list; an empty entry is an error."""
    parts = [n.strip() for n in (names or "").split(",")]
    if names is not None and not all(parts):
        fail(f"--transfer-to {names!r}: expected comma-separated recognizer names, e.g. fer,resnet")
    return [n for n in parts if n]


def parse_target(name: str | None) -> int | None:
    """--target as a label index (None: untargeted), or one clear error."""
    from emocloak.labels import label_index

    if name is None:
        return None
    try:
        return label_index(name)
    except ValueError as exc:
        fail(f"--target: {exc}")


def check_out_file(path: Path, overwrite: bool) -> None:
    """Refuse, before hours of learning, an output file that exists or a folder that cannot take it."""
    from emocloak.data.files import check_writable_dir

    if path.is_dir():
        fail(f"--out {path} is a folder; name the file to write")
    if path.exists() and not overwrite:
        fail(f"{path} exists; pass --overwrite to replace it")
    try:
        check_writable_dir(path.parent)
    except EmocloakError as exc:
        fail(f"--out {path}: {exc}")


WorkersOption = Annotated[
    int,
    typer.Option(
        "--workers",
        "-w",
        min=1,
        help='Processes that share the run; above 1 runs it on a local Ray instance (pip install -e ".\\[ray]"). '
        "Same files and numbers as --workers 1 with the same --threads.",
    ),
]
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="torch threads per photo, per worker on Ray (default: here torch's, on Ray 1). "
        "Floating-point sums depend on it.",
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Join this Ray cluster (e.g. ray://head:10001 or auto) instead of starting one; every node needs "
        "emocloak and the same paths.",
    ),
]


def check_scale(workers: int, ray_address: str | None) -> None:
    """Without Ray, --workers above 1 says in one line how to get it, before any work."""
    from emocloak.scale import on_ray, require_ray

    if on_ray(workers, ray_address):
        try:
            require_ray()
        except EmocloakError as exc:
            fail(str(exc))
