"""Defences: attention masks, the frequency loss, the training hooks, and `emocloak train`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import emocloak
from emocloak.data.ferplus import FaceSet
from emocloak.defences.adversarial_training import attack_mode, attention_steps
from emocloak.defences.faat import frequency_loss, tap_layer
from emocloak.defences.masks import MASK_GROUPS, attention_masks
from emocloak.defences.recipes import DefenceConfig, hooks, train_defence
from emocloak.faces.landmarks import REGIONS
from emocloak.recognizers.facenet import FaceNet
from emocloak.training import TrainConfig, augment, class_prior


@pytest.fixture(autouse=True)
def one_thread():
    """These tests run tiny models, where thread start-up costs more than it saves (and CI shares its cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _face_points(n: int = 4, seed: int = 0) -> np.ndarray:
    """Synthetic (n, 68, 2) landmarks: each region a small jittered cluster at its place on a 48-px face."""
    centres = {
        "jaw": (24, 40),
        "right_brow": (15, 14),
        "left_brow": (33, 14),
        "right_eye": (15, 19),
        "left_eye": (33, 19),
        "nose": (24, 27),
        "mouth": (24, 36),
    }
    rng = np.random.default_rng(seed)
    pts = np.zeros((n, 68, 2), np.float32)
    for name, idx in REGIONS.items():
        pts[:, list(idx)] = np.array(centres[name]) + rng.uniform(-3, 3, (n, len(idx), 2))
    pts[:, list(REGIONS["jaw"])] = rng.uniform(2, 46, (n, len(REGIONS["jaw"]), 2))  # jaw is not in the mask
    return pts


def test_mask_shape_range_and_regions():
    pts = _face_points()
    m = attention_masks(pts, 48, floor=0.25)
    assert m.shape == (4, 48, 48) and m.dtype == np.float32
    assert m.min() >= 0.25 - 1e-6 and m.max() <= 1 + 1e-6 and np.isclose(m.max(), 1)
    for face, p in zip(m, pts, strict=True):
        for group in MASK_GROUPS:
            x, y = np.concatenate([p[list(REGIONS[r])] for r in group]).mean(0).round().astype(int)
            assert face[y, x] > 0.75, group
        assert face[:4, :4].max() < 0.3 and face[-4:, :].max() < 0.3  # corners and chin line: background
        assert face[m[0] > 0.9].size < 0.4 * face.size  # the mask attends to parts of the face, not all of it
    flat = attention_masks(pts, 48, floor=1.0)
    assert np.allclose(flat, 1)
    with pytest.raises(ValueError, match="floor"):
        attention_masks(pts, 48, floor=1.5)


@pytest.mark.data
def test_mask_on_real_faces_is_higher_on_landmark_regions(data_dir):
    from emocloak.data.ferplus import load_ferplus
    from emocloak.faces.landmarks import crop_landmarks

    faces = load_ferplus(data_dir / "ferplus", "test").images[:6]
    pts = crop_landmarks(faces)
    m = attention_masks(pts, 48)
    for face, p in zip(m, pts, strict=True):
        on = [face[int(round(y)), int(round(x))] for x, y in p[17:] if 0 <= x < 48 and 0 <= y < 48]
        assert np.mean(on) > 0.7 > face.mean()


def test_attention_steps_keep_the_mean_step():
    m = torch.from_numpy(attention_masks(_face_points(), 48)).unsqueeze(1)
    w = attention_steps(m)
    assert torch.allclose(w.mean(dim=(1, 2, 3)), torch.ones(4))
    assert (w.amax(dim=(1, 2, 3)) > 2).all()


def test_frequency_loss_zero_for_same_positive_otherwise_blind_to_high_frequencies():
    torch.manual_seed(0)
    a = torch.randn(3, 5, 12, 12)
    assert frequency_loss(a, a).item() == 0
    assert frequency_loss(a + 0.3 * torch.randn_like(a), a).item() > 0
    assert frequency_loss(a + 1.0, a).item() > 0  # a shift of the mean is the lowest frequency of all
    ii, jj = torch.meshgrid(torch.arange(12), torch.arange(12), indexing="ij")
    checker = ((-1.0) ** (ii + jj)).expand_as(a)  # Nyquist: outside any low band
    assert frequency_loss(a + checker, a).item() < 1e-10
    dead = a.clone()
    dead[0] = 0  # one face whose features vanish must not blow the loss up (per-face ratios did, in training)
    near = dead.clone()
    near[0] = 1e-3 * torch.randn(5, 12, 12)
    assert frequency_loss(near, dead).item() < 1e-3


@pytest.mark.parametrize("arch", ["vgg", "resnet"])
def test_tap_layer_is_a_quarter_size_map(arch):
    model = FaceNet(arch, width=4)
    layer = tap_layer(model)
    seen = []
    h = layer.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model(torch.rand(2, 1, 48, 48))
    h.remove()
    assert seen[0][-2:] == (12, 12)


def test_augment_moves_masks_with_their_faces():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, 48, 48) * 0.4 + 0.3
    blob = torch.zeros(1, 1, 48, 48)
    blob[..., 8:20, 6:16] = 1.0  # asymmetric, so a missed flip or shift shows
    pattern = blob.expand(32, 1, 48, 48)
    alone = augment(x, torch.Generator().manual_seed(0))
    both = augment(torch.cat([x, pattern], 1), gen)
    assert torch.equal(both[:, :1], alone)  # the image stream is untouched by extra channels
    same = augment(torch.cat([pattern, pattern], 1), torch.Generator().manual_seed(0))
    corr = [np.corrcoef(s[0].flatten(), s[1].flatten())[0, 1] for s in same.numpy()]
    unmoved = [np.corrcoef(s[0].flatten(), blob.flatten())[0, 1] for s in same.numpy()]
    assert np.median(corr) > 0.9 > np.median(unmoved) + 0.1


def _tiny(n: int = 24) -> FaceSet:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, n)
    votes = np.eye(8, dtype=np.float32)[labels]
    return FaceSet(rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), labels, [str(i) for i in range(n)], votes)


@pytest.mark.parametrize(
    "d",
    [
        DefenceConfig("standard"),
        DefenceConfig("pgd-at", eps=8, steps=2),
        DefenceConfig("trades", eps=8, steps=2, beta=1),
        DefenceConfig("faat", eps=8, steps=2),
        DefenceConfig("faat", eps=8, steps=2, freq_weight=0),
        DefenceConfig("faat", eps=8, steps=2, mask_floor=1),
    ],
    ids=["standard", "pgd-at", "trades", "faat", "faat-mask", "faat-freq"],
)
def test_each_defence_lowers_its_loss_on_a_batch(d):
    torch.manual_seed(0)
    data = _tiny(8)
    x = torch.from_numpy(data.images).float().div(255).unsqueeze(1)
    y = torch.from_numpy(data.votes)
    masks = torch.from_numpy(attention_masks(_face_points(8), 48)).unsqueeze(1) if d.uses_mask else None
    model = FaceNet("vgg", width=4)
    h = hooks(d)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(6):
        torch.manual_seed(1)  # the same attack start each time: the loss is comparable across steps
        x_train = x if h["adversary"] is None else h["adversary"](model, x, y, masks)
        model.train()
        torch.manual_seed(2)
        loss = h["objective"](model, x, x_train, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    if d.defence != "standard":
        assert not torch.equal(x_train, x) and (x_train - x).abs().max() <= 8 / 255 + 1e-6


def test_attack_mode_restores_the_model():
    model = FaceNet("vgg", width=4).train()
    with attack_mode(model):
        assert not model.training and not model.flip_tta
    assert model.training and model.flip_tta


def test_train_defence_runs_and_resumes(tmp_path):
    data = _tiny(24)
    d = DefenceConfig("faat", eps=4, steps=1)
    masks = torch.from_numpy(attention_masks(_face_points(24), 48)).unsqueeze(1)
    cfg = TrainConfig(width=4, epochs=1, batch_size=12, lr=0.01, threads=1)
    out = tmp_path / "m.pt"
    seen = []
    train_defence(d, cfg, data, data.subset(slice(0, 8)), out, masks, log=seen.append, progress=lambda a, b: None)
    assert out.is_file() and out.with_suffix(".ckpt").is_file() and len(seen) == 1
    assert "freq_weight" in cfg.extra and cfg.extra["defence"] == "faat"
    with pytest.raises(ValueError, match="attention masks"):
        train_defence(d, TrainConfig(width=4, epochs=1, threads=1), data, data, tmp_path / "n.pt")


def test_bad_defence_settings():
    with pytest.raises(ValueError, match="unknown defence 'madry'; valid: standard, pgd-at, trades, faat"):
        DefenceConfig("madry")
    with pytest.raises(ValueError, match="eps"):
        DefenceConfig("pgd-at", eps=0)
    with pytest.raises(ValueError, match="beta"):
        DefenceConfig("trades", beta=-1)
    with pytest.raises(ValueError, match="not trades"):
        DefenceConfig("trades", logit_adjust=0.5)
    with pytest.raises(ValueError, match="class prior"):
        hooks(DefenceConfig("pgd-at", logit_adjust=0.5))


def test_logit_adjustment_trains_on_logits_shifted_by_the_log_prior():
    """tau * log(prior) is added to the logits the loss sees: a rare class must win by more in training."""
    torch.manual_seed(0)
    data = _tiny(8)
    prior = class_prior(data)
    assert abs(float(prior.sum()) - 1) < 1e-3 and prior.min() >= 1e-4  # classes with no faces: floored
    model = FaceNet("vgg", width=4).eval()
    x = torch.from_numpy(data.images).float().div(255).unsqueeze(1)
    y = torch.from_numpy(data.votes)
    d = DefenceConfig("standard", logit_adjust=0.5)
    loss = hooks(d, prior)["objective"](model, x, x, y)
    expected = -(y * torch.log_softmax(model(x) + 0.5 * prior.log(), 1)).sum(1).mean()
    assert torch.isclose(loss, expected) and d.settings() == {"defence": "standard", "logit_adjust": 0.5}
    assert "logit_adjust" not in DefenceConfig("pgd-at").settings()


def test_distillation_mixes_label_loss_and_the_teachers_tempered_reading():
    """weight 0: the plain loss; a teacher equal to the student adds nothing; otherwise KL at T, scaled by T^2."""
    from copy import deepcopy

    from emocloak.training import distillation_objective, soft_cross_entropy

    torch.manual_seed(0)
    data = _tiny(8)
    x = torch.from_numpy(data.images).float().div(255).unsqueeze(1)
    y = torch.from_numpy(data.votes)
    student, teacher = FaceNet("vgg", width=4).eval(), FaceNet("vgg", width=4).eval()
    ce = soft_cross_entropy(student(x), y)
    assert torch.isclose(distillation_objective(teacher, 0.0)(student, x, x, y), ce)
    assert torch.isclose(distillation_objective(deepcopy(student), 0.5)(student, x, x, y), 0.5 * ce, atol=1e-6)
    t, s = torch.softmax(teacher(x) / 3, 1), torch.log_softmax(student(x) / 3, 1)
    kl = (t * (t.log() - s)).sum(1).mean()
    loss = distillation_objective(teacher, 0.25, temperature=3)(student, x, x, y)
    assert torch.isclose(loss, 0.75 * ce + 0.25 * 9 * kl, atol=1e-5) and kl > 1e-4
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters()) and not teacher.training
    for bad in ({"weight": 1.5}, {"weight": 0.5, "temperature": 0.0}):
        with pytest.raises(ValueError, match="distillation"):
            distillation_objective(teacher, **bad)


def test_trades_adversary_moves_the_reading_without_labels():
    """TRADES' attack needs no label: it pushes the reading away from the model's own clean one."""
    torch.manual_seed(0)
    model = FaceNet("vgg", width=4).eval()
    x = torch.rand(6, 1, 48, 48)
    h = hooks(DefenceConfig("trades", eps=8, steps=3))
    wrong = torch.zeros(6, 8)  # a label the adversary must ignore
    x_adv = h["adversary"](model, x, wrong, None)
    with torch.no_grad():
        p, q = torch.softmax(model(x), 1), torch.log_softmax(model(x_adv), 1)
    kl = (p * (p.log() - q)).sum(1)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and kl.mean() > 0
    model.train()
    assert h["objective"](model, x, x, torch.softmax(torch.randn(6, 8), 1)).isfinite()


def test_cli_train_bad_input(cli, tmp_path):
    r = cli("train", "--defence", "nope", "--data", tmp_path, "--out", tmp_path / "m.pt")
    assert r.returncode == 2 and "unknown defence 'nope'" in r.stderr and "pgd-at" in r.stderr
    r = cli("train", "--defence", "faat", "--data", tmp_path, "--out", tmp_path / "m.onnx")
    assert r.returncode == 2 and ".pt" in r.stderr
    r = cli("train", "--defence", "faat", "--data", tmp_path / "missing", "--out", tmp_path / "m.pt")
    assert r.returncode == 2 and "no such file" in r.stderr
    r = cli("train", "--defence", "faat", "--data", tmp_path, "--out", tmp_path / "m.pt", "--init", tmp_path / "x.pt")
    assert r.returncode == 2 and "--init" in r.stderr
    photo = Path(emocloak.__file__).parent / "recognizers" / "weights" / "photo.pt"  # colour, 64 px
    r = cli("train", "--defence", "faat", "--data", tmp_path, "--out", tmp_path / "m.pt", "--init", photo)
    assert r.returncode == 2 and "48 px gray" in r.stderr and "train_photo_recognizer" in r.stderr
    r = cli("train", "--defence", "trades", "--data", tmp_path, "--out", tmp_path / "m.pt", "--logit-adjust", "0.5")
    assert r.returncode == 2 and "logit adjustment" in r.stderr


def _kaggle_csv(path, n_train: int = 24, n_valid: int = 8):
    """A tiny fer2013.csv of random faces: the CLI's whole path without the 28k-face FER+ load."""
    rng = np.random.default_rng(0)
    rows = ["emotion,pixels,Usage"]
    for i in range(n_train + n_valid):
        px = " ".join(map(str, rng.integers(0, 256, 48 * 48)))
        rows.append(f"{i % 7},{px},{'Training' if i < n_train else 'PublicTest'}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_cli_train_pgd_at_with_logit_adjustment_records_it(cli, tmp_path):
    import json

    data, out = _kaggle_csv(tmp_path / "fer2013.csv"), tmp_path / "la.pt"
    args = ["train", "-d", "pgd-at", "--data", data, "--out", out, "--limit", "16", "--width", "4", "--epochs", "1"]
    r = cli(*args, "--batch-size", "8", "--threads", "1", "--logit-adjust", "0.5")
    assert r.returncode == 0, r.stderr
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["config"]["extra"]["logit_adjust"] == 0.5 and "--logit-adjust 0.5" in meta["command"]
    r = cli(*args[:6], tmp_path / "swa.pt", *args[7:], "--batch-size", "8", "--threads", "1", "--swa")
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "swa.json").read_text())
    assert meta["config"]["extra"]["swa"] is True and " --swa " in meta["command"]


def test_cli_train_with_a_teacher_records_it_and_refuses_what_it_cannot_use(cli, tmp_path):
    import json

    data, teacher, out = _kaggle_csv(tmp_path / "fer2013.csv"), tmp_path / "teacher.pt", tmp_path / "kd.pt"
    args = ["train", "-d", "standard", "--data", data, "--limit", "16", "--width", "4", "--epochs", "1"]
    args += ["--batch-size", "8", "--threads", "1"]
    assert cli(*args, "--out", teacher).returncode == 0
    r = cli(*args, "--out", out, "--teacher", teacher, "--kd-weight", "0.7")
    assert r.returncode == 0, r.stderr
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["config"]["extra"]["teacher"] == str(teacher) and meta["config"]["extra"]["kd_weight"] == 0.7
    assert f"--teacher {teacher} --kd-weight 0.7" in meta["command"]
    photo = Path(emocloak.__file__).parent / "recognizers" / "weights" / "photo.pt"  # colour, 64 px
    r = cli(*args, "--out", tmp_path / "x.pt", "--teacher", photo)
    assert r.returncode == 2 and "--teacher" in r.stderr and "48 px gray" in r.stderr
    args[2] = "pgd-at"
    r = cli(*args, "--out", tmp_path / "y.pt", "--teacher", teacher)
    assert r.returncode == 2 and "--defence standard only" in r.stderr


def test_cli_train_faat_on_a_few_faces(cli, tmp_path, monkeypatch):
    import json

    import emocloak

    monkeypatch.setenv("EMOCLOAK_CACHE", str(tmp_path / "cache"))  # landmarks of these faces stay in tmp
    data, out = _kaggle_csv(tmp_path / "fer2013.csv"), tmp_path / "faat.pt"
    args = ["train", "--defence", "faat", "--data", data, "--out", out, "--limit", "16", "--width", "4"]
    r = cli(*args, "--epochs", "1", "--batch-size", "8", "--threads", "1", "--eps", "4")
    assert r.returncode == 0, r.stderr
    assert "validation accuracy" in r.stdout
    rec = emocloak.load_recognizer(str(out))
    assert rec.predict_proba([np.zeros((48, 48, 3), np.uint8)], detect=False).shape == (1, 8)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["command"].startswith("emocloak train --defence faat") and meta["config"]["extra"]["mask_floor"] == 0.25
    assert meta["config"]["extra"]["eps"] == 4 and meta["config"]["soft_labels"] is False
    assert list((tmp_path / "cache").glob("landmarks-fer2013.csv-train-24-limit16-seed0.npy"))


def test_weight_averaging_ships_the_mean_of_epoch_weights_and_resumes(tmp_path):
    """--swa: the written net is the mean of the per-epoch weights, also across an interruption."""
    from emocloak.data.checkpoints import load_checkpoint
    from emocloak.training import train

    data = _tiny(24)
    cfg = TrainConfig(width=4, epochs=2, batch_size=12, lr=0.05, threads=1, extra={"swa": True})
    straight = train(cfg, data, data.subset(slice(0, 8)), tmp_path / "a.pt", log=lambda _: None)

    def stop_in_epoch_two(done: int, total: int) -> None:
        if done == 3:  # 2 batches an epoch: the first batch of epoch 2
            raise KeyboardInterrupt

    out = tmp_path / "b.pt"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, data, out, log=lambda _: None, progress=stop_in_epoch_two)
    first = load_checkpoint(out.with_suffix(".ckpt"), "training checkpoint")["model"]
    resumed = train(cfg, data, data.subset(slice(0, 8)), out, log=lambda _: None)
    last = load_checkpoint(out.with_suffix(".ckpt"), "training checkpoint")["model"]
    key = "net.body.0.weight"  # the first convolution
    got = resumed.state_dict()[key]
    assert torch.allclose(got, (first[key] + last[key]) / 2, atol=1e-6)
    assert not torch.allclose(got, last[key])
    assert torch.allclose(got, straight.state_dict()[key], atol=1e-6)
    written = load_checkpoint(out, "recognizer weights file")["state_dict"]
    assert torch.equal(written[key], got) and "n_averaged" not in written
