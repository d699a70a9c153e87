"""Our PGD against ART's ProjectedGradientDescent on the same model and faces (issue: within 1 point)."""

import pytest
import torch

import emocloak
from emocloak.attacks.evasion.pgd import PGD

pytest.importorskip("art")


@pytest.mark.data
def test_pgd_robust_accuracy_matches_art(data_dir):
    """Deterministic (no random start) so any gap is the implementation's; the benchmark compares with
    random start on 1,000 faces (benchmarks/results/robustness.md)."""
    from emocloak.attacks.art_bridge import art_pgd
    from emocloak.data.ferplus import load_ferplus

    rec = emocloak.load_recognizer("cnn-w24")  # the check is of the attack code; a third of cnn's cost
    test = load_ferplus(data_dir / "ferplus", "test").subset(slice(0, 200))
    x = torch.from_numpy(test.images).float().div(255).unsqueeze(1).repeat(1, 3, 1, 1)
    with torch.no_grad():
        clean = rec.logits(x).argmax(1)
    eps, steps = 2 / 255, 10
    ours = PGD(eps=eps, steps=steps, random_start=False, seed=0)
    torch.manual_seed(0)
    x_ours = ours.craft(rec, x, clean, targeted=False)
    x_art = torch.from_numpy(art_pgd(rec, x.numpy(), eps, steps, ours.alpha, False))
    with torch.no_grad():
        acc_ours = (rec.logits(x_ours).argmax(1).numpy() == test.labels).mean()
        acc_art = (rec.logits(x_art).argmax(1).numpy() == test.labels).mean()
        acc_clean = (clean.numpy() == test.labels).mean()
    assert acc_ours < acc_clean - 0.2  # the attack does something
    assert abs(acc_ours - acc_art) <= 0.01, (acc_ours, acc_art)
    assert (x_ours - x).abs().max() <= eps + 1e-6 and (x_art - x).abs().max() <= eps + 1e-6
