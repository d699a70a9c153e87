"""Attack parameters are checked where they are defined (the constructors, as ART's _check_params), so the
spec strings, the Python API and `emocloak.protect` give the same clear error."""

import numpy as np
import pytest

from emocloak.attacks.base import AttackSpecError
from emocloak.attacks.evasion.filter_chain import FilterCloak
from emocloak.attacks.evasion.pgd import PGD
from emocloak.attacks.evasion.square import Square
from emocloak.attacks.evasion.universal import UniversalCloak
from emocloak.attacks.registry import make_attack


@pytest.mark.parametrize(
    "spec, message",
    [
        ("filters:a_max=abc", "a_max must be a number, got 'abc'"),
        ("filters:good_ssim=abc", "good_ssim must be a number, got 'abc'"),
        ("filters:a_max=0.5", "a_min=0.9 is above a_max=0.5"),
        ("filters:local=maybe", "local must be true or false"),
        ("filters:jpeg=0", "jpeg=0 out of range"),
        ("filters:chain=6", "valid: 3, 4, 5"),
        ("pgd:random_start=maybe", "random_start must be true or false, got 'maybe'"),
        ("pgd:eps=300", "eps=300/255 out of range"),
        ("pgd:steps=2.5", "steps must be a whole number"),
        ("pgd:norm=1", "valid: inf, 2"),
        ("pgd:norm=2,eps=nan", "eps must be a number"),
        ("square:p=0", "p=0 out of range"),
        ("fgsm:eps=abc", "eps must be a number"),
        ("universal:eps=65", "eps=65/255 out of range"),
        ("pgd:seed=-1", "seed=-1 out of range"),
        ("autoattack:eps=0", "eps=0/255 out of range"),
        ("autoattack:eps=abc", "eps must be a number"),
        ("autoattack:version=plus", "version='plus' invalid; valid: standard, fast"),
        ("autoattack:norm=2", "valid: inf"),
        ("autoattack:steps=5", "autoattack has no parameter 'steps'"),
    ],
)
def test_bad_spec_values_are_refused_with_the_reason(spec, message):
    with pytest.raises(AttackSpecError, match=message):
        make_attack(spec)


def test_the_api_shares_the_checks():
    with pytest.raises(AttackSpecError, match="a_max must be a number"):
        FilterCloak(a_range=(0.9, "abc"))
    with pytest.raises(AttackSpecError, match="random_start must be true or false"):
        PGD(random_start="maybe")
    with pytest.raises(AttackSpecError, match="out of range"):
        Square(eps=1.5)
    with pytest.raises(AttackSpecError, match="perturbation must be a UniversalPerturbation"):
        UniversalCloak("file.pt")
    import emocloak

    with pytest.raises(AttackSpecError, match="min_ssim"):
        emocloak.protect(np.zeros((64, 64, 3), np.uint8), method="filters", min_ssim=2.0)


def test_cli_protect_checks_options_once_before_any_photo(tmp_path, cli):
    r = cli("protect", "--demo", "-o", tmp_path / "o", "--seed", "-3")
    assert r.returncode == 2 and "seed=-3 out of range" in r.stderr and not (tmp_path / "o").exists()
