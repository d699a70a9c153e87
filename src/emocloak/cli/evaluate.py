"""`emocloak evaluate`: attack a recognizer on a dataset and write the report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emocloak.cli.common import (
    RayAddressOption,
    ThreadsOption,
    WorkersOption,
    check_scale,
    fail,
    finish_batch,
    model_name,
    out,
    parse_target,
    progress_bar,
    skipped,
    transfer_names,
)
from emocloak.errors import EmocloakError


def evaluate(
    data: Annotated[Path, typer.Option("--data", help="Dataset: FER+ folder, manifest CSV/folder, class folders.")],
    recognizer: Annotated[str, typer.Option("--recognizer", "-r", help="Recognizer to attack.")],
    attack: Annotated[str, typer.Option("--attack", "-a", help="Attack spec, e.g. pgd:eps=8,steps=20.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for report.json, figures and report.html.")],
    split: Annotated[str, typer.Option("--split", help="Dataset split (train/valid/test).")] = "test",
    target: Annotated[str | None, typer.Option("--target", help="Targeted: make faces read as this.")] = None,
    transfer_to: Annotated[
        str | None, typer.Option("--transfer-to", help="Comma-separated recognizers that read the cloaks too.")
    ] = None,
    channel: Annotated[str | None, typer.Option("--channel", help="Channel before reading, e.g. jpeg:75.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Random subset of N images.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the subset and the attack.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier report in --out.")] = False,
    examples: Annotated[
        bool, typer.Option("--examples/--no-examples", help="Include the example grid (it shows the photos).")
    ] = True,
    workers: WorkersOption = 1,
    ray_address: RayAddressOption = None,
    threads: ThreadsOption = None,
) -> None:
    """Attack a recognizer on a dataset; write report.json, figures and a self-contained report.html."""
    from emocloak.evaluation import evaluate as run_evaluation
    from emocloak.reports.outputs import write_outputs

    check_scale(workers, ray_address)
    atk, tgt, chan = _parse_attack(attack, seed), parse_target(target), _parse_channel(channel)
    _out_dir(out_dir, overwrite)  # refuse before the long run, not after it
    names = [model_name(n) for n in [recognizer, *transfer_names(transfer_to)]]  # workers load them by name
    samples = _samples(data, split, limit, seed)
    for why in samples.skipped:
        skipped(why)
    try:
        with progress_bar(f"{atk.name} attack on {recognizer}", len(samples.images)) as bar:
            report, adv = run_evaluation(
                samples,
                names[0],
                atk,
                tgt,
                names[1:],
                chan,
                progress=bar,
                workers=workers,
                ray_address=ray_address,
                threads=threads,
            )
    except EmocloakError as exc:  # e.g. a chunk whose worker kept dying
        fail(str(exc))
    report["summary"].update(attack_spec=attack, dataset=str(data), split=split)
    try:
        with progress_bar("writing the report and figures"):
            paths = write_outputs(report, samples, adv, out_dir, overwrite=overwrite, examples=examples)
    except EmocloakError as exc:
        fail(f"--out: {exc}")
    _print_summary(report["summary"], paths)
    finish_batch(len(samples.images) + len(samples.skipped), len(samples.skipped), 0, "evaluated")


def _parse_attack(spec: str, seed: int):
    from emocloak.attacks.registry import AttackSpecError, make_attack

    try:
        return make_attack(spec, seed)
    except AttackSpecError as exc:
        fail(str(exc))


def _parse_channel(spec: str | None):
    from emocloak.channel import Channel, ChannelSpecError

    try:
        return Channel.parse(spec)
    except ChannelSpecError as exc:
        fail(f"--channel: {exc}")


def _samples(data: Path, split: str, limit: int | None, seed: int):
    from emocloak.evaluation import load_samples

    try:
        with progress_bar(f"reading {data}"):
            return load_samples(data, split, limit, seed)
    except EmocloakError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot read --data {data}: {exc}")


def _out_dir(path: Path, overwrite: bool) -> Path:
    from emocloak.reports.outputs import check_out_dir

    try:
        return check_out_dir(path, overwrite)
    except EmocloakError as exc:
        fail(f"--out: {exc}")


def _print_summary(s: dict, paths: dict[str, Path]) -> None:
    from emocloak.reports.html import num, pct

    lines = [
        f"{s.get('attack_spec', s['attack'])} vs {s['recognizer']} on {s['n']} images",
        f"success rate {pct(s['success_rate'])}; accuracy {pct(s['clean_accuracy'])} clean -> "
        f"{pct(s['attacked_accuracy'])} under attack; median SSIM {num(s['ssim']['median'], 4)}",
    ]
    if s.get("channel"):
        ch = s["channel"]
        lines.append(
            f"after channel {ch['spec']}: success rate {pct(ch['success_rate'])}, "
            f"accuracy under attack {pct(ch['attacked_accuracy'])}"
        )
    lines += [f"transfer to {n}: success rate {pct(t['success_rate'])}" for n, t in s.get("transfer", {}).items()]
    lines += [f"report: {paths['html']}", f"json:   {paths['json']}"]
    for line in lines:
        out.print(line, markup=False, highlight=False, soft_wrap=True)
