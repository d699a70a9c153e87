"""The tailored cloak: its differentiable channel, its perceptual budget, faces, targets, big photos, saved files."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

import emocloak
from emocloak.attacks.budget import Budget, border_taper
from emocloak.attacks.evasion.tailored import TailoredCloak, face_regions
from emocloak.attacks.transforms import ChannelDraws, diff_jpeg, quant_table
from emocloak.data.images import load_rgb
from emocloak.protection import protect_file
from emocloak.recognizers.base import to_tensor

FAST = {"steps": 3, "views": 1, "check_every": 3}


@pytest.fixture(scope="module")
def pair():
    return [emocloak.load_recognizer("cnn"), emocloak.load_recognizer("fer")]


def _pil_jpeg(a: np.ndarray, q: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=q)
    return np.asarray(Image.open(buf).convert("RGB")).astype(float)


def test_diff_jpeg_follows_pil_and_passes_a_gradient(astronaut):
    a = astronaut[100:260, 150:300]
    x = to_tensor(a).requires_grad_(True)
    for q in (50, 90):
        ours = diff_jpeg(x, q)[0].permute(1, 2, 0).detach().numpy() * 255
        real = _pil_jpeg(a, q)
        # far closer to the real round trip than the image is to it
        assert np.abs(ours - real).mean() < 0.5 * np.abs(a - real).mean() + 0.5
    diff_jpeg(x, 75).sum().backward()
    assert x.grad.abs().mean() > 0.5  # straight-through rounding: the gradient is not zero
    assert quant_table(50)[0, 0] == 16 and quant_table(100).max() == 1
    with pytest.raises(ValueError):
        quant_table(0)


def test_channel_draws_keep_size_and_check_ranges():
    x = torch.rand(1, 3, 40, 50)
    assert ChannelDraws()(x, torch.Generator().manual_seed(0)).shape == x.shape
    with pytest.raises(ValueError):
        ChannelDraws(jpeg=(90, 50))
    with pytest.raises(ValueError):
        ChannelDraws(scale=(0.0, 1.0))


def test_budget_is_small_on_flat_areas_large_in_texture_and_zero_at_the_border():
    flat = torch.full((1, 3, 64, 64), 0.5)
    textured = flat.clone()
    textured[..., ::2, :] = 0.8  # stripes: high local contrast
    b = Budget(cap=8 / 255, floor=0.25, texture=(0.01, 0.05), taper=0.1)
    f, t = b(flat), b(textured)
    assert torch.isclose(f[0, 0, 32, 32], torch.tensor(0.25 * 8 / 255))
    assert torch.isclose(t[0, 0, 32, 32], torch.tensor(8 / 255))
    assert f[0, 0, 0].abs().max() == 0 and t[..., :, 0].abs().max() == 0  # the edges fade out
    assert border_taper(flat, 0.0).min() == 1
    for bad in ({"cap": 0}, {"floor": 1.5}, {"taper": 0.6}, {"window": 4}, {"texture": (0.1, 0.05)}):
        with pytest.raises(ValueError):
            Budget(**bad)


def test_constructor_checks_parameters():
    for bad in ({"strength": "huge"}, {"steps": 0}, {"views": 1.5}, {"momentum": 1.0}, {"quantile": 0}):
        with pytest.raises(ValueError):
            TailoredCloak(**bad)
    with pytest.raises(ValueError, match="no gradient"):
        TailoredCloak(members=[emocloak.load_recognizer("landmarks")])


def test_every_face_is_cloaked_and_an_undetectable_face_is_left_alone(astronaut, pair, one_thread):
    """Two faces side by side and one upside down (no frontal detector finds it)."""
    face = astronaut[:300, 100:400]
    photo = np.concatenate([face, face, face[::-1]], 1)
    regions = face_regions(pair, photo)
    assert len(regions) == 2 and all(set(r.seen_by) == {"cnn", "fer"} for r in regions)
    out = TailoredCloak(members=pair[1:], **FAST)(pair[0], [photo])
    faces = out.records[0]["faces"]
    assert len(faces) == 2 and all(f["steps"] == 3 for f in faces)
    changed = np.abs(out.images[0].astype(int) - photo).max(2) > 0
    assert changed[:, :300].any() and changed[:, 300:600].any()
    assert not changed[:, 600:].any()  # the upside-down face: no detector found it, nothing changed
    budget = TailoredCloak().params()["budget"]["cap"]
    assert np.abs(out.images[0].astype(int) - photo).max() <= budget + 1


def test_targeted_mode_pulls_every_member_toward_the_target(astronaut, pair, one_thread):
    face = astronaut[:300, 100:400]
    out = TailoredCloak(members=pair[1:], steps=20, views=1, strength="high")(pair[0], [face], target=0)
    assert out.records[0]["faces"][0]["pulled_toward"] == "neutral"
    # the astronaut smiles: pulled toward neutral, cnn's probability of neutral rises
    before, after = (pair[0].predict_proba([im])[0][0] for im in (face, out.images[0]))
    assert after > before


def test_large_photo_is_optimised_at_a_working_resolution(astronaut, pair, one_thread):
    big = np.asarray(Image.fromarray(astronaut).resize((2000, 2000), Image.BICUBIC))
    out = TailoredCloak(members=pair[1:], **FAST)(pair[0], [big])
    faces = out.records[0]["faces"]  # the largest first
    assert 0 < faces[0]["work_scale"] < 0.5 and out.images[0].shape == big.shape
    changed = np.abs(out.images[0].astype(int) - big).max(2) > 0
    left, top, right, bottom = faces[0]["region"]
    assert changed[top:bottom, left:right].mean() > 0.1
    for f in faces:
        left, top, right, bottom = f["region"]
        changed[top:bottom, left:right] = False
    assert not changed.any()  # nothing outside the face regions


def test_saved_file_is_what_the_sidecar_judged(tmp_path, astronaut, one_thread):
    src = tmp_path / "in" / "me.png"
    src.parent.mkdir()
    Image.fromarray(astronaut[:300, 100:400]).save(src)
    dst, info = protect_file(src, tmp_path / "out", method="tailored", recognizers=["cnn", "fer"], **FAST)
    sidecar = json.loads((tmp_path / "out" / "me.png.json").read_text())
    assert sidecar["method"] == "tailored" and sidecar["strength"] == "mid" and sidecar["budget"]["cap"] == 6
    face = sidecar["faces"][0]
    saved = load_rgb(dst)
    for name in ("cnn", "fer"):
        p = emocloak.load_recognizer(name).predict_proba([saved])[0]
        assert face["readings"]["after_saved"][name]["emotion"] == emocloak.LABELS[int(p.argmax())]
        assert face["fooled"][name] == (
            face["readings"]["after_saved"][name]["emotion"] != face["readings"]["before"][name]["emotion"]
        )
    assert sidecar["success_saved"] == all(v is not False for v in face["fooled"].values())
    held = sidecar["held_out"]  # read by recognizers that took no part in the cloak
    assert not {"cnn", "fer"} & set(held["readers"]) and len(held["faces"]) == len(sidecar["faces"])
    assert set(held["faces"][0]["changed"]) == set(held["readers"])
    assert 0.9 < face["ssim_face"] <= 1 and info["ssim"] > 0.9


def test_cli_strength_goes_with_tailored_only(tmp_path, cli):
    r = cli("protect", "--demo", "-o", tmp_path, "--method", "filters", "--strength", "high")
    assert r.returncode != 0 and "--strength goes with --method tailored" in r.stderr
    r = cli("protect", "--demo", "-o", tmp_path, "--method", "tailored", "--strength", "huge")
    assert r.returncode != 0 and "unknown strength 'huge'" in r.stderr
    assert not any(tmp_path.iterdir())  # refused before any work: nothing written
