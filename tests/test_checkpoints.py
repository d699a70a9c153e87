"""Weight and perturbation files given by path: each wrong kind of file is one clear line, never unpickled code."""

import pytest
import torch

from emocloak.attacks.evasion.universal import PerturbationError, UniversalPerturbation
from emocloak.data.checkpoints import CheckpointError
from emocloak.recognizers.registry import WEIGHTS, load_facenet, load_recognizer


class Evil:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


@pytest.fixture
def bad_files(tmp_path):
    files = {
        "empty": (b"", "empty file"),
        "text": (b"arch: vgg\n", "not a torch .pt file"),
        "truncated": ((WEIGHTS / "cnn.pt").read_bytes()[:3000], "damaged or truncated"),
    }
    paths = {}
    for name, (data, why) in files.items():
        (tmp_path / f"{name}.pt").write_bytes(data)
        paths[name] = (tmp_path / f"{name}.pt", why)
    for name, obj, why in [
        ("list", [1, 2], "holds a list"),
        ("partial", {"arch": "vgg"}, "lacks state_dict, width"),
        ("evil", {"arch": Evil()}, "could run code"),
        ("badarch", {"arch": "lenet", "width": 4, "state_dict": {}}, "do not fit"),
    ]:
        torch.save(obj, tmp_path / f"{name}.pt")
        paths[name] = (tmp_path / f"{name}.pt", why)
    return paths


def test_bad_recognizer_files_are_named_with_what_is_wrong(bad_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for path, why in bad_files.values():
        with pytest.raises(CheckpointError, match=why) as err:
            load_facenet(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "PWNED").exists()
    with pytest.raises(CheckpointError, match="is a universal perturbation file, not a recognizer weights file"):
        load_recognizer(str(WEIGHTS / "universal_untargeted.pt"))
    with pytest.raises(CheckpointError, match="no such file"):
        load_recognizer(str(tmp_path / "missing.pt"))


def test_bad_perturbation_files_are_named_with_what_is_wrong(bad_files, tmp_path):
    for name in ("empty", "text", "truncated", "evil"):
        path, why = bad_files[name]
        with pytest.raises(PerturbationError, match=why):
            UniversalPerturbation.load(path)
    with pytest.raises(PerturbationError, match="is a recognizer weights file, not a universal perturbation file"):
        UniversalPerturbation.load(WEIGHTS / "cnn.pt")
    torch.save({"delta": "x", "meta": {}}, tmp_path / "odd.pt")
    with pytest.raises(PerturbationError, match="delta is not a tensor"):
        UniversalPerturbation.load(tmp_path / "odd.pt")


def test_cli_bad_recognizer_file_is_one_line(bad_files, cli):
    for path, why in bad_files.values():
        r = cli("predict", "--demo", "-r", path)
        assert r.returncode == 2 and why in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_init_arch_reads_the_net_to_fine_tune_and_refuses_colour_models(bad_files):
    """The script and `emocloak train --init` both build the net the weights file describes."""
    from emocloak.training import init_arch

    assert init_arch(WEIGHTS / "cnn.pt") == ("vgg", 40) and init_arch(WEIGHTS / "cnn-w24.pt") == ("vgg", 24)
    assert init_arch(WEIGHTS / "resnet.pt")[0] == "resnet"
    with pytest.raises(CheckpointError, match="3-channel 64 px.*48 px gray"):
        init_arch(WEIGHTS / "photo.pt")
    path, why = bad_files["text"]
    with pytest.raises(CheckpointError, match=why):
        init_arch(path)
