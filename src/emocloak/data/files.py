"""Writing users' files safely: outputs planned before any work, atomic writes, modes from the umask.

A privacy tool must never destroy a photo. Every output path of a run is decided up front
and checked against every input and every other output; a file is written to a temporary
sibling and renamed into place, so an interrupted run leaves the old file or the new one,
never half of either.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from emocloak.errors import EmocloakError

SIDECAR_BYTES = 64 * 1024  # a JSON sidecar is a few KB; generous so that the space estimate errs safe


class OutputError(EmocloakError):
    """An output that cannot or must not be written (exists, collides with an input, folder not writable)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode an ordinary new file gets under the user's umask (mkstemp's 0600 is for secrets)."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """The mode an ordinary new folder gets under the user's umask (mkdtemp's 0700 is for secrets)."""
    return 0o777 & ~_umask()


def describe_oserror(exc: OSError, path: str | Path, action: str) -> str:
    """One line naming the file: 'cannot write out/x.jpg: No space left on device'."""
    return f"cannot {action} {path}: {exc.strerror or exc}"


def atomic_write(dst: Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp) on a temporary sibling of dst, then rename it onto dst; OSError -> OutputError naming dst."""
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".partial")
        os.close(fd)
    except OSError as exc:
        raise OutputError(describe_oserror(exc, dst, "write")) from exc
    tmp = Path(name)
    try:
        write(tmp)
        tmp.chmod(file_mode())
        os.replace(tmp, dst)
    except OSError as exc:
        raise OutputError(describe_oserror(exc, dst, "write")) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def write_text_atomic(dst: Path, text: str) -> Path:
    return atomic_write(dst, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def check_writable_dir(folder: Path) -> Path:
    """Create `folder` if needed and prove a file can be made in it; one clear error otherwise."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OutputError(f"output folder {folder} is not writable: {exc.strerror or exc}") from exc
    return folder


def check_free_space(folder: Path, need: int) -> None:
    """Refuse up front when the disk plainly cannot hold the outputs (need: bytes, an estimate)."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # not knowable here: the writes themselves will say
    if free < need:
        raise OutputError(f"not enough space in {folder}: about {need:,} bytes needed, {free:,} free")


@dataclass(frozen=True)
class Planned:
    """One input and the files it will produce (the output itself first)."""

    src: Path
    outputs: tuple[Path, ...]

    @property
    def dst(self) -> Path:
        return self.outputs[0]


def relative_name(src: Path, roots: Sequence[Path]) -> Path:
    """src's path below the (resolved) folder argument it was found in (just its name for a file argument)."""
    for root in roots:
        if src.is_relative_to(root):
            return src.relative_to(root)
    return Path(src.name)


def plan_outputs(
    files: Sequence[Path],
    roots: Sequence[Path],
    out_dir: Path,
    outputs_for: Callable[[Path], tuple[Path, ...]],
    overwrite: bool = False,
    unfinished: Callable[[Path], bool] | None = None,
) -> tuple[list[Planned], list[tuple[Path, str]]]:
    """Every output of a run, decided before any work: (planned, [(input, why it is skipped)]).

    Outputs mirror the input folder tree below `out_dir` (`outputs_for` maps the relative path to
    the output files). An input whose outputs would land on any input, or on another input's
    outputs, is refused; an existing output is replaced only with `overwrite`, and an input of
    this run never is. Inputs inside `out_dir` (earlier outputs) are not cloaked again. `unfinished(first
    output)` says an input's outputs were started and never finished by an earlier run (the resume
    manifest): those are replaced as if with `overwrite`.
    """
    out_res = out_dir.resolve()
    roots = [r.resolve() for r in roots if r.is_dir()]
    nested = any(out_res != r and out_res.is_relative_to(r) for r in roots)  # -o inside a folder being cloaked
    inputs = {p.resolve() for p in files}
    claimed: dict[Path, Path] = {}
    planned, skipped = [], []
    for src in files:
        if nested and src.resolve().is_relative_to(out_res):
            skipped.append((src, f"{src}: inside the output folder {out_dir} (an earlier output?)"))
            continue
        outputs = tuple(out_dir / o for o in outputs_for(relative_name(src.resolve(), roots)))
        replace = overwrite or (unfinished is not None and unfinished(outputs[0]))
        why = None
        for o in outputs:
            r = o.resolve()
            if r in inputs:
                why = f"{src}: its output {o} would replace the input {r}; choose another -o folder"
            elif r in claimed:
                why = f"{src}: its output {o} is also the output of {claimed[r]}; cloak them into separate folders"
            elif o.exists() and (o.is_dir() or not replace):
                why = f"{src}: {o} exists; pass --overwrite to replace it" + (" (it is a folder)" if o.is_dir() else "")
            if why:
                break
        if why:
            skipped.append((src, why))
            continue
        claimed.update({o.resolve(): src for o in outputs})
        planned.append(Planned(src, outputs))
    return planned, skipped
