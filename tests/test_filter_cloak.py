"""The filter cloak (EAA): search mechanics with toy fitness, and the attack end to end on a small photo."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from emocloak.attacks.filters.search import ChainSpace, GeneCrossover, GeneMutation, search
from emocloak.labels import LABELS
from emocloak.recognizers.base import Recognizer


def _toy_fitness(X):
    G = X.reshape(len(X), -1, 3)
    return 40 - np.floor(G[..., 0]).sum(1), np.abs(G[..., 2] - 1).sum(1)


def test_search_is_seeded_and_returns_a_pareto_front():
    a = search(ChainSpace(3), _toy_fitness, 10, 6, seed=3)
    b = search(ChainSpace(3), _toy_fitness, 10, 6, seed=3)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.evaluations == len(a.X) and a.generations == 6
    F = a.F[a.front]
    for i in range(len(F)):  # nobody on the front is dominated by anyone evaluated
        dominated = (F[i] >= a.F).all(1) & (F[i] > a.F).any(1)
        assert not dominated.any()
    assert a.F[a.best(), 0] < 0  # it finds successful chains on an easy problem


def test_best_keeps_to_the_quality_floor():
    from emocloak.attacks.filters.search import SearchResult

    # (objective, 1 - SSIM): a drastic success, a natural near miss, a natural failure
    F = np.array([[-1.0, 0.5], [0.2, 0.05], [0.9, 0.01]])
    r = SearchResult(np.zeros((3, 9)), F, np.arange(3), 1)
    assert r.best() == 0  # no floor: the only success
    assert r.best(min_ssim=0.8) == 1  # floor: the closest to success among natural chains
    assert r.best(min_ssim=0.999) == 2  # nothing clears the floor: the most natural chain


def test_search_stops_early_when_a_chain_is_good_enough():
    r = search(ChainSpace(4), _toy_fitness, 10, 10, seed=0, good_ssim=0.5)
    assert r.generations < 10


def test_operators_respect_gene_boundaries_and_bounds():
    space = ChainSpace(4)

    class P:  # the bits of a pymoo problem the operators read
        pass

    P.space, P.n_var = space, 12
    rng = np.random.default_rng(0)
    parents = space.random_genes(8, rng).reshape(2, 1, 12)
    kids = GeneCrossover()._do(P, parents, random_state=rng)
    for kid in kids[:, 0]:
        genes = kid.reshape(4, 3)
        for g in genes:  # every gene comes whole from one parent
            assert any(np.array_equal(g, p) for p in parents[:, 0].reshape(-1, 3))
    X = space.random_genes(40, rng).reshape(10, 12)
    Y = GeneMutation()._do(P, X, random_state=rng)
    assert (space.lower <= Y).all() and (space.upper >= Y).all() and not np.array_equal(X, Y)


class _Redness(torch.nn.Module):
    """A toy model on 8x8 gray faces: 'happiness' when bright, 'sadness' when dark; features = mean."""

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(m), 20 * (m - 0.5), torch.zeros_like(m), 20 * (0.5 - m)], 1)

    def features(self, x):
        return x.mean(dim=(1, 2, 3))[:, None]


@pytest.fixture
def toy_rec():
    return Recognizer("toy", _Redness(), LABELS[:4], input_size=8)


def test_filter_cloak_flips_a_toy_recognizer(toy_rec):
    from emocloak.attacks.evasion.filter_chain import FilterCloak

    img = np.full((64, 64, 3), 140, np.uint8)  # slightly bright -> happiness
    img[::8] = 120
    out = FilterCloak(chain=3, pop_size=10, n_gen=6, a_range=(0.9, 1.3), min_ssim=0.0, seed=0)(
        toy_rec, [img], detect=False
    )
    r = out.records[0]
    assert r["pred_before"] == 1 and r["success"] and r["pred_after"] != 1
    assert out.images[0].shape == img.shape and out.images[0].dtype == np.uint8
    assert r["queries"] > 0 and len(r["chain"]) == 3 and {"filter", "strength", "intensity"} <= set(r["chain"][0])
    assert min(g["strength"] for g in r["chain"]) >= 0.7


def test_targeted_filter_cloak(toy_rec):
    from emocloak.attacks.evasion.filter_chain import FilterCloak

    img = np.full((64, 64, 3), 140, np.uint8)
    out = FilterCloak(chain=3, pop_size=10, n_gen=6, a_range=(0.9, 1.3), min_ssim=0.0, seed=0)(
        toy_rec, [img], target=3, detect=False
    )
    assert out.records[0]["pred_after"] == 3 and out.records[0]["success"]


def test_protect_cli_demo_writes_photo_and_sidecar(tmp_path, cli):
    from emocloak import sample_photo_path

    r = cli("protect", "--demo", "-o", tmp_path, "--method", "filters", "--chain", "3")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "astronaut.jpg"
    info = json.loads((tmp_path / "astronaut.jpg.json").read_text())
    assert Image.open(out).size == Image.open(sample_photo_path()).size
    assert len(info["chain"]) == 3 and info["queries"] > 0 and 0 < info["ssim"] <= 1
    assert not Image.open(out).getexif()
    before = out.read_bytes()
    again = cli("protect", "--demo", "-o", tmp_path, "--method", "filters")  # the same settings: resumed
    assert again.returncode == 0 and "resuming" in again.stderr and out.read_bytes() == before
    other = cli("protect", "--demo", "-o", tmp_path, "--method", "filters", "--chain", "4")
    assert other.returncode == 2 and "exists" in other.stderr  # never overwritten silently
    assert out.read_bytes() == before


def test_local_genes_keep_their_place_in_the_operators():
    from emocloak.attacks.evasion.filter_chain import LOCAL_RANGES

    space = ChainSpace(3, local=LOCAL_RANGES)

    class P:
        pass

    P.space, P.n_var = space, 18
    rng = np.random.default_rng(1)
    parents = space.random_genes(6, rng).reshape(2, 1, 18)
    for kid in GeneCrossover()._do(P, parents, random_state=rng)[:, 0]:
        for g in kid.reshape(3, 6):
            assert any(np.array_equal(g, p) for p in parents[:, 0].reshape(-1, 6))
    Y = GeneMutation()._do(P, space.random_genes(30, rng).reshape(10, 18), random_state=rng)
    assert (space.lower <= Y).all() and (space.upper >= Y).all()
    assert [len(col) for col in space.decode(Y)[0]] == [10] * 6


def test_spot_mask_is_one_at_its_centre_and_fades_with_distance():
    from emocloak.attacks.evasion.filter_chain import spot_mask
    from emocloak.faces.detect import Box

    m = spot_mask((40, 80), Box(40, 0, 80, 40), np.array([0.5, 0.25]), np.array([0.5, 0.5]), np.array([0.1, 0.2]))
    assert m.shape == (2, 1, 40, 80) and float(m.max()) <= 1
    assert float(m[0, 0, 20, 60]) > 0.95 and float(m[1, 0, 20, 50]) > 0.95  # centres: (x, y) inside the box
    assert float(m[0, 0, 20, 0]) < 1e-6  # far outside the box: untouched
    assert float(m[1, 0, 20, 58]) > float(m[0, 0, 20, 68])  # the wider spot reaches further


def test_local_filter_cloak_edits_only_around_the_face(toy_rec):
    from emocloak.attacks.evasion.filter_chain import FilterCloak
    from emocloak.faces.detect import Box
    from emocloak.recognizers.base import Face

    img = np.full((64, 256, 3), 140, np.uint8)  # the toy "face" is the left quarter
    cloak = FilterCloak(chain=3, pop_size=10, n_gen=6, a_range=(0.9, 1.3), min_ssim=0.0, local=True, seed=0)
    toy_rec.find_faces = lambda im: [Face(Box(0, 0, 64, 64), Box(0, 0, 64, 64))]
    out = cloak(toy_rec, [img])
    r, changed = out.records[0], np.abs(out.images[0].astype(int) - img).max(2)
    assert len(r["chain"]) == 3 and {"x", "y", "radius"} == set(r["chain"][0]["where"])
    assert changed[:, :64].max() > 0 and changed[:, 200:].max() == 0  # 5.7 widest radii away: untouched


def test_protect_cli_refuses_local_outside_the_filter_cloak(tmp_path, cli):
    r = cli("protect", "--demo", "-o", tmp_path, "--method", "universal", "--local")
    assert r.returncode == 2 and "--local goes with --method filters" in r.stderr
    assert not any(tmp_path.iterdir())  # nothing written


def test_an_ensemble_member_that_sees_no_face_is_named_and_the_others_go_on():
    from emocloak.attacks.evasion.filter_chain import FilterCloak
    from emocloak.faces.detect import Box
    from emocloak.recognizers.base import Face

    def whole(im):
        b = Box(0, 0, im.shape[1], im.shape[0])
        return [Face(b, b)]

    main = Recognizer("toy", _Redness(), LABELS[:4], input_size=8, find_faces=whole)
    blind = Recognizer("blind", _Redness(), LABELS[:4], input_size=8, find_faces=lambda im: [])
    img = np.full((64, 64, 3), 140, np.uint8)
    cloak = FilterCloak(chain=3, pop_size=10, n_gen=6, a_range=(0.9, 1.3), min_ssim=0.0, ensemble=(blind,), seed=0)
    r = cloak(main, [img]).records[0]
    assert r["ensemble_no_face"] == ["blind"] and r["success"] and r["queries"] > 0
