"""`--workers N` on Ray: the same files and numbers as one process, resumable, a dead worker's job retried.

One small Ray instance serves the module (starting one costs seconds); the commands see it already
running and use it. Everything here skips where Ray is not installed, except the one-line advice.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emocloak import sample_photo_path
from emocloak.data.manifest import MANIFEST_NAME

UNIVERSAL = ("-m", "universal")


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Three small, different photos of a face and one file that is no photo."""
    lib = tmp_path / "photos"
    (lib / "sub").mkdir(parents=True)
    im = Image.open(sample_photo_path()).convert("RGB")
    im.crop((100, 0, 420, 320)).resize((128, 128)).save(lib / "a.png")
    im.crop((120, 20, 380, 280)).resize((120, 120)).save(lib / "b.jpg", quality=90)
    im.crop((80, 0, 440, 360)).resize((140, 140)).save(lib / "sub" / "c.png")
    (lib / "notes.jpg").write_text("not a photo")
    return lib


def outputs(folder: Path) -> dict[str, bytes | dict]:
    """Every file a run left: cloaks as bytes, sidecars without their timings and output folder."""
    found: dict[str, bytes | dict] = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.name == MANIFEST_NAME or not p.is_file():
            continue
        if p.suffix == ".json":
            side = json.loads(p.read_text())
            side.pop("seconds", None)
            side.pop("stages", None)  # seconds per stage
            side["output"] = str(Path(side["output"]).relative_to(folder))
            found[rel] = side
        else:
            found[rel] = p.read_bytes()
    return found


def test_without_ray_workers_say_how_to_get_it(photos, tmp_path, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if not installed
    r = cli("protect", photos, *UNIVERSAL, "-o", tmp_path / "out", "--workers", "2")
    assert r.returncode == 2 and 'pip install -e ".[ray]"' in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method", [UNIVERSAL, ("-m", "filters", "--seed", "3")])
def test_two_workers_write_what_one_process_writes(ray_cluster, photos, tmp_path, cli, method):
    one = cli("protect", photos, *method, "-o", tmp_path / "one", "--threads", "1")  # as each Ray worker
    two = cli("protect", photos, *method, "-o", tmp_path / "two", "--workers", "2")
    for r in (one, two):
        assert r.returncode == 1 and "3 cloaked, 1 skipped, 0 failed" in r.stderr, r.stderr
        assert "notes.jpg" in r.stderr and "Traceback" not in r.stderr  # the bad photo reported, the rest done
    a, b = outputs(tmp_path / "one"), outputs(tmp_path / "two")
    assert sorted(a) == ["a.png", "a.png.json", "b.jpg", "b.jpg.json", "sub/c.png", "sub/c.png.json"]
    assert a == b  # byte for byte; sidecars equal but for timings
    lines = [
        re.sub(r", [\d.]+s$", "", line) for line in (one.stdout + two.stdout.replace("/two/", "/one/")).splitlines()
    ]
    assert lines[:3] == lines[3:] and len(lines) == 6  # one line per photo, in the order of the photos


def test_a_stopped_run_resumes_without_redoing_finished_photos(ray_cluster, photos, tmp_path, cli):
    out = tmp_path / "out"
    assert cli("protect", photos, *UNIVERSAL, "-o", out, "--workers", "2").returncode == 1
    manifest = out / MANIFEST_NAME
    lines = manifest.read_text().splitlines()
    assert sum('"event":"done"' in line for line in lines) == 3
    # stop it as a kill would: b.jpg's cloak written, its sidecar and its "done" line not (the last line torn)
    kept = [line for line in lines if not ('"done"' in line and "b.jpg" in line)]
    manifest.write_text("\n".join(kept) + "\n" + '{"event":"done","input":')
    (out / "b.jpg.json").unlink()
    before = {p: p.stat().st_mtime_ns for p in (out / "a.png", out / "sub" / "c.png")}
    r = cli("protect", photos, *UNIVERSAL, "-o", out, "--workers", "2")
    assert r.returncode == 1 and "resuming: 2 photo(s) already cloaked" in r.stderr, r.stderr
    assert "3 cloaked, 1 skipped, 0 failed" in r.stderr and "--overwrite" not in r.stderr  # b.jpg was ours to redo
    assert (out / "b.jpg.json").is_file() and all(p.stat().st_mtime_ns == t for p, t in before.items())
    again = cli("protect", photos, *UNIVERSAL, "-o", out)  # one process reads the same manifest
    assert "resuming: 3 photo(s)" in again.stderr and again.returncode == 1
    other = cli("protect", photos, *UNIVERSAL, "--seed", "1", "-o", out)  # other settings: not "finished"
    assert other.returncode == 2 and "--overwrite" in other.stderr


def test_evaluate_chunks_on_two_workers_give_the_same_report(ray_cluster):
    from emocloak.attacks.registry import make_attack
    from emocloak.channel import Channel
    from emocloak.evaluation import Samples, evaluate

    faces = np.random.default_rng(0).integers(0, 256, (10, 48, 48, 3), dtype=np.uint8)
    samples = Samples(list(faces), np.arange(10) % 8, [f"f{i}" for i in range(10)], detect=False)
    run = dict(transfer=["resnet"], channel=Channel.parse("jpeg:90"), chunk=4, progress=False)
    atk = make_attack("pgd:eps=8,steps=2", seed=5)
    one, adv1 = evaluate(samples, "cnn", atk, threads=1, **run)
    two, adv2 = evaluate(samples, "cnn", atk, workers=2, **run)
    for rep in (one, two):
        rep["summary"].pop("seconds_per_image")
        for r in rep["records"]:
            r.pop("seconds")
    assert one == two and all(np.array_equal(a, b) for a, b in zip(adv1, adv2, strict=True))
    assert not np.array_equal(adv1[0], adv1[4])  # chunks draw their own random starts


def _die_once(marker: str, x: int) -> tuple[int, int]:
    if x == 2 and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)  # the worker process dies mid-job
    return x * x, os.getpid()


def test_a_dead_workers_job_is_retried_once_and_nothing_is_duplicated(ray_cluster, tmp_path):
    from emocloak.scale import imap

    got = list(imap(_die_once, [(str(tmp_path / "died"), x) for x in range(6)], workers=2))
    assert (tmp_path / "died").exists()
    assert sorted(i for i, _ in got) == list(range(6)) and all(r[0] == i * i for i, r in got)
