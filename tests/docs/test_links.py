"""Every relative link (and its #anchor) in the docs a user follows resolves to a file in the repository."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.docs.markdown import ROOT, Link, anchors, documentation_files, links, slug

FILES = documentation_files()


def _broken(link: Link) -> str | None:
    """Why `link` does not resolve, or None when it does."""
    path_part, _, fragment = link.target.partition("#")
    target = link.source if not path_part else (link.source.parent / unquote(path_part)).resolve()
    try:
        target.relative_to(ROOT)
    except ValueError:
        return "points outside the repository"
    if not target.exists():
        return "no such file or directory"
    if fragment:
        if not target.is_file() or target.suffix != ".md":
            return f"#{fragment} on something that is not a Markdown file"
        if unquote(fragment) not in anchors(target):
            return f"no heading or anchor #{fragment} in {target.relative_to(ROOT)}"
    return None


def test_the_documentation_set_is_found() -> None:
    """The reader finds the docs, the README and the mixin README, and real links in them."""
    names = {f.relative_to(ROOT).as_posix() for f in FILES}
    assert {"README.md", "alerting/README.md", "docs/renewer.md", "docs/architecture.md"} <= names
    assert sum(len(links(f)) for f in FILES) > 50


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path: Path) -> None:
    """Each relative link names an existing file, and each #fragment a heading or anchor in it."""
    broken = [f"{link}: {reason}" for link in links(path) if not link.external
              if (reason := _broken(link)) is not None]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_checker_catches_a_wrong_file_and_a_wrong_anchor(tmp_path: Path) -> None:
    """The check can fail: a link to a missing file, to a missing heading, and one hidden in code is not read."""
    doc = ROOT / "docs" / "renewer.md"
    good = Link(doc, 1, "reference/renewer-config.md")
    assert _broken(good) is None
    assert _broken(Link(doc, 1, "reference/renewer.md")) == "no such file or directory"
    assert "no heading or anchor #no-such-heading" in str(_broken(Link(doc, 1, "architecture.md#no-such-heading")))
    sample = tmp_path / "sample.md"
    sample.write_text("# Top\n## Step 1: `nginx` (http-01)\n## Top\n```\n[x](nowhere.md)\n```\n"
                      "see `[y](nowhere.md)` and [z](other.md#top-1)\n", encoding="utf-8")
    assert [link.target for link in links(sample)] == ["other.md#top-1"]
    assert anchors(sample) == {"top", "step-1-nginx-http-01", "top-1"}


def test_slugs_follow_github() -> None:
    """Headings become anchors as GitHub renders them (punctuation dropped, spaces to hyphens, case folded)."""
    assert slug("4. The webhook fails in Alertmanager's log: 401, 400, 413, 503, connection refused") == (
        "4-the-webhook-fails-in-alertmanagers-log-401-400-413-503-connection-refused"
    )
    assert slug("`certificates[].verify.endpoints[]`") == "certificatesverifyendpoints"
