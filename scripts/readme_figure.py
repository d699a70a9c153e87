"""The README's before/after picture: the default cloak on the shipped sample photo, with every reading.

    python scripts/readme_figure.py            # writes docs/before_after.png (1-2 minutes on 2 cores)

Runs `emocloak.protect` with its defaults (the tailored cloak, strength mid, seed 0) on the shipped
public-domain sample photo, saves the result as `emocloak protect` does (JPEG quality 95, in memory),
and draws original | cloaked side by side; under them, each shipped recognizer's reading of the
original and of the saved cloaked file (top label and its probability), members of the cloak's
ensemble first, then the readers it never used. A changed reading is drawn in red. The SSIM in the
title is `info["ssim"]`, the cloak's against the original, as `protect` reports it.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import emocloak  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
JPEG_QUALITY = 95  # what `emocloak protect` saves a JPEG at


def jpeg_round_trip(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


def reading(name: str, rgb: np.ndarray) -> tuple[str, float] | None:
    """Top label and its probability for the largest face, or None where the recognizer finds no face."""
    p = emocloak.load_recognizer(name).predict_proba([rgb], on_no_face="nan")[0]
    if np.isnan(p).any():
        return None
    return emocloak.LABELS[int(p.argmax())], float(p.max())


def text(r: tuple[str, float] | None) -> str:
    return "no face" if r is None else f"{r[0]} {r[1]:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "before_after.png")
    ap.add_argument("--size", type=int, default=256, help="pixels of each photo panel in the figure")
    args = ap.parse_args()

    original = np.asarray(Image.open(emocloak.sample_photo_path()).convert("RGB"))
    cloaked, info = emocloak.protect(original)  # defaults: tailored, strength mid, seed 0
    saved = jpeg_round_trip(cloaked)
    members = list(info["recognizers"])
    others = [n for n in emocloak.available_recognizers() if n not in members]
    rows = [(n, "ensemble", reading(n, original), reading(n, saved)) for n in members]
    rows += [(n, "held out", reading(n, original), reading(n, saved)) for n in others]

    # Layout in inches: a header line, the two photos, then one line per recognizer (and one for the heads).
    dpi, pad, line = 100, 0.1, 0.2
    photo = args.size / dpi
    width = 2 * photo + 3 * pad
    height = line + photo + 0.25 + line * (len(rows) + 1) + pad
    fig = plt.figure(figsize=(width, height), dpi=dpi)

    def at(y_in: float) -> float:  # inches from the top -> figure fraction from the bottom
        return 1 - y_in / height

    title = f"emocloak.protect(photo): tailored cloak, strength {info['strength']}, SSIM {info['ssim']:.3f}"
    fig.text(0.5, at(line / 2 + 0.02), title, ha="center", va="center", fontsize=8)
    for i, (img, name) in enumerate([(original, "original"), (saved, "cloaked (saved as JPEG 95)")]):
        ax = fig.add_axes(((pad + i * (photo + pad)) / width, at(line + 0.2 + photo), photo / width, photo / height))
        ax.imshow(Image.fromarray(img).resize((args.size, args.size), Image.Resampling.LANCZOS))
        ax.set_title(name, fontsize=8, pad=2)
        ax.axis("off")
    y = line + photo + 0.25 + line / 2
    cols = [(pad / width, "left"), ((pad + photo + pad / 2) / width, "right"), ((width - pad) / width, "right")]
    for (x, ha), head in zip(cols, ["recognizer (role)", "reads original", "reads cloaked"], strict=True):
        fig.text(x, at(y), head, fontsize=8, fontweight="bold", ha=ha, va="center")
    for name, role, before, after in rows:
        y += line
        changed = before is not None and (after is None or after[0] != before[0])
        colours = ["black", "black", "#c0392b" if changed else "black"]
        for (x, ha), s, c in zip(cols, [f"{name} ({role})", text(before), text(after)], colours, strict=True):
            fig.text(x, at(y), s, fontsize=8, ha=ha, va="center", family="monospace", color=c)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=dpi)
    plt.close(fig)
    Image.open(args.out).convert("RGB").save(args.out, optimize=True)
    changed = sum(1 for _, _, b, a in rows if b is not None and (a is None or a[0] != b[0]))
    print(
        f"wrote {args.out} ({args.out.stat().st_size // 1024} kB): SSIM {info['ssim']:.3f}, "
        f"{changed} of {len(rows)} readings changed"
    )
    for name, role, before, after in rows:
        print(f"  {name:<11} {role:<9} {text(before):>17} -> {text(after)}")


if __name__ == "__main__":
    main()
