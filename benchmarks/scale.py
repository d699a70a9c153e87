"""Scale-out on Ray: throughput of `protect` and `evaluate` in one process, on 1 and on 2 Ray workers.

    python benchmarks/scale.py [--photos 24] [--eval-photos 244] [--threads 1]
    (all 244 photos for protect: --photos 244, about 3 x 244 x 8 s of CPU)

Data: TCCE test photos (the 6 held-out performers; a seeded subset when --photos < 244; the labels
are the posed expressions, used only by evaluate's accuracy). Runs, in this order, in one process:

* protect (the default cloak: tailored, strength mid, seed 0) into a fresh folder: single process
  (`--workers 1`), one Ray worker, two Ray workers; then a fault run on two workers in which one
  worker process is killed (SIGKILL, by the PID its first results reported) after 3 photos;
* evaluate `pgd:eps=8,steps=20` on `cnn` (chunks of 32) the same three ways;
* the bare cost of a job through Ray: 200 empty jobs.

Every way runs the same functions the CLI runs (`protection.protect_batch`, `evaluation.evaluate`)
with one torch thread per photo, so the outputs can be compared byte for byte. Ray's start-up is
timed apart from the photos. Writes results/scale.md and scale.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import tempfile
import time
from pathlib import Path

import numpy as np

from emocloak.attacks.registry import make_attack
from emocloak.data.datasets import load_manifest
from emocloak.data.manifest import MANIFEST_NAME, Manifest, fingerprint
from emocloak.evaluation import evaluate as run_evaluate
from emocloak.evaluation import load_samples
from emocloak.protection import DEFAULT_METHOD, plan_resume, protect_batch

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
WAYS = {"single process": (1, None), "Ray, 1 worker": (1, "auto"), "Ray, 2 workers": (2, None)}
ATTACK = "pgd:eps=8,steps=20"


def start_ray(cpus: int) -> float:
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    return time.perf_counter() - t0


def stop_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def run_ways(way_names, fn) -> dict:
    """fn(workers, address) per way; Ray is started for the Ray ways (timed apart) and stopped after."""
    out = {}
    for name in way_names:
        workers, address = WAYS[name]
        load = os.getloadavg()[0]
        start = start_ray(1 if address else workers) if name != "single process" else 0.0
        try:
            out[name] = {"load_avg_1min": round(load, 1), "ray_start_s": round(start, 2), **fn(workers, address)}
        finally:
            stop_ray()
        print(name, out[name], flush=True)
    return out


def protect_run(files, out: Path, workers: int, address, threads: int, kill_after: int | None = None) -> dict:
    options = {"method": DEFAULT_METHOD, "strength": "mid", "seed": 0}
    key = fingerprint({**options, "keep_metadata": False})
    manifest = Manifest(out)
    plan, refused, finished = plan_resume(files, [], out, False, manifest, key)
    t0, pids, status, killed = time.perf_counter(), [], {}, None
    for _, res in protect_batch(plan, manifest, key, False, options, workers, address, threads):
        pids.append(res.pid)
        status[res.status] = status.get(res.status, 0) + 1
        if kill_after and killed is None and len(pids) >= kill_after:
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)  # a worker dies mid-run, holding the photos it had
    wall = time.perf_counter() - t0
    return {
        "photos": len(plan),
        "wall_s": round(wall, 1),
        "s_per_photo": round(wall / max(1, len(plan)), 2),
        "status": status,
        "worker_pids": sorted(set(pids)),
        "killed_pid": killed,
        "photos_by_workers_started_after_the_kill": sum(p not in pids[:kill_after] for p in pids[kill_after:])
        if killed
        else None,
    }


def folder_state(out: Path) -> dict:
    """Files (cloaks as hashes, sidecars minus timings and the folder) and the manifest's events."""
    import hashlib

    files = {}
    for p in sorted(out.rglob("*")):
        if not p.is_file() or p.name == MANIFEST_NAME:
            continue
        if p.suffix == ".json":
            side = json.loads(p.read_text())
            side.pop("seconds", None)
            side["output"] = Path(side["output"]).name
            files[p.name] = json.dumps(side, sort_keys=True)
        else:
            files[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    lines = [json.loads(x) for x in (out / MANIFEST_NAME).read_text().splitlines()]
    done = [x["outputs"][0] for x in lines if x["event"] == "done"]
    claims = [x["outputs"][0] for x in lines if x["event"] == "claim"]
    return {"files": files, "done": done, "claims": claims}


def evaluate_run(samples, workers: int, address, threads: int) -> dict:
    t0 = time.perf_counter()
    report, _ = run_evaluate(
        samples, "cnn", make_attack(ATTACK, 0), workers=workers, ray_address=address, threads=threads, progress=False
    )
    wall = time.perf_counter() - t0
    s = report["summary"]
    numbers = {k: v for k, v in s.items() if k != "seconds_per_image"}
    return {
        "photos": s["n"],
        "wall_s": round(wall, 1),
        "s_per_photo": round(wall / s["n"], 3),
        "success_rate": s["success_rate"],
        "attacked_accuracy": s["attacked_accuracy"],
        "_numbers": json.dumps(numbers, sort_keys=True, default=str),
        "_records": json.dumps(
            [{k: v for k, v in r.items() if k != "seconds"} for r in report["records"]], default=str
        ),
    }


def _noop(x: int) -> int:
    return x


def job_overhead(n: int = 200) -> dict:
    from emocloak.scale import imap

    out = {}
    for name, (workers, address) in list(WAYS.items())[1:]:
        start_ray(1 if address else workers)
        try:
            list(imap(_noop, [(i,) for i in range(8)], workers, address))  # workers up
            t0 = time.perf_counter()
            assert sorted(r for _, r in imap(_noop, [(i,) for i in range(n)], workers, address)) == list(range(n))
            out[name] = round((time.perf_counter() - t0) / n * 1000, 2)
        finally:
            stop_ray()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=int, default=24, help="TCCE test photos for protect (seeded subset below 244)")
    ap.add_argument("--eval-photos", type=int, default=244, help="TCCE test photos for evaluate")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per photo, in every way")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="scale")
    ap.add_argument("--render", action="store_true", help="only rewrite results/OUT.md from results/OUT.json")
    args = ap.parse_args()
    if args.render:
        (RESULTS / f"{args.out}.md").write_text(report(json.loads((RESULTS / f"{args.out}.json").read_text())) + "\n")
        return
    import torch

    torch.set_num_threads(args.threads)
    res: dict = {"args": vars(args), "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"}
    res["load_avg_before"] = os.getloadavg()

    ps = load_manifest(DATA / "tcce" / "manifest.csv", "test")
    idx = np.sort(np.random.default_rng(args.seed).permutation(len(ps))[: args.photos])
    files = [Path(ps.paths[i]) for i in idx]
    with tempfile.TemporaryDirectory(prefix="emocloak-scale-") as tmp:
        outs = {name: Path(tmp) / f"out{i}" for i, name in enumerate(WAYS)}
        res["protect"] = run_ways(WAYS, lambda w, a: protect_run(files, outs[_way(w, a)], w, a, args.threads))
        fault = Path(tmp) / "fault"
        res["fault"] = run_ways(["Ray, 2 workers"], lambda w, a: protect_run(files, fault, w, a, args.threads, 3))
        states = {name: folder_state(o) for name, o in outs.items()}
        f_state = folder_state(fault)
        base = states["single process"]
        res["protect_identical"] = {name: s["files"] == base["files"] for name, s in states.items()}
        res["fault_check"] = {
            "files_identical_to_single_process": f_state["files"] == base["files"],
            "photos": len(files),
            "done_lines": len(f_state["done"]),
            "distinct_done": len(set(f_state["done"])),
            "claim_lines": len(f_state["claims"]),
            "outputs": len(f_state["files"]),
            "partial_files_left": len(list(fault.rglob("*.partial"))),
        }
    samples = load_samples(DATA / "tcce" / "manifest.csv", "test", args.eval_photos, args.seed)
    ev = run_ways(WAYS, lambda w, a: evaluate_run(samples, w, a, args.threads))
    ref = ev["single process"]
    res["evaluate_identical"] = {
        n: e["_numbers"] == ref["_numbers"] and e["_records"] == ref["_records"] for n, e in ev.items()
    }
    res["evaluate"] = {n: {k: v for k, v in e.items() if not k.startswith("_")} for n, e in ev.items()}
    res["job_overhead_ms"] = job_overhead()
    res["load_avg_after"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(res, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(report(res) + "\n")
    print(report(res))


def _way(workers: int, address) -> str:
    return next(n for n, (w, a) in WAYS.items() if (w, a) == (workers, address))


def _table(runs: dict, identical: dict, same: str) -> list[str]:
    """One row per way: wall time, seconds per photo, throughput against the single process, identity."""
    first = runs["single process"]["wall_s"]
    head = f"| way | load avg at start | photos | Ray start (s) | wall (s) | s/photo | throughput vs single | {same} |"
    rows = [head, "|---" * 8 + "|"]
    for n, x in runs.items():
        rows.append(
            f"| {n} | {x.get('load_avg_1min', '')} | {x['photos']} | {x['ray_start_s']} | {x['wall_s']} | "
            f"{x['s_per_photo']} | "
            f"{first / x['wall_s']:.2f}x | {identical[n]} |"
        )
    return rows


def report(r: dict) -> str:
    a = r["args"]
    lines = [
        "# Scale-out on Ray: protect and evaluate in one process, on 1 and on 2 Ray workers",
        "",
        f"`python benchmarks/scale.py --photos {a['photos']} --eval-photos {a['eval_photos']} "
        f"--threads {a['threads']}` on {r['machine']} (load average {r['load_avg_before'][0]:.1f} before, "
        f"{r['load_avg_after'][0]:.1f} after; other jobs on these cores slow the ways unevenly, see each row's load).",
        f"Data: TCCE test photos (6 held-out performers), a seeded subset of {a['photos']} for protect "
        f"(all 244: `--photos 244`), {a['eval_photos']} for evaluate. One torch thread per photo in every way.",
        "",
        "## protect (default cloak: tailored, mid, seed 0)",
        "",
        *_table(r["protect"], r["protect_identical"], "outputs identical to single"),
    ]
    f, fc = r["fault"]["Ray, 2 workers"], r["fault_check"]
    lines += [
        "",
        f"Fault run (2 workers, worker PID {f['killed_pid']} killed with SIGKILL after the first 3 photos came back): "
        f"{f['status']} in {f['wall_s']} s; workers seen {f['worker_pids']}. Outputs: {fc['outputs']} files for "
        f"{fc['photos']} photos, identical to the single-process run: {fc['files_identical_to_single_process']}; "
        f"manifest: {fc['done_lines']} done lines ({fc['distinct_done']} distinct), {fc['claim_lines']} claims; "
        f"partial files left: {fc['partial_files_left']}.",
        "",
        f"## evaluate ({ATTACK} on cnn, chunks of 32 photos)",
        "",
        *_table(r["evaluate"], r["evaluate_identical"], "report identical to single"),
        "",
        "Success rate (untargeted, as read by cnn): "
        + ", ".join(f"{n} {e['success_rate']:.1%}" for n, e in r["evaluate"].items())
        + ".",
    ]
    o = r["job_overhead_ms"]
    lines += [
        "",
        "## Overhead of a job through Ray",
        "",
        f"An empty job (submit, run, return) costs {o['Ray, 1 worker']} ms on 1 worker and "
        f"{o['Ray, 2 workers']} ms per job on 2 workers (200 jobs, workers already up). "
        "Per photo of protect the Ray cost is that, plus the first job of each worker loading the models "
        "(included in the wall times above), plus Ray's start-up (column 'Ray start').",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
