"""The web app's HTTP API, in-process (FastAPI's TestClient): upload, progress, results, downloads, limits."""

from __future__ import annotations

import io
import json
import re
import threading
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

import emocloak
from emocloak.labels import LABELS
from emocloak.protection import all_fooled, fooled
from emocloak.web import jobs as jobs_module
from emocloak.web.app import Settings, create_app
from emocloak.web.jobs import CloakOptions, parse_options
from emocloak.web.progress import Eta, Mean, Running, Timings, queue_etas, working_eta
from emocloak.web.readings import iou, number_held_out
from emocloak.web.uploads import display_name

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
LIMITS = Settings(max_file_bytes=300_000, max_request_bytes=1_000_000, max_files=5, workers=2)


@pytest.fixture(scope="module")
def client():
    from fastapi.testclient import TestClient

    with TestClient(create_app(LIMITS), base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture(scope="module")
def photo() -> bytes:
    return emocloak.sample_photo_path().read_bytes()


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def _submit(client, files: list[tuple[str, bytes]], **form: str) -> dict:
    r = client.post(
        "/api/jobs", files=[("files", (n, b, "application/octet-stream")) for n, b in files], data=form or None
    )
    assert r.status_code == 202, r.text
    return r.json()


def _events(client, job_id: str) -> list[dict]:
    """Every snapshot the job's server-sent events carry, until it is finished."""
    with client.stream("GET", f"/api/jobs/{job_id}/events") as events:
        return [json.loads(line[6:]) for line in events.iter_lines() if line.startswith("data: ")]


def _wait(client, job_id: str, timeout: float = 120) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["finished"]:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_options_offer_the_api_s_methods_labels_and_recognizers(client):
    o = client.get("/api/options").json()
    assert o["methods"] == list(emocloak.protection.METHODS)
    assert o["default_method"] == emocloak.protection.DEFAULT_METHOD
    assert o["labels"] == list(LABELS)
    assert [r["name"] for r in o["recognizers"]] == emocloak.available_recognizers()
    assert o["limits"] == {"file_bytes": 300_000, "request_bytes": 1_000_000, "files": 5}
    assert o["local_only"] is True


def test_page_and_api_docs_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    for text in (page.text, client.get("/static/app.js").text, client.get("/static/style.css").text):
        assert not re.search(r"""(src|href|url)\(?=?["']?(https?:)?//""", text)  # no CDN: works offline
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/jobs", "/api/jobs/{job_id}/events", "/api/jobs/{job_id}/zip", "/api/read"):
        assert p in paths
    assert client.get("/docs").status_code == 200


def test_upload_progress_result_and_download(client, photo):
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # camera make: must not survive
    buf = io.BytesIO()
    Image.open(io.BytesIO(photo)).save(buf, "JPEG", exif=exif, quality=95)
    job = _submit(client, [("me.jpg", buf.getvalue())], method="universal")
    snaps = _events(client, job["id"])
    assert snaps and snaps[-1]["finished"]  # the stream ends when the job does
    progress = [s["items"][0]["progress"] for s in snaps]
    assert progress == sorted(progress) and progress[-1] == 1.0
    item = snaps[-1]["items"][0]
    assert item["status"] == "done", item
    res = item["result"]
    assert (res["width"], res["height"]) == (512, 512)
    assert 0.5 < res["ssim"] <= 1 and res["seconds"] >= 0
    face = res["faces"][0]
    assert set(face["readings"]) == set(emocloak.available_recognizers())
    cnn = face["readings"]["cnn"]
    assert len(cnn["before"]["probabilities"]) == len(LABELS)
    assert abs(sum(cnn["after"]["probabilities"]) - 1) < 0.01
    assert cnn["fooled"] == (cnn["after"]["emotion"] != cnn["before"]["emotion"])
    assert res["fooled"]["cnn"] == cnn["fooled"]

    base = f"/api/jobs/{job['id']}/photos/0"
    got = client.get(f"{base}/download")
    assert got.headers["content-type"] == "image/jpeg"
    assert 'filename="me.cloaked.jpg"' in got.headers["content-disposition"]
    cloaked = Image.open(io.BytesIO(got.content))
    assert cloaked.format == "JPEG" and cloaked.size == (512, 512)
    assert 0x010F not in cloaked.getexif()
    assert np.any(np.asarray(cloaked) != np.asarray(Image.open(io.BytesIO(photo))))
    assert client.get(f"{base}/cloaked").content == got.content  # what the page shows is what you get
    diff = Image.open(io.BytesIO(client.get(f"{base}/difference?gain=20").content))
    assert diff.size == (512, 512) and np.asarray(diff).max() > 0
    assert client.get(f"{base}/difference?gain=0").status_code == 422
    sidecar = client.get(f"{base}/sidecar").json()
    assert sidecar["method"] == "universal" and sidecar["input"] == "me.jpg" and sidecar["faces"] == res["faces"]


def test_zip_holds_every_photo_with_its_sidecar(client, photo):
    job = _wait(client, _submit(client, [("a.jpg", photo), ("a.jpg", photo)], method="universal")["id"])
    z = zipfile.ZipFile(io.BytesIO(client.get(f"/api/jobs/{job['id']}/zip").content))
    assert sorted(z.namelist()) == ["a-2.cloaked.jpg", "a-2.cloaked.jpg.json", "a.cloaked.jpg", "a.cloaked.jpg.json"]
    assert json.loads(z.read("a.cloaked.jpg.json"))["output"] == "a.cloaked.jpg"
    assert Image.open(io.BytesIO(z.read("a-2.cloaked.jpg"))).size == (512, 512)


def test_bad_files_get_a_message_and_the_batch_goes_on(client, photo):
    files = [
        ("notes.jpg", b"this is text, not a photo"),
        ("cut.jpg", photo[: len(photo) // 2]),
        ("empty.png", b""),
        ("wall.png", _png(np.full((120, 160, 3), 128, np.uint8))),
        ("good.jpg", photo),
    ]
    job = _wait(client, _submit(client, files, method="universal")["id"])
    by = {i["name"]: i for i in job["items"]}
    assert "not an image" in by["notes.jpg"]["error"]
    assert "damaged or truncated" in by["cut.jpg"]["error"]
    assert "empty" in by["empty.png"]["error"]
    assert by["wall.png"]["error"] == "no face found in wall.png"  # the server's own path never shows
    assert by["good.jpg"]["status"] == "done"
    assert [i["status"] for i in job["items"]].count("failed") == 4
    r = client.get(f"/api/jobs/{job['id']}/photos/0/download")
    assert r.status_code == 409 and "notes.jpg" in r.json()["detail"]


def test_limits_per_photo_per_request_and_count(client, photo):
    noise = _png(np.random.default_rng(0).integers(0, 256, (330, 330, 3), dtype=np.uint8))
    assert LIMITS.max_file_bytes < len(noise) < LIMITS.max_request_bytes / 3
    job = _wait(client, _submit(client, [("big.png", noise), ("ok.jpg", photo)], method="universal")["id"])
    big, ok = job["items"]
    assert "over the 0.3 MB limit per photo" in big["error"] and ok["status"] == "done"
    r = client.post("/api/jobs", files=[("files", (f"n{i}.png", noise, "image/png")) for i in range(4)])
    assert r.status_code == 413 and "limit per request" in r.json()["detail"]
    r = client.post("/api/jobs", files=[("files", (f"p{i}.jpg", photo, "image/jpeg")) for i in range(6)])
    assert r.status_code == 413 and "limit is 5" in r.json()["detail"]


def test_concurrent_jobs_from_two_tabs(client, photo):
    ids: list[str] = []
    tabs = [
        threading.Thread(target=lambda: ids.append(_submit(client, [("t.jpg", photo)] * 3, method="universal")["id"]))
        for _ in range(2)
    ]
    for t in tabs:
        t.start()
    for t in tabs:
        t.join()
    jobs = [_wait(client, i) for i in ids]
    assert len({j["id"] for j in jobs}) == 2
    assert all(i["status"] == "done" for j in jobs for i in j["items"])
    assert len(client.get("/api/jobs").json()) >= 2


def test_server_answers_while_a_photo_is_being_cloaked(client, photo):
    job = _submit(client, [("slow.jpg", photo)], method="filters")  # a search of several seconds
    t0 = time.perf_counter()
    snap = client.get(f"/api/jobs/{job['id']}").json()
    assert client.get("/api/options").status_code == 200
    assert time.perf_counter() - t0 < 2
    assert snap["items"][0]["status"] in ("queued", "working")  # answered before the work ended: off the loop
    assert _wait(client, job["id"])["items"][0]["status"] == "done"


def test_request_paths_never_reach_the_file_system(client, photo):
    job = _wait(client, _submit(client, [("../../etc/evil.jpg", photo)], method="universal")["id"])
    assert job["items"][0]["name"] == "evil.jpg"
    root = client.app.state.jobs.root
    assert not any("evil" in str(p) for p in root.rglob("*"))
    assert (
        client.get(f"/api/jobs/{job['id']}/photos/0/download")
        .headers["content-disposition"]
        .endswith('filename="evil.cloaked.jpg"')
    )
    for path in (
        "/api/jobs/..%2F..%2Fetc/zip",
        f"/api/jobs/{job['id']}/photos/7/download",
        f"/api/jobs/{job['id']}/photos/-1/original",
        "/static/..%2Fapp.py",
        "/static/jobs.py",
    ):
        assert client.get(path).status_code == 404, path
    assert display_name("C:\\Users\\me\\<script>.jpg") == "_script_.jpg"


def test_other_hosts_are_refused(client):
    assert client.get("/api/options", headers={"host": "attacker.example"}).status_code == 400


def test_bad_options_are_refused_with_the_valid_ones(client, photo):
    r = client.post("/api/jobs", files=[("files", ("a.jpg", photo))], data={"method": "magic"})
    assert r.status_code == 422 and "universal" in r.json()["detail"]
    r = client.post("/api/jobs", files=[("files", ("a.jpg", photo))], data={"target": "bliss"})
    assert r.status_code == 422 and "happiness" in r.json()["detail"]
    r = client.post("/api/jobs", files=[("files", ("a.jpg", photo))], data={"recognizers": "cnn,gpt"})
    assert r.status_code == 422 and "gpt" in r.json()["detail"]


def test_strength_goes_only_to_methods_that_take_it():
    assert "strength" not in CloakOptions(method="universal", strength="high").protect_kwargs()
    tailored = CloakOptions(method="tailored", strength="high").protect_kwargs()
    assert tailored["strength"] == "high" and tailored["recognizers"] is None  # the method's own default set
    opts = parse_options("universal", None, "happy", "resnet", "cnn,resnet")
    assert (opts.target, opts.recognizers, opts.readers) == ("happiness", ("resnet",), ("resnet", "cnn"))


def test_heic_photos_are_read_and_returned_as_png(client, photo):
    buf = io.BytesIO()
    Image.open(io.BytesIO(photo)).save(buf, "HEIF", quality=90)
    job = _wait(client, _submit(client, [("iphone.HEIC", buf.getvalue())], method="universal")["id"])
    item = job["items"][0]
    assert item["status"] == "done", item
    assert item["result"]["download"] == "iphone.cloaked.png"
    base = f"/api/jobs/{job['id']}/photos/0"
    assert client.get(f"{base}/original").headers["content-type"] == "image/png"  # browsers cannot show HEIC
    assert Image.open(io.BytesIO(client.get(f"{base}/download").content)).size == (512, 512)


def test_read_view_reads_faces_and_keeps_nothing(client, photo):
    root = client.app.state.jobs.root
    before = sorted(root.rglob("*"))
    r = client.post(
        "/api/read",
        files=[("files", ("me.jpg", photo)), ("files", ("x.jpg", b"nope"))],
        data={"readers": "cnn,fer"},
    )
    assert r.status_code == 200
    good, bad = r.json()
    assert set(good["faces"][0]["readings"]) == {"cnn", "fer"}
    assert good["faces"][0]["readings"]["cnn"]["emotion"] in LABELS
    assert "not an image" in bad["error"]
    assert sorted(root.rglob("*")) == before


def test_delete_drops_a_job_and_its_files(client, photo):
    job = _wait(client, _submit(client, [("d.jpg", photo)], method="universal")["id"])
    folder = client.app.state.jobs.root / job["id"]
    assert folder.is_dir()
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 204
    assert not folder.exists() and client.get(f"/api/jobs/{job['id']}").status_code == 404


def test_temporary_folder_is_removed_at_shutdown(photo):
    from fastapi.testclient import TestClient

    app = create_app(LIMITS)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        _wait(c, _submit(c, [("a.jpg", photo)], method="universal")["id"])
        root = app.state.jobs.root
        assert any(root.rglob("*.jpg"))
    assert not root.exists()


def test_readings_rules():
    from emocloak.faces.detect import Box

    assert iou(Box(0, 0, 10, 10), Box(0, 0, 10, 10)) == 1 and iou(Box(0, 0, 10, 10), Box(20, 20, 30, 30)) == 0
    sad, happy = {"emotion": "sadness"}, {"emotion": "happiness"}
    assert fooled(happy, sad, None) and not fooled(happy, happy, None)
    assert fooled(happy, None, None)  # the face is no longer found: nothing to read
    assert fooled(None, sad, None) is None
    assert not fooled(happy, sad, "anger") and fooled(happy, sad, "sadness")
    assert all_fooled([True, None]) and not all_fooled([True, False, None])  # the CLI and the page agree


def test_serve_refuses_a_busy_port_with_one_line(cli):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = cli("serve", "--port", s.getsockname()[1])
    assert r.returncode == 2 and "choose another --port" in r.stderr


# ---- progress: what each photo is doing, and time left from what this server measured ----------


def test_time_left_comes_from_measurements_never_a_constant():
    assert working_eta(Running(3.0), None) == Eta(None)  # nothing measured: "estimating..."
    timings = Timings()
    timings.add(("tailored", "mid"), 8.0, 2.0)
    timings.add(("tailored", "mid"), 12.0, 4.0)  # a running mean: 10 s cloak, 3 s checks
    mean = timings.get(("tailored", "mid"))
    assert (mean.n, mean.cloak, mean.checks) == (2, 10.0, 3.0) and timings.get(("tailored", "high")) is None
    assert working_eta(Running(4.0), mean) == Eta(9.0)
    assert working_eta(Running(20.0), mean) == Eta(0.0)  # slower than the mean: never negative
    # the cloak's own pace: a quarter of its steps took 2 s, so 6 s more, then the measured checks
    assert working_eta(Running(3.0, share=0.25, seconds_per_share=8.0), None) == Eta(6.0, "cloak")
    assert working_eta(Running(3.0, share=0.25, seconds_per_share=8.0, since_report=1.0), mean) == Eta(8.0)
    assert working_eta(Running(11.0, checks_elapsed=1.0), mean) == Eta(2.0)
    assert working_eta(Running(11.0, checks_elapsed=1.0), None) == Eta(None)
    # the queue played out on 2 workers: one frees in 5 s, one is idle; photos of 10 s each
    ten = Mean(1, 8.0, 2.0)
    assert queue_etas(2, [Eta(5.0)], [ten, ten, ten]) == [10.0, 15.0, 20.0]
    assert queue_etas(1, [Eta(5.0)], [ten, None, ten]) == [15.0, None, None]  # unknown from there on
    assert queue_etas(1, [Eta(5.0, "cloak")], [ten]) == [None]


def test_progress_events_say_what_and_how_long(photo):
    """Two tailored photos on one worker: queued, finding faces, cloaking face 1 of 1, checking, reading;
    the first photo has no measured time (only its cloak's pace), the second gets one from the first."""
    from fastapi.testclient import TestClient

    with TestClient(create_app(Settings(workers=1)), base_url="http://127.0.0.1") as c:
        job = _submit(c, [("a.jpg", photo), ("b.jpg", photo)], method="tailored")
        assert all(i["eta"] is None for i in job["items"])  # a fresh server has measured nothing
        assert job["items"][1]["stage"].startswith("queued: ")
        snaps = _events(c, job["id"])
    first = [s["items"][0] for s in snaps]
    second = [s["items"][1] for s in snaps]
    stages = [i["stage"] for i in first if i["status"] == "working"]
    assert "cloaking face 1 of 1" in stages and jobs_module.CHECKING in stages, stages
    assert stages[-1].startswith("reading the saved photo with ")
    assert any(i["eta_covers"] == "cloak" and i["eta"] >= 0 for i in first)  # the cloak's own steps
    assert "queued: next in line" in [i["stage"] for i in second]
    after_first = [b for a, b in zip(first, second, strict=True) if a["status"] == "done" and b["status"] == "working"]
    assert after_first and all(i["eta"] is not None and i["eta_covers"] == "photo" for i in after_first)
    for items in (first, second):
        progress = [i["progress"] for i in items]
        assert progress == sorted(progress) and progress[-1] == 1.0
        assert all(set(i) >= {"stage", "eta", "eta_covers", "progress"} for i in items)
        assert items[-1]["eta"] is None and items[-1]["status"] == "done"


# ---- the honest estimate: held-out readers, passed through to the page ----------------------------

HELD_OUT = {
    "readers": ["cnn", "photo", "cnn-faat", "landmarks"],
    "relatives": {"cnn": ["cnn-w24"]},
    "channel": "jpeg:75",
    "faces": [
        {
            "region": [0, 0, 512, 512],
            "changed": {"cnn": True, "photo": False, "cnn-faat": False, "landmarks": None},
            "n_changed": 1,
            "n_readers": 3,
            "weak": True,
        }
    ],
    "summary": "protected against 1 of 3 held-out readers",
    "warning": "weakly protected (face 1): fewer than half the held-out readers changed their reading",
}


def _faked_protect(monkeypatch, held_out: dict | None) -> None:
    """The universal cloak (quick) standing in for any method, its info's held-out estimate replaced."""
    real = jobs_module.protect_file

    def fake(src, out_dir, **kwargs):
        kwargs.pop("progress", None)
        dst, info = real(src, out_dir, **{**kwargs, "method": "universal"})
        info.pop("held_out", None)
        if held_out is not None:
            info["held_out"] = held_out
        return dst, info

    monkeypatch.setattr(jobs_module, "protect_file", fake)


def test_held_out_estimate_reaches_the_result_and_sidecar(client, photo, monkeypatch):
    _faked_protect(monkeypatch, HELD_OUT)
    job = _wait(client, _submit(client, [("h.jpg", photo)], method="universal")["id"])
    res = job["items"][0]["result"]
    est = res["held_out"]
    assert est["summary"] == HELD_OUT["summary"] and est["warning"] == HELD_OUT["warning"]
    assert est["faces"][0]["face"] == 1  # the region holds the page's face 1
    assert est["faces"][0]["changed"]["landmarks"] is None and est["faces"][0]["weak"] is True
    sidecar = client.get(f"/api/jobs/{job['id']}/photos/0/sidecar").json()
    assert sidecar["held_out"]["summary"] == HELD_OUT["summary"]


def test_no_held_out_estimate_is_fine(client, photo, monkeypatch):
    _faked_protect(monkeypatch, None)
    job = _wait(client, _submit(client, [("n.jpg", photo)], method="universal")["id"])
    item = job["items"][0]
    assert item["status"] == "done" and item["result"]["held_out"] is None


def test_held_out_faces_are_numbered_as_the_page_numbers_them():
    faces = [{"box": [300, 40, 380, 120]}, {"box": [20, 30, 100, 110]}]
    est = {"faces": [{"region": [0, 10, 130, 140]}, {"region": [280, 20, 400, 140]}, {"region": [600, 0, 700, 90]}]}
    assert [f["face"] for f in number_held_out(est, faces)["faces"]] == [2, 1, None]
    assert number_held_out(None, faces) is None and number_held_out({"faces": []}, []) == {"faces": []}


def test_page_renders_progress_and_the_held_out_estimate(client):
    js = client.get("/static/app.js").text
    for needle in ("estimating…", "eta_covers", "held_out", "Honest estimate", 'role: "alert"', "held out"):
        assert needle in js, needle
