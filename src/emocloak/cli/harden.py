"""`emocloak train`: train a recognizer, plainly or with an adversarial defence (PGD-AT, TRADES, FAAT)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emocloak.cli.common import check_out_file, fail, out, progress_bar
from emocloak.errors import EmocloakError


def train(
    defence: Annotated[str, typer.Option("--defence", "-d", help="standard, pgd-at, trades or faat.")],
    data: Annotated[Path, typer.Option("--data", help="Face crops with train/valid splits: FER+ folder, fer2013.csv.")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Weights to write (.pt); OUT.ckpt makes it resumable.")],
    init: Annotated[
        Path | None, typer.Option("--init", help="Start from these weights (.pt), e.g. the shipped cnn's: fine-tuning.")
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the training faces.")] = 28,
    lr: Annotated[float, typer.Option("--lr", min=0, help="Peak learning rate (one-cycle schedule).")] = 0.1,
    swa: Annotated[
        bool, typer.Option("--swa", help="Constant --lr; write the average of the weights after each epoch (SWA).")
    ] = False,
    teacher: Annotated[
        Path | None, typer.Option("--teacher", help="Distil from these weights (.pt); standard defence only.")
    ] = None,
    kd_weight: Annotated[
        float | None, typer.Option("--kd-weight", min=0, max=1, help="Distillation share of the loss [0.5].")
    ] = None,
    eps: Annotated[float | None, typer.Option("--eps", help="Training attack's L-inf budget in /255 [4].")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="PGD steps of the training attack [2].")] = None,
    alpha: Annotated[float | None, typer.Option("--alpha", help="PGD step in /255 [eps/2].")] = None,
    freq_weight: Annotated[float | None, typer.Option("--freq-weight", help="FAAT: frequency loss weight [2].")] = None,
    freq_radius: Annotated[int | None, typer.Option("--freq-radius", help="FAAT: low-pass radius [2].")] = None,
    mask_floor: Annotated[
        float | None, typer.Option("--mask-floor", help="FAAT: attention off the face regions, 1 = no mask [0.25].")
    ] = None,
    mask_sigma: Annotated[float | None, typer.Option("--mask-sigma", help="FAAT: mask edge blur, pixels [2].")] = None,
    beta: Annotated[float | None, typer.Option("--beta", help="TRADES: weight of the KL term [6].")] = None,
    logit_adjust: Annotated[
        float | None,
        typer.Option("--logit-adjust", help="standard, pgd-at: tau of the logit-adjusted loss, for rare classes [0]."),
    ] = None,
    arch: Annotated[str, typer.Option("--arch", help="vgg or resnet (taken from --init if given).")] = "vgg",
    width: Annotated[int, typer.Option("--width", min=4, help="Base width (taken from --init if given).")] = 24,
    batch_size: Annotated[int, typer.Option("--batch-size", min=2, help="Faces per batch.")] = 128,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Random subset of N training faces.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the subset, augmentation and attack starts.")] = 0,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads.")] = 2,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file.")] = False,
) -> None:
    """Train a recognizer with a defence (standard, PGD-AT, TRADES, FAAT); resumes an interrupted run."""
    import time

    from emocloak.defences.recipes import cli_command
    from emocloak.training import KD_WEIGHT, TrainConfig, record_run

    given = dict(eps=eps, steps=steps, alpha=alpha, freq_weight=freq_weight, freq_radius=freq_radius)
    d = _defence(defence, **given, mask_floor=mask_floor, mask_sigma=mask_sigma, beta=beta, logit_adjust=logit_adjust)
    if out_file.suffix != ".pt":
        fail(f"--out {out_file}: weights are written as a .pt file")
    check_out_file(out_file, overwrite or out_file.with_suffix(".ckpt").is_file())  # resuming rewrites its own output
    if init is not None:
        arch, width = _init_arch(init)
    if teacher is not None:
        _init_arch(teacher, "--teacher")
        _check_teacher(d)
    t0 = time.time()
    tr, va, masks = _training_data(data, d, limit, seed)
    cfg = TrainConfig(arch, width, epochs, batch_size, lr, seed=seed, threads=threads, soft_labels=tr.votes is not None)
    if init is not None:
        cfg.extra["init"] = str(init)
    if swa:
        cfg.extra["swa"] = True
    if teacher is not None:
        cfg.extra |= {"teacher": str(teacher), "kd_weight": KD_WEIGHT if kd_weight is None else kd_weight}
    model = _train_with_progress(d, cfg, tr, va, out_file, masks)
    meta = record_run(
        out_file,
        model,
        va,
        wall_seconds=time.time() - t0,
        data=f"{data} (train split, {len(tr)} faces)",
        command=cli_command(d, cfg, data, out_file, limit),
    )
    out.print(f"wrote {out_file}: validation accuracy {meta['valid_acc']:.1%}", highlight=False, soft_wrap=True)


def _defence(name: str, **given: float | int | None):
    from emocloak.defences.recipes import DefenceConfig

    try:
        return DefenceConfig(name, **{k: v for k, v in given.items() if v is not None})
    except ValueError as exc:
        fail(str(exc))


def _training_data(data: Path, d, limit: int | None, seed: int):
    """(train faces, validation faces, FAAT masks or None), or one clear error."""
    from emocloak.data.datasets import load_dataset
    from emocloak.data.ferplus import FaceSet
    from emocloak.defences.recipes import training_faces

    try:
        tr, masks = training_faces(data, d, limit, seed)
        va = load_dataset(data, "valid")
    except EmocloakError as exc:
        fail(str(exc))
    if not isinstance(va, FaceSet) or len(va) == 0:
        fail(f"--data {data}: no validation faces (a FER+ folder or fer2013.csv has them)")
    return tr, va, masks


def _train_with_progress(d, cfg, tr, va, out_file: Path, masks):
    from emocloak.defences.recipes import train_defence

    with progress_bar(f"{d.defence} training") as bar:
        try:
            return train_defence(d, cfg, tr, va, out_file, masks, log=bar.log, progress=bar)
        except ValueError as exc:  # e.g. a checkpoint of another configuration at OUT.ckpt
            fail(str(exc))


def _check_teacher(d) -> None:
    """Refuse --teacher with a defence it does not go with, before any data is read."""
    from emocloak.defences.recipes import check_teacher

    try:
        check_teacher(d)
    except ValueError as exc:
        fail(f"--teacher: {exc}")


def _init_arch(path: Path, flag: str = "--init") -> tuple[str, int]:
    """Architecture and width of a FaceNet checkpoint, or one clear error naming the option."""
    from emocloak.training import init_arch

    try:
        return init_arch(path)
    except EmocloakError as exc:
        fail(f"{flag} {exc}")
