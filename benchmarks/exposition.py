"""Reading single series out of a /metrics body without parsing the whole (large) text."""

from __future__ import annotations

import re


def sample(text: str, name: str, labels: str = "") -> float | None:
    """The value of ``name{labels}`` (labels exactly as rendered, e.g. ``kind="files"``), or None."""
    series = re.escape(f"{name}{{{labels}}}" if labels else name)
    found = re.search(rf"^{series} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def count_series(text: str, prefix: str) -> int:
    """How many sample lines start with ``prefix`` (e.g. ``certloop_probe_success{source="file"``)."""
    return sum(1 for line in text.splitlines() if line.startswith(prefix))
