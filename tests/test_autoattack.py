"""AutoAttack: the standard evaluation through the attack interface, cross-checked against PGD-20 and ART's APGD."""

import numpy as np
import pytest
import torch
from torch import nn

from emocloak.attacks.base import AttackSpecError
from emocloak.attacks.evasion.autoattack import STAGES, AutoAttack, on_grid
from emocloak.attacks.registry import make_attack
from emocloak.labels import LABELS
from emocloak.recognizers.base import Recognizer

pytest.importorskip("pyautoattack")


@pytest.fixture(scope="module")
def toy_case(one_thread):
    """A random linear model (fast, and not flat: a 1/255 budget fools about half the faces) and 24 noise
    faces on the uint8 grid, labelled as the model reads them."""
    torch.manual_seed(0)
    rec = Recognizer("toy", nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, len(LABELS))), LABELS, 48)
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (24, 1, 48, 48))).float().div(255).repeat(1, 3, 1, 1)
    with torch.no_grad():
        y = rec.logits(x).argmax(1)
    return rec, x, y


def robust_accuracy(rec, x, y) -> float:
    with torch.no_grad():
        return float((rec.logits(x).argmax(1) == y).float().mean())


def test_autoattack_is_at_least_as_strong_as_pgd20_and_stays_in_the_ball(toy_case):
    """The two gradient stages (the standard version's Square alone costs 5,000 queries a face)."""
    rec, x, y = toy_case
    eps = 1 / 255
    aa = make_attack("autoattack:eps=1,version=fast", seed=0)
    aa.rng = aa.new_generator()
    res = aa.run(rec, x, y)
    pgd = make_attack("pgd:eps=1,steps=20", seed=0)
    pgd.rng = pgd.new_generator()
    x_pgd = on_grid(x, pgd.craft(rec, x, y, False), eps)
    acc = res.accuracy_after()
    final = acc[res.stages[-1]]
    assert acc["clean"] == 1.0 and 0 < final < 1  # the budget leaves some faces standing, fools others
    assert list(acc.values()) == sorted(acc.values(), reverse=True) and final == robust_accuracy(rec, res.x_adv, y)
    assert final <= robust_accuracy(rec, x_pgd, y)
    assert (res.x_adv - x).abs().max() <= eps + 1e-6
    assert torch.allclose(res.x_adv * 255, (res.x_adv * 255).round(), atol=1e-4)  # saved as uint8, as judged


def test_apgd_ce_stage_matches_art_within_two_faces(toy_case):
    """The first stage is the authors' APGD-CE; ART's AutoProjectedGradientDescent on the same model and
    faces (1 restart, 100 iterations, first step 2*eps as the authors') must land within two of 24 faces."""
    pytest.importorskip("art")
    from emocloak.attacks.art_bridge import art_apgd_ce

    rec, x, y = toy_case
    eps = 1 / 255
    aa = AutoAttack(eps=eps, version="fast", seed=0)
    aa.rng = aa.new_generator()
    ours = aa.run(rec, x, y).accuracy_after()["apgd-ce"]
    np.random.seed(0)
    x_art = on_grid(x, torch.from_numpy(art_apgd_ce(rec, x.numpy(), y.numpy(), eps)), eps)
    assert abs(ours - robust_accuracy(rec, x_art, y)) <= 2 / 24 + 1e-9, (ours, robust_accuracy(rec, x_art, y))


def test_seeded_and_the_global_rng_untouched(toy_case):
    rec, x, y = toy_case
    faces = list((x[:6].permute(0, 2, 3, 1) * 255).round().byte().numpy())
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = make_attack("autoattack:eps=1,version=fast", seed=5)(rec, faces, detect=False)
    assert torch.equal(torch.get_rng_state(), state)
    again = make_attack("autoattack:eps=1,version=fast", seed=5)(rec, faces, detect=False)
    assert all(np.array_equal(a, b) for a, b in zip(first.images, again.images, strict=True))
    assert all(r["queries"] >= 100 for r in first.records)  # every face entered APGD-CE


def test_standard_is_the_default_version_with_the_authors_settings(toy_case):
    aa = make_attack("autoattack:eps=4")
    assert aa.stages == STAGES == ("apgd-ce", "apgd-t", "fab-t", "square")
    ref = aa.reference_attacks(toy_case[0], 8, seed=0)
    assert (ref["apgd-ce"].n_iter, ref["apgd-ce"].n_restarts, ref["apgd-ce"].loss) == (100, 1, "ce")
    assert (ref["apgd-t"].n_iter, ref["apgd-t"].n_restarts, ref["apgd-t"].n_target_classes) == (100, 1, 7)
    assert (ref["fab-t"].n_iter, ref["fab-t"].n_restarts, ref["fab-t"].n_target_classes) == (100, 1, 7)
    assert ref["fab-t"].targeted and (ref["square"].n_queries, ref["square"].p_init) == (5000, 0.8)
    assert all(a.eps == 4 / 255 for a in ref.values())


def test_api_and_cli_share_the_checks(tmp_path, cli, toy_case):
    with pytest.raises(AttackSpecError, match="valid: standard, fast"):
        AutoAttack(version="rand")
    with pytest.raises(AttackSpecError, match="untargeted"):
        AutoAttack(eps=4 / 255)(toy_case[0], [np.zeros((48, 48, 3), np.uint8)], target=1, detect=False)
    r = cli("evaluate", "--data", tmp_path, "-r", "cnn", "-a", "autoattack:eps=4,version=x", "--out", tmp_path / "o")
    assert r.returncode == 2 and "version='x' invalid" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.data
def test_cli_evaluate_ferplus_with_autoattack(data_dir, tmp_path, cli):
    import json

    out = tmp_path / "aa"
    r = cli(
        "evaluate",
        *("--data", str(data_dir / "ferplus"), "--limit", "3", "--recognizer", "fer"),
        *("--attack", "autoattack:eps=8", "--out", str(out), "--no-examples"),
    )
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "report.json").read_text())["summary"]
    assert s["n"] == 3 and s["attack"].startswith("autoattack(") and s["linf"]["mean"] <= 8 + 1e-6
    assert s["success_rate"] == 1.0  # at 8/255 the undefended fer leaves its clean reading on every face
