"""`emocloak.protect`: cloak one photo, and save it the way users post it.

The cloaked photo keeps the input's size and format; metadata (EXIF, GPS, comments)
is dropped unless asked for. Success is re-measured on the file as saved, since
that, not the array in memory, is what a platform's recognizer will read.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from emocloak.channel import jpeg as jpeg_round_trip
from emocloak.data.files import OutputError, Planned, atomic_write, plan_outputs, write_text_atomic
from emocloak.data.images import ImageLike, as_rgb, load_rgb, open_image
from emocloak.data.manifest import Manifest
from emocloak.errors import EmocloakError
from emocloak.faces.detect import Box, crop, detect_faces, square_box
from emocloak.labels import LABELS, label_index
from emocloak.metrics import held_out
from emocloak.metrics.perceptual import image_distances, ssim
from emocloak.recognizers.base import Recognizer
from emocloak.recognizers.registry import ensemble, load_recognizer

METHODS = ("tailored", "filters", "universal")
DEFAULT_METHOD = "tailored"  # the method `protect` uses when none is named: the best one measured
SAVE_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
JPEG_QUALITY = 95


def _recognizers(recognizers: Sequence[str | Recognizer] | None, method: str = "filters") -> list[Recognizer]:
    """The recognizers a cloak works against; by default `cnn`, and for tailored the default ensemble."""
    names = list(recognizers or (ensemble() if method == "tailored" else ["cnn"]))
    if not names:
        raise ValueError("at least one recognizer is needed")
    return [r if isinstance(r, Recognizer) else load_recognizer(r) for r in names]


def make_cloak(
    method: str,
    recs: list[Recognizer],
    chain: int = 3,
    seed: int | None = 0,
    jpeg: int | None = None,
    **options: object,
):
    if method == "filters":
        from emocloak.attacks.evasion.filter_chain import FilterCloak

        return FilterCloak(chain=chain, ensemble=tuple(recs[1:]), jpeg=jpeg, seed=seed, **options)
    if method == "tailored":
        from emocloak.attacks.evasion.tailored import TailoredCloak

        if jpeg is not None:
            raise ValueError("jpeg does not apply to tailored: it always optimises through JPEG 50-95 and resizing")
        return TailoredCloak(members=recs[1:], seed=seed, **options)  # type: ignore[arg-type]
    if method == "universal":
        from emocloak.attacks.evasion.universal import UniversalCloak, as_perturbation

        if jpeg is not None:
            raise ValueError("jpeg does not apply to universal: JPEG robustness is learnt (universal train --jpeg)")
        up = as_perturbation(options.pop("perturbation", None))  # type: ignore[arg-type]
        return UniversalCloak(up, seed=seed, **options)  # type: ignore[arg-type]
    raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")


class Stages:
    """Seconds per stage of one photo (info["stages"]): each `lap` books the time since the last one."""

    def __init__(self, seconds: dict[str, float] | None = None) -> None:
        self.seconds = dict(seconds or {})
        self._t = time.perf_counter()

    def lap(self, stage: str, inner: dict[str, float] | None = None) -> dict[str, float]:
        """Book the time since the last lap to `stage`, less the `inner` stages a callee timed itself."""
        now, inner = time.perf_counter(), inner or {}
        for name, s in [*inner.items(), (stage, now - self._t - sum(inner.values()))]:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + s, 3)
        self._t = now
        return self.seconds


def _reading(rec: Recognizer, image: np.ndarray) -> dict | None:
    p = rec.predict_proba([image], on_no_face="nan")[0]
    return None if np.isnan(p).any() else _as_reading(p)


def protect(
    image: ImageLike | str | Path,
    method: str = DEFAULT_METHOD,
    chain: int = 3,
    target: str | None = None,
    recognizers: Sequence[str | Recognizer] | None = None,
    seed: int | None = 0,
    jpeg: int | None = None,
    estimate: bool = True,
    **options: object,
) -> tuple[np.ndarray, dict]:
    """Cloak a photo; returns (cloaked RGB uint8 array of the same size, info dict).

    The first recognizer is the one the cloak must fool; the others join its fitness
    (an ensemble, so the cloak carries over to recognizers it never queried).
    `jpeg=Q` makes the search score each candidate after a JPEG round trip at quality Q;
    `local=True` brushes each filter onto one spot of the face instead of the whole photo.
    method="universal" adds a learnt perturbation to every face (`perturbation`: a file or a
    UniversalPerturbation; default: the shipped one for `target`); no recognizer is queried.
    `estimate` adds info["held_out"]: per face, how many shipped recognizers the cloak did not use
    change their reading after a JPEG-75 re-save (`metrics.held_out`).
    """
    stages = Stages()
    rgb = load_rgb(image) if isinstance(image, str | Path) else as_rgb(image)
    recs = _recognizers(recognizers, method)
    tgt = None if target is None else label_index(target)
    cloak = make_cloak(method, recs, chain, seed, jpeg, **options)
    stages.lap("load")
    for rec in recs:
        rec.faces(rgb)  # memoised: the cloak and the readings find them there
    stages.lap("detect")
    out = cloak(recs[0], [rgb], target=tgt)
    record = out.records[0]
    stages.lap("cloak", record.get("stages"))  # tailored: optimise, write_back; the rest: its own readings
    if record["pred_before"] < 0:
        from emocloak.errors import NoFaceError

        raise NoFaceError(str(image) if isinstance(image, str | Path) else "image")
    cloaked = out.images[0]
    info = {
        "method": method,
        "target": target,
        "recognizers": [r.name for r in recs],
        "chain": record.get("chain"),
        "success": record["success"],
        "before": {r.name: _reading(r, rgb) for r in recs},
        "after": {r.name: _reading(r, cloaked) for r in recs},
        **{k: record[k] for k in ("queries", "seconds") if k in record},
        **image_distances(rgb, cloaked),
        "pareto_front": record.get("pareto_front"),
        **{k: record[k] for k in ("ensemble_no_face",) if k in record},  # members that saw no face
        "seed": seed,
    }
    if method == "filters":
        keep = ("pop_size", "n_gen", "good_ssim", "min_ssim", "s_range", "a_range", "jpeg", "local")
        info["search"] = {k: v for k, v in cloak.params().items() if k in keep}
    if method == "tailored":
        info["strength"], info["budget"] = cloak.strength, record["budget"]
        regions = [f["region"] for f in record["faces"]]
        info["faces"] = [
            {**f, **_face_quality(rgb, cloaked, f["region"]), "readings": {"before": b}}
            for f, b in zip(record["faces"], face_readings(recs, rgb, regions), strict=True)
        ]
    if method == "universal":
        up = cloak.perturbation(tgt)
        info["faces"] = record.get("faces")
        info["perturbation"] = {k: up.meta.get(k) for k in ("recognizers", "eps", "target", "data", "created")}
        if note := up.weakness():
            info["note"] = note
    stages.lap("quality_check")
    if estimate:
        used = up.meta.get("recognizers") or [] if method == "universal" else info["recognizers"]
        regions = [f["region"] for f in info["faces"]] if method == "tailored" else _face_boxes(rgb)
        info["held_out"] = held_out_estimate(rgb, cloaked, regions, used)
    info["stages"] = stages.lap("held_out")
    return cloaked, info


def held_out_estimate(original: np.ndarray, cloaked: np.ndarray, regions: list[list[int]], used: Sequence[str]):
    """Per face, which shipped recognizers the cloak did not use read it differently after JPEG 75.

    Both photos are re-saved as a platform would, so a change the re-encode alone undoes is not counted.
    None when every shipped recognizer took part in the cloak.
    """
    readers = held_out.held_out_readers(used)
    if not readers:
        return None
    recs = [load_recognizer(n) for n in readers]
    before = face_readings(recs, jpeg_round_trip(original, held_out.JPEG_QUALITY), regions)
    after = face_readings(recs, jpeg_round_trip(cloaked, held_out.JPEG_QUALITY), regions)
    faces = [held_out.face_estimate(r, b, a) for r, b, a in zip(regions, before, after, strict=True)]
    return held_out.summarise(faces, readers, used)


def _face_boxes(image: np.ndarray) -> list[list[int]]:
    """Regions for cloaks that do not name their faces: dlib's face boxes, grown to hold every crop's centre."""
    return [square_box(b, image.shape).as_list() for b in detect_faces(image)]


def _face_quality(original: np.ndarray, cloaked: np.ndarray, region: list[int]) -> dict:
    """SSIM and L-inf (/255) of one face region; the whole photo's numbers are computed once, apart."""
    a, b = crop(original, Box(*region)), crop(cloaked, Box(*region))
    return {"ssim_face": ssim(a, b), "linf": float(np.abs(b.astype(np.int16) - a.astype(np.int16)).max())}


def face_readings(recs: Sequence[Recognizer], image: np.ndarray, regions: Sequence[list[int]]) -> list[dict]:
    """Per region, each recognizer's reading of the face it finds there (None where it finds none).

    Each recognizer runs its whole pipeline on the photo, its own detector included, as a platform would.
    """
    out: list[dict] = [{} for _ in regions]
    for rec in recs:
        found = rec.predict_faces(image) if rec.faces(image) else []
        for slot, region in zip(out, regions, strict=True):
            inside = [p for f, p in found if _centre_in(f.box, region)]
            slot[rec.name] = _as_reading(inside[0]) if inside else None
    return out


def _centre_in(box: Box, region: list[int]) -> bool:
    cx, cy = (box.left + box.right) / 2, (box.top + box.bottom) / 2
    return region[0] <= cx < region[2] and region[1] <= cy < region[3]


def _as_reading(p: np.ndarray) -> dict:
    return {
        "emotion": LABELS[int(p.argmax())],
        "probabilities": {k: round(float(v), 4) for k, v in zip(LABELS, p, strict=True)},
    }


def fooled(before: dict | None, after: dict | None, target: str | None) -> bool | None:
    """Did the cloak change this recognizer's reading (to `target`, when one is set)?

    None: it read nothing there before, so there was nothing to fool. A face it no longer finds
    after the cloak counts as fooled: it can say nothing about that face any more.
    """
    if before is None:
        return None
    if after is None:
        return True
    return after["emotion"] == target if target else after["emotion"] != before["emotion"]


def all_fooled(marks: Sequence[bool | None]) -> bool:
    """Every recognizer that read something was fooled (those with nothing to fool do not count)."""
    return all(m is not False for m in marks)


def _judge_faces(faces: list[dict], recs: Sequence[Recognizer], saved: np.ndarray, target: str | None) -> None:
    """Per face and recognizer: the reading of the saved file beside that of the original, and whether it was fooled."""
    for face, a in zip(faces, face_readings(recs, saved, [f["region"] for f in faces]), strict=True):
        b = face["readings"]["before"]
        face["readings"]["after_saved"] = a
        face["fooled"] = {name: fooled(b[name], a[name], target) for name in b}


def output_names(rel: Path) -> tuple[Path, Path]:
    """The files one input makes, relative to the output folder: the cloak and its JSON sidecar.

    The cloak keeps the input's format where it can be written in it; others (GIF, ...) become PNG.
    """
    dst = rel if rel.suffix.lower() in SAVE_FORMATS else rel.with_suffix(".png")
    return dst, dst.with_name(dst.name + ".json")


def plan_protect(
    files: Sequence[Path],
    roots: Sequence[Path],
    out_dir: Path,
    overwrite: bool = False,
    manifest: Manifest | None = None,
) -> tuple[list[Planned], list[tuple[Path, str]]]:
    """Every cloak and sidecar of a run, mirroring the input folders, checked before any work.

    With the output folder's `manifest`, outputs an earlier run started and never finished may be replaced.
    """
    return plan_outputs(files, roots, out_dir, output_names, overwrite, manifest and manifest.unfinished)


def plan_resume(
    files: Sequence[Path], roots: Sequence[Path], out_dir: Path, overwrite: bool, manifest: Manifest, key: str
) -> tuple[list[Planned], list[tuple[Path, str]], list[Planned]]:
    """`plan_protect` for a run that may be a rerun: (to do, refused, already finished with these settings).

    An input counts as finished when the manifest holds its cloak and sidecar, byte for byte as written,
    from a run with the same settings (`key`); it is neither redone nor refused.
    """
    everything, _ = plan_protect(files, roots, out_dir, overwrite=True)  # only to name every input's outputs
    finished = [p for p in everything if manifest.complete(p, key)]
    done = {p.src for p in finished}
    plan, refused = plan_protect([f for f in files if f not in done], roots, out_dir, overwrite, manifest)
    return plan, refused, finished


@dataclass(frozen=True)
class Outcome:
    """What became of one planned photo, as it travels back from wherever it was cloaked."""

    item: Planned
    status: str  # "done", "skipped" (the photo itself: unreadable, no face) or "failed" (e.g. not written)
    info: dict | None = None
    message: str = ""
    pid: int = 0  # the process that cloaked it (benchmarks kill workers by it)


def protect_outcome(item: Planned, keep_metadata: bool = False, options: dict | None = None) -> Outcome:
    """`protect_planned(item, keep_metadata, **options)` for a batch: a problem with this photo is its
    outcome, not an exception. It is what each worker runs, so a photo is cloaked the same way anywhere."""
    try:
        _, info = protect_planned(item, keep_metadata, **(options or {}))
        return Outcome(item, "done", info, pid=os.getpid())
    except (OutputError, OSError, MemoryError) as exc:
        return Outcome(item, "failed", message=f"{item.src}: {_why(exc)}", pid=os.getpid())
    except EmocloakError as exc:
        return Outcome(item, "skipped", message=str(exc), pid=os.getpid())


def protect_batch(
    plan: Sequence[Planned],
    manifest: Manifest,
    key: str,
    keep_metadata: bool = False,
    options: dict | None = None,
    workers: int = 1,
    ray_address: str | None = None,
    threads: int | None = None,
) -> Iterator[tuple[int, Outcome]]:
    """Cloak every planned photo, here or on Ray (`emocloak.scale`): (index in plan, outcome), as they finish.

    The same `protect_outcome` cloaks each photo wherever it runs. This process alone writes the
    manifest: a claim as a photo is handed out, its outputs' hashes once they are all written (with
    the run's settings `key`), so a rerun skips it. A photo whose worker kept dying comes back failed.
    """
    from emocloak.scale import imap, lost

    def jobs() -> Iterator[tuple]:
        for item in plan:
            manifest.claim(item)
            yield item, keep_metadata, options

    for i, res in imap(protect_outcome, jobs(), workers, ray_address, threads):
        if why := lost(res):
            res = Outcome(plan[i], "failed", message=f"{plan[i].src}: its worker died ({why})")
        elif res.status == "done":
            manifest.finish(res.item, key)
        yield i, res


def _why(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "not enough memory for this photo"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    return str(exc)


def save_photo(cloaked: np.ndarray, src: Path, dst: Path, keep_metadata: bool = False) -> Path:
    """Save in dst's format (JPEG at quality 95), metadata stripped; atomic, so no partial files."""
    fmt = SAVE_FORMATS.get(dst.suffix.lower(), "PNG")
    kwargs: dict[str, object] = {"quality": JPEG_QUALITY} if fmt in ("JPEG", "WEBP") else {}
    if keep_metadata:
        with open_image(src) as im:
            if "exif" in im.info:
                kwargs["exif"] = im.info["exif"]
    return atomic_write(dst, lambda tmp: Image.fromarray(cloaked).save(tmp, fmt, **kwargs))


def protect_planned(item: Planned, keep_metadata: bool = False, **kwargs: object) -> tuple[Path, dict]:
    """Cloak one planned input: the cloak, then its JSON sidecar, success re-read from the saved file."""
    src, (dst, sidecar) = item.src, item.outputs
    cloaked, info = protect(src, **kwargs)
    stages = Stages(info["stages"])
    save_photo(cloaked, src, dst, keep_metadata)
    saved = load_rgb(dst)
    stages.lap("save")
    recs = _recognizers(kwargs.get("recognizers"), str(kwargs.get("method", DEFAULT_METHOD)))  # cached: no reload
    info["input"], info["output"] = str(src), str(dst)
    info["after_saved"] = {r.name: _reading(r, saved) for r in recs}
    target = kwargs.get("target")
    if "faces" in info and info["method"] == "tailored":
        _judge_faces(info["faces"], recs, saved, target)  # type: ignore[arg-type]
        info["success_saved"] = all(all_fooled(list(f["fooled"].values())) for f in info["faces"])
    else:
        main, before = info["after_saved"][recs[0].name], info["before"][recs[0].name]
        info["success_saved"] = fooled(before, main, target) is True  # type: ignore[arg-type]
    info["stages"] = stages.lap("quality_check")
    write_text_atomic(sidecar, json.dumps(info, indent=2))
    return dst, info


def protect_file(
    src: Path, out_dir: Path, overwrite: bool = False, keep_metadata: bool = False, **kwargs: object
) -> tuple[Path, dict]:
    """Cloak one file into out_dir with a JSON sidecar; refuses (OutputError) to replace what it must not."""
    plan, refused = plan_protect([Path(src)], [], Path(out_dir), overwrite)
    if refused:
        raise OutputError(refused[0][1])
    return protect_planned(plan[0], keep_metadata, **kwargs)
