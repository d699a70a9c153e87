import json
import pkgutil
import re
import subprocess
import sys

import numpy as np
from PIL import Image


def run(*args):
    """Run the real console entry point, as a user would."""
    return subprocess.run(
        [sys.executable, "-c", "from emocloak.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_predict_demo_json():
    r = run("predict", "--demo", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["recognizer"] == "cnn" and len(out["faces"]) == 1
    assert out["faces"][0]["emotion"] in out["faces"][0]["probabilities"]


def test_help_lists_commands(cli):
    r = cli("--help")
    listed = set(re.findall(r"^│ (\w+) ", r.stdout, re.M))
    assert r.returncode == 0
    assert listed == {"predict", "recognizers", "evaluate", "protect", "universal", "train", "serve"}
    assert re.search(r"^│ train ", cli("universal", "--help").stdout, re.M)


def test_every_command_module_is_registered():
    """A new module in emocloak.cli with a command that app.py forgets to register fails here."""
    import emocloak.cli
    from emocloak.cli.app import app

    groups = [g.typer_instance for g in app.registered_groups]
    commands = [c for t in [app, *groups] for c in t.registered_commands]
    modules = {m.name for m in pkgutil.iter_modules(emocloak.cli.__path__)} - {"app", "common", "main"}
    assert {c.callback.__module__.rsplit(".", 1)[1] for c in commands} == modules


def test_bad_inputs_give_one_clear_line_and_nonzero_exit(tmp_path, cli):
    (tmp_path / "notes.jpg").write_text("not a photo")
    Image.fromarray(np.full((64, 64, 3), 100, np.uint8)).save(tmp_path / "wall.png")
    (tmp_path / "empty").mkdir()
    cases = [
        ((str(tmp_path / "notes.jpg"),), "not an image"),
        ((str(tmp_path / "wall.png"),), "no face found in"),
        ((str(tmp_path / "empty"),), "no image files"),
        ((str(tmp_path / "missing.jpg"),), "no such file"),
        (("--demo", "-r", "bogus"), "unknown recognizer"),
    ]
    for args, message in cases:
        r = cli("predict", *args)
        assert r.returncode != 0, args
        assert message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)


def test_one_bad_file_does_not_lose_the_batch(tmp_path, cli):
    from emocloak import sample_photo_path

    (tmp_path / "a_bad.jpg").write_text("junk")
    (tmp_path / "b_good.jpg").write_bytes(sample_photo_path().read_bytes())
    r = cli("predict", str(tmp_path), "--json")
    assert r.returncode == 1 and "a_bad.jpg" in r.stderr
    assert [f["photo"].endswith("b_good.jpg") for f in json.loads(r.stdout)["faces"]] == [True]


def test_huge_photo_is_handled_with_a_clear_message(tmp_path, cli):
    p = tmp_path / "huge.jpg"
    Image.new("RGB", (10000, 10000), (120, 130, 140)).save(p, quality=50)
    r = cli("predict", str(p))
    assert r.returncode == 2 and "no face found in" in r.stderr and "Traceback" not in r.stderr
