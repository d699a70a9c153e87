"""The universal cloak: learning on a toy recognizer, the file format, applying, the attack, protect and the CLI."""

import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from emocloak.attacks.budget import Budget
from emocloak.attacks.evasion.universal import (
    PerturbationError,
    UniversalPerturbation,
    apply_universal,
    apply_universal_batch,
    learn_universal,
)
from emocloak.attacks.evasion.universal import learn as UL
from emocloak.attacks.evasion.universal import perturbation as UP
from emocloak.faces.detect import Box
from emocloak.labels import LABELS
from emocloak.recognizers.base import Recognizer

EPS = 8 / 255


pytestmark = pytest.mark.usefixtures("one_thread")


class _Toy(nn.Module):
    """A random conv layer and a linear head on 16x16 gray faces: small, but with texture-sensitive features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.head = nn.Linear(8 * 16, len(LABELS))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(torch.relu(self.conv(x - 0.5)), 4).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 5 * self.head(self.features(x))


@pytest.fixture(scope="module")
def rec() -> Recognizer:
    torch.manual_seed(0)
    return Recognizer("toy", _Toy(), LABELS, input_size=16)


@pytest.fixture(scope="module")
def crops() -> torch.Tensor:
    """Smooth random 'faces', (24, 3, 32, 32) in [0.1, 0.9]."""
    g = torch.Generator().manual_seed(1)
    base = F.interpolate(torch.rand(24, 1, 8, 8, generator=g), size=(32, 32), mode="bilinear")
    return (base * 0.8 + 0.1).repeat(1, 3, 1, 1)


@pytest.fixture(scope="module")
def learnt(rec, crops) -> UniversalPerturbation:
    return learn_universal([rec], crops, EPS, steps=30, batch_size=8, progress=False, data="toy crops")


@torch.no_grad()
def _cos(rec, crops, delta):
    return F.cosine_similarity(rec.features((crops + delta).clamp(0, 1)), rec.features(crops)).mean().item()


def test_untargeted_moves_features_more_than_random_noise_of_the_same_budget(rec, crops, learnt):
    noise = (torch.randint(0, 2, (1, 3, 32, 32), generator=torch.Generator().manual_seed(2)) * 2 - 1) * EPS
    assert _cos(rec, crops, learnt.delta) < _cos(rec, crops, noise) < 1.0
    assert learnt.delta.shape == (3, 32, 32) and learnt.delta.abs().max() <= EPS + 1e-7
    assert learnt.meta["eps"] == pytest.approx(8) and learnt.meta["target"] is None and learnt.size == 32


def test_targeted_raises_the_target_probability_and_every_mode_stays_in_budget(rec, crops):
    with torch.no_grad():
        p0 = rec.logits(crops).softmax(1).mean(0)
    target = int(p0.argmin())
    up = learn_universal([rec], crops, 16 / 255, target=LABELS[target], steps=30, batch_size=8, progress=False)
    with torch.no_grad():
        p1 = rec.logits((crops + up.delta).clamp(0, 1)).softmax(1).mean(0)
    assert p1[target] > p0[target] and up.target == target and up.meta["centroid"]["toy"]
    assert up.delta.abs().max() <= 16 / 255 + 1e-7
    holdout = (crops[:4].permute(0, 2, 3, 1) * 255).round().byte().numpy()
    robust = learn_universal(
        [rec], crops, EPS, steps=2, batch_size=8, jpeg_quality=75, quality_weight=1.0, progress=False, holdout=holdout
    )
    assert robust.delta.abs().max() <= EPS + 1e-7
    assert robust.meta["holdout"]["n"] == 4 and set(robust.meta["holdout"]["success_after_jpeg"]) == {"toy"}
    with pytest.raises(ValueError, match="0, 1"):
        learn_universal([rec], crops, 8)


def test_save_load_round_trip_and_clear_errors(tmp_path, learnt):
    path = learnt.save(tmp_path / "u.pt")
    blob = torch.load(path, weights_only=True)  # plain types only
    assert set(blob) == {"delta", "meta"}
    back = UniversalPerturbation.load(path)
    torch.testing.assert_close(back.delta, learnt.delta)
    assert back.meta == learnt.meta
    with pytest.raises(PerturbationError, match="no such"):
        UniversalPerturbation.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PerturbationError, match="not a universal perturbation"):
        UniversalPerturbation.load(tmp_path / "junk.pt")
    torch.save({"delta": torch.ones(3, 8, 8), "meta": {"eps": 8}}, tmp_path / "big.pt")
    with pytest.raises(PerturbationError, match="eps"):
        UniversalPerturbation.load(tmp_path / "big.pt")
    half = learnt.rescaled(4 / 255)
    assert half.delta.abs().max() <= 4 / 255 + 1e-7 and half.meta["eps"] == pytest.approx(4)


def test_apply_changes_only_the_boxes_within_eps(learnt):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)
    boxes = [Box(50, 40, 110, 100), Box(-10, -5, 30, 35)]  # the second leaves the photo
    out = apply_universal(image, learnt, boxes)
    assert out.shape == image.shape and out.dtype == np.uint8 and out is not image
    inside = np.zeros(image.shape[:2], bool)
    inside[40:100, 50:110] = inside[0:35, 0:30] = True
    diff = np.abs(out.astype(int) - image.astype(int))
    assert diff[~inside].max() == 0 and diff[inside].mean() > 1
    assert diff.max() <= 8 + 1
    assert np.array_equal(apply_universal(image, learnt, []), image)


def test_a_budgeted_pattern_spares_smooth_skin_and_the_box_border(rec, crops, tmp_path):
    """Learnt under a perceptual budget, the change follows each face's texture and fades out at the box edge."""
    budget = Budget(cap=12 / 255, floor=0.2)
    up = learn_universal([rec], crops, 1 / 255, steps=3, batch_size=8, progress=False, budget=budget)
    assert up.meta["budget"]["cap"] == pytest.approx(1) and up.budget.cap == pytest.approx(1 / 255)  # cap = eps
    up = up.rescaled(12 / 255)
    assert up.budget.cap == pytest.approx(12 / 255)
    back = UniversalPerturbation.load(up.save(tmp_path / "b.pt"))
    assert back.budget == up.budget
    image = np.full((200, 200, 3), 128, np.uint8)  # flat "skin" on the left, strong texture on the right
    image[:, 100:] = np.random.default_rng(0).integers(60, 200, (200, 100, 1), dtype=np.uint8)
    diff = np.abs(apply_universal(image, up, [Box(0, 0, 200, 200)]).astype(int) - image.astype(int))
    assert diff.max() <= 12 + 1
    inner = (slice(40, 160), slice(40, 160))
    flat, textured = diff[inner][:, :50].mean(), diff[inner][:, 70:].mean()
    assert textured > 2 * flat and diff[:2].max() <= 1 and diff[:, :2].max() <= 1
    plain = apply_universal(image, UniversalPerturbation(up.delta, {"eps": 12}), [Box(0, 0, 200, 200)])
    assert np.abs(plain.astype(int) - image.astype(int))[:2].max() > 1  # without a budget, the edge moves


def test_batch_equals_one_by_one(learnt):
    faces = np.random.default_rng(1).integers(0, 256, (5, 48, 48, 3), dtype=np.uint8)
    batch = apply_universal_batch(faces, learnt)
    for f, b in zip(faces, batch, strict=True):
        assert np.array_equal(b, apply_universal(f, learnt, [Box(0, 0, 48, 48)]))


def test_attack_from_a_file_and_the_shipped_default(tmp_path, monkeypatch, rec, learnt):
    from emocloak.attacks.registry import AttackSpecError, make_attack

    path = learnt.save(tmp_path / "u.pt")
    faces = [np.random.default_rng(i).integers(0, 256, (48, 48, 3), dtype=np.uint8) for i in range(3)]
    out = make_attack(f"universal:file={path}")(rec, faces, detect=False)
    assert [r["queries"] for r in out.records] == [0, 0, 0] and all(r["faces"] == 1 for r in out.records)
    assert all(np.abs(a.astype(int) - f).max() <= 9 for a, f in zip(out.images, faces, strict=True))
    small = make_attack(f"universal:file={path},eps=2")(rec, faces[:1], detect=False)
    assert np.abs(small.images[0].astype(int) - faces[0]).max() <= 3
    with pytest.raises(AttackSpecError, match="no such"):
        make_attack(f"universal:file={tmp_path / 'missing.pt'}")
    with pytest.raises(PerturbationError, match="learnt for untargeted"):
        make_attack(f"universal:file={path}")(rec, faces, target=1, detect=False)
    monkeypatch.setattr(UP, "WEIGHTS", tmp_path)
    UP.default_perturbation.cache_clear()
    learnt.save(tmp_path / "universal_untargeted.pt")
    assert make_attack("universal")(rec, faces[:1], detect=False).records[0]["queries"] == 0
    with pytest.raises(PerturbationError, match="no shipped universal perturbation for happiness"):
        make_attack("universal")(rec, faces[:1], target=1, detect=False)
    UP.default_perturbation.cache_clear()


def test_protect_cloaks_every_face_of_a_photo(tmp_path, rec, learnt, astronaut):
    from emocloak.protection import protect

    path = learnt.save(tmp_path / "u.pt")
    cloaked, info = protect(astronaut, method="universal", recognizers=[rec], perturbation=str(path))
    assert cloaked.shape == astronaut.shape and info["queries"] == 0 and info["faces"] == 1
    assert info["perturbation"]["data"] == "toy crops"
    box = rec.faces(astronaut)[0].crop_box
    diff = np.abs(cloaked.astype(int) - astronaut)
    assert diff.max() <= 9 and diff[box.top : box.bottom, box.left : box.right].sum() == diff.sum() > 0


def _kaggle_csv(path, n=12):
    rng = np.random.default_rng(0)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for i in range(n):
            w.writerow([i % 7, " ".join(map(str, rng.integers(0, 256, 48 * 48))), "Training"])


def test_cli_universal_train_writes_a_file_refuses_to_overwrite_and_protects_with_it(tmp_path, cli):
    from emocloak.recognizers.facenet import FaceNet

    torch.manual_seed(0)
    net = FaceNet("vgg", width=4)
    torch.save({"arch": "vgg", "width": 4, "state_dict": net.state_dict()}, tmp_path / "toy.pt")
    _kaggle_csv(tmp_path / "fer2013.csv")
    out = tmp_path / "u.pt"
    args = ["universal", "train", "--data", tmp_path / "fer2013.csv", "-r", tmp_path / "toy.pt", "-o", out]
    args += ["--eps", "4", "--target", "sad", "--steps", "2", "--batch-size", "4", "--size", "48"]
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    up = UniversalPerturbation.load(out)
    assert up.meta["target"] == "sadness" and up.meta["eps"] == pytest.approx(4) and up.size == 48
    assert up.meta["n_train"] == 11 and up.meta["holdout"]["n"] == 1
    r = cli(*args)
    assert r.returncode != 0 and "--overwrite" in r.stderr
    assert cli(*args, "--overwrite").returncode == 0
    common = ["protect", "--demo", "-m", "universal", "-r", tmp_path / "toy.pt", "--perturbation", out]
    r = cli(*common, "-o", tmp_path / "p", "--target", "sadness")
    assert r.returncode == 0 and "astronaut.jpg" in r.stdout, r.stderr
    r = cli(*common, "-o", tmp_path / "q", "--target", "happiness")
    assert r.returncode != 0 and "learnt for sadness" in r.stderr


def test_face_box_round_trip_keeps_shape_and_budget_and_blurs_fine_detail():
    import torch

    gen = torch.Generator().manual_seed(0)
    checker = (torch.arange(48)[:, None] + torch.arange(48)[None]) % 2 * 2.0 - 1  # finest possible pattern
    d = (checker * 0.03).expand(1, 3, 48, 48)
    smooth = torch.full((1, 3, 48, 48), 0.03)
    for _ in range(5):
        out = UL._through_face_box(d, gen, 4.0)
        assert out.shape == d.shape and out.abs().max() <= 0.03 + 1e-6
    assert UL._through_face_box(d, torch.Generator().manual_seed(1), 4.0).abs().mean() < 0.02  # detail fades
    torch.testing.assert_close(UL._through_face_box(smooth, gen, 4.0), smooth)  # flat survives
