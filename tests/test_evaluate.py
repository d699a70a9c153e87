"""`evaluate` end to end: the report schema, the files it leaves, and the CLI around it."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from emocloak.attacks.registry import make_attack
from emocloak.channel import Channel
from emocloak.evaluation import evaluate, load_samples
from emocloak.labels import LABELS
from emocloak.recognizers.base import Recognizer
from emocloak.recognizers.facenet import FaceNet
from emocloak.reports import OutputExistsError, write_outputs

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SUMMARY_KEYS = {
    "recognizer",
    "attack",
    "target",
    "n",
    "detect_faces",
    "clean_accuracy",
    "attacked_accuracy",
    "success_rate",
    "success_vs_truth",
    "face_lost_rate",
    "ssim",
    "ssim_face",
    "psnr",
    "linf",
    "l2",
    "queries",
    "seconds_per_image",
    "confusion",
    "transfer",
}


def toy(name: str, seed: int) -> Recognizer:
    torch.manual_seed(seed)
    return Recognizer(name, FaceNet("vgg", width=8), LABELS, 48)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """Three face photos in class folders (the astronaut, cropped to 320x320 so detection is quick)."""
    import skimage.data

    face = skimage.data.astronaut()[0:320, 96:416]
    root = tmp_path_factory.mktemp("tiny")
    for label, name, im in [
        ("happiness", "a.jpg", face),
        ("happiness", "b.jpg", face[:, ::-1]),
        ("neutral", "c.jpg", face),
    ]:
        (root / label).mkdir(exist_ok=True)
        Image.fromarray(np.ascontiguousarray(im)).save(root / label / name, quality=92)
    return root


@pytest.fixture(scope="module")
def evaluated(tiny_data):
    samples = load_samples(tiny_data, split=None)
    report, adv = evaluate(
        samples,
        toy("toy", 0),
        make_attack("fgsm:eps=8"),
        transfer=[toy("toy2", 1)],
        channel=Channel.parse("jpeg:75"),
        progress=False,
    )
    return samples, report, adv


def strict_json(text: str) -> object:
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_report_schema(evaluated):
    samples, report, adv = evaluated
    s, records = report["summary"], report["records"]
    assert set(s) >= SUMMARY_KEYS and s["n"] == 3 and s["detect_faces"]
    assert len(records) == len(adv) == 3
    assert [a.shape for a in adv] == [im.shape for im in samples.images]
    for r in records:
        assert 0 < r["ssim"] <= 1 and 0 < r["ssim_face"] <= 1
        assert r["linf"] <= 8 + 1e-6
        assert {"pred_before", "pred_after", "label", "success", "name", "channel_pred_after"} <= set(r)
        assert set(r["transfer"]) == {"toy2"}
    assert set(s["confusion"]) == {"clean", "attacked"} and np.asarray(s["confusion"]["clean"]).shape == (8, 8)
    assert s["channel"]["spec"] == "jpeg:75" and "success_rate" in s["channel"]
    assert "channel_success_rate" in s["transfer"]["toy2"]


def test_write_outputs(evaluated, tmp_path):
    samples, report, adv = evaluated
    out = tmp_path / "report"
    paths = write_outputs(report, samples, adv, out)
    assert {"json", "html", "confusion_clean", "confusion_attacked", "confusion_channel", "ssim_hist"} <= set(paths)
    assert all(p.is_file() and p.parent == out.resolve() for p in paths.values())
    data = strict_json((out / "report.json").read_text())
    assert len(data["records"]) == 3 and data["summary"]["dataset"]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(paths) - 2
    assert "http" not in re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert "<script" not in html and "<link" not in html
    with pytest.raises(OutputExistsError, match="not empty"):
        write_outputs(report, samples, adv, out)
    again = write_outputs(report, samples, adv, out, overwrite=True, examples=False)
    assert "examples" not in again and not (out / "examples.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temporary folders left behind


def test_overwrite_never_replaces_a_folder_that_is_not_a_report(evaluated, tmp_path):
    samples, report, adv = evaluated
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "keep.jpg").write_bytes(b"x")
    with pytest.raises(OutputExistsError, match="not an emocloak report"):
        write_outputs(report, samples, adv, tmp_path / "photos", overwrite=True)
    assert (tmp_path / "photos" / "keep.jpg").is_file()


def test_nan_and_inf_become_null(evaluated, tmp_path):
    samples, report, adv = evaluated
    odd = {**report, "summary": {**report["summary"], "success_vs_truth": float("nan"), "psnr": float("inf")}}
    write_outputs(odd, samples, adv, tmp_path / "r", examples=False)
    s = strict_json((tmp_path / "r" / "report.json").read_text())["summary"]
    assert s["success_vs_truth"] is None and s["psnr"] is None


def test_failed_write_leaves_nothing(evaluated, tmp_path, monkeypatch):
    import emocloak.reports.outputs as outputs

    samples, report, adv = evaluated

    def boom(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(outputs, "write_report", boom)
    with pytest.raises(RuntimeError):
        write_outputs(report, samples, adv, tmp_path / "r", examples=False)
    assert list(tmp_path.iterdir()) == []


def test_cli_evaluate(tiny_data, tmp_path, cli):
    out = tmp_path / "out"
    args = ["evaluate", "--data", str(tiny_data), "--recognizer", "fer", "--attack", "fgsm:eps=4", "--limit", "2"]
    r = cli(*args, "--channel", "jpeg:90", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "success rate" in r.stdout and "report.html" in r.stdout
    assert {"report.json", "report.html", "ssim_hist.png", "examples.png"} <= {p.name for p in out.iterdir()}
    assert strict_json((out / "report.json").read_text())["summary"]["n"] == 2
    r = cli(*args, "--out", str(out))
    assert r.returncode != 0 and "--overwrite" in r.stderr and "Traceback" not in r.stderr


def test_cli_bad_inputs(tiny_data, tmp_path, cli):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken" / "happiness").mkdir(parents=True)
    (tmp_path / "broken" / "happiness" / "x.jpg").write_text("not a photo")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    ok = {"--data": str(tiny_data), "--recognizer": "fer", "--attack": "fgsm:eps=4", "--out": str(tmp_path / "o")}
    cases = [
        ({"--attack": "bogus"}, "unknown attack"),
        ({"--attack": "pgd:eps=300"}, "out of range"),
        ({"--recognizer": "bogus"}, "unknown recognizer"),
        ({"--transfer-to": "fer,bogus"}, "unknown recognizer"),
        ({"--target": "boredom"}, "valid labels"),
        ({"--channel": "webp:50"}, "unknown channel step"),
        ({"--data": str(tmp_path / "missing")}, "no such file"),
        ({"--data": str(tmp_path / "empty")}, "no class sub-folders"),
        ({"--data": str(tmp_path / "broken")}, "not an image file"),
        ({"--out": str(tmp_path / "full")}, "not empty"),
    ]
    for change, message in cases:
        opts = {**ok, **change}
        r = cli("evaluate", *[x for kv in opts.items() for x in kv])
        assert r.returncode != 0, change
        assert message in r.stderr and "Traceback" not in r.stderr, (change, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, (change, r.stderr)
    assert not (tmp_path / "o").exists()


@pytest.mark.data
def test_cli_evaluate_ferplus(tmp_path, cli):
    out = tmp_path / "fer"
    r = cli(
        "evaluate",
        *("--data", str(DATA / "ferplus"), "--limit", "8", "--recognizer", "fer"),
        *("--attack", "pgd:eps=4,steps=5", "--out", str(out)),
    )
    assert r.returncode == 0, r.stderr
    report = strict_json((out / "report.json").read_text())
    s = report["summary"]
    assert s["n"] == 8 and not s["detect_faces"] and len(report["records"]) == 8
    assert all(rec["linf"] <= 4 + 1e-6 for rec in report["records"])
    assert s["success_rate"] > 0.5  # 5 PGD steps at 4/255 fool an undefended 64x64 CNN on most faces
    assert "data:image/png;base64," in (out / "report.html").read_text()


def test_cli_evaluate_skips_and_reports_a_bad_photo(tiny_data, tmp_path, cli):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "happiness" / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    args = ["evaluate", "--data", str(data), "--recognizer", "fer", "--attack", "fgsm:eps=4"]
    r = cli(*args, "--out", str(a_file / "report"))  # refused before the attack runs, not after it
    assert r.returncode == 2 and "a_file exists and is not a folder" in r.stderr and "Traceback" not in r.stderr
    r = cli(*args, "--out", str(tmp_path / "out"))
    assert r.returncode == 1 and "skipped:" in r.stderr and "zz_broken.jpg" in r.stderr, r.stderr
    report = strict_json((tmp_path / "out" / "report.json").read_text())
    assert report["summary"]["n"] == 3 and "zz_broken.jpg" in report["summary"]["skipped"][0]


def test_one_generator_per_run_and_the_global_rng_untouched(one_thread):
    from emocloak.evaluation import Samples

    face = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    samples = Samples([face] * 34, np.zeros(34, np.int64), [f"f{i}" for i in range(34)], detect=False)
    rec, atk = toy("toy", 0), make_attack("pgd:eps=8,steps=1", seed=3)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    _, adv = evaluate(samples, rec, atk, progress=False)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left as it was
    assert not np.array_equal(adv[0], adv[32])  # equal faces in different chunks: different random starts
    _, again = evaluate(samples, rec, atk, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(adv, again, strict=True))  # same seed, same run


def test_channel_applied_once_per_image_and_detections_shared(one_thread, monkeypatch):
    import emocloak.channel as channel_module
    from emocloak.evaluation import Samples
    from emocloak.faces.detect import Box
    from emocloak.recognizers.base import Face

    calls = {"jpeg": 0, "detect": 0}
    real_jpeg = channel_module.jpeg

    def counting_jpeg(image, quality):
        calls["jpeg"] += 1
        return real_jpeg(image, quality)

    def whole(image):  # one detector shared by all three recognizers
        calls["detect"] += 1
        return [Face(Box(0, 0, image.shape[1], image.shape[0]), Box(0, 0, image.shape[1], image.shape[0]))]

    monkeypatch.setattr(channel_module, "jpeg", counting_jpeg)
    faces = np.random.default_rng(1).integers(0, 256, (5, 48, 48, 3), dtype=np.uint8)
    samples = Samples(list(faces), np.zeros(5, np.int64), [f"f{i}" for i in range(5)], detect=True)
    recs = [Recognizer(f"toy{i}", FaceNet("vgg", width=8), LABELS, 48, find_faces=whole) for i in range(3)]
    evaluate(samples, recs[0], make_attack("fgsm:eps=4"), transfer=recs[1:], channel=Channel.parse("jpeg:90"))
    assert calls["jpeg"] == 2 * 5  # clean and cloaked images, once each, for three recognizers
    assert calls["detect"] <= 4 * 5  # clean, cloaked, and both after the channel: each detected once
