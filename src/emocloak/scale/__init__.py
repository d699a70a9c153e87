"""Scale-out: the same jobs run here, one after another, or on Ray (`--workers N`, `--ray-address`).

`imap(fn, jobs)` is the one door both ways go through: `protect` maps one photo per job, `evaluate`
one chunk of images per job. The jobs name their work (paths, recognizer names, a chunk's start),
so a worker anywhere computes exactly what this process would have; Ray itself is imported only
when asked for (`pip install -e ".[ray]"`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Lost:
    """A job whose worker died more often than Ray retries it (killed, out of memory, node gone)."""

    why: str


def lost(result: object) -> str | None:
    """Why a job was lost, or None for a real result."""
    return result.why if isinstance(result, Lost) else None


def on_ray(workers: int, address: str | None) -> bool:
    return workers > 1 or address is not None


def imap(
    fn: Callable, jobs: Iterable[tuple], workers: int = 1, address: str | None = None, threads: int | None = None
) -> Iterator[tuple[int, object]]:
    """(index of the job, fn(*job)) for every job; in order here, in the order they finish on Ray.

    One worker and no address: today's single process, nothing started. Otherwise a Ray instance with
    `workers` CPUs is started for the run (or the cluster at `address` joined), jobs are submitted a
    few per worker at a time (so a long job list is never all in flight), and a job whose worker
    dies is retried; one that keeps dying comes back as `Lost`.
    `threads`: torch threads per job (None: here torch's default, on Ray 1 per worker). Results are
    byte for byte the same wherever a job runs, given the same number of threads.
    """
    if not on_ray(workers, address):
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)
        try:
            for i, job in enumerate(jobs):
                yield i, fn(*job)
        finally:
            torch.set_num_threads(before)
        return
    from emocloak.scale.ray_backend import ray_imap

    yield from ray_imap(fn, jobs, workers, address, threads or 1)


def require_ray() -> None:
    """Fail in one line, before any work, when --workers/--ray-address is asked for without Ray."""
    from emocloak.scale.ray_backend import import_ray

    import_ray()
