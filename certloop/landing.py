"""The page both daemons serve at ``/``: the program's name, its version and links to its endpoints,
as exporter-toolkit's landing page does for Prometheus exporters. A person who opens the address in
a browser sees what runs there and where to go; nothing on it needs authentication or changes state."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from certloop import __version__

__all__ = ["landing_page"]


def landing_page(name: str, links: Sequence[tuple[str, str]], *, version: str = __version__) -> bytes:
    """The HTML of the landing page: ``links`` are (href, what it is) pairs, shown in order."""
    items = "\n".join(f'<li><a href="{escape(href)}">{escape(href)}</a>: {escape(what)}</li>' for href, what in links)
    title = escape(f"{name} {version}")
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head><body>\n'
            f"<h1>{escape(name)}</h1>\n<p>version {escape(version)}</p>\n<ul>\n{items}\n</ul>\n"
            f"</body></html>\n").encode()
