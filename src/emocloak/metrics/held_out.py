"""The per-photo protection estimate: do recognizers the cloak never used change their reading?

A cloak is made against some recognizers; whether it fools those says little about a platform's
own. The honest estimate reads the cloaked photo with shipped recognizers that took no part in
making it (held out), after the re-encode a platform applies (JPEG 75), and counts per face how
many of them changed their reading from the one they give the equally re-encoded original.
Held-out readers that are close relatives of a member (the wider `cnn` beside `cnn-w24`) make the
count optimistic; `relatives` names them so a reader of the sidecar can discount them.
"""

from __future__ import annotations

from collections.abc import Sequence

CHANNEL = "jpeg:75"
JPEG_QUALITY = 75
WEAK_SHARE = 0.5  # a face is weakly protected when fewer than half its held-out readers changed

# Shipped recognizers made from the same start or recipe as another: (held-out reader, member) pairs.
RELATIVES = {
    "cnn": ("cnn-w24",),
    "photo": ("photo-w24",),
    "cnn-faat": ("cnn-w24", "cnn-robust"),
    "cnn-robust": ("cnn-w24", "cnn-faat"),
    "cnn-w24": ("cnn", "cnn-robust", "cnn-faat"),
    "photo-w24": ("photo",),
    "photo-tight": ("resnet",),  # fine-tuned from resnet's weights, though at another size, crop and in colour
    "photo-loose": ("cnn-w24",),  # fine-tuned from cnn-w24's weights, though at another size, crop and in colour
}


def held_out_readers(used: Sequence[str]) -> list[str]:
    """Every shipped recognizer that is not one of `used` (the recognizers the cloak was made with)."""
    from emocloak.recognizers.registry import available

    return [n for n in available() if n not in set(used)]


def relatives(readers: Sequence[str], used: Sequence[str]) -> dict[str, list[str]]:
    """Held-out readers that share a start or recipe with a member: their vote is less independent."""
    out = {r: [m for m in RELATIVES.get(r, ()) if m in used] for r in readers}
    return {r: ms for r, ms in out.items() if ms}


def _label(reading: dict | None) -> str | None:
    return None if reading is None else reading["emotion"]


def _changed(before: str | None, after: str | None) -> bool | None:
    """None: nothing read before, nothing to protect. A face no longer found counts as changed, as in `fooled`."""
    return None if before is None else after is None or before != after


def face_estimate(region: list[int], before: dict, after: dict) -> dict:
    """One face: which held-out readers changed their reading (None: it found no face in the original)."""
    changed = {name: _changed(_label(before[name]), _label(after[name])) for name in before}
    counted = [c for c in changed.values() if c is not None]
    n_changed, n_readers = sum(counted), len(counted)
    return {
        "region": region,
        "changed": changed,
        "n_changed": n_changed,
        "n_readers": n_readers,
        "weak": n_readers == 0 or n_changed < WEAK_SHARE * n_readers,
    }


def summarise(faces: list[dict], readers: Sequence[str], used: Sequence[str]) -> dict:
    """The photo's estimate: per face, a one-line summary and a warning where protection is weak."""
    lines = [f"protected against {f['n_changed']} of {f['n_readers']} held-out readers" for f in faces]
    weak = [i for i, f in enumerate(faces) if f["weak"]]
    warning = None
    if weak:
        which = ", ".join(str(i + 1) for i in weak)
        warning = (
            f"weakly protected (face {which}): fewer than half the held-out readers changed their reading "
            "after a JPEG-75 re-save; a platform's recognizer may well read this face right. "
            "A stronger cloak helps: the tailored cloak at --strength high, or a --target emotion."
        )
    return {
        "readers": list(readers),
        "relatives": relatives(readers, used),
        "channel": CHANNEL,
        "faces": faces,
        "summary": "; ".join(lines) if lines else "no face to estimate",
        "warning": warning,
    }
