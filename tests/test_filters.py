"""The batched torch Instagram filters against pilgram (the reference), and gene/chain plumbing."""

from __future__ import annotations

import numpy as np
import pilgram
import pytest
import skimage.data
import torch
from PIL import Image

from emocloak.attacks.filters import FILTER_NAMES, FILTERS, apply_chain, apply_gene, instagram


def _images() -> dict[str, np.ndarray]:
    """A square and a non-square natural photo, small to keep the test cheap."""
    astronaut = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((96, 96), Image.LANCZOS))
    chelsea = np.ascontiguousarray(skimage.data.chelsea()[40:136, 150:278])  # 96 x 128
    return {"astronaut96": astronaut, "chelsea96x128": chelsea}


IMAGES = _images()


def to_tensor(*images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def to_uint8(y: torch.Tensor) -> np.ndarray:
    return (y.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()


def ones(n: int = 1) -> torch.Tensor:
    return torch.ones(n)


def _cases():
    for name in FILTER_NAMES:
        for key in IMAGES:
            marks = ()
            if name == "aden" and key != "astronaut96":
                # pilgram builds aden's left-to-right ramp as a vertical one turned by Image.rotate(90)
                # without expand=True: on a non-square photo the ramp is cropped and shifted (black
                # bands). We keep the intended ramp across the width, so pilgram differs here by design.
                marks = pytest.mark.xfail(strict=True, reason="pilgram's aden ramp is wrong on non-square images")
            yield pytest.param(name, key, id=f"{name}-{key}", marks=marks)


def test_filter_table_matches_pilgram():
    assert FILTER_NAMES == sorted(n for n in pilgram.__all__ if not n.startswith("__")) == sorted(FILTERS)
    assert len(FILTER_NAMES) == 26


@pytest.mark.parametrize(("name", "image"), list(_cases()))
def test_stock_filter_matches_pilgram(name: str, image: str):
    """s = 1, a = 1 is pilgram's filter: mean |difference| <= 1 uint8 level in every channel."""
    im = IMAGES[image]
    ref = np.asarray(getattr(pilgram, name)(Image.fromarray(im))).astype(float)
    fid = torch.tensor([FILTER_NAMES.index(name)])
    ours = to_uint8(apply_gene(to_tensor(im), fid, ones(), ones()))[0].astype(float)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).mean((0, 1)).max() <= 1.0


@pytest.mark.parametrize(("s", "a"), [(1.0, 0.0), (0.0, 1.0), (0.0, 1.1)])
def test_zero_strength_or_intensity_is_identity(s: float, a: float):
    x = to_tensor(IMAGES["chelsea96x128"]).expand(len(FILTER_NAMES), -1, -1, -1)
    n = len(FILTER_NAMES)
    y = apply_gene(x, torch.arange(n), torch.full((n,), s), torch.full((n,), a))
    np.testing.assert_array_equal(to_uint8(y), to_uint8(x))


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Six distinct images (two photos, flips) with their own filters (some shared), s and a."""
    g = torch.Generator().manual_seed(seed)
    base = to_tensor(IMAGES["astronaut96"], IMAGES["chelsea96x128"][:, 16:112])
    x = torch.cat([base, base.flip(-1), base.flip(-2)])
    ids = torch.tensor([3, 12, 3, 25, 0, 12])
    return x, ids, 0.5 + 0.5 * torch.rand(6, generator=g), 0.8 + 0.4 * torch.rand(6, generator=g)


@pytest.mark.parametrize("chunk", [None, 1])
def test_batch_equals_one_by_one(chunk: int | None, monkeypatch: pytest.MonkeyPatch):
    """Per-image filters and parameters stay with their image, whole batch or CPU chunks of one."""
    if chunk:
        monkeypatch.setattr(instagram, "CPU_CHUNK", chunk)
    x, ids, s, a = _batch()
    batched = apply_gene(x, ids, s, a)
    single = torch.cat([apply_gene(x[i : i + 1], ids[i : i + 1], s[i : i + 1], a[i : i + 1]) for i in range(len(x))])
    assert (batched - single).abs().max() <= 1 / 255 + 1e-6  # at most one truncation step apart


def test_strength_mixes_with_input():
    x, ids, _, a = _batch()
    full = apply_gene(x, ids, ones(6), a)
    half = apply_gene(x, ids, torch.full((6,), 0.5), a)
    torch.testing.assert_close(half, (x + full) / 2, atol=1e-6, rtol=0)


def test_intensity_scales_the_effect():
    """a = 1.1 moves further from the photo than a = 1, which moves further than a = 0.5."""
    x = to_tensor(IMAGES["astronaut96"])
    for name in ("clarendon", "nashville", "walden", "inkwell"):
        fid = torch.tensor([FILTER_NAMES.index(name)])
        dist = [(apply_gene(x, fid, ones(), torch.tensor([v])) - x).abs().mean() for v in (0.5, 1.0, 1.1)]
        assert dist[0] < dist[1] < dist[2], name


def test_chain_shape_range_and_order():
    x, _, _, _ = _batch()
    g = torch.Generator().manual_seed(1)
    genes = [
        (torch.randint(0, 26, (6,), generator=g), torch.rand(6, generator=g), 3 * torch.rand(6, generator=g))
        for _ in range(4)
    ]
    y = apply_chain(x, genes)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
    step = x
    for ids, s, a in genes:
        step = apply_gene(step, ids, s, a)
    torch.testing.assert_close(y, step, atol=0, rtol=0)


def test_spots_blend_each_gene_in_where_they_weigh():
    x, ids, s, a = _batch()
    genes = [(ids, s, a), (ids.flip(0), s, a)]
    h, w = x.shape[-2:]
    half = torch.zeros(len(x), 1, h, w)
    half[..., : w // 2] = 1
    torch.testing.assert_close(apply_chain(x, genes, [torch.ones_like(half)] * 2), apply_chain(x, genes))
    y = apply_chain(x, genes, [half, half])
    torch.testing.assert_close(y[..., w // 2 :], x[..., w // 2 :])  # weight 0: untouched
    torch.testing.assert_close(y[..., : w // 2], apply_chain(x, genes)[..., : w // 2])


def test_one_image_broadcasts_to_a_population():
    x = to_tensor(IMAGES["astronaut96"])
    ids, s, a = torch.tensor([1, 7, 20]), torch.tensor([1.0, 0.8, 0.9]), torch.tensor([1.0, 1.1, 0.9])
    torch.testing.assert_close(apply_gene(x, ids, s, a), apply_gene(x.expand(3, -1, -1, -1), ids, s, a))


def test_gradients_flow_to_image_and_parameters():
    x, ids, s, a = _batch()
    x, s, a = x.requires_grad_(), s.requires_grad_(), a.requires_grad_()
    apply_chain(x, [(ids, s, a), (ids.flip(0), s, a)]).mean().backward()
    for t in (x, s, a):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
