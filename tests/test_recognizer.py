import numpy as np
import pytest
import torch
from PIL import Image

import emocloak
from emocloak import LABELS, NoFaceError
from emocloak.recognizers.base import Recognizer, to_tensor
from emocloak.recognizers.facenet import FaceNet


@pytest.fixture(scope="module")
def toy() -> Recognizer:
    torch.manual_seed(0)
    return Recognizer("toy", FaceNet("vgg", width=8), LABELS, input_size=48)


def test_probabilities_over_canonical_labels_for_any_size(toy, astronaut):
    faces = [np.zeros((48, 48, 3), np.uint8), np.zeros((31, 77, 3), np.uint8), Image.fromarray(astronaut)]
    p = toy.predict_proba(faces, detect=False)
    assert p.shape == (3, len(LABELS))
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)


def test_photo_path_detects_and_crops(toy, astronaut):
    crop, box = toy.face_crop(astronaut)
    assert crop.shape[0] == crop.shape[1] == box.width and 150 < box.left + box.width / 2 < 260
    p_photo = toy.predict_proba([astronaut])
    p_crop = toy.predict_proba([crop], detect=False)
    np.testing.assert_allclose(p_photo, p_crop, atol=1e-6)


def test_no_face_raises_typed_error_naming_the_photo(toy):
    with pytest.raises(NoFaceError, match="holiday.jpg"):
        toy.predict_proba([np.full((100, 100, 3), 90, np.uint8)], names=["holiday.jpg"])


def test_differentiable_path_matches_predict_and_has_gradients(toy, astronaut):
    crop, _ = toy.face_crop(astronaut)
    x = to_tensor(crop).requires_grad_(True)
    logits = toy.logits(x)
    np.testing.assert_allclose(logits.softmax(1).detach().numpy(), toy.predict_proba([crop], detect=False), atol=1e-5)
    logits[0, 1].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert toy.features(x.detach()).shape == (1, toy.model.feature_dim)


@pytest.mark.parametrize("arch", ["vgg", "resnet"])
def test_features_and_logits_come_from_one_pass(arch):
    torch.manual_seed(0)
    rec = Recognizer("toy", FaceNet(arch, width=8), LABELS, input_size=48)
    x = torch.rand(4, 3, 60, 60)
    f, logits = rec.features_and_logits(x)
    torch.testing.assert_close(f, rec.features(x))
    torch.testing.assert_close(logits, rec.logits(x))


def test_models_with_fewer_classes_map_by_name():
    class Three(torch.nn.Module):
        def forward(self, x):
            return torch.tensor([[0.0, 5.0, 0.0]]).repeat(len(x), 1)

    rec = Recognizer("three", Three(), ["happy", "sad", "angry"], input_size=8)
    p = rec.predict_proba([np.zeros((8, 8, 3), np.uint8)], detect=False)[0]
    assert LABELS[int(p.argmax())] == "sadness" and p[LABELS.index("contempt")] == 0


def test_unknown_recognizer_lists_valid_names():
    from emocloak.recognizers.registry import available

    assert {"cnn", "resnet", "fer", "landmarks"} <= set(available())
    with pytest.raises(ValueError, match="valid: " + ", ".join(available())):
        emocloak.load_recognizer("nope")


def test_default_ensemble_is_the_differentiable_models_less_the_superseded():
    from emocloak.recognizers.registry import STAND_INS, SUPERSEDED, differentiable, ensemble

    assert "landmarks" not in differentiable() and "cnn-faat" in differentiable()
    assert "cnn-robust" in ensemble() and not set(SUPERSEDED) & set(ensemble())
    assert set(SUPERSEDED.values()) <= set(ensemble()) <= set(differentiable())  # a successor is always there
    assert not set(STAND_INS) & set(ensemble()) and set(STAND_INS.values()) <= set(ensemble())
    assert len(ensemble()) == len(set(ensemble()))  # a stand-in is a member once


def test_colour_recognizer_reads_rgb_and_passes_gradients():
    """`photo`-style models see the crop's colour at their own size, and cloaks can optimise through them."""
    torch.manual_seed(0)
    rec = Recognizer("rgb", FaceNet("vgg", width=8, in_ch=3), LABELS, input_size=64, color=True)
    crops = torch.rand(2, 3, 90, 90, requires_grad=True)
    assert rec.to_input(crops).shape == (2, 3, 64, 64)
    f, z = rec.features_and_logits(crops)
    (z[:, 1].sum() + f.sum()).backward()
    assert crops.grad is not None and crops.grad.abs().sum() > 0
    swapped = rec.predict_proba([np.array([[[255, 0, 0]]], np.uint8).repeat(64, 0).repeat(64, 1)], detect=False)
    red_blue = rec.predict_proba([np.array([[[0, 0, 255]]], np.uint8).repeat(64, 0).repeat(64, 1)], detect=False)
    assert not np.allclose(swapped, red_blue), "a colour model must tell red from blue"


def test_gray_weights_start_a_colour_net_exactly(tmp_path):
    from emocloak.photo_training import gray_to_rgb_init

    torch.manual_seed(0)
    gray = FaceNet("vgg", width=8).eval()
    torch.save({"arch": "vgg", "width": 8, "state_dict": gray.state_dict()}, tmp_path / "g.pt")
    rgb = FaceNet("vgg", width=8, in_ch=3)
    gray_to_rgb_init(rgb, str(tmp_path / "g.pt"))
    x = torch.rand(3, 3, 48, 48)
    g = Recognizer("g", gray, LABELS, input_size=48)
    torch.testing.assert_close(rgb.eval()(x), gray(g.to_input(x)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["cnn", "resnet", "fer", "photo"])
def test_shipped_recognizers_read_the_sample(name):
    rec = emocloak.load_recognizer(name)
    p = rec.predict_proba([Image.open(emocloak.sample_photo_path())])
    assert p.shape == (1, len(LABELS)) and abs(p.sum() - 1) < 1e-4


@pytest.mark.data
@pytest.mark.parametrize(("name", "floor"), [("cnn", 0.80), ("resnet", 0.75), ("fer", 0.50), ("photo", 0.75)])
def test_shipped_recognizers_are_real_models(name, floor, data_dir):
    """Regression guard on 600 FER+ test faces (full numbers live in benchmarks/results/recognizers.md)."""
    from emocloak.data.ferplus import load_ferplus

    test = load_ferplus(data_dir / "ferplus", "test").subset(slice(0, 600))
    faces = [np.repeat(f[..., None], 3, 2) for f in test.images]
    acc = (emocloak.load_recognizer(name).predict_proba(faces, detect=False).argmax(1) == test.labels).mean()
    assert acc >= floor


def _synthetic_faces_and_photos():
    """16 random 48 px "FER+ faces" and 6 random 256 px "TCCE photos" (fer's detector found half)."""
    from emocloak.data.ferplus import FaceSet
    from emocloak.photo_training import PhotoSet

    rng = np.random.default_rng(0)
    votes = rng.dirichlet(np.ones(len(LABELS)), 16).astype(np.float32)
    faces = FaceSet(
        rng.integers(0, 256, (16, 48, 48), dtype=np.uint8), votes.argmax(1), [str(i) for i in range(16)], votes
    )
    boxes = np.tile(np.float32([64, 64, 192, 192]), (6, 1))
    photos = PhotoSet(
        rng.integers(0, 256, (6, 256, 256, 3), dtype=np.uint8),
        np.arange(6) % 7,
        [f"p{i}.jpg" for i in range(6)],
        ["01"] * 6,
        boxes,
        np.where(np.arange(6)[:, None] % 2 == 0, boxes, np.nan).astype(np.float32),
    )
    return faces, photos


def test_photo_training_from_a_gray_start_writes_a_loadable_colour_model(tmp_path):
    """A one-epoch run on synthetic faces and photos; its checkpoint is kept, never overwritten unasked."""
    from emocloak.photo_training import PhotoConfig, train_photo
    from emocloak.recognizers.registry import load_facenet

    gray = FaceNet("vgg", width=8)
    torch.save({"arch": "vgg", "width": 8, "state_dict": gray.state_dict()}, tmp_path / "g.pt")
    faces, photos = _synthetic_faces_and_photos()
    cfg = PhotoConfig(width=8, epochs=1, fer_per_epoch=16, fer_batch=8, photo_batch=4, init=str(tmp_path / "g.pt"))
    valid = {"v": (torch.rand(4, 3, 64, 64), np.zeros(4, np.int64))}
    out = tmp_path / "photo.pt"
    train_photo(cfg, faces, photos, valid, out, log=lambda _: None)
    with pytest.raises(FileExistsError):
        train_photo(cfg, faces, photos, valid, out, log=lambda _: None)
    resumed = []
    train_photo(cfg, faces, photos, valid, out, resume=True, log=resumed.append)
    assert any("resumed" in m for m in resumed)
    rec = load_facenet(out, "p")
    assert rec.input_size == 64 and rec.model.in_ch == 3
    assert rec.predict_proba([photos.photos[0]], detect=False).shape == (1, len(LABELS))


def test_a_photo_soup_is_the_mean_of_its_members_with_batch_norm_recomputed(tmp_path):
    from emocloak.photo_training import PhotoConfig, average_photo, train_photo

    faces, photos = _synthetic_faces_and_photos()
    valid = {"v": (torch.rand(4, 3, 64, 64), np.zeros(4, np.int64))}
    runs = []
    for seed in (0, 1):
        cfg = PhotoConfig(width=8, epochs=1, fer_per_epoch=16, fer_batch=8, photo_batch=4, seed=seed)
        train_photo(cfg, faces, photos, valid, tmp_path / f"s{seed}.pt", log=lambda _: None)
        runs.append(torch.load(tmp_path / f"s{seed}.pt")["state_dict"])
    soup = average_photo([tmp_path / "s0.pt", tmp_path / "s1.pt"], cfg, faces, photos, steps=3).state_dict()
    conv = "net.body.0.weight"
    assert torch.allclose(soup[conv], (runs[0][conv] + runs[1][conv]) / 2)
    bn = "net.body.1.running_mean"
    assert not torch.allclose(soup[bn], runs[0][bn]) and not torch.allclose(soup[bn], runs[1][bn])
    assert not torch.allclose(soup[bn], (runs[0][bn] + runs[1][bn]) / 2)  # re-estimated, not averaged
