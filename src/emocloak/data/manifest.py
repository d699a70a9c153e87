"""The run manifest: which outputs of a folder are finished, so a stopped run resumes where it was.

`.emocloak-manifest.jsonl` in the output folder gets one line when a photo's work is handed out
(a claim: its outputs may be half made, and are ours to replace) and one when its outputs are all
written (with their SHA-256 and the run's settings). Only the process that runs the batch writes
it, one whole line per `os.write` in append mode, so workers never race and a line cut short by a
crash is simply not read back.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from emocloak.data.files import Planned, file_mode

MANIFEST_NAME = ".emocloak-manifest.jsonl"


def fingerprint(settings: dict) -> str:
    """A short hash of a run's settings: a finished output counts only for a run asking the same."""
    text = json.dumps(settings, sort_keys=True, default=lambda o: getattr(o, "meta", None) or type(o).__name__)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Manifest:
    """The manifest of one output folder, read once; `claim` and `finish` append to it."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST_NAME
        self.finished: dict[str, dict] = {}  # first output (relative) -> its latest "done" line
        self.claimed: set[str] = set()
        for line in self._lines():
            if line.get("event") == "claim":
                self.claimed.add(line["outputs"][0])
            elif line.get("event") == "done":
                self.finished[line["outputs"][0]] = line

    def _lines(self) -> list[dict]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        lines = []
        for raw in text.splitlines():
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            if isinstance(line, dict) and line.get("outputs"):
                lines.append(line)
        return lines

    def _rel(self, item: Planned) -> list[str]:
        return [str(o.relative_to(self.folder)) for o in item.outputs]

    def complete(self, item: Planned, key: str) -> bool:
        """Every output of `item` is as a run with these settings finished it (same bytes on disk)."""
        rel = self._rel(item)
        done = self.finished.get(rel[0])
        if not done or done["key"] != key or done["input"] != str(item.src.resolve()) or done["outputs"] != rel:
            return False
        try:
            return all(sha256(o) == h for o, h in zip(item.outputs, done["sha256"], strict=True))
        except OSError:
            return False

    def unfinished(self, output: Path) -> bool:
        """An output an earlier run of this folder started and never finished: safe to replace."""
        rel = str(output.relative_to(self.folder)) if output.is_relative_to(self.folder) else None
        return rel in self.claimed and rel not in self.finished

    def claim(self, item: Planned) -> None:
        self._append({"event": "claim", "input": str(item.src.resolve()), "outputs": self._rel(item)})

    def finish(self, item: Planned, key: str) -> None:
        line = {"event": "done", "input": str(item.src.resolve()), "outputs": self._rel(item), "key": key}
        line["sha256"] = [sha256(o) for o in item.outputs]
        self._append(line)
        self.finished[line["outputs"][0]] = line

    def _append(self, line: dict) -> None:
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, file_mode())
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
