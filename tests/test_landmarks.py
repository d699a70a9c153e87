"""The landmark recognizer (Shehu et al.): invariant features, one interface, honest failure, black-box only."""

import copy
import math

import numpy as np
import pytest
import torch
from PIL import Image

import emocloak
from emocloak import LABELS
from emocloak.attacks.base import AttackSpecError
from emocloak.attacks.evasion.filter_chain import margin
from emocloak.attacks.registry import make_attack
from emocloak.recognizers.base import Recognizer, to_tensor
from emocloak.recognizers.landmark import (
    FLIP,
    N_FEATURES,
    NoLandmarksError,
    TreeEnsemble,
    align,
    landmark_features,
    mirror,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def rec():
    return emocloak.load_recognizer("landmarks")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.asarray(Image.open(emocloak.sample_photo_path()).convert("RGB"))


def _similarity(points: np.ndarray, angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return points @ np.array([[c, s], [-s, c]]) * scale + np.array(shift)


def test_features_ignore_position_scale_and_roll():
    rng = np.random.default_rng(0)
    pts = rng.uniform(10, 40, (4, 68, 2))
    moved = np.stack(
        [
            _similarity(p, a, k, (d, -d))
            for p, a, k, d in zip(pts, (0.1, -0.5, 1.0, 3.0), (0.5, 2, 7, 1), (0, 9, -30, 100), strict=True)
        ]
    )
    f, g = landmark_features(pts), landmark_features(moved)
    assert f.shape == (4, N_FEATURES)
    torch.testing.assert_close(f, g, atol=2e-4, rtol=1e-4)
    assert not torch.allclose(f, landmark_features(pts * np.array([1.0, 1.3])), atol=1e-2)  # a real change shows


def test_mirror_is_an_involution_that_keeps_shapes_aligned():
    assert sorted(FLIP) == list(range(68)) and [FLIP[i] for i in FLIP] == list(range(68))
    a = align(np.random.default_rng(1).uniform(0, 48, (3, 68, 2)))
    torch.testing.assert_close(mirror(mirror(a)), a)
    torch.testing.assert_close(align(mirror(a)), mirror(a), atol=1e-5, rtol=1e-5)


def test_shipped_recognizer_reads_the_sample_photo_through_the_common_interface(rec, photo):
    assert rec.name == "landmarks" and not rec.differentiable and rec.name in emocloak.available_recognizers()
    p = rec.predict_proba([photo])
    assert p.shape == (1, len(LABELS)) and abs(p.sum() - 1) < 1e-4
    crop, box = rec.face_crop(photo)
    (face, q), *_ = rec.predict_faces(photo)
    assert face.crop_box == box
    np.testing.assert_allclose(q, p[0], atol=1e-6)
    x = to_tensor(crop)
    np.testing.assert_allclose(rec.logits(x).softmax(1).numpy(), rec.predict_proba([crop], detect=False), atol=1e-5)
    assert rec.features(x).shape == (1, N_FEATURES)


def test_a_degenerate_shape_is_reported_not_labelled(rec, photo):
    strict = copy.copy(rec)
    strict.model = copy.deepcopy(rec.model)
    strict.model.max_distance.fill_(0.0)  # every shape now counts as degenerate
    with pytest.raises(NoLandmarksError, match="no facial landmarks found in me.jpg"):
        strict.predict_proba([photo], names=["me.jpg"])
    assert np.isnan(strict.predict_proba([photo], on_no_face="nan")).all()
    logp = strict.logits(to_tensor(rec.face_crop(photo)[0]))
    torch.testing.assert_close(logp, torch.full_like(logp, -math.log(len(LABELS))))


@pytest.mark.parametrize("spec", ["pgd:eps=4,steps=2", "fgsm:eps=4"])
def test_gradient_attacks_refuse_it_with_advice(rec, photo, spec):
    with pytest.raises(AttackSpecError, match="recognizer landmarks has no gradient: .*--transfer-to.*square"):
        make_attack(spec)(rec, [photo])


def test_universal_learning_refuses_it(rec):
    from emocloak.attacks.evasion.universal import learn_universal

    with pytest.raises(AttackSpecError, match="no gradient"):
        learn_universal([rec], torch.rand(2, 3, 48, 48), 4 / 255, steps=1, progress=False)


@pytest.fixture(scope="module")
def toy() -> Recognizer:
    """A random linear model: small, and sensitive enough to pixels for a short black-box search."""
    torch.manual_seed(0)
    return Recognizer(
        "linear", torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48 * 48, len(LABELS))), LABELS, 48
    )


def test_square_lowers_confidence_within_budget_and_counts_queries(toy):
    faces = list(np.random.default_rng(0).integers(60, 200, (6, 48, 48, 3), dtype=np.uint8))
    before = toy.predict_proba(faces, detect=False)
    out = make_attack("square:eps=8,queries=100", seed=0)(toy, faces, detect=False)
    after = toy.predict_proba(out.images, detect=False)
    clean = torch.from_numpy(before.argmax(1))
    gap = [margin(torch.from_numpy(p).log(), clean, None) for p in (before, after)]  # log p(clean) - best other
    assert (gap[1] < gap[0]).all() and out.success_rate > 0
    for f, a, r in zip(faces, out.images, out.records, strict=True):
        assert np.abs(a.astype(int) - f.astype(int)).max() <= 8
        assert 1 <= r["queries"] <= 100 and (r["queries"] == 100) != r["success"]  # stops exactly when fooled


def test_square_targeted_reaches_the_runner_up(toy):
    face = [np.full((48, 48, 3), 120, np.uint8)]
    target = int(toy.predict_proba(face, detect=False)[0].argsort()[-2])
    out = make_attack("square:eps=8,queries=100", seed=0)(toy, face, target=target, detect=False)
    assert out.records[0]["success"] and toy.predict_proba(out.images, detect=False)[0].argmax() == target


@pytest.mark.parametrize("spec", ["square:queries=0", "square:p=1.5", "square:eps=100", "square:steps=3"])
def test_square_spec_errors(spec):
    with pytest.raises(AttackSpecError):
        make_attack(spec)


def test_boosted_trees_ship_as_arrays_exactly():
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6)).astype(np.float32)
    y = np.arange(400) % len(LABELS)
    model = HistGradientBoostingClassifier(max_iter=5, max_leaf_nodes=7).fit(x, y)
    trees = TreeEnsemble.from_sklearn(model)
    np.testing.assert_allclose(trees(torch.from_numpy(x)).numpy(), model._raw_predict(x), atol=1e-5)


@pytest.mark.data
def test_accuracy_floor_on_ferplus_test_faces(rec, data_dir):
    from emocloak.data.ferplus import load_ferplus

    test = load_ferplus(data_dir / "ferplus", "test").subset(slice(0, 300))
    probs = rec.predict_proba([np.repeat(f[..., None], 3, 2) for f in test.images], detect=False)
    assert (probs.argmax(1) == test.labels).mean() > 0.5  # measured ~0.67 on all 3,546; majority class ~0.37
