"""One self-contained HTML page per evaluation: inline CSS, figures as base64 PNGs, nothing fetched."""

from __future__ import annotations

import base64
import math
from html import escape
from pathlib import Path

from emocloak.labels import LABELS

MAX_ROWS = 200

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 2em auto;
  max-width: 1100px; padding: 0 1.5em; color: #1f2328; line-height: 1.45; background: #fff; }
h1 { font-size: 1.5em; margin-bottom: .2em; }
h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #d0d7de; padding-bottom: .25em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #d0d7de; padding: .3em .7em; text-align: left; }
th { background: #f6f8fa; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fbfcfd; }
.ok { color: #1a7f37; font-weight: 600; }
.no { color: #b42318; }
figure { margin: 1em 0 1.6em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { color: #59636e; font-size: .9em; }
.figs { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 1em; }
.figs figure { margin: 0; }
.row { display: flex; flex-wrap: wrap; gap: 2em; align-items: flex-start; }
table.kv td, table.kv th { border: none; padding: .1em 1.2em .1em 0; background: none; }
table.kv th { color: #59636e; font-weight: normal; background: none; }
table.kv code { background: #f6f8fa; padding: 0 .3em; border-radius: 3px; word-break: break-all; }
.note { color: #59636e; font-size: .9em; }
"""

# summary key -> row title (rates) or (row title, digits) for describe() dicts
RATES = [
    ("clean_accuracy", "clean accuracy"),
    ("attacked_accuracy", "accuracy under attack"),
    ("success_rate", "success rate"),
    ("success_vs_truth", "success vs ground truth"),
    ("face_lost_rate", "face lost rate"),
]
STATS = [
    ("ssim", "SSIM, full image", 4),
    ("ssim_face", "SSIM, face crop", 4),
    ("psnr", "PSNR (dB)", 2),
    ("linf", "L-inf (/255)", 2),
    ("l2", "L2 ([0,1] units)", 3),
    ("queries", "queries per image", 1),
    ("seconds_per_image", "seconds per image", 3),
]


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def pct(v: object) -> str:
    return f"{100 * v:.1f}%" if _finite(v) else "n/a"


def num(v: object, digits: int = 3) -> str:
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.{digits}f}" if _finite(v) else "n/a"


def label_name(i: object) -> str:
    if i is None:
        return "?"
    i = int(i)
    return "no face" if i < 0 else LABELS[i] if i < len(LABELS) else str(i)


def _table(head: list[str], rows: list[list[str]], num_cols: set[int] = frozenset()) -> str:
    """Cells are escaped here; a cell given as ('html', markup) is trusted markup built by this module."""
    out = ["<table><thead><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>")
        for j, cell in enumerate(row):
            cls = ' class="num"' if j in num_cols else ""
            text = cell[1] if isinstance(cell, tuple) else escape(str(cell))
            out.append(f"<td{cls}>{text}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _summary_table(s: dict) -> str:
    rates = _table(["outcome", "value"], [[title, pct(s.get(key))] for key, title in RATES], {1})
    rows = []
    for key, title, digits in STATS:
        if key == "ssim_face" and not s.get("detect_faces"):
            continue  # pre-cropped faces: the face crop is the whole image
        d = s.get(key) or {}
        rows.append([title, num(d.get("median"), digits), num(d.get("mean"), digits), num(d.get("min"), digits)])
    change = _table(["image change and cost", "median", "mean", "min"], rows, {1, 2, 3})
    return f'<div class="row">{rates}{change}</div>'


def _channel_section(s: dict) -> str:
    ch = s.get("channel")
    if not ch:
        return ""
    rows = [[title, pct(s.get(key)), pct(ch.get(key))] for key, title in RATES]
    return (
        f"<h2>After the channel <code>{escape(str(ch.get('spec', '')))}</code></h2>"
        '<p class="note">Clean and cloaked images both pass through the channel (re-encoding, resizing) '
        "before the recognizer reads them, as on a platform that processes uploads.</p>"
        + _table(["measure", "no channel", "after channel"], rows, {1, 2})
    )


def _transfer_section(s: dict) -> str:
    tr = s.get("transfer") or {}
    if not tr:
        return ""
    has_ch = any("channel_success_rate" in v for v in tr.values())
    head = ["recognizer", *(t for _, t in RATES)] + (["success after channel"] if has_ch else [])
    rows = []
    for name, v in tr.items():
        row = [name, *(pct(v.get(k)) for k, _ in RATES)]
        if has_ch:
            row.append(pct(v.get("channel_success_rate")))
        rows.append(row)
    return (
        "<h2>Transfer to other recognizers</h2>"
        '<p class="note">The same cloaked images, read by recognizers the attack never queried.</p>'
        + _table(head, rows, set(range(1, len(head))))
    )


def _png_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


FIGURE_CAPTIONS = {
    "confusion_clean": "Confusion matrix, clean images (rows: true label, normalised per row).",
    "confusion_attacked": "Confusion matrix, cloaked images.",
    "confusion_channel": "Confusion matrix, cloaked images after the channel.",
    "ssim_hist": "SSIM between each original and its cloaked version; dashed lines mark the medians.",
    "examples": "Examples: original (top) over cloaked (middle), each captioned with the recognizer's reading; "
    "green = the cloak worked. Bottom: where and how much the pixels changed.",
}


def _figures(figures: dict[str, Path]) -> str:
    if not figures:
        return ""
    small = [k for k in figures if k.startswith("confusion")]
    big = [k for k in figures if k not in small]

    def fig(key: str) -> str:
        cap = FIGURE_CAPTIONS.get(key, key.replace("_", " "))
        return (
            f'<figure><img src="{_png_uri(figures[key])}" alt="{escape(key, quote=True)}">'
            f"<figcaption>{escape(cap)}</figcaption></figure>"
        )

    parts = ["<h2>Figures</h2>"]
    parts += [fig(k) for k in big]
    if small:
        parts.append('<div class="figs">' + "".join(fig(k) for k in small) + "</div>")
    return "".join(parts)


def _records_table(records: list[dict], target: str | None, face_ssim: bool) -> str:
    if not records:
        return ""
    has_ch = any("channel_pred_after" in r for r in records)
    head = ["#", "image", "true label", "read before", "read after", "cloak worked", "SSIM"]
    head += ["face SSIM"] if face_ssim else []
    head += ["read after channel"] if has_ch else []
    rows = []
    for r in records[:MAX_ROWS]:
        name = str(r.get("name", ""))
        short = Path(name).name or name
        cell_name = ("html", f'<span title="{escape(name, quote=True)}">{escape(short)}</span>')
        ok = r.get("success")
        worked = ("html", '<span class="ok">yes</span>' if ok else '<span class="no">no</span>')
        if r.get("face_lost"):
            worked = ("html", '<span class="no">face lost</span>')
        row = [
            str(r.get("index", "")),
            cell_name,
            label_name(r.get("label")),
            label_name(r.get("pred_before")),
            label_name(r.get("pred_after")),
            worked,
            num(r.get("ssim"), 4),
        ]
        if face_ssim:
            row.append(num(r.get("ssim_face"), 4))
        if has_ch:
            row.append(label_name(r.get("channel_pred_after")))
        rows.append(row)
    more = len(records) - MAX_ROWS
    note = f'<p class="note">First {MAX_ROWS} of {len(records)} images; all are in report.json.</p>' if more > 0 else ""
    goal = f" (success = read as {escape(target)})" if target else " (success = reading changed)"
    return f"<h2>Per image{goal}</h2>" + _table(head, rows, {0, 6, 7} if face_ssim else {0, 6}) + note


def render_report(report: dict, figures: dict[str, Path] | None = None) -> str:
    """The report page as a string (see `write_report`)."""
    s = report.get("summary", {})
    records = report.get("records", [])
    target = s.get("target")
    attack = s.get("attack_spec") or s.get("attack", "?")
    title = f"emocloak evaluation: {attack} vs {s.get('recognizer', '?')}"
    meta = [
        ("recognizer", s.get("recognizer", "?")),
        ("attack", attack),
        *([("attack parameters", s["attack"])] if s.get("attack_spec") and s.get("attack") else []),
        ("target", target or "none (untargeted)"),
        ("dataset", s.get("dataset") or "?"),
        ("split", s.get("split") or "-"),
        ("images", s.get("n", len(records))),
        ("face detection", "yes" if s.get("detect_faces") else "no (pre-cropped faces)"),
    ]
    meta_html = "".join(f"<tr><th>{escape(k)}</th><td><code>{escape(str(v))}</code></td></tr>" for k, v in meta)
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<table class="kv">{meta_html}</table>',
        "<h2>Summary</h2>",
        _summary_table(s),
        _channel_section(s),
        _transfer_section(s),
        _figures(figures or {}),
        _records_table(records, target, bool(s.get("detect_faces"))),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body>\n</html>\n"
    )


def write_report(report: dict, figures: dict[str, Path], path: Path) -> Path:
    """Write the report as ONE HTML file that opens offline (inline CSS, PNGs as data URIs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(report, figures), encoding="utf-8")
    return path
