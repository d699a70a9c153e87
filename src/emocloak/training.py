"""Training recognizers: one resumable loop (`fit`), soft (vote) labels, batched augmentation.

`fit` takes its batches from a data source (`BatchSource`): every FER+ face once an epoch,
augmented (`FaceBatches`, what `train` uses), or the photo recipe's mix of FER+ faces and TCCE
crops (`emocloak.photo_training.PhotoMix`), and its checks from a validation callable; the
optimiser, schedule, checkpoints and written weights are the same for every recipe.

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
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emocloak.data.checkpoints import CheckpointError, load_checkpoint
from emocloak.data.ferplus import FaceSet
from emocloak.data.files import atomic_write, write_text_atomic
from emocloak.data.provenance import training_data
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


def uniform(lo: float, hi: float, n: int, gen: torch.Generator) -> torch.Tensor:
    """n draws from U(lo, hi) off the run's generator, so a seed fixes every augmentation."""
    return torch.rand(n, generator=gen) * (hi - lo) + lo


def similarity_theta(
    cos: torch.Tensor, sin: torch.Tensor, flip: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor
) -> torch.Tensor:
    """(N, 2, 3) `affine_grid` matrices: rotation/scale (cos, sin), horizontal flip (+-1), shift."""
    return torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)


def contrast_brightness(
    x: torch.Tensor, gen: torch.Generator, contrast: tuple[float, float], brightness: tuple[float, float]
) -> torch.Tensor:
    """Per image: contrast about its mean, then a brightness shift, both drawn uniformly (contrast first)."""
    n = x.shape[0]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (
        (x - mean) * uniform(*contrast, n, gen).view(n, 1, 1, 1) + mean + uniform(*brightness, n, gen).view(n, 1, 1, 1)
    )


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random affine (rotate, scale, shift), flip, brightness/contrast and erasing, on a whole batch.

    Channel 0 is the image. Further channels (e.g. attention masks) get the same geometric
    transform and nothing else, so a mask stays aligned with its augmented face.
    """
    n = x.shape[0]

    def u(lo: float, hi: float) -> torch.Tensor:
        return uniform(lo, hi, n, gen)

    ang = u(-15, 15) * math.pi / 180
    scale = u(0.85, 1.15)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = similarity_theta(torch.cos(ang) / scale, torch.sin(ang) / scale, flip, u(-0.12, 0.12), u(-0.12, 0.12))
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    x, aux = x[:, :1], x[:, 1:]
    x = contrast_brightness(x, gen, (0.7, 1.3), (-0.15, 0.15))
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
def tensor_accuracy(model: nn.Module, x: torch.Tensor, labels: np.ndarray, batch: int = 512) -> float:
    """Share of inputs x (model-ready) whose top class is the label, in eval mode, `batch` at a time."""
    model.eval()
    pred = torch.cat([model(x[i : i + batch]).argmax(1) for i in range(0, len(x), batch)])
    return float((pred.numpy() == labels).mean())


def accuracy(model: nn.Module, data: FaceSet, batch: int = 512) -> float:
    return tensor_accuracy(model, gray_faces_to_tensor(data.images), data.labels, batch)


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


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]  # (channels_last inputs, soft targets, aux or None)
Score = float | dict[str, float]  # a validation: one accuracy, or one per validation set


class BatchSource(Protocol):
    """Where `fit` takes its batches: an epoch at a time, every random draw from the run's generator."""

    @property
    def steps(self) -> int:
        """Batches per epoch (the one-cycle schedule is laid out over epochs x steps)."""
        ...

    def epoch(self, gen: torch.Generator) -> Iterator[Batch]:
        """The epoch's batches, drawn lazily: batch i is made just before update i, as the seed fixes them."""
        ...

    def norm_batches(self, gen: torch.Generator) -> Iterable[torch.Tensor]:
        """Inputs to re-estimate batch-norm statistics on, for a weight average (`averaged_on`)."""
        ...


class LoopConfig(Protocol):
    """The fields of a run's config that `fit` reads (`TrainConfig`, `photo_training.PhotoConfig`)."""

    epochs: int
    lr: float
    weight_decay: float
    seed: int
    threads: int


def chunks(x: torch.Tensor, batch: int) -> Iterator[torch.Tensor]:
    """x in order, `batch` at a time, channels_last (oneDNN's fast conv layout: ~1.3x a CPU epoch)."""
    return (x[i : i + batch].contiguous(memory_format=torch.channels_last) for i in range(0, len(x), batch))


@dataclass
class FaceBatches:
    """The FER+ recipe's batches: every training face once an epoch in a seeded order, `augment`ed.

    aux: (N, C, H, W) float channels per face (attention masks) that follow their face through
    the augmentation and go to the adversary with it.
    """

    x: torch.Tensor  # (N, 1, 48, 48) in [0, 1]
    y: torch.Tensor  # (N, n_classes) training targets
    batch_size: int
    aux: torch.Tensor | None = None

    @classmethod
    def of(cls, faces: FaceSet, batch_size: int, soft: bool, aux: torch.Tensor | None = None) -> FaceBatches:
        return cls(gray_faces_to_tensor(faces.images), training_targets(faces, soft), batch_size, aux)

    @property
    def steps(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def epoch(self, gen: torch.Generator) -> Iterator[Batch]:
        perm = torch.randperm(len(self.x), generator=gen)
        for i in range(self.steps):
            idx = perm[i * self.batch_size : (i + 1) * self.batch_size]
            xb = self.x[idx] if self.aux is None else torch.cat([self.x[idx], self.aux[idx]], 1)
            xb = augment(xb, gen)
            aux = None if self.aux is None else xb[:, 1:]
            yield xb[:, :1].contiguous(memory_format=torch.channels_last), self.y[idx], aux

    def norm_batches(self, gen: torch.Generator) -> Iterator[torch.Tensor]:
        """The clean training faces: an average's statistics are those of the data, not of its augmentation."""
        return chunks(self.x, self.batch_size)


def start_net(cfg: TrainConfig) -> FaceNet:
    """The gray net `cfg` names, with the weights of `cfg.extra["init"]` when it fine-tunes."""
    model = FaceNet(cfg.arch, width=cfg.width)
    if cfg.extra.get("init"):
        model.load_state_dict(load_checkpoint(cfg.extra["init"], "recognizer weights file")["state_dict"])
    return model


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
    """The FER+ recipe through `fit`: write `out` (weights + meta); resumes from `out`.ckpt if it exists.

    aux: (N, C, H, W) float channels per training face, augmented with it and handed to the adversary.
    progress: called after every batch with (batches done, batches in all epochs).
    """
    data = FaceBatches.of(train_set, cfg.batch_size, cfg.soft_labels, aux)
    return fit(
        cfg,
        lambda: start_net(cfg),
        data,
        lambda model: accuracy(model, valid_set),
        out,
        adversary=adversary,
        objective=objective,
        swa=bool(cfg.extra.get("swa")),
        log=log,
        progress=progress,
    )


def fit(
    cfg: LoopConfig,
    build: Callable[[], FaceNet],
    data: BatchSource,
    validate: Callable[[FaceNet], Score],
    out: Path,
    *,
    adversary: Adversary | None = None,
    objective: Objective = standard_objective,
    pct_start: float = 0.2,
    swa: bool = False,
    log: Callable[[str], None] = print,
    log_every: int = 0,
    progress: Callable[[int, int], None] | None = None,
    size: int = 48,
    margin: float | None = None,
) -> FaceNet:
    """The one training loop: write `out` (weights + .json), `out`.ckpt after every epoch, resumed if it exists.

    SGD (Nesterov) on a one-cycle rate with warm-up share `pct_start`, or with `swa` a constant rate
    and the average of the per-epoch weights. `build` runs after seeding, so the seed fixes the
    initial weights too. log_every: a line every that many batches; size, margin: as `save_weights`.
    """
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    run = new_run(cfg, build().to(memory_format=torch.channels_last), gen, data.steps, pct_start, swa)
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt, start, history, elapsed = out.with_suffix(".ckpt"), 0, [], 0.0
    if ckpt.exists():
        start, history, elapsed = resume_training(ckpt, asdict(cfg), run)
        log(f"resumed from {ckpt} at epoch {start}")
    hooks = (adversary, objective)
    for epoch in range(start, cfg.epochs):
        t0 = time.time()
        loss = run_epoch(run, data, hooks, epoch, cfg.epochs, progress, _step_log(log, log_every, epoch, t0))
        elapsed += time.time() - t0
        if run.avg is not None:
            run.avg.update_parameters(run.model)
        score = validate(run.model)
        history.append({"epoch": epoch + 1, "loss": loss, "valid_acc": score, "seconds": elapsed})
        log(f"epoch {epoch + 1}/{cfg.epochs} loss {loss:.4f} valid {_score_text(score)} ({elapsed:.0f}s)")
        save_training(ckpt, asdict(cfg), run, epoch + 1, history, elapsed)
    model = run.model
    if run.avg is not None:
        model = averaged_on(run.avg, data.norm_batches(gen))
        log(f"weight average of {cfg.epochs} epochs: valid {_score_text(validate(model))}")
    save_weights(model, out, {"config": asdict(cfg), "history": history, "train_seconds": elapsed}, size, margin)
    return model


def new_run(cfg: LoopConfig, model: FaceNet, gen: torch.Generator, steps: int, pct_start: float, swa: bool) -> RunState:
    """The optimiser, rate schedule and (with swa) weight average of a run of `cfg.epochs` x `steps` batches."""
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    avg = torch.optim.swa_utils.AveragedModel(model) if swa else None
    sched = (
        torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps, pct_start=pct_start)
        if avg is None
        else torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    )
    return RunState(model, opt, sched, gen, avg)


def run_epoch(
    run: RunState,
    data: BatchSource,
    hooks: tuple[Adversary | None, Objective],
    epoch: int,
    epochs: int,
    progress: Callable[[int, int], None] | None,
    step_log: Callable[[int, int, float], None],
) -> float:
    """One pass over the source's epoch: an update and a rate step per batch; the mean loss."""
    run.model.train()
    steps, total = data.steps, 0.0
    for i, (xb, yb, ab) in enumerate(data.epoch(run.gen)):
        loss = train_step(run.model, run.opt, xb, yb, ab, *hooks)
        run.sched.step()
        total += loss.item()
        if progress is not None:
            progress(epoch * steps + i + 1, epochs * steps)
        step_log(i + 1, steps, total)
    return total / steps


def _step_log(log: Callable[[str], None], every: int, epoch: int, t0: float) -> Callable[[int, int, float], None]:
    """A line every `every` batches (none if 0): the epoch's mean loss so far and its seconds."""

    def step_log(done: int, steps: int, total: float) -> None:
        if every and done % every == 0:
            log(f"  epoch {epoch + 1} step {done}/{steps} loss {total / done:.4f} ({time.time() - t0:.0f}s)")

    return step_log


def _score_text(score: Score) -> str:
    return f"{score:.4f}" if isinstance(score, float) else str(score)


def weight_average(weights: list[Path], make: Callable[[], FaceNet]) -> torch.optim.swa_utils.AveragedModel:
    """The mean of the weights of nets of one shape (`make` builds an empty one); batch norm not yet redone."""
    avg = torch.optim.swa_utils.AveragedModel(make())
    for w in weights:
        net = make()
        net.load_state_dict(load_checkpoint(w, "recognizer weights file")["state_dict"])
        avg.update_parameters(net)
    return avg


def averaged_on(avg: torch.optim.swa_utils.AveragedModel, batches: Iterable[torch.Tensor]) -> FaceNet:
    """The averaged net with batch-norm statistics recomputed on `batches` (one cumulative pass).

    Running statistics are not averaged by `AveragedModel`; the averaged weights need their own.
    """
    torch.optim.swa_utils.update_bn(batches, avg)
    return avg.module


def averaged(avg: torch.optim.swa_utils.AveragedModel, x: torch.Tensor, batch: int) -> FaceNet:
    """`averaged_on` the (clean) training faces x, `batch` at a time."""
    return averaged_on(avg, chunks(x, batch))


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


def script_record(t0: float, data: str, train_set: FaceSet) -> dict:
    """What a training script adds to `record_run`: wall time since t0, the data, the exact faces, its command."""
    return {
        "wall_seconds": time.time() - t0,
        "data": data,
        "training_data": training_data("train", train_set.names),
        "command": " ".join(["python", *sys.argv]),
    }


def save_weights(model: FaceNet, out: Path, meta: dict, size: int = 48, margin: float | None = None) -> None:
    """The weights as `registry.load_facenet` reads them (input channels, size, crop margin), and meta as .json."""
    blob = {"arch": model.arch, "width": meta["config"]["width"], "in_ch": model.in_ch, "size": size}
    if margin is not None and margin != DEFAULT_MARGIN:  # a crop rule of its own: the recognizer must use it too
        blob["margin"] = margin
    blob["state_dict"] = model.state_dict()
    atomic_write(out, lambda tmp: torch.save(blob, tmp))
    write_text_atomic(out.with_suffix(".json"), json.dumps(meta, indent=2))
