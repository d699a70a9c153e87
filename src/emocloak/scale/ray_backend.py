"""The Ray side of `emocloak.scale.imap`: a local instance per run (or a cluster joined), bounded submission.

Models are not shipped with the jobs: a job names its recognizers and the worker process loads
each once (`load_recognizer` is cached per process) and keeps it for every later job, because Ray
reuses its worker processes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import ModuleType

from emocloak.errors import EmocloakError
from emocloak.scale import Lost

RETRIES = 3  # times Ray re-runs a job whose worker died (not one that raised: that is the job's own error)
IN_FLIGHT_PER_WORKER = 3  # jobs submitted ahead per worker: busy workers, bounded memory


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise EmocloakError(
            'running on several workers needs Ray, an optional extra: pip install -e ".[ray]" (or pip install ray)'
        ) from None
    return ray


@contextmanager
def session(workers: int, address: str | None) -> Iterator[int]:
    """Ray for the run; yields how many jobs run at once. An instance already started (tests) is used as is."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started and address:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    elif started:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home from a privacy tool
        ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield workers if workers > 1 else max(1, int(ray.cluster_resources().get("CPU", 1)))
    finally:
        if started:
            ray.shutdown()


def _run(threads: int, fn: Callable, *job: object) -> object:
    """One job in a worker, with the torch threads asked for: results depend on it (float sums split per thread)."""
    import torch

    torch.set_num_threads(threads)
    return fn(*job)


def ray_imap(
    fn: Callable, jobs: Iterable[tuple], workers: int, address: str | None, threads: int = 1
) -> Iterator[tuple[int, object]]:
    ray = import_ray()
    with session(workers, address) as slots:
        remote = ray.remote(num_cpus=1, max_retries=RETRIES)(_run)
        todo, pending = enumerate(jobs), {}

        def top_up() -> None:
            while len(pending) < IN_FLIGHT_PER_WORKER * slots:
                nxt = next(todo, None)
                if nxt is None:
                    return
                pending[remote.remote(threads, fn, *nxt[1])] = nxt[0]

        top_up()
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayTaskError:
                raise  # the job's own exception (a bug): as it would be raised here
            except ray.exceptions.RayError as exc:  # the worker, its node or the result is gone, retries spent
                result = Lost(f"{type(exc).__name__} after {RETRIES} retries")
            top_up()
            yield i, result
