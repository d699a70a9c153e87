"""The README stays short, and every local link in README.md and docs/*.md leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 160
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.I)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    text = FENCE.sub("", md.read_text(encoding="utf-8"))
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


def links(text: str) -> list[str]:
    text = FENCE.sub("", text)
    return [m.group(1) for pattern in (LINK, HTML) for m in pattern.finditer(text)]


def broken(md: Path, text: str | None = None) -> list[str]:
    """Local links in md (or in `text`, read as if it were md) whose file or heading does not exist."""
    bad = []
    for target in links(md.read_text(encoding="utf-8") if text is None else text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...: not local
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            bad.append(f"{md.relative_to(ROOT)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{md.relative_to(ROOT)}: {target} (no such heading)")
    return bad


def test_readme_is_short() -> None:
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; keep it to {README_MAX_LINES} (details go to docs/)"


def test_every_local_link_resolves() -> None:
    assert DOCS[0].exists() and len(DOCS) > 1
    bad = [b for md in DOCS for b in broken(md)]
    assert not bad, "broken links:\n" + "\n".join(bad)


def test_the_link_check_can_fail() -> None:
    readme = ROOT / "README.md"
    text = (
        '[ok](docs/methods.md) [gone](docs/no-such-file.md) <img src="docs/none.png">\n'
        "[bad heading](docs/methods.md#no-such-heading) [web](https://example.org/x.md)\n"
        "```\n[in code](ignored.md)\n```\n"
    )
    assert broken(readme, text) == [
        "README.md: docs/no-such-file.md (no such file)",
        "README.md: docs/methods.md#no-such-heading (no such heading)",
        "README.md: docs/none.png (no such file)",
    ]
