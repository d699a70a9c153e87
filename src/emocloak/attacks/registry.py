"""Attack spec strings for the CLI: `name[:key=value,...]`, e.g. `pgd:eps=8,steps=20,norm=2`.

L-inf budgets (eps, alpha) are given in 1/255 units, as papers quote them; L2
budgets in [0, 1] pixel units on the face crop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from emocloak.attacks.base import Attack, AttackSpecError, check_number
from emocloak.attacks.evasion.fgsm import FGSM
from emocloak.attacks.evasion.pgd import PGD


@dataclass(frozen=True)
class AttackInfo:
    build: Callable[..., Attack]
    params: dict[str, str]  # name -> help


def _per255(v: object, key: str) -> object:
    """An L-inf value given in /255 as [0, 1] units; the attack's own checks judge its range."""
    check_number(key, v, -math.inf, math.inf)
    return v / 255  # type: ignore[operator]


def _pgd(
    eps: float = 8,
    steps: int = 20,
    alpha: float | None = None,
    norm: str = "inf",
    random_start: bool = True,
    seed: int = 0,
) -> PGD:
    if str(norm) == "inf":
        eps, alpha = _per255(eps, "eps"), None if alpha is None else _per255(alpha, "alpha")
    return PGD(eps=eps, steps=steps, alpha=alpha, norm=str(norm), random_start=random_start, seed=seed)


def _fgsm(eps: float = 8, seed: int = 0) -> FGSM:
    return FGSM(eps=_per255(eps, "eps"), seed=seed)


def _square(eps: float = 8, queries: int = 1000, p: float = 0.05, seed: int = 0) -> Attack:
    from emocloak.attacks.evasion.square import Square

    return Square(eps=_per255(eps, "eps"), queries=queries, p=p, seed=seed)


def _autoattack(eps: float = 8, version: str = "standard", norm: str = "inf", seed: int = 0) -> Attack:
    from emocloak.attacks.evasion.autoattack import AutoAttack

    if str(norm) != "inf":
        raise AttackSpecError(f"norm={norm!r} invalid; autoattack here is L-inf only: valid: inf")
    return AutoAttack(eps=_per255(eps, "eps"), version=str(version), seed=seed)


def _filters(
    chain: int = 3,
    pop: int = 10,
    gen: int = 10,
    good_ssim: float = 0.95,
    min_ssim: float = 0.8,
    a_max: float = 1.1,
    ensemble: str = "",
    jpeg: int | None = None,
    local: bool = False,
    seed: int = 0,
) -> Attack:
    from emocloak.attacks.evasion.filter_chain import FilterCloak
    from emocloak.recognizers.registry import load_recognizer

    try:
        members = tuple(load_recognizer(n) for n in str(ensemble).split("+") if n)
    except ValueError as exc:
        raise AttackSpecError(f"ensemble: {exc}") from exc
    return FilterCloak(
        chain=chain,
        pop_size=pop,
        n_gen=gen,
        good_ssim=good_ssim,
        min_ssim=min_ssim,
        a_range=(0.9, a_max),
        ensemble=members,
        jpeg=jpeg,
        local=local,
        seed=seed,
    )


def _universal(file: str | None = None, eps: float | None = None, seed: int = 0) -> Attack:
    from emocloak.attacks.evasion.universal import PerturbationError, UniversalCloak, UniversalPerturbation

    try:
        up = None if file is None else UniversalPerturbation.load(str(file))
    except PerturbationError as exc:
        raise AttackSpecError(f"file: {exc}") from exc
    return UniversalCloak(up, eps=None if eps is None else _per255(eps, "eps"), seed=seed)


def _tailored(strength: str = "mid", ensemble: str = "", steps: int = 60, seed: int = 0) -> Attack:
    from emocloak.attacks.evasion.tailored import TailoredCloak
    from emocloak.recognizers.registry import ensemble as default_ensemble
    from emocloak.recognizers.registry import load_recognizer

    names = [n for n in str(ensemble).split("+") if n] if ensemble else default_ensemble()
    try:
        members = [load_recognizer(n) for n in names]
    except ValueError as exc:
        raise AttackSpecError(f"ensemble: {exc}") from exc
    return TailoredCloak(members=members, strength=str(strength), steps=steps, seed=seed)


ATTACKS: dict[str, AttackInfo] = {
    "fgsm": AttackInfo(_fgsm, {"eps": "L-inf budget in /255 (default 8)"}),
    "pgd": AttackInfo(
        _pgd,
        {
            "eps": "budget: /255 for norm=inf (default 8), [0,1] units for norm=2",
            "steps": "iterations (default 20)",
            "alpha": "step size, same units as eps (default 2.5*eps/steps)",
            "norm": "inf or 2 (default inf)",
            "random_start": "true/false (default true)",
        },
    ),
    "square": AttackInfo(
        _square,
        {
            "eps": "L-inf budget in /255 (default 8)",
            "queries": "score queries per face, early stop once fooled (default 1000)",
            "p": "share of the crop the first random squares cover; shrinks on the paper's schedule (default 0.05)",
        },
    ),
    "autoattack": AttackInfo(
        _autoattack,
        {
            "eps": "L-inf budget in /255 (default 8)",
            "version": "standard (APGD-CE, APGD-T, FAB-T, Square; the default) or fast (the two APGD stages)",
            "norm": "inf (the only one)",
        },
    ),
    "filters": AttackInfo(
        _filters,
        {
            "chain": "filters per chain: 3, 4 or 5 (default 3)",
            "pop": "NSGA-II population (default 10)",
            "gen": "generations (default 10)",
            "good_ssim": "stop once a successful chain has this SSIM (default 0.95)",
            "min_ssim": "never return a chain below this SSIM, even if it fools (default 0.8)",
            "a_max": "largest filter intensity (default 1.1)",
            "ensemble": "more recognizers the chain must fool, joined by + (e.g. resnet+fer)",
            "jpeg": "score candidates after JPEG at this quality",
            "local": "true: each filter is brushed onto one spot of the face the search places (default false)",
        },
    ),
    "universal": AttackInfo(
        _universal,
        {
            "file": "a perturbation from `emocloak universal train` (default: the shipped one for the target)",
            "eps": "rescale the perturbation to this L-inf budget in /255 (default: as learnt)",
        },
    ),
    "tailored": AttackInfo(
        _tailored,
        {
            "strength": "perceptual budget: low, mid or high (default mid)",
            "ensemble": "recognizers optimised against, joined by + (default: the shipped ensemble)",
            "steps": "at most this many steps per face, early stop once every member is fooled (default 60)",
        },
    ),
}


def _value(text: str) -> object:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def describe() -> str:
    return "; ".join(f"{n} ({', '.join(i.params)})" for n, i in ATTACKS.items())


def make_attack(spec: str, seed: int | None = None) -> Attack:
    """Build an attack from `name[:key=value,...]`; errors list what is valid."""
    name, _, rest = spec.strip().partition(":")
    if name not in ATTACKS:
        raise AttackSpecError(f"unknown attack {name!r}; valid: {describe()}")
    info = ATTACKS[name]
    kwargs: dict[str, object] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, val = item.partition("=")
        if not eq:
            raise AttackSpecError(f"{spec!r}: expected key=value, got {item!r}")
        if key not in info.params and key != "seed":
            raise AttackSpecError(f"{name} has no parameter {key!r}; valid: {', '.join(info.params)}, seed")
        kwargs[key] = _value(val)
    if seed is not None:
        kwargs.setdefault("seed", seed)
    try:
        return info.build(**kwargs)
    except TypeError as exc:
        raise AttackSpecError(f"{spec!r}: {exc}") from exc
