"""Reading emocloak's own .pt files: each is checked for what it is before use, never unpickled as code.

Users pass weight and perturbation files by path, so a wrong file (empty, text, the other
kind, a damaged download) must give one line saying what it is, not a torch traceback.
Loading always goes through `torch.load(weights_only=True)`: tensors and plain types only.
"""

from __future__ import annotations

from pathlib import Path

from emocloak.errors import EmocloakError

# what each kind of file holds at its top level (more keys are allowed)
KINDS = {
    "recognizer weights file": {"arch", "width", "state_dict"},
    "universal perturbation file": {"delta", "meta"},
    "training checkpoint": {"model", "opt", "sched", "config"},
    "landmark classifier file": {"config", "state_dict"},
}


class CheckpointError(EmocloakError, ValueError):
    """A .pt file that is missing, unreadable, or not the kind of file it was given as."""


def _first_line(exc: Exception) -> str:
    """torch's messages run to paragraphs: the first sentence is the news."""
    text = str(exc).strip().split(". ")[0].splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load_checkpoint(path: str | Path, kind: str, error: type[EmocloakError] = CheckpointError) -> dict:
    """The dict saved in `path`, which must be a `kind` (a key of KINDS); `error` names the file and why not."""
    import pickle

    import torch

    path, want = Path(path), KINDS[kind]
    if not path.is_file():
        raise error(f"{path}: no such file" if not path.exists() else f"{path}: is a folder, not a {kind}")
    try:
        with path.open("rb") as f:
            head = f.read(2)
    except OSError as exc:
        raise error(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    if not head:
        raise error(f"{path}: empty file, not a {kind}")
    if head != b"PK" and head[:1] != b"\x80":  # torch's zip format, or its legacy pickle format
        raise error(f"{path}: not a torch .pt file, so not a {kind}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise error(
            f"{path}: holds Python objects besides tensors and plain data; not loaded (it could run code)"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, TypeError, KeyError) as exc:
        raise error(f"{path}: damaged or truncated, not a readable {kind} ({_first_line(exc)})") from exc
    if not isinstance(blob, dict):
        raise error(f"{path}: holds a {type(blob).__name__}, not a {kind}")
    if not want <= blob.keys():
        other = next((k for k, keys in KINDS.items() if k != kind and keys <= blob.keys()), None)
        what = f"is a {other}" if other else f"lacks {', '.join(sorted(want - blob.keys()))}"
        raise error(f"{path}: {what}, not a {kind}")
    return blob
