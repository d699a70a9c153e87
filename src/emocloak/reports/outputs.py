"""Everything `emocloak evaluate` leaves on disk: report.json, the figures, report.html.

Files are written into a temporary sibling folder that is moved into place at the
end, so an interrupted run leaves either the complete report or none.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np

from emocloak.data.files import OutputError, check_writable_dir, describe_oserror, dir_mode
from emocloak.errors import EmocloakError
from emocloak.labels import LABELS
from emocloak.reports.html import label_name, write_report
from emocloak.reports.plots import plot_confusion, plot_examples, plot_ssim_hist


class OutputExistsError(EmocloakError, FileExistsError):
    """The output folder already holds something that must not be overwritten."""


def jsonable(obj: object) -> object:
    """Plain JSON types only: numpy scalars/arrays converted, NaN and +-inf as None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(report: dict) -> str:
    return json.dumps(jsonable(report), indent=2, allow_nan=False)


def check_out_dir(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Resolve `out_dir` and refuse it early (before a long run) if writing there would destroy anything.

    A missing or empty folder is fine. A non-empty one only with `overwrite`, and only
    if it is an earlier report (holds report.json): `--overwrite` never deletes a folder
    of something else (a dataset, the home folder) given as --out by mistake.
    """
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
        if not (out / "report.json").is_file():
            raise OutputExistsError(f"{out} is not an emocloak report folder (no report.json); refusing to replace it")
    check_writable_dir(out.parent)  # the report is built beside it and renamed into place
    return out


def _pick(n_total: int, n: int) -> list[int]:
    """`n` indices spread evenly over the run, so the grid is not just the first class."""
    if n_total <= n:
        return list(range(n_total))
    return sorted({int(round(x)) for x in np.linspace(0, n_total - 1, n)})


def _figures(report: dict, samples, adv: list[np.ndarray], tmp: Path, examples: bool) -> dict[str, Path]:
    s, records = report["summary"], report["records"]
    figs: dict[str, Path] = {}
    conf = s.get("confusion", {})
    for key, title in (("clean", "clean"), ("attacked", "under attack")):
        if key in conf:
            figs[f"confusion_{key}"] = plot_confusion(
                np.asarray(conf[key]), f"{s.get('recognizer')}: {title}", tmp / f"confusion_{key}.png"
            )
    if s.get("channel"):
        figs["confusion_channel"] = plot_confusion(
            np.asarray(s["channel"]["confusion"]),
            f"{s.get('recognizer')}: under attack, after channel {s['channel'].get('spec', '')}",
            tmp / "confusion_channel.png",
        )
    ssim = {"full image": [r.get("ssim", math.nan) for r in records]}
    if s.get("detect_faces"):
        ssim = {"full photo": ssim["full image"], "face crop": [r.get("ssim_face", math.nan) for r in records]}
    figs["ssim_hist"] = plot_ssim_hist(ssim, tmp / "ssim_hist.png")
    if examples and records:
        idx = _pick(len(records), 8)
        figs["examples"] = plot_examples(
            [samples.images[i] for i in idx],
            [adv[i] for i in idx],
            [f"read: {label_name(records[i].get('pred_before'))}" for i in idx],
            [f"read: {label_name(records[i].get('pred_after'))}" for i in idx],
            tmp / "examples.png",
            n=len(idx),
            titles=[f"{_short(records[i].get('name', ''))}\ntrue: {label_name(records[i].get('label'))}" for i in idx],
            success=[bool(records[i].get("success")) for i in idx],
        )
    return figs


def _short(name: str, width: int = 18) -> str:
    base = Path(str(name)).name
    return base if len(base) <= width else base[: width - 1] + "\u2026"


def write_outputs(
    report: dict,
    samples,
    adv: list[np.ndarray],
    out_dir: str | Path,
    overwrite: bool = False,
    examples: bool = True,
) -> dict[str, Path]:
    """Write report.json, the PNG figures and report.html into `out_dir`; returns name -> final path.

    `samples` is the `evaluation.Samples` the report was made on (its images feed the
    example grid); `examples=False` leaves the grid (and so every photo) out of the outputs.
    """
    out = check_out_dir(out_dir, overwrite)
    report = {**report, "summary": {**report["summary"]}}
    report["summary"].setdefault("dataset", getattr(samples, "source", "") or None)
    report["summary"].setdefault("labels", list(LABELS))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        tmp.chmod(dir_mode())  # mkdtemp makes it private; the report folder is an ordinary one
        (tmp / "report.json").write_text(dumps(report) + "\n", encoding="utf-8")
        figs = _figures(report, samples, adv, tmp, examples)
        write_report(jsonable(report), figs, tmp / "report.html")
        names = {"json": "report.json", **{k: p.name for k, p in figs.items()}, "html": "report.html"}
        _move_into_place(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(describe_oserror(exc, exc.filename or out, "write")) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {k: out / v for k, v in names.items()}


def _move_into_place(tmp: Path, out: Path) -> None:
    """Replace `out` by `tmp` with renames only (same parent folder), removing an old report last."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        old.rmdir()
        out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
