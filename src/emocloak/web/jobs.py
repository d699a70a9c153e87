"""The web app's job queue: each uploaded photo is cloaked in a worker thread, off the event loop.

A job is one batch of photos sent together with one set of options; its photos go into one
queue shared by every tab, first come first served, `workers` at a time. Everything a job
stores lives in a folder under the server's temporary root, named by the server (job id,
photo number); names sent by browsers never become paths. Each photo says what it is doing
and how long it has left (`emocloak.web.progress`).
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from emocloak.attacks.evasion.tailored import DEFAULT_STRENGTH
from emocloak.attacks.evasion.tailored import STRENGTHS as TAILORED_STRENGTHS
from emocloak.data.images import load_rgb
from emocloak.errors import EmocloakError
from emocloak.labels import canonical
from emocloak.metrics.perceptual import image_distances
from emocloak.protection import DEFAULT_METHOD, METHODS, protect_file
from emocloak.recognizers.registry import available, load_recognizer
from emocloak.web.progress import Eta, Running, Timings, queue_etas, working_eta
from emocloak.web.readings import compare, number_held_out
from emocloak.web.uploads import BROWSER_SUFFIXES, Upload, UploadError

log = logging.getLogger("emocloak.web")

STRENGTHS = tuple(TAILORED_STRENGTHS)
STRENGTH_METHODS = ("tailored",)  # methods whose protect() takes `strength`; the others ignore the page's choice
STEP_METHODS = ("tailored",)  # methods whose cloak reports its steps (protect's `progress` callback)
CLOAKING = {"filters": "searching for filters that fool the recognizers", "universal": "adding the universal cloak"}
CHECKING = "checking the cloak: held-out readers, the saved file"


@dataclass(frozen=True)
class CloakOptions:
    """What the page lets a user choose; no `recognizers`: the method's own default (protect decides);
    `readers` are the recognizers whose readings are shown."""

    method: str = DEFAULT_METHOD
    strength: str = DEFAULT_STRENGTH
    target: str | None = None
    recognizers: tuple[str, ...] = ()
    readers: tuple[str, ...] = ()
    seed: int = 0

    def protect_kwargs(self) -> dict:
        """Arguments for `emocloak.protect`: the one place that decides where `strength` goes."""
        extra = {"strength": self.strength} if self.method in STRENGTH_METHODS else {}
        chosen = list(self.recognizers) or None
        return dict(method=self.method, target=self.target, recognizers=chosen, seed=self.seed, **extra)

    @property
    def key(self) -> tuple[str, str]:
        """What photos' times are averaged by: method, and strength where the method takes one."""
        return self.method, self.strength if self.method in STRENGTH_METHODS else ""


def _names(value: str | None, what: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in (value or "").split(",") if n.strip())
    unknown = [n for n in names if n not in available()]
    if unknown:
        raise ValueError(f"{what}: unknown recognizer {unknown[0]!r}; valid: {', '.join(available())}")
    return names


def parse_options(
    method: str | None = None,
    strength: str | None = None,
    target: str | None = None,
    recognizers: str | None = None,
    readers: str | None = None,
    seed: int = 0,
) -> CloakOptions:
    """Options from form fields (recognizer lists comma-separated), or ValueError with the reason."""
    method = method or DEFAULT_METHOD
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    strength = strength or DEFAULT_STRENGTH
    if strength not in STRENGTHS:
        raise ValueError(f"unknown strength {strength!r}; valid: {', '.join(STRENGTHS)}")
    target = canonical(target) if target else None
    cloak = _names(recognizers, "recognizers")
    shown = _names(readers, "readers") or tuple(available())
    shown = cloak + tuple(n for n in shown if n not in cloak)  # the ones the cloak aimed at come first
    return CloakOptions(method, strength, target, cloak, shown, seed)


@dataclass
class Item:
    """One photo of a job and where it stands."""

    index: int
    name: str
    seq: int
    suffix: str = ""
    status: str = "queued"  # queued -> working -> done | failed
    stage: str = "queued"
    progress: float = 0.0  # what the bar shows: never goes back
    stage_progress: float = 0.0  # by stage alone, shown while no time is measured
    share: float | None = None  # share of the cloak's steps done, where the cloak reports them
    paced: tuple[float, float] | None = None  # (time, share) at the cloak's first step report: its pace since
    told: float | None = None  # time of the cloak's last report
    error: str | None = None
    result: dict | None = None
    started: float | None = None
    cloaked: float | None = None  # when the cloak ended and the checks began
    finished: float | None = None
    files: dict[str, Path] = field(default_factory=dict)  # input, output, sidecar, original/cloaked views

    @property
    def active(self) -> bool:
        return self.status in ("queued", "working")


@dataclass
class Job:
    id: str
    options: CloakOptions
    items: list[Item]
    created: float = field(default_factory=time.time)
    deleted: bool = False
    futures: list[Future] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return not any(i.active for i in self.items)


class Jobs:
    """All jobs of one server, their files under `root`, and the worker pool."""

    def __init__(self, root: Path, workers: int = 1) -> None:
        self.root = root
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emocloak-job")
        self.workers = workers
        self.timings = Timings()
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self._seq = itertools.count()
        self.version = 0  # bumped on every change to any job: queue positions move with other jobs' progress

    def submit(self, options: CloakOptions, uploads: list[Upload | UploadError]) -> Job:
        """Store the good photos, queue them; bad ones become failed items with their message."""
        job = Job(uuid.uuid4().hex, options, [])
        for index, up in enumerate(uploads):
            if isinstance(up, UploadError):
                job.items.append(Item(index, up.name, -1, status="failed", stage="refused", error=str(up)))
                continue
            item = Item(index, up.name, next(self._seq), up.suffix)
            folder = self.root / job.id / str(index)
            folder.mkdir(parents=True)
            item.files["input"] = folder / f"input{up.suffix}"
            item.files["input"].write_bytes(up.data)
            job.items.append(item)
        with self.lock:
            self.jobs[job.id] = job
            self.version += 1
        job.futures = [self.pool.submit(self._work, job, item) for item in job.items if item.active]
        return job

    def get(self, job_id: str) -> Job:
        """The job with this id; KeyError if there is none (ids are looked up, never used as paths)."""
        with self.lock:
            return self.jobs[job_id]

    def snapshot(self, job: Job) -> dict:
        """The job as JSON for the page and the API: each photo's stage, progress and seconds left (`eta`)."""
        with self.lock:
            waiting = sorted(i.seq for j in self.jobs.values() for i in j.items if i.status == "queued")
            now = time.time()
            etas = self._etas(now)
            items = []
            for it in job.items:
                eta = etas.get(it.seq, Eta(None))
                ahead = waiting.index(it.seq) if it.status == "queued" else None
                d = {k: getattr(it, k) for k in ("index", "name", "status", "error", "result")}
                d["stage"] = _queued(ahead) if ahead is not None else it.stage
                d["progress"] = round(self._shown(it, now, eta), 3)
                d["seconds"] = round((it.finished or now) - it.started, 1) if it.started else None
                d["ahead"] = ahead
                d["eta"] = None if eta.seconds is None or not it.active else round(eta.seconds, 1)
                d["eta_covers"] = eta.covers if d["eta"] is not None else None
                items.append(d)
            return {
                "id": job.id,
                "options": asdict(job.options),
                "finished": job.finished,
                "version": self.version,
                "items": items,
            }

    def _etas(self, now: float) -> dict[int, Eta]:
        """Seconds left for every photo not done yet, of every job (the queue is shared); call under the lock."""
        active = [(j, i) for j in self.jobs.values() for i in j.items if i.active]
        working = [(j, i) for j, i in active if i.status == "working"]
        queued = sorted(((j, i) for j, i in active if i.status == "queued"), key=lambda ji: ji[1].seq)
        out = {i.seq: working_eta(_running(i, now), self.timings.get(j.options.key)) for j, i in working}
        later = queue_etas(self.workers, list(out.values()), [self.timings.get(j.options.key) for j, _ in queued])
        out |= {i.seq: Eta(s) for (_, i), s in zip(queued, later, strict=True)}
        return out

    @staticmethod
    def _shown(it: Item, now: float, eta: Eta) -> float:
        """The bar: time elapsed over time elapsed plus left where both are known, else by stage; never back."""
        if it.status == "working":
            if eta.seconds is not None and eta.covers == "photo" and it.started is not None:
                spent = now - it.started
                share = spent / (spent + eta.seconds) if spent + eta.seconds > 0 else 0.0
            else:
                share = it.stage_progress
            it.progress = max(it.progress, min(share, 0.99))
        return it.progress

    def delete(self, job_id: str) -> None:
        """Forget a job: queued photos are dropped, its files removed (a running photo's when it ends)."""
        with self.lock:
            job = self.jobs.pop(job_id)
            job.deleted = True
            self.version += 1
        for f in job.futures:
            f.cancel()
        shutil.rmtree(self.root / job.id, ignore_errors=True)

    def close(self) -> None:
        """Drop queued work, wait for running photos, remove every file."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def _update(self, job: Job, item: Item, **changes: object) -> None:
        with self.lock:
            for k, v in changes.items():
                setattr(item, k, v)
            self.version += 1

    def _told(self, job: Job, item: Item, stage: str, share: float) -> None:
        """The cloak's own report (protect's `progress`): its stage, and its steps' pace for the estimate."""
        now = time.time()
        with self.lock:
            if share >= 1:  # its last step: what follows is protect's readings, the held-out readers, the save
                item.cloaked = item.cloaked or now
                item.stage = CHECKING
            else:
                item.stage = stage
            if share > 0 and item.paced is None:
                item.paced = (now, share)
            item.share, item.told = share, now
            item.stage_progress = max(item.stage_progress, 0.05 + 0.75 * min(share, 1.0))
            self.version += 1

    def _work(self, job: Job, item: Item) -> None:
        if job.deleted:
            return
        method = job.options.method
        stage = "finding faces" if method in STEP_METHODS else CLOAKING.get(method, f"cloaking ({method})")
        self._update(job, item, status="working", stage=stage, stage_progress=0.03, started=time.time())
        try:
            result = self._cloak(job, item)
        except EmocloakError as exc:  # no face, unreadable: the photo's own problem, said in its words
            message = str(exc).replace(str(item.files["input"]), item.name)
            self._update(job, item, status="failed", stage="failed", error=message, finished=time.time())
        except Exception as exc:  # a bug: logged without the photo, the batch goes on
            log.exception("job %s photo %d failed", job.id, item.index)
            error = f"internal error ({type(exc).__name__}); see the server's log"
            self._update(job, item, status="failed", stage="failed", error=error, finished=time.time())
        else:
            now = time.time()
            self._update(job, item, status="done", stage="done", progress=1.0, result=result, finished=now)
            cloaked = item.cloaked or now
            self.timings.add(job.options.key, cloaked - (item.started or now), now - cloaked)
        if job.deleted:
            shutil.rmtree(self.root / job.id, ignore_errors=True)

    def _cloak(self, job: Job, item: Item) -> dict:
        opts, src = job.options, item.files["input"]
        kwargs = opts.protect_kwargs()
        if opts.method in STEP_METHODS:
            kwargs["progress"] = lambda stage, share: self._told(job, item, stage, share)
        t0 = time.perf_counter()
        dst, info = protect_file(src, src.parent / "out", **kwargs)
        seconds = time.perf_counter() - t0
        stage = f"reading the saved photo with {len(opts.readers)} recognizers"
        self._update(job, item, stage=stage, stage_progress=0.9, cloaked=item.cloaked or time.time())
        original, saved = load_rgb(src), load_rgb(dst)
        readings = compare(original, saved, [load_recognizer(n) for n in opts.readers], opts.target)
        quality = image_distances(original, saved)
        download = f"{Path(item.name).stem or 'photo'}.cloaked{dst.suffix}"
        info |= {"input": item.name, "output": download, "faces": readings["faces"], "saved": quality}
        sidecar = dst.with_name(dst.name + ".json")
        sidecar.write_text(json.dumps(info, indent=2))
        item.files |= {"output": dst, "sidecar": sidecar}
        item.files["original"] = _view(src, original, "original")
        item.files["cloaked"] = _view(dst, saved, "cloaked")
        h, w = original.shape[:2]
        return {
            "width": w,
            "height": h,
            "download": download,
            "faces": readings["faces"],
            "fooled": readings["fooled"],
            "ssim": round(quality["ssim"], 4),
            "psnr": round(quality["psnr"], 2),
            "seconds": round(seconds, 2),
            "note": info.get("note"),
            "method": opts.method,
            "target": opts.target,
            "recognizers": info["recognizers"],
            "held_out": number_held_out(info.get("held_out"), readings["faces"]),
        }


def _queued(ahead: int) -> str:
    return f"queued: {ahead} photo{'s' if ahead > 1 else ''} ahead" if ahead else "queued: next in line"


def _running(it: Item, now: float) -> Running:
    """A working photo's clocks; the cloak's pace is measured from its first step report on."""
    start = it.started or now
    if it.cloaked is not None:
        return Running(now - start, checks_elapsed=now - it.cloaked)
    if it.paced is None or it.share is None or it.told is None or it.share <= it.paced[1]:
        return Running(now - start)
    t0, s0 = it.paced
    pace = (it.told - t0) / (it.share - s0)
    return Running(now - start, share=it.share, seconds_per_share=pace, since_report=now - it.told)


def _view(path: Path, rgb: np.ndarray, name: str) -> Path:
    """A file a browser shows: the photo itself where it can, else a PNG copy beside it."""
    if path.suffix in BROWSER_SUFFIXES:
        return path
    view = path.parent / f"{name}.view.png"
    Image.fromarray(rgb).save(view, compress_level=1)
    return view
