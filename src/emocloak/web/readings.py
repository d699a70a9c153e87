"""Face-by-face readings of several recognizers, before and after a cloak: what the web page draws.

Each recognizer finds faces with its own detector (dlib, or fer's Haar cascade), so the same
face gets slightly different boxes. Boxes that overlap enough are one face; a face one
recognizer misses gets no reading from it (`None`), which after a cloak counts as fooled:
that recognizer can no longer say anything about the face.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emocloak.errors import NoFaceError
from emocloak.faces.detect import Box, iou
from emocloak.labels import LABELS
from emocloak.protection import fooled
from emocloak.recognizers.base import Face, Recognizer

SAME_FACE_IOU = 0.3  # boxes of one face from two detectors overlap well above this; neighbours' do not

Found = dict[str, list[tuple[Face, np.ndarray]]]


def find(rgb: np.ndarray, recognizers: Sequence[Recognizer]) -> Found:
    """Every recognizer's faces and probabilities; an empty list where it finds none."""
    found: Found = {}
    for rec in recognizers:
        try:
            found[rec.name] = rec.predict_faces(rgb)
        except NoFaceError:
            found[rec.name] = []
    return found


def merged_boxes(found: Found) -> list[Box]:
    """One box per face: the first recognizer's boxes, then any face only a later one found."""
    boxes: list[Box] = []
    for pairs in found.values():
        for face, _ in pairs:
            if all(iou(face.box, b) < SAME_FACE_IOU for b in boxes):
                boxes.append(face.box)
    return boxes


def reading_at(box: Box, pairs: list[tuple[Face, np.ndarray]]) -> dict | None:
    """The reading of the face at `box` (best overlap), or None where the recognizer found no face there."""
    best = max(pairs, key=lambda fp: iou(fp[0].box, box), default=None)
    if best is None or iou(best[0].box, box) < SAME_FACE_IOU:
        return None
    p = best[1]
    return {"emotion": LABELS[int(p.argmax())], "probabilities": [round(float(v), 4) for v in p]}


def read_photo(rgb: np.ndarray, recognizers: Sequence[Recognizer]) -> list[dict]:
    """Every face with each recognizer's reading: what `emocloak predict` prints, for the page."""
    found = find(rgb, recognizers)
    return [
        {"box": box.as_list(), "readings": {name: reading_at(box, pairs) for name, pairs in found.items()}}
        for box in merged_boxes(found)
    ]


def compare(original: np.ndarray, cloaked: np.ndarray, recognizers: Sequence[Recognizer], target: str | None) -> dict:
    """Per face and recognizer: reading before and after, and whether it was fooled; plus a per-recognizer verdict.

    A recognizer is fooled on the photo when it is fooled on every face it read before.
    """
    before, after = find(original, recognizers), find(cloaked, recognizers)
    faces = []
    for box in merged_boxes(before):
        readings = {}
        for rec in recognizers:
            b, a = reading_at(box, before[rec.name]), reading_at(box, after[rec.name])
            readings[rec.name] = {"before": b, "after": a, "fooled": fooled(b, a, target)}
        faces.append({"box": box.as_list(), "readings": readings})
    verdict = {}
    for rec in recognizers:
        marks = [f["readings"][rec.name]["fooled"] for f in faces if f["readings"][rec.name]["fooled"] is not None]
        verdict[rec.name] = all(marks) if marks else None
    return {"faces": faces, "fooled": verdict}


def _covered(box: list[int], region: list[int]) -> float:
    """Share of `box` inside `region`: a cloak's region holds its face's box with a margin, so IoU says too little."""
    w = max(0, min(box[2], region[2]) - max(box[0], region[0]))
    h = max(0, min(box[3], region[3]) - max(box[1], region[1]))
    area = (box[2] - box[0]) * (box[3] - box[1])
    return w * h / area if area > 0 else 0.0


def number_held_out(estimate: dict | None, faces: list[dict]) -> dict | None:
    """protect's held-out estimate, each face given the page's face number ("face": 1-based, None if unmatched).

    The estimate names faces by the cloak's regions, the page by its readers' boxes; a region is the face
    whose box it covers most, at least half of it.
    """
    if not estimate:
        return None
    numbered = []
    for f in estimate.get("faces", []):
        cover = [_covered(face["box"], f["region"]) for face in faces]
        best = max(range(len(cover)), key=cover.__getitem__, default=None)
        numbered.append({**f, "face": best + 1 if best is not None and cover[best] >= 0.5 else None})
    return {**estimate, "faces": numbered}
