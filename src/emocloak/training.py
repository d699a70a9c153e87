"""Training recognizers on pre-cropped faces: soft (vote) labels, batched augmentation, resumable.

The loop takes hooks so that defences (PGD-AT, FAAT, see `emocloak.defences`) reuse it
unchanged: `adversary` maps a clean batch to the batch the model is trained on,
`objective` turns (clean batch, trained-on batch, labels) into the loss, and `aux`
carries per-face extra channels (attention masks) that follow the images through
the same random geometric augmentation. `cfg.extra["init"]` starts from saved weights
(fine-tuning); `cfg.extra["swa"]` trains at a constant rate and ships the average of the weights
after each epoch (stochastic weight averaging, Izmailov et al. 2018).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emocloak.data.checkpoints import CheckpointError, load_checkpoint
from emocloak.data.ferplus import FaceSet
from emocloak.data.files import atomic_write, write_text_atomic
from emocloak.faces.detect import DEFAULT_MARGIN
from emocloak.labels import LABELS
from emocloak.recognizers.facenet import FaceNet


@dataclass
class TrainConfig:
    arch: str = "vgg"
    width: int = 24
    epochs: int = 28
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 5e-4
    seed: int = 0
    threads: int = 2
    soft_labels: bool = True
    extra: dict = field(default_factory=dict)


def checkpoint_shape(path: str | Path) -> tuple[str, int, int, int]:
    """(architecture, width, input channels, input size) of a FaceNet weights file."""
    ckpt = load_checkpoint(path, "recognizer weights file")
    try:
        return str(ckpt["arch"]), int(ckpt["width"]), int(ckpt.get("in_ch", 1)), int(ckpt.get("size", 48))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable architecture ({exc})") from exc


def init_arch(path: str | Path) -> tuple[str, int]:
    """Architecture and width of a weights file to fine-tune from, so the net built fits it.

    Training here is on FER+ 48 px gray faces; a colour or larger model is refused in one line.
    """
    arch, width, in_ch, size = checkpoint_shape(path)
    if (in_ch, size) != (1, 48):
        raise CheckpointError(
            f"{path} reads {in_ch}-channel {size} px faces; training here is on FER+ 48 px gray faces "
            "(a colour photo model is trained by scripts/train_photo_recognizer.py)"
        )
    return arch, width


def gray_faces_to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, 48, 48) uint8 -> (N, 1, 48, 48) float in [0, 1]."""
    return torch.from_numpy(images).float().div_(255.0).unsqueeze(1)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random affine (rotate, scale, shift), flip, brightness/contrast and erasing, on a whole batch.

    Channel 0 is the image. Further channels (e.g. attention masks) get the same geometric
    transform and nothing else, so a mask stays aligned with its augmented face.
    """
    n = x.shape[0]

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return torch.rand(*(shape or (n,)), generator=gen) * (hi - lo) + lo

    ang = u(-15, 15) * math.pi / 180
    scale = u(0.85, 1.15)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, u(-0.12, 0.12)], 1), torch.stack([sin * flip, cos, u(-0.12, 0.12)], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    x, aux = x[:, :1], x[:, 1:]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * u(0.7, 1.3).view(n, 1, 1, 1) + mean + u(-0.15, 0.15).view(n, 1, 1, 1)
    # random erasing: one box of up to a quarter of the face on half the batch
    h, w = x.shape[-2:]
    bh, bw = (u(0.1, 0.5) * h).long(), (u(0.1, 0.5) * w).long()
    y0, x0 = (u(0, 1) * (h - bh)).long(), (u(0, 1) * (w - bw)).long()
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    in_rows = (rows >= y0.view(n, 1, 1)) & (rows < (y0 + bh).view(n, 1, 1))
    in_cols = (cols >= x0.view(n, 1, 1)) & (cols < (x0 + bw).view(n, 1, 1))
    box = in_rows & in_cols & (torch.rand(n, generator=gen) < 0.5).view(n, 1, 1)
    x = torch.where(box.unsqueeze(1), torch.rand(n, 1, 1, 1, generator=gen), x)
    return torch.cat([x.clamp_(0, 1), aux], 1)


@torch.no_grad()
def accuracy(model: nn.Module, data: FaceSet, batch: int = 512) -> float:
    model.eval()
    x = gray_faces_to_tensor(data.images)
    pred = torch.cat([model(x[i : i + batch]).argmax(1) for i in range(0, len(x), batch)])
    return float((pred.numpy() == data.labels).mean())


# (model, augmented clean batch, soft labels, augmented aux channels or None) -> the batch to train on
Adversary = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
# (model, clean batch, trained-on batch, soft labels) -> loss
Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def soft_cross_entropy(logits: torch.Tensor, y_soft: torch.Tensor) -> torch.Tensor:
    return -(y_soft * F.log_softmax(logits, 1)).sum(1).mean()


def standard_objective(model: nn.Module, x: torch.Tensor, x_train: torch.Tensor, y_soft: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the batch trained on (the clean batch unless an adversary replaced it)."""
    return soft_cross_entropy(model(x_train), y_soft)


def training_targets(train_set: FaceSet, soft: bool) -> torch.Tensor:
    """What the loss trains toward, per face: the vote shares (soft) or the one-hot majority label."""
    return torch.from_numpy(train_set.votes if soft else np.eye(len(LABELS), dtype=np.float32)[train_set.labels])


def class_prior(train_set: FaceSet, soft: bool = True) -> torch.Tensor:
    """Share of each class in the training targets (`training_targets`), floored at 1e-4."""
    return training_targets(train_set, soft).float().mean(0).clamp_min(1e-4)


def logit_adjusted_objective(shift: torch.Tensor) -> Objective:
    """Cross-entropy on logits + shift, shift = tau * log(class prior) (Menon et al. 2021, logit-adjusted loss).

    The raw logits then learn decisions that do not favour frequent classes, so rare classes get
    their margin during (adversarial) training; a post-hoc offset instead moves their boundary
    toward the other classes after training, which makes them cheap targets for an attack.
    """

    def objective(model: nn.Module, x: torch.Tensor, x_train: torch.Tensor, y_soft: torch.Tensor) -> torch.Tensor:
        return soft_cross_entropy(model(x_train) + shift, y_soft)

    return objective


KD_WEIGHT, KD_TEMPERATURE = 0.5, 2.0  # distillation defaults: half the loss from the teacher, softened at T = 2


def distillation_objective(teacher: nn.Module, weight: float, temperature: float = KD_TEMPERATURE) -> Objective:
    """(1 - weight) * cross-entropy to the labels + weight * T^2 * KL(teacher || student), both at temperature T.

    The teacher reads the very batch the student trains on (the same augmentation: a "consistent"
    teacher, Beyer et al. 2022), so its soft reading of each distorted face is the target, not a
    reading of the clean face that the distortion may have changed.
    """
    if not 0 <= weight <= 1 or temperature <= 0:
        raise ValueError(f"distillation weight must be in [0, 1] and temperature > 0, got {weight}, {temperature}")
    teacher.eval()

    def objective(model: nn.Module, x: torch.Tensor, x_train: torch.Tensor, y_soft: torch.Tensor) -> torch.Tensor:
        logits = model(x_train)
        with torch.no_grad():
            target = F.softmax(teacher(x_train) / temperature, 1)
        kd = F.kl_div(F.log_softmax(logits / temperature, 1), target, reduction="batchmean") * temperature**2
        return (1 - weight) * soft_cross_entropy(logits, y_soft) + weight * kd

    return objective


def distillation_from(cfg: TrainConfig) -> Objective | None:
    """The distillation objective a config names (extra: teacher, kd_weight, kd_temperature), or None.

    The teacher path stays in the config, so the training record says what the model learnt from.
    """
    if not cfg.extra.get("teacher"):
        return None
    from emocloak.recognizers.registry import load_facenet

    init_arch(cfg.extra["teacher"])  # one clear error for a file that is not a 48 px gray FaceNet
    teacher = load_facenet(cfg.extra["teacher"]).model.to(memory_format=torch.channels_last)
    weight, temperature = cfg.extra.get("kd_weight", KD_WEIGHT), cfg.extra.get("kd_temperature", KD_TEMPERATURE)
    return distillation_objective(teacher, weight, temperature)


def train_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    xb: torch.Tensor,
    yb: torch.Tensor,
    ab: torch.Tensor | None,
    adversary: Adversary | None,
    objective: Objective,
) -> torch.Tensor:
    """One update: the adversary's batch (or the clean one), the objective, backward, the optimiser's step."""
    x_train = xb if adversary is None else adversary(model, xb, yb, ab)
    model.train()
    loss = objective(model, xb, x_train, yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def train(
    cfg: TrainConfig,
    train_set: FaceSet,
    valid_set: FaceSet,
    out: Path,
    adversary: Adversary | None = None,
    log: Callable[[str], None] = print,
    objective: Objective = standard_objective,
    aux: torch.Tensor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FaceNet:
    """Train and write `out` (weights + meta); resumes from `out`.ckpt if it exists.

    aux: (N, C, H, W) float channels per training face, augmented with it and handed to the adversary.
    progress: called after every batch with (batches done, batches in all epochs).
    """
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = FaceNet(cfg.arch, width=cfg.width)
    if cfg.extra.get("init"):
        model.load_state_dict(load_checkpoint(cfg.extra["init"], "recognizer weights file")["state_dict"])
    model = model.to(memory_format=torch.channels_last)  # oneDNN's fast conv layout: ~1.3x a CPU epoch
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(train_set) / cfg.batch_size)
    avg = torch.optim.swa_utils.AveragedModel(model) if cfg.extra.get("swa") else None
    sched = (
        torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps, pct_start=0.2)
        if avg is None
        else torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt, start, history, elapsed = out.with_suffix(".ckpt"), 0, [], 0.0
    run = RunState(model, opt, sched, gen, avg)
    if ckpt.exists():
        start, history, elapsed = resume_training(ckpt, asdict(cfg), run)
        log(f"resumed from {ckpt} at epoch {start}")
    x_all = gray_faces_to_tensor(train_set.images)
    y_soft = training_targets(train_set, cfg.soft_labels)
    for epoch in range(start, cfg.epochs):
        t0 = time.time()
        model.train()
        perm = torch.randperm(len(x_all), generator=gen)
        total = 0.0
        for i in range(steps):
            idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            xb, yb = x_all[idx], y_soft[idx]
            xb = augment(xb if aux is None else torch.cat([xb, aux[idx]], 1), gen)
            xb, ab = xb[:, :1].contiguous(memory_format=torch.channels_last), (None if aux is None else xb[:, 1:])
            loss = train_step(model, opt, xb, yb, ab, adversary, objective)
            sched.step()
            total += loss.item()
            if progress is not None:
                progress(epoch * steps + i + 1, cfg.epochs * steps)
        elapsed += time.time() - t0
        if avg is not None:
            avg.update_parameters(model)
        acc = accuracy(model, valid_set)
        history.append({"epoch": epoch + 1, "loss": total / steps, "valid_acc": acc, "seconds": elapsed})
        log(f"epoch {epoch + 1}/{cfg.epochs} loss {total / steps:.4f} valid {acc:.4f} ({elapsed:.0f}s)")
        save_training(ckpt, asdict(cfg), run, epoch + 1, history, elapsed)
    if avg is not None:
        model = averaged(avg, x_all, cfg.batch_size)
        log(f"weight average of {cfg.epochs} epochs: valid {accuracy(model, valid_set):.4f}")
    save_weights(model, out, {"config": asdict(cfg), "history": history, "train_seconds": elapsed})
    return model


def weight_average(weights: list[Path], make: Callable[[], FaceNet]) -> torch.optim.swa_utils.AveragedModel:
    """The mean of the weights of nets of one shape (`make` builds an empty one); batch norm not yet redone."""
    avg = torch.optim.swa_utils.AveragedModel(make())
    for w in weights:
        net = make()
        net.load_state_dict(load_checkpoint(w, "recognizer weights file")["state_dict"])
        avg.update_parameters(net)
    return avg


def averaged(avg: torch.optim.swa_utils.AveragedModel, x: torch.Tensor, batch: int) -> FaceNet:
    """The averaged net with batch-norm statistics recomputed on the (clean) training faces.

    Running statistics are not averaged by `AveragedModel`; the averaged weights need their own.
    """
    batches = (x[i : i + batch].contiguous(memory_format=torch.channels_last) for i in range(0, len(x), batch))
    torch.optim.swa_utils.update_bn(batches, avg)
    return avg.module


Schedule = torch.optim.lr_scheduler.LRScheduler


@dataclass
class RunState:
    """The live objects of a training run that its checkpoint saves and restores."""

    model: nn.Module
    opt: torch.optim.Optimizer
    sched: Schedule
    gen: torch.Generator
    avg: torch.optim.swa_utils.AveragedModel | None = None


def save_training(ckpt: Path, config: dict, run: RunState, epoch: int, history: list, elapsed: float) -> None:
    """Everything a run needs to go on after `epoch` exactly as if it had not stopped."""
    state = {
        "avg": None if run.avg is None else run.avg.state_dict(),
        "config": config,
        "model": run.model.state_dict(),
        "opt": run.opt.state_dict(),
        "sched": run.sched.state_dict(),
        "gen": run.gen.get_state(),
        "torch_rng": torch.get_rng_state(),  # dropout draws from the global generator
        "epoch": epoch,
        "history": history,
        "elapsed": elapsed,
    }
    atomic_write(ckpt, lambda tmp: torch.save(state, tmp))  # a cut-off save keeps the last good one


def resume_training(ckpt: Path, config: dict, run: RunState) -> tuple[int, list, float]:
    """Restore a `save_training` file into the given objects: (epochs done, history, seconds so far)."""
    state = load_checkpoint(ckpt, "training checkpoint")
    if state.get("config") != config:
        raise ValueError(f"{ckpt} was made with another config; delete it to start afresh")
    run.model.load_state_dict(state["model"])
    run.opt.load_state_dict(state["opt"])
    run.sched.load_state_dict(state["sched"])
    run.gen.set_state(state["gen"])
    if "torch_rng" in state:  # absent in checkpoints written before it was kept
        torch.set_rng_state(state["torch_rng"])
    if run.avg is not None:
        run.avg.load_state_dict(state["avg"])
    return state["epoch"], state["history"], state["elapsed"]


def record_run(out: Path, model: FaceNet, valid_set: FaceSet, test_set: FaceSet | None = None, **extra: object) -> dict:
    """Add held-out accuracy and provenance (command, data, wall time...) to the .json beside the weights."""
    path = out.with_suffix(".json")
    meta = json.loads(path.read_text())
    if test_set is not None:
        meta["test_acc"] = accuracy(model, test_set)
    meta.update(valid_acc=accuracy(model, valid_set), **extra)
    write_text_atomic(path, json.dumps(meta, indent=2))
    return meta


def save_weights(model: FaceNet, out: Path, meta: dict, size: int = 48, margin: float | None = None) -> None:
    """The weights as `registry.load_facenet` reads them (input channels, size, crop margin), and meta as .json."""
    blob = {"arch": model.arch, "width": meta["config"]["width"], "in_ch": model.in_ch, "size": size}
    if margin is not None and margin != DEFAULT_MARGIN:  # a crop rule of its own: the recognizer must use it too
        blob["margin"] = margin
    blob["state_dict"] = model.state_dict()
    atomic_write(out, lambda tmp: torch.save(blob, tmp))
    write_text_atomic(out.with_suffix(".json"), json.dumps(meta, indent=2))
