"""Time left for the web page's photos, from what this server measured, never from a constant.

A photo's time has two parts: the cloak, and the checks after it (readings of the cloaked and
saved photo, the page's own readings). Each part has a running mean over the photos of the same
method and strength this server finished. While the tailored cloak runs, its own steps done out
of all (the `progress` callback) and the seconds they took say how long the rest of the cloak
needs, before any photo is measured. Where neither is known the estimate is None: "estimating…".
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

Key = tuple[str, str]  # (method, strength; "" for methods that take none)


@dataclass
class Mean:
    n: int = 0
    cloak: float = 0.0
    checks: float = 0.0

    @property
    def total(self) -> float:
        return self.cloak + self.checks


class Timings:
    """Running means of seconds per photo (cloak, checks) by method and strength, measured in this server."""

    def __init__(self) -> None:
        self._means: dict[Key, Mean] = {}
        self._lock = threading.Lock()

    def add(self, key: Key, cloak: float, checks: float) -> None:
        with self._lock:
            m = self._means.setdefault(key, Mean())
            m.n += 1
            m.cloak += (cloak - m.cloak) / m.n
            m.checks += (checks - m.checks) / m.n

    def get(self, key: Key) -> Mean | None:
        with self._lock:
            m = self._means.get(key)
            return Mean(m.n, m.cloak, m.checks) if m else None


@dataclass(frozen=True)
class Running:
    """Where a working photo stands: seconds since it started; since its cloak ended (None: not yet);
    the share of the cloak's steps done, the seconds a whole cloak takes at the pace of its steps so far,
    and the seconds since its last report (None: the cloak reports no steps, or not two yet)."""

    elapsed: float
    checks_elapsed: float | None = None
    share: float | None = None
    seconds_per_share: float | None = None
    since_report: float = 0.0


@dataclass(frozen=True)
class Eta:
    seconds: float | None  # None: nothing measured yet
    covers: str = "photo"  # "cloak": only the rest of the cloak is known, not the checks after it


def working_eta(at: Running, mean: Mean | None) -> Eta:
    """Seconds left for a photo being cloaked."""
    if at.checks_elapsed is not None:
        return Eta(None if mean is None else max(0.0, mean.checks - at.checks_elapsed))
    if at.share is not None and at.seconds_per_share is not None:
        cloak_left = max(0.0, (1 - at.share) * at.seconds_per_share - at.since_report)  # the cloak's own pace
        return Eta(cloak_left, "cloak") if mean is None else Eta(cloak_left + mean.checks)
    return Eta(None if mean is None else max(0.0, mean.total - at.elapsed))


def queue_etas(workers: int, running: Sequence[Eta], queued: Sequence[Mean | None]) -> list[float | None]:
    """Seconds until each queued photo (in queue order) is done: the queue played out on `workers` workers.

    Each worker is free once its photo's estimate has passed; a photo takes its method's mean.
    Unknown from the first photo whose time is unknown (its own, or one ahead of it) on.
    """
    left = [e.seconds if e.covers == "photo" else None for e in running]
    if any(s is None for s in left):
        return [None] * len(queued)
    free = [s for s in left if s is not None] + [0.0] * max(0, workers - len(left))
    out: list[float | None] = []
    for mean in queued:
        if mean is None:
            break
        k = free.index(min(free))
        free[k] += mean.total
        out.append(free[k])
    return out + [None] * (len(queued) - len(out))
