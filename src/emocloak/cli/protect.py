"""`emocloak protect`: cloak photos into an output folder, resuming where an earlier run stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emocloak.cli.common import (
    Bar,
    RayAddressOption,
    ThreadsOption,
    WorkersOption,
    check_scale,
    checked_recognizer,
    fail,
    failed,
    finish_batch,
    input_photos,
    model_name,
    note,
    out,
    parse_target,
    progress_bar,
    skipped,
    transfer_names,
)
from emocloak.errors import EmocloakError


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

    check_scale(workers, ray_address)
    names = [model_name(n) for n in transfer_names(recognizer)] if recognizer else None
    options, params = _cloak_options(method, names, chain, target, seed, jpeg, perturbation, min_ssim, local, strength)
    if not photos and not demo:
        fail("no photos given: name photos or folders to cloak (or pass --demo to try the shipped sample)")
    if out_dir is None and not demo:
        fail("--out/-o is required: the folder for cloaked copies")
    files = input_photos(photos, demo)
    out_dir = out_dir or Path("protected")
    # the cloak's resolved parameters too: a preset's name ("mid") can mean another budget in another release
    key = fingerprint({**options, "keep_metadata": keep_metadata, "cloak": params})
    plan, refused, finished, manifest = _plan(files, [] if demo else list(photos or []), out_dir, overwrite, key)
    for _, why in refused:
        skipped(why)
    if finished:
        note(
            f"resuming: {len(finished)} photo(s) already cloaked with these settings in {out_dir} "
            f"({MANIFEST_NAME}); not redone"
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
) -> tuple[dict, dict]:
    """`emocloak.protect`'s keyword arguments from the CLI options, checked once before any photo is read,
    and the parameters of the cloak they make (its budget, members...), which key the manifest."""
    from emocloak.protection import DEFAULT_METHOD, METHODS, _recognizers, make_cloak

    method = method or DEFAULT_METHOD
    if method not in METHODS:
        fail(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    parse_target(target)
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
        checked_recognizer(n)
    try:  # the cloak's own parameter checks, once, not once per photo
        params = make_cloak(method, _recognizers(names, method), chain, seed, jpeg, **dict(extra)).params()
    except ValueError as exc:
        fail(str(exc))
    return dict(method=method, chain=chain, target=target, recognizers=names, seed=seed, jpeg=jpeg, **extra), params


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
    from emocloak.protection import protect_batch
    from emocloak.scale import on_ray

    done, skips, fails = [], 0, 0
    ray = on_ray(workers, ray_address)
    where = (f"s on {workers} Ray workers" if workers > 1 else "s on the Ray cluster") if ray else ""
    with progress_bar("cloaking photo" + where, len(plan)) as bar:
        if not ray and options["method"] == "tailored":  # here, in this process: the cloak's own steps move the bar
            options = {**options, "progress": bar.within}
        results = protect_batch(plan, manifest, key, keep_metadata, options, workers, ray_address, threads)
        _under_way(bar, plan, 0, ray)
        for k, (i, res) in enumerate(results, 1):
            if res.status == "done":
                done.append((i, res.item.src, res.item.dst, res.info))
            elif res.status == "failed":
                failed(res.message)
                fails += 1
            else:
                skipped(res.message)
                skips += 1
            _under_way(bar, plan, k, ray)
    return [d[1:] for d in sorted(done, key=lambda d: d[0])], skips, fails


def _under_way(bar: Bar, plan: list, k: int, ray: bool) -> None:
    """`k` photos finished; here they are cloaked in plan order, so the bar names the next (on Ray: any order)."""
    if ray or k == len(plan):
        bar(k)
    else:
        bar.at(k, plan[k].src.name)


def _report_cloaks(done: list[tuple[Path, Path, dict]], method: str, local: bool) -> None:
    """One line per cloaked photo, then advice for those the recognizer still reads as before."""
    for src, dst, info in done:
        if info["method"] == "tailored":
            out.print(_tailored_line(src, dst, info), highlight=False, soft_wrap=True)
            _warn_if_weak(src, info)
            continue
        first = info["recognizers"][0]  # a .pt path's recognizer is named by the file's stem
        before, after = info["before"][first]["emotion"], (info["after_saved"][first] or {}).get("emotion")
        mark = "fooled" if info["success_saved"] else "NOT fooled"
        estimate = f", {est['summary']}" if (est := info.get("held_out")) else ""
        out.print(
            f"{src.name} -> {dst}: {first} read {before} -> {after} ({mark}){estimate}, SSIM {info['ssim']:.3f}, "
            f"{info['seconds']:.1f}s",
            highlight=False,
            soft_wrap=True,
        )
        _warn_if_weak(src, info)
        if blind := info.get("ensemble_no_face"):
            note(f"note: {src.name}: {', '.join(blind)} found no face; cloaked against the other recognizers")
    missed = sum(not info["success_saved"] for _, _, info in done)
    if missed:
        hint = {
            "filters": f"--chain 5{', no --local' if local else ''} or a lower --min-ssim",
            "tailored": "--strength high",
        }.get(method, "a larger budget (`universal train --eps`)")
        note(
            f"{missed} photo(s) still read as before"
            + (" by at least one of the recognizers cloaked against" if method == "tailored" else "")
            + ("; their copies are the most natural edit found. " if method == "filters" else ". ")
            + f"A stronger cloak trades looks for success: {hint}."
        )


def _strength(name: str) -> str:
    from emocloak.attacks.evasion.tailored import STRENGTHS

    if name not in STRENGTHS:
        fail(f"unknown strength {name!r}; valid: {', '.join(STRENGTHS)}")
    return name


def _warn_if_weak(src: Path, info: dict) -> None:
    """The held-out estimate's warning, where fewer than half the readers the cloak never used changed."""
    if (est := info.get("held_out")) and est["warning"]:
        note(f"warning: {src.name}: {est['warning']}")


def _tailored_line(src: Path, dst: Path, info: dict) -> str:
    """One line per photo: per face, how many recognizers were fooled in the saved file, and the estimate.

    The estimate counts held-out readers (shipped recognizers the cloak did not use) that change their
    reading after a JPEG-75 re-save: the honest guess at a platform's recognizer.
    """
    faces = info["faces"]
    held = (info.get("held_out") or {}).get("faces") or [None] * len(faces)
    parts = []
    for i, (f, h) in enumerate(zip(faces, held, strict=True), 1):
        read = [ok for ok in f["fooled"].values() if ok is not None]  # None: it read nothing there before
        estimate = f", protected against {h['n_changed']} of {h['n_readers']} held-out readers" if h else ""
        parts.append(f"face {i}: {sum(read)}/{len(read)} fooled{estimate}")
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
    tgt = parse_target(target)
    if tgt is not None and up.target != tgt:
        fail(f"--perturbation was learnt for {up.meta.get('target') or 'untargeted cloaking'}, not --target {target}")
    if weakness := up.weakness():
        note(f"note: {weakness}")
    return up
