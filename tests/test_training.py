"""The one training loop (`training.fit`) against hand-written step sequences of both recipes.

Each reference spells out what a seed must give: the net's initial weights, the order of the
faces and photos, every augmentation draw, the optimiser and its rate schedule. A loop that drew,
stepped or scheduled differently would train other weights and fail `torch.equal`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emocloak.data.ferplus import FaceSet
from emocloak.labels import LABELS
from emocloak.photo_training import PhotoConfig, PhotoSet, mixed_batch, train_photo
from emocloak.recognizers.facenet import FaceNet
from emocloak.training import TrainConfig, augment, train


def _faces(n: int) -> FaceSet:
    rng = np.random.default_rng(0)
    votes = rng.dirichlet(np.ones(len(LABELS)), n).astype(np.float32)
    images = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
    return FaceSet(images, votes.argmax(1), [str(i) for i in range(n)], votes)


def _photos(n: int) -> PhotoSet:
    rng = np.random.default_rng(1)
    boxes = np.tile(np.float32([64, 64, 192, 192]), (n, 1))
    haar = np.where(np.arange(n)[:, None] % 2 == 0, boxes + 8, np.nan).astype(np.float32)
    photos = rng.integers(0, 256, (n, 256, 256, 3), dtype=np.uint8)
    return PhotoSet(photos, np.arange(n) % 7, [f"p{i}.jpg" for i in range(n)], ["01"] * n, boxes, haar)


def _sgd(model: FaceNet, lr: float, total: int, pct_start: float) -> tuple[torch.optim.Optimizer, object]:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=total, pct_start=pct_start)


def _step(model: FaceNet, opt: torch.optim.Optimizer, sched: object, x: torch.Tensor, y: torch.Tensor) -> None:
    loss = -(y * F.log_softmax(model(x), 1)).sum(1).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()


def _assert_same_weights(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    different = [k for k in want if not torch.equal(got[k], want[k])]
    assert not different, f"{len(different)} tensors differ, first {different[0]}"


def test_the_fer_recipe_is_its_hand_written_step_sequence(tmp_path):
    faces = _faces(20)
    cfg = TrainConfig(width=4, epochs=2, batch_size=8, lr=0.05, threads=1, seed=3)
    got = train(cfg, faces, faces.subset(slice(0, 4)), tmp_path / "fer.pt", log=lambda _: None)

    torch.manual_seed(3)
    gen = torch.Generator().manual_seed(3)
    model = FaceNet("vgg", width=4).to(memory_format=torch.channels_last)
    opt, sched = _sgd(model, 0.05, 2 * 3, pct_start=0.2)  # 20 faces: 3 batches of 8 an epoch
    x, y = torch.from_numpy(faces.images).float().div(255).unsqueeze(1), torch.from_numpy(faces.votes)
    for _ in range(2):
        model.train()
        perm = torch.randperm(20, generator=gen)
        for i in range(3):
            idx = perm[i * 8 : (i + 1) * 8]
            _step(model, opt, sched, augment(x[idx], gen).contiguous(memory_format=torch.channels_last), y[idx])
    _assert_same_weights(got.state_dict(), model.state_dict())
    _assert_same_weights(torch.load(tmp_path / "fer.pt")["state_dict"], model.state_dict())


def _photo_setup() -> tuple[PhotoConfig, FaceSet, PhotoSet, dict]:
    cfg = PhotoConfig(size=32, width=4, margin=0.05, epochs=2, fer_per_epoch=16, fer_batch=8, photo_batch=4, seed=2)
    valid = {"v": (torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(9)), np.zeros(3, np.int64))}
    return cfg, _faces(20), _photos(6), valid


def test_the_photo_recipe_is_its_hand_written_step_sequence(tmp_path):
    cfg, faces, photos, valid = _photo_setup()
    got = train_photo(cfg, faces, photos, valid, tmp_path / "photo.pt", log=lambda _: None)

    torch.manual_seed(2)
    gen = torch.Generator().manual_seed(2)
    model = FaceNet("vgg", width=4, in_ch=3).to(memory_format=torch.channels_last)
    opt, sched = _sgd(model, cfg.lr, 2 * 2, pct_start=0.15)  # 16 FER+ faces an epoch: 2 batches of 8
    photo_y = torch.full((6, len(LABELS)), 0.1 / 7)  # label smoothing over TCCE's 7 classes, none on contempt
    photo_y[torch.arange(6), torch.from_numpy(photos.labels)] = 0.9 + 0.1 / 7
    photo_y[:, LABELS.index("contempt")] = 0
    photo_y /= photo_y.sum(1, keepdim=True)
    for _ in range(2):
        model.train()
        fer_idx = torch.randperm(20, generator=gen)[:16].numpy()
        photo_idx = torch.cat([torch.randperm(6, generator=gen) for _ in range(math.ceil(8 / 6))])[:8].numpy()
        for i in range(2):
            fi, pi = fer_idx[i * 8 : (i + 1) * 8], photo_idx[i * 4 : (i + 1) * 4]
            y = torch.cat([torch.from_numpy(faces.votes[fi]), photo_y[pi]])
            _step(model, opt, sched, mixed_batch(faces, photos, fi, pi, cfg, gen), y)
    _assert_same_weights(got.state_dict(), model.state_dict())
    written = torch.load(tmp_path / "photo.pt")
    assert (written["size"], written["margin"], written["in_ch"]) == (32, 0.05, 3)


def test_an_interrupted_photo_run_resumes_to_the_uninterrupted_weights(tmp_path):
    cfg, faces, photos, valid = _photo_setup()
    straight = train_photo(cfg, faces, photos, valid, tmp_path / "a.pt", log=lambda _: None).state_dict()

    def stop_before_saving_epoch_two(msg: str) -> None:
        if msg.startswith("epoch 2/"):  # epoch 2 trained, its checkpoint not yet written
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_photo(cfg, faces, photos, valid, tmp_path / "b.pt", log=stop_before_saving_epoch_two)
    logs: list[str] = []
    resumed = train_photo(cfg, faces, photos, valid, tmp_path / "b.pt", resume=True, log=logs.append)
    assert logs[0].endswith("at epoch 1") and len(logs) == 2
    _assert_same_weights(resumed.state_dict(), straight)
