"""`emocloak universal train`: learn one perturbation that cloaks every face."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emocloak.cli.common import check_out_file, checked_recognizer, fail, out, parse_target, transfer_names
from emocloak.errors import EmocloakError


def train(
    data: Annotated[Path, typer.Option("--data", help="Training data: FER+ folder, fer2013.csv, manifest, folders.")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Perturbation file to write (.pt).")],
    recognizer: Annotated[
        str, typer.Option("--recognizer", "-r", help="Comma-separated recognizers whose features it attacks.")
    ] = "cnn",
    eps: Annotated[float, typer.Option("--eps", min=0.5, max=64, help="L-inf budget in /255.")] = 8,
    target: Annotated[str | None, typer.Option("--target", help="Make faces read as this emotion.")] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimiser steps (mini-batches).")] = 1000,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Faces per step.")] = 64,
    size: Annotated[
        int | None,
        typer.Option("--size", min=16, max=512, help="Side of the learnt square delta [the recognizer's input size]."),
    ] = None,
    ce_weight: Annotated[
        float, typer.Option("--ce-weight", min=0, help="Weight of the label term next to the feature term.")
    ] = 1.0,
    box_scale: Annotated[
        float,
        typer.Option(
            "--box-scale", min=1, max=16, help="Learn through random face boxes up to this many times --size."
        ),
    ] = 4.0,
    jpeg: Annotated[int | None, typer.Option("--jpeg", min=1, max=100, help="Learn through JPEG at quality Q.")] = None,
    holdout: Annotated[
        float, typer.Option("--holdout", min=0, max=0.5, help="Share of faces kept out to measure success.")
    ] = 0.1,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Random subset of N training items.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the subset, the hold-out and the start.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file.")] = False,
) -> None:
    """Learn a universal perturbation on the data's training split and save it."""
    from emocloak.attacks.evasion.universal.learn import learn_from_dataset

    check_out_file(out_file, overwrite)
    tgt = parse_target(target)
    recs = [checked_recognizer(n) for n in transfer_names(recognizer) or ["cnn"]]
    options = dict(steps=steps, batch_size=batch_size, jpeg_quality=jpeg, ce_weight=ce_weight, box_scale=box_scale)
    try:
        up = learn_from_dataset(data, recs, eps / 255, tgt, size, holdout, limit, seed, **options)
        up.save(out_file)
    except EmocloakError as exc:
        fail(str(exc))
    n_out = (up.meta.get("holdout") or {}).get("n", 0)
    rates = (up.meta.get("holdout") or {}).get("success", {})
    scores = ", ".join(f"{n} {v:.1%}" for n, v in rates.items()) or "no hold-out"
    out.print(f"wrote {out_file}: success on {n_out} held-out faces: {scores}", highlight=False, soft_wrap=True)
