"""Figures people look at instead of reading tables (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from emocloak.labels import LABELS  # noqa: E402


def plot_confusion(cm: np.ndarray, title: str, path: Path, labels: tuple[str, ...] = LABELS) -> Path:
    """Row-normalised confusion matrix with counts; empty rows (absent labels) stay blank."""
    rows = cm.sum(1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if rows[i, 0]:
                ax.text(
                    j,
                    i,
                    f"{frac[i, j]:.2f}\n({cm[i, j]})",
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="white" if frac[i, j] > 0.5 else "black",
                )
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # no Software tag: the PNG carries no matplotlib URL into self-contained reports
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def plot_ssim_hist(
    values_by_condition: dict[str, list[float]], path: Path, title: str = "How much the cloak changes each image"
) -> Path:
    """Overlaid SSIM histograms (e.g. full photo vs face crop), each condition's median dashed."""
    clean = {k: np.asarray([v for v in vals if np.isfinite(v)], float) for k, vals in values_by_condition.items()}
    clean = {k: v for k, v in clean.items() if len(v)}
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    if clean:
        lo = min(float(v.min()) for v in clean.values())
        lo = max(0.0, min(lo, 0.99) - 0.005)
        bins = np.linspace(lo, 1.0, 31)
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for (name, v), color in zip(clean.items(), colors, strict=False):
            med = float(np.median(v))
            ax.hist(v, bins=bins, alpha=0.45, color=color, label=f"{name} (n={len(v)}, median {med:.3f})")
            ax.axvline(med, color=color, linestyle="--", linewidth=1.5)
        ax.legend(fontsize=8, loc="best", framealpha=0.9)
        ax.set_xlim(lo, 1.0)
    else:
        ax.text(0.5, 0.5, "no SSIM values", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("SSIM between original and cloaked (1 = identical)")
    ax.set_ylabel("images")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _thumb(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if max(im.size) > size:
        im.thumbnail((size, size), Image.LANCZOS)
    return np.asarray(im)


def _diff_map(original: np.ndarray, cloaked: np.ndarray, size: int) -> np.ndarray:
    """|cloaked - original| (max over channels, /255 units), box-downscaled so small changes stay visible."""
    from PIL import Image

    d = np.abs(cloaked.astype(np.float32) - original.astype(np.float32))
    d = d.max(2) if d.ndim == 3 else d
    im = Image.fromarray(d, mode="F")
    if max(im.size) > size:
        scale = size / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BOX)
    return np.asarray(im)


def plot_examples(
    originals: list[np.ndarray],
    cloaked: list[np.ndarray],
    captions_before: list[str],
    captions_after: list[str],
    path: Path,
    n: int = 8,
    titles: list[str] | None = None,
    success: list[bool] | None = None,
    diff: bool = True,
    thumb: int = 256,
) -> Path:
    """A grid like the figures of Baia et al. 2022: each column an original over its cloaked version.

    Captions give the recognizer's reading under each image; `success` colours the cloaked
    caption (green: the cloak worked). An optional third row shows the amplified difference.
    Large photos are downscaled to `thumb` pixels for the figure.
    """
    k = min(n, len(originals))
    rows = 3 if diff else 2
    fig, axes = plt.subplots(rows, max(k, 1), figsize=(1.45 * max(k, 1) + 0.7, 1.8 * rows), squeeze=False)
    if not k:
        for ax in axes.ravel():
            ax.axis("off")
        axes[0, 0].text(0.5, 0.5, "no images", ha="center", va="center")
        fig.tight_layout()
        return _save(fig, path)
    diffs = [_diff_map(originals[i], cloaked[i], thumb) for i in range(k)] if diff else []
    vmax = max(1.0, max((float(d.max()) for d in diffs), default=1.0))
    for i in range(k):
        top, mid = axes[0, i], axes[1, i]
        top.imshow(_thumb(originals[i], thumb), cmap="gray", vmin=0, vmax=255)
        mid.imshow(_thumb(cloaked[i], thumb), cmap="gray", vmin=0, vmax=255)
        top.set_xlabel(captions_before[i], fontsize=9)
        color = "black" if success is None else ("#1a7f37" if success[i] else "#b42318")
        mid.set_xlabel(captions_after[i], fontsize=9, color=color, fontweight="bold")
        if titles:
            top.set_title(titles[i], fontsize=8)
        if diff:
            axes[2, i].imshow(diffs[i], cmap="magma", vmin=0, vmax=vmax)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    row_names = ["original", "cloaked", f"|difference|\n(0-{vmax:.0f}/255)"]
    for r in range(rows):
        axes[r, 0].set_ylabel(row_names[r], fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
