"""Real folders of photos through the CLI: nothing lost, nothing overwritten, no traceback.

The universal cloak is used where the method does not matter: it needs no search, so a
batch of photos costs about a second.
"""

import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emocloak import sample_photo_path
from emocloak.data.files import atomic_write, plan_outputs
from emocloak.protection import output_names, plan_protect

UNIVERSAL = ("-m", "universal")


def hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """A photo folder as users have them: sub-folders with equal names, a GIF beside a PNG, junk."""
    lib = tmp_path / "photos"
    sample = sample_photo_path().read_bytes()
    for sub in ("2023", "2024"):
        (lib / sub).mkdir(parents=True)
        (lib / sub / "me.jpg").write_bytes(sample)
    im = Image.open(sample_photo_path()).resize((256, 256))
    im.save(lib / "face.png")
    im.save(lib / "face.gif")
    (lib / "notes.jpg").write_text("not a photo")
    return lib


def test_outputs_mirror_the_tree_and_inputs_are_untouched(library, tmp_path, cli):
    before = hashes(library)
    r = cli("protect", library, library / "face.gif", *UNIVERSAL, "-o", tmp_path / "out")
    assert "Traceback" not in r.stderr
    assert r.returncode == 1, r.stderr  # notes.jpg and the GIF are skipped, the rest done
    assert hashes(library) == before
    made = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert made == [".emocloak-manifest.jsonl"] + [
        f"{d}/me.jpg{s}" for d in ("2023", "2024") for s in ("", ".json")
    ] + [
        "face.png",
        "face.png.json",
    ]  # the manifest records what is finished, so a rerun resumes
    assert "face.gif" in r.stderr and "also the output of" in r.stderr  # face.gif -> face.png collides
    assert "notes.jpg" in r.stderr and "3 cloaked, 2 skipped, 0 failed" in r.stderr
    side = json.loads((tmp_path / "out" / "2023" / "me.jpg.json").read_text())
    assert side["input"] == str(library / "2023" / "me.jpg")
    # the honest estimate: shipped readers the universal pattern was not learnt on, after JPEG 75
    held = side["held_out"]
    assert held["readers"] and "cnn-w24" not in held["readers"] and held["channel"] == "jpeg:75"
    assert f"(NOT fooled), {held['summary']}, SSIM" in r.stdout or f"(fooled), {held['summary']}, SSIM" in r.stdout


def test_gif_becomes_png_and_never_replaces_an_existing_file(tmp_path, cli):
    src = tmp_path / "in" / "cat.gif"
    src.parent.mkdir()
    Image.open(sample_photo_path()).resize((200, 200)).save(src)
    out = tmp_path / "out"
    out.mkdir()
    (out / "cat.png").write_bytes(b"precious")
    r = cli("protect", src, *UNIVERSAL, "-o", out)
    assert r.returncode == 2 and "--overwrite" in r.stderr and (out / "cat.png").read_bytes() == b"precious"
    r = cli("protect", src, *UNIVERSAL, "-o", out, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert Image.open(out / "cat.png").format == "PNG" and (out / "cat.png.json").is_file()


def test_the_input_folder_as_output_never_replaces_an_input(library, cli):
    before = hashes(library)
    r = cli("protect", library / "face.png", library / "face.gif", *UNIVERSAL, "-o", library, "--overwrite")
    assert r.returncode == 2 and r.stderr.count("would replace the input") == 2 and "Traceback" not in r.stderr
    assert hashes(library) == before  # face.gif's cloak would be face.png, an input too


def test_output_folder_inside_the_input_folder_is_not_cloaked_again(library, cli):
    first = cli("protect", library / "2023", *UNIVERSAL, "-o", library / "2023" / "cloaked")
    assert first.returncode == 0, first.stderr
    again = cli("protect", library / "2023", *UNIVERSAL, "-o", library / "2023" / "cloaked", "--overwrite")
    assert "inside the output folder" in again.stderr and "cloaked/cloaked" not in again.stdout


def test_unusable_output_folders_stop_before_any_work(library, tmp_path, cli):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for out, message in ((a_file, "is not a folder"), (a_file / "sub", "not writable")):
        r = cli("protect", library, *UNIVERSAL, "-o", out)
        assert r.returncode == 2 and message in r.stderr and str(out) in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and "cloaked" not in r.stdout + r.stderr
    assert a_file.read_text() == "x"


def test_a_failing_write_is_one_line_and_the_batch_goes_on(library, tmp_path, cli):
    out = tmp_path / "out"
    out.mkdir()
    (out / "2023").write_text("a file where the sub-folder must go")  # so writing 2023/me.jpg fails
    r = cli("protect", library, *UNIVERSAL, "-o", out)
    assert "Traceback" not in r.stderr and r.returncode == 1
    assert f"failed: {library / '2023' / 'me.jpg'}: cannot write {out / '2023' / 'me.jpg'}" in r.stderr
    assert (out / "2024" / "me.jpg").is_file() and (out / "face.png").is_file()
    assert "2 cloaked, 1 skipped, 1 failed" in r.stderr


def test_protect_without_photos_needs_demo(tmp_path, cli):
    r = cli("protect", *UNIVERSAL, "-o", tmp_path)
    assert r.returncode == 2 and "--demo" in r.stderr and not any(tmp_path.iterdir())


def test_predict_on_one_bad_file_prints_no_table(tmp_path, cli):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))
    r = cli("predict", bad)
    assert r.returncode == 2 and "bad.png" in r.stderr and "emotions read" not in r.stdout


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        dst = atomic_write(tmp_path / "x.bin", lambda p: p.write_bytes(b"1"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(dst.stat().st_mode) == 0o640 and [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_failed_atomic_write_leaves_the_old_file(tmp_path):
    dst = tmp_path / "keep.txt"
    dst.write_text("old")

    def broken(p: Path) -> None:
        p.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(Exception, match="cannot write .*keep.txt: No space left"):
        atomic_write(dst, broken)
    assert dst.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_plan_checks_every_output_against_every_input_and_output(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(d / "x.png")
    plan, refused = plan_protect([a / "x.png", b / "x.png"], [a, b], tmp_path / "o")
    assert [p.dst for p in plan] == [tmp_path / "o" / "x.png"] and "also the output of" in refused[0][1]
    plan, refused = plan_outputs([a / "x.png"], [a], b, lambda rel: (rel,), overwrite=True)
    assert plan and not refused  # b/x.png is no input of this run: --overwrite may replace it
    assert output_names(Path("d/y.gif")) == (Path("d/y.png"), Path("d/y.png.json"))


def test_long_runs_refuse_their_output_before_starting(tmp_path, cli):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    r = cli("universal", "train", "--data", tmp_path, "-o", a_file / "u.pt")
    assert r.returncode == 2 and "a_file exists and is not a folder" in r.stderr
    (tmp_path / "a_file.pt").write_bytes(b"weights")
    r = cli("train", "-d", "standard", "--data", tmp_path, "-o", tmp_path / "a_file.pt")
    assert r.returncode == 2 and "exists; pass --overwrite" in r.stderr
    assert (tmp_path / "a_file.pt").read_bytes() == b"weights" and a_file.read_text() == "x"


def test_a_preset_that_now_means_another_budget_is_not_taken_as_finished(tmp_path, cli, monkeypatch):
    """The manifest keys a run by the cloak's resolved parameters, not the preset's name alone."""
    from dataclasses import replace

    from emocloak.attacks.evasion import tailored

    src = tmp_path / "in" / "face.png"
    src.parent.mkdir()
    Image.open(sample_photo_path()).resize((256, 256)).save(src)
    first = cli("protect", src, "-o", tmp_path / "out", "--strength", "low")
    assert first.returncode == 0, first.stderr
    again = cli("protect", src, "-o", tmp_path / "out", "--strength", "low")
    assert "resuming: 1 photo(s)" in again.stderr and again.returncode == 0
    low = tailored.STRENGTHS["low"]
    monkeypatch.setitem(tailored.STRENGTHS, "low", replace(low, cap=low.cap / 2))  # "low" in another release
    other = cli("protect", src, "-o", tmp_path / "out", "--strength", "low")
    assert "resuming" not in other.stderr and other.returncode == 2 and "--overwrite" in other.stderr
