"""The `emocloak` command: one sub-command per job, each a thin layer over the Python API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import emocloak
from emocloak.errors import EmocloakError

app = typer.Typer(
    help="Protect face photos from automatic emotion recognition, and measure recognizers' robustness.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """One clear line on stderr and a non-zero exit: no traceback for expected problems."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def skipped(exc: Exception | str) -> None:
    """A per-file problem: reported on one line, the rest of the batch goes on."""
    err.print(f"[yellow]skipped:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)


def failed(message: str) -> None:
    """A file that could not be finished (e.g. written): one line naming it; the batch goes on."""
    err.print(f"[bold red]failed:[/] {escape(message)}", highlight=False, soft_wrap=True)


def finish_batch(total: int, skips: int, fails: int, what: str = "processed") -> None:
    """A batch's last line: how many were done, skipped and failed; non-zero exit unless all were done."""
    done = total - skips - fails
    if total > 1:
        err.print(f"{done} {what}, {skips} skipped, {fails} failed", highlight=False)
    if skips or fails:
        raise typer.Exit(1 if done else 2)


def _inputs(photos: list[Path] | None, demo: bool) -> list[Path]:
    """The photos of a run: files and folders (searched recursively), or the shipped sample with --demo."""
    from emocloak.data.images import list_images

    try:
        return [emocloak.sample_photo_path()] if demo or not photos else list_images(list(photos))
    except EmocloakError as exc:
        fail(str(exc))
        raise  # unreachable


def _model_name(name: str) -> str:
    """A recognizer name checked by loading it (cached); a weights file by its full path, for workers."""
    _recognizer(name)
    return str(Path(name).resolve()) if Path(name).is_file() else name


def _recognizer(name: str) -> emocloak.Recognizer:
    try:
        return emocloak.load_recognizer(name)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
        raise  # unreachable; keeps type checkers happy


@app.command()
def predict(
    photos: Annotated[
        list[Path] | None, typer.Argument(help="Photos or folders (default: the shipped sample).")
    ] = None,
    recognizer: Annotated[
        str, typer.Option("--recognizer", "-r", help="Recognizer name (see `emocloak recognizers`).")
    ] = "cnn",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    demo: Annotated[bool, typer.Option("--demo", help="Run on the shipped sample photo.")] = False,
    cropped: Annotated[bool, typer.Option("--cropped", help="Inputs are face crops: skip face detection.")] = False,
) -> None:
    """Read the emotion of every face in each photo."""
    from emocloak.data.images import load_rgb
    from emocloak.labels import LABELS

    rec = _recognizer(recognizer)
    files = _inputs(photos, demo)
    results, skips = [], 0
    for path in files:
        try:
            rgb = load_rgb(path)
            found = (
                [(None, rec.predict_proba([rgb], detect=False, names=[str(path)])[0])]
                if cropped
                else rec.predict_faces(rgb, source=str(path))
            )
        except EmocloakError as exc:
            skipped(exc)
            skips += 1
            continue
        for i, (face, p) in enumerate(found):
            results.append(
                {
                    "photo": str(path),
                    "face": i,
                    "box": None if face is None else face.box.as_list(),
                    "emotion": LABELS[int(p.argmax())],
                    "probabilities": {k: round(float(v), 4) for k, v in zip(LABELS, p, strict=True)},
                }
            )
    if as_json:
        print(json.dumps({"recognizer": rec.name, "faces": results}, indent=2))
    elif results:
        _print_table(rec.name, results)
    finish_batch(len(files), skips, 0, "read")


def _print_table(name: str, results: list[dict]) -> None:
    table = Table(title=f"emotions read by {name}")
    for col in ("photo", "face", "box", "emotion", "runner-up"):
        table.add_column(col)
    for r in results:
        ranked = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])
        box = (
            "whole image"
            if r["box"] is None
            else "{},{} {}x{}".format(r["box"][0], r["box"][1], r["box"][2] - r["box"][0], r["box"][3] - r["box"][1])
        )
        table.add_row(
            Path(r["photo"]).name,
            str(r["face"]),
            box,
            f"{ranked[0][0]} {ranked[0][1]:.0%}",
            f"{ranked[1][0]} {ranked[1][1]:.0%}",
        )
    out.print(table)


@app.command()
def recognizers() -> None:
    """List the recognizers that ship with emocloak."""
    from emocloak.recognizers.registry import DESCRIPTIONS

    for name in emocloak.available_recognizers():
        out.print(f"[bold]{name}[/]: {DESCRIPTIONS.get(name, '')}")


def _parse_attack(spec: str, seed: int):
    from emocloak.attacks.registry import AttackSpecError, make_attack

    try:
        return make_attack(spec, seed)
    except AttackSpecError as exc:
        fail(str(exc))


def _parse_target(name: str | None) -> int | None:
    from emocloak.labels import label_index

    if name is None:
        return None
    try:
        return label_index(name)
    except ValueError as exc:
        fail(f"--target: {exc}")


def _parse_channel(spec: str | None):
    from emocloak.channel import Channel, ChannelSpecError

    try:
        return Channel.parse(spec)
    except ChannelSpecError as exc:
        fail(f"--channel: {exc}")


def _transfer_names(names: str | None) -> list[str]:
    parts = [n.strip() for n in (names or "").split(",")]
    if names is not None and not all(parts):
        fail(f"--transfer-to {names!r}: expected comma-separated recognizer names, e.g. fer,resnet")
    return [n for n in parts if n]


def _samples(data: Path, split: str, limit: int | None, seed: int):
    from emocloak.evaluation import load_samples

    try:
        return load_samples(data, split, limit, seed)
    except EmocloakError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot read --data {data}: {exc}")


def _out_file(path: Path, overwrite: bool) -> None:
    """Refuse, before hours of learning, an output file that exists or a folder that cannot take it."""
    from emocloak.data.files import check_writable_dir

    if path.is_dir():
        fail(f"--out {path} is a folder; name the file to write")
    if path.exists() and not overwrite:
        fail(f"{path} exists; pass --overwrite to replace it")
    try:
        check_writable_dir(path.parent)
    except EmocloakError as exc:
        fail(f"--out {path}: {exc}")


def _out_dir(path: Path, overwrite: bool) -> Path:
    from emocloak.reports.outputs import check_out_dir

    try:
        return check_out_dir(path, overwrite)
    except EmocloakError as exc:
        fail(f"--out: {exc}")


WorkersOption = Annotated[
    int,
    typer.Option(
        "--workers",
        "-w",
        min=1,
        help='Processes that share the run; above 1 runs it on a local Ray instance (pip install -e ".\\[ray]"). '
        "Same files and numbers as --workers 1 with the same --threads.",
    ),
]
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="torch threads per photo, per worker on Ray (default: here torch's, on Ray 1). "
        "Floating-point sums depend on it.",
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Join this Ray cluster (e.g. ray://head:10001 or auto) instead of starting one; every node needs "
        "emocloak and the same paths.",
    ),
]


def _check_scale(workers: int, ray_address: str | None) -> None:
    """Without Ray, --workers above 1 says in one line how to get it, before any work."""
    from emocloak.scale import on_ray, require_ray

    if on_ray(workers, ray_address):
        try:
            require_ray()
        except EmocloakError as exc:
            fail(str(exc))


@app.command()
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

    _check_scale(workers, ray_address)
    atk, tgt, chan = _parse_attack(attack, seed), _parse_target(target), _parse_channel(channel)
    _out_dir(out_dir, overwrite)  # refuse before the long run, not after it
    names = [_model_name(n) for n in [recognizer, *_transfer_names(transfer_to)]]  # workers load them by name
    samples = _samples(data, split, limit, seed)
    for why in samples.skipped:
        skipped(why)
    try:
        report, adv = run_evaluation(
            samples, names[0], atk, tgt, names[1:], chan, workers=workers, ray_address=ray_address, threads=threads
        )
    except EmocloakError as exc:  # e.g. a chunk whose worker kept dying
        fail(str(exc))
    report["summary"].update(attack_spec=attack, dataset=str(data), split=split)
    try:
        paths = write_outputs(report, samples, adv, out_dir, overwrite=overwrite, examples=examples)
    except EmocloakError as exc:
        fail(f"--out: {exc}")
    _print_summary(report["summary"], paths)
    finish_batch(len(samples.images) + len(samples.skipped), len(samples.skipped), 0, "evaluated")


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


@app.command()
def protect(
    photos: Annotated[list[Path] | None, typer.Argument(help="Photos or folders to cloak.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for cloaked copies and sidecars.")] = None,
    method: Annotated[
        str | None,
        typer.Option("--method", "-m", help="Cloak: tailored (default), filters or universal."),
    ] = None,
    strength: Annotated[
        str,
        typer.Option("--strength", help="Tailored: low, mid or high budget (more success, more visible)."),
    ] = "mid",
    perturbation: Annotated[
        Path | None,
        typer.Option("--perturbation", help="Universal cloak file (default: the shipped one for --target)."),
    ] = None,
    chain: Annotated[int, typer.Option("--chain", min=3, max=5, help="Filters per chain (3, 4 or 5).")] = 3,
    target: Annotated[str | None, typer.Option("--target", help="Make recognizers read this emotion.")] = None,
    recognizer: Annotated[
        str | None,
        typer.Option(
            "--recognizer",
            "-r",
            help="Comma-separated: the first is fooled, the rest join in (default: tailored every "
            "differentiable shipped recognizer, the others cnn).",
        ),
    ] = None,
    jpeg: Annotated[int | None, typer.Option("--jpeg", min=1, max=100, help="Survive JPEG at this quality.")] = None,
    min_ssim: Annotated[
        float,
        typer.Option("--min-ssim", min=0.0, max=0.999, help="Filters: never return a chain below this SSIM."),
    ] = 0.8,
    local: Annotated[
        bool, typer.Option("--local", help="Filters: brush each filter onto one spot of the face, not the photo.")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the search.")] = 0,
    demo: Annotated[bool, typer.Option("--demo", help="Cloak the shipped sample photo.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace earlier outputs in --out.")] = False,
    keep_metadata: Annotated[bool, typer.Option("--keep-metadata", help="Keep EXIF (GPS included).")] = False,
    workers: WorkersOption = 1,
    ray_address: RayAddressOption = None,
    threads: ThreadsOption = None,
) -> None:
    """Cloak photos so that emotion recognizers misread them; inputs are never modified.

    A rerun into the same --out skips photos already cloaked with the same settings (a manifest there
    records them), so a stopped run over a photo library goes on where it was.
    """
    from emocloak.data.manifest import MANIFEST_NAME, fingerprint

    _check_scale(workers, ray_address)
    names = [_model_name(n) for n in _transfer_names(recognizer)] if recognizer else None
    options = _cloak_options(method, names, chain, target, seed, jpeg, perturbation, min_ssim, local, strength)
    if not photos and not demo:
        fail("no photos given: name photos or folders to cloak (or pass --demo to try the shipped sample)")
    if out_dir is None and not demo:
        fail("--out/-o is required: the folder for cloaked copies")
    files = _inputs(photos, demo)
    out_dir = out_dir or Path("protected")
    key = fingerprint({**options, "keep_metadata": keep_metadata})
    plan, refused, finished, manifest = _plan(files, [] if demo else list(photos or []), out_dir, overwrite, key)
    for _, why in refused:
        skipped(why)
    if finished:
        err.print(
            f"resuming: {len(finished)} photo(s) already cloaked with these settings in {out_dir} "
            f"({MANIFEST_NAME}); not redone",
            highlight=False,
            soft_wrap=True,
        )
    done, skips, fails = _cloak_all(plan, keep_metadata, options, manifest, key, workers, ray_address, threads)
    _report_cloaks(done, str(options["method"]), local)
    finish_batch(len(files), len(refused) + skips, fails, "cloaked")


def _cloak_options(
    method: str | None,
    names: list[str] | None,
    chain: int,
    target: str | None,
    seed: int,
    jpeg: int | None,
    perturbation: Path | None,
    min_ssim: float,
    local: bool,
    strength: str,
) -> dict:
    """`emocloak.protect`'s keyword arguments from the CLI options, checked once before any photo is read."""
    from emocloak.protection import DEFAULT_METHOD, METHODS, _recognizers, make_cloak

    method = method or DEFAULT_METHOD
    if method not in METHODS:
        fail(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    _parse_target(target)
    extra = {"perturbation": _perturbation(perturbation, target, jpeg)} if method == "universal" else {}
    if method == "filters":
        extra |= {"min_ssim": min_ssim, "local": local}
    elif local:
        fail("--local goes with --method filters")
    if method == "tailored":
        extra["strength"] = _strength(strength)
    elif strength != "mid":
        fail("--strength goes with --method tailored")
    if perturbation is not None and method != "universal":
        fail("--perturbation goes with --method universal")
    for n in names or []:
        _recognizer(n)
    try:  # the cloak's own parameter checks, once, not once per photo
        make_cloak(method, _recognizers(names, method), chain, seed, jpeg, **dict(extra))
    except ValueError as exc:
        fail(str(exc))
    return dict(method=method, chain=chain, target=target, recognizers=names, seed=seed, jpeg=jpeg, **extra)


def _plan(files: list[Path], roots: list[Path], out_dir: Path, overwrite: bool, key: str):
    """Every output decided and checked before any work; a folder that cannot take them stops the run here.

    (to do, refused, finished by an earlier run with the same settings, the folder's manifest)
    """
    from emocloak.data.files import SIDECAR_BYTES, check_free_space, check_writable_dir
    from emocloak.data.manifest import Manifest
    from emocloak.protection import plan_resume

    try:
        check_writable_dir(out_dir)
        manifest = Manifest(out_dir)
        plan, refused, finished = plan_resume(files, roots, out_dir, overwrite, manifest, key)
        check_free_space(out_dir, sum(p.src.stat().st_size + SIDECAR_BYTES for p in plan))
    except (EmocloakError, OSError) as exc:
        fail(f"-o {out_dir}: {exc}")
        raise  # unreachable
    return plan, refused, finished, manifest


def _cloak_all(
    plan,
    keep_metadata: bool,
    options: dict,
    manifest,
    key: str,
    workers: int = 1,
    ray_address: str | None = None,
    threads: int | None = None,
) -> tuple[list[tuple[Path, Path, dict]], int, int]:
    """Cloak every planned photo with a progress bar: (done, skipped, failed); a bad photo never stops the rest."""
    from rich.progress import Progress

    from emocloak.protection import protect_batch
    from emocloak.scale import on_ray

    done, skips, fails = [], 0, 0
    where = ""
    if on_ray(workers, ray_address):
        where = f" on {workers} Ray workers" if workers > 1 else " on the Ray cluster"
    with Progress(transient=True, console=err) as bar:
        task = bar.add_task("cloaking" + where, total=len(plan))
        for i, res in protect_batch(plan, manifest, key, keep_metadata, options, workers, ray_address, threads):
            if res.status == "done":
                done.append((i, res.item.src, res.item.dst, res.info))
            elif res.status == "failed":
                failed(res.message)
                fails += 1
            else:
                skipped(res.message)
                skips += 1
            bar.advance(task)
    return [d[1:] for d in sorted(done, key=lambda d: d[0])], skips, fails


def _report_cloaks(done: list[tuple[Path, Path, dict]], method: str, local: bool) -> None:
    """One line per cloaked photo, then advice for those the recognizer still reads as before."""
    for src, dst, info in done:
        if info["method"] == "tailored":
            out.print(_tailored_line(src, dst, info), highlight=False, soft_wrap=True)
            continue
        first = info["recognizers"][0]  # a .pt path's recognizer is named by the file's stem
        before, after = info["before"][first]["emotion"], (info["after_saved"][first] or {}).get("emotion")
        mark = "fooled" if info["success_saved"] else "NOT fooled"
        out.print(
            f"{src.name} -> {dst}: {first} read {before} -> {after} ({mark}), SSIM {info['ssim']:.3f}, "
            f"{info['seconds']:.1f}s",
            highlight=False,
            soft_wrap=True,
        )
        if blind := info.get("ensemble_no_face"):
            err.print(
                f"note: {src.name}: {', '.join(blind)} found no face; cloaked against the other recognizers",
                highlight=False,
                soft_wrap=True,
            )
    missed = sum(not info["success_saved"] for _, _, info in done)
    if missed:
        hint = {
            "filters": f"--chain 5{', no --local' if local else ''} or a lower --min-ssim",
            "tailored": "--strength high",
        }.get(method, "a larger budget (`universal train --eps`)")
        err.print(
            f"{missed} photo(s) still read as before"
            + ("; their copies are the most natural edit found. " if method == "filters" else ". ")
            + f"A stronger cloak trades looks for success: {hint}.",
            highlight=False,
            soft_wrap=True,
        )


def _strength(name: str) -> str:
    from emocloak.attacks.evasion.tailored import STRENGTHS

    if name not in STRENGTHS:
        fail(f"unknown strength {name!r}; valid: {', '.join(STRENGTHS)}")
    return name


def _tailored_line(src: Path, dst: Path, info: dict) -> str:
    """One line per photo: per face, how many recognizers were fooled in the saved file."""
    faces = info["faces"]
    parts = []
    for i, f in enumerate(faces, 1):
        read = [ok for ok in f["fooled"].values() if ok is not None]  # None: it read nothing there before
        parts.append(f"face {i}: {sum(read)}/{len(read)} fooled")
    mark = "fooled" if info["success_saved"] else "NOT all fooled"
    return (
        f"{src.name} -> {dst}: {'; '.join(parts) or 'no face found'} ({mark}), SSIM {info['ssim']:.3f}, "
        f"{info['seconds']:.1f}s"
    )


def _perturbation(path: Path | None, target: str | None, jpeg: int | None):
    """The universal perturbation, loaded once for all photos, or one clear error before any work."""
    from emocloak.attacks.evasion.universal import PerturbationError, UniversalPerturbation, default_perturbation

    if jpeg is not None:
        fail("--jpeg does not apply to --method universal: learn JPEG robustness with `universal train --jpeg`")
    try:
        up = UniversalPerturbation.load(path) if path else default_perturbation(target)
    except PerturbationError as exc:
        fail(f"--perturbation: {exc}" if path else str(exc))
    tgt = _parse_target(target)
    if tgt is not None and up.target != tgt:
        fail(f"--perturbation was learnt for {up.meta.get('target') or 'untargeted cloaking'}, not --target {target}")
    if note := up.weakness():
        err.print(f"note: {note}", highlight=False, soft_wrap=True)
    return up


universal_app = typer.Typer(
    help="The universal cloak: one perturbation, learnt once, for every face.", no_args_is_help=True
)
app.add_typer(universal_app, name="universal")


@universal_app.command("train")
def universal_train(
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

    _out_file(out_file, overwrite)
    tgt = _parse_target(target)
    recs = [_recognizer(n) for n in _transfer_names(recognizer) or ["cnn"]]
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


@app.command()
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
    _out_file(out_file, overwrite or out_file.with_suffix(".ckpt").is_file())  # resuming rewrites its own output
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
        raise  # unreachable


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
        raise  # unreachable
    if not isinstance(va, FaceSet) or len(va) == 0:
        fail(f"--data {data}: no validation faces (a FER+ folder or fer2013.csv has them)")
    return tr, va, masks


def _train_with_progress(d, cfg, tr, va, out_file: Path, masks):
    from rich.progress import Progress

    from emocloak.defences.recipes import train_defence

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task(f"{d.defence} training", total=None)
        try:
            return train_defence(
                d,
                cfg,
                tr,
                va,
                out_file,
                masks,
                log=lambda m: bar.console.print(m, highlight=False),
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        except ValueError as exc:  # e.g. a checkpoint of another configuration at OUT.ckpt
            fail(str(exc))
            raise  # unreachable


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
        raise  # unreachable


@app.command()
def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; 127.0.0.1 keeps it to this computer.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port; 0 picks a free one.")] = 8000,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Photos cloaked at once (default: half the CPU cores, at most 4)."),
    ] = None,
) -> None:
    """Start the local web app: cloak photos and see what each recognizer reads, in a browser."""
    try:
        from emocloak.web.app import serve as run_server
    except ImportError as exc:
        fail(f"the web app needs fastapi, uvicorn and python-multipart ({exc}); reinstall emocloak")
    try:
        run_server(host, port, open_browser, workers)
    except EmocloakError as exc:
        fail(str(exc))


def main() -> None:
    try:
        app()
    except EmocloakError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
