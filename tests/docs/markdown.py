"""Reading the documentation the way a user (and GitHub) does: links, anchors and fenced code blocks.

Only the subset of Markdown the docs use: inline links `[text](target)`, reference definitions
`[name]: target`, ATX headings (`## Title`), explicit anchors (`<a id="x">`) and ``` fences. Links
inside code (fenced or inline) are not links and are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"`+[^`]*`+")
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"", re.IGNORECASE)


def documentation_files() -> list[Path]:
    """Every Markdown file a user reads: docs/**, the README and the mixin's README."""
    files = sorted((ROOT / "docs").rglob("*.md"))
    files += [ROOT / "README.md", ROOT / "alerting" / "README.md"]
    return [f for f in files if f.is_file()]


@dataclass(frozen=True)
class Link:
    source: Path
    line: int
    target: str

    @property
    def external(self) -> bool:
        return bool(re.match(r"^[a-z][a-z0-9+.-]*:", self.target, re.IGNORECASE))

    def __str__(self) -> str:
        return f"{self.source.relative_to(ROOT)}:{self.line}: {self.target}"


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code removed."""
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, _INLINE_CODE.sub("", line)


def links(path: Path) -> list[Link]:
    found = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for match in _INLINE_LINK.finditer(line):
            found.append(Link(path, number, match.group(1)))
        reference = _REFERENCE.match(line)
        if reference:
            found.append(Link(path, number, reference.group(1)))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every fragment a link may point at in `path` (repeated headings get -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        found.update(_ANCHOR.findall(line))
        heading = _HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def fenced_blocks(path: Path, language: str) -> Iterator[tuple[int, str]]:
    """(first line number, text) of every fenced block opened with ```<language>."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start: int | None = None
    body: list[str] = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if start is None:
            if stripped.startswith("```") and stripped[3:].strip() == language:
                start, body = number + 1, []
        elif stripped.startswith("```"):
            yield start, "\n".join(body)
            start = None
        else:
            body.append(line)
