"""Saving cloaked photos the way users post them: same size and format, no metadata, no overwrite."""

import numpy as np
import torch
from PIL import Image

from emocloak.protection import plan_protect, save_photo


def test_save_keeps_format_and_size_and_strips_gps(tmp_path):
    src = tmp_path / "in" / "holiday.jpg"
    src.parent.mkdir()
    exif = Image.Exif()
    exif[0x8825] = {2: (52.0, 22.0, 1.0)}  # GPS latitude
    Image.new("RGB", (40, 30), (10, 200, 30)).save(src, exif=exif)
    assert "exif" in Image.open(src).info
    dst = save_photo(np.zeros((30, 40, 3), np.uint8), src, tmp_path / "out" / "holiday.jpg")
    im = Image.open(dst)
    assert im.format == "JPEG" and im.size == (40, 30) and not im.getexif()
    kept = save_photo(np.zeros((30, 40, 3), np.uint8), src, tmp_path / "out2" / "h.jpg", keep_metadata=True)
    assert Image.open(kept).getexif()


def test_png_stays_png_and_input_is_never_the_output(tmp_path):
    src = tmp_path / "a.png"
    Image.new("RGB", (9, 9)).save(src)
    assert Image.open(save_photo(np.zeros((9, 9, 3), np.uint8), src, tmp_path / "o" / "a.png")).format == "PNG"
    plan, refused = plan_protect([src], [tmp_path], tmp_path, overwrite=True)
    assert not plan and "would replace the input" in refused[0][1]


def test_protect_is_the_package_api_and_records_its_search_settings():
    import emocloak

    img = np.asarray(Image.open(emocloak.sample_photo_path()).resize((256, 256)))
    cloaked, info = emocloak.protect(img, method="filters", n_gen=1, min_ssim=0.85, seed=1)
    assert cloaked.shape == img.shape and cloaked.dtype == np.uint8
    assert info["search"]["min_ssim"] == 0.85 and info["search"]["n_gen"] == 1
    assert info["queries"] == 10 and "happiness" in info["before"]["cnn"]["emotion"]
    local, info = emocloak.protect(img, method="filters", n_gen=1, local=True, seed=1)
    assert info["search"]["local"] and all(set(g["where"]) == {"x", "y", "radius"} for g in info["chain"])
    corner = (slice(0, 20), slice(0, 20))  # the astronaut's face is mid-right: spots never reach this corner
    assert np.abs(local[corner].astype(int) - img[corner]).max() <= 1


def test_protect_api_warns_about_a_weak_universal_perturbation():
    import emocloak
    from emocloak.attacks.evasion.universal import UniversalPerturbation

    img = np.asarray(Image.open(emocloak.sample_photo_path()).resize((256, 256)))
    weak = UniversalPerturbation(torch.zeros(3, 8, 8), {"eps": 8, "holdout": {"success": {"cnn": 0.1}}})
    strong = UniversalPerturbation(torch.zeros(3, 8, 8), {"eps": 8, "holdout": {"success": {"cnn": 0.7}}})
    _, info = emocloak.protect(img, method="universal", perturbation=weak)
    assert "cnn 10%" in info["note"]
    _, info = emocloak.protect(img, method="universal", perturbation=strong)
    assert "note" not in info


def test_sidecar_splits_the_seconds_by_stage(tmp_path, astronaut, one_thread):
    from emocloak.protection import Stages, protect_file

    stages = Stages({"detect": 1.0})
    assert stages.lap("cloak", {"optimise": 0.0})["detect"] == 1.0 and set(stages.seconds) >= {"cloak", "optimise"}
    src = tmp_path / "me.png"
    Image.fromarray(astronaut[:300, 100:400]).save(src)
    fast = {"steps": 2, "views": 1, "check_every": 2, "estimate": False}
    _, info = protect_file(src, tmp_path / "out", method="tailored", recognizers=["cnn", "fer"], **fast)
    split = info["stages"]
    assert set(split) == {"load", "detect", "optimise", "write_back", "cloak", "quality_check", "held_out", "save"}
    assert all(s >= 0 for s in split.values()) and split["optimise"] > 0
    assert info["faces"][0]["seconds"]["optimise"] <= split["optimise"] + 0.002
